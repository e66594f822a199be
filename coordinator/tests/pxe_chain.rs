//! The whole network-boot chain from firmware with no iPXE in it, against
//! the coordinator's own DHCP, TFTP and HTTP (issue 18, item 3).
//!
//! A QEMU x86-64 machine under OVMF (Debian's `ovmf`: UEFI with its own PXE
//! stack) whose virtio NIC has no option ROM (`romfile=`), so no iPXE is in
//! its firmware. It sits on a bridge in a network namespace the test creates,
//! joined by a veth pair to the coordinator, which runs in this process with
//! `[dhcp]` (full mode, `advertise_no_ipv6_router`) and `[tftp]` (Debian's
//! `/usr/lib/ipxe`) on the veth. The console must show, in this order:
//!
//! 1. OVMF's PXE getting `snponly.efi` as its boot file (client architecture
//!    7 in option 93) and downloading it over TFTP;
//! 2. that iPXE doing DHCP again, recognised as iPXE, and loading
//!    `http://<coordinator>/boot/boot.ipxe`;
//! 3. the per-MAC script of the node (in `inspect wait`) announcing the agent
//!    ramdisk.
//!
//! Then the test stops the machine: the ramdisk boot itself is the lab's.
//! Needs root, `ip`, `qemu-system-x86_64`, OVMF and Debian's `ipxe`; skipped
//! without them (fails under CI or INGOT_REQUIRE_PRIVILEGED=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::link::{Link, ok, sh};
use ingot_coordinator::config::{DhcpConfig, TftpConfig};
use ingot_coordinator::state::ProvisionState;
use serde_json::json;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const LOADERS: &str = "/usr/lib/ipxe";
const MAC: &str = "52:54:00:d1:0e:f1";
/// The chain takes about 12 s under TCG on a quiet machine; the shared CI
/// machine gets room.
const DEADLINE: Duration = Duration::from_secs(300);

fn usable() -> bool {
    let root = sh(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "qemu-system-x86_64"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    let files = [OVMF_CODE, OVMF_VARS]
        .iter()
        .chain(&["/usr/lib/ipxe/snponly.efi"])
        .all(|f| Path::new(f).is_file());
    if !(root && tools && files) {
        assert!(
            !common::must_not_skip(),
            "needs root, ip, qemu-system-x86_64, {OVMF_CODE} and {LOADERS}/snponly.efi \
             (apt-get install iproute2 qemu-system-x86 ovmf ipxe)"
        );
        eprintln!("SKIPPED: needs root, ip, QEMU, OVMF and ipxe");
    }
    root && tools && files
}

/// QEMU, killed on drop.
struct Machine(Child);

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Puts the link's client end on a bridge with a tap in the namespace and
/// starts the machine there, its serial console written to `console`.
fn boot(link: &Link, console: &Path) -> Machine {
    let ns = link.ns.as_str();
    let vars = link.dir.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    for args in [
        &[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ][..],
        &["ip", "link", "set", &link.client_if, "master", "br0"],
        &["ip", "link", "set", &link.client_if, "up"],
        &["ip", "tuntap", "add", "tap0", "mode", "tap"],
        &["ip", "link", "set", "tap0", "master", "br0"],
        &["ip", "link", "set", "tap0", "up"],
        &["ip", "link", "set", "br0", "up"],
    ] {
        let mut a = vec!["ip", "netns", "exec", ns];
        a.extend_from_slice(args);
        ok(&a);
    }
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "qemu-system-x86_64"])
        .args(["-machine", "q35,accel=tcg", "-m", "512", "-smp", "1"])
        .args(["-display", "none", "-nodefaults", "-no-reboot"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        // No option ROM: the firmware's own PXE boots, not iPXE's.
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=n0,mac={MAC},romfile=,bootindex=1"
        ))
        .arg("-chardev")
        .arg(format!("file,id=s0,path={}", console.display()))
        .args(["-serial", "chardev:s0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Machine(child)
}

/// The console without its escape sequences.
fn console_text(console: &Path) -> String {
    let raw = std::fs::read(console).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Where each of `marks` first appears in `text`, after the previous one.
fn in_order(text: &str, marks: &[&str]) -> Result<(), String> {
    let mut from = 0;
    for m in marks {
        match text[from..].find(m) {
            Some(i) => from += i + m.len(),
            None => return Err(format!("missing (in order): {m:?}")),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_pxe_to_tftp_ipxe_to_http_boot_script() {
    if !usable() {
        return;
    }
    let link = Link::new(7);
    let dbdir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", dbdir.path().display());
    let mut cfg = common::test_config(&db);
    // The API (and so /boot/*) where the machine reaches it.
    cfg.listen = std::net::SocketAddr::from((link.server_ip, 0));
    cfg.auth.allow_noauth_on_network = true;
    cfg.dhcp = DhcpConfig {
        enabled: true,
        interface: link.server_if.clone(),
        server_ip: Some(link.server_ip),
        range_start: Some(link.ip(100)),
        range_end: Some(link.ip(110)),
        advertise_no_ipv6_router: true,
        ..DhcpConfig::default()
    };
    cfg.tftp = TftpConfig {
        enabled: true,
        listen: std::net::SocketAddr::from((link.server_ip, 69)),
        root: Some(LOADERS.into()),
        ..TftpConfig::default()
    };
    let (running, api) = common::start_with(cfg).await;
    let node = api
        .create_node(json!({"driver": "fake-hardware", "name": "chain"}))
        .await;
    let (st, body) = api
        .post("/v1/ports", json!({"address": MAC, "node_uuid": node}))
        .await;
    assert_eq!(st, 201, "{body}");
    // Straight to inspect wait in the database: the conductor's verbs would
    // power a fake node and start timers that have nothing to do with this.
    running
        .conductor
        .db()
        .update_node::<(), _>(&node, |n| {
            n.provision_state = ProvisionState::InspectWait;
            Ok(())
        })
        .await
        .unwrap();

    let console = link.dir.path().join("console.log");
    let started = Instant::now();
    let machine = boot(&link, &console);
    let marks = [
        // OVMF's PXE: DHCP from us, the UEFI loader over our TFTP.
        "Start PXE over IPv4",
        "NBP filename is snponly.efi",
        "NBP file downloaded successfully",
        // The iPXE it loaded: DHCP again, as iPXE, then HTTP.
        "iPXE initialising devices",
        "/boot/boot.ipxe... ok",
        "/boot/ipxe/",
        "Ingot: node chain is inspect wait: booting the agent ramdisk",
    ];
    let text = loop {
        let text = console_text(&console);
        if in_order(&text, &marks).is_ok() || started.elapsed() > DEADLINE {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(machine);
    if let Err(e) = in_order(&text, &marks) {
        panic!("{e} after {:?}; console:\n{text}", started.elapsed());
    }
    eprintln!(
        "firmware PXE → TFTP snponly.efi → iPXE → boot.ipxe → per-MAC script: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // iPXE was told where to go by our DHCP: the lease is ours.
    let leases = running.conductor.db().list_dhcp_leases().await.unwrap();
    assert!(
        leases.iter().any(|l| l.mac == MAC),
        "no lease for {MAC}: {leases:?}"
    );
    running.shutdown().await;
    // The namespace (bridge, tap, client end) goes with the link.
    drop(link);
}

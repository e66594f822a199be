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
use std::time::{Duration, Instant};

use common::link::{Link, sh};
use common::pxe_vm::{self, Firmware, console_text, in_order};
use ingot_coordinator::config::{DhcpConfig, TftpConfig};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const LOADERS: &str = "/usr/lib/ipxe";
const MAC: &str = "52:54:00:d1:0e:f1";
const FIRMWARE: Firmware = Firmware {
    qemu: "qemu-system-x86_64",
    machine: &["-machine", "q35,accel=tcg", "-m", "512", "-smp", "1"],
    code: OVMF_CODE,
    vars: OVMF_VARS,
};
/// The chain takes about 12 s under TCG on a quiet machine; the shared CI
/// machine gets room.
const DEADLINE: Duration = Duration::from_secs(300);

fn usable() -> bool {
    let root = sh(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "qemu-system-x86_64"].iter().all(|t| pxe_vm::have(t));
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
    pxe_vm::node_in_inspect_wait(&running, &api, "chain", MAC).await;

    let console = link.dir.path().join("console.log");
    let started = Instant::now();
    let machine = pxe_vm::boot(&link, &FIRMWARE, MAC, &console);
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

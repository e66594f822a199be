//! arm64 UEFI network boot end to end, against the coordinator's own DHCP,
//! TFTP and generated `grub.cfg` (issue 20 item 3).
//!
//! A QEMU aarch64 machine (`-M virt -cpu max`, TCG) under AAVMF (Debian's
//! `qemu-efi-aarch64`, with a writable copy of its variables), whose virtio
//! NIC has no option ROM, on a bridge in a network namespace joined by a veth
//! pair to the coordinator in this process (`[dhcp]` full mode, `[tftp]`,
//! `[boot.by_arch.aarch64]` = the arm64 ramdisk). The console must show, in
//! this order:
//!
//! 1. the firmware's PXE getting `grubnetaa64.efi` (Debian's signed network
//!    GRUB; client architecture 11) and downloading it over TFTP;
//! 2. GRUB running the node's generated `grub.cfg` (the node is in
//!    `inspect wait` and has no `cpu_arch`: the DHCP-reported architecture
//!    picks the arm64 files);
//! 3. the arm64 kernel and then the agent starting as `/init`.
//!
//! Then the agent must look itself up at the coordinator (the node gets an
//! `agent_url`) and inspection must record `cpu_arch` = `aarch64` from its
//! inventory. Prints the seconds from QEMU's start to each step (about
//! 13 s to GRUB, 36 s to the kernel, 40 s to the lookup here, loaded).
//!
//! Needs root, `ip`, `qemu-system-aarch64`, AAVMF, `grubnetaa64.efi.signed`
//! (`cargo xtask agent --arch aarch64` installs them) and the arm64 ramdisk
//! (`cargo xtask ramdisk --arch aarch64`, or `INGOT_ARM64_RAMDISK_DIR`);
//! skipped without them, under CI too (`cargo xtask test` builds the aarch64
//! agent after the test gate, and its lab's aarch64 server boots the same
//! way: `cargo xtask e2e --arch aarch64`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::link::{Link, sh};
use common::pxe_vm::{self, Firmware, console_text, in_order};
use ingot_coordinator::config::{ArchFiles, DhcpConfig, TftpConfig};

const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";
const GRUB: &str = "/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed";
const MAC: &str = "52:54:00:a6:0e:f1";
const FIRMWARE: Firmware = Firmware {
    qemu: "qemu-system-aarch64",
    machine: &[
        "-machine",
        "virt,accel=tcg",
        "-cpu",
        "max,pauth-impdef=on",
        "-m",
        "1024",
        "-smp",
        "1",
    ],
    code: AAVMF_CODE,
    vars: AAVMF_VARS,
};
/// TCG arm64 is slow and the CI machine is shared.
const DEADLINE: Duration = Duration::from_secs(900);

/// The arm64 kernel and ramdisk `cargo xtask ramdisk --arch aarch64` built.
fn ramdisk_dir() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("INGOT_ARM64_RAMDISK_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("ramdisk-aarch64")),
        )
        .chain([workspace.join("target/ramdisk-aarch64")])
        .find(|d| d.join("vmlinuz").is_file() && d.join("initramfs.img").is_file())
}

fn usable() -> Option<PathBuf> {
    let root = sh(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "qemu-system-aarch64"]
        .iter()
        .all(|t| pxe_vm::have(t));
    let files = [AAVMF_CODE, AAVMF_VARS, GRUB]
        .iter()
        .all(|f| Path::new(f).is_file());
    // Skipped, not failed, under CI too: `cargo xtask test` builds the
    // aarch64 agent after its test gate (the multi-architecture lab boots
    // the same way), so this runs where `cargo xtask ramdisk --arch aarch64` did.
    if !(root && tools && files) {
        eprintln!("SKIPPED: needs root, ip, qemu-system-aarch64, AAVMF and grub-efi-arm64-signed");
        return None;
    }
    let dir = ramdisk_dir();
    if dir.is_none() {
        eprintln!("SKIPPED: no arm64 ramdisk (cargo xtask ramdisk --arch aarch64)");
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_firmware_pxe_to_grub_to_the_agent() {
    let Some(ramdisk) = usable() else {
        return;
    };
    let link = Link::new(8);
    let dbdir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", dbdir.path().display());
    let mut cfg = common::test_config(&db);
    cfg.listen = std::net::SocketAddr::from((link.server_ip, 0));
    cfg.auth.allow_noauth_on_network = true;
    cfg.boot.by_arch.insert(
        "aarch64".into(),
        ArchFiles {
            kernel: Some(ramdisk.join("vmlinuz")),
            initramfs: Some(ramdisk.join("initramfs.img")),
            kernel_params: Some("console=ttyAMA0".into()),
        },
    );
    cfg.dhcp = DhcpConfig {
        enabled: true,
        interface: link.server_if.clone(),
        server_ip: Some(link.server_ip),
        range_start: Some(link.ip(100)),
        range_end: Some(link.ip(110)),
        advertise_no_ipv6_router: true,
        ..DhcpConfig::default()
    };
    // An empty root: every file GRUB needs is the coordinator's own.
    let root = dbdir.path().join("tftp");
    std::fs::create_dir_all(&root).unwrap();
    cfg.tftp = TftpConfig {
        enabled: true,
        listen: std::net::SocketAddr::from((link.server_ip, 69)),
        root: Some(root),
        ..TftpConfig::default()
    };
    let (running, api) = common::start_with(cfg).await;
    let node = pxe_vm::node_in_inspect_wait(&running, &api, "armchain", MAC).await;

    let console = link.dir.path().join("console.log");
    let started = Instant::now();
    let machine = pxe_vm::boot(&link, &FIRMWARE, MAC, &console);
    let marks = [
        "Start PXE over IPv4",
        "NBP filename is grubnetaa64.efi",
        "NBP file downloaded successfully",
        "Ingot: node armchain is inspect wait: booting the agent ramdisk",
        "Linux version",
        "ingot-agent starting as init",
    ];
    let mut seen = Vec::new();
    let mut looked_up = None;
    let text = loop {
        let text = console_text(&console);
        while seen.len() < marks.len() && in_order(&text, &marks[..=seen.len()]).is_ok() {
            seen.push(started.elapsed());
        }
        if seen.len() == marks.len() && looked_up.is_none() {
            let (n, _) = running
                .conductor
                .db()
                .get_node(&node)
                .await
                .unwrap()
                .unwrap();
            // The agent_url goes again when inspection ends, which can be
            // within a poll interval: inspection's result counts too.
            if n.driver_internal_info.contains_key("agent_url")
                || n.properties.contains_key("cpu_arch")
            {
                looked_up = Some(started.elapsed());
            }
        }
        if looked_up.is_some() || started.elapsed() > DEADLINE {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (m, t) in marks.iter().zip(&seen) {
        eprintln!("{:>7.1} s  {m}", t.as_secs_f64());
    }
    if let Err(e) = in_order(&text, &marks) {
        drop(machine);
        panic!("{e} after {:?}; console:\n{text}", started.elapsed());
    }
    let Some(t) = looked_up else {
        panic!("the agent never looked itself up; console:\n{text}");
    };
    eprintln!("{:>7.1} s  the agent looked itself up", t.as_secs_f64());
    // Inspection with the agent's inventory: the node is aarch64 now.
    let arch = loop {
        let (n, _) = running
            .conductor
            .db()
            .get_node(&node)
            .await
            .unwrap()
            .unwrap();
        let arch = n
            .properties
            .get("cpu_arch")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if arch.is_some() || started.elapsed() > DEADLINE {
            break arch;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(arch.as_deref(), Some("aarch64"), "inspection's cpu_arch");
    eprintln!(
        "{:>7.1} s  inspected: cpu_arch aarch64",
        started.elapsed().as_secs_f64()
    );
    drop(machine);
    running.shutdown().await;
    drop(link);
}

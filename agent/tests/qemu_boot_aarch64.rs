//! The aarch64 ramdisk boots in QEMU (TCG) to a heartbeat: `ingot-ramdisk`
//! builds it from Debian's current arm64 kernel and the static aarch64 musl
//! agent, `qemu-system-aarch64 -M virt -cpu cortex-a57` boots it with `-kernel`
//! (1 GiB of RAM, a virtio disk and a virtio NIC on user networking), and the
//! test coordinator on the host (10.0.2.2 from the guest) sees the agent look
//! itself up by MAC and heartbeat. The test then asks the agent for its
//! inventory through a forwarded port: architecture aarch64, the CPU named
//! from its MIDR, the virtio disk and NIC. It records the seconds from QEMU's
//! start to `/init` and to the first heartbeat.
//!
//! Skipped (with a message) without `qemu-system-aarch64` (package
//! qemu-system-arm), without the aarch64 agent, or without Debian's arm64
//! packages: `cargo xtask agent --arch aarch64` builds the agent and adds the
//! architecture. Not a CI gate yet (docs/architectures.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod agent_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{Conductor, Coordinator};
use ingot_initramfs::modules::Class;
use ingot_initramfs::{Arch, BuildOptions, Compression};
use serde_json::json;

const MAC: &str = "52:54:00:12:34:a6";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The static aarch64 agent `cargo xtask agent --arch aarch64` builds, from
/// `CARGO_TARGET_DIR` or the workspace's target directory.
fn aarch64_agent() -> Option<PathBuf> {
    let rel = "aarch64-unknown-linux-musl/agent/ingot-agent";
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join(rel))
        .into_iter()
        .chain([workspace().join("target").join(rel)])
        .find(|p| p.is_file())
}

fn prerequisites() -> Option<PathBuf> {
    let qemu = Command::new("qemu-system-aarch64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !qemu {
        eprintln!("SKIPPED: qemu-system-aarch64 not installed (package qemu-system-arm)");
        return None;
    }
    let arm64 = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "arm64")
        });
    if !arm64 {
        eprintln!("SKIPPED: dpkg has no arm64 architecture (cargo xtask agent --arch aarch64)");
        return None;
    }
    let agent = aarch64_agent();
    if agent.is_none() {
        eprintln!("SKIPPED: no aarch64 agent (cargo xtask agent --arch aarch64)");
    }
    agent
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes terminal colour sequences (the console is a tty).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn arm64_ramdisk_boots_to_a_heartbeat_with_its_inventory() {
    let Some(agent) = prerequisites() else {
        return;
    };
    let kernel = ingot_initramfs::fetch::debian(&workspace().join("target/kernel"), "arm64")
        .expect("fetch Debian's arm64 kernel");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-boot-aarch64");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = ingot_initramfs::build(&BuildOptions {
        kernel: kernel.vmlinuz.clone(),
        modules: kernel.modules.clone(),
        firmware: None,
        agent,
        arch: Arch::Aarch64,
        compress: Compression::Zstd,
        level: 3,
        classes: Class::ALL.to_vec(),
        extra: vec![],
        mtime: 0,
        out: dir.join("ramdisk"),
    })
    .unwrap();
    let disk = dir.join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    // As in qemu_boot.rs: the guest reaches the host's 127.0.0.1 as 10.0.2.2,
    // and API 1.67 keeps the agent on plain HTTP.
    let coord = Coordinator::start(MAC, "1.67");
    let port = coord.addr.port();
    let fwd = free_port();
    let console = dir.join("console.log");
    let started = Instant::now();
    let vm = Vm(Command::new("qemu-system-aarch64")
        .args(["-machine", "virt,accel=tcg", "-cpu", "cortex-a57"])
        .args(["-m", "1024", "-smp", "1"])
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(dir.join("ramdisk/vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("ramdisk/initramfs.img"))
        .arg("-append")
        .arg(format!(
            "console=ttyAMA0 ingot.api=http://10.0.2.2:{port} BOOTIF=01-{} ingot.reboot_timeout=5",
            MAC.replace(':', "-")
        ))
        .arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{fwd}-:9999"))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={MAC}"))
        .arg("-drive")
        .arg(format!("file={},if=none,id=d0,format=raw", disk.display()))
        .args(["-device", "virtio-blk-pci,drive=d0,serial=INGOT-QEMU-DISK"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu"));

    // An emulated Arm CPU under TCG is slower than an emulated x86 one:
    // allow minutes, report seconds.
    let deadline = started + Duration::from_secs(480);
    let mut to_init = None;
    let heartbeat = loop {
        if to_init.is_none()
            && std::fs::read_to_string(&console)
                .is_ok_and(|l| l.contains("ingot-agent starting as init"))
        {
            to_init = Some(started.elapsed().as_secs_f64());
        }
        let hb = coord
            .state
            .lock()
            .unwrap()
            .seen
            .iter()
            .find(|s| s.path.starts_with("/v1/heartbeat/") && s.status == 202)
            .cloned();
        if let Some(hb) = hb {
            break hb;
        }
        if Instant::now() > deadline {
            drop(vm);
            panic!(
                "no heartbeat within 480 s; console:\n{}",
                std::fs::read_to_string(&console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let to_heartbeat = started.elapsed().as_secs_f64();
    let log = strip_ansi(&std::fs::read_to_string(&console).unwrap_or_default());

    let seen = coord.state.lock().unwrap().seen.clone();
    let lookup = seen
        .iter()
        .find(|s| s.path.starts_with("/v1/lookup"))
        .unwrap();
    assert!(
        lookup
            .path
            .to_lowercase()
            .contains(&MAC.replace(':', "%3a"))
            || lookup.path.contains(MAC),
        "{}",
        lookup.path
    );
    // virtio-pci, virtio-net and virtio-blk are modules in Debian's arm64
    // kernel: coldplug loaded them from the ramdisk.
    for m in ["virtio_pci", "virtio_net", "virtio_blk"] {
        assert!(
            log.lines()
                .any(|l| l.contains("module loaded") && l.contains(&format!("module={m} "))),
            "{m} not loaded:\n{log}"
        );
    }
    assert!(log.contains("DHCP lease"), "no DHCP lease:\n{log}");

    let mut c = Conductor::from_heartbeat(&heartbeat);
    c.base = format!("http://127.0.0.1:{fwd}");
    let (status, result) = c.command("poll.get_hardware_info", json!({}), true);
    assert_eq!(status, 200, "{result}");
    let inv = &result["command_result"];
    let inv = if inv.get("inventory").is_some() {
        &inv["inventory"]
    } else {
        inv
    };
    assert_eq!(inv["cpu"]["architecture"], "aarch64", "{inv:#}");
    assert_eq!(inv["cpu"]["model_name"], "Cortex-A57", "{inv:#}");
    assert_eq!(inv["cpu"]["count"], 1, "{inv:#}");
    let disks = inv["disks"].as_array().unwrap();
    let vda = disks
        .iter()
        .find(|d| d["name"] == "/dev/vda")
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(vda["size"], 64u64 << 20);
    assert_eq!(vda["serial"], "INGOT-QEMU-DISK");
    let nic = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["mac_address"] == MAC)
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(nic["ipv4_address"], "10.0.2.15");
    assert_eq!(nic["driver"], "virtio_net");

    let figures = json!({
        "seconds_qemu_start_to_init": to_init,
        "seconds_qemu_start_to_first_heartbeat": to_heartbeat,
        "initramfs_bytes": manifest.totals.initramfs_bytes,
        "initramfs_compression": "zstd -3 (test build)",
        "kernel_bytes": manifest.totals.kernel_bytes,
        "modules": manifest.modules.len(),
        "kernel": manifest.kernel_version,
    });
    std::fs::write(
        dir.join("figures.json"),
        serde_json::to_vec_pretty(&figures).unwrap(),
    )
    .unwrap();
    eprintln!("aarch64 boot figures: {figures}");
}

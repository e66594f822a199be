//! The ramdisk boots in QEMU (TCG) to a heartbeat: `ingot-ramdisk` builds it
//! from the current Debian kernel and the static musl agent, QEMU boots it
//! with 1 GiB of RAM, a virtio disk and a virtio NIC on user networking, and
//! the test coordinator on the host (10.0.2.2 from the guest) sees the agent
//! look itself up by MAC and heartbeat. The test then asks the agent for its
//! inventory through a forwarded port and checks the virtio disk and NIC.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod agent_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{Conductor, Coordinator};
use ingot_initramfs::modules::Class;
use ingot_initramfs::{Arch, BuildOptions, Compression};
use serde_json::{Value, json};

const MAC: &str = "52:54:00:12:34:56";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The static agent CI builds; built here when missing.
fn static_agent() -> PathBuf {
    let path = workspace().join("target/x86_64-unknown-linux-musl/agent/ingot-agent");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "--profile",
                "agent",
                "--target",
                "x86_64-unknown-linux-musl",
                "-p",
                "ingot-agent",
            ])
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(st.success(), "building the static agent failed");
    }
    path
}

fn qemu_available() -> bool {
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var("INGOT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(
        found || !required,
        "qemu-system-x86_64 is needed (package qemu-system-x86)"
    );
    if !found {
        eprintln!("SKIPPED: qemu-system-x86_64 not installed");
    }
    found
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
fn ramdisk_boots_to_a_heartbeat_with_its_inventory() {
    if !qemu_available() {
        return;
    }
    let agent = static_agent();
    let kernel = ingot_initramfs::fetch::debian(&workspace().join("target/kernel"), "amd64")
        .expect("fetch the Debian kernel");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-boot");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = ingot_initramfs::build(&BuildOptions {
        kernel: kernel.vmlinuz.clone(),
        modules: kernel.modules.clone(),
        firmware: None,
        agent,
        arch: Arch::X86_64,
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

    // The guest reaches the host's 127.0.0.1 as 10.0.2.2. The API version is
    // kept below 1.68 so the agent serves plain HTTP: the forwarded port is
    // 127.0.0.1, not the address its certificate would name.
    let coord = Coordinator::start(MAC, "1.67");
    let port = coord.addr.port();
    let fwd = free_port();
    let console = dir.join("console.log");
    let started = Instant::now();
    let vm = Vm(Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,accel=tcg", "-m", "1024", "-smp", "1"])
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(dir.join("ramdisk/vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("ramdisk/initramfs.img"))
        .arg("-append")
        .arg(format!(
            "console=ttyS0 ingot.api=http://10.0.2.2:{port} BOOTIF=01-{} ingot.reboot_timeout=5",
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

    // TCG on a loaded 2-core machine is slow: allow minutes, report seconds.
    let deadline = started + Duration::from_secs(240);
    let heartbeat = loop {
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
                "no heartbeat within 240 s; console:\n{}",
                std::fs::read_to_string(&console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let to_heartbeat = started.elapsed().as_secs_f64();
    let log = strip_ansi(&std::fs::read_to_string(&console).unwrap_or_default());

    // It looked itself up by its MAC.
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
    // The right modules came from the ramdisk, and DHCP gave it a lease.
    for m in ["virtio_net", "virtio_blk"] {
        assert!(
            log.lines()
                .any(|l| l.contains("module loaded") && l.contains(&format!("module={m} "))),
            "{m} not loaded:\n{log}"
        );
    }
    assert!(log.contains("DHCP lease"), "no DHCP lease:\n{log}");

    // The inventory lists the virtio disk and NIC.
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
    let disks = inv["disks"].as_array().unwrap();
    let vda = disks
        .iter()
        .find(|d| d["name"] == "/dev/vda")
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(vda["size"], 64u64 << 20);
    assert_eq!(vda["serial"], "INGOT-QEMU-DISK");
    let nics = inv["interfaces"].as_array().unwrap();
    let nic = nics
        .iter()
        .find(|n| n["mac_address"] == MAC)
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(nic["ipv4_address"], "10.0.2.15");
    assert_eq!(nic["driver"], "virtio_net");

    let figures = json!({
        "seconds_qemu_start_to_first_heartbeat": to_heartbeat,
        "initramfs_bytes": manifest.totals.initramfs_bytes,
        "initramfs_compression": "zstd -3 (test build)",
        "modules": manifest.modules.len(),
        "kernel": manifest.kernel_version,
    });
    std::fs::write(
        dir.join("figures.json"),
        serde_json::to_vec_pretty(&figures).unwrap(),
    )
    .unwrap();
    eprintln!("boot figures: {figures}");
    let _: &Value = &figures;
}

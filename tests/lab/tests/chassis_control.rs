//! The chassis_control program as ipmi_sim runs it: the real `ingot-lab`
//! binary, with a stand-in for QEMU (a shell loop whose command line names
//! `qemu-system`, so the liveness check accepts it). QEMU itself is booted by
//! the lab (`cargo xtask e2e`); here only the program's contract is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn chassis(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ingot-lab"))
        .arg("chassis-control")
        .arg(dir)
        .arg("0x20")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn fake_qemu(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("qemu-system-fake");
    std::fs::write(&p, "#!/bin/sh\nwhile :; do sleep 1; done\n").unwrap();
    Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    p
}

fn spec(dir: &Path, fake: &Path) {
    let argv = |tag: &str| vec![fake.display().to_string(), tag.to_owned()];
    std::fs::write(
        dir.join("node.json"),
        serde_json::to_vec(
            &serde_json::json!({"argv_pxe": argv("pxe"), "argv_disk": argv("disk")}),
        )
        .unwrap(),
    )
    .unwrap();
}

/// Powers the stand-in off when a test ends, failed or not (it runs
/// detached in its own process group and would otherwise loop for ever).
struct PowerOffOnDrop<'a>(&'a Path);

impl Drop for PowerOffOnDrop<'_> {
    fn drop(&mut self) {
        chassis(self.0, &["set", "power", "0"]);
    }
}

fn pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn boot_device_and_power_follow_the_bmc() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    spec(d, &fake_qemu(d));
    let _off = PowerOffOnDrop(d);

    assert_eq!(chassis(d, &["get", "power"]), (true, "power:0\n".into()));
    assert_eq!(
        chassis(d, &["get", "boot"]),
        (true, "boot:default\n".into())
    );
    assert!(chassis(d, &["set", "boot", "pxe"]).0);
    assert_eq!(
        chassis(d, &["get", "power", "boot"]).1,
        "power:0\nboot:pxe\n"
    );

    // Power on starts the command line for the boot device, detached.
    assert!(chassis(d, &["set", "power", "1"]).0);
    assert_eq!(chassis(d, &["get", "power"]).1, "power:1\n");
    let first = pid(d);
    let cmdline = std::fs::read(format!("/proc/{first}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).ends_with("pxe\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );

    // A reset starts a new process that applies the new boot device.
    assert!(chassis(d, &["set", "boot", "default"]).0);
    assert!(chassis(d, &["set", "reset", "1"]).0);
    let second = pid(d);
    assert_ne!(first, second);
    let cmdline = std::fs::read(format!("/proc/{second}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).ends_with("disk\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );

    assert!(chassis(d, &["set", "power", "0"]).0);
    assert_eq!(chassis(d, &["get", "power"]).1, "power:0\n");
    let events = std::fs::read_to_string(d.join("chassis-events.log")).unwrap();
    assert_eq!(events.matches("power on: ").count(), 2, "{events}");
    assert_eq!(events.matches("power off: ").count(), 2, "{events}");
}

#[test]
fn bad_requests_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out) = chassis(d, &["set", "boot", "floppy"]);
    assert!(!ok);
    assert!(out.contains("Invalid boot value: floppy"), "{out}");
    let (ok, out) = chassis(d, &["get", "temperature"]);
    assert!(!ok);
    assert!(out.contains("Invalid parameter"), "{out}");
    // Power on without node.json says what is missing.
    let (ok, out) = chassis(d, &["set", "power", "1"]);
    assert!(!ok);
    assert!(out.contains("node.json"), "{out}");
}

/// ipmi_sim's sockets are not close-on-exec; the server must not inherit them
/// (a restarted BMC could not bind its port while QEMU holds it).
#[test]
fn the_server_does_not_inherit_the_bmc_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    spec(d, &fake_qemu(d));
    let _off = PowerOffOnDrop(d);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fd = sock.as_raw_fd();
    // SAFETY: clears FD_CLOEXEC on a socket this test owns, as ipmi_sim's are.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    assert!(chassis(d, &["set", "power", "1"]).0);
    let p = pid(d);
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let held: Vec<_> = loop {
        let held: Vec<_> = std::fs::read_dir(format!("/proc/{p}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect();
        if !held.is_empty() || Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(chassis(d, &["set", "power", "0"]).0);
    assert!(
        !held.contains(&target),
        "the server inherited the BMC socket {target:?}: {held:?}"
    );
}

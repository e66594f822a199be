//! The BMC's hands: ipmi_sim's `chassis_control` program.
//!
//! ipmi_sim runs `<command> get power`, `<command> set power 1`, `set reset 1`,
//! `set shutdown 1`, `set boot pxe|default|cdrom|bios`, … (see OpenIPMI's
//! `ipmi_sim_chassiscontrol`), reads its output until EOF and blocks the BMC
//! meanwhile. This program therefore starts QEMU detached and returns at once.
//!
//! A real server applies a new boot device at its next boot; QEMU fixes its
//! boot order when it starts, so the program keeps the boot device in the node
//! directory and a reset or power-on starts a fresh QEMU with the matching
//! `bootindex` order (`node.json` holds one command line per boot device).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::proc;

/// What the chassis_control program needs to know about the node, written by
/// the lab into `<node dir>/node.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeSpec {
    /// QEMU's command line when the boot device is the network.
    pub argv_pxe: Vec<String>,
    /// QEMU's command line when the boot device is the disk (`default`).
    pub argv_disk: Vec<String>,
}

/// Files of one node directory.
pub struct NodeDir(pub PathBuf);

impl NodeDir {
    /// `node.json`.
    pub fn spec(&self) -> PathBuf {
        self.0.join("node.json")
    }
    /// The QEMU pid file.
    pub fn pid(&self) -> PathBuf {
        self.0.join("qemu.pid")
    }
    /// The stored boot device.
    pub fn bootdev(&self) -> PathBuf {
        self.0.join("bootdev")
    }
    /// What the BMC asked for, one line each, with Unix times.
    pub fn events(&self) -> PathBuf {
        self.0.join("chassis-events.log")
    }
    /// QEMU's own stdout and stderr.
    pub fn qemu_out(&self) -> PathBuf {
        self.0.join("qemu.out")
    }
    /// QEMU's monitor (QMP) socket.
    pub fn qmp(&self) -> PathBuf {
        self.0.join("qmp.sock")
    }

    fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        proc::alive(pid, "qemu-system").then_some(pid)
    }

    /// True while the node's QEMU runs ("power is on").
    pub fn powered(&self) -> bool {
        self.running_pid().is_some()
    }

    fn log(&self, what: &str) {
        proc::append_line(&self.events(), &format!("{:.3} {what}", proc::unix_now()));
    }

    fn power_on(&self) -> Result<()> {
        if self.powered() {
            return Ok(());
        }
        let spec: NodeSpec = serde_json::from_slice(
            &std::fs::read(self.spec()).with_context(|| format!("{}", self.spec().display()))?,
        )?;
        let bootdev = std::fs::read_to_string(self.bootdev()).unwrap_or_default();
        let argv = if bootdev.trim() == "pxe" {
            &spec.argv_pxe
        } else {
            &spec.argv_disk
        };
        let (bin, args) = argv.split_first().context("empty QEMU command line")?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.qemu_out())?;
        proc::cloexec_inherited_fds();
        let _ = std::fs::remove_file(self.qmp());
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(bin)
                .args(args)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {bin}"))?
        };
        // spawn returns once the child has let go of our memory, which is
        // before the kernel has put its new command line in place: until
        // then /proc shows an empty one and `powered()` would say off, so a
        // `get power` right after this one would too. Wait for it (a QEMU
        // that dies at once never shows it: the next `get power` says off).
        let deadline = Instant::now() + Duration::from_secs(2);
        while !proc::alive(child.id(), "qemu-system") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::write(self.pid(), child.id().to_string())?;
        self.log(&format!(
            "power on: qemu pid {} boot {}",
            child.id(),
            bootdev.trim()
        ));
        Ok(())
    }

    /// Powers the server off: SIGTERM to QEMU, SIGKILL after 3 s (nothing
    /// to do when it is not running).
    pub fn power_off(&self) {
        let Some(pid) = self.running_pid() else {
            let _ = std::fs::remove_file(self.pid());
            return;
        };
        let Ok(ipid) = i32::try_from(pid) else { return };
        // SAFETY: kill(2) on the pid we started, checked alive just above.
        unsafe { libc::kill(ipid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while proc::alive(pid, "qemu-system") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if proc::alive(pid, "qemu-system") {
            // SAFETY: as above.
            unsafe { libc::kill(ipid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(self.pid());
        self.log(&format!("power off: qemu pid {pid}"));
    }

    /// ACPI power button through QMP.
    fn soft_off(&self) {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.qmp()) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = s
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"system_powerdown\"}\n");
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        self.log("soft off (ACPI power button)");
    }
}

/// Runs one chassis_control request: `args` = `<mc> get|set|check …`.
/// Returns the text ipmi_sim reads.
pub fn run(node_dir: &Path, args: &[String]) -> Result<String> {
    let node = NodeDir(node_dir.to_path_buf());
    let (_mc, rest) = args.split_first().context("missing MC address")?;
    let (op, params) = rest.split_first().context("missing operation")?;
    let mut out = String::new();
    match op.as_str() {
        "get" => {
            for p in params {
                match p.as_str() {
                    "power" => out.push_str(if node.powered() {
                        "power:1\n"
                    } else {
                        "power:0\n"
                    }),
                    "boot" => {
                        let b = std::fs::read_to_string(node.bootdev()).unwrap_or_default();
                        let b = if b.trim().is_empty() {
                            "default"
                        } else {
                            b.trim()
                        };
                        out.push_str(&format!("boot:{b}\n"));
                    }
                    other => bail!("Invalid parameter: {other}"),
                }
            }
        }
        "set" => {
            let mut it = params.iter();
            while let Some(p) = it.next() {
                let v = it.next().map(String::as_str).unwrap_or("");
                node.log(&format!("set {p} {v}"));
                match p.as_str() {
                    "power" if v == "1" => node.power_on()?,
                    "power" => node.power_off(),
                    "reset" => {
                        if node.powered() {
                            node.power_off();
                            node.power_on()?;
                        }
                    }
                    "shutdown" => node.soft_off(),
                    "boot" => match v {
                        "none" | "pxe" | "default" | "cdrom" | "bios" => {
                            std::fs::write(node.bootdev(), v)?
                        }
                        other => bail!("Invalid boot value: {other}"),
                    },
                    // "interval force": two words.
                    "identify" => {
                        it.next();
                    }
                    other => bail!("Invalid parameter: {other}"),
                }
            }
        }
        // No check support: ipmi_sim then assumes the program works.
        "check" => bail!("check not supported"),
        other => bail!("Unknown operation: {other}"),
    }
    Ok(out)
}

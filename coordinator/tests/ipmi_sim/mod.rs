//! An OpenIPMI `ipmi_sim` BMC on 127.0.0.1 and a free UDP port for the
//! IPMI tests. Power and boot-device requests go to `chassis_control.sh`
//! (next to this file), which records them in the BMC's directory instead
//! of starting a VM.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_ipmi::packet;

/// User name and password of the simulated BMC's admin user.
pub const USER: &str = "admin";
/// Password of [`USER`].
pub const PASSWORD: &str = "ingot-pass";

/// A running ipmi_sim (killed on drop).
pub struct IpmiSim {
    /// UDP port on 127.0.0.1.
    pub port: u16,
    /// Directory of config, state and the chassis_control records.
    pub dir: tempfile::TempDir,
    child: Child,
    extra: String,
    auths: String,
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ipmi_sim/chassis_control.sh")
}

impl IpmiSim {
    /// Starts a BMC; `None` (test skipped) when ipmi_sim is not installed and
    /// the environment allows skipping.
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// Starts a BMC with extra MC-level lines in lan.conf (e.g. a `sol` line).
    pub fn start_with(extra: &str) -> Option<Self> {
        Self::start_configured(extra, "none md2 md5 straight")
    }

    /// Starts a BMC with extra MC-level lines and the IPMI 1.5 auth types
    /// its LAN channel allows (`allowed_auths_*`, e.g. "straight").
    pub fn start_configured(extra: &str, auths: &str) -> Option<Self> {
        if !have("ipmi_sim") {
            assert!(
                !super::common::must_not_skip(),
                "ipmi_sim is required (apt-get install openipmi)"
            );
            eprintln!("SKIPPED: ipmi_sim not installed (Debian package openipmi)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let (port, child) = launch(dir.path(), None, extra, auths);
        Some(Self {
            port,
            dir,
            child,
            extra: extra.to_owned(),
            auths: auths.to_owned(),
        })
    }

    /// Kills the BMC and starts a new one on the same port (sessions are lost).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (_, child) = launch(self.dir.path(), Some(self.port), &self.extra, &self.auths);
        self.child = child;
    }

    /// Requests the chassis_control program received (`set power 1`, `set boot pxe`, …).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs `ipmitool -I lanplus -C 3` against this BMC and returns stdout.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        self.ipmitool_over(&["-I", "lanplus", "-C", "3"], args)
    }

    /// Runs `ipmitool -I lan` (IPMI 1.5 sessions) against this BMC and returns stdout.
    pub fn ipmitool_lan(&self, args: &[&str]) -> String {
        self.ipmitool_over(&["-I", "lan"], args)
    }

    /// Runs ipmitool with the given interface options against this BMC.
    pub fn ipmitool_over(&self, iface: &[&str], args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args(iface)
            .args(["-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", USER, "-P", PASSWORD, "-R", "2", "-N", "1"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ipmitool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// driver_info for a node on this BMC.
    pub fn driver_info(&self) -> serde_json::Value {
        serde_json::json!({
            "ipmi_address": "127.0.0.1",
            "ipmi_port": self.port,
            "ipmi_username": USER,
            "ipmi_password": PASSWORD,
        })
    }
}

/// Writes the config into `dir` and starts ipmi_sim on `port` (a free one
/// when `None`), waiting until it answers.
fn launch(dir: &Path, port: Option<u16>, extra: &str, auths: &str) -> (u16, Child) {
    for attempt in 0..5 {
        let port = port.unwrap_or_else(free_udp_port);
        let d = dir.display();
        let conf = format!(
            "name \"ingot-test\"\n\
             set_working_mc 0x20\n\
             \x20 startlan 1\n\
             \x20   addr 127.0.0.1 {port}\n\
             \x20   priv_limit admin\n\
             \x20   allowed_auths_callback {auths}\n\
             \x20   allowed_auths_user {auths}\n\
             \x20   allowed_auths_operator {auths}\n\
             \x20   allowed_auths_admin {auths}\n\
             \x20   guid 0123456789abcdef0123456789abcdef\n\
             \x20 endlan\n\
             \x20 chassis_control \"{script} {d} 0x20\"\n\
             \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 none md2 md5 straight\n\
             {extra}\n",
            script = script().display(),
        );
        std::fs::write(dir.join("lan.conf"), conf).unwrap();
        std::fs::write(
            dir.join("bmc.emu"),
            "mc_setbmc 0x20\n\
             mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
             mc_enable 0x20\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("ipmi_sim.log")).unwrap();
        let mut child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(dir.join("lan.conf"))
            .arg("-f")
            .arg(dir.join("bmc.emu"))
            .arg("-s")
            .arg(dir.join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        if wait_ready(port, &mut child) {
            return (port, child);
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("ipmi_sim on port {port} did not come up (attempt {attempt})");
    }
    panic!(
        "ipmi_sim did not start: {}",
        std::fs::read_to_string(dir.join("ipmi_sim.log")).unwrap_or_default()
    );
}

/// Sends Get Channel Authentication Capabilities until the BMC answers.
fn wait_ready(port: u16, child: &mut Child) -> bool {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let probe = packet::v15_unauthenticated(&packet::ipmi_request(0x06, 0, 0x38, &[0x8E, 0x04]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        let _ = sock.send_to(&probe, ("127.0.0.1", port));
        if sock.recv(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

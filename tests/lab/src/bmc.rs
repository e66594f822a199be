//! The node's BMC: OpenIPMI's `ipmi_sim` on 127.0.0.1, with the lab's
//! chassis_control program for power and boot device, and a system-interface
//! channel QEMU's `ipmi-bmc-extern` device connects to (so the server sees a
//! KCS BMC, as real hardware does).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proc::{self, Guard};

/// The BMC's user and password.
pub const USER: &str = "admin";
/// Password of [`USER`].
pub const PASSWORD: &str = "ingot-e2e";

/// Where the BMC listens.
pub struct BmcPorts {
    /// IPMI LAN (UDP).
    pub lan: u16,
    /// System interface for QEMU (TCP, ipmi_sim's VM codec).
    pub vm: u16,
    /// The server's serial line, which ipmi_sim connects to for
    /// Serial-over-LAN (the lab's relay, [`crate::serial`]).
    pub serial: u16,
}

fn lan_conf(ports: &BmcPorts, chassis_control: &str) -> String {
    let auths = "none md2 md5 straight";
    format!(
        "# ipmi_sim LAN configuration (ipmi_lan(5)), written by ingot-lab\n\
         name \"ingot-e2e\"\n\
         set_working_mc 0x20\n\
         \x20 startlan 1\n\
         \x20   addr 127.0.0.1 {lan}\n\
         \x20   priv_limit admin\n\
         \x20   allowed_auths_callback {auths}\n\
         \x20   allowed_auths_user {auths}\n\
         \x20   allowed_auths_operator {auths}\n\
         \x20   allowed_auths_admin {auths}\n\
         \x20   guid a123456789abcdefa123456789abcdef\n\
         \x20 endlan\n\
         \x20 serial 15 127.0.0.1 {vm} codec VM\n\
         \x20 sol \"tcp:127.0.0.1:{serial}\" 115200\n\
         \x20 chassis_control \"{chassis_control}\"\n\
         \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 {auths}\n",
        lan = ports.lan,
        vm = ports.vm,
        serial = ports.serial,
    )
}

/// ipmi_sim's command file: one BMC at IPMB address 0x20.
const EMU: &str = "mc_setbmc 0x20\n\
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
sel_enable 0x20 1000 0x0a\n\
mc_enable 0x20\n";

/// Starts ipmi_sim for the node in `node_dir`, whose chassis_control is
/// `<lab_bin> chassis-control <node_dir> 0x20`; returns once its UDP port is bound.
pub fn start(node_dir: &Path, lab_bin: &Path, ports: &BmcPorts) -> Result<Guard> {
    let chassis = format!(
        "{} chassis-control {} 0x20",
        lab_bin.display(),
        node_dir.display()
    );
    let conf = node_dir.join("lan.conf");
    std::fs::write(&conf, lan_conf(ports, &chassis))?;
    let emu = node_dir.join("lab.emu");
    std::fs::write(&emu, EMU)?;
    let state = node_dir.join("bmc-state");
    std::fs::create_dir_all(&state)?;
    let log = std::fs::File::create(node_dir.join("ipmi_sim.log"))?;
    let child = Command::new("ipmi_sim")
        .arg("-c")
        .arg(&conf)
        .arg("-f")
        .arg(&emu)
        .arg("-s")
        .arg(&state)
        .arg("-n")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting ipmi_sim (Debian package openipmi)")?;
    let mut guard = Guard::new("ipmi_sim", child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc::udp_bound(ports.lan) {
        if let Some(st) = guard.exited() {
            bail!(
                "ipmi_sim exited ({st}); its log: {}",
                std::fs::read_to_string(node_dir.join("ipmi_sim.log")).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("ipmi_sim did not bind UDP port {} within 10 s", ports.lan);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(guard)
}

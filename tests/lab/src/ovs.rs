//! The isolation lab's switch: a private Open vSwitch in the lab's network
//! namespace, on the userspace datapath (`datapath_type=netdev`: the host
//! kernel has no Open vSwitch datapath, no 802.1Q and no VLAN filtering).
//!
//! - `ovsdb-server` on a fresh database in `<workdir>/ovs/` (unix socket
//!   `db.sock`, which the coordinator's `ovsdb` switch driver uses) and
//!   `ovs-vswitchd`, both children of the lab (not the system's services;
//!   `OVS_RUNDIR` and friends point into the directory);
//! - bridge `fabric`; the coordinator's leg is a veth pair, `prov0`
//!   (10.77.0.1/24, in the lab's namespace) and `prov0-sw` (an access port on
//!   the provisioning VLAN); each server's provisioning NIC is a tap on the
//!   bridge (QEMU opens it, `vnet_hdr=off`, so the guest computes its own
//!   checksums); each stand-in host is a network namespace of its own (held
//!   by a `sleep` child) with a veth into the bridge.
//! - Checksum offload is off on every veth and tap (`ethtool -K <dev> tx
//!   off`): the userspace datapath forwards frames with partial checksums
//!   as they are, and TCP through it fails otherwise.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::proc::Guard;

/// The bridge.
pub const BRIDGE: &str = "fabric";
/// The coordinator's leg (its address is [`crate::netns::BRIDGE_IP`]).
pub const PROV: &str = "prov0";

/// Open vSwitch's database schema (Debian's openvswitch-common).
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// The switch: its two daemons and its directory.
pub struct Switch {
    pub dir: PathBuf,
    ovsdb: Option<Guard>,
    _vswitchd: Guard,
}

/// A stand-in host: a network namespace held by a `sleep` child, with one
/// veth (`name` inside, `<name>-sw` on the bridge).
pub struct Host {
    pub name: String,
    pub ip: Ipv4Addr,
    holder: Guard,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `ip …` in the lab's namespace.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(drop)
}

/// `ethtool -K <dev> tx off` (needed for TCP through the userspace datapath).
fn tx_off(dev: &str, netns_pid: Option<u32>) -> Result<()> {
    let mut c = match netns_pid {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net")).arg("ethtool");
            c
        }
        None => Command::new("ethtool"),
    };
    run(c.args(["-K", dev, "tx", "off"]))
        .map(drop)
        .context("ethtool (apt-get install ethtool, or cargo xtask deps)")
}

/// The daemons' files go to `dir`, not to the system's directories.
fn env(mut c: Command, dir: &Path) -> Command {
    for k in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
        c.env(k, dir);
    }
    c
}

/// Starts ovsdb-server on `dir`'s database and waits until it listens.
fn spawn_ovsdb(dir: &Path) -> Result<Guard> {
    let sock = dir.join("db.sock");
    let _ = std::fs::remove_file(&sock);
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("ovsdb-server.stderr"))?;
    let child = env(Command::new("ovsdb-server"), dir)
        .arg(dir.join("conf.db"))
        .arg(format!("--remote=punix:{}", sock.display()))
        .arg(format!(
            "--unixctl={}",
            dir.join("ovsdb-server.ctl").display()
        ))
        .arg(format!(
            "--log-file={}",
            dir.join("ovsdb-server.log").display()
        ))
        .arg("--no-chdir")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting ovsdb-server")?;
    let mut g = Guard::new("ovsdb-server", child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if let Some(st) = g.exited() {
            bail!("ovsdb-server exited ({st})");
        }
        ensure!(Instant::now() < deadline, "ovsdb-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(g)
}

impl Switch {
    /// Starts ovsdb-server and ovs-vswitchd in `dir`, makes the bridge and
    /// the coordinator's leg on `prov_vlan`.
    pub fn start(dir: &Path, prov_vlan: u16) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(dir.join("conf.db"))
            .arg(SCHEMA))
        .context("ovsdb-tool create (apt-get install openvswitch-switch)")?;
        let ovsdb = spawn_ovsdb(dir)?;
        let log = std::fs::File::create(dir.join("ovs-vswitchd.stderr"))?;
        let vsctl = |args: &[&str]| {
            run(env(Command::new("ovs-vsctl"), dir)
                .arg(format!("--db=unix:{}", dir.join("db.sock").display()))
                .arg("--timeout=10")
                .args(args))
        };
        vsctl(&["--no-wait", "init"])?;
        let child = env(Command::new("ovs-vswitchd"), dir)
            .arg(format!("unix:{}", dir.join("db.sock").display()))
            .arg(format!(
                "--unixctl={}",
                dir.join("ovs-vswitchd.ctl").display()
            ))
            .arg(format!(
                "--log-file={}",
                dir.join("ovs-vswitchd.log").display()
            ))
            .arg("--no-chdir")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ovs-vswitchd")?;
        let sw = Self {
            dir: dir.to_path_buf(),
            ovsdb: Some(ovsdb),
            _vswitchd: Guard::new("ovs-vswitchd", child),
        };
        sw.vsctl(&[
            "add-br",
            BRIDGE,
            "--",
            "set",
            "bridge",
            BRIDGE,
            "datapath_type=netdev",
        ])?;
        ip(&[
            "link",
            "add",
            PROV,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{PROV}-sw"),
        ])?;
        // The coordinator's router advertisements need the link-local
        // address at once (no duplicate detection).
        let dad = format!("/proc/sys/net/ipv6/conf/{PROV}/accept_dad");
        std::fs::write(&dad, "0").with_context(|| format!("writing {dad}"))?;
        let cidr = format!("{}/{}", crate::netns::BRIDGE_IP, crate::netns::PREFIX_LEN);
        ip(&["addr", "add", &cidr, "dev", PROV])?;
        for d in [PROV.to_owned(), format!("{PROV}-sw")] {
            tx_off(&d, None)?;
            ip(&["link", "set", &d, "up"])?;
        }
        sw.add_port(&format!("{PROV}-sw"), Some(prov_vlan))?;
        Ok(sw)
    }

    /// The database's unix socket (the coordinator's switch address).
    pub fn sock(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    /// Starts ovsdb-server on the database again after [`Switch::kill_ovsdb`].
    pub fn restart_ovsdb(&mut self) -> Result<()> {
        self.ovsdb = Some(spawn_ovsdb(&self.dir)?);
        Ok(())
    }

    /// Stops ovsdb-server (SIGSTOP): a hung switch; connections are accepted
    /// by the kernel but nothing answers. ovs-vswitchd keeps forwarding.
    pub fn stop_ovsdb(&self) {
        if let Some(pid) = self.ovsdb.as_ref().and_then(Guard::id) {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
            }
        }
    }

    /// Kills ovsdb-server (SIGKILL, also when stopped). On the userspace
    /// datapath ovs-vswitchd then stops forwarding until it is back.
    pub fn kill_ovsdb(&mut self) {
        if let Some(mut g) = self.ovsdb.take() {
            if let Some(pid) = g.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            g.stop(Duration::ZERO);
        }
    }

    /// `ovs-vsctl` on this switch.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        run(env(Command::new("ovs-vsctl"), &self.dir)
            .arg(format!("--db=unix:{}", self.sock().display()))
            .arg("--timeout=10")
            .args(args))
    }

    /// Adds a port (access on `vlan`, or no settings).
    pub fn add_port(&self, port: &str, vlan: Option<u16>) -> Result<()> {
        let tag = vlan.map(|v| format!("tag={v}"));
        let mut a = vec!["add-port", BRIDGE, port];
        if let Some(t) = &tag {
            a.push(t);
        }
        self.vsctl(&a).map(drop)
    }

    /// The port's `tag` (`[]` when none), or an error.
    pub fn tag(&self, port: &str) -> Result<String> {
        self.vsctl(&["get", "port", port, "tag"])
    }

    /// The port's tag as a number, if it has one.
    pub fn vlan(&self, port: &str) -> Option<u16> {
        self.tag(port).ok()?.parse().ok()
    }

    /// Makes a tap for QEMU and puts it on the bridge on `vlan`.
    pub fn add_tap(&self, tap: &str, vlan: u16) -> Result<()> {
        ip(&["tuntap", "add", tap, "mode", "tap"])?;
        tx_off(tap, None)?;
        ip(&["link", "set", tap, "up"])?;
        self.add_port(tap, Some(vlan))
    }

    /// Makes a stand-in host `name` with `ip`/24 on `vlan`.
    pub fn add_host(&self, name: &str, addr: Ipv4Addr, vlan: u16) -> Result<Host> {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "100000"])
            .stdin(Stdio::null())
            .spawn()
            .context("unshare --net sleep")?;
        let holder = Guard::new(&format!("host {name}"), child);
        let pid = holder.id().context("holder pid")?;
        // Wait until the child is in its own namespace.
        let mine = std::fs::read_link("/proc/self/ns/net")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&mine)
        {
            ensure!(Instant::now() < deadline, "{name}: no namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        let sw = format!("{name}-sw");
        ip(&["link", "add", name, "type", "veth", "peer", "name", &sw])?;
        tx_off(&sw, None)?;
        ip(&["link", "set", &sw, "up"])?;
        ip(&["link", "set", name, "netns", &pid.to_string()])?;
        let h = Host {
            name: name.to_owned(),
            ip: addr,
            holder,
        };
        h.sh(&format!(
            "ip link set lo up && ip link set {name} up && ip addr add {addr}/24 dev {name}"
        ))?;
        tx_off(name, Some(pid))?;
        self.add_port(&sw, Some(vlan))?;
        Ok(h)
    }
}

impl Host {
    fn pid(&self) -> u32 {
        self.holder.id().unwrap_or(0)
    }

    /// A shell command in the host's namespace; its stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        run(Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(["sh", "-c", script]))
    }

    /// A shell command in the host's namespace: (success, stdout+stderr).
    pub fn try_sh(&self, script: &str) -> (bool, String) {
        match Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
                .trim()
                .to_owned(),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// Its port on the bridge.
    pub fn port(&self) -> String {
        format!("{}-sw", self.name)
    }
}

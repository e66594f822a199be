//! The lab's network: how the server's provisioning NIC reaches the
//! coordinator.
//!
//! - [`Network::L2`] (the default): a real broadcast domain. The lab moves
//!   itself into a network namespace of its own ([`enter`]) with a Linux
//!   bridge `br0` (10.77.0.1/24) and a tap `tap0` on it for QEMU; the
//!   coordinator listens on the bridge's address and its own DHCP server
//!   (full mode) answers the NIC's iPXE ROM and then the agent, as on a
//!   provisioning network. Every child (coordinator, ipmi_sim, QEMU, Glance)
//!   inherits the namespace, which disappears with the last of them: nothing
//!   outside is touched and nothing is left behind. Needs root (or
//!   `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`).
//! - [`Network::Slirp`] (`--network slirp`): QEMU's user-mode network, for
//!   machines without network namespaces: QEMU's DHCP and TFTP (a
//!   `boot.ipxe` chaining to the coordinator), the guest reaching the host's
//!   loopback as 10.0.2.2, the agent's port forwarded to 127.0.0.1 and
//!   advertised there.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// The bridge of [`Network::L2`].
pub const BRIDGE: &str = "br0";
/// QEMU's tap on the bridge.
pub const TAP: &str = "tap0";
/// The bridge's (the coordinator's) address.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The prefix length of the bridge's subnet.
pub const PREFIX_LEN: u8 = 24;
/// The coordinator's DHCP pool.
pub const RANGE: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 150));

/// How the server's provisioning NIC is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Network {
    /// A bridge and a tap in a network namespace of the lab's own; the
    /// coordinator's DHCP server boots the server.
    #[default]
    L2,
    /// QEMU's user-mode network (slirp): its DHCP and TFTP, the agent's
    /// port forwarded to the host's loopback.
    Slirp,
}

impl Network {
    /// Its name on the command line and in `report.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::L2 => "l2",
            Self::Slirp => "slirp",
        }
    }

    /// The address the coordinator (and the image store) listen on.
    pub fn listen_ip(self) -> Ipv4Addr {
        match self {
            Self::L2 => BRIDGE_IP,
            Self::Slirp => Ipv4Addr::LOCALHOST,
        }
    }

    /// The address the image store binds: all of the namespace's
    /// addresses in L2 mode (the guest uses the bridge's, the coordinator
    /// fetching for its cache the loopback), else the loopback.
    pub fn store_bind_ip(self) -> Ipv4Addr {
        match self {
            Self::L2 => Ipv4Addr::UNSPECIFIED,
            Self::Slirp => Ipv4Addr::LOCALHOST,
        }
    }

    /// The coordinator's address as the guest sees it.
    pub fn guest_host_ip(self) -> Ipv4Addr {
        match self {
            Self::L2 => BRIDGE_IP,
            // QEMU's user network maps it to the host's loopback.
            Self::Slirp => Ipv4Addr::new(10, 0, 2, 2),
        }
    }

    /// QEMU's `-netdev` for the provisioning NIC (id `n0`): the `tap` on
    /// the bridge ([`TAP`] for the first server, [`add_tap`] for others),
    /// or slirp with its TFTP server (`boot.ipxe` in `tftp`) and the agent's
    /// :9999 forwarded to 127.0.0.1:`agent_forward`.
    pub fn provisioning_netdev(self, tap: &str, tftp: &Path, agent_forward: u16) -> String {
        match self {
            Self::L2 => format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            Self::Slirp => format!(
                "user,id=n0,tftp={},bootfile=boot.ipxe,hostfwd=tcp:127.0.0.1:{agent_forward}-:9999",
                tftp.display()
            ),
        }
    }

    /// The node's `driver_info.kernel_append_params` with the serial
    /// `console` (`ttyS0,115200n8`, `ttyAMA0`). On slirp the agent
    /// sits behind QEMU's port forward and advertises it (as IPA behind
    /// NAT); on the bridge it advertises its own DHCP address.
    pub fn kernel_append_params(self, agent_forward: u16, console: &str) -> String {
        match self {
            Self::L2 => format!("%default% console={console}"),
            Self::Slirp => format!(
                "%default% console={console} ipa-advertise-host=127.0.0.1 ipa-advertise-port={agent_forward}"
            ),
        }
    }

    /// The coordinator's configuration for this network (TOML sections):
    /// on the bridge, noauth on a non-loopback address (the namespace is the
    /// lab's own) and the DHCP server in full mode on `br0`.
    pub fn coordinator_config(self) -> String {
        match self {
            Self::L2 => format!(
                "[auth]\nallow_noauth_on_network = true\n\n\
                 [dhcp]\nenabled = true\ninterface = \"{BRIDGE}\"\nserver_ip = \"{BRIDGE_IP}\"\n\
                 mode = \"full\"\nrange_start = \"{}\"\nrange_end = \"{}\"\n\
                 advertise_no_ipv6_router = true\n\n",
                RANGE.0, RANGE.1
            ),
            Self::Slirp => String::new(),
        }
    }
}

/// Moves this process into a new network namespace with `lo` up and the
/// bridge and tap of [`Network::L2`]. Must run while the process has a
/// single thread (a namespace change applies to the calling thread only):
/// it checks that, and fails rather than leave a thread behind.
pub fn enter() -> Result<()> {
    enter_empty()?;
    let cidr = format!("{BRIDGE_IP}/{PREFIX_LEN}");
    ip(&[
        "link",
        "add",
        BRIDGE,
        "type",
        "bridge",
        "forward_delay",
        "0",
    ])?;
    // The bridge's link-local address is usable as soon as QEMU's tap
    // brings the carrier up (no duplicate detection): the coordinator's
    // router advertisements need it as their source.
    let dad = format!("/proc/sys/net/ipv6/conf/{BRIDGE}/accept_dad");
    std::fs::write(&dad, "0").with_context(|| format!("writing {dad}"))?;
    ip(&["addr", "add", &cidr, "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    ip(&["tuntap", "add", TAP, "mode", "tap"])?;
    ip(&["link", "set", TAP, "master", BRIDGE])?;
    ip(&["link", "set", TAP, "up"])?;
    Ok(())
}

/// Adds a tap for another server to the bridge of [`Network::L2`] (in the
/// namespace [`enter`] made).
pub fn add_tap(name: &str) -> Result<()> {
    ip(&["tuntap", "add", name, "mode", "tap"])?;
    ip(&["link", "set", name, "master", BRIDGE])?;
    ip(&["link", "set", name, "up"])
}

/// Moves this process into a new network namespace with only `lo` up (the
/// isolation lab builds its Open vSwitch fabric there, module `ovs`). The
/// same single-thread rule as [`enter`].
pub fn enter_empty() -> Result<()> {
    let threads = std::fs::read_dir("/proc/self/task")
        .context("reading /proc/self/task")?
        .count();
    ensure!(
        threads == 1,
        "the lab must enter its network namespace with one thread, it has {threads}"
    );
    // SAFETY: unshare(2) with CLONE_NEWNET only moves the calling thread,
    // the process's only one (checked above), into a new network namespace;
    // it touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET): {} (the L2 lab needs root; `--network slirp` runs without network namespaces)",
            std::io::Error::last_os_error()
        );
    }
    ip(&["link", "set", "lo", "up"])?;
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slirp_keeps_the_port_forward() {
        let n = Network::Slirp;
        assert!(
            n.provisioning_netdev(TAP, Path::new("/t"), 4242)
                .contains("tftp=/t,bootfile=boot.ipxe,hostfwd=tcp:127.0.0.1:4242-:9999")
        );
        assert!(
            n.kernel_append_params(4242, "ttyS0")
                .ends_with("ipa-advertise-port=4242")
        );
        assert!(n.coordinator_config().is_empty());
    }

    #[test]
    fn l2_uses_the_tap_and_the_coordinators_dhcp() {
        let n = Network::L2;
        assert_eq!(
            n.provisioning_netdev(TAP, Path::new("/t"), 4242),
            "tap,id=n0,ifname=tap0,script=no,downscript=no"
        );
        assert!(!n.kernel_append_params(4242, "ttyS0").contains("advertise"));
        let c = n.coordinator_config();
        assert!(c.contains("interface = \"br0\"") && c.contains("server_ip = \"10.77.0.1\""));
        assert!(c.contains("allow_noauth_on_network = true"));
        assert!(c.contains("advertise_no_ipv6_router = true"));
    }
}

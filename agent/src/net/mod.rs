//! Network bring-up for the ramdisk: every link up through netlink, then a
//! DHCPv4 client on the PXE interface (`BOOTIF=`) or on every interface that
//! has carrier, all in parallel; or the static `ip=` configuration.
//! Interfaces without carrier cost no waiting: they are skipped after a short
//! carrier check that runs for all interfaces at once. DHCP leases are then
//! kept alive by [`maintain`] (renewal, rebinding, a new DISCOVER after a NAK
//! or the expiry).

mod dhcp;
pub mod dhcp_packet;
mod lease;
pub mod netlink;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::{KernelParams, StaticIp};

pub use dhcp::{DhcpError, Lease, run_dhcp};
pub use lease::{EventSink, LeaseEvent, LossReason, Maintenance, maintain};

/// What to configure.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Only this interface (by MAC, from `BOOTIF=`).
    pub bootif: Option<String>,
    /// Only these interfaces (by name).
    pub interfaces: Vec<String>,
    /// Static configuration instead of DHCP.
    pub static_ip: Option<StaticIp>,
    /// Where name servers are written.
    pub resolv_conf: PathBuf,
    /// How long a link may take to show carrier after it was set up.
    pub carrier_wait: Duration,
    /// How long DHCP tries on one interface.
    pub dhcp_timeout: Duration,
    /// Set the host name from DHCP.
    pub set_hostname: bool,
}

impl NetOptions {
    /// Options from the kernel command line.
    pub fn from_params(p: &KernelParams) -> Self {
        Self {
            bootif: p.bootif.clone(),
            interfaces: p
                .static_ip
                .as_ref()
                .and_then(|s| s.device.clone())
                .into_iter()
                .collect(),
            static_ip: p.static_ip.clone(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            carrier_wait: Duration::from_secs(3),
            dhcp_timeout: Duration::from_secs(60),
            set_hostname: true,
        }
    }
}

/// A network interface as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// MAC.
    pub mac: [u8; 6],
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    v.try_into().ok()
}

/// Ethernet interfaces (type 1), except loopback.
pub fn links() -> Vec<Link> {
    let class = Path::new("/sys/class/net");
    let mut out: Vec<Link> = std::fs::read_dir(class)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dir = class.join(&name);
                    let read = |a: &str| std::fs::read_to_string(dir.join(a)).ok();
                    if name == "lo" || read("type")?.trim() != "1" {
                        return None;
                    }
                    Some(Link {
                        index: read("ifindex")?.trim().parse().ok()?,
                        mac: parse_mac(&read("address")?)?,
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A socket address type that is valid all zeroes (the C `sockaddr_*` structs).
pub trait SockAddr: Copy {}
impl SockAddr for libc::sockaddr_ll {}
impl SockAddr for libc::sockaddr_nl {}

/// Receives one datagram from `fd` into `buf` without blocking: its length
/// and the sender's address. `WouldBlock` when nothing is queued.
pub fn recv_from<A: SockAddr>(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> std::io::Result<(usize, A)> {
    use std::os::fd::AsRawFd;
    // SAFETY: `A` is a C socket address struct, valid all zeroes.
    let mut from: A = unsafe { std::mem::zeroed() };
    let mut from_len = std::mem::size_of::<A>() as libc::socklen_t;
    // SAFETY: the buffer and the address are live and of the stated sizes.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut from as *mut A).cast(),
            &mut from_len,
        )
    };
    match usize::try_from(n) {
        Ok(n) => Ok((n.min(buf.len()), from)),
        Err(_) => Err(std::io::Error::last_os_error()),
    }
}

/// Whether an Ethernet interface with `mac` (`aa:bb:…`, any case) exists.
pub fn has_link_with_mac(mac: &str) -> bool {
    links()
        .iter()
        .any(|l| mac_string(&l.mac).eq_ignore_ascii_case(mac))
}

fn has_carrier(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("carrier"))
        .is_ok_and(|c| c.trim() == "1")
}

fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes resolv.conf from the leases' name servers and domains.
fn write_resolv_conf(path: &Path, dns: &[Ipv4Addr], domain: Option<&str>) {
    if dns.is_empty() {
        return;
    }
    let mut s = String::new();
    if let Some(d) = domain {
        s.push_str(&format!("search {d}\n"));
    }
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    if let Err(e) = std::fs::write(path, s) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write resolv.conf");
    }
}

fn set_hostname(name: &str) {
    // SAFETY: a valid buffer and length.
    let r = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if r != 0 {
        tracing::warn!(hostname = %name, error = %std::io::Error::last_os_error(), "sethostname failed");
    }
}

/// Brings the network up; returns the DHCP leases (or the static config as a lease).
pub async fn configure(opts: &NetOptions) -> Vec<Lease> {
    let _ = netlink::link_up(1).map_err(|e| tracing::warn!(error = %e, "cannot set lo up"));
    let mut all = links();
    if let Some(mac) = &opts.bootif {
        all.retain(|l| mac_string(&l.mac) == *mac);
        if all.is_empty() {
            tracing::warn!(bootif = %mac, "no interface has the BOOTIF MAC; using all");
            all = links();
        }
    }
    if !opts.interfaces.is_empty() {
        all.retain(|l| opts.interfaces.contains(&l.name));
    }
    for l in &all {
        if let Err(e) = netlink::link_up(l.index) {
            tracing::warn!(interface = %l.name, error = %e, "cannot set the link up");
        }
    }
    if let Some(s) = &opts.static_ip {
        let deadline = tokio::time::Instant::now() + opts.carrier_wait;
        while !all.iter().any(|l| has_carrier(&l.name)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let chosen = all.iter().find(|l| has_carrier(&l.name)).or(all.first());
        let Some(l) = chosen else { return Vec::new() };
        let lease = Lease {
            interface: l.name.clone(),
            address: s.address,
            prefix: s.prefix,
            routers: s.gateway.into_iter().collect(),
            dns: s.dns.clone(),
            hostname: s.hostname.clone(),
            domain: None,
            lease_secs: None,
            server: None,
            renew_secs: None,
            rebind_secs: None,
            server_mac: None,
        };
        apply(l, &lease, opts);
        return vec![lease];
    }
    // Every link in parallel: wait for its carrier (briefly), then DHCP. An
    // uncabled NIC only occupies its own task, never the others.
    let tasks: Vec<_> = all
        .iter()
        .cloned()
        .map(|l| {
            let (timeout, carrier_wait) = (opts.dhcp_timeout, opts.carrier_wait);
            tokio::task::spawn_blocking(move || {
                let deadline = std::time::Instant::now() + carrier_wait;
                while !has_carrier(&l.name) {
                    if std::time::Instant::now() >= deadline {
                        tracing::info!(interface = %l.name, "no carrier: skipped");
                        return (None, l);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                (Some(run_dhcp(&l, timeout)), l)
            })
        })
        .collect();
    let mut leases = Vec::new();
    let mut default_route_set = false;
    for t in tasks {
        match t.await {
            Ok((Some(Ok(lease)), l)) => {
                if !default_route_set || lease.routers.is_empty() {
                    apply(&l, &lease, opts);
                    default_route_set |= !lease.routers.is_empty();
                } else {
                    // Only one default route: the first lease's.
                    let mut no_route = lease.clone();
                    no_route.routers.clear();
                    apply(&l, &no_route, opts);
                }
                leases.push(lease);
            }
            Ok((Some(Err(e)), l)) => tracing::warn!(interface = %l.name, error = %e, "DHCP failed"),
            Ok((None, _)) => {}
            Err(e) => tracing::warn!(error = %e, "DHCP task failed"),
        }
    }
    let dns: Vec<Ipv4Addr> = leases.iter().flat_map(|l| l.dns.clone()).collect();
    write_resolv_conf(
        &opts.resolv_conf,
        &dns,
        leases.iter().find_map(|l| l.domain.as_deref()),
    );
    leases
}

/// Configures an interface from a lease.
fn apply(l: &Link, lease: &Lease, opts: &NetOptions) {
    apply_address(l, lease, true);
    if opts.set_hostname {
        if let Some(h) = &lease.hostname {
            set_hostname(h);
        }
    }
    if opts.static_ip.is_some() {
        write_resolv_conf(&opts.resolv_conf, &lease.dns, None);
    }
}

/// Adds the lease's address to the interface, and the default route through
/// its first router when `route` is set.
fn apply_address(l: &Link, lease: &Lease, route: bool) {
    match netlink::add_address(l.index, lease.address, lease.prefix) {
        Ok(()) => {
            tracing::info!(interface = %l.name, address = %lease.address, prefix = lease.prefix, "address configured")
        }
        Err(e) => tracing::warn!(interface = %l.name, error = %e, "cannot add the address"),
    }
    if let Some(gw) = lease.routers.first().filter(|_| route) {
        if let Err(e) = netlink::add_default_route(l.index, *gw) {
            tracing::warn!(interface = %l.name, gateway = %gw, error = %e, "cannot add the default route");
        }
    }
}

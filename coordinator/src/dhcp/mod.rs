//! A DHCPv4 server for network boot, bound to one interface.
//!
//! - **Full mode**: addresses from a configured range (leases stored in the
//!   database, table `dhcp_leases`), subnet mask, router, DNS, lease time,
//!   plus the boot file.
//! - **Proxy mode** (PXE specification's proxyDHCP): beside another DHCP
//!   server, on port 67 and 4011; offers carry boot information only, no
//!   address.
//!
//! It answers only machines it should boot: MACs of enrolled ports whose
//! node boots the agent ramdisk now ([`policy::boots_ramdisk`]); other MACs
//! are ignored and logged at debug level, unless `unknown_macs = "inspect"`.
//! The boot file depends on the client ([`policy::client`]): iPXE and UEFI
//! HTTP Boot get the URL of `/boot/boot.ipxe`, PXE firmware a TFTP loader by
//! architecture. Malformed datagrams are dropped.

pub mod policy;
pub mod pool;
pub mod ra;
pub mod strangers;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Encodable, Encoder};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::config::{Config, DhcpMode, UnknownMacs};
use crate::db::Db;
use crate::db::leases::Lease;
use crate::model::{now_ms, port::normalize_mac};
use policy::Client;
use pool::Pool;

/// The proxyDHCP port of the PXE specification.
pub const PXE_PORT: u16 = 4011;
/// The client port.
const CLIENT_PORT: u16 = 68;
/// How long an offered address is held for the client's REQUEST.
const OFFER_HOLD_MS: i64 = 60_000;

/// Start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// A missing or contradictory setting.
    #[error("[dhcp] {0}")]
    Config(String),
    /// The IPv6 advertiser's raw socket (`advertise_no_ipv6_router`).
    #[error("IPv6 router advertisements on {interface}: {source}")]
    Advertise {
        /// Interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// Binding.
    #[error("DHCP on {interface} port {port}: {source}")]
    Bind {
        /// Interface.
        interface: String,
        /// Port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
}

struct Inner {
    config: Config,
    db: Db,
    server_ip: Ipv4Addr,
    pool: Option<Pool>,
    http_base: String,
    strangers: strangers::Strangers,
    /// Where the architectures of option 93 go, for the boot scripts.
    arch_hints: Option<Arc<crate::netboot::arch::ArchHints>>,
}

/// iPXE's encapsulated option 175, sub-option 176 (`no-pxedhcp`) = 1.
const IPXE_NO_PXEDHCP: [u8; 3] = [176, 1, 1];

/// Tells iPXE that this offer is the whole answer: with `no-pxedhcp` set it
/// requests the offered address at once. Without it, iPXE holds every offer
/// that lacks PXE options for 2 s, waiting for a proxyDHCP server to add
/// boot information, at each network boot (its `DHCP_DISC_PROXY_TIMEOUT_SEC`).
/// Full mode only: in proxy mode the boot information comes from us and the
/// address from another server, so the wait is what makes it work.
fn no_proxydhcp_wait(r: &mut Message) {
    r.opts_mut()
        .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::Unknown(175),
            IPXE_NO_PXEDHCP.to_vec(),
        )));
}

/// A bound DHCP server; [`DhcpServer::run`] serves it.
pub struct DhcpServer {
    inner: Arc<Inner>,
    sockets: Vec<(Arc<UdpSocket>, u16)>,
}

impl std::fmt::Debug for DhcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhcpServer")
            .field("interface", &self.inner.config.dhcp.interface)
            .finish_non_exhaustive()
    }
}

fn bind_udp(interface: &str, port: u16) -> Result<UdpSocket, DhcpError> {
    let err = |source| DhcpError::Bind {
        interface: interface.to_owned(),
        port,
        source,
    };
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(err)?;
    // Several DHCP daemons on one host each bind their own interface.
    s.set_reuse_address(true).map_err(err)?;
    s.set_broadcast(true).map_err(err)?;
    s.bind_device(Some(interface.as_bytes())).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    s.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

impl DhcpServer {
    /// Checks the settings and binds (port 67, and 4011 in proxy mode) on
    /// the configured interface. `config.listen` must be the real API
    /// address (the boot URL is built from it).
    pub fn bind(config: &Config, db: Db) -> Result<Self, DhcpError> {
        let d = &config.dhcp;
        if d.interface.is_empty() {
            return Err(DhcpError::Config("interface is not set".into()));
        }
        let server_ip = d
            .server_ip
            .ok_or_else(|| DhcpError::Config("server_ip is not set".into()))?;
        let pool = match d.mode {
            DhcpMode::Full => {
                let (Some(s), Some(e)) = (d.range_start, d.range_end) else {
                    return Err(DhcpError::Config(
                        "full mode needs range_start and range_end".into(),
                    ));
                };
                Some(Pool::new(s, e).ok_or_else(|| {
                    DhcpError::Config(format!(
                        "range {s}-{e} is empty or larger than {} addresses",
                        pool::MAX_POOL
                    ))
                })?)
            }
            DhcpMode::Proxy => None,
        };
        let mut sockets = vec![(Arc::new(bind_udp(&d.interface, d.port)?), d.port)];
        if d.mode == DhcpMode::Proxy {
            sockets.push((Arc::new(bind_udp(&d.interface, PXE_PORT)?), PXE_PORT));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http_base: policy::http_base(config),
                config: config.clone(),
                db,
                server_ip,
                pool,
                strangers: strangers::Strangers::new(d.unknown_macs_limit),
                arch_hints: None,
            }),
            sockets,
        })
    }

    /// Records the client architecture (option 93) of each answered
    /// request in `hints` (see [`crate::netboot::arch::ArchHints`]).
    pub fn with_arch_hints(mut self, hints: Arc<crate::netboot::arch::ArchHints>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.arch_hints = Some(hints);
        }
        self
    }

    /// Serves until the task is aborted.
    pub async fn run(self) {
        info!(
            interface = %self.inner.config.dhcp.interface,
            mode = ?self.inner.config.dhcp.mode,
            server_ip = %self.inner.server_ip,
            boot_url = %self.inner.http_base,
            "DHCP server listening"
        );
        if self.inner.config.dhcp.unknown_macs == UnknownMacs::Inspect
            && let Err(e) = self.inner.seed_strangers().await
        {
            warn!(error = %e, "DHCP: could not read the leases of unknown MACs");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (sock, port) in self.sockets {
            let inner = self.inner.clone();
            tasks.spawn(async move { serve_socket(inner, sock, port).await });
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn serve_socket(inner: Arc<Inner>, sock: Arc<UdpSocket>, port: u16) {
    // Larger than any Ethernet frame; anything beyond is cut and then
    // fails to decode or loses options, never overflows.
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "DHCP: receive error");
                continue;
            }
        };
        // wire::decode is bounds-checked; catch_unwind is a second guard
        // around the third-party parser, so hostile input can never take the
        // server down.
        let decoded = std::panic::catch_unwind(|| wire::decode(&buf[..len]));
        let Ok(Some(msg)) = decoded else {
            debug!(%peer, len, "DHCP: dropped a malformed packet");
            continue;
        };
        let reply = match inner.handle(&msg, port == PXE_PORT).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "DHCP: database error, request dropped");
                None
            }
        };
        let Some((reply, dest)) = reply else {
            continue;
        };
        let dest = if port == PXE_PORT { peer } else { dest };
        let mut out = Vec::with_capacity(600);
        if let Err(e) = reply.encode(&mut Encoder::new(&mut out)) {
            warn!(error = %e, "DHCP: could not encode a reply");
            continue;
        }
        if let Err(e) = sock.send_to(&out, dest).await {
            debug!(%dest, error = %e, "DHCP: could not send a reply");
        }
    }
}

/// The MAC of a request, when it is an Ethernet request.
fn client_mac(msg: &Message) -> Option<String> {
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return None;
    }
    let c = msg.chaddr().get(..6)?;
    let text: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
    normalize_mac(&text.join(":"))
}

fn requested_ip(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn hostname(msg: &Message) -> Option<String> {
    match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => Some(h.chars().take(64).collect()),
        _ => None,
    }
}

/// Who the request comes from, as far as booting goes.
struct Known {
    pinned: Option<Ipv4Addr>,
    node: Option<String>,
}

impl Inner {
    /// Fills the bound on unknown MACs from the unexpired leases of MACs no
    /// port has (leases survive a restart; the bound must too).
    async fn seed_strangers(&self) -> Result<(), crate::db::DbError> {
        let now = now_ms();
        for lease in self.db.list_dhcp_leases().await? {
            if lease.expires_ms > now && self.db.get_port_by_address(&lease.mac).await?.is_none() {
                self.strangers.hold(&lease.mac, lease.expires_ms);
            }
        }
        Ok(())
    }

    /// Remembers the architecture the client reported (option 93), if any.
    fn record_arch(&self, msg: &Message, mac: &str) {
        let Some(hints) = &self.arch_hints else {
            return;
        };
        if let Some(DhcpOption::ClientSystemArchitecture(a)) =
            msg.opts().get(OptionCode::ClientSystemArchitecture)
            && let Some(arch) = crate::netboot::arch::from_dhcp(u16::from(*a))
        {
            hints.record(mac, arch, now_ms());
        }
    }

    /// Whether an unknown MAC may get an address now; logs a refusal.
    fn admit_stranger(&self, mac: &str, known: &Known) -> bool {
        let now = now_ms();
        if known.node.is_some() || self.strangers.admit(mac, now) {
            return true;
        }
        let limit = self.config.dhcp.unknown_macs_limit;
        if self.strangers.should_warn(now) {
            warn!(%mac, limit, "DHCP: unknown MACs already hold unknown_macs_limit addresses; not answered (further refusals at debug level for a minute)");
        } else {
            debug!(%mac, limit, "DHCP: unknown MAC refused (limit reached)");
        }
        false
    }

    /// Whether `mac` is answered, and its pinned address.
    async fn lookup(&self, mac: &str) -> Result<Option<Known>, crate::db::DbError> {
        let port = self.db.get_port_by_address(mac).await?;
        let Some(port) = port else {
            return Ok(match self.config.dhcp.unknown_macs {
                UnknownMacs::Inspect => Some(Known {
                    pinned: None,
                    node: None,
                }),
                UnknownMacs::Ignore => {
                    debug!(%mac, "DHCP: MAC of no enrolled port, ignored");
                    None
                }
            });
        };
        let Some((node, _)) = self.db.get_node(&port.node_uuid).await? else {
            return Ok(None);
        };
        if !policy::boots_ramdisk(&self.config, &node) {
            debug!(%mac, node = %node.uuid, state = %node.provision_state, "DHCP: node is not booting the ramdisk, ignored");
            return Ok(None);
        }
        Ok(Some(Known {
            pinned: policy::pinned_address(&node, &port),
            node: Some(node.uuid),
        }))
    }

    /// The reply to `msg` and where to send it, if any.
    async fn handle(
        &self,
        msg: &Message,
        on_pxe_port: bool,
    ) -> Result<Option<(Message, SocketAddr)>, crate::db::DbError> {
        let Some(mac) = client_mac(msg) else {
            return Ok(None);
        };
        let Some(kind) = msg.opts().msg_type() else {
            return Ok(None);
        };
        let Some(known) = self.lookup(&mac).await? else {
            return Ok(None);
        };
        let client = policy::client(msg);
        self.record_arch(msg, &mac);
        match (self.config.dhcp.mode, kind) {
            (DhcpMode::Proxy, MessageType::Discover) if !on_pxe_port => {
                Ok(self.proxy_reply(msg, client, MessageType::Offer))
            }
            (DhcpMode::Proxy, MessageType::Request) if on_pxe_port => {
                Ok(self.proxy_reply(msg, client, MessageType::Ack))
            }
            (DhcpMode::Proxy, _) => Ok(None),
            (DhcpMode::Full, MessageType::Discover) => self.offer(msg, &mac, &known, client).await,
            (DhcpMode::Full, MessageType::Request) => self.ack(msg, &mac, &known, client).await,
            (DhcpMode::Full, MessageType::Release) => {
                self.db.expire_dhcp_lease(&mac, now_ms()).await?;
                self.strangers.forget(&mac);
                info!(%mac, "DHCP: lease released");
                Ok(None)
            }
            (DhcpMode::Full, MessageType::Decline) => {
                warn!(%mac, ip = ?requested_ip(msg), "DHCP: client declined an address (in use on the link?)");
                Ok(None)
            }
            (DhcpMode::Full, MessageType::Inform) => {
                let mut r = self.base_reply(msg, MessageType::Ack, client);
                self.lease_options(&mut r, false);
                Ok(Some((r, self.destination(msg))))
            }
            _ => Ok(None),
        }
        .inspect(|r| {
            if let Some((r, dest)) = r {
                debug!(%mac, node = ?known.node, reply = ?r.opts().msg_type(), yiaddr = %r.yiaddr(), %dest, "DHCP: answered");
            }
        })
    }

    /// A reply skeleton: same transaction, flags, chaddr; our identifier;
    /// the boot file for the client.
    fn base_reply(&self, msg: &Message, kind: MessageType, client: Client) -> Message {
        let mut r = Message::default();
        r.set_opcode(Opcode::BootReply)
            .set_htype(msg.htype())
            .set_xid(msg.xid())
            .set_flags(msg.flags())
            .set_giaddr(msg.giaddr())
            .set_chaddr(msg.chaddr());
        r.opts_mut().insert(DhcpOption::MessageType(kind));
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(self.server_ip));
        if let Some(file) = policy::boot_file(&self.config.dhcp, &self.http_base, client) {
            if client == Client::HttpBoot {
                // UEFI HTTP Boot only accepts offers that echo its class.
                r.opts_mut()
                    .insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            } else if matches!(client, Client::Pxe(_)) {
                r.set_siaddr(self.server_ip);
                r.opts_mut().insert(DhcpOption::TFTPServerName(
                    self.server_ip.to_string().into_bytes(),
                ));
            }
            // The boot file goes in both the BOOTP `file` field and option
            // 67; URLs longer than the field (128 bytes) only in the option.
            if file.len() < 128 {
                r.set_fname_str(&file);
            }
            r.opts_mut()
                .insert(DhcpOption::BootfileName(file.into_bytes()));
        }
        r
    }

    fn lease_options(&self, r: &mut Message, with_times: bool) {
        let d = &self.config.dhcp;
        r.opts_mut().insert(DhcpOption::SubnetMask(d.subnet_mask));
        if let Some(gw) = d.router {
            r.opts_mut().insert(DhcpOption::Router(vec![gw]));
        }
        if !d.dns.is_empty() {
            r.opts_mut()
                .insert(DhcpOption::DomainNameServer(d.dns.clone()));
        }
        if with_times {
            let t = d.lease_time.max(60);
            r.opts_mut().insert(DhcpOption::AddressLeaseTime(t));
            r.opts_mut().insert(DhcpOption::Renewal(t / 2));
            r.opts_mut().insert(DhcpOption::Rebinding(t / 8 * 7));
        }
    }

    /// RFC 2131 4.1: relay, else the client's address, else broadcast.
    fn destination(&self, msg: &Message) -> SocketAddr {
        if !msg.giaddr().is_unspecified() {
            return SocketAddr::V4(SocketAddrV4::new(msg.giaddr(), self.config.dhcp.port));
        }
        if !msg.ciaddr().is_unspecified() {
            return SocketAddr::V4(SocketAddrV4::new(msg.ciaddr(), CLIENT_PORT));
        }
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT))
    }

    async fn choose(
        &self,
        mac: &str,
        known: &Known,
        requested: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, crate::db::DbError> {
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        let leases = self.db.list_dhcp_leases().await?;
        Ok(pool.choose(
            mac,
            known.pinned,
            requested,
            &leases,
            now_ms(),
            Some(self.server_ip),
        ))
    }

    async fn offer(
        &self,
        msg: &Message,
        mac: &str,
        known: &Known,
        client: Client,
    ) -> Result<Option<(Message, SocketAddr)>, crate::db::DbError> {
        if !self.admit_stranger(mac, known) {
            return Ok(None);
        }
        let Some(ip) = self.choose(mac, known, requested_ip(msg)).await? else {
            warn!(%mac, "DHCP: pool exhausted, no offer");
            return Ok(None);
        };
        // Hold the address for the REQUEST, without shortening a live lease.
        let now = now_ms();
        let current = self.db.dhcp_lease_for_mac(mac).await?;
        let expires = match current {
            Some(l) if l.ip == ip => l.expires_ms.max(now + OFFER_HOLD_MS),
            _ => now + OFFER_HOLD_MS,
        };
        self.db
            .put_dhcp_lease(&Lease {
                ip,
                mac: mac.to_owned(),
                expires_ms: expires,
                hostname: hostname(msg),
            })
            .await?;
        if known.node.is_none() {
            self.strangers.hold(mac, expires);
        }
        let mut r = self.base_reply(msg, MessageType::Offer, client);
        r.set_yiaddr(ip);
        self.lease_options(&mut r, true);
        if client == Client::Ipxe {
            no_proxydhcp_wait(&mut r);
        }
        Ok(Some((r, self.destination(msg))))
    }

    async fn ack(
        &self,
        msg: &Message,
        mac: &str,
        known: &Known,
        client: Client,
    ) -> Result<Option<(Message, SocketAddr)>, crate::db::DbError> {
        if let Some(sid) = server_id(msg)
            && sid != self.server_ip
        {
            // The client chose another server's offer.
            debug!(%mac, server = %sid, "DHCP: client chose another server");
            return Ok(None);
        }
        let wanted = requested_ip(msg).or_else(|| {
            let c = msg.ciaddr();
            (!c.is_unspecified()).then_some(c)
        });
        let Some(wanted) = wanted else {
            return Ok(None);
        };
        if !self.admit_stranger(mac, known) {
            return Ok(None);
        }
        let ours = self.choose(mac, known, Some(wanted)).await?;
        if ours != Some(wanted) {
            info!(%mac, requested = %wanted, "DHCP: NAK (address not available to this client)");
            let mut r = Message::default();
            r.set_opcode(Opcode::BootReply)
                .set_htype(msg.htype())
                .set_xid(msg.xid())
                .set_flags(msg.flags().set_broadcast())
                .set_giaddr(msg.giaddr())
                .set_chaddr(msg.chaddr());
            r.opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Nak));
            r.opts_mut()
                .insert(DhcpOption::ServerIdentifier(self.server_ip));
            let dest = if msg.giaddr().is_unspecified() {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT))
            } else {
                self.destination(msg)
            };
            return Ok(Some((r, dest)));
        }
        let lease_ms = i64::from(self.config.dhcp.lease_time.max(60)) * 1000;
        let expires_ms = now_ms().saturating_add(lease_ms);
        self.db
            .put_dhcp_lease(&Lease {
                ip: wanted,
                mac: mac.to_owned(),
                expires_ms,
                hostname: hostname(msg),
            })
            .await?;
        if known.node.is_none() {
            self.strangers.hold(mac, expires_ms);
        }
        info!(%mac, ip = %wanted, node = ?known.node, "DHCP: lease granted");
        let mut r = self.base_reply(msg, MessageType::Ack, client);
        r.set_yiaddr(wanted);
        r.set_ciaddr(msg.ciaddr());
        self.lease_options(&mut r, true);
        Ok(Some((r, self.destination(msg))))
    }

    /// proxyDHCP offer (port 67) or acknowledgement (port 4011): no
    /// address, the boot file, vendor class `PXEClient`, and PXE vendor
    /// options telling the firmware to use the boot file of this packet
    /// (discovery control bit 3).
    fn proxy_reply(
        &self,
        msg: &Message,
        client: Client,
        kind: MessageType,
    ) -> Option<(Message, SocketAddr)> {
        // Only network-boot clients care about proxyDHCP.
        if client == Client::Plain {
            return None;
        }
        let mut r = self.base_reply(msg, kind, client);
        r.opts_mut().get(OptionCode::BootfileName)?;
        if client != Client::HttpBoot {
            r.opts_mut()
                .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        }
        // Sub-option 6 (PXE_DISCOVERY_CONTROL) = 8, then End.
        r.opts_mut()
            .insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
        r.set_siaddr(self.server_ip);
        let dest = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT));
        Some((r, dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipxe_is_told_not_to_wait_for_proxydhcp() {
        let mut m = Message::default();
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Offer));
        no_proxydhcp_wait(&mut m);
        let mut bytes = Vec::new();
        m.encode(&mut Encoder::new(&mut bytes)).unwrap();
        assert!(
            bytes.windows(5).any(|w| w == [175, 3, 176, 1, 1]),
            "option 175 with sub-option 176 = 1 on the wire"
        );
    }

    #[test]
    fn only_ethernet_macs() {
        let mut m = Message::default();
        m.set_chaddr(&[0x52, 0x54, 0, 0xab, 0, 1]);
        assert_eq!(client_mac(&m).as_deref(), Some("52:54:00:ab:00:01"));
        m.set_htype(HType::Unknown(32));
        assert_eq!(client_mac(&m), None);
    }
}

//! Who the DHCP server answers, and which boot file each kind of client
//! gets.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use serde_json::Value;

use crate::config::{Config, DhcpConfig};
use crate::model::{Node, Port};

/// Whether `node` should be booting the agent ramdisk now: the states the
/// per-MAC iPXE script boots the ramdisk in (inspecting, cleaning,
/// deploying and their wait states), and, with fast track on for the node
/// and the node not in maintenance, the stable states where the agent is
/// kept running (its ramdisk renews its lease there). Ingot has no rescue
/// states yet; they would belong here.
pub fn boots_ramdisk(config: &Config, node: &Node) -> bool {
    let transient_or_wait = node.provision_state.boots_ramdisk();
    let fast_track = node
        .driver_info_flag("fast_track")
        .unwrap_or(config.fast_track);
    transient_or_wait || (fast_track && !node.maintenance && node.provision_state.keeps_agent())
}

/// A fixed address for the port: `port.extra.dhcp_address`, else the
/// node's `driver_info.dhcp_address`.
pub fn pinned_address(node: &Node, port: &Port) -> Option<Ipv4Addr> {
    let parse = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| s.trim().parse().ok())
    };
    parse(port.extra.get("dhcp_address")).or_else(|| parse(node.driver_info.get("dhcp_address")))
}

/// What kind of network-boot client sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// iPXE (user class `iPXE`, or its option 175).
    Ipxe,
    /// UEFI HTTP Boot firmware (vendor class `HTTPClient…`).
    HttpBoot,
    /// PXE firmware (vendor class `PXEClient…`) with its architecture
    /// (option 93; 0 when absent).
    Pxe(u16),
    /// Anything else (the ramdisk's own DHCP client): an address, no boot file.
    Plain,
}

fn class_starts_with(msg: &Message, prefix: &[u8]) -> bool {
    matches!(msg.opts().get(OptionCode::ClassIdentifier),
        Some(DhcpOption::ClassIdentifier(c)) if c.starts_with(prefix))
}

/// Classifies a request.
pub fn client(msg: &Message) -> Client {
    let user_class_ipxe = match msg.opts().get(OptionCode::UserClass) {
        // iPXE sends "iPXE" as is; RFC 3004 clients prefix it with its
        // length. Either way the bytes contain it.
        Some(DhcpOption::UserClass(c)) => c.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    if user_class_ipxe || msg.opts().get(OptionCode::Unknown(175)).is_some() {
        return Client::Ipxe;
    }
    if class_starts_with(msg, b"HTTPClient") {
        return Client::HttpBoot;
    }
    if class_starts_with(msg, b"PXEClient") {
        let arch = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
            Some(DhcpOption::ClientSystemArchitecture(a)) => u16::from(*a),
            _ => 0,
        };
        return Client::Pxe(arch);
    }
    Client::Plain
}

/// The boot file of a client: an HTTP URL for iPXE and UEFI HTTP Boot, a
/// TFTP file name for PXE firmware, none for other clients.
pub fn boot_file(dhcp: &DhcpConfig, http_base: &str, client: Client) -> Option<String> {
    match client {
        Client::Ipxe | Client::HttpBoot => Some(format!("{http_base}/boot/boot.ipxe")),
        // 0: BIOS; 6/7/9: x86 and x86-64 UEFI; 11: arm64 UEFI (RFC 4578, IANA).
        Client::Pxe(0) => Some(dhcp.bios_loader.clone()),
        Client::Pxe(6 | 7 | 9) => Some(dhcp.uefi_loader.clone()),
        Client::Pxe(11) => Some(dhcp.arm64_loader.clone()),
        Client::Pxe(other) => {
            tracing::debug!(
                arch = other,
                "DHCP: PXE client of an architecture without a loader"
            );
            None
        }
        Client::Plain => None,
    }
}

/// Where iPXE and HTTP Boot clients fetch `/boot/boot.ipxe` from: the
/// configured `http_url`, else the plain-HTTP boot listener, else the API;
/// an unspecified listen IP is replaced by the DHCP `server_ip`.
pub fn http_base(config: &Config) -> String {
    if let Some(u) = &config.dhcp.http_url {
        return u.trim_end_matches('/').to_owned();
    }
    let (addr, scheme) = match config.api.boot_listen {
        Some(a) => (a, "http"),
        None => (
            config.listen,
            if config.api.tls() { "https" } else { "http" },
        ),
    };
    let ip = match (addr.ip().is_unspecified(), config.dhcp.server_ip) {
        (true, Some(s)) => std::net::IpAddr::V4(s),
        _ => addr.ip(),
    };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, UnknownOption};

    fn msg(opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::default();
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    #[test]
    fn clients_and_boot_files() {
        let d = DhcpConfig::default();
        let base = "http://10.0.0.1:8080";
        let ipxe = msg(vec![
            DhcpOption::UserClass(b"iPXE".to_vec()),
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        ]);
        assert_eq!(client(&ipxe), Client::Ipxe);
        assert_eq!(
            boot_file(&d, base, Client::Ipxe).unwrap(),
            "http://10.0.0.1:8080/boot/boot.ipxe"
        );
        let ipxe175 = msg(vec![DhcpOption::Unknown(UnknownOption::new(
            OptionCode::Unknown(175),
            vec![1, 1, 1],
        ))]);
        assert_eq!(client(&ipxe175), Client::Ipxe);
        let bios = msg(vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            DhcpOption::ClientSystemArchitecture(Architecture::from(0)),
        ]);
        assert_eq!(client(&bios), Client::Pxe(0));
        assert_eq!(
            boot_file(&d, base, Client::Pxe(0)).unwrap(),
            "undionly.kpxe"
        );
        assert_eq!(boot_file(&d, base, Client::Pxe(7)).unwrap(), "snponly.efi");
        assert_eq!(boot_file(&d, base, Client::Pxe(9)).unwrap(), "snponly.efi");
        assert_eq!(
            boot_file(&d, base, Client::Pxe(11)).unwrap(),
            "grubnetaa64.efi"
        );
        assert_eq!(boot_file(&d, base, Client::Pxe(2)), None);
        let http = msg(vec![DhcpOption::ClassIdentifier(
            b"HTTPClient:Arch:00016".to_vec(),
        )]);
        assert_eq!(client(&http), Client::HttpBoot);
        assert_eq!(client(&msg(vec![])), Client::Plain);
        assert_eq!(boot_file(&d, base, Client::Plain), None);
    }

    #[test]
    fn http_base_prefers_the_boot_listener() {
        let mut c = Config {
            listen: "0.0.0.0:6385".parse().unwrap(),
            ..Config::default()
        };
        c.dhcp.server_ip = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(http_base(&c), "http://10.0.0.1:6385");
        c.api.boot_listen = Some("10.0.0.2:8080".parse().unwrap());
        assert_eq!(http_base(&c), "http://10.0.0.2:8080");
        c.dhcp.http_url = Some("http://boot.example/".into());
        assert_eq!(http_base(&c), "http://boot.example");
    }
}

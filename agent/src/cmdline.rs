//! The kernel command line: Ingot's `ingot.*` parameters and IPA's
//! equivalents, plus `BOOTIF=` and `ip=`.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Static IPv4 configuration from the kernel's `ip=` parameter
/// (`ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    /// The address.
    pub address: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Host name.
    pub hostname: Option<String>,
    /// Interface (None: the BOOTIF interface or the first with carrier).
    pub device: Option<String>,
    /// Name servers.
    pub dns: Vec<Ipv4Addr>,
}

/// What the agent reads from the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelParams {
    /// Coordinator URL(s): `ingot.api=` or `ipa-api-url=`.
    pub api_url: Option<String>,
    /// Pre-shared token: `ingot.token=` or `ipa-agent-token=`.
    pub token: Option<String>,
    /// Skip TLS verification: `ingot.insecure=1` or `ipa-insecure=1`.
    pub insecure: bool,
    /// PEM CA bundle path inside the ramdisk: `ingot.ca=`.
    pub ca_file: Option<String>,
    /// Debug logging: `ingot.debug` or `ipa-debug=1`.
    pub debug: bool,
    /// PXE interface MAC from `BOOTIF=01-aa-bb-…`, as `aa:bb:…`.
    pub bootif: Option<String>,
    /// `ip=` static configuration (None with `ip=dhcp` or without `ip=`).
    pub static_ip: Option<StaticIp>,
    /// Agent API TLS: `ingot.tls=auto|on|off`.
    pub tls: Option<String>,
    /// Callback host: `ingot.advertise=` or `ipa-advertise-host=`.
    pub advertise_host: Option<String>,
    /// Callback port: `ingot.advertise_port=` or `ipa-advertise-port=` (when a
    /// NAT or port forward sits between the coordinator and the agent).
    pub advertise_port: Option<u16>,
    /// Reboot this long after a fatal error: `ingot.reboot_timeout=<s>` (default 300 s).
    pub reboot_timeout: Option<Duration>,
}

fn truthy(v: Option<&str>) -> bool {
    match v {
        None => true,
        Some(v) => matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"),
    }
}

/// Normalizes `BOOTIF=01-52-54-00-12-34-56` (ARP type prefix) to a MAC.
pub fn bootif_mac(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.split(['-', ':']).collect();
    let mac = match parts.len() {
        7 => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    if mac
        .iter()
        .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(mac.join(":").to_ascii_lowercase())
    } else {
        None
    }
}

/// Parses the kernel's `ip=` value; `None` for `dhcp`, `on`, `any` or junk.
pub fn parse_ip(v: &str) -> Option<StaticIp> {
    let f: Vec<&str> = v.split(':').collect();
    let address: Ipv4Addr = f.first()?.parse().ok()?;
    let get = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
    let prefix = match get(3) {
        Some(m) if m.contains('.') => u32::from(m.parse::<Ipv4Addr>().ok()?).count_ones() as u8,
        Some(m) => m.parse().ok()?,
        None => 24,
    };
    Some(StaticIp {
        address,
        prefix,
        gateway: get(2).and_then(|g| g.parse().ok()),
        hostname: get(4).map(str::to_string),
        device: get(5).map(str::to_string),
        dns: [get(7), get(8)]
            .into_iter()
            .flatten()
            .filter_map(|d| d.parse().ok())
            .collect(),
    })
}

/// Parses a command line.
pub fn parse(cmdline: &str) -> KernelParams {
    let mut p = KernelParams::default();
    for word in cmdline.split_whitespace() {
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        match (k, v) {
            ("ingot.api" | "ipa-api-url", Some(v)) => p.api_url = Some(v.to_string()),
            ("ingot.token" | "ipa-agent-token", Some(v)) => p.token = Some(v.to_string()),
            ("ingot.insecure" | "ipa-insecure", v) => p.insecure = truthy(v),
            ("ingot.ca", Some(v)) => p.ca_file = Some(v.to_string()),
            ("ingot.debug" | "ipa-debug", v) => p.debug = truthy(v),
            ("BOOTIF", Some(v)) => p.bootif = bootif_mac(v),
            ("ip", Some(v)) => p.static_ip = parse_ip(v),
            ("ingot.tls", Some(v)) => p.tls = Some(v.to_string()),
            ("ingot.advertise" | "ipa-advertise-host", Some(v)) => {
                p.advertise_host = Some(v.to_string())
            }
            ("ingot.advertise_port" | "ipa-advertise-port", Some(v)) => {
                p.advertise_port = v.parse().ok()
            }
            ("ingot.reboot_timeout", Some(v)) => {
                p.reboot_timeout = v.parse().ok().map(Duration::from_secs)
            }
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ingot_and_ipa_parameters() {
        let p = parse(
            "console=ttyS0 BOOTIF=01-52-54-00-12-34-56 ipa-api-url=http://10.0.2.2:6385 ipa-debug=1 ingot.token=abc ipa-insecure=1 ingot.reboot_timeout=60",
        );
        assert_eq!(p.api_url.as_deref(), Some("http://10.0.2.2:6385"));
        assert_eq!(p.bootif.as_deref(), Some("52:54:00:12:34:56"));
        assert!(p.debug && p.insecure);
        assert_eq!(p.token.as_deref(), Some("abc"));
        assert_eq!(p.reboot_timeout, Some(Duration::from_secs(60)));
        let p = parse("ipa-advertise-host=127.0.0.1 ipa-advertise-port=19999");
        assert_eq!(p.advertise_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.advertise_port, Some(19999));
        let p = parse(
            "ingot.api=https://c:6385 ip=10.0.0.5::10.0.0.1:255.255.255.0:node1:eth0:none:10.0.0.53",
        );
        assert_eq!(p.api_url.as_deref(), Some("https://c:6385"));
        assert_eq!(
            p.static_ip,
            Some(StaticIp {
                address: "10.0.0.5".parse().unwrap(),
                prefix: 24,
                gateway: Some("10.0.0.1".parse().unwrap()),
                hostname: Some("node1".into()),
                device: Some("eth0".into()),
                dns: vec!["10.0.0.53".parse().unwrap()],
            })
        );
        assert_eq!(parse("ip=dhcp").static_ip, None);
    }
}

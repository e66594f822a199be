//! The kernel command line: Ingot's `ingot.*` parameters and IPA's
//! equivalents, plus `BOOTIF=` and `ip=`.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::ca::{CaError, TrustedCa};

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
    /// A CA certificate on the command line: `ingot.ca_b64=` (base64 of a DER
    /// certificate or of a PEM bundle). Checked by [`KernelParams::trusted_ca`].
    pub ca_b64: Option<String>,
    /// Debug logging: `ingot.debug` or `ipa-debug=1`.
    pub debug: bool,
    /// Log lines as JSON objects: `ingot.log_format=json` (default `text`).
    pub log_json: bool,
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

impl KernelParams {
    /// The CA certificates of `ingot.ca=` and `ingot.ca_b64=` (both, when both
    /// are given), read and checked. A configured CA that cannot be read,
    /// decoded or parsed is an error naming the parameter: the agent must not
    /// fall back to the public roots. Empty when neither is given.
    pub fn trusted_ca(&self) -> Result<TrustedCa, CaError> {
        let mut ca = TrustedCa::none();
        if let Some(f) = &self.ca_file {
            ca.extend(TrustedCa::from_pem_file(
                &format!("ingot.ca={f}"),
                std::path::Path::new(f),
            )?);
        }
        if let Some(b) = &self.ca_b64 {
            ca.extend(TrustedCa::from_base64("ingot.ca_b64", b)?);
        }
        Ok(ca)
    }
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
            ("ingot.ca_b64", Some(v)) => p.ca_b64 = Some(v.to_string()),
            ("ingot.debug" | "ipa-debug", v) => p.debug = truthy(v),
            ("ingot.log_format", Some(v)) => p.log_json = v == "json",
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
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    use super::*;

    #[test]
    fn log_format_json_is_a_kernel_parameter() {
        assert!(parse("console=ttyS0 ingot.log_format=json").log_json);
        assert!(!parse("ingot.log_format=text").log_json);
        assert!(!parse("console=ttyS0").log_json);
    }

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

    /// A self-signed CA certificate: (DER, PEM).
    fn ca_cert() -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let c = p.self_signed(&key).unwrap();
        (c.der().to_vec(), c.pem())
    }

    /// A DER certificate whose standard base64 differs from the URL-safe one.
    fn ca_der_with_url_unsafe_base64() -> Vec<u8> {
        loop {
            let (der, _) = ca_cert();
            let s = STANDARD.encode(&der);
            if s.contains(['+', '/']) {
                return der;
            }
        }
    }

    fn ca_b64(value: &str) -> Result<TrustedCa, CaError> {
        parse(&format!("console=ttyS0 ingot.ca_b64={value} ingot.debug")).trusted_ca()
    }

    #[test]
    fn ca_b64_der_in_both_alphabets_with_or_without_padding() {
        let der = ca_der_with_url_unsafe_base64();
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let text = engine.encode(&der);
            let ca = ca_b64(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ca.len(), 1);
            assert_eq!(ca.origins(), ["ingot.ca_b64"]);
            // The clients get the same certificate back as PEM.
            let pem = String::from_utf8(ca.pem().unwrap()).unwrap();
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert_eq!(STANDARD.decode(body).unwrap(), der);
        }
        assert_eq!(parse("ingot.ca_b64=abc").ca_b64.as_deref(), Some("abc"));
    }

    #[test]
    fn ca_b64_pem_bundle() {
        let (_, one) = ca_cert();
        let (_, two) = ca_cert();
        let ca = ca_b64(&URL_SAFE_NO_PAD.encode(format!("{one}{two}"))).unwrap();
        assert_eq!(ca.len(), 2);
        // Leading white space before -----BEGIN is still PEM.
        let ca = ca_b64(&STANDARD.encode(format!("\n{one}"))).unwrap();
        assert_eq!(ca.len(), 1);
    }

    #[test]
    fn ca_b64_oversized_is_refused() {
        let (_, pem) = ca_cert();
        let mut bundle = String::new();
        while bundle.len() <= crate::ca::MAX_CA_B64_BYTES {
            bundle.push_str(&pem);
        }
        let e = ca_b64(&STANDARD.encode(&bundle)).unwrap_err();
        assert_eq!(e.origin, "ingot.ca_b64");
        assert!(e.reason.contains("too large"), "{e}");
        // Just over the limit once decoded, though short enough to decode.
        let e = ca_b64(&STANDARD_NO_PAD.encode(vec![0x30u8; 4097])).unwrap_err();
        assert!(e.reason.contains("4097 bytes decoded"), "{e}");
        // Exactly at the limit is decoded (and then fails as a certificate).
        let e = ca_b64(&STANDARD.encode(vec![0x30u8; 4096])).unwrap_err();
        assert!(e.reason.contains("not a valid"), "{e}");
    }

    #[test]
    fn ca_b64_garbage_is_refused() {
        let bad_cert =
            STANDARD.encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let key_only =
            STANDARD.encode("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        for (value, why) in [
            ("", "empty"),
            ("not*base64!", "not base64"),
            ("QUJD", "not a valid"), // "ABC": base64, not a certificate
            (bad_cert.as_str(), "certificate 1: not a valid"),
            (key_only.as_str(), "no PEM certificate"),
        ] {
            let e = ca_b64(value).unwrap_err();
            assert_eq!(e.origin, "ingot.ca_b64", "{value}");
            assert!(e.reason.contains(why), "{value}: {e}");
            assert!(e.to_string().contains("ingot.ca_b64"), "{e}");
        }
        // A truncated certificate.
        let (der, _) = ca_cert();
        assert!(ca_b64(&STANDARD.encode(&der[..der.len() - 10])).is_err());
    }

    #[test]
    fn configured_but_missing_ca_file_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-ca.pem");
        let p = parse(&format!("ingot.ca={}", missing.display()));
        let e = p.trusted_ca().unwrap_err();
        assert_eq!(e.origin, format!("ingot.ca={}", missing.display()));
        assert!(e.reason.contains("cannot read"), "{e}");
        // A file that holds no certificate is refused too.
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = parse(&format!("ingot.ca={}", empty.display()))
            .trusted_ca()
            .unwrap_err();
        assert!(e.reason.contains("no PEM certificate"), "{e}");
        // Without any CA configured: empty (public roots only).
        assert!(
            parse("ingot.api=https://c")
                .trusted_ca()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn ca_file_and_ca_b64_together_trust_both() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pem) = ca_cert();
        let (der, _) = ca_cert();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, &pem).unwrap();
        let p = parse(&format!(
            "ingot.ca={} ingot.ca_b64={}",
            f.display(),
            URL_SAFE.encode(&der)
        ));
        let ca = p.trusted_ca().unwrap();
        assert_eq!(ca.len(), 2);
        assert_eq!(
            ca.origins(),
            [format!("ingot.ca={}", f.display()), "ingot.ca_b64".into()]
        );
        // A broken ingot.ca_b64 fails even when ingot.ca is fine.
        let p = parse(&format!("ingot.ca={} ingot.ca_b64=QUJD", f.display()));
        assert_eq!(p.trusted_ca().unwrap_err().origin, "ingot.ca_b64");
    }
}

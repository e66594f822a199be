//! Auto-TLS (IPA's `_start_auto_tls`): a self-signed ECDSA P-384 certificate
//! for the advertised address, valid 90 days from an hour ago (clock skew),
//! whose PEM the heartbeat sends as `agent_verify_ca` so the coordinator
//! pins it.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P384_SHA384};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the certificate or the TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation.
    #[error("generating the certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls configuration.
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A generated certificate and the acceptor that serves it.
#[derive(Clone)]
pub struct AutoTls {
    /// The certificate in PEM, for `agent_verify_ca`.
    pub cert_pem: String,
    /// The TLS acceptor for the API server.
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for AutoTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoTls").finish_non_exhaustive()
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

/// Generates the certificate for `host` (an IP address or a name).
pub fn generate(host: &str) -> Result<AutoTls, TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    // Day granularity: from yesterday (covers the hour of allowed clock skew)
    // to 90 days ahead.
    let (y, m, d) = civil_from_days(now / 86_400 - 1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(now / 86_400 + 90);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.self_signed(&key)?;
    let cert_pem = cert.pem();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok(AutoTls {
        cert_pem,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn generates_a_certificate() {
        let t = generate("127.0.0.1").unwrap();
        assert!(t.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}

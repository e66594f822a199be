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

/// Generates the certificate for `host` (an IP address or a name).
pub fn generate(host: &str) -> Result<AutoTls, TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    // From a day ago (covers the hour of allowed clock skew) to 90 days ahead.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(90);
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
    fn generates_a_certificate() {
        let t = generate("127.0.0.1").unwrap();
        assert!(t.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}

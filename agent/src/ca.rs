//! The CA certificates the agent trusts for the coordinator and for image,
//! checksum and config drive downloads: read, decoded and checked once at
//! start-up from `ingot.ca=` (a PEM bundle in the ramdisk), `ingot.ca_b64=`
//! (the kernel command line) or the CLI's `--ca-file`, then handed to every
//! HTTP client. A configured CA that cannot be read or parsed is an error,
//! never a silent fallback to the public roots.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

/// Most bytes `ingot.ca_b64=` may decode to. The x86 kernel command line is
/// at most 2048 bytes, so anything near this is a mistake.
pub const MAX_CA_B64_BYTES: usize = 4096;

/// A CA that cannot be used; `origin` names where it came from
/// (`ingot.ca=/path`, `ingot.ca_b64`, `--ca-file /path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CA certificate from {origin}: {reason}")]
pub struct CaError {
    /// Where the CA was configured.
    pub origin: String,
    /// What is wrong with it.
    pub reason: String,
}

impl CaError {
    fn new(origin: &str, reason: impl Into<String>) -> Self {
        Self {
            origin: origin.to_string(),
            reason: reason.into(),
        }
    }
}

/// Validated CA certificates, as the HTTP clients take them. Empty: only the
/// built-in public roots are trusted.
#[derive(Debug, Clone, Default)]
pub struct TrustedCa {
    certs: Vec<reqwest::Certificate>,
    /// The same certificates as one PEM bundle, for `ingot_image_tools`.
    pem: Vec<u8>,
    origins: Vec<String>,
}

/// Standard alphabet, padding optional (URL-safe input is translated first).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn is_pem(data: &[u8]) -> bool {
    data.trim_ascii_start().starts_with(b"-----BEGIN")
}

impl TrustedCa {
    /// Nothing beyond the public roots.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when no CA was configured.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// How many certificates are trusted (besides the public roots).
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Where the certificates came from, for the log.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Adds a certificate in DER after checking that it parses as a trust anchor.
    fn push_der(&mut self, origin: &str, der: CertificateDer<'_>) -> Result<(), CaError> {
        RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| CaError::new(origin, format!("not a valid X.509 certificate: {e}")))?;
        let cert = reqwest::Certificate::from_der(&der)
            .map_err(|e| CaError::new(origin, format!("not a valid certificate: {e}")))?;
        self.certs.push(cert);
        self.pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let b64 = general_purpose::STANDARD.encode(&der);
        for line in b64.as_bytes().chunks(64) {
            self.pem.extend_from_slice(line);
            self.pem.push(b'\n');
        }
        self.pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
        Ok(())
    }

    /// Every `CERTIFICATE` of a PEM bundle (other sections are skipped); a
    /// bundle without one is an error.
    pub fn from_pem(origin: &str, pem: &[u8]) -> Result<Self, CaError> {
        let mut ca = Self::default();
        for (i, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let der = der.map_err(|e| {
                CaError::new(origin, format!("certificate {}: bad PEM: {e}", i + 1))
            })?;
            ca.push_der(origin, der).map_err(|e| CaError {
                reason: format!("certificate {}: {}", i + 1, e.reason),
                ..e
            })?;
        }
        if ca.is_empty() {
            return Err(CaError::new(
                origin,
                "no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            ));
        }
        ca.origins.push(origin.to_string());
        Ok(ca)
    }

    /// One certificate in DER.
    pub fn from_der(origin: &str, der: &[u8]) -> Result<Self, CaError> {
        let mut ca = Self::default();
        ca.push_der(origin, CertificateDer::from(der))?;
        ca.origins.push(origin.to_string());
        Ok(ca)
    }

    /// A PEM bundle in a file; a missing or unreadable file is an error.
    pub fn from_pem_file(origin: &str, path: &std::path::Path) -> Result<Self, CaError> {
        let pem = std::fs::read(path)
            .map_err(|e| CaError::new(origin, format!("cannot read it: {e}")))?;
        Self::from_pem(origin, &pem)
    }

    /// Base64 (standard or URL-safe alphabet, padding optional) of a DER
    /// certificate, or of a PEM bundle (decoded data starting with
    /// `-----BEGIN`), at most [`MAX_CA_B64_BYTES`] once decoded.
    pub fn from_base64(origin: &str, text: &str) -> Result<Self, CaError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CaError::new(origin, "empty"));
        }
        // 4 characters per 3 bytes: refuse before decoding anything larger.
        if text.len() > MAX_CA_B64_BYTES.div_ceil(3) * 4 {
            return Err(CaError::new(
                origin,
                format!(
                    "too large: {} base64 characters, the limit is {MAX_CA_B64_BYTES} decoded bytes",
                    text.len()
                ),
            ));
        }
        let standard: String = text
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let data = LENIENT
            .decode(standard)
            .map_err(|e| CaError::new(origin, format!("not base64: {e}")))?;
        if data.len() > MAX_CA_B64_BYTES {
            return Err(CaError::new(
                origin,
                format!(
                    "too large: {} bytes decoded, the limit is {MAX_CA_B64_BYTES}",
                    data.len()
                ),
            ));
        }
        if is_pem(&data) {
            Self::from_pem(origin, &data)
        } else {
            Self::from_der(origin, &data)
        }
    }

    /// Adds `other`'s certificates: all of them become roots.
    pub fn extend(&mut self, other: Self) {
        self.certs.extend(other.certs);
        self.pem.extend(other.pem);
        self.origins.extend(other.origins);
    }

    /// Trusts the certificates in a reqwest client (besides the public roots).
    pub fn apply(&self, mut b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for c in &self.certs {
            b = b.add_root_certificate(c.clone());
        }
        b
    }

    /// The certificates as a PEM bundle (None when empty), for
    /// `ingot_image_tools::source::TlsOptions::ca_pem`.
    pub fn pem(&self) -> Option<Vec<u8>> {
        (!self.is_empty()).then(|| self.pem.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn pem_bundles_round_trip_and_errors_name_the_origin() {
        let bundle = format!("comment line\n{}{}", ca_pem(), ca_pem());
        let ca = TrustedCa::from_pem("ingot.ca=/x", bundle.as_bytes()).unwrap();
        assert_eq!(ca.len(), 2);
        // The re-encoded PEM holds the same two certificates.
        let again = TrustedCa::from_pem("again", &ca.pem().unwrap()).unwrap();
        assert_eq!(again.len(), 2);
        assert!(TrustedCa::none().pem().is_none());

        let e = TrustedCa::from_pem("ingot.ca=/x", b"nothing here").unwrap_err();
        assert_eq!(e.origin, "ingot.ca=/x");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = TrustedCa::from_pem("ingot.ca=/x", bad.as_bytes()).unwrap_err();
        assert!(e.reason.starts_with("certificate 1: not a valid"), "{e}");
    }
}

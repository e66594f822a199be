//! Per-node, time-limited image URLs, in the spirit of Swift's temporary
//! URLs: `/images/<key>?node=<uuid>&expires=<unix seconds>&sig=<hex>`, where
//! `sig` is HMAC-SHA256 over the method, path, node and expiry with a key
//! the coordinators of one database share. A cached image is served only
//! to a request that carries a valid, unexpired signature; the kernel and
//! ramdisk stay public (they hold no tenant data).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signing key.
#[derive(Clone)]
pub struct UrlKey([u8; 32]);

impl std::fmt::Debug for UrlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlKey(***)")
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// A parameter is missing or malformed.
    #[error("the image URL is not signed (node, expires and sig are required)")]
    Unsigned,
    /// Past its expiry.
    #[error("the image URL expired")]
    Expired,
    /// The signature does not match.
    #[error("the image URL's signature does not match")]
    BadSignature,
}

impl UrlKey {
    /// A key from its hex form (as stored).
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(Self(v.try_into().ok()?))
    }

    /// A fresh random key, in hex.
    pub fn random_hex() -> String {
        let mut k = [0u8; 32];
        // getrandom only fails without any entropy source; a UUID's
        // randomness is the fallback then.
        if getrandom::getrandom(&mut k).is_err() {
            k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        hex::encode(k)
    }

    fn mac(&self, path: &str, node: &str, expires: u64) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC.
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_mac());
        m.update(format!("GET\n{path}\n{node}\n{expires}").as_bytes());
        m
    }

    /// The signature of `path` for `node` until `expires`.
    pub fn sign(&self, path: &str, node: &str, expires: u64) -> String {
        hex::encode(self.mac(path, node, expires).finalize().into_bytes())
    }

    /// `path` with its signed query.
    pub fn signed(&self, path: &str, node: &str, expires: u64) -> String {
        format!(
            "{path}?node={node}&expires={expires}&sig={}",
            self.sign(path, node, expires)
        )
    }

    /// Checks the query of a request for `path` at `now`; returns the node.
    pub fn verify(
        &self,
        path: &str,
        query: &[(String, String)],
        now: u64,
    ) -> Result<String, UrlError> {
        let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
        let (Some(node), Some(expires), Some(sig)) = (get("node"), get("expires"), get("sig"))
        else {
            return Err(UrlError::Unsigned);
        };
        let expires: u64 = expires.parse().map_err(|_| UrlError::Unsigned)?;
        let sig = hex::decode(sig).map_err(|_| UrlError::Unsigned)?;
        self.mac(path, node, expires)
            .verify_slice(&sig)
            .map_err(|_| UrlError::BadSignature)?;
        if now > expires {
            return Err(UrlError::Expired);
        }
        Ok(node.to_owned())
    }
}

#[cold]
fn unreachable_mac() -> Hmac<Sha256> {
    // HMAC takes keys of any length; this is never reached.
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("HMAC accepts any key length")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.split_once('?').unwrap().1.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn sign_and_verify() {
        let k = UrlKey::from_hex(&UrlKey::random_hex()).unwrap();
        let url = k.signed("/images/abc", "node-1", 1000);
        assert_eq!(k.verify("/images/abc", &q(&url), 999), Ok("node-1".into()));
        assert_eq!(
            k.verify("/images/abc", &q(&url), 1001),
            Err(UrlError::Expired)
        );
        assert_eq!(
            k.verify("/images/abd", &q(&url), 999),
            Err(UrlError::BadSignature)
        );
        let tampered = url.replace("node-1", "node-2");
        assert_eq!(
            k.verify("/images/abc", &q(&tampered), 999),
            Err(UrlError::BadSignature)
        );
        let later = url.replace("expires=1000", "expires=9999");
        assert_eq!(
            k.verify("/images/abc", &q(&later), 999),
            Err(UrlError::BadSignature)
        );
        assert_eq!(k.verify("/images/abc", &[], 0), Err(UrlError::Unsigned));
        let other = UrlKey::from_hex(&UrlKey::random_hex()).unwrap();
        assert_eq!(
            other.verify("/images/abc", &q(&url), 999),
            Err(UrlError::BadSignature)
        );
    }
}

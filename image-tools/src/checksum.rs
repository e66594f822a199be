//! Checksums of the downloaded bytes (Glance's `os_hash_value` semantics).

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::source::{self, SourceError, SourceOptions};

/// A hash algorithm accepted for image verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256 (uses the CPU's SHA extensions when present).
    Sha256,
    /// SHA-512.
    Sha512,
    /// MD5: accepted only when the caller explicitly allows it.
    Md5,
}

impl Algorithm {
    /// The name used in `<algorithm>:<hex>` and in Glance's `os_hash_algo`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Md5 => "md5",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
            Algorithm::Md5 => 32,
        }
    }

    /// Parses an algorithm name (`sha256`, `sha512`, `md5`; case-insensitive).
    pub fn from_name(name: &str) -> Result<Self, ChecksumError> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            "md5" => Ok(Algorithm::Md5),
            other => Err(ChecksumError::UnknownAlgorithm(other.to_string())),
        }
    }
}

/// An expected checksum: algorithm plus lower-case hex digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Lower-case hex digest.
    pub hex: String,
}

/// Why a checksum specification was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    /// The text was not `<algorithm>:<hex>`.
    #[error("checksum must look like sha256:<hex> or sha512:<hex>, got {0:?}")]
    Syntax(String),
    /// An algorithm other than sha256, sha512 or md5.
    #[error("unsupported checksum algorithm {0:?} (use sha256 or sha512)")]
    UnknownAlgorithm(String),
    /// The digest had the wrong length or a non-hex character.
    #[error("{algorithm} digest must be {expected} hex characters, got {got:?}")]
    BadDigest {
        /// Algorithm name.
        algorithm: &'static str,
        /// Expected number of hex characters.
        expected: usize,
        /// What was given.
        got: String,
    },
    /// MD5 without the explicit opt-in.
    #[error("md5 is weak and refused unless explicitly allowed (--allow-md5)")]
    Md5NotAllowed,
}

impl Checksum {
    /// Builds a checksum from an algorithm and a hex digest, validating both.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, ChecksumError> {
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChecksumError::BadDigest {
                algorithm: algorithm.name(),
                expected: algorithm.hex_len(),
                got: hex,
            });
        }
        Ok(Self { algorithm, hex })
    }

    /// Refuses MD5 unless `allow_md5`.
    pub fn check_allowed(&self, allow_md5: bool) -> Result<(), ChecksumError> {
        if self.algorithm == Algorithm::Md5 && !allow_md5 {
            return Err(ChecksumError::Md5NotAllowed);
        }
        Ok(())
    }
}

impl FromStr for Checksum {
    type Err = ChecksumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| ChecksumError::Syntax(s.to_string()))?;
        Checksum::new(Algorithm::from_name(algo)?, hex)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// An incremental hasher for one [`Algorithm`].
#[derive(Debug, Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
    /// MD5 state.
    Md5(Md5),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// The lower-case hex digest.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// The digest of an image file as it is downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigest {
    /// The digest.
    pub checksum: Checksum,
    /// Bytes hashed.
    pub bytes: u64,
}

/// Hashes every byte `location` (a path, or an http(s) URL) yields, read as
/// the agent reads it: the file as stored, not the disk it decodes to. This
/// is what the coordinator and the agent check against `image_checksum` or
/// `image_os_hash_value` (Glance's `os_hash_value`).
pub fn digest_source(
    location: &str,
    algorithm: Algorithm,
    opts: &SourceOptions,
) -> Result<SourceDigest, SourceError> {
    let mut src = source::open(location, opts)?;
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(SourceDigest {
        checksum: Checksum {
            algorithm,
            hex: hasher.finish_hex(),
        },
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let c: Checksum = "SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
            .parse()
            .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(
            c.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(matches!(
            "sha256:abc".parse::<Checksum>(),
            Err(ChecksumError::BadDigest { .. })
        ));
        assert!(matches!(
            "crc32:00".parse::<Checksum>(),
            Err(ChecksumError::UnknownAlgorithm(_))
        ));
        assert!(matches!(
            "nocolon".parse::<Checksum>(),
            Err(ChecksumError::Syntax(_))
        ));
        let md5: Checksum = "md5:d41d8cd98f00b204e9800998ecf8427e".parse().unwrap();
        assert_eq!(md5.check_allowed(false), Err(ChecksumError::Md5NotAllowed));
        assert!(md5.check_allowed(true).is_ok());
    }

    #[test]
    fn hashes_known_vectors() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"abc");
        assert_eq!(
            h.finish_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Hasher::new(Algorithm::Md5);
        h.update(b"");
        assert_eq!(h.finish_hex(), "d41d8cd98f00b204e9800998ecf8427e");
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish_hex().starts_with("ddaf35a193617aba"));
    }
}

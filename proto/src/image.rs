//! Reports about image writes, shared by the agent's CLI and its command results.

use serde::{Deserialize, Serialize};

/// The summary of one image write, printed as JSON by `ingot-agent write-image`
/// and returned in the result of `standby.prepare_image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteSummary {
    /// What was read: a URL or a path.
    pub source: String,
    /// The device or file written.
    pub device: String,
    /// The detected (or forced) image format, e.g. `raw`, `zstd`, `qcow2`.
    pub format: String,
    /// Bytes received from the source (what the checksum covers).
    pub source_bytes: u64,
    /// Size of the disk image once decoded; every byte of it was written or zeroed.
    pub image_bytes: u64,
    /// Bytes written as data.
    pub bytes_written: u64,
    /// Bytes written as zeros (by BLKZEROOUT, fallocate or zero writes), or skipped
    /// because the target was declared zeroed.
    pub zero_bytes: u64,
    /// Whether zero runs were skipped because of `--target-is-zeroed`.
    pub zeros_skipped: bool,
    /// Wall time of the whole write, in seconds.
    pub seconds: f64,
    /// `image_bytes` per second, in MB (10^6 bytes).
    pub mb_per_s: f64,
    /// Times the download was resumed with a Range request.
    pub resumes: u32,
    /// The checksum that was verified, if one was given.
    pub checksum: Option<VerifiedChecksum>,
}

/// A checksum that matched the downloaded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedChecksum {
    /// `sha256`, `sha512` or `md5`.
    pub algorithm: String,
    /// Lower-case hex digest.
    pub value: String,
    /// Always true in a summary: a mismatch is an error, never a summary.
    pub verified: bool,
}

//! Reports about disk wipes: what `ingot-agent wipe` prints with `--json`, and
//! what the agent's clean steps return to the coordinator, which stores them as
//! the disposal record of each disk (NIST SP 800-88 style).

use serde::{Deserialize, Serialize};

/// What kind of wipe was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeMode {
    /// Remove partition tables and filesystem/RAID/LVM/swap/LUKS signatures
    /// (Ironic's `erase_devices_metadata`). Data stays readable.
    Metadata,
    /// Erase all user data with the strongest method the device supports.
    Secure,
}

/// An erase method, in the order secure mode prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeMethod {
    /// NVMe Sanitize, crypto erase (SANACT 100b).
    NvmeSanitizeCrypto,
    /// NVMe Sanitize, block erase (SANACT 010b).
    NvmeSanitizeBlock,
    /// NVMe Format NVM with Secure Erase Settings 2 (cryptographic erase).
    NvmeFormatCrypto,
    /// NVMe Format NVM with Secure Erase Settings 1 (user data erase).
    NvmeFormatUserData,
    /// ATA SECURITY ERASE UNIT, enhanced mode.
    AtaSecurityEraseEnhanced,
    /// ATA SECURITY ERASE UNIT, normal mode.
    AtaSecurityErase,
    /// `BLKSECDISCARD` over the whole device.
    SecureDiscard,
    /// `BLKDISCARD` over the whole device, then `BLKZEROOUT`, then zeros verified.
    DiscardZeroOut,
    /// N passes of pseudo-random data, then one pass of zeros.
    Overwrite,
    /// Metadata mode: signatures and partition tables erased, first and last MiB zeroed.
    Metadata,
}

/// NIST SP 800-88 sanitization category of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NistCategory {
    /// Protects against simple, non-invasive recovery (reads through the interface).
    Clear,
    /// Protects against laboratory recovery (device-internal sanitize/crypto erase).
    Purge,
    /// Not a sanitization at all (metadata removal).
    None,
}

/// What kind of device was wiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// An NVMe namespace.
    Nvme,
    /// A disk that answers ATA pass-through (SATA/PATA, possibly behind SAS).
    Ata,
    /// Some other block device (virtio, SCSI, loop, MMC, ...).
    Block,
    /// A partition of a block device (device-wide erase commands are not allowed).
    Partition,
    /// A regular file (disk image).
    File,
}

/// Outcome of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeStatus {
    /// Erased, and the verification passed.
    Verified,
    /// Erased, but verification was turned off (`--verify none`): not a success.
    Unverified,
    /// Refused, failed, or the verification found data that survived.
    Failed,
}

/// How the result was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Sample locations were patterned before the erase and read back after
    /// (secure mode), or signatures were probed again (metadata mode).
    Sample,
    /// The whole device was read back.
    Full,
    /// No verification (the status is then `unverified`).
    None,
}

/// A method that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMethod {
    /// The method.
    pub method: WipeMethod,
    /// Why it was skipped (unsupported, frozen, multiple namespaces, ...) or how it failed.
    pub reason: String,
}

/// A signature or partition table found (and erased) in metadata mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundSignature {
    /// Signature name as blkid would say it (`ext4`, `vfat`, `gpt`, `linux_raid_member`, ...).
    pub name: String,
    /// Absolute byte offset of the magic on the device.
    pub offset: u64,
    /// Byte offset of the container it was found in (0 = the whole disk, else a partition start).
    pub container_offset: u64,
}

/// A partition found by reading the partition tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// `gpt`, `dos` (primary) or `dos-logical`.
    pub table: String,
    /// 1-based partition number as the kernel would number it.
    pub number: u32,
    /// Start offset in bytes.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The result of verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// What kind of check ran.
    pub mode: VerifyMode,
    /// True if the check passed.
    pub passed: bool,
    /// Sample locations written before the erase and read after (secure mode).
    pub samples: u32,
    /// Samples in which the pattern (or part of it) survived.
    pub samples_survived: u32,
    /// Whether every byte read had to be zero (the method guarantees zeros).
    pub expect_zero: bool,
    /// Bytes read back.
    pub bytes_read: u64,
    /// Non-zero bytes seen where zeros were expected.
    pub nonzero_bytes: u64,
    /// Signatures or partition tables still found (metadata mode).
    pub signatures_left: Vec<String>,
    /// Human-readable detail of a failure.
    pub detail: Option<String>,
}

/// The record of one device's wipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Path as named on the command line.
    pub path: String,
    /// What kind of device it is.
    pub kind: DeviceKind,
    /// Model string (NVMe/ATA identify, or sysfs), if known.
    pub model: Option<String>,
    /// Serial number, if known.
    pub serial: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u64,
    /// Metadata or secure.
    pub mode: WipeMode,
    /// The method that erased the device (None if none succeeded).
    pub method: Option<WipeMethod>,
    /// NIST SP 800-88 category of `method`.
    pub nist_category: Option<NistCategory>,
    /// Overwrite passes of random data (overwrite method only).
    pub passes: Option<u32>,
    /// Wall time of each overwrite pass in seconds: the random passes, then
    /// the zero pass (overwrite method only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_seconds: Vec<f64>,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// End time, RFC 3339 UTC.
    pub finished_at: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Bytes the method covered (erased, written or zeroed).
    pub bytes: u64,
    /// Stronger methods not used, and why; failed attempts too.
    pub skipped: Vec<SkippedMethod>,
    /// Partitions found in the tables (metadata mode).
    pub partitions: Vec<PartitionInfo>,
    /// Signatures found and erased (metadata mode).
    pub signatures: Vec<FoundSignature>,
    /// Verification result (None if the device was refused before any erase).
    pub verification: Option<Verification>,
    /// Outcome.
    pub status: WipeStatus,
    /// Why the device failed, if it did.
    pub error: Option<String>,
}

/// The report of one `wipe` run over one or more devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WipeReport {
    /// One entry per named device, in command-line order.
    pub devices: Vec<DeviceReport>,
    /// True only if every device is `verified`.
    pub success: bool,
}

impl WipeMethod {
    /// The NIST SP 800-88 category this method achieves when it succeeds and
    /// is verified. Device-internal erases are Purge; anything done through
    /// the block interface is Clear.
    pub fn nist_category(self) -> NistCategory {
        match self {
            Self::NvmeSanitizeCrypto
            | Self::NvmeSanitizeBlock
            | Self::NvmeFormatCrypto
            | Self::NvmeFormatUserData
            | Self::AtaSecurityEraseEnhanced
            | Self::AtaSecurityErase => NistCategory::Purge,
            Self::SecureDiscard | Self::DiscardZeroOut | Self::Overwrite => NistCategory::Clear,
            Self::Metadata => NistCategory::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_serialize_in_snake_case() {
        let s = serde_json::to_string(&WipeMethod::NvmeSanitizeCrypto).unwrap();
        assert_eq!(s, "\"nvme_sanitize_crypto\"");
        assert_eq!(
            serde_json::to_string(&WipeStatus::Unverified).unwrap(),
            "\"unverified\""
        );
        assert_eq!(WipeMethod::Overwrite.nist_category(), NistCategory::Clear);
        assert_eq!(
            WipeMethod::NvmeFormatCrypto.nist_category(),
            NistCategory::Purge
        );
    }
}

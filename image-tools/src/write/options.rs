//! What to write and how: [`WriteOptions`] and the xz memory limit's default.

use std::path::PathBuf;

use crate::checksum::Checksum;
use crate::format::FormatChoice;
use crate::source::SourceOptions;

/// What to write, where, and how.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// URL or path of the image.
    pub source: String,
    /// Block device or file to write.
    pub device: PathBuf,
    /// Expected checksum of the downloaded bytes.
    pub checksum: Option<Checksum>,
    /// Accept an MD5 checksum.
    pub allow_md5: bool,
    /// Format detection or an expected format.
    pub format: FormatChoice,
    /// The target already reads as zeros: skip zero runs instead of zeroing.
    pub target_is_zeroed: bool,
    /// Network retry, timeout and TLS options.
    pub source_options: SourceOptions,
    /// Size of each pipeline buffer.
    pub buffer_size: usize,
    /// Buffers in each of the two pools.
    pub buffers: usize,
    /// Most memory the xz decoder may use, in bytes; `None` for
    /// [`default_xz_memlimit`] (a quarter of the machine's RAM). An xz stream
    /// whose dictionary needs more is refused before it is decoded.
    pub xz_memlimit: Option<u64>,
}

impl WriteOptions {
    /// Options with the defaults for everything but source and device.
    pub fn new(source: impl Into<String>, device: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            device: device.into(),
            checksum: None,
            allow_md5: false,
            format: FormatChoice::Auto,
            target_is_zeroed: false,
            source_options: SourceOptions::default(),
            buffer_size: 1 << 20,
            buffers: 8,
            xz_memlimit: None,
        }
    }
}

/// The smallest default xz memory limit. `xz -9` needs 65 MiB to decode, so
/// every standard preset decodes on any machine; the 1.5 GiB or 4 GiB
/// dictionaries an xz header may declare do not.
pub const XZ_MEMLIMIT_FLOOR: u64 = 128 << 20;

/// The xz memory limit when the caller sets none: a quarter of `MemTotal`
/// (`/proc/meminfo`), and at least [`XZ_MEMLIMIT_FLOOR`] (also when the RAM
/// cannot be read).
pub fn default_xz_memlimit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m));
    xz_memlimit_for(total)
}

/// A quarter of `total` bytes of RAM, at least [`XZ_MEMLIMIT_FLOOR`].
fn xz_memlimit_for(total: Option<u64>) -> u64 {
    total.map_or(0, |t| t / 4).max(XZ_MEMLIMIT_FLOOR)
}

/// `MemTotal` in bytes from the text of `/proc/meminfo`.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_memlimit_is_a_quarter_of_the_ram_with_a_floor() {
        let meminfo = "MemTotal:       24568320 kB\nMemFree:        22000000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_568_320 * 1024));
        assert_eq!(xz_memlimit_for(Some(16 << 30)), 4 << 30);
        assert_eq!(xz_memlimit_for(Some(256 << 20)), XZ_MEMLIMIT_FLOOR);
        assert_eq!(xz_memlimit_for(None), XZ_MEMLIMIT_FLOOR);
        // Unreadable or absurd: the floor.
        assert_eq!(mem_total("MemTotal: 18446744073709551615 kB\n"), None);
        assert_eq!(mem_total("MemTotal: 1024 pages\n"), None);
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}

//! Image formats, recognised by their magic bytes (never by file name).

use std::fmt;
use std::str::FromStr;

/// An image format the writer understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A raw disk image, written as is.
    Raw,
    /// A zstd stream (one or more frames) of a raw image.
    Zstd,
    /// A gzip stream (one or more members) of a raw image.
    Gzip,
    /// An xz stream of a raw image.
    Xz,
    /// A qcow2 (v2 or v3) image, converted while it streams.
    Qcow2,
}

impl Format {
    /// The lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Zstd => "zstd",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Qcow2 => "qcow2",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the first bytes of an image say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A supported format.
    Supported(Format),
    /// A known image format that Ingot does not write; named for the error.
    Unsupported(&'static str),
}

const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// How many leading bytes [`detect`] wants to see (fewer is fine for tiny images).
pub const SNIFF_LEN: usize = 512;

/// Recognises a format from the first bytes of an image. Anything unrecognised
/// is raw: a disk image can begin with any bytes.
pub fn detect(head: &[u8]) -> Detected {
    if head.starts_with(QCOW2_MAGIC) {
        Detected::Supported(Format::Qcow2)
    } else if head.starts_with(ZSTD_MAGIC) {
        Detected::Supported(Format::Zstd)
    } else if head.starts_with(XZ_MAGIC) {
        Detected::Supported(Format::Xz)
    } else if head.starts_with(GZIP_MAGIC) {
        Detected::Supported(Format::Gzip)
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        Detected::Unsupported("vmdk")
    } else if head.starts_with(b"vhdxfile") {
        Detected::Unsupported("vhdx")
    } else if head.starts_with(b"conectix") {
        Detected::Unsupported("vhd")
    } else if head.len() >= 0x44 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
        Detected::Unsupported("vdi")
    } else if head.starts_with(b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        Detected::Unsupported("bzip2")
    } else {
        Detected::Supported(Format::Raw)
    }
}

/// The `--format` choice: detect, or insist on one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    /// Detect by magic bytes.
    #[default]
    Auto,
    /// Expect exactly this format.
    Forced(Format),
}

impl FromStr for Format {
    type Err = String;
    /// `raw`, `qcow2`, `zstd` (or `zst`), `gzip` (or `gz`), `xz`; any case.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "raw" => Format::Raw,
            "zstd" | "zst" => Format::Zstd,
            "gzip" | "gz" => Format::Gzip,
            "xz" => Format::Xz,
            "qcow2" => Format::Qcow2,
            other => {
                return Err(format!(
                    "unknown format {other:?} (raw, qcow2, zstd, gzip, xz)"
                ));
            }
        })
    }
}

impl FromStr for FormatChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(FormatChoice::Auto);
        }
        s.parse().map(FormatChoice::Forced).map_err(|_| {
            format!(
                "unknown format {:?} (auto, raw, qcow2, zstd, gzip, xz)",
                s.to_ascii_lowercase()
            )
        })
    }
}

/// Decides the format from the choice and the first bytes.
pub fn resolve(choice: FormatChoice, head: &[u8]) -> Result<Format, String> {
    match (choice, detect(head)) {
        (FormatChoice::Auto, Detected::Supported(f)) => Ok(f),
        (FormatChoice::Auto, Detected::Unsupported(name)) => Err(format!(
            "the image is {name}, which is not supported: convert it to raw, qcow2 or a zstd-compressed raw image first"
        )),
        // Raw is raw: a forced raw write never second-guesses the content.
        (FormatChoice::Forced(Format::Raw), _) => Ok(Format::Raw),
        (FormatChoice::Forced(f), Detected::Supported(g)) if f == g => Ok(f),
        (FormatChoice::Forced(f), Detected::Supported(Format::Raw)) => Err(format!(
            "--format {f} was given, but the image does not start with {f} magic bytes"
        )),
        (FormatChoice::Forced(f), Detected::Supported(g)) => {
            Err(format!("--format {f} was given, but the image is {g}"))
        }
        (FormatChoice::Forced(f), Detected::Unsupported(name)) => {
            Err(format!("--format {f} was given, but the image is {name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert_eq!(
            detect(b"QFI\xfb\0\0\0\x03"),
            Detected::Supported(Format::Qcow2)
        );
        assert_eq!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Detected::Supported(Format::Zstd)
        );
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Detected::Supported(Format::Gzip));
        assert_eq!(detect(b"\xfd7zXZ\0\0"), Detected::Supported(Format::Xz));
        assert_eq!(
            detect(&[0xeb, 0x63, 0x90]),
            Detected::Supported(Format::Raw)
        );
        assert_eq!(detect(b""), Detected::Supported(Format::Raw));
        assert_eq!(detect(b"KDMV\x01"), Detected::Unsupported("vmdk"));
        assert_eq!(detect(b"conectix"), Detected::Unsupported("vhd"));
    }

    #[test]
    fn forced_formats_are_checked() {
        let zst = [0x28, 0xb5, 0x2f, 0xfd, 0];
        assert_eq!(resolve(FormatChoice::Auto, &zst), Ok(Format::Zstd));
        assert_eq!(resolve("raw".parse().unwrap(), &zst), Ok(Format::Raw));
        assert!(
            resolve("qcow2".parse().unwrap(), &zst)
                .unwrap_err()
                .contains("is zstd")
        );
        assert!(resolve("gzip".parse().unwrap(), b"plain").is_err());
        assert!(
            resolve(FormatChoice::Auto, b"KDMV")
                .unwrap_err()
                .contains("vmdk")
        );
        assert!("lzma".parse::<FormatChoice>().is_err());
    }
}

//! The config drive of a whole-disk deploy, written as IPA does it: reuse a
//! partition that already holds a `config-2` file system, or create a new
//! 64 MiB partition at the end of the disk (GPT or DOS table) and write the
//! drive into it.
//!
//! The partition is written by offset, not through a partition device node,
//! because the kernel may not have (or may not be able to) re-read the table.

pub use crate::ptable::{gpt, mbr};

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use base64::Engine as _;
use ingot_image_tools::blockdev;

use crate::ptable::is_block_device;

/// Largest accepted config drive (IPA's `MAX_CONFIG_DRIVE_SIZE_MB`).
pub const MAX_SIZE: u64 = 64 << 20;
/// Size of a newly created config drive partition (IPA: the last 64 MiB).
pub const PARTITION_SIZE: u64 = 64 << 20;
/// Partitions start on 1 MiB boundaries.
const ALIGN: u64 = 1 << 20;

/// Why the config drive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// Larger than 64 MiB once decoded.
    #[error("the config drive is {0} bytes, more than the 64 MiB limit")]
    TooLarge(u64),
    /// gzip data that does not decompress.
    #[error("the config drive is not valid gzip data: {0}")]
    Decode(String),
    /// Downloading it failed.
    #[error("downloading the config drive from {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No partition table on the disk after the image was written.
    #[error("the disk {0} has no partition table to add a config drive partition to")]
    NoTable(String),
    /// No room for the partition.
    #[error("no room for a config drive partition on {disk}: {reason}")]
    NoRoom {
        /// The disk.
        disk: String,
        /// Why.
        reason: String,
    },
    /// An I/O error.
    #[error("{action} on {disk}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The disk.
        disk: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Where the config drive went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// `gpt` or `dos`.
    pub table: &'static str,
    /// Partition number.
    pub partition: u32,
    /// Byte offset of the partition.
    pub offset: u64,
    /// Partition size in bytes.
    pub size: u64,
    /// Whether the partition was created (false: an existing `config-2` was reused).
    pub created: bool,
    /// Config drive bytes written.
    pub bytes: u64,
}

/// Turns the `configdrive` parameter (already downloaded if it was a URL)
/// into the drive's bytes: base64 is decoded, gzip decompressed; anything
/// else is taken as the raw image, as IPA does.
pub fn decode(data: &[u8]) -> Result<Vec<u8>, ConfigDriveError> {
    let compact: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .unwrap_or_else(|_| data.to_vec());
    let out = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(MAX_SIZE + 1)
            .read_to_end(&mut out)
            .map_err(|e| ConfigDriveError::Decode(e.to_string()))?;
        out
    } else {
        bytes
    };
    if out.len() as u64 > MAX_SIZE {
        return Err(ConfigDriveError::TooLarge(out.len() as u64));
    }
    Ok(out)
}

/// True for an `http://` or `https://` config drive location.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Downloads a config drive.
pub async fn download(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, ConfigDriveError> {
    let err = |reason: String| ConfigDriveError::Download {
        url: url.to_string(),
        reason,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    Ok(body.to_vec())
}

/// True if the bytes at the start of a partition hold a file system labelled
/// `config-2` (ISO 9660 volume ID or FAT volume label).
fn is_config2(dev: &File, offset: u64) -> bool {
    let mut iso = [0u8; 5];
    if dev.read_exact_at(&mut iso, offset + 0x8001).is_ok() && &iso[0..5] == b"CD001" {
        let mut vol = [0u8; 32];
        if dev.read_exact_at(&mut vol, offset + 0x8028).is_ok() {
            return String::from_utf8_lossy(&vol)
                .trim()
                .eq_ignore_ascii_case("config-2");
        }
    }
    let mut boot = [0u8; 512];
    if dev.read_exact_at(&mut boot, offset).is_ok() && boot[510] == 0x55 && boot[511] == 0xaa {
        for at in [0x47usize, 0x2b] {
            if String::from_utf8_lossy(&boot[at..at + 11])
                .trim()
                .eq_ignore_ascii_case("config-2")
            {
                return true;
            }
        }
    }
    false
}

/// Writes `drive` into a config drive partition of the whole disk at `path`.
pub fn write_partition(path: &Path, drive: &[u8]) -> Result<Placement, ConfigDriveError> {
    let disk = path.display().to_string();
    let io_err = |action: &'static str| {
        let disk = disk.clone();
        move |source: io::Error| ConfigDriveError::Io {
            action,
            disk,
            source,
        }
    };
    let (dev, size, sector) =
        crate::ptable::open_disk(path).map_err(|(action, e)| io_err(action)(e))?;
    let is_block = is_block_device(&dev);
    let sector0 = mbr::read(&dev).map_err(io_err("read the partition table"))?;
    let gpt = match &sector0 {
        Some(s) if mbr::is_protective(s) => {
            gpt::Gpt::read(&dev, sector, size).map_err(io_err("read the GPT"))?
        }
        _ => None,
    };
    let placement = if let (Some(mut g), Some(mut s0)) = (gpt, sector0) {
        let placed = place_gpt(&dev, &mut g, size, &disk)?;
        // The GPT now spans the disk: so must its protective MBR (sgdisk
        // rewrites it whenever it writes the table).
        mbr::fit_protective(&dev, &mut s0, size / sector)
            .map_err(io_err("write the protective MBR"))?;
        placed
    } else if let Some(mut s0) = sector0 {
        place_mbr(&dev, &mut s0, size, sector, &disk)?
    } else {
        return Err(ConfigDriveError::NoTable(disk));
    };
    if drive.len() as u64 > placement.size {
        return Err(ConfigDriveError::NoRoom {
            disk,
            reason: format!("the drive is larger than partition {}", placement.partition),
        });
    }
    dev.write_all_at(drive, placement.offset)
        .map_err(io_err("write the config drive"))?;
    // Zero the rest of a partition we created, so no stale data follows the drive.
    if placement.created {
        let zeros = vec![0u8; 1 << 20];
        let mut at = placement.offset + drive.len() as u64;
        let end = placement.offset + placement.size;
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            dev.write_all_at(&zeros[..n], at)
                .map_err(io_err("zero the config drive partition"))?;
            at += n as u64;
        }
    }
    dev.sync_all().map_err(io_err("sync"))?;
    if is_block {
        if let Err(e) = blockdev::reread_partitions(&dev) {
            tracing::warn!(disk = %disk, error = %e, "the kernel did not re-read the partition table");
        }
    }
    Ok(Placement {
        bytes: drive.len() as u64,
        ..placement
    })
}

fn place_gpt(
    dev: &File,
    g: &mut gpt::Gpt,
    size: u64,
    disk: &str,
) -> Result<Placement, ConfigDriveError> {
    let sector = g.sector;
    let no_room = |reason: String| ConfigDriveError::NoRoom {
        disk: disk.to_string(),
        reason,
    };
    // Partition bounds come from the disk: their byte offsets are checked.
    let bytes = |first: u64, last: u64| {
        let off = first.checked_mul(sector)?;
        let end = last.checked_add(1)?.checked_mul(sector)?;
        (end > off && end <= size).then_some((off, end))
    };
    let parts = g.partitions();
    let mut used_end = 0;
    for p in &parts {
        let (off, end) = bytes(p.first_lba, p.last_lba).ok_or_else(|| {
            no_room(format!(
                "partition {} (LBA {}-{}) does not lie on the disk",
                p.number, p.first_lba, p.last_lba
            ))
        })?;
        if p.name.eq_ignore_ascii_case("config-2") || is_config2(dev, off) {
            return Ok(Placement {
                table: "gpt",
                partition: p.number,
                offset: off,
                size: end - off,
                created: false,
                bytes: 0,
            });
        }
        used_end = used_end.max(end);
    }
    let last_usable = g
        .last_usable_at_end(size)
        .ok_or_else(|| no_room(format!("{size} bytes cannot hold both GPT tables")))?;
    let end_bytes = bytes(0, last_usable)
        .map(|(_, end)| end)
        .ok_or_else(|| no_room(format!("last usable LBA {last_usable} is beyond the disk")))?;
    let start = end_bytes.saturating_sub(PARTITION_SIZE) / ALIGN * ALIGN;
    if start < used_end || start == 0 {
        return Err(no_room(format!(
            "the last partition ends at byte {used_end}, the drive would start at {start}"
        )));
    }
    let mut unique = [0u8; 16];
    crate::random::fill(&mut unique);
    unique[7] = (unique[7] & 0x0f) | 0x40;
    unique[8] = (unique[8] & 0x3f) | 0x80;
    let number = g
        .add_partition(
            start / sector,
            last_usable,
            gpt::LINUX_FS_TYPE,
            unique,
            "config-2",
        )
        .ok_or_else(|| no_room("the GPT has no free entry".into()))?;
    g.write(dev, size).map_err(|source| ConfigDriveError::Io {
        action: "write the GPT",
        disk: disk.to_string(),
        source,
    })?;
    Ok(Placement {
        table: "gpt",
        partition: number,
        offset: start,
        size: end_bytes - start,
        created: true,
        bytes: 0,
    })
}

fn place_mbr(
    dev: &File,
    s0: &mut [u8; 512],
    size: u64,
    sector: u64,
    disk: &str,
) -> Result<Placement, ConfigDriveError> {
    let parts = mbr::primaries(s0);
    for p in &parts {
        if is_config2(dev, p.first * sector) {
            return Ok(Placement {
                table: "dos",
                partition: p.number,
                offset: p.first * sector,
                size: p.sectors * sector,
                created: false,
                bytes: 0,
            });
        }
    }
    let Some(number) = (1..=4).find(|n| parts.iter().all(|p| p.number != *n)) else {
        return Err(ConfigDriveError::NoRoom {
            disk: disk.to_string(),
            reason: "all four primary partitions are used".into(),
        });
    };
    // Beyond 2 TiB, place it just under the DOS limit, as IPA does.
    let end = size.min((1u64 << 32) * sector);
    let start = end.saturating_sub(PARTITION_SIZE) / ALIGN * ALIGN;
    let used_end = parts
        .iter()
        .map(|p| (p.first + p.sectors) * sector)
        .max()
        .unwrap_or(0);
    if start < used_end || start == 0 {
        return Err(ConfigDriveError::NoRoom {
            disk: disk.to_string(),
            reason: format!(
                "the last partition ends at byte {used_end}, the drive would start at {start}"
            ),
        });
    }
    let p = mbr::MbrPartition {
        number,
        kind: 0x83,
        first: start / sector,
        sectors: (end - start) / sector,
    };
    mbr::write_entry(dev, s0, p).map_err(|source| ConfigDriveError::Io {
        action: "write the DOS table",
        disk: disk.to_string(),
        source,
    })?;
    Ok(Placement {
        table: "dos",
        partition: number,
        offset: start,
        size: end - start,
        created: true,
        bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn decodes_gzip_base64_and_raw() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"CONFIGDRIVE").unwrap();
        let gz = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        assert_eq!(decode(b64.as_bytes()).unwrap(), b"CONFIGDRIVE");
        assert_eq!(decode(&gz).unwrap(), b"CONFIGDRIVE");
        assert_eq!(decode(b"\x00raw iso").unwrap(), b"\x00raw iso");
    }

    #[test]
    fn guid_round_trip() {
        let g = gpt::guid_from_string(gpt::LINUX_FS_TYPE).unwrap();
        assert_eq!(gpt::guid_to_string(&g), gpt::LINUX_FS_TYPE);
        assert_eq!(g[0..4], [0xaf, 0x3d, 0xc6, 0x0f]);
    }

    #[test]
    fn adds_a_dos_partition_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let f = File::create(&path).unwrap();
        f.set_len(256 << 20).unwrap();
        let mut s0 = [0u8; 512];
        s0[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        s0[510] = 0x55;
        s0[511] = 0xaa;
        mbr::write_entry(
            &f,
            &mut s0,
            mbr::MbrPartition {
                number: 1,
                kind: 0x83,
                first: 2048,
                sectors: 2048 * 16,
            },
        )
        .unwrap();
        drop(f);
        let p = write_partition(&path, b"DRIVE").unwrap();
        assert_eq!(
            p,
            Placement {
                table: "dos",
                partition: 2,
                offset: 192 << 20,
                size: 64 << 20,
                created: true,
                bytes: 5
            }
        );
        let f = File::open(&path).unwrap();
        let s0 = mbr::read(&f).unwrap().unwrap();
        assert_eq!(mbr::disk_identifier(&s0), "0x12345678");
        assert_eq!(
            mbr::primaries(&s0)[1],
            mbr::MbrPartition {
                number: 2,
                kind: 0x83,
                first: (192 << 20) / 512,
                sectors: (64 << 20) / 512
            }
        );
        let mut b = [0u8; 5];
        f.read_exact_at(&mut b, 192 << 20).unwrap();
        assert_eq!(&b, b"DRIVE");
    }
}

//! Disks read by offset: the DOS (MBR, with logical partitions) and GPT
//! partition tables, and the `config-2` file system check. Partition device
//! nodes are never needed: a config drive the agent just appended may not
//! have one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positional reads from a disk or image.
pub trait ReadAt {
    /// Fills `buf` from byte `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A partition found in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number (DOS: 1–4 primary, 5… logical; GPT: entry index + 1).
    pub number: u32,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// `dos` or `gpt`.
    pub table: &'static str,
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// DOS entries of one table sector: (type, first sector, sectors).
fn dos_entries(s: &[u8; 512]) -> Vec<(u8, u64, u64)> {
    (0..4)
        .map(|i| {
            let e = &s[446 + 16 * i..462 + 16 * i];
            (e[4], le32(e, 8), le32(e, 12))
        })
        .collect()
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

/// The partitions of a disk with `sector`-byte logical sectors. Empty when
/// there is no table; a GPT is tried with 512 and 4096-byte sectors too.
pub fn partitions(dev: &dyn ReadAt, sector: u64) -> io::Result<Vec<Partition>> {
    let mut s0 = [0u8; 512];
    dev.read_exact_at(&mut s0, 0)?;
    if s0[510] != 0x55 || s0[511] != 0xaa {
        return Ok(vec![]);
    }
    let entries = dos_entries(&s0);
    if entries.iter().any(|e| e.0 == 0xee) {
        for size in [sector, 512, 4096] {
            if let Some(parts) = gpt(dev, size)? {
                return Ok(parts);
            }
        }
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    for (i, &(kind, first, sectors)) in entries.iter().enumerate() {
        if kind == 0 || sectors == 0 {
            continue;
        }
        if is_extended(kind) {
            logical(dev, sector, first, &mut out)?;
            continue;
        }
        out.push(Partition {
            number: i as u32 + 1,
            offset: first * sector,
            size: sectors * sector,
            table: "dos",
        });
    }
    Ok(out)
}

/// Follows the chain of extended boot records from `ext_first`.
fn logical(
    dev: &dyn ReadAt,
    sector: u64,
    ext_first: u64,
    out: &mut Vec<Partition>,
) -> io::Result<()> {
    let mut ebr = ext_first;
    for number in 5..64 {
        let mut s = [0u8; 512];
        dev.read_exact_at(&mut s, ebr * sector)?;
        if s[510] != 0x55 || s[511] != 0xaa {
            break;
        }
        let e = dos_entries(&s);
        let (kind, first, sectors) = e[0];
        if kind != 0 && sectors != 0 {
            out.push(Partition {
                number,
                offset: (ebr + first) * sector,
                size: sectors * sector,
                table: "dos",
            });
        }
        let (next_kind, next_first, _) = e[1];
        if !is_extended(next_kind) || next_first == 0 {
            break;
        }
        ebr = ext_first + next_first;
    }
    Ok(())
}

fn gpt(dev: &dyn ReadAt, sector: u64) -> io::Result<Option<Vec<Partition>>> {
    let mut h = [0u8; 92];
    if dev.read_exact_at(&mut h, sector).is_err() || &h[0..8] != b"EFI PART" {
        return Ok(None);
    }
    let entries_lba = le64(&h, 72);
    let count = le32(&h, 80).min(1024);
    let size = le32(&h, 84);
    if !(128..=4096).contains(&size) {
        return Ok(None);
    }
    let mut table = vec![0u8; usize::try_from(count * size).unwrap_or(0)];
    dev.read_exact_at(&mut table, entries_lba * sector)?;
    let mut out = Vec::new();
    for (i, e) in table
        .chunks_exact(usize::try_from(size).unwrap_or(128))
        .enumerate()
    {
        if e[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if last < first {
            continue;
        }
        out.push(Partition {
            number: i as u32 + 1,
            offset: first * sector,
            size: (last + 1 - first) * sector,
            table: "gpt",
        });
    }
    Ok(Some(out))
}

/// The kind of `config-2` file system found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config2 {
    /// ISO 9660 with volume ID `config-2`.
    Iso,
    /// FAT with volume label `config-2`.
    Vfat,
}

/// Whether the bytes at `offset` hold a file system labelled `config-2`.
pub fn config2_at(dev: &dyn ReadAt, offset: u64) -> Option<Config2> {
    if let Ok(Some(iso)) = crate::iso::open(dev, offset) {
        if iso.volume_id.eq_ignore_ascii_case("config-2") {
            return Some(Config2::Iso);
        }
        return None;
    }
    let mut boot = [0u8; 512];
    dev.read_exact_at(&mut boot, offset).ok()?;
    if boot[510] != 0x55 || boot[511] != 0xaa {
        return None;
    }
    // The label of the extended BPB: FAT12/16 at 0x2b (signature 0x29 at
    // 0x26), FAT32 at 0x47 (signature at 0x42).
    for (sig, at) in [(0x26usize, 0x2busize), (0x42, 0x47)] {
        if boot[sig] == 0x29
            && String::from_utf8_lossy(&boot[at..at + 11])
                .trim()
                .eq_ignore_ascii_case("config-2")
        {
            return Some(Config2::Vfat);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::iso::tests::{Names, config_drive};

    fn set_entry(s: &mut [u8], slot: usize, kind: u8, first: u32, sectors: u32) {
        let e = &mut s[446 + 16 * slot..462 + 16 * slot];
        e[4] = kind;
        e[8..12].copy_from_slice(&first.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }

    /// A 4 MiB disk with partition 1 at 1 MiB and the config drive appended
    /// at 3 MiB as partition 2, the way the agent adds it.
    #[test]
    fn finds_the_appended_dos_partition() {
        let mut disk = vec![0u8; 4 << 20];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        set_entry(&mut disk, 0, 0x06, 2048, 2048);
        set_entry(&mut disk, 1, 0x83, 6144, 2048);
        let iso = config_drive("config-2", b"{}", Names::Level1Only);
        disk[3 << 20..(3 << 20) + iso.len()].copy_from_slice(&iso);
        let parts = partitions(&disk, 512).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].offset, 3 << 20);
        assert_eq!(config2_at(&disk, parts[0].offset), None);
        assert_eq!(config2_at(&disk, parts[1].offset), Some(Config2::Iso));
    }

    #[test]
    fn follows_logical_partitions() {
        let mut disk = vec![0u8; 4 << 20];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        set_entry(&mut disk, 0, 0x05, 2048, 4096);
        // EBR at sector 2048: logical at +64 sectors, next EBR at +1024.
        let ebr = 2048 * 512;
        disk[ebr + 510] = 0x55;
        disk[ebr + 511] = 0xaa;
        set_entry(&mut disk[ebr..], 0, 0x83, 64, 512);
        set_entry(&mut disk[ebr..], 1, 0x05, 1024, 1024);
        let ebr2 = (2048 + 1024) * 512;
        disk[ebr2 + 510] = 0x55;
        disk[ebr2 + 511] = 0xaa;
        set_entry(&mut disk[ebr2..], 0, 0x0c, 64, 256);
        let parts = partitions(&disk, 512).unwrap();
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.number, p.offset))
                .collect::<Vec<_>>(),
            [(5, (2048 + 64) * 512), (6, (2048 + 1024 + 64) * 512)]
        );
    }

    #[test]
    fn reads_a_gpt() {
        let mut disk = vec![0u8; 4 << 20];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        set_entry(&mut disk, 0, 0xee, 1, 8191);
        let h = &mut disk[512..1024];
        h[0..8].copy_from_slice(b"EFI PART");
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        let e = &mut disk[1024 + 128..1024 + 256];
        e[0] = 0xaf;
        e[32..40].copy_from_slice(&6144u64.to_le_bytes());
        e[40..48].copy_from_slice(&8191u64.to_le_bytes());
        let iso = config_drive("CONFIG-2", b"{}", Names::RockRidge);
        disk[3 << 20..(3 << 20) + iso.len()].copy_from_slice(&iso);
        let parts = partitions(&disk, 512).unwrap();
        assert_eq!(
            parts,
            [Partition {
                number: 2,
                offset: 3 << 20,
                size: 1 << 20,
                table: "gpt"
            }]
        );
        assert_eq!(config2_at(&disk, 3 << 20), Some(Config2::Iso));
    }

    #[test]
    fn recognises_a_vfat_label_and_ignores_other_isos() {
        let mut boot = vec![0u8; 64 << 10];
        boot[510] = 0x55;
        boot[511] = 0xaa;
        boot[0x26] = 0x29;
        boot[0x2b..0x2b + 11].copy_from_slice(b"CONFIG-2   ");
        assert_eq!(config2_at(&boot, 0), Some(Config2::Vfat));
        let iso = config_drive("cidata", b"{}", Names::Level1Only);
        assert_eq!(config2_at(&iso, 0), None);
        assert!(partitions(&iso, 512).unwrap().is_empty());
    }
}

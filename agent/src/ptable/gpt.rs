//! Just enough GPT to do what `sgdisk -e` and `sgdisk -n` do for the agent:
//! move the backup table to the end of a disk that is larger than the image
//! written to it, and add a partition in the free space at the end.
//!
//! Every number read from the disk is checked before it is used: a header
//! whose fields do not fit the disk is treated as no GPT, never as a reason
//! to write somewhere unexpected.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Linux filesystem data (sgdisk's default type 8300).
pub const LINUX_FS_TYPE: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// Largest partition entry array accepted (the spec's usual 16 KiB, with room).
const MAX_ENTRIES_BYTES: u64 = 1 << 20;

/// A GPT as read from the primary header.
#[derive(Debug, Clone)]
pub struct Gpt {
    /// Logical sector size.
    pub sector: u64,
    /// The primary header sector (LBA 1).
    pub header: Vec<u8>,
    /// The partition entry array.
    pub entries: Vec<u8>,
    /// Size of one entry.
    pub entry_size: usize,
    /// Number of entries.
    pub entry_count: usize,
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based number (entry index + 1).
    pub number: u32,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// Unique partition GUID, lower-case canonical form.
    pub unique_guid: String,
    /// Partition type GUID, lower-case canonical form.
    pub type_guid: String,
    /// Partition name.
    pub name: String,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Formats a GPT mixed-endian GUID.
pub fn guid_to_string(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32_at(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// Parses a canonical GUID string into GPT's mixed-endian bytes.
pub fn guid_from_string(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut out = raw;
    out[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    out[4..6].copy_from_slice(&[raw[5], raw[4]]);
    out[6..8].copy_from_slice(&[raw[7], raw[6]]);
    Some(out)
}

/// True if `header` (one sector) is a GPT header whose CRC matches.
fn header_valid(header: &[u8]) -> bool {
    if header.len() < 92 || &header[0..8] != SIGNATURE {
        return false;
    }
    let hsize = u32_at(header, 12) as usize;
    if !(92..=header.len()).contains(&hsize) {
        return false;
    }
    let mut h = header[..hsize].to_vec();
    h[16..20].fill(0);
    crc32(&h) == u32_at(header, 16)
}

impl Gpt {
    /// Reads the primary GPT of a disk of `disk_bytes`; `None` if there is
    /// none, or it is corrupt, or its fields do not fit the disk.
    pub fn read(dev: &File, sector: u64, disk_bytes: u64) -> io::Result<Option<Gpt>> {
        let Ok(sector_len) = usize::try_from(sector) else {
            return Ok(None);
        };
        if sector < 512 || sector.checked_mul(2).is_none_or(|two| two > disk_bytes) {
            return Ok(None);
        }
        let mut header = vec![0u8; sector_len];
        dev.read_exact_at(&mut header, sector)?;
        if !header_valid(&header) {
            return Ok(None);
        }
        let entries_lba = u64_at(&header, 72);
        let entry_count = u64::from(u32_at(&header, 80));
        let entry_size = u64::from(u32_at(&header, 84));
        let array_len = entry_count.checked_mul(entry_size);
        let Some(array_len) = array_len.filter(|&l| l > 0 && l <= MAX_ENTRIES_BYTES) else {
            return Ok(None);
        };
        if entry_size < 128 || entry_size % 8 != 0 {
            return Ok(None);
        }
        let array_at = entries_lba.checked_mul(sector);
        if entries_lba < 2
            || array_at
                .and_then(|a| a.checked_add(array_len))
                .is_none_or(|end| end > disk_bytes)
        {
            return Ok(None);
        }
        let (Some(array_at), Ok(len)) = (array_at, usize::try_from(array_len)) else {
            return Ok(None);
        };
        let mut entries = vec![0u8; len];
        dev.read_exact_at(&mut entries, array_at)?;
        if crc32(&entries) != u32_at(&header, 88) {
            return Ok(None);
        }
        Ok(Some(Gpt {
            sector,
            header,
            entries,
            // Both bounded by MAX_ENTRIES_BYTES above.
            entry_size: entry_size as usize,
            entry_count: entry_count as usize,
        }))
    }

    /// The disk GUID.
    pub fn disk_guid(&self) -> String {
        guid_to_string(&self.header[56..72])
    }

    /// The backup header's LBA recorded in the primary header.
    pub fn backup_lba(&self) -> u64 {
        u64_at(&self.header, 32)
    }

    /// The last usable LBA recorded in the primary header.
    pub fn last_usable_lba(&self) -> u64 {
        u64_at(&self.header, 48)
    }

    /// The LBA of the primary partition entry array.
    pub fn entries_lba(&self) -> u64 {
        u64_at(&self.header, 72)
    }

    /// Used partitions.
    pub fn partitions(&self) -> Vec<GptPartition> {
        (0..self.entry_count)
            .filter_map(|i| {
                let e = &self.entries[i * self.entry_size..(i + 1) * self.entry_size];
                if e[0..16].iter().all(|b| *b == 0) {
                    return None;
                }
                let name: Vec<u16> = e[56..128]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|c| *c != 0)
                    .collect();
                Some(GptPartition {
                    number: i as u32 + 1,
                    first_lba: u64_at(e, 32),
                    last_lba: u64_at(e, 40),
                    unique_guid: guid_to_string(&e[16..32]),
                    type_guid: guid_to_string(&e[0..16]),
                    name: String::from_utf16_lossy(&name),
                })
            })
            .collect()
    }

    /// Sectors the partition entry array takes.
    pub fn entry_sectors(&self) -> u64 {
        ((self.entry_count * self.entry_size) as u64).div_ceil(self.sector)
    }

    /// Where the tables go once the backup sits at the end of `disk_bytes`:
    /// `(backup header LBA, backup entries LBA, last usable LBA)`; `None` if
    /// the disk is too small to hold both tables.
    pub fn end_layout(&self, disk_bytes: u64) -> Option<(u64, u64, u64)> {
        let last_lba = (disk_bytes / self.sector).checked_sub(1)?;
        let backup_entries = last_lba.checked_sub(self.entry_sectors())?;
        let last_usable = backup_entries.checked_sub(1)?;
        let primary_end = self.entries_lba().checked_add(self.entry_sectors())?;
        (last_usable >= primary_end).then_some((last_lba, backup_entries, last_usable))
    }

    /// Last usable LBA once the backup table sits at the end of `disk_bytes`.
    pub fn last_usable_at_end(&self, disk_bytes: u64) -> Option<u64> {
        self.end_layout(disk_bytes).map(|(_, _, usable)| usable)
    }

    /// Adds a partition in the first free entry slot; returns its number.
    pub fn add_partition(
        &mut self,
        first_lba: u64,
        last_lba: u64,
        type_guid: &str,
        unique: [u8; 16],
        name: &str,
    ) -> Option<u32> {
        let slot = (0..self.entry_count).find(|i| {
            self.entries[i * self.entry_size..i * self.entry_size + 16]
                .iter()
                .all(|b| *b == 0)
        })?;
        let e = &mut self.entries[slot * self.entry_size..(slot + 1) * self.entry_size];
        e.fill(0);
        e[0..16].copy_from_slice(&guid_from_string(type_guid)?);
        e[16..32].copy_from_slice(&unique);
        e[32..40].copy_from_slice(&first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&last_lba.to_le_bytes());
        for (i, c) in name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        Some(slot as u32 + 1)
    }

    /// Writes the primary and backup tables for a disk of `disk_bytes`, the
    /// backup at the very end (`sgdisk -e`): the primary header's backup LBA
    /// and last usable LBA are updated and both CRCs recomputed. The backup
    /// is written and flushed first, so that a primary pointing to it is
    /// never on the disk before it.
    pub fn write(&mut self, dev: &File, disk_bytes: u64) -> io::Result<()> {
        let (last_lba, backup_entries_lba, last_usable) =
            self.end_layout(disk_bytes).ok_or_else(|| {
                invalid(format!(
                    "a disk of {disk_bytes} bytes cannot hold both GPT tables"
                ))
            })?;
        let entries_crc = crc32(&self.entries);
        let hsize = u32_at(&self.header, 12) as usize;
        let mut primary = self.header.clone();
        primary[32..40].copy_from_slice(&last_lba.to_le_bytes()); // alternate LBA
        primary[48..56].copy_from_slice(&last_usable.to_le_bytes());
        primary[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let mut backup = primary.clone();
        backup[24..32].copy_from_slice(&last_lba.to_le_bytes()); // my LBA
        backup[32..40].copy_from_slice(&1u64.to_le_bytes());
        backup[72..80].copy_from_slice(&backup_entries_lba.to_le_bytes());
        for h in [&mut primary, &mut backup] {
            h[16..20].fill(0);
            let crc = crc32(&h[..hsize]);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
        }
        let at = |lba: u64| {
            lba.checked_mul(self.sector)
                .ok_or_else(|| invalid(format!("LBA {lba} is beyond any disk")))
        };
        dev.write_all_at(&self.entries, at(backup_entries_lba)?)?;
        dev.write_all_at(&backup, at(last_lba)?)?;
        dev.sync_data()?;
        dev.write_all_at(&self.entries, at(self.entries_lba())?)?;
        dev.write_all_at(&primary, self.sector)?;
        self.header = primary;
        Ok(())
    }
}

/// True if the sector at `lba` holds a valid GPT header.
pub fn header_at(dev: &File, sector: u64, lba: u64) -> io::Result<bool> {
    let (Some(at), Ok(len)) = (lba.checked_mul(sector), usize::try_from(sector)) else {
        return Ok(false);
    };
    let mut buf = vec![0u8; len];
    match dev.read_exact_at(&mut buf, at) {
        Ok(()) => Ok(header_valid(&buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(entries_lba: u64) -> Gpt {
        let mut header = vec![0u8; 512];
        header[0..8].copy_from_slice(SIGNATURE);
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        header[80..84].copy_from_slice(&128u32.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        Gpt {
            sector: 512,
            header,
            entries: vec![0u8; 128 * 128],
            entry_size: 128,
            entry_count: 128,
        }
    }

    #[test]
    fn end_layout_is_checked() {
        let g = blank(2);
        // 1 MiB: 2048 sectors; 32 for the array.
        assert_eq!(g.end_layout(1 << 20), Some((2047, 2015, 2014)));
        assert_eq!(g.end_layout(0), None);
        assert_eq!(g.end_layout(512 * 40), None);
        // An entries LBA near 2^64 makes no layout, instead of overflowing.
        assert_eq!(blank(u64::MAX - 3).end_layout(1 << 20), None);
    }

    #[test]
    fn a_header_whose_array_lies_beyond_the_disk_is_no_gpt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(1 << 20).unwrap();
        let mut g = blank(2);
        g.write(&f, 1 << 20).unwrap();
        assert!(Gpt::read(&f, 512, 1 << 20).unwrap().is_some());
        for entries_lba in [1u64 << 62, u64::MAX, 4000] {
            let mut h = g.header.clone();
            h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
            h[16..20].fill(0);
            let crc = crc32(&h[..92]);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            f.write_all_at(&h, 512).unwrap();
            assert!(
                Gpt::read(&f, 512, 1 << 20).unwrap().is_none(),
                "{entries_lba}"
            );
        }
    }
}

//! Just enough GPT to do what `sgdisk -e` and `sgdisk -n` do for the agent:
//! move the backup table to the end of a disk that is larger than the image
//! written to it, and add a partition in the free space at the end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Linux filesystem data (sgdisk's default type 8300).
pub const LINUX_FS_TYPE: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

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

impl Gpt {
    /// Reads the primary GPT; `None` if there is none (or it is corrupt).
    pub fn read(dev: &File, sector: u64) -> io::Result<Option<Gpt>> {
        let mut header = vec![0u8; sector as usize];
        dev.read_exact_at(&mut header, sector)?;
        if &header[0..8] != SIGNATURE {
            return Ok(None);
        }
        let hsize = u32_at(&header, 12) as usize;
        if !(92..=sector as usize).contains(&hsize) {
            return Ok(None);
        }
        let mut h = header[..hsize].to_vec();
        h[16..20].fill(0);
        if crc32(&h) != u32_at(&header, 16) {
            return Ok(None);
        }
        let entries_lba = u64_at(&header, 72);
        let entry_count = u32_at(&header, 80) as usize;
        let entry_size = u32_at(&header, 84) as usize;
        if entry_size < 128 || entry_count == 0 || entry_count * entry_size > 1 << 20 {
            return Ok(None);
        }
        let mut entries = vec![0u8; entry_count * entry_size];
        dev.read_exact_at(&mut entries, entries_lba * sector)?;
        if crc32(&entries) != u32_at(&header, 88) {
            return Ok(None);
        }
        Ok(Some(Gpt {
            sector,
            header,
            entries,
            entry_size,
            entry_count,
        }))
    }

    /// The disk GUID.
    pub fn disk_guid(&self) -> String {
        guid_to_string(&self.header[56..72])
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
                    name: String::from_utf16_lossy(&name),
                })
            })
            .collect()
    }

    fn entry_sectors(&self) -> u64 {
        ((self.entry_count * self.entry_size) as u64).div_ceil(self.sector)
    }

    /// Last usable LBA once the backup table sits at the end of `disk_bytes`.
    pub fn last_usable_at_end(&self, disk_bytes: u64) -> u64 {
        disk_bytes / self.sector - 1 - self.entry_sectors() - 1
    }

    /// Adds a partition in entry slot `number - 1` (first free slot if `None`).
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
    /// backup at the very end (`sgdisk -e`).
    pub fn write(&mut self, dev: &File, disk_bytes: u64) -> io::Result<()> {
        let last_lba = disk_bytes / self.sector - 1;
        let backup_entries_lba = last_lba - self.entry_sectors();
        let entries_crc = crc32(&self.entries);
        let hsize = u32_at(&self.header, 12) as usize;
        let mut primary = self.header.clone();
        primary[32..40].copy_from_slice(&last_lba.to_le_bytes()); // alternate LBA
        primary[48..56].copy_from_slice(&(backup_entries_lba - 1).to_le_bytes()); // last usable
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
        let primary_entries_lba = u64_at(&primary, 72);
        dev.write_all_at(&self.entries, primary_entries_lba * self.sector)?;
        dev.write_all_at(&primary, self.sector)?;
        dev.write_all_at(&self.entries, backup_entries_lba * self.sector)?;
        dev.write_all_at(&backup, last_lba * self.sector)?;
        self.header = primary;
        Ok(())
    }
}

//! Partition tables read by hand: MBR (with the extended/logical chain) and
//! GPT (primary and backup headers and entry arrays, at 512- and 4096-byte
//! sectors). The kernel here may have no partition-table parser at all, and
//! the wipe must find every partition and every table sector itself.
//!
//! Parsing is deliberately lenient: a table whose CRC does not match still
//! yields its regions (and its entries, within the disk), because for a wipe
//! erasing too much is harmless and missing a table is not.

use std::io;

use super::device::ReadAt;

/// A partition found in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `gpt`, `dos` or `dos-logical`.
    pub table: &'static str,
    /// 1-based number (logical partitions start at 5, as in Linux).
    pub number: u32,
    /// Start in bytes.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A partition table structure found on the disk, named as `wipefs` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `dos`, `PMBR` or `gpt`.
    pub name: &'static str,
    /// Byte offset of its magic (0x1fe for MBRs, the header for GPT).
    pub magic_offset: u64,
}

/// Everything the partition tables describe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Partitions, primary first, deduplicated.
    pub partitions: Vec<Partition>,
    /// Tables found (MBR, protective MBR, GPT headers).
    pub tables: Vec<Table>,
    /// Byte ranges `(offset, len)` holding table data: MBR and EBR sectors,
    /// GPT headers and entry arrays. All of them are zeroed by the wipe.
    pub regions: Vec<(u64, u64)>,
}

const MBR_TABLE: usize = 446;
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Most GPT entries we accept (the default is 128; a corrupt count is capped).
const MAX_GPT_ENTRIES: u64 = 4096;
/// Most logical partitions followed in an extended chain.
const MAX_LOGICAL: u32 = 256;

/// Reads the partition tables of `disk`, whose logical block size is `lbs`.
pub fn read_layout(disk: &(impl ReadAt + ?Sized), lbs: u64) -> io::Result<Layout> {
    let mut layout = Layout::default();
    let sector0 = disk.read_at(0, 512)?;
    let mbr = parse_mbr(&sector0);
    // GPT: try the device's sector size first, then the other common one
    // (an image made for 4Kn disks written to a 512e disk, or the reverse).
    let mut sizes = vec![lbs.max(512)];
    for s in [512, 4096] {
        if !sizes.contains(&s) {
            sizes.push(s);
        }
    }
    let mut gpt_found = false;
    for &ss in &sizes {
        gpt_found |= read_gpt(disk, ss, &mut layout)?;
    }
    if let Some(entries) = mbr {
        let protective = entries.iter().any(|e| e.kind == 0xee);
        if protective || gpt_found {
            layout.tables.push(Table {
                name: "PMBR",
                magic_offset: 0x1fe,
            });
        } else {
            layout.tables.push(Table {
                name: "dos",
                magic_offset: 0x1fe,
            });
            read_dos(disk, lbs.max(512), &entries, &mut layout)?;
        }
        layout.regions.push((0, 512));
    }
    let mut seen = std::collections::HashSet::new();
    layout
        .partitions
        .retain(|p| seen.insert((p.table, p.offset, p.size)));
    Ok(layout)
}

/// One MBR partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MbrEntry {
    kind: u8,
    start: u32,
    sectors: u32,
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64le(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// True if a boot sector carries a FAT or NTFS boot record, which also ends
/// in 0x55AA but is a filesystem, not a partition table.
fn is_fs_boot_sector(s: &[u8]) -> bool {
    &s[3..11] == b"NTFS    "
        || &s[0x52..0x5a] == b"FAT32   "
        || &s[0x36..0x3b] == b"FAT12"
        || &s[0x36..0x3b] == b"FAT16"
        || &s[0x36..0x3e] == b"FAT     "
}

/// Parses an MBR (or EBR) sector: the four entries if the 0x55AA signature
/// is there and every boot flag is 0x00 or 0x80 (what libblkid checks).
fn parse_mbr(s: &[u8]) -> Option<Vec<MbrEntry>> {
    if s.len() < 512 || s[510] != 0x55 || s[511] != 0xaa {
        return None;
    }
    let mut entries = Vec::new();
    for i in 0..4 {
        let e = &s[MBR_TABLE + 16 * i..MBR_TABLE + 16 * (i + 1)];
        if e[0] != 0 && e[0] != 0x80 {
            return None;
        }
        let entry = MbrEntry {
            kind: e[4],
            start: u32le(e, 8),
            sectors: u32le(e, 12),
        };
        if entry.kind != 0 && entry.sectors != 0 {
            entries.push(entry);
        }
    }
    // A FAT/NTFS boot sector without partition entries is a filesystem.
    if entries.is_empty() || is_fs_boot_sector(s) {
        return None;
    }
    Some(entries)
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

fn read_dos(
    disk: &(impl ReadAt + ?Sized),
    ss: u64,
    entries: &[MbrEntry],
    layout: &mut Layout,
) -> io::Result<()> {
    let size = disk.size();
    for (i, e) in entries.iter().enumerate() {
        let offset = u64::from(e.start) * ss;
        let len = u64::from(e.sectors) * ss;
        if offset >= size {
            continue;
        }
        if is_extended(e.kind) {
            read_logical(disk, ss, offset, len.min(size - offset), layout)?;
        } else {
            layout.partitions.push(Partition {
                table: "dos",
                number: i as u32 + 1,
                offset,
                size: len.min(size - offset),
            });
        }
    }
    Ok(())
}

/// Follows the EBR chain of an extended partition at `ext` bytes.
fn read_logical(
    disk: &(impl ReadAt + ?Sized),
    ss: u64,
    ext: u64,
    ext_len: u64,
    layout: &mut Layout,
) -> io::Result<()> {
    let size = disk.size();
    let mut ebr = ext;
    let mut number = 5;
    let mut visited = std::collections::HashSet::new();
    while number < 5 + MAX_LOGICAL && ebr < size && visited.insert(ebr) {
        let s = disk.read_at(ebr, 512)?;
        layout.regions.push((ebr, 512));
        if s[510] != 0x55 || s[511] != 0xaa {
            break;
        }
        let data = &s[MBR_TABLE..MBR_TABLE + 16];
        let link = &s[MBR_TABLE + 16..MBR_TABLE + 32];
        if data[4] != 0 && u32le(data, 12) != 0 {
            let offset = ebr + u64::from(u32le(data, 8)) * ss;
            if offset < size {
                layout.partitions.push(Partition {
                    table: "dos-logical",
                    number,
                    offset,
                    size: (u64::from(u32le(data, 12)) * ss).min(size - offset),
                });
            }
            number += 1;
        }
        if !is_extended(link[4]) || u32le(link, 8) == 0 {
            break;
        }
        let next = ext + u64::from(u32le(link, 8)) * ss;
        if next >= size || next < ext || next - ext >= ext_len.max(ss) {
            break;
        }
        ebr = next;
    }
    Ok(())
}

/// A parsed GPT header (only the fields the wipe needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GptHeader {
    my_lba: u64,
    alternate_lba: u64,
    entries_lba: u64,
    num_entries: u64,
    entry_size: u64,
    crc_ok: bool,
}

fn parse_gpt_header(s: &[u8]) -> Option<GptHeader> {
    if s.len() < 92 || &s[0..8] != GPT_SIGNATURE {
        return None;
    }
    let header_size = u32le(s, 12) as usize;
    let crc_ok = if (92..=s.len()).contains(&header_size) {
        let mut h = s[..header_size].to_vec();
        h[16..20].fill(0);
        crc32(&h) == u32le(s, 16)
    } else {
        false
    };
    Some(GptHeader {
        my_lba: u64le(s, 24),
        alternate_lba: u64le(s, 32),
        entries_lba: u64le(s, 72),
        num_entries: u64::from(u32le(s, 80)).min(MAX_GPT_ENTRIES),
        entry_size: u64::from(u32le(s, 84)),
        crc_ok,
    })
}

/// Looks for GPT headers with sector size `ss` at LBA 1, at the last LBA,
/// and wherever a found header says its alternate is. Returns true if any.
fn read_gpt(disk: &(impl ReadAt + ?Sized), ss: u64, layout: &mut Layout) -> io::Result<bool> {
    let size = disk.size();
    if size < 2 * ss {
        return Ok(false);
    }
    let last = size / ss - 1;
    let mut candidates = vec![1, last];
    let mut checked = std::collections::HashSet::new();
    let mut found = false;
    while let Some(lba) = candidates.pop() {
        if lba == 0 || lba > last || !checked.insert(lba) {
            continue;
        }
        let s = disk.read_at(lba * ss, usize::try_from(ss).unwrap_or(512))?;
        let Some(h) = parse_gpt_header(&s) else {
            continue;
        };
        found = true;
        if !h.crc_ok {
            tracing::debug!(lba, sector_size = ss, "GPT header with a bad CRC");
        }
        layout.tables.push(Table {
            name: "gpt",
            magic_offset: lba * ss,
        });
        layout.regions.push((lba * ss, ss));
        candidates.push(h.alternate_lba);
        if h.my_lba != lba {
            candidates.push(h.my_lba);
        }
        if !(128..=4096).contains(&h.entry_size) || h.entries_lba > last {
            continue;
        }
        let array_len = (h.num_entries * h.entry_size).min((last + 1 - h.entries_lba) * ss);
        let array_off = h.entries_lba * ss;
        layout
            .regions
            .push((array_off, array_len.div_ceil(ss) * ss));
        let array = disk.read_at(array_off, usize::try_from(array_len).unwrap_or(0))?;
        let esz = usize::try_from(h.entry_size).unwrap_or(128);
        for (i, e) in array.chunks_exact(esz).enumerate() {
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let first = u64le(e, 32);
            let last_lba = u64le(e, 40);
            if first > last_lba || first > last {
                continue;
            }
            let offset = first * ss;
            let end = ((last_lba + 1) * ss).min(size);
            layout.partitions.push(Partition {
                table: "gpt",
                number: i as u32 + 1,
                offset,
                size: end - offset,
            });
        }
    }
    Ok(found)
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses it.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// True if `s` (a sector) looks like a DOS partition table or protective MBR.
pub fn looks_like_mbr(s: &[u8]) -> bool {
    parse_mbr(s).is_some()
}

/// True if `s` starts with a GPT header signature.
pub fn looks_like_gpt_header(s: &[u8]) -> bool {
    s.len() >= 8 && &s[..8] == GPT_SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr_entry(buf: &mut [u8], i: usize, kind: u8, start: u32, sectors: u32) {
        let e = &mut buf[MBR_TABLE + 16 * i..MBR_TABLE + 16 * (i + 1)];
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn dos_with_logical_partitions() {
        let mut disk = vec![0u8; 64 << 20];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        mbr_entry(&mut disk, 0, 0x83, 2048, 4096);
        mbr_entry(&mut disk, 1, 0x05, 8192, 40960);
        // EBR 1 at sector 8192: logical at +2048, next EBR at ext+20480.
        let ebr1 = 8192 * 512;
        disk[ebr1 + 510] = 0x55;
        disk[ebr1 + 511] = 0xaa;
        mbr_entry(&mut disk[ebr1..], 0, 0x83, 2048, 8192);
        mbr_entry(&mut disk[ebr1..], 1, 0x05, 20480, 10240);
        let ebr2 = (8192 + 20480) * 512;
        disk[ebr2 + 510] = 0x55;
        disk[ebr2 + 511] = 0xaa;
        mbr_entry(&mut disk[ebr2..], 0, 0x82, 2048, 4096);
        let l = read_layout(disk.as_slice(), 512).unwrap();
        let parts: Vec<(u32, u64, u64)> = l
            .partitions
            .iter()
            .map(|p| (p.number, p.offset / 512, p.size / 512))
            .collect();
        assert_eq!(
            parts,
            vec![(1, 2048, 4096), (5, 10240, 8192), (6, 30720, 4096)]
        );
        assert_eq!(l.tables[0].name, "dos");
        assert!(l.regions.contains(&(ebr1 as u64, 512)));
        assert!(l.regions.contains(&(ebr2 as u64, 512)));
    }

    #[test]
    fn fat_boot_sector_is_not_a_table() {
        let mut s = vec![0u8; 512];
        s[0] = 0xeb;
        s[0x36..0x3e].copy_from_slice(b"FAT16   ");
        s[510] = 0x55;
        s[511] = 0xaa;
        assert!(!looks_like_mbr(&s));
    }

    fn write_gpt(disk: &mut [u8], ss: usize, parts: &[(u64, u64)]) {
        let lbas = (disk.len() / ss) as u64;
        let mut array = vec![0u8; 128 * 128];
        for (i, &(first, last)) in parts.iter().enumerate() {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[0] = 0xaf; // any non-zero type GUID
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        }
        let array_crc = crc32(&array);
        let array_sectors = (array.len() / ss) as u64;
        for (my, alt, entries) in [(1, lbas - 1, 2), (lbas - 1, 1, lbas - 1 - array_sectors)] {
            let mut h = vec![0u8; 92];
            h[..8].copy_from_slice(GPT_SIGNATURE);
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[12..16].copy_from_slice(&92u32.to_le_bytes());
            h[24..32].copy_from_slice(&u64::to_le_bytes(my));
            h[32..40].copy_from_slice(&u64::to_le_bytes(alt));
            h[72..80].copy_from_slice(&u64::to_le_bytes(entries));
            h[80..84].copy_from_slice(&128u32.to_le_bytes());
            h[84..88].copy_from_slice(&128u32.to_le_bytes());
            h[88..92].copy_from_slice(&array_crc.to_le_bytes());
            let crc = crc32(&h);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            let at = my as usize * ss;
            disk[at..at + 92].copy_from_slice(&h);
            let at = entries as usize * ss;
            disk[at..at + array.len()].copy_from_slice(&array);
        }
        disk[510] = 0x55;
        disk[511] = 0xaa;
        mbr_entry(disk, 0, 0xee, 1, (lbas - 1).min(u32::MAX as u64) as u32);
    }

    #[test]
    fn gpt_primary_and_backup_at_512_and_4096() {
        for ss in [512usize, 4096] {
            let mut disk = vec![0u8; 32 << 20];
            let mib = (1 << 20) / ss as u64;
            write_gpt(&mut disk, ss, &[(mib, 4 * mib - 1), (4 * mib, 8 * mib - 1)]);
            let l = read_layout(disk.as_slice(), 512).unwrap();
            assert_eq!(l.partitions.len(), 2, "ss {ss}: {l:?}");
            assert_eq!(l.partitions[0].offset, 1 << 20);
            assert_eq!(l.partitions[1].size, 4 << 20);
            let gpts: Vec<u64> = l
                .tables
                .iter()
                .filter(|t| t.name == "gpt")
                .map(|t| t.magic_offset)
                .collect();
            assert_eq!(gpts.len(), 2, "ss {ss}");
            assert!(gpts.contains(&(ss as u64)));
            assert!(gpts.contains(&((32 << 20) - ss as u64)));
            assert!(l.tables.iter().any(|t| t.name == "PMBR"));
        }
    }

    #[test]
    fn backup_gpt_alone_is_found() {
        let ss = 512;
        let mut disk = vec![0u8; 16 << 20];
        write_gpt(&mut disk, ss, &[(2048, 4095)]);
        disk[ss..2 * ss].fill(0); // primary header destroyed
        disk[..512].fill(0); // and the protective MBR
        let l = read_layout(disk.as_slice(), 512).unwrap();
        assert_eq!(l.partitions.len(), 1);
        assert_eq!(l.tables.len(), 1);
        assert_eq!(l.tables[0].magic_offset, (16 << 20) - 512);
    }
}

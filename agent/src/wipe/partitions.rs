//! Partition tables read by hand: MBR (with the extended/logical chain) and
//! GPT (primary and backup headers and entry arrays, at 512- and 4096-byte
//! sectors). The kernel here may have no partition-table parser at all, and
//! the wipe must find every partition and every table sector itself.
//!
//! Parsing is deliberately lenient: a table whose CRC does not match still
//! yields its regions (and its entries, within the disk), because for a wipe
//! erasing too much is harmless and missing a table is not.
//!
//! Every number in a table may have been crafted by a previous tenant. Byte
//! offsets are computed with checked arithmetic and compared with the disk's
//! size: a partition that starts beyond the disk (or beyond 2^64 bytes) is
//! skipped, one that ends beyond it is clamped to the disk's end, and each such
//! entry is recorded as an [`Anomaly`] naming the field and its value.

use std::fmt;
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
    /// Table fields that could not be used as they are (logged as warnings).
    pub anomalies: Vec<Anomaly>,
}

/// A table field that could not be used as it is (it points outside the disk,
/// or contradicts another field): where it is, its value, and what the reader
/// did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Where the field is, e.g. `GPT entry 2 (header at byte 512)`.
    pub location: String,
    /// The field as the specification names it, e.g. `ending_lba`.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// What is wrong with it and what was done, e.g. `lies beyond the end of
    /// the disk (131072 sectors of 512 bytes); the partition is clamped to it`.
    pub problem: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {} {}",
            self.location, self.field, self.value, self.problem
        )
    }
}

impl Layout {
    fn anomaly(&mut self, location: String, field: &'static str, value: u64, problem: String) {
        tracing::warn!(
            %location,
            field,
            value,
            %problem,
            "partition table field refused or clamped"
        );
        self.anomalies.push(Anomaly {
            location,
            field,
            value,
            problem,
        });
    }
}

/// `sectors * ss` as a byte offset, if it lies inside a disk of `size` bytes.
fn byte_offset(base: u64, sectors: u64, ss: u64, size: u64) -> Option<u64> {
    sectors
        .checked_mul(ss)
        .and_then(|b| base.checked_add(b))
        .filter(|&o| o < size)
}

/// How the disk's size reads in a message.
fn disk_extent(size: u64, ss: u64) -> String {
    format!("{} sectors of {ss} bytes", size / ss)
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
        let number = i as u32 + 1;
        let Some(offset) = byte_offset(0, u64::from(e.start), ss, size) else {
            layout.anomaly(
                format!("dos partition {number}"),
                "start",
                u64::from(e.start),
                format!(
                    "lies beyond the end of the disk ({}); the entry is skipped",
                    disk_extent(size, ss)
                ),
            );
            continue;
        };
        let len = clamp_len(layout, offset, e.sectors, ss, size, || {
            format!("dos partition {number}")
        });
        if is_extended(e.kind) {
            read_logical(disk, ss, offset, len, layout)?;
        } else {
            layout.partitions.push(Partition {
                table: "dos",
                number,
                offset,
                size: len,
            });
        }
    }
    Ok(())
}

/// The length in bytes of `sectors` sectors from `offset` (inside the disk),
/// clamped to the disk's end, with an anomaly when it had to be.
fn clamp_len(
    layout: &mut Layout,
    offset: u64,
    sectors: u32,
    ss: u64,
    size: u64,
    location: impl FnOnce() -> String,
) -> u64 {
    let room = size - offset;
    match u64::from(sectors).checked_mul(ss) {
        Some(len) if len <= room => len,
        _ => {
            layout.anomaly(
                location(),
                "sectors",
                u64::from(sectors),
                format!(
                    "runs past the end of the disk ({}); the partition is clamped to it",
                    disk_extent(size, ss)
                ),
            );
            room
        }
    }
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
            let start = u32le(data, 8);
            let location = || format!("logical partition {number} (EBR at byte {ebr})");
            match byte_offset(ebr, u64::from(start), ss, size) {
                Some(offset) => {
                    let len = clamp_len(layout, offset, u32le(data, 12), ss, size, location);
                    layout.partitions.push(Partition {
                        table: "dos-logical",
                        number,
                        offset,
                        size: len,
                    });
                }
                None => layout.anomaly(
                    location(),
                    "start",
                    u64::from(start),
                    format!(
                        "(relative to its EBR) lies beyond the end of the disk ({}); the entry is skipped",
                        disk_extent(size, ss)
                    ),
                ),
            }
            number += 1;
        }
        let link_start = u32le(link, 8);
        if !is_extended(link[4]) || link_start == 0 {
            break;
        }
        // The next EBR must lie inside the extended partition (and the disk).
        match byte_offset(ext, u64::from(link_start), ss, size) {
            Some(next) if next - ext < ext_len.max(ss) => ebr = next,
            _ => {
                layout.anomaly(
                    format!("EBR at byte {ebr}"),
                    "next EBR start",
                    u64::from(link_start),
                    format!(
                        "(relative to the extended partition at byte {ext}) lies outside it; the chain ends here"
                    ),
                );
                break;
            }
        }
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
    if size < ss.saturating_mul(2) {
        return Ok(false);
    }
    let last = size / ss - 1;
    // LBAs to look at, with the header field that named them (if any).
    let mut candidates: Vec<(u64, Option<(&'static str, u64)>)> = vec![(1, None), (last, None)];
    let mut checked = std::collections::HashSet::new();
    let mut found = false;
    // The end of the last whole sector: every LBA up to `last` lies before it.
    let sectors_end = (last + 1) * ss;
    while let Some((lba, named_by)) = candidates.pop() {
        if lba == 0 || !checked.insert(lba) {
            continue;
        }
        // Headers are looked for only at LBAs `0 < lba <= last`.
        let Some(at) = byte_offset(0, lba, ss, sectors_end) else {
            if let Some((field, header)) = named_by {
                layout.anomaly(
                    format!("GPT header at byte {header}"),
                    field,
                    lba,
                    format!(
                        "lies beyond the end of the disk ({}); not looked for there",
                        disk_extent(size, ss)
                    ),
                );
            }
            continue;
        };
        let s = disk.read_at(at, usize::try_from(ss).unwrap_or(512))?;
        let Some(h) = parse_gpt_header(&s) else {
            continue;
        };
        found = true;
        if !h.crc_ok {
            tracing::debug!(lba, sector_size = ss, "GPT header with a bad CRC");
        }
        layout.tables.push(Table {
            name: "gpt",
            magic_offset: at,
        });
        layout.regions.push((at, ss));
        candidates.push((h.alternate_lba, Some(("alternate_lba", at))));
        if h.my_lba != lba {
            candidates.push((h.my_lba, Some(("my_lba", at))));
        }
        let location = || format!("GPT header at byte {at}");
        if !(128..=4096).contains(&h.entry_size) {
            layout.anomaly(
                location(),
                "size_of_partition_entry",
                h.entry_size,
                "is outside 128..=4096; its entries are not read".into(),
            );
            continue;
        }
        let Some(array_off) = byte_offset(0, h.entries_lba, ss, sectors_end) else {
            layout.anomaly(
                location(),
                "partition_entry_lba",
                h.entries_lba,
                format!(
                    "lies beyond the end of the disk ({}); its entries are not read",
                    disk_extent(size, ss)
                ),
            );
            continue;
        };
        // At most 4096 entries of at most 4096 bytes: no overflow.
        let array_len = (h.num_entries * h.entry_size).min(sectors_end - array_off);
        layout
            .regions
            .push((array_off, array_len.div_ceil(ss) * ss));
        let array = disk.read_at(array_off, usize::try_from(array_len).unwrap_or(0))?;
        let esz = usize::try_from(h.entry_size).unwrap_or(128);
        for (i, e) in array.chunks_exact(esz).enumerate() {
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let number = i as u32 + 1;
            let location = || format!("GPT entry {number} (header at byte {at})");
            let first = u64le(e, 32);
            let last_lba = u64le(e, 40);
            if first > last_lba {
                layout.anomaly(
                    location(),
                    "starting_lba",
                    first,
                    format!("is after its ending_lba {last_lba}; the entry is skipped"),
                );
                continue;
            }
            let Some(offset) = byte_offset(0, first, ss, sectors_end) else {
                layout.anomaly(
                    location(),
                    "starting_lba",
                    first,
                    format!(
                        "lies beyond the end of the disk ({}); the entry is skipped",
                        disk_extent(size, ss)
                    ),
                );
                continue;
            };
            // `ending_lba` is inclusive: the partition ends where the next
            // sector starts, if that is on the disk.
            let end = match last_lba.checked_add(1).and_then(|n| n.checked_mul(ss)) {
                Some(end) if end <= size => end,
                _ => {
                    layout.anomaly(
                        location(),
                        "ending_lba",
                        last_lba,
                        format!(
                            "lies beyond the end of the disk ({}); the partition is clamped to it",
                            disk_extent(size, ss)
                        ),
                    );
                    size
                }
            };
            layout.partitions.push(Partition {
                table: "gpt",
                number,
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

    fn anomalies(l: &Layout) -> Vec<String> {
        l.anomalies.iter().map(ToString::to_string).collect()
    }

    fn has(found: &[String], want: &str) -> bool {
        found.iter().any(|a| a.contains(want))
    }

    /// Entries from a previous tenant's disk whose ending LBA is u64::MAX, or
    /// near 2^55 so that `(last + 1) * 512` wraps to a small number: the
    /// partitions are clamped to the disk's end, and entries that start beyond
    /// it or end before they start are skipped, each with the field and its
    /// value named. (Before, a debug build panicked on the overflow and a
    /// release build computed wrapped partition bounds.)
    #[test]
    fn gpt_entries_beyond_the_disk_are_clamped_or_skipped() {
        let near = (1u64 << 55) + 10;
        let mut disk = vec![0u8; 16 << 20];
        write_gpt(
            &mut disk,
            512,
            &[
                (2048, u64::MAX),
                (4096, near),
                (u64::MAX - 1, u64::MAX),
                (6000, 5000),
            ],
        );
        let l = read_layout(disk.as_slice(), 512).unwrap();
        let parts: Vec<(u32, u64, u64)> = l
            .partitions
            .iter()
            .map(|p| (p.number, p.offset, p.size))
            .collect();
        assert_eq!(parts, vec![(1, 1 << 20, 15 << 20), (2, 2 << 20, 14 << 20)]);
        let found = anomalies(&l);
        for want in [
            "GPT entry 1 (header at byte 512): ending_lba 18446744073709551615 lies beyond the end of the disk (32768 sectors of 512 bytes); the partition is clamped to it".to_string(),
            format!("GPT entry 2 (header at byte 512): ending_lba {near} lies beyond the end of the disk"),
            "GPT entry 3 (header at byte 512): starting_lba 18446744073709551614 lies beyond the end of the disk".to_string(),
            "GPT entry 4 (header at byte 512): starting_lba 6000 is after its ending_lba 5000; the entry is skipped".to_string(),
        ] {
            assert!(has(&found, &want), "{want}\nnot in {found:#?}");
        }
    }

    /// Writes an MBR/EBR entry at `sector` (a byte offset) of `disk`.
    fn ebr(disk: &mut [u8], at: usize, data: (u8, u32, u32), link: (u8, u32, u32)) {
        disk[at + 510] = 0x55;
        disk[at + 511] = 0xaa;
        mbr_entry(&mut disk[at..], 0, data.0, data.1, data.2);
        mbr_entry(&mut disk[at..], 1, link.0, link.1, link.2);
    }

    /// A dos table with u32::MAX starts, lengths and links, at 512- and
    /// 4096-byte sectors: what lies on the disk is used (clamped), the rest is
    /// skipped with the field and value named, and the chain stops.
    #[test]
    fn dos_chain_with_huge_values() {
        for ss in [512usize, 4096] {
            let mut disk = vec![0u8; 64 << 20];
            let size = disk.len() as u64;
            disk[510] = 0x55;
            disk[511] = 0xaa;
            let s = |bytes: usize| u32::try_from(bytes / ss).unwrap();
            mbr_entry(&mut disk, 0, 0x83, s(1 << 20), s(1 << 20));
            mbr_entry(&mut disk, 1, 0x05, s(8 << 20), u32::MAX);
            mbr_entry(&mut disk, 2, 0x83, u32::MAX, u32::MAX);
            // EBR 1: a logical partition running past the disk, then a link
            // far beyond it.
            ebr(
                &mut disk,
                8 << 20,
                (0x83, s(1 << 20), u32::MAX),
                (0x05, u32::MAX, 1),
            );
            let l = read_layout(disk.as_slice(), ss as u64).unwrap();
            let parts: Vec<(u32, u64, u64)> = l
                .partitions
                .iter()
                .map(|p| (p.number, p.offset, p.size))
                .collect();
            assert_eq!(
                parts,
                vec![(1, 1 << 20, 1 << 20), (5, 9 << 20, size - (9 << 20))],
                "ss {ss}"
            );
            let found = anomalies(&l);
            for want in [
                "dos partition 2: sectors 4294967295 runs past the end of the disk".to_string(),
                "dos partition 3: start 4294967295 lies beyond the end of the disk".to_string(),
                format!(
                    "logical partition 5 (EBR at byte {}): sectors 4294967295 runs past the end of the disk",
                    8 << 20
                ),
                format!(
                    "EBR at byte {}: next EBR start 4294967295 (relative to the extended partition at byte {}) lies outside it",
                    8 << 20,
                    8 << 20
                ),
            ] {
                assert!(has(&found, &want), "ss {ss}: {want}\nnot in {found:#?}");
            }
            // A logical partition starting beyond the disk is skipped.
            ebr(&mut disk, 8 << 20, (0x83, u32::MAX, 8), (0, 0, 0));
            let l = read_layout(disk.as_slice(), ss as u64).unwrap();
            assert_eq!(l.partitions.len(), 1, "ss {ss}: {:?}", l.partitions);
            assert!(
                has(
                    &anomalies(&l),
                    "logical partition 5 (EBR at byte 8388608): start 4294967295 (relative to its EBR) lies beyond the end of the disk"
                ),
                "{:#?}",
                l.anomalies
            );
        }
    }

    /// Tables filled with extreme numbers: reading them never overflows (the
    /// unit tests run with overflow checks) and never yields a partition or a
    /// region outside the disk. The signature prober runs over each result.
    #[test]
    fn hostile_tables_never_overflow() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut gpt_parts, mut dos_parts, mut anomalies) = (0, 0, 0);
        for round in 0..4000 {
            let size = [64usize << 10, (64 << 10) + 512, 256 << 10][round % 3];
            let mut disk = vec![0u8; size];
            let ss = [512u64, 4096][(rnd() % 2) as usize];
            let sectors = size as u64 / ss;
            let pick = |r: u64| -> u64 {
                let pool = [
                    0,
                    1,
                    2,
                    sectors - 1,
                    sectors,
                    sectors + 1,
                    u64::from(u32::MAX),
                    1 << 55,
                    (1 << 55) + 3,
                    (u64::MAX / ss) + 1,
                    1 << 63,
                    u64::MAX - 1,
                    u64::MAX,
                    r % (2 * sectors),
                ];
                pool[(r >> 32) as usize % pool.len()]
            };
            // MBR: four entries of random kinds and extreme numbers.
            disk[510] = 0x55;
            disk[511] = 0xaa;
            for i in 0..4 {
                let kind = [0x83, 0x83, 0x05, 0x0f, 0x85, 0xee, 0][(rnd() % 7) as usize];
                let start = pick(rnd()) as u32;
                let len = pick(rnd()) as u32;
                mbr_entry(&mut disk, i, kind, start, len.max(1));
            }
            // EBRs scattered where extended partitions may point.
            for _ in 0..4 {
                let at = (rnd() % (size as u64 / 512)) as usize * 512;
                let link = [0x05, 0x0f, 0][(rnd() % 3) as usize];
                ebr(
                    &mut disk,
                    at,
                    (0x83, pick(rnd()) as u32, pick(rnd()) as u32),
                    (link, pick(rnd()) as u32, 1),
                );
            }
            // Every other round, a GPT header at LBA 1 (and sometimes at the
            // last LBA); the dos table is read only without one.
            let gpt = round % 2 == 0;
            let entries_lba = if rnd() % 2 == 0 { 2 } else { pick(rnd()) };
            let entry_size = [128u32, 128, 128, 256, 4096, 0, 4097, u32::MAX][(rnd() % 8) as usize];
            let count = [4u32, 128, 4096, u32::MAX][(rnd() % 4) as usize];
            let headers = if gpt {
                vec![1, if rnd() % 2 == 0 { sectors - 1 } else { 1 }]
            } else {
                Vec::new()
            };
            for lba in headers {
                let at = (lba * ss) as usize;
                let h = &mut disk[at..at + 92];
                h[..8].copy_from_slice(GPT_SIGNATURE);
                h[12..16].copy_from_slice(&92u32.to_le_bytes());
                h[24..32].copy_from_slice(&pick(rnd()).to_le_bytes());
                h[32..40].copy_from_slice(&pick(rnd()).to_le_bytes());
                h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
                h[80..84].copy_from_slice(&count.to_le_bytes());
                h[84..88].copy_from_slice(&entry_size.to_le_bytes());
            }
            if gpt && entries_lba < sectors && (entry_size == 128 || entry_size == 256) {
                let at = (entries_lba * ss) as usize;
                let esz = entry_size as usize;
                for i in 0..4 {
                    let e = at + i * esz;
                    if e + esz > size {
                        break;
                    }
                    disk[e] = 0xaf;
                    disk[e + 32..e + 40].copy_from_slice(&pick(rnd()).to_le_bytes());
                    disk[e + 40..e + 48].copy_from_slice(&pick(rnd()).to_le_bytes());
                }
            }
            let lbs = [512u64, 4096][(rnd() % 2) as usize];
            let l = read_layout(disk.as_slice(), lbs).unwrap();
            gpt_parts += l.partitions.iter().filter(|p| p.table == "gpt").count();
            dos_parts += l.partitions.iter().filter(|p| p.table != "gpt").count();
            anomalies += l.anomalies.len();
            let size = size as u64;
            for p in &l.partitions {
                assert!(
                    p.offset < size && p.offset.checked_add(p.size).is_some_and(|e| e <= size),
                    "round {round}: {p:?} outside a disk of {size} bytes"
                );
                crate::wipe::signatures::probe(disk.as_slice(), p.offset, p.size, false).unwrap();
            }
            for &(off, len) in &l.regions {
                assert!(
                    off < size && off.checked_add(len).is_some(),
                    "round {round}: region ({off}, {len}) outside a disk of {size} bytes"
                );
            }
            crate::wipe::metadata::merge_ranges(l.regions.clone(), 4096, size);
            crate::wipe::signatures::probe(disk.as_slice(), 0, size, true).unwrap();
        }
        // The rounds reached partitions of both kinds, and refusals.
        println!("{gpt_parts} gpt and {dos_parts} dos partitions, {anomalies} anomalies");
        assert!(gpt_parts > 500 && dos_parts > 500 && anomalies > 2000);
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

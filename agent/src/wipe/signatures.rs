//! A pure-Rust prober for the on-disk signatures `wipefs -a` removes: the
//! filesystems, RAID, LVM, swap and crypto headers commonly found on servers,
//! and nested partition tables. See docs/wipe.md for why not libblkid.
//!
//! Each prober looks at fixed offsets of a *container* (the whole disk or a
//! partition found in its tables) and returns the byte ranges to erase. The
//! ranges cover more than the magic bytes `wipefs` clears: whole superblocks,
//! backup superblocks where they are cheap to find (ext2/3/4, XFS, FAT32,
//! NTFS, btrfs mirrors) and LUKS key material, so that neither `blkid` nor a
//! repair tool (`fsck`, `xfs_repair`, `cryptsetup repair`) brings them back.

use std::borrow::Cow;
use std::io;

use super::device::ReadAt;
use super::partitions;

/// A signature found in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Name as blkid reports it (`ext4`, `vfat`, `swap`, `crypto_LUKS`, ...).
    pub name: &'static str,
    /// Absolute offset of the magic.
    pub magic_offset: u64,
    /// Absolute offset of the container (0 for the whole disk).
    pub container_offset: u64,
    /// Absolute byte ranges `(offset, len)` to zero.
    pub erase: Vec<(u64, u64)>,
}

/// Bytes read at once from the start of a container: covers everything up
/// to btrfs (64 KiB), swap with 64 KiB pages, and ZFS labels L0 and L1.
const HEAD: u64 = 512 << 10;
/// Bytes read at once from the end: md 0.90/1.0, ZFS L2/L3, backup GPT.
const TAIL: u64 = 1 << 20;
const KIB: u64 = 1024;
const MIB: u64 = 1 << 20;

/// A window on one container with its head and tail cached.
struct View<'a, D: ReadAt + ?Sized> {
    disk: &'a D,
    offset: u64,
    size: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    tail_start: u64,
    hits: Vec<Hit>,
}

impl<'a, D: ReadAt + ?Sized> View<'a, D> {
    fn new(disk: &'a D, offset: u64, size: u64) -> io::Result<Self> {
        let head_len = HEAD.min(size);
        let head = disk.read_at(offset, usize::try_from(head_len).unwrap_or(0))?;
        let tail_len = TAIL.min(size);
        let tail_start = size - tail_len;
        let tail = disk.read_at(offset + tail_start, usize::try_from(tail_len).unwrap_or(0))?;
        Ok(Self {
            disk,
            offset,
            size,
            head,
            tail,
            tail_start,
            hits: Vec::new(),
        })
    }

    /// `len` bytes at `rel` within the container (zeros past its end).
    fn get(&self, rel: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let end = rel.saturating_add(len as u64);
        if end <= self.head.len() as u64 {
            let r = rel as usize;
            return Ok(Cow::Borrowed(&self.head[r..r + len]));
        }
        if rel >= self.tail_start && end <= self.size {
            let r = (rel - self.tail_start) as usize;
            return Ok(Cow::Borrowed(&self.tail[r..r + len]));
        }
        if rel >= self.size {
            return Ok(Cow::Owned(vec![0u8; len]));
        }
        let avail = usize::try_from((self.size - rel).min(len as u64)).unwrap_or(len);
        let mut v = self.disk.read_at(self.offset + rel, avail)?;
        v.resize(len, 0);
        Ok(Cow::Owned(v))
    }

    fn matches(&self, rel: u64, magic: &[u8]) -> io::Result<bool> {
        Ok(rel
            .checked_add(magic.len() as u64)
            .is_some_and(|end| end <= self.size)
            && *self.get(rel, magic.len())? == *magic)
    }

    fn u16le(&self, rel: u64) -> io::Result<u16> {
        let b = self.get(rel, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32le(&self, rel: u64) -> io::Result<u32> {
        let b = self.get(rel, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32be(&self, rel: u64) -> io::Result<u32> {
        let b = self.get(rel, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64be(&self, rel: u64) -> io::Result<u64> {
        let b = self.get(rel, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_be_bytes(a))
    }

    /// Records a hit whose magic is at `magic` and whose erase ranges are
    /// `ranges`, all relative to the container (clamped to it).
    fn hit(&mut self, name: &'static str, magic: u64, ranges: &[(u64, u64)]) {
        let erase = ranges
            .iter()
            .filter(|&&(off, _)| off < self.size)
            .map(|&(off, len)| (self.offset + off, len.min(self.size - off)))
            .collect();
        self.hits.push(Hit {
            name,
            magic_offset: self.offset + magic,
            container_offset: self.offset,
            erase,
        });
    }
}

/// Probes the container `[offset, offset + size)` of `disk` for every known
/// signature. `whole_disk` containers skip the nested-table probe (the
/// partition-table reader handles the disk's own tables).
pub fn probe(
    disk: &(impl ReadAt + ?Sized),
    offset: u64,
    size: u64,
    whole_disk: bool,
) -> io::Result<Vec<Hit>> {
    if size < 1024 {
        return Ok(Vec::new());
    }
    // Every offset below is `offset + rel` with `rel < size`: it must fit.
    if offset.checked_add(size).is_none_or(|end| end > disk.size()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "container at byte {offset} (+{size}) lies beyond the end of the disk ({} bytes)",
                disk.size()
            ),
        ));
    }
    let mut v = View::new(disk, offset, size)?;
    probe_ext(&mut v)?;
    probe_xfs(&mut v)?;
    probe_btrfs(&mut v)?;
    probe_fat(&mut v)?;
    probe_ntfs(&mut v)?;
    probe_iso(&mut v)?;
    probe_swap(&mut v)?;
    probe_luks(&mut v)?;
    probe_lvm(&mut v)?;
    probe_md(&mut v)?;
    probe_bcache(&mut v)?;
    probe_zfs(&mut v)?;
    if !whole_disk {
        probe_tables(&mut v)?;
    }
    Ok(v.hits)
}

fn probe_ext<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    if v.size < 2048 || v.u16le(0x438)? != 0xef53 {
        return Ok(());
    }
    let compat = v.u32le(0x45c)?;
    let incompat = v.u32le(0x460)?;
    let ro_compat = v.u32le(0x464)?;
    let name = if incompat & 0x0008 != 0 {
        "jbd"
    } else if incompat & !(0x0002 | 0x0004 | 0x0010) != 0 || ro_compat & !0x0007 != 0 {
        // Anything beyond ext3's filetype/recover/meta_bg and sparse_super/
        // large_file/btree_dir: extents, 64bit, flex_bg, huge_file, metadata_csum...
        "ext4"
    } else if compat & 0x0004 != 0 {
        "ext3"
    } else {
        "ext2"
    };
    let mut ranges = vec![(0, 4 * KIB)];
    // Backup superblocks: group g starts at first_data_block + g * blocks_per_group.
    let log = v.u32le(0x418)?;
    let blocks_per_group = u64::from(v.u32le(0x420)?);
    let first_data_block = u64::from(v.u32le(0x414)?);
    let mut blocks = u64::from(v.u32le(0x404)?);
    if incompat & 0x80 != 0 {
        blocks |= u64::from(v.u32le(0x150)?) << 32;
    }
    if log <= 6 && blocks_per_group >= 8 {
        let bs = KIB << log;
        let groups = blocks.div_ceil(blocks_per_group);
        let sparse = ro_compat & 0x1 != 0;
        for g in backup_groups(groups, sparse).into_iter().take(64) {
            // The counts come from the disk: a group whose offset does not fit
            // in 64 bits is not on it (nor is any later group).
            let Some(off) = g
                .checked_mul(blocks_per_group)
                .and_then(|b| b.checked_add(first_data_block))
                .and_then(|block| block.checked_mul(bs))
                .filter(|&off| off < v.size)
            else {
                break;
            };
            // With 1 KiB blocks a backup sits at its block's start; the magic
            // is at 0x38 into the superblock either way.
            if v.u16le(off.saturating_add(0x38))? == 0xef53 {
                ranges.push((off, bs.max(4 * KIB)));
            }
        }
    }
    v.hit(name, 0x438, &ranges);
    Ok(())
}

/// Groups holding ext backup superblocks: 1 and powers of 3, 5 and 7 with
/// sparse_super, every group otherwise (capped).
fn backup_groups(groups: u64, sparse: bool) -> Vec<u64> {
    let mut out = Vec::new();
    if !sparse {
        out.extend(1..groups.min(64));
        return out;
    }
    if groups > 1 {
        out.push(1);
    }
    for base in [3u64, 5, 7] {
        let mut g = base;
        while g < groups {
            out.push(g);
            g = g.saturating_mul(base);
        }
    }
    out.sort_unstable();
    out
}

fn probe_xfs<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    if !v.matches(0, b"XFSB")? {
        return Ok(());
    }
    let mut ranges = vec![(0, 4 * KIB)];
    let block = u64::from(v.u32be(4)?);
    let ag_blocks = u64::from(v.u32be(0x54)?);
    let ag_count = u64::from(v.u32be(0x58)?);
    if (512..=65536).contains(&block) && ag_blocks > 0 {
        for ag in 1..ag_count.min(1024) {
            let Some(off) = ag
                .checked_mul(ag_blocks)
                .and_then(|b| b.checked_mul(block))
                .filter(|&off| off < v.size)
            else {
                break;
            };
            if v.matches(off, b"XFSB")? {
                ranges.push((off, 4 * KIB));
            }
        }
    }
    v.hit("xfs", 0, &ranges);
    Ok(())
}

fn probe_btrfs<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    const MAGIC: &[u8] = b"_BHRfS_M";
    let mut ranges = Vec::new();
    let mut first = None;
    for sb in [64 * KIB, 64 * MIB, 256 << 30] {
        if v.matches(sb + 0x40, MAGIC)? {
            first.get_or_insert(sb + 0x40);
            ranges.push((sb, 4 * KIB));
        }
    }
    if let Some(magic) = first {
        v.hit("btrfs", magic, &ranges);
    }
    Ok(())
}

fn probe_fat<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    let s = v.get(0, 512)?.into_owned();
    let fat32 = &s[0x52..0x5a] == b"FAT32   ";
    let fat16 = &s[0x36..0x3b] == b"FAT12" || &s[0x36..0x3b] == b"FAT16";
    let other =
        &s[0x36..0x3e] == b"FAT     " || &s[0x36..0x3b] == b"MSDOS" || &s[0x52..0x57] == b"MSWIN";
    if !(fat32 || fat16 || other) {
        return Ok(());
    }
    let sector = u64::from(u16::from_le_bytes([s[0x0b], s[0x0c]]));
    if !(sector.is_power_of_two() && (512..=4096).contains(&sector)) {
        return Ok(());
    }
    let mut ranges = vec![(0, 4 * KIB)];
    if fat32 {
        let backup = u64::from(u16::from_le_bytes([s[0x32], s[0x33]]));
        let info = u64::from(u16::from_le_bytes([s[0x30], s[0x31]]));
        for sec in [backup, backup + 1, info] {
            if sec > 0 && sec < 64 {
                ranges.push((sec * sector, sector));
            }
        }
    }
    let magic = if fat32 { 0x52 } else { 0x36 };
    v.hit("vfat", magic, &ranges);
    Ok(())
}

fn probe_ntfs<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    if !v.matches(3, b"NTFS    ")? {
        return Ok(());
    }
    let mut ranges = vec![(0, 4 * KIB)];
    let sector = u64::from(v.u16le(0x0b)?);
    let b = v.get(0x28, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b);
    let sectors = u64::from_le_bytes(a);
    // The backup boot sector follows the volume (the last sector of the partition).
    let backup = sectors.saturating_mul(sector);
    if (512..=4096).contains(&sector)
        && backup < v.size
        && v.matches(backup.saturating_add(3), b"NTFS    ")?
    {
        ranges.push((backup, sector));
    }
    let last = v.size - 512;
    if v.matches(last + 3, b"NTFS    ")? {
        ranges.push((last, 512));
    }
    v.hit("ntfs", 3, &ranges);
    Ok(())
}

fn probe_iso<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    // The volume descriptor set starts at 32 KiB, one 2 KiB descriptor each.
    let mut name = None;
    for d in 0..16u64 {
        let off = 32 * KIB + d * 2048;
        let id = v.get(off + 1, 5)?;
        match &id[..] {
            b"CD001" => {
                name.get_or_insert(("iso9660", off + 1));
            }
            b"BEA01" | b"NSR02" | b"NSR03" | b"TEA01" => {
                name = Some(("udf", off + 1));
            }
            _ => break,
        }
    }
    if let Some((name, magic)) = name {
        // Descriptors, and the UDF anchor at sector 256.
        v.hit(name, magic, &[(32 * KIB, 32 * KIB), (512 * KIB, 2 * KIB)]);
    }
    Ok(())
}

fn probe_swap<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    for page in [4 * KIB, 8 * KIB, 16 * KIB, 32 * KIB, 64 * KIB] {
        let m = v.get(page - 10, 10)?;
        let name = match &m[..] {
            b"SWAPSPACE2" | b"SWAP-SPACE" => "swap",
            _ if &m[1..] == b"S1SUSPEND" || &m[1..] == b"S2SUSPEND" || &m[1..] == b"ULSUSPEND" => {
                "swsuspend"
            }
            _ if &m[..] == b"LINHIB0001" => "swsuspend",
            _ => continue,
        };
        v.hit(name, page - 10, &[(0, page)]);
        return Ok(());
    }
    Ok(())
}

/// LUKS2 secondary header offsets (cryptsetup `hdr_offsets`).
const LUKS2_SECONDARY: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

fn probe_luks<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    const MAGIC: &[u8] = b"LUKS\xba\xbe";
    const MAGIC2: &[u8] = b"SKUL\xba\xbe";
    let primary = v.matches(0, MAGIC)?;
    let mut secondary = None;
    for off in LUKS2_SECONDARY {
        if v.matches(off, MAGIC2)? {
            secondary = Some(off);
            break;
        }
    }
    if !primary && secondary.is_none() {
        return Ok(());
    }
    // Erase the headers *and* the key material up to the data segment: with
    // the key slots gone the encrypted data is unrecoverable (a cheap
    // crypto-erase), whatever else is left.
    let mut end = 16 * MIB;
    if primary && v.get(6, 2)?[..] == [0, 1] {
        end = u64::from(v.u32be(104)?) * 512; // payload offset, sectors
    } else if let Some(data) =
        luks2_data_offset(v, if primary { 0 } else { secondary.unwrap_or(0) })?
    {
        end = data;
    }
    let end = end.clamp(4 * KIB, 256 * MIB);
    let magic = if primary { 0 } else { secondary.unwrap_or(0) };
    v.hit("crypto_LUKS", magic, &[(0, end)]);
    Ok(())
}

/// The data segment offset from a LUKS2 header's JSON area.
fn luks2_data_offset<D: ReadAt + ?Sized>(v: &View<'_, D>, hdr: u64) -> io::Result<Option<u64>> {
    let hdr_size = v.u64be(hdr + 8)?;
    if !(16 * KIB..=4 * MIB).contains(&hdr_size) {
        return Ok(None);
    }
    let json = v.get(
        hdr + 4 * KIB,
        usize::try_from(hdr_size - 4 * KIB).unwrap_or(0),
    )?;
    let text = String::from_utf8_lossy(&json);
    let Some(seg) = text.find("\"segments\"") else {
        return Ok(None);
    };
    let rest = &text[seg..];
    let Some(o) = rest.find("\"offset\"") else {
        return Ok(None);
    };
    let digits: String = rest[o + 8..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse().ok())
}

fn probe_lvm<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    for sector in 0..4u64 {
        let off = sector * 512;
        if v.matches(off, b"LABELONE")? && v.matches(off + 0x18, b"LVM2 001")? {
            // The label and the text metadata area that follows it.
            v.hit("LVM2_member", off + 0x18, &[(0, MIB)]);
            return Ok(());
        }
    }
    Ok(())
}

const MD_MAGIC: u32 = 0xa92b_4efc;

fn probe_md<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    let size = v.size;
    let mut offsets = Vec::new();
    // 0.90: 64 KiB block in the last 64..128 KiB, aligned to 64 KiB.
    if size >= 128 * KIB {
        offsets.push(((size & !(64 * KIB - 1)) - 64 * KIB, 0));
    }
    // 1.0: 8 KiB before the end, 4 KiB aligned; 1.1: start; 1.2: 4 KiB.
    if size >= 12 * KIB {
        offsets.push((((size / 512 - 16) & !7) * 512, 1));
    }
    offsets.push((0, 1));
    offsets.push((4 * KIB, 1));
    for (off, major) in offsets {
        let magic = v.u32le(off)?;
        let magic_be = v.u32be(off)?;
        if magic != MD_MAGIC && magic_be != MD_MAGIC {
            continue;
        }
        let version = if magic == MD_MAGIC {
            v.u32le(off + 4)?
        } else {
            v.u32be(off + 4)?
        };
        if version != major {
            continue;
        }
        v.hit("linux_raid_member", off, &[(off, 4 * KIB)]);
    }
    Ok(())
}

const BCACHE_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d, 0x81,
];

fn probe_bcache<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    if v.matches(4 * KIB + 0x18, &BCACHE_MAGIC)? {
        v.hit("bcache", 4 * KIB + 0x18, &[(4 * KIB, 4 * KIB)]);
    }
    Ok(())
}

const ZFS_UB_MAGIC: u64 = 0x00ba_b10c;
const ZFS_LABEL: u64 = 256 * KIB;

fn probe_zfs<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    if v.size < 4 * ZFS_LABEL {
        return Ok(());
    }
    let aligned = v.size & !(ZFS_LABEL - 1);
    let labels = [0, ZFS_LABEL, aligned - 2 * ZFS_LABEL, aligned - ZFS_LABEL];
    let mut first = None;
    let mut ranges = Vec::new();
    for label in labels {
        let ring = v.get(label + 128 * KIB, 128 * 1024)?;
        let found = ring.chunks_exact(1024).position(|slot| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&slot[..8]);
            u64::from_le_bytes(a) == ZFS_UB_MAGIC || u64::from_be_bytes(a) == ZFS_UB_MAGIC
        });
        if let Some(i) = found {
            first.get_or_insert(label + 128 * KIB + i as u64 * 1024);
            ranges.push((label, ZFS_LABEL));
        }
    }
    if let Some(magic) = first {
        v.hit("zfs_member", magic, &ranges);
    }
    Ok(())
}

/// Partition tables nested in a partition (a VM disk image inside it, or a
/// table left over from an earlier layout).
fn probe_tables<D: ReadAt + ?Sized>(v: &mut View<'_, D>) -> io::Result<()> {
    let s0 = v.get(0, 512)?.into_owned();
    let mut gpt = false;
    for ss in [512, 4096] {
        if v.size >= 2 * ss && partitions::looks_like_gpt_header(&v.get(ss, 8)?) {
            v.hit("gpt", ss, &[(ss, ss)]);
            gpt = true;
        }
    }
    if partitions::looks_like_mbr(&s0) {
        let pmbr = (0..4).any(|i| s0[446 + 16 * i + 4] == 0xee);
        v.hit(if pmbr || gpt { "PMBR" } else { "dos" }, 0x1fe, &[(0, 512)]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(disk: &[u8], off: u64, size: u64) -> Vec<&'static str> {
        probe(disk, off, size, false)
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    #[test]
    fn empty_has_nothing() {
        let d = vec![0u8; 8 << 20];
        assert!(names(&d, 0, 8 << 20).is_empty());
    }

    #[test]
    fn md_superblocks_all_versions() {
        let size = 8u64 << 20;
        for (off, label) in [
            (((size & !(64 * KIB - 1)) - 64 * KIB), "0.90"),
            ((((size / 512) - 16) & !7) * 512, "1.0"),
            (0, "1.1"),
            (4096, "1.2"),
        ] {
            let mut d = vec![0u8; size as usize];
            let o = off as usize;
            d[o..o + 4].copy_from_slice(&MD_MAGIC.to_le_bytes());
            let major: u32 = if label == "0.90" { 0 } else { 1 };
            d[o + 4..o + 8].copy_from_slice(&major.to_le_bytes());
            let hits = probe(d.as_slice(), 0, size, false).unwrap();
            assert_eq!(hits.len(), 1, "md {label}: {hits:?}");
            assert_eq!(hits[0].name, "linux_raid_member");
            assert_eq!(hits[0].magic_offset, off);
        }
    }

    #[test]
    fn signatures_inside_a_partition_are_absolute() {
        let mut d = vec![0u8; 16 << 20];
        let part = 4usize << 20;
        // swap with 4 KiB pages in a partition at 4 MiB
        d[part + 4096 - 10..part + 4096].copy_from_slice(b"SWAPSPACE2");
        // LVM label in sector 1 of a partition at 8 MiB
        let lvm = (8 << 20) + 512;
        d[lvm..lvm + 8].copy_from_slice(b"LABELONE");
        d[lvm + 0x18..lvm + 0x20].copy_from_slice(b"LVM2 001");
        let swap = probe(d.as_slice(), 4 << 20, 4 << 20, false).unwrap();
        assert_eq!(swap[0].name, "swap");
        assert_eq!(swap[0].magic_offset, (4 << 20) + 4086);
        assert_eq!(swap[0].erase, vec![(4 << 20, 4096)]);
        let l = probe(d.as_slice(), 8 << 20, 4 << 20, false).unwrap();
        assert_eq!(l[0].name, "LVM2_member");
    }

    #[test]
    fn bcache_zfs_luks_btrfs_xfs() {
        let mut d = vec![0u8; 8 << 20];
        d[4096 + 0x18..4096 + 0x28].copy_from_slice(&BCACHE_MAGIC);
        let l3 = (8 << 20) - 256 * 1024 + 128 * 1024 + 5 * 1024;
        d[l3..l3 + 8].copy_from_slice(&ZFS_UB_MAGIC.to_le_bytes());
        let mut n = names(&d, 0, 8 << 20);
        n.sort_unstable();
        assert_eq!(n, vec!["bcache", "zfs_member"]);

        let mut d = vec![0u8; 8 << 20];
        d[..6].copy_from_slice(b"LUKS\xba\xbe");
        d[6..8].copy_from_slice(&[0, 1]);
        d[104..108].copy_from_slice(&4096u32.to_be_bytes());
        let h = probe(d.as_slice(), 0, 8 << 20, false).unwrap();
        assert_eq!(h[0].name, "crypto_LUKS");
        assert_eq!(h[0].erase, vec![(0, 2 << 20)]);

        let mut d = vec![0u8; 8 << 20];
        d[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        d[..4].copy_from_slice(b"XFSB");
        let mut n = names(&d, 0, 8 << 20);
        n.sort_unstable();
        assert_eq!(n, vec!["btrfs", "xfs"]);
    }

    /// An ext superblock with the largest counts it can declare (64-bit block
    /// count, 64 KiB blocks, u32::MAX blocks per group and first data block):
    /// backup superblock offsets that do not fit in 64 bits are not on the
    /// disk and are not probed. Before, `block * bs` overflowed (a panic in a
    /// debug build, a wrapped offset probed in a release build).
    #[test]
    fn ext_with_hostile_counts_does_not_overflow() {
        let mut d = vec![0u8; 1 << 20];
        let mut put = |at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(0x404, u32::MAX); // blocks_count_lo
        put(0x414, u32::MAX); // first_data_block
        put(0x418, 6); // log_block_size: 64 KiB
        put(0x420, u32::MAX); // blocks_per_group
        put(0x460, 0x80); // incompat: 64bit
        put(0x464, 0x1); // ro_compat: sparse_super
        put(0x150, u32::MAX); // blocks_count_hi
        d[0x438..0x43a].copy_from_slice(&0xef53u16.to_le_bytes());
        let hits = probe(d.as_slice(), 0, 1 << 20, true).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].name, "ext4");
        assert_eq!(hits[0].erase, vec![(0, 4096)]);
        // XFS with the largest AG geometry it can declare.
        let mut d = vec![0u8; 1 << 20];
        d[..4].copy_from_slice(b"XFSB");
        d[4..8].copy_from_slice(&65536u32.to_be_bytes());
        d[0x54..0x58].copy_from_slice(&u32::MAX.to_be_bytes());
        d[0x58..0x5c].copy_from_slice(&u32::MAX.to_be_bytes());
        let hits = probe(d.as_slice(), 0, 1 << 20, true).unwrap();
        assert_eq!(hits[0].erase, vec![(0, 4096)]);
        // A container that does not fit the disk is an error, not a wrap.
        assert!(probe(d.as_slice(), u64::MAX - 4096, 8192, false).is_err());
        assert!(probe(d.as_slice(), 512 << 10, 1 << 20, false).is_err());
    }

    #[test]
    fn ext_backup_groups() {
        assert_eq!(backup_groups(30, true), vec![1, 3, 5, 7, 9, 25, 27]);
        assert_eq!(backup_groups(4, false), vec![1, 2, 3]);
    }
}

//! The DOS partition table: the disk identifier (what IPA reports as the
//! `root uuid` of whole-disk images), primary partition entries, and the
//! size of a GPT's protective entry.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A primary partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrPartition {
    /// 1–4.
    pub number: u32,
    /// Partition type byte.
    pub kind: u8,
    /// First sector.
    pub first: u64,
    /// Sectors.
    pub sectors: u64,
}

/// Reads sector 0; `None` without the 0x55AA signature.
pub fn read(dev: &File) -> io::Result<Option<[u8; 512]>> {
    let mut s = [0u8; 512];
    dev.read_exact_at(&mut s, 0)?;
    Ok((s[510] == 0x55 && s[511] == 0xaa).then_some(s))
}

/// The disk identifier at offset 440, as `0x%08x` (IPA's `hexdump` format).
pub fn disk_identifier(sector0: &[u8; 512]) -> String {
    format!(
        "0x{:08x}",
        u32::from_le_bytes([sector0[440], sector0[441], sector0[442], sector0[443]])
    )
}

/// True for a GPT protective MBR.
pub fn is_protective(sector0: &[u8; 512]) -> bool {
    primaries(sector0).iter().any(|p| p.kind == 0xee)
}

/// The used primary entries.
pub fn primaries(sector0: &[u8; 512]) -> Vec<MbrPartition> {
    (0..4)
        .filter_map(|i| {
            let e = &sector0[446 + 16 * i..462 + 16 * i];
            let first = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
            let sectors = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
            (e[4] != 0 && sectors != 0).then_some(MbrPartition {
                number: i as u32 + 1,
                kind: e[4],
                first,
                sectors,
            })
        })
        .collect()
}

/// Writes a primary entry into slot `number` (1–4) of sector 0 on disk.
pub fn write_entry(dev: &File, sector0: &mut [u8; 512], p: MbrPartition) -> io::Result<()> {
    let i = (p.number as usize - 1) * 16 + 446;
    let e = &mut sector0[i..i + 16];
    e.fill(0);
    // CHS fields set to the "LBA only" maximum, as modern tools do.
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = p.kind;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    let first =
        u32::try_from(p.first).map_err(|_| io::Error::other("partition beyond the MBR limit"))?;
    let len =
        u32::try_from(p.sectors).map_err(|_| io::Error::other("partition beyond the MBR limit"))?;
    e[8..12].copy_from_slice(&first.to_le_bytes());
    e[12..16].copy_from_slice(&len.to_le_bytes());
    dev.write_all_at(&sector0[..], 0)
}

/// The size a protective 0xEE entry should have on a disk of `disk_sectors`
/// logical sectors: the whole disk after LBA 0, capped at what the field
/// holds (UEFI 2.10 §5.2.3).
pub fn protective_size(disk_sectors: u64) -> u32 {
    u32::try_from(disk_sectors.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// Makes a pure protective MBR (one 0xEE entry, nothing else) cover a disk
/// of `disk_sectors`, as `sgdisk` does when it writes a GPT: the entry's
/// size becomes [`protective_size`]. A hybrid MBR (0xEE beside other
/// entries) is left as it is. Returns whether sector 0 was rewritten.
pub fn fit_protective(dev: &File, sector0: &mut [u8; 512], disk_sectors: u64) -> io::Result<bool> {
    let used = primaries(sector0);
    let [p] = used[..] else {
        return Ok(false);
    };
    if p.kind != 0xee {
        return Ok(false);
    }
    let size = protective_size(disk_sectors);
    if p.sectors == u64::from(size) {
        return Ok(false);
    }
    let i = (p.number as usize - 1) * 16 + 446;
    sector0[i + 12..i + 16].copy_from_slice(&size.to_le_bytes());
    dev.write_all_at(&sector0[..], 0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protective(size: u32) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[446 + 4] = 0xee;
        s[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        s[446 + 12..446 + 16].copy_from_slice(&size.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn protective_size_is_capped() {
        assert_eq!(protective_size(0), 0);
        assert_eq!(protective_size(2048), 2047);
        assert_eq!(protective_size(1 << 32), u32::MAX);
        assert_eq!(protective_size(u64::MAX), u32::MAX);
    }

    #[test]
    fn fits_a_pure_protective_mbr_and_leaves_a_hybrid_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("d"))
            .unwrap();
        f.set_len(1 << 20).unwrap();
        let mut s = protective(100);
        assert!(fit_protective(&f, &mut s, 2048).unwrap());
        assert_eq!(primaries(&s)[0].sectors, 2047);
        assert_eq!(read(&f).unwrap().unwrap(), s);
        assert!(!fit_protective(&f, &mut s, 2048).unwrap());

        let mut hybrid = protective(100);
        hybrid[462 + 4] = 0x0c;
        hybrid[462 + 8..462 + 12].copy_from_slice(&2048u32.to_le_bytes());
        hybrid[462 + 12..462 + 16].copy_from_slice(&2048u32.to_le_bytes());
        assert!(!fit_protective(&f, &mut hybrid, 1 << 20).unwrap());
        assert_eq!(primaries(&hybrid)[0].sectors, 100);
    }
}

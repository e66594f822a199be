//! A small FAT12/16/32 reader, for config drives written as VFAT: the
//! boot sector's BPB, cluster chains, and directories with long (VFAT)
//! names; reads one file by path.
//!
//! FAT12 and FAT16 are told apart from FAT32 by cluster count, as the
//! specification says; file systems made by `mkfs.vfat` follow it.

use std::io;

use crate::disk::ReadAt;

/// Largest file or directory this reader returns.
const MAX_BYTES: u64 = 1 << 20;

/// A FAT file system at some offset of a disk.
#[derive(Debug, Clone)]
pub struct Fat {
    base: u64,
    cluster_bytes: u64,
    /// Byte offset (from `base`) of the first FAT.
    fat_start: u64,
    /// Byte offset of cluster 2.
    data_start: u64,
    /// FAT12, 16 or 32.
    bits: u32,
    /// FAT12/16: the fixed root directory (offset, bytes); FAT32: root cluster.
    root: Root,
}

#[derive(Debug, Clone, Copy)]
enum Root {
    Fixed(u64, u64),
    Cluster(u64),
}

/// One directory entry.
#[derive(Debug, Clone)]
struct Entry {
    long: Option<String>,
    short: String,
    is_dir: bool,
    cluster: u64,
    size: u64,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Reads the BPB at `base`; `None` if it is not a FAT boot sector.
pub fn open(dev: &dyn ReadAt, base: u64) -> io::Result<Option<Fat>> {
    let mut b = [0u8; 512];
    dev.read_exact_at(&mut b, base)?;
    if b[510] != 0x55 || b[511] != 0xaa {
        return Ok(None);
    }
    let bps = le16(&b, 11);
    let spc = u64::from(b[13]);
    let reserved = le16(&b, 14);
    let fats = u64::from(b[16]);
    let root_entries = le16(&b, 17);
    let total = match le16(&b, 19) {
        0 => le32(&b, 32),
        n => n,
    };
    let fat_size = match le16(&b, 22) {
        0 => le32(&b, 36),
        n => n,
    };
    if !matches!(bps, 512 | 1024 | 2048 | 4096) || spc == 0 || fats == 0 || fat_size == 0 {
        return Ok(None);
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let first_data = reserved + fats * fat_size + root_sectors;
    let Some(clusters) = total.checked_sub(first_data).map(|d| d / spc) else {
        return Ok(None);
    };
    let bits = if clusters < 4085 {
        12
    } else if clusters < 65525 {
        16
    } else {
        32
    };
    let root = if bits == 32 {
        Root::Cluster(le32(&b, 44))
    } else {
        Root::Fixed((reserved + fats * fat_size) * bps, root_entries * 32)
    };
    Ok(Some(Fat {
        base,
        cluster_bytes: bps * spc,
        fat_start: reserved * bps,
        data_start: first_data * bps,
        bits,
        root,
    }))
}

impl Fat {
    /// The cluster after `c`, or `None` at the end of the chain.
    fn next(&self, dev: &dyn ReadAt, c: u64) -> io::Result<Option<u64>> {
        let mut b = [0u8; 4];
        let (v, eoc) = match self.bits {
            12 => {
                dev.read_exact_at(&mut b[..2], self.base + self.fat_start + c + c / 2)?;
                let v = le16(&b, 0);
                (if c % 2 == 1 { v >> 4 } else { v & 0xfff }, 0xff8)
            }
            16 => {
                dev.read_exact_at(&mut b[..2], self.base + self.fat_start + 2 * c)?;
                (le16(&b, 0), 0xfff8)
            }
            _ => {
                dev.read_exact_at(&mut b, self.base + self.fat_start + 4 * c)?;
                (le32(&b, 0) & 0x0fff_ffff, 0x0fff_fff8)
            }
        };
        Ok((2..eoc).contains(&v).then_some(v))
    }

    /// The bytes of a cluster chain from `first`, at most `limit`.
    fn read_chain(&self, dev: &dyn ReadAt, first: u64, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut c = Some(first).filter(|c| *c >= 2);
        while let Some(cl) = c {
            if out.len() as u64 >= limit.min(MAX_BYTES) {
                break;
            }
            let mut buf = vec![0u8; usize::try_from(self.cluster_bytes).unwrap_or(0)];
            dev.read_exact_at(
                &mut buf,
                self.base + self.data_start + (cl - 2) * self.cluster_bytes,
            )?;
            out.extend_from_slice(&buf);
            c = self.next(dev, cl)?;
        }
        out.truncate(usize::try_from(limit.min(MAX_BYTES)).unwrap_or(0));
        Ok(out)
    }

    fn read_dir(&self, dev: &dyn ReadAt, dir: Root) -> io::Result<Vec<Entry>> {
        let data = match dir {
            Root::Fixed(off, len) => {
                let mut b = vec![0u8; usize::try_from(len.min(MAX_BYTES)).unwrap_or(0)];
                dev.read_exact_at(&mut b, self.base + off)?;
                b
            }
            Root::Cluster(c) => self.read_chain(dev, c, MAX_BYTES)?,
        };
        let mut out = Vec::new();
        let mut long: Vec<(u8, Vec<u16>)> = Vec::new();
        for e in data.chunks_exact(32) {
            match e[0] {
                0 => break,
                0xe5 => {
                    long.clear();
                    continue;
                }
                _ => {}
            }
            let attr = e[11];
            if attr & 0x3f == 0x0f {
                let units: Vec<u16> = [(1usize, 5usize), (14, 6), (28, 2)]
                    .iter()
                    .flat_map(|&(at, n)| (0..n).map(move |i| at + 2 * i))
                    .map(|o| u16::from_le_bytes([e[o], e[o + 1]]))
                    .collect();
                long.push((e[0] & 0x1f, units));
                continue;
            }
            if attr & 0x08 != 0 {
                long.clear();
                continue; // the volume label
            }
            let name = String::from_utf8_lossy(&e[0..8]).trim_end().to_string();
            let ext = String::from_utf8_lossy(&e[8..11]).trim_end().to_string();
            let short = if ext.is_empty() {
                name
            } else {
                format!("{name}.{ext}")
            };
            let long_name = (!long.is_empty()).then(|| {
                long.sort_by_key(|(seq, _)| *seq);
                let units: Vec<u16> = long
                    .iter()
                    .flat_map(|(_, u)| u.iter().copied())
                    .take_while(|u| *u != 0 && *u != 0xffff)
                    .collect();
                String::from_utf16_lossy(&units)
            });
            long.clear();
            out.push(Entry {
                long: long_name,
                short,
                is_dir: attr & 0x10 != 0,
                cluster: (le16(e, 20) << 16) | le16(e, 26),
                size: le32(e, 28),
            });
        }
        Ok(out)
    }

    /// Reads the file at `path` (`/`-separated); `None` if it is not there.
    pub fn read_file(&self, dev: &dyn ReadAt, path: &str) -> io::Result<Option<Vec<u8>>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir = self.root;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entries = self.read_dir(dev, dir)?;
            let Some(e) = entries.into_iter().find(|e| {
                e.is_dir != last
                    && (e
                        .long
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(part))
                        || e.short.eq_ignore_ascii_case(part))
            }) else {
                return Ok(None);
            };
            if last {
                if e.size > MAX_BYTES {
                    return Err(io::Error::other(format!(
                        "{path} is {} bytes, more than {MAX_BYTES}",
                        e.size
                    )));
                }
                return self.read_chain(dev, e.cluster, e.size).map(Some);
            }
            dir = if e.cluster == 0 {
                self.root // ".." of a first-level directory
            } else {
                Root::Cluster(e.cluster)
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::process::Command;

    /// A VFAT config drive made by dosfstools and mtools, when installed.
    fn vfat_drive(fat_bits: &str, kib: &str, meta: &[u8]) -> Option<Vec<u8>> {
        let dir = std::env::temp_dir().join(format!(
            "testimage-init-fat{fat_bits}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("drive.img");
        std::fs::remove_file(&img).ok();
        let meta_path = dir.join("meta_data.json");
        std::fs::write(&meta_path, meta).unwrap();
        let mkfs = ["/usr/sbin/mkfs.vfat", "/sbin/mkfs.vfat"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let ok = |c: &mut Command| {
            c.env("MTOOLS_SKIP_CHECK", "1")
                .status()
                .is_ok_and(|s| s.success())
        };
        let made = ok(Command::new(mkfs)
            .args(["-F", fat_bits, "-n", "CONFIG-2", "-C"])
            .arg(&img)
            .arg(kib))
            && ok(Command::new("mmd")
                .arg("-i")
                .arg(&img)
                .args(["::/openstack", "::/openstack/latest"]))
            && ok(Command::new("mcopy")
                .arg("-i")
                .arg(&img)
                .arg(&meta_path)
                .arg("::/openstack/latest/meta_data.json"));
        let data = made.then(|| std::fs::read(&img).unwrap());
        std::fs::remove_dir_all(&dir).ok();
        data
    }

    use std::path::Path;

    #[test]
    fn reads_meta_data_from_fat12_16_and_32() {
        let meta = br#"{"uuid": "0c9e6f0e-1d4b-4a53-8f0e-6a2b1f5d7e21"}"#;
        for (bits, kib) in [("12", "2048"), ("16", "20480"), ("32", "40960")] {
            let Some(img) = vfat_drive(bits, kib, meta) else {
                eprintln!("SKIPPED FAT{bits}: mkfs.vfat or mtools not installed");
                return;
            };
            assert_eq!(
                crate::disk::config2_at(&img, 0),
                Some(crate::disk::Config2::Vfat)
            );
            let fat = open(&img, 0).unwrap().unwrap();
            assert_eq!(fat.bits.to_string(), bits);
            let data = fat
                .read_file(&img, "openstack/latest/meta_data.json")
                .unwrap();
            assert_eq!(data.as_deref(), Some(&meta[..]), "FAT{bits}");
            assert!(
                fat.read_file(&img, "openstack/latest/user_data")
                    .unwrap()
                    .is_none()
            );
        }
    }
}

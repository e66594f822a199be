//! A small ISO 9660 reader: volume descriptors, the Joliet and primary
//! directory trees (with Rock Ridge `NM` names when present), and reading
//! one file by path.
//!
//! Names are matched the way the images we meet write them: Joliet names
//! (`meta_data.json`), Rock Ridge names, and plain level-1 names with a
//! `;1` version and 8.3 mangling (`OPENSTAC`, `META_DAT.JSO;1`, as the
//! coordinator's writer produces them), all case-insensitively.

use std::io;

use crate::disk::ReadAt;

/// ISO 9660 logical sector size.
pub const SECTOR: u64 = 2048;
/// Largest file this reader returns.
const MAX_FILE: u64 = 1 << 20;
/// Largest directory it walks.
const MAX_DIR: u64 = 1 << 20;

/// An ISO 9660 file system found at some offset of a disk.
#[derive(Debug, Clone)]
pub struct Iso {
    /// Byte offset of the file system on the disk.
    pub base: u64,
    /// The primary volume ID, trimmed.
    pub volume_id: String,
    /// The primary root directory (extent, size).
    primary_root: (u64, u64),
    /// The Joliet root directory, when there is a Joliet descriptor.
    joliet_root: Option<(u64, u64)>,
}

/// One directory record.
#[derive(Debug, Clone)]
struct Record {
    extent: u64,
    size: u64,
    is_dir: bool,
    /// The recorded name, decoded, with `;N` and a trailing `.` removed.
    name: String,
    /// The Rock Ridge name, when present.
    rr_name: Option<String>,
}

fn u32_le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4).map_or(0, |s| {
        u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    })
}

/// Reads the volume descriptors at `base`; `None` if there is no ISO 9660
/// file system there.
pub fn open(dev: &dyn ReadAt, base: u64) -> io::Result<Option<Iso>> {
    let mut primary = None;
    let mut joliet = None;
    let mut volume_id = String::new();
    let mut vd = [0u8; SECTOR as usize];
    for n in 16..48u64 {
        dev.read_exact_at(&mut vd, base + n * SECTOR)?;
        if &vd[1..6] != b"CD001" {
            break;
        }
        let root = &vd[156..190];
        match vd[0] {
            1 if primary.is_none() => {
                primary = Some((u32_le(root, 2), u32_le(root, 10)));
                volume_id = String::from_utf8_lossy(&vd[40..72]).trim().to_string();
            }
            2 if matches!(&vd[88..91], b"%/@" | b"%/C" | b"%/E") => {
                joliet = Some((u32_le(root, 2), u32_le(root, 10)));
            }
            255 => break,
            _ => {}
        }
    }
    Ok(primary.map(|primary_root| Iso {
        base,
        volume_id,
        primary_root,
        joliet_root: joliet,
    }))
}

/// The ISO level-1 form of a name, as a writer that only knows 8.3 names
/// makes it: upper case, other characters as `_`, stem 8 and extension 3.
fn level1(name: &str, is_dir: bool) -> String {
    let clean = |s: &str, n: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .take(n)
            .collect()
    };
    match name.rsplit_once('.') {
        Some((stem, ext)) if !is_dir => format!("{}.{}", clean(stem, 8), clean(ext, 3)),
        _ => clean(name, 8),
    }
}

fn strip_version(name: &str) -> &str {
    let base = match name.rsplit_once(';') {
        Some((b, v)) if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => name,
    };
    base.strip_suffix('.').unwrap_or(base)
}

impl Record {
    fn matches(&self, want: &str, want_dir: bool) -> bool {
        if self.is_dir != want_dir {
            return false;
        }
        self.rr_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(want))
            || self.name.eq_ignore_ascii_case(want)
            || self.name.eq_ignore_ascii_case(&level1(want, want_dir))
    }
}

/// The Rock Ridge `NM` name in a record's system use area.
fn rock_ridge_name(su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    let mut i = 0;
    while i + 4 <= su.len() {
        let len = usize::from(su[i + 2]);
        if len < 4 || i + len > su.len() {
            break;
        }
        if &su[i..i + 2] == b"NM" && len >= 5 {
            let flags = su[i + 4];
            // Flags 2 and 4 are "." and "..": not names.
            if flags & 0x06 == 0 {
                name.extend_from_slice(&su[i + 5..i + len]);
                found = true;
            }
        }
        if &su[i..i + 2] == b"ST" {
            break;
        }
        i += len;
    }
    found.then(|| String::from_utf8_lossy(&name).into_owned())
}

fn parse_record(r: &[u8], joliet: bool) -> Option<Record> {
    let name_len = usize::from(*r.get(32)?);
    let raw = r.get(33..33 + name_len)?;
    if name_len == 1 && (raw[0] == 0 || raw[0] == 1) {
        return None; // "." and ".."
    }
    let name = if joliet {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    let su_start = 33 + name_len + (1 - name_len % 2);
    let rr_name = if joliet {
        None
    } else {
        r.get(su_start..).and_then(rock_ridge_name)
    };
    Some(Record {
        extent: u32_le(r, 2),
        size: u32_le(r, 10),
        is_dir: r[25] & 2 != 0,
        name: strip_version(&name).to_string(),
        rr_name,
    })
}

impl Iso {
    fn read_dir(&self, dev: &dyn ReadAt, dir: (u64, u64), joliet: bool) -> io::Result<Vec<Record>> {
        let size = dir.1.min(MAX_DIR);
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        dev.read_exact_at(&mut buf, self.base + dir.0 * SECTOR)?;
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < buf.len() {
            let len = usize::from(buf[at]);
            if len == 0 {
                // Records do not cross sectors: the rest of this one is padding.
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let Some(r) = buf.get(at..at + len) else {
                break;
            };
            if len >= 34 {
                out.extend(parse_record(r, joliet));
            }
            at += len;
        }
        Ok(out)
    }

    fn find_in(
        &self,
        dev: &dyn ReadAt,
        root: (u64, u64),
        joliet: bool,
        path: &str,
    ) -> io::Result<Option<Record>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir = root;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let records = self.read_dir(dev, dir, joliet)?;
            let Some(r) = records.into_iter().find(|r| r.matches(part, !last)) else {
                return Ok(None);
            };
            if last {
                return Ok(Some(r));
            }
            dir = (r.extent, r.size);
        }
        Ok(None)
    }

    /// Reads the file at `path` (`/`-separated, relative to the root),
    /// looking in the Joliet tree first, then the primary one. `None` if it
    /// is in neither.
    pub fn read_file(&self, dev: &dyn ReadAt, path: &str) -> io::Result<Option<Vec<u8>>> {
        let trees = self
            .joliet_root
            .map(|r| (r, true))
            .into_iter()
            .chain([(self.primary_root, false)]);
        for (root, joliet) in trees {
            if let Some(r) = self.find_in(dev, root, joliet, path)? {
                if r.size > MAX_FILE {
                    return Err(io::Error::other(format!(
                        "{path} is {} bytes, more than {MAX_FILE}",
                        r.size
                    )));
                }
                let mut buf = vec![0u8; usize::try_from(r.size).unwrap_or(0)];
                dev.read_exact_at(&mut buf, self.base + r.extent * SECTOR)?;
                return Ok(Some(buf));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn both32(v: u32) -> [u8; 8] {
        let mut b = [0; 8];
        b[..4].copy_from_slice(&v.to_le_bytes());
        b[4..].copy_from_slice(&v.to_be_bytes());
        b
    }

    fn record(name: &[u8], extent: u32, size: u32, dir: bool, su: &[u8]) -> Vec<u8> {
        let pad = 1 - name.len() % 2;
        let len = 33 + name.len() + pad + su.len();
        let len = len + len % 2;
        let mut r = vec![0u8; len];
        r[0] = len as u8;
        r[2..10].copy_from_slice(&both32(extent));
        r[10..18].copy_from_slice(&both32(size));
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r[33 + name.len() + pad..33 + name.len() + pad + su.len()].copy_from_slice(su);
        r
    }

    fn rr(name: &str) -> Vec<u8> {
        let mut e = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
        e.extend_from_slice(name.as_bytes());
        e
    }

    /// Which names a test ISO uses.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Names {
        /// Primary tree with the coordinator's 8.3 names, plus a Joliet tree.
        CoordinatorWithJoliet,
        /// Primary tree with 8.3 names only.
        Level1Only,
        /// Primary tree with mangled names and Rock Ridge real names.
        RockRidge,
    }

    /// A config drive ISO with `openstack/latest/meta_data.json`, laid out
    /// as sectors: 16 PVD, 17 SVD or terminator, 18 terminator, 20.. the
    /// directories (primary root, openstack, latest, then Joliet's), 30 the file.
    pub(crate) fn config_drive(label: &str, meta: &[u8], names: Names) -> Vec<u8> {
        let s = SECTOR as usize;
        let mut img = vec![0u8; 31 * s];
        let file_sector = 30u32;
        let size = s as u32;
        // (root, openstack, latest) extents per tree.
        let trees: Vec<([u32; 3], bool)> = if names == Names::CoordinatorWithJoliet {
            vec![([20, 21, 22], false), ([23, 24, 25], true)]
        } else {
            vec![([20, 21, 22], false)]
        };
        for (ext, joliet) in &trees {
            let name = |plain: &str, rr_real: &str| -> (Vec<u8>, Vec<u8>) {
                if *joliet {
                    let n = rr_real.encode_utf16().flat_map(u16::to_be_bytes).collect();
                    (n, vec![])
                } else if names == Names::RockRidge {
                    (plain.as_bytes().to_vec(), rr(rr_real))
                } else {
                    (plain.as_bytes().to_vec(), vec![])
                }
            };
            let dot = |e: u32| record(&[0], e, size, true, &[]);
            let dotdot = |e: u32| record(&[1], e, size, true, &[]);
            // The coordinator's writer cuts directory names to 8 characters too.
            let os_name = if names == Names::RockRidge {
                "OPENSTACK"
            } else {
                "OPENSTAC"
            };
            let (n_os, su_os) = name(os_name, "openstack");
            let (n_l, su_l) = name("LATEST", "latest");
            let (n_f, su_f) = name("META_DAT.JSO;1", "meta_data.json");
            let (n_n, su_n) = name("NETWORK_.JSO;1", "network_data.json");
            let dirs: [(u32, Vec<Vec<u8>>); 3] = [
                (
                    ext[0],
                    vec![
                        dot(ext[0]),
                        dotdot(ext[0]),
                        record(&n_os, ext[1], size, true, &su_os),
                    ],
                ),
                (
                    ext[1],
                    vec![
                        dot(ext[1]),
                        dotdot(ext[0]),
                        record(&n_l, ext[2], size, true, &su_l),
                    ],
                ),
                (
                    ext[2],
                    vec![
                        dot(ext[2]),
                        dotdot(ext[1]),
                        record(&n_f, file_sector, meta.len() as u32, false, &su_f),
                        record(&n_n, file_sector, 2, false, &su_n),
                    ],
                ),
            ];
            for (extent, recs) in dirs {
                let mut off = extent as usize * s;
                for r in recs {
                    img[off..off + r.len()].copy_from_slice(&r);
                    off += r.len();
                }
            }
        }
        let mut next = 16;
        for (ext, joliet) in &trees {
            let vd = &mut img[next * s..(next + 1) * s];
            vd[0] = if *joliet { 2 } else { 1 };
            vd[1..6].copy_from_slice(b"CD001");
            vd[6] = 1;
            let mut id = [b' '; 32];
            id[..label.len()].copy_from_slice(label.as_bytes());
            vd[40..72].copy_from_slice(&id);
            if *joliet {
                vd[88..91].copy_from_slice(b"%/E");
            }
            vd[156..190].copy_from_slice(&record(&[0], ext[0], size, true, &[]));
            next += 1;
        }
        img[next * s] = 255;
        img[next * s + 1..next * s + 6].copy_from_slice(b"CD001");
        img[file_sector as usize * s..file_sector as usize * s + meta.len()].copy_from_slice(meta);
        img
    }

    #[test]
    fn reads_meta_data_from_every_name_style() {
        let meta = br#"{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"}"#;
        for names in [
            Names::CoordinatorWithJoliet,
            Names::Level1Only,
            Names::RockRidge,
        ] {
            let img = config_drive("config-2", meta, names);
            let iso = open(&img, 0).unwrap().unwrap();
            assert_eq!(iso.volume_id, "config-2");
            let data = iso
                .read_file(&img, "openstack/latest/meta_data.json")
                .unwrap()
                .unwrap();
            assert_eq!(data, meta);
            assert!(
                iso.read_file(&img, "openstack/latest/user_data")
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn finds_an_iso_at_an_offset_only() {
        let img = config_drive("config-2", b"{}", Names::Level1Only);
        let mut disk = vec![0u8; 1 << 20];
        disk.extend_from_slice(&img);
        assert!(open(&disk, 0).unwrap().is_none());
        let iso = open(&disk, 1 << 20).unwrap().unwrap();
        assert_eq!(
            iso.read_file(&disk, "OPENSTACK/LATEST/META_DATA.JSON")
                .unwrap()
                .unwrap(),
            b"{}"
        );
    }

    #[test]
    fn names() {
        assert_eq!(level1("meta_data.json", false), "META_DAT.JSO");
        assert_eq!(level1("openstack", true), "OPENSTAC");
        assert_eq!(strip_version("META_DAT.JSO;1"), "META_DAT.JSO");
        assert_eq!(strip_version("USER_DAT.;1"), "USER_DAT");
        assert_eq!(
            rock_ridge_name(&rr("meta_data.json")).unwrap(),
            "meta_data.json"
        );
    }
}

//! Config drives built from a dict (`{"meta_data", "user_data",
//! "network_data", "vendor_data"}`, as metalsmith and openstacksdk pass
//! them): an ISO 9660 image with Joliet names, labelled `config-2`, holding
//! `openstack/latest/meta_data.json`, `user_data`, `network_data.json` and
//! `vendor_data.json`, then gzipped and base64-encoded — the form Nova sends
//! and the agent writes. Ironic shells out to genisoimage for this; the
//! writer here is small because the tree is: two directories, a few files.

use std::io::Write;

use base64::Engine;
use serde_json::{Map, Value};

const SECTOR: usize = 2048;

/// Config drive errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// A key of the dict has the wrong type.
    #[error("invalid config drive: {0}")]
    Invalid(String),
    /// Compression failed.
    #[error("compressing the config drive: {0}")]
    Io(#[from] std::io::Error),
}

/// The files of a config drive dict, paths relative to the drive's root.
pub fn files_of(
    dict: &Map<String, Value>,
    node_uuid: &str,
) -> Result<Vec<(String, Vec<u8>)>, ConfigDriveError> {
    if let Some(k) = dict
        .keys()
        .find(|k| !["meta_data", "user_data", "network_data", "vendor_data"].contains(&k.as_str()))
    {
        return Err(ConfigDriveError::Invalid(format!("unknown key {k}")));
    }
    let mut meta = match dict.get("meta_data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ConfigDriveError::Invalid(
                "meta_data must be an object".into(),
            ));
        }
    };
    meta.entry("uuid")
        .or_insert_with(|| Value::String(node_uuid.to_owned()));
    let json = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let mut files = vec![(
        "openstack/latest/meta_data.json".to_owned(),
        json(&Value::Object(meta)),
    )];
    match dict.get("user_data") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            files.push(("openstack/latest/user_data".into(), s.as_bytes().to_vec()))
        }
        Some(other) => files.push(("openstack/latest/user_data".into(), json(other))),
    }
    for (key, name) in [
        ("network_data", "network_data.json"),
        ("vendor_data", "vendor_data.json"),
    ] {
        match dict.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Object(_)) => files.push((format!("openstack/latest/{name}"), json(v))),
            Some(_) => {
                return Err(ConfigDriveError::Invalid(format!(
                    "{key} must be an object"
                )));
            }
        }
    }
    Ok(files)
}

/// Builds the drive and returns it gzipped and base64-encoded.
pub fn build_encoded(
    dict: &Map<String, Value>,
    node_uuid: &str,
) -> Result<String, ConfigDriveError> {
    let iso = build_iso(&files_of(dict, node_uuid)?, "config-2");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&iso)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gz.finish()?))
}

fn both32(v: u32) -> [u8; 8] {
    let mut b = [0; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both16(v: u16) -> [u8; 4] {
    let mut b = [0; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn sectors(bytes: usize) -> usize {
    bytes.div_ceil(SECTOR).max(1)
}

/// A directory entry on one tree: (name, is a directory, index of the dir or file).
type Entry = (Vec<u8>, bool, usize);

/// One directory of the tree.
struct Dir {
    path: String,
    parent: usize,
    subdirs: Vec<usize>,
    files: Vec<usize>,
    /// Extent and size of the primary and Joliet directory records.
    extent: [usize; 2],
    size: [usize; 2],
}

/// Names on the two trees: primary (ISO 9660 level 1, unique d-characters)
/// and Joliet (UCS-2 big-endian, the real name).
fn primary_name(name: &str, is_dir: bool, taken: &mut Vec<String>) -> Vec<u8> {
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
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !is_dir => (s, e),
        _ => (name, ""),
    };
    let mut stem = clean(stem, 8);
    let ext = clean(ext, 3);
    let mut n = 0;
    let mut full;
    loop {
        full = if is_dir {
            stem.clone()
        } else {
            format!("{stem}.{ext};1")
        };
        if !taken.contains(&full) {
            break;
        }
        let digit = char::from(b'0' + u8::try_from(n % 10).unwrap_or(0));
        stem = format!("{}{}", stem.chars().take(7).collect::<String>(), digit);
        n += 1;
    }
    taken.push(full.clone());
    full.into_bytes()
}

fn joliet_name(name: &str) -> Vec<u8> {
    name.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

const DATE: [u8; 7] = [120, 1, 1, 0, 0, 0, 0]; // 2020-01-01 00:00:00 UTC

fn dir_record(name: &[u8], extent: usize, size: usize, is_dir: bool) -> Vec<u8> {
    let len = 33 + name.len() + (1 - name.len() % 2);
    let mut r = vec![0u8; len];
    r[0] = u8::try_from(len).unwrap_or(u8::MAX);
    r[2..10].copy_from_slice(&both32(u32_of(extent)));
    r[10..18].copy_from_slice(&both32(u32_of(size)));
    r[18..25].copy_from_slice(&DATE);
    r[25] = if is_dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = u8::try_from(name.len()).unwrap_or(u8::MAX);
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

/// Builds an ISO 9660 image with a Joliet tree from `(path, bytes)` files.
#[allow(clippy::needless_range_loop)] // `tree` indexes several parallel tables
pub fn build_iso(files: &[(String, Vec<u8>)], label: &str) -> Vec<u8> {
    // The directory tree.
    let mut dirs = vec![Dir {
        path: String::new(),
        parent: 0,
        subdirs: vec![],
        files: vec![],
        extent: [0; 2],
        size: [0; 2],
    }];
    for (i, (path, _)) in files.iter().enumerate() {
        let parts: Vec<&str> = path.split('/').collect();
        let mut cur = 0;
        for depth in 0..parts.len() - 1 {
            let p = parts[..=depth].join("/");
            cur = match dirs.iter().position(|d| d.path == p) {
                Some(x) => x,
                None => {
                    dirs.push(Dir {
                        path: p,
                        parent: cur,
                        subdirs: vec![],
                        files: vec![],
                        extent: [0; 2],
                        size: [0; 2],
                    });
                    let new = dirs.len() - 1;
                    dirs[cur].subdirs.push(new);
                    new
                }
            };
        }
        dirs[cur].files.push(i);
    }
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    // Names per tree, and each directory's children sorted by name.
    let mut taken: Vec<Vec<String>> = dirs.iter().map(|_| Vec::new()).collect();
    let mut dir_names: Vec<[Vec<u8>; 2]> = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let name = base(&d.path);
        let prim = if i == 0 {
            vec![0]
        } else {
            primary_name(&name, true, &mut taken[d.parent])
        };
        let jol = if i == 0 { vec![0] } else { joliet_name(&name) };
        dir_names.push([prim, jol]);
    }
    let mut file_names: Vec<[Vec<u8>; 2]> = vec![[vec![], vec![]]; files.len()];
    for (di, d) in dirs.iter().enumerate() {
        for &f in &d.files {
            let name = base(&files[f].0);
            file_names[f] = [
                primary_name(&name, false, &mut taken[di]),
                joliet_name(&name),
            ];
        }
    }
    // Children records per directory and tree: (name, is_dir, index).
    let children = |di: usize, tree: usize| -> Vec<Entry> {
        let mut c: Vec<Entry> = dirs[di]
            .subdirs
            .iter()
            .map(|&s| (dir_names[s][tree].clone(), true, s))
            .chain(
                dirs[di]
                    .files
                    .iter()
                    .map(|&f| (file_names[f][tree].clone(), false, f)),
            )
            .collect();
        c.sort_by(|a, b| a.0.cmp(&b.0));
        c
    };
    let kids: Vec<[Vec<Entry>; 2]> = (0..dirs.len())
        .map(|di| [children(di, 0), children(di, 1)])
        .collect();
    // Path table order: breadth first, children by name.
    let mut order = vec![0usize];
    let mut i = 0;
    while i < order.len() {
        let mut subs: Vec<usize> = dirs[order[i]].subdirs.clone();
        subs.sort_by(|a, b| dir_names[*a][0].cmp(&dir_names[*b][0]));
        order.extend(subs);
        i += 1;
    }
    // Layout: 16 system sectors, PVD, SVD, terminator, 4 path tables, directories, files.
    let parents: Vec<usize> = dirs.iter().map(|d| d.parent).collect();
    let path_table = |tree: usize, big: bool, locs: &[usize]| -> Vec<u8> {
        let mut t = Vec::new();
        for &d in &order {
            let name = &dir_names[d][tree];
            let parent_no = order.iter().position(|x| *x == parents[d]).unwrap_or(0) + 1;
            t.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            t.push(0);
            let loc = u32_of(locs[d]);
            let par = u16::try_from(parent_no).unwrap_or(1);
            if big {
                t.extend_from_slice(&loc.to_be_bytes());
                t.extend_from_slice(&par.to_be_bytes());
            } else {
                t.extend_from_slice(&loc.to_le_bytes());
                t.extend_from_slice(&par.to_le_bytes());
            }
            t.extend_from_slice(name);
            if name.len() % 2 == 1 {
                t.push(0);
            }
        }
        t
    };
    let pt_len = path_table(0, false, &vec![0; dirs.len()]).len();
    let pt_len_j = path_table(1, false, &vec![0; dirs.len()]).len();
    let pt_sectors = sectors(pt_len.max(pt_len_j));
    let mut next = 19 + 4 * pt_sectors;
    for tree in 0..2 {
        for di in 0..dirs.len() {
            let mut size = 34 * 2;
            for (name, is_dir, _) in &kids[di][tree] {
                let rec = dir_record(name, 0, 0, *is_dir).len();
                if size % SECTOR + rec > SECTOR {
                    size += SECTOR - size % SECTOR;
                }
                size += rec;
            }
            let size = sectors(size) * SECTOR;
            dirs[di].extent[tree] = next;
            dirs[di].size[tree] = size;
            next += size / SECTOR;
        }
    }
    let mut file_extent = vec![0usize; files.len()];
    for (f, (_, data)) in files.iter().enumerate() {
        file_extent[f] = next;
        next += sectors(data.len());
    }
    let total = next;
    let mut img = vec![0u8; total * SECTOR];
    // Directories.
    for tree in 0..2 {
        for di in 0..dirs.len() {
            let d = &dirs[di];
            let mut recs = vec![
                dir_record(&[0], d.extent[tree], d.size[tree], true),
                dir_record(
                    &[1],
                    dirs[d.parent].extent[tree],
                    dirs[d.parent].size[tree],
                    true,
                ),
            ];
            for (name, is_dir, idx) in &kids[di][tree] {
                let idx = *idx;
                recs.push(if *is_dir {
                    dir_record(name, dirs[idx].extent[tree], dirs[idx].size[tree], true)
                } else {
                    dir_record(name, file_extent[idx], files[idx].1.len(), false)
                });
            }
            let mut off = d.extent[tree] * SECTOR;
            let start = off;
            for r in recs {
                if (off - start) % SECTOR + r.len() > SECTOR {
                    off += SECTOR - (off - start) % SECTOR;
                }
                img[off..off + r.len()].copy_from_slice(&r);
                off += r.len();
            }
        }
    }
    for (f, (_, data)) in files.iter().enumerate() {
        let off = file_extent[f] * SECTOR;
        img[off..off + data.len()].copy_from_slice(data);
    }
    // Path tables: L and M for the primary tree, then for Joliet.
    for (n, (tree, big)) in [(0, false), (0, true), (1, false), (1, true)]
        .into_iter()
        .enumerate()
    {
        let locs: Vec<usize> = dirs.iter().map(|d| d.extent[tree]).collect();
        let t = path_table(tree, big, &locs);
        let off = (19 + n * pt_sectors) * SECTOR;
        img[off..off + t.len()].copy_from_slice(&t);
    }
    // Volume descriptors.
    for (sector, tree) in [(16usize, 0usize), (17, 1)] {
        let mut vd = vec![0u8; SECTOR];
        vd[0] = if tree == 0 { 1 } else { 2 };
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        let text = |s: &str, n: usize| -> Vec<u8> {
            if tree == 0 {
                let mut b: Vec<u8> = s.bytes().take(n).collect();
                b.resize(n, b' ');
                b
            } else {
                let mut b: Vec<u8> = s
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .take(n)
                    .collect();
                while b.len() + 1 < n {
                    b.extend_from_slice(&[0, b' ']);
                }
                b.resize(n, 0);
                b
            }
        };
        vd[8..40].copy_from_slice(&text("LINUX", 32));
        vd[40..72].copy_from_slice(&text(label, 32));
        vd[80..88].copy_from_slice(&both32(u32_of(total)));
        if tree == 1 {
            vd[88..91].copy_from_slice(b"%/E");
        }
        vd[120..124].copy_from_slice(&both16(1));
        vd[124..128].copy_from_slice(&both16(1));
        vd[128..132].copy_from_slice(&both16(2048));
        let pt = if tree == 0 { pt_len } else { pt_len_j };
        vd[132..140].copy_from_slice(&both32(u32_of(pt)));
        let l = u32_of(19 + (2 * tree) * pt_sectors);
        let m = u32_of(19 + (2 * tree + 1) * pt_sectors);
        vd[140..144].copy_from_slice(&l.to_le_bytes());
        vd[148..152].copy_from_slice(&m.to_be_bytes());
        let root = dir_record(&[0], dirs[0].extent[tree], dirs[0].size[tree], true);
        vd[156..190].copy_from_slice(&root);
        for (a, b) in [(190, 318), (318, 446), (446, 574), (574, 702)] {
            vd[a..b].copy_from_slice(&text("", b - a));
        }
        for (a, b) in [(702, 739), (739, 776), (776, 813)] {
            vd[a..b].copy_from_slice(&text("", b - a));
        }
        for a in [813, 830, 864] {
            vd[a..a + 16].copy_from_slice(b"2020010100000000");
        }
        vd[847..863].copy_from_slice(b"0000000000000000");
        vd[881] = 1;
        img[sector * SECTOR..(sector + 1) * SECTOR].copy_from_slice(&vd);
    }
    let term = 18 * SECTOR;
    img[term] = 255;
    img[term + 1..term + 6].copy_from_slice(b"CD001");
    img[term + 6] = 1;
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_sane() {
        let files = vec![
            ("openstack/latest/meta_data.json".to_owned(), b"{}".to_vec()),
            (
                "openstack/latest/vendor_data.json".to_owned(),
                b"{}".to_vec(),
            ),
            (
                "openstack/latest/vendor_data2.json".to_owned(),
                b"{}".to_vec(),
            ),
        ];
        let iso = build_iso(&files, "config-2");
        assert_eq!(iso.len() % SECTOR, 0);
        assert_eq!(&iso[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&iso[16 * SECTOR + 40..16 * SECTOR + 48], b"config-2");
        assert_eq!(iso[17 * SECTOR], 2);
        assert_eq!(iso[18 * SECTOR], 255);
        let total = u32::from_le_bytes(iso[16 * SECTOR + 80..16 * SECTOR + 84].try_into().unwrap());
        assert_eq!(total as usize * SECTOR, iso.len());
        let mut taken = Vec::new();
        let a = primary_name("vendor_data.json", false, &mut taken);
        let b = primary_name("vendor_data2.json", false, &mut taken);
        assert_ne!(a, b);
    }

    #[test]
    fn dict_becomes_files() {
        let dict: Map<String, Value> = serde_json::from_str(
            r##"{"meta_data": {"hostname": "h"}, "user_data": "#!/bin/sh\n", "network_data": {"links": []}}"##,
        )
        .unwrap();
        let files = files_of(&dict, "node-1").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "openstack/latest/meta_data.json",
                "openstack/latest/user_data",
                "openstack/latest/network_data.json"
            ]
        );
        assert!(String::from_utf8_lossy(&files[0].1).contains("\"uuid\":\"node-1\""));
        assert!(files_of(&serde_json::from_str(r#"{"bogus": 1}"#).unwrap(), "n").is_err());
    }
}

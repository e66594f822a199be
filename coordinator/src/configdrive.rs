//! Config drives built from a dict (`{"meta_data", "user_data",
//! "network_data", "vendor_data"}`, as metalsmith and openstacksdk pass
//! them), the way Ironic builds them (`ironic/conductor/configdrive_utils.py`
//! and openstacksdk's `baremetal/configdrive.py`): an ISO 9660 image labelled
//! `config-2` holding `openstack/{2012-08-10,latest}/meta_data.json` and,
//! when given and not empty, `user_data`, `network_data.json` and
//! `vendor_data2.json`; then gzipped and base64-encoded, the form Nova sends
//! and the agent writes. Ironic shells out to genisoimage (`-J -r`); the
//! writer here is small because the tree is: three directories, a few files.
//! It writes Rock Ridge (real names, files 0444 and directories 0555, as
//! `genisoimage -r` does) and Joliet, and stamps each drive with its build
//! time, which blkid reports as the file system's UUID.

use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use serde_json::{Map, Value};
use time::OffsetDateTime;

const SECTOR: usize = 2048;

/// The keys of a config drive dict (Ironic's `_CONFIG_DRIVE_SCHEMA`).
pub const KEYS: [&str; 4] = ["meta_data", "network_data", "user_data", "vendor_data"];

/// The metadata versions the files are written under, as openstacksdk's
/// builder does: cloud-init reads the newest version it knows
/// (`2012-08-10` here) and `latest` only when it knows none.
pub const VERSIONS: [&str; 2] = ["2012-08-10", "latest"];

/// Config drive errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// A key of the dict is unknown or has the wrong type.
    #[error("invalid config drive: {0}")]
    Invalid(String),
    /// Compression failed.
    #[error("compressing the config drive: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks a config drive dict as Ironic's API does (`_CONFIG_DRIVE_SCHEMA`
/// in `ironic/api/controllers/v1/utils.py`): no keys but [`KEYS`];
/// `meta_data`, `network_data` and `vendor_data` are objects (`null` is
/// refused); `user_data` is a string, an object, an array or `null`.
pub fn validate(dict: &Map<String, Value>) -> Result<(), ConfigDriveError> {
    let mut keys: Vec<&String> = dict.keys().collect();
    keys.sort();
    for k in keys {
        match (k.as_str(), &dict[k]) {
            ("meta_data" | "network_data" | "vendor_data", Value::Object(_))
            | ("user_data", Value::String(_) | Value::Object(_) | Value::Array(_) | Value::Null) => {
            }
            ("meta_data" | "network_data" | "vendor_data", v) => {
                return Err(ConfigDriveError::Invalid(format!(
                    "{k} must be an object, not {}",
                    type_name(v)
                )));
            }
            ("user_data", v) => {
                return Err(ConfigDriveError::Invalid(format!(
                    "user_data must be a string, an object, an array or null, not {}",
                    type_name(v)
                )));
            }
            _ => {
                return Err(ConfigDriveError::Invalid(format!(
                    "unknown key {k}; the keys are {}",
                    KEYS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The files of a config drive dict, paths relative to the drive's root,
/// as Ironic's builder makes them: `meta_data.uuid` defaults to the node's
/// UUID and `meta_data.name` to its name (when it has one); `user_data` is
/// written as given when a string, as JSON when an object or an array, and
/// not at all when `null` or empty; `network_data` and `vendor_data`
/// (`vendor_data2.json`) are not written when absent or empty, so that
/// cloud-init falls back to DHCP rather than applying an empty network
/// configuration. `null` counts as absent for every key (a stored dict is
/// built as leniently as Ironic's builder; the API refuses what its schema
/// refuses, see [`validate`]).
pub fn files_of(
    dict: &Map<String, Value>,
    node_uuid: &str,
    node_name: Option<&str>,
) -> Result<Vec<(String, Vec<u8>)>, ConfigDriveError> {
    if let Some(k) = dict.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ConfigDriveError::Invalid(format!("unknown key {k}")));
    }
    let object = |key: &str| -> Result<Option<Map<String, Value>>, ConfigDriveError> {
        match dict.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(v) => Err(ConfigDriveError::Invalid(format!(
                "{key} must be an object, not {}",
                type_name(v)
            ))),
        }
    };
    let mut meta = object("meta_data")?.unwrap_or_default();
    meta.entry("uuid")
        .or_insert_with(|| Value::String(node_uuid.to_owned()));
    if let Some(name) = node_name.filter(|n| !n.is_empty()) {
        meta.entry("name")
            .or_insert_with(|| Value::String(name.to_owned()));
    }
    let json = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
    let user = match dict.get("user_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(v @ (Value::Object(_) | Value::Array(_))) => Some(json(v.clone())),
        Some(v) => {
            return Err(ConfigDriveError::Invalid(format!(
                "user_data must be a string, an object or an array, not {}",
                type_name(v)
            )));
        }
    };
    let mut one = vec![("meta_data.json", json(Value::Object(meta)))];
    for (key, name) in [
        ("network_data", "network_data.json"),
        ("vendor_data", "vendor_data2.json"),
    ] {
        if let Some(m) = object(key)?.filter(|m| !m.is_empty()) {
            one.push((name, json(Value::Object(m))));
        }
    }
    if let Some(u) = user {
        one.push(("user_data", u));
    }
    Ok(VERSIONS
        .iter()
        .flat_map(|v| {
            one.iter()
                .map(move |(name, data)| (format!("openstack/{v}/{name}"), data.clone()))
        })
        .collect())
}

/// The time stamp of a new drive: now, to the centisecond, but always
/// later than the previous drive built by this process, so that two drives
/// never share a volume date (blkid's UUID of an ISO 9660 file system).
fn build_time() -> OffsetDateTime {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = OffsetDateTime::now_utc();
    let now_cs = i64::try_from(now.unix_timestamp_nanos() / 10_000_000).unwrap_or(0);
    let next = |last: i64| now_cs.max(last.saturating_add(1));
    let cs = match LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| Some(next(l))) {
        Ok(prev) | Err(prev) => next(prev),
    };
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(cs) * 10_000_000).unwrap_or(now)
}

/// Builds the drive and returns it gzipped and base64-encoded.
/// `node_uuid` and `node_name` are the defaults of `meta_data.uuid` and
/// `meta_data.name` ([`files_of`]).
pub fn build_encoded(
    dict: &Map<String, Value>,
    node_uuid: &str,
    node_name: Option<&str>,
) -> Result<String, ConfigDriveError> {
    let iso = build_iso(
        &files_of(dict, node_uuid, node_name)?,
        "config-2",
        build_time(),
    );
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
/// and Joliet (UCS-2 big-endian, the real name, at most 64 characters).
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
    name.encode_utf16()
        .take(64)
        .flat_map(u16::to_be_bytes)
        .collect()
}

/// The 7-byte date of directory records (ECMA-119 9.1.5), in UTC.
fn record_date(t: OffsetDateTime) -> [u8; 7] {
    [
        u8::try_from(t.year() - 1900).unwrap_or(0),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        0,
    ]
}

/// The 17-byte date of volume descriptors (ECMA-119 8.4.26.1): 16 digits
/// down to the hundredth of a second, then the offset from UTC (0).
fn volume_date(t: OffsetDateTime) -> [u8; 17] {
    let digits = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:02}",
        t.year().clamp(0, 9999),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond() / 10
    );
    let mut d = [0u8; 17];
    d[..16].copy_from_slice(&digits.as_bytes()[..16]);
    d
}

/// Rock Ridge (RRIP 1.09, identified as `RRIP_1991A`, as genisoimage and
/// mkisofs write it) on the primary tree: System Use Sharing Protocol
/// entries for the System Use field of directory records.
mod rock_ridge {
    use super::both32;

    /// `-r--r--r--` regular files.
    pub const FILE_MODE: u32 = 0o100_444;
    /// `dr-xr-xr-x` directories.
    pub const DIR_MODE: u32 = 0o040_555;
    /// `RR` flags: PX recorded.
    pub const HAS_PX: u8 = 0x01;
    /// `RR` flags: NM recorded.
    pub const HAS_NM: u8 = 0x08;
    /// Longest name recorded in one `NM` entry here.
    pub const MAX_NAME: usize = 180;

    fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
        let mut e = vec![
            sig[0],
            sig[1],
            u8::try_from(4 + body.len()).unwrap_or(u8::MAX),
            1,
        ];
        e.extend_from_slice(body);
        e
    }

    /// `SP`: SUSP is in use, no bytes skipped (first entry of the root's `.`).
    pub fn sp() -> Vec<u8> {
        entry(b"SP", &[0xBE, 0xEF, 0])
    }

    /// `RR` (RRIP 1.09): which Rock Ridge entries follow.
    pub fn rr(flags: u8) -> Vec<u8> {
        entry(b"RR", &[flags])
    }

    /// `PX`: mode, links, owner and group root (RRIP 1.09: 36 bytes).
    pub fn px(mode: u32, links: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(32);
        for v in [mode, links, 0, 0] {
            b.extend_from_slice(&both32(v));
        }
        entry(b"PX", &b)
    }

    /// `NM`: the real name.
    pub fn nm(name: &str) -> Vec<u8> {
        let mut b = vec![0];
        b.extend(name.bytes().take(MAX_NAME));
        entry(b"NM", &b)
    }

    /// `CE`: the rest of the System Use area at `offset` of sector `extent`.
    pub fn ce(extent: u32, offset: u32, len: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        for v in [extent, offset, len] {
            b.extend_from_slice(&both32(v));
        }
        entry(b"CE", &b)
    }

    /// `ER`: the extension in use, with RRIP 1.09's identifier, descriptor
    /// and source texts (237 bytes: it goes to a continuation area).
    pub fn er() -> Vec<u8> {
        const ID: &[u8] = b"RRIP_1991A";
        const DES: &[u8] =
            b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
        const SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
        let len = |b: &[u8]| u8::try_from(b.len()).unwrap_or(u8::MAX);
        let mut b = vec![len(ID), len(DES), len(SRC), 1];
        b.extend_from_slice(ID);
        b.extend_from_slice(DES);
        b.extend_from_slice(SRC);
        entry(b"ER", &b)
    }
}

/// A directory record (ECMA-119 9.1) with a System Use field; the record's
/// length is kept even.
fn dir_record(
    name: &[u8],
    extent: usize,
    size: usize,
    is_dir: bool,
    date: [u8; 7],
    system_use: &[u8],
) -> Vec<u8> {
    let su_at = 33 + name.len() + (1 - name.len() % 2);
    let len = su_at + system_use.len() + (su_at + system_use.len()) % 2;
    let mut r = vec![0u8; len];
    r[0] = u8::try_from(len).unwrap_or(u8::MAX);
    r[2..10].copy_from_slice(&both32(u32_of(extent)));
    r[10..18].copy_from_slice(&both32(u32_of(size)));
    r[18..25].copy_from_slice(&date);
    r[25] = if is_dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = u8::try_from(name.len()).unwrap_or(u8::MAX);
    r[33..33 + name.len()].copy_from_slice(name);
    r[su_at..su_at + system_use.len()].copy_from_slice(system_use);
    r
}

/// The laid-out tree: directories, names and where things go.
struct Layout<'a> {
    files: &'a [(String, Vec<u8>)],
    dirs: Vec<Dir>,
    /// Children of each directory per tree, sorted by recorded name.
    kids: Vec<[Vec<Entry>; 2]>,
    /// Real names (Rock Ridge `NM`) of directories and files.
    dir_real: Vec<String>,
    file_real: Vec<String>,
    file_extent: Vec<usize>,
    date: [u8; 7],
    /// Sector of the continuation area holding the `ER` entry.
    ce_sector: usize,
}

impl Layout<'_> {
    /// POSIX link count: a directory's `.`, its entry in the parent, and
    /// each subdirectory's `..`.
    fn links(&self, di: usize) -> u32 {
        u32_of(2 + self.dirs[di].subdirs.len())
    }

    /// The records of directory `di` on `tree` (0 primary with Rock Ridge,
    /// 1 Joliet), `.` and `..` first.
    fn records(&self, di: usize, tree: usize) -> Vec<Vec<u8>> {
        use rock_ridge as rr;
        let d = &self.dirs[di];
        let p = &self.dirs[d.parent];
        let primary = tree == 0;
        let su =
            |parts: Vec<Vec<u8>>| -> Vec<u8> { if primary { parts.concat() } else { Vec::new() } };
        let mut dot = Vec::new();
        if di == 0 {
            dot.push(rr::sp());
        }
        dot.push(rr::rr(rr::HAS_PX));
        dot.push(rr::px(rr::DIR_MODE, self.links(di)));
        if di == 0 {
            dot.push(rr::ce(u32_of(self.ce_sector), 0, u32_of(rr::er().len())));
        }
        let mut recs = vec![
            dir_record(
                &[0],
                d.extent[tree],
                d.size[tree],
                true,
                self.date,
                &su(dot),
            ),
            dir_record(
                &[1],
                p.extent[tree],
                p.size[tree],
                true,
                self.date,
                &su(vec![
                    rr::rr(rr::HAS_PX),
                    rr::px(rr::DIR_MODE, self.links(d.parent)),
                ]),
            ),
        ];
        for (name, is_dir, idx) in &self.kids[di][tree] {
            let idx = *idx;
            let (extent, size, mode, links, real) = if *is_dir {
                let s = &self.dirs[idx];
                (
                    s.extent[tree],
                    s.size[tree],
                    rr::DIR_MODE,
                    self.links(idx),
                    &self.dir_real[idx],
                )
            } else {
                (
                    self.file_extent[idx],
                    self.files[idx].1.len(),
                    rr::FILE_MODE,
                    1,
                    &self.file_real[idx],
                )
            };
            let system_use = su(vec![
                rr::rr(rr::HAS_PX | rr::HAS_NM),
                rr::px(mode, links),
                rr::nm(real),
            ]);
            recs.push(dir_record(
                name,
                extent,
                size,
                *is_dir,
                self.date,
                &system_use,
            ));
        }
        recs
    }
}

/// Packs records into sectors (a record never crosses a sector boundary);
/// returns their offsets from the start and the whole size in bytes.
fn pack(recs: &[Vec<u8>]) -> (Vec<usize>, usize) {
    let mut at = Vec::with_capacity(recs.len());
    let mut off = 0;
    for r in recs {
        if off % SECTOR + r.len() > SECTOR {
            off += SECTOR - off % SECTOR;
        }
        at.push(off);
        off += r.len();
    }
    (at, sectors(off) * SECTOR)
}

/// Builds an ISO 9660 image from `(path, bytes)` files: a primary tree with
/// level-1 names and Rock Ridge (real names up to 180 bytes, files 0444,
/// directories 0555, owner root), a Joliet tree (names up to 64
/// characters), volume ID `label`, and `when` as the volume's creation and
/// modification date (blkid's UUID) and every record's date.
pub fn build_iso(files: &[(String, Vec<u8>)], label: &str, when: OffsetDateTime) -> Vec<u8> {
    // The directory tree.
    let new_dir = |path: String, parent: usize| Dir {
        path,
        parent,
        subdirs: vec![],
        files: vec![],
        extent: [0; 2],
        size: [0; 2],
    };
    let mut dirs = vec![new_dir(String::new(), 0)];
    for (i, (path, _)) in files.iter().enumerate() {
        let parts: Vec<&str> = path.split('/').collect();
        let mut cur = 0;
        for depth in 0..parts.len() - 1 {
            let p = parts[..=depth].join("/");
            cur = match dirs.iter().position(|d| d.path == p) {
                Some(x) => x,
                None => {
                    dirs.push(new_dir(p, cur));
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
    // Layout: 16 system sectors, PVD, SVD, terminator, 4 path tables, the
    // Rock Ridge continuation area, directories, files.
    let pt_len = path_table(0, false, &vec![0; dirs.len()]).len();
    let pt_len_j = path_table(1, false, &vec![0; dirs.len()]).len();
    let pt_sectors = sectors(pt_len.max(pt_len_j));
    let ce_sector = 19 + 4 * pt_sectors;
    let mut layout = Layout {
        files,
        dir_real: dirs.iter().map(|d| base(&d.path)).collect(),
        file_real: files.iter().map(|(p, _)| base(p)).collect(),
        dirs,
        kids,
        file_extent: vec![0; files.len()],
        date: record_date(when),
        ce_sector,
    };
    // Sizes do not depend on extents: lay the directories out, then the files.
    let mut next = ce_sector + 1;
    for tree in 0..2 {
        for di in 0..layout.dirs.len() {
            let (_, size) = pack(&layout.records(di, tree));
            layout.dirs[di].extent[tree] = next;
            layout.dirs[di].size[tree] = size;
            next += size / SECTOR;
        }
    }
    for (f, (_, data)) in files.iter().enumerate() {
        layout.file_extent[f] = next;
        next += sectors(data.len());
    }
    let total = next;
    let mut img = vec![0u8; total * SECTOR];
    // Directories.
    for tree in 0..2 {
        for di in 0..layout.dirs.len() {
            let recs = layout.records(di, tree);
            let (at, _) = pack(&recs);
            let start = layout.dirs[di].extent[tree] * SECTOR;
            for (r, off) in recs.iter().zip(at) {
                img[start + off..start + off + r.len()].copy_from_slice(r);
            }
        }
    }
    let er = rock_ridge::er();
    img[ce_sector * SECTOR..ce_sector * SECTOR + er.len()].copy_from_slice(&er);
    for (f, (_, data)) in files.iter().enumerate() {
        let off = layout.file_extent[f] * SECTOR;
        img[off..off + data.len()].copy_from_slice(data);
    }
    // Path tables: L and M for the primary tree, then for Joliet.
    for (n, (tree, big)) in [(0, false), (0, true), (1, false), (1, true)]
        .into_iter()
        .enumerate()
    {
        let locs: Vec<usize> = layout.dirs.iter().map(|d| d.extent[tree]).collect();
        let t = path_table(tree, big, &locs);
        let off = (19 + n * pt_sectors) * SECTOR;
        img[off..off + t.len()].copy_from_slice(&t);
    }
    // Volume descriptors.
    let root = &layout.dirs[0];
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
        // The root record in a descriptor is 34 bytes, without System Use.
        let root_rec = dir_record(
            &[0],
            root.extent[tree],
            root.size[tree],
            true,
            layout.date,
            &[],
        );
        vd[156..190].copy_from_slice(&root_rec);
        for (a, b) in [(190, 318), (318, 446), (446, 574), (574, 702)] {
            vd[a..b].copy_from_slice(&text("", b - a));
        }
        for (a, b) in [(702, 739), (739, 776), (776, 813)] {
            vd[a..b].copy_from_slice(&text("", b - a));
        }
        // Created and modified: the build time; expiration and effective
        // dates not specified (all digits zero).
        let date = volume_date(when);
        vd[813..830].copy_from_slice(&date);
        vd[830..847].copy_from_slice(&date);
        vd[847..863].copy_from_slice(b"0000000000000000");
        vd[864..880].copy_from_slice(b"0000000000000000");
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

    fn dict(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

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
        let when = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let iso = build_iso(&files, "config-2", when);
        assert_eq!(iso.len() % SECTOR, 0);
        assert_eq!(&iso[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&iso[16 * SECTOR + 40..16 * SECTOR + 48], b"config-2");
        assert_eq!(
            &iso[16 * SECTOR + 813..16 * SECTOR + 829],
            b"2023111422132000"
        );
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
    fn build_times_differ() {
        let a = build_time();
        let b = build_time();
        assert!(b > a);
        assert_ne!(volume_date(a), volume_date(b));
    }

    #[test]
    fn dict_becomes_files() {
        let d = dict(
            r##"{"meta_data": {"hostname": "h"}, "user_data": "#!/bin/sh\n", "network_data": {"links": []}, "vendor_data": {"v": 1}}"##,
        );
        let files = files_of(&d, "node-1", Some("n1")).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let mut want = Vec::new();
        for v in ["2012-08-10", "latest"] {
            for f in [
                "meta_data.json",
                "network_data.json",
                "vendor_data2.json",
                "user_data",
            ] {
                want.push(format!("openstack/{v}/{f}"));
            }
        }
        assert_eq!(names, want);
        let meta: Value = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(meta["uuid"], "node-1");
        assert_eq!(meta["name"], "n1");
        assert_eq!(meta["hostname"], "h");
        assert!(files_of(&dict(r#"{"bogus": 1}"#), "n", None).is_err());
    }

    #[test]
    fn empty_sections_are_not_written() {
        for d in [
            r#"{}"#,
            r#"{"meta_data": null, "network_data": {}, "vendor_data": {}, "user_data": ""}"#,
            r#"{"network_data": null, "vendor_data": null, "user_data": null}"#,
        ] {
            let files = files_of(&dict(d), "node-1", None).unwrap();
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "openstack/2012-08-10/meta_data.json",
                    "openstack/latest/meta_data.json"
                ],
                "{d}"
            );
            assert_eq!(files[0].1, br#"{"uuid":"node-1"}"#);
        }
        // As Ironic: user_data given as an object or array is JSON, even empty.
        let files = files_of(&dict(r#"{"user_data": {}}"#), "n", Some("")).unwrap();
        assert_eq!(
            files[1],
            ("openstack/2012-08-10/user_data".into(), b"{}".to_vec())
        );
        // The caller's uuid and name win.
        let files = files_of(
            &dict(r#"{"meta_data": {"uuid": "i", "name": "x"}}"#),
            "n",
            Some("node"),
        )
        .unwrap();
        assert_eq!(files[0].1, br#"{"name":"x","uuid":"i"}"#);
    }

    #[test]
    fn validation_follows_ironics_schema() {
        for ok in [
            r#"{}"#,
            r#"{"meta_data": {}, "network_data": {}, "vendor_data": {}, "user_data": null}"#,
            r#"{"user_data": "x"}"#,
            r#"{"user_data": {"a": 1}}"#,
            r#"{"user_data": [1]}"#,
        ] {
            assert!(validate(&dict(ok)).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"bogus": 1}"#,
            r#"{"meta_data": null}"#,
            r#"{"meta_data": "x"}"#,
            r#"{"meta_data": []}"#,
            r#"{"network_data": null}"#,
            r#"{"network_data": [1]}"#,
            r#"{"vendor_data": "x"}"#,
            r#"{"user_data": 1}"#,
            r#"{"user_data": true}"#,
        ] {
            assert!(validate(&dict(bad)).is_err(), "{bad}");
        }
    }
}

//! `ingot-initramfs` has a cpio writer and no reader (the kernel reads the
//! archive). The target builds an archive from fuzzer-chosen entries and
//! reads it back the way the kernel's initramfs unpacker does (newc headers,
//! NUL-terminated names, `TRAILER!!!` ends the archive): every entry the
//! writer accepted must come back as it was added.

use ingot_initramfs::cpio::{Archive, Entry, EntryKind};

/// Entries from `data`: records of a kind byte, permissions (`u16` LE), a
/// path (length byte and bytes, lossy UTF-8) and data (length byte and
/// bytes: the file's contents, the symlink's target, or a device's major
/// and minor bytes).
fn entries(mut data: &[u8]) -> Vec<(String, u32, EntryKind)> {
    let mut out = Vec::new();
    let take = |n: usize, data: &mut &[u8]| -> Option<Vec<u8>> {
        let n = n.min(data.len());
        let (head, rest) = data.split_at(n);
        *data = rest;
        Some(head.to_vec())
    };
    while let Some((&kind, rest)) = data.split_first() {
        data = rest;
        let Some(perm) = take(2, &mut data) else {
            break;
        };
        let perm = u32::from(u16::from_le_bytes([
            perm.first().copied().unwrap_or(0),
            perm.get(1).copied().unwrap_or(0),
        ]));
        let path_len = take(1, &mut data).and_then(|b| b.first().copied());
        let path = take(usize::from(path_len.unwrap_or(0)), &mut data).unwrap_or_default();
        let data_len = take(1, &mut data).and_then(|b| b.first().copied());
        let bytes = take(usize::from(data_len.unwrap_or(0)), &mut data).unwrap_or_default();
        let kind = match kind % 4 {
            0 => EntryKind::Dir,
            1 => EntryKind::File(bytes),
            2 => EntryKind::Symlink(String::from_utf8_lossy(&bytes).into_owned()),
            _ => EntryKind::CharDev(
                u32::from(bytes.first().copied().unwrap_or(0)),
                u32::from(bytes.get(1).copied().unwrap_or(0)),
            ),
        };
        out.push((String::from_utf8_lossy(&path).into_owned(), perm, kind));
    }
    out
}

/// One header and its data as the kernel reads them.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    name: Vec<u8>,
    mode: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

fn hex_field(h: &[u8], i: usize) -> u32 {
    let f = &h[6 + 8 * i..6 + 8 * (i + 1)];
    let s = std::str::from_utf8(f).unwrap_or("");
    u32::from_str_radix(s, 16).unwrap_or_else(|_| panic!("header field {i} is not hex: {f:?}"))
}

/// Reads a newc archive as the kernel does: up to `TRAILER!!!`.
fn read_archive(mut a: &[u8]) -> Vec<Read> {
    let total = a.len();
    let mut out = Vec::new();
    let pad = |pos: usize| (4 - pos % 4) % 4;
    loop {
        assert!(a.len() >= 110, "truncated header");
        let (h, rest) = a.split_at(110);
        assert_eq!(&h[..6], b"070701", "bad magic");
        let mode = hex_field(h, 1);
        let filesize = hex_field(h, 6) as usize;
        let rdev = (hex_field(h, 9), hex_field(h, 10));
        let namesize = hex_field(h, 11) as usize;
        assert!(namesize >= 1 && rest.len() >= namesize, "bad name size");
        // The kernel takes the name up to its first NUL.
        let raw = &rest[..namesize];
        let name = raw.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
        let mut pos = total - rest.len() + namesize;
        let rest = &rest[namesize + pad(pos)..];
        pos += pad(pos);
        if name == b"TRAILER!!!" {
            assert!(rest.is_empty(), "bytes after the trailer");
            return out;
        }
        assert!(rest.len() >= filesize, "truncated data");
        let data = rest[..filesize].to_vec();
        pos += filesize;
        a = &rest[filesize + pad(pos)..];
        out.push(Read {
            name,
            mode,
            rdev,
            data,
        });
    }
}

/// The entry point (see the module documentation).
pub fn round_trip(data: &[u8]) {
    let mut archive = Archive::new();
    for (path, perm, kind) in entries(data) {
        let _ = archive.add(&path, perm, kind);
    }
    let mut bytes = Vec::new();
    let written = archive.write_to(&mut bytes, 0x5eed);
    assert!(
        matches!(written, Ok(n) if n == bytes.len() as u64),
        "write_to: {written:?}"
    );
    let read = read_archive(&bytes);
    let want: Vec<Read> = archive
        .entries()
        .map(|(path, Entry { perm, kind })| {
            let (ty, data, rdev) = match kind {
                EntryKind::Dir => (0o040000, Vec::new(), (0, 0)),
                EntryKind::File(d) => (0o100000, d.clone(), (0, 0)),
                EntryKind::Symlink(t) => (0o120000, t.as_bytes().to_vec(), (0, 0)),
                EntryKind::CharDev(ma, mi) => (0o020000, Vec::new(), (*ma, *mi)),
            };
            Read {
                name: path.as_bytes().to_vec(),
                mode: ty | perm,
                rdev,
                data,
            }
        })
        .collect();
    assert_eq!(read, want, "the archive does not read back as written");
    let all: std::collections::BTreeMap<&String, &Entry> = archive.entries().collect();
    for (path, e) in &all {
        // Permission bits beyond 0o7777 would change the entry's type.
        assert!(
            e.perm & !0o7777 == 0,
            "{path:?}: permissions {:o} accepted",
            e.perm
        );
        // The kernel reads names and link targets as C strings.
        let target_nul = matches!(&e.kind, EntryKind::Symlink(t) if t.contains('\0'));
        assert!(
            !path.contains('\0') && !target_nul,
            "{path:?}: a NUL byte in the name or link target accepted"
        );
        // The unpacker creates each entry inside its parent: a directory.
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(
                all.get(&parent.to_owned())
                    .is_some_and(|p| p.kind == EntryKind::Dir),
                "{path:?}: its parent {parent:?} is not a directory in the archive"
            );
        }
    }
}

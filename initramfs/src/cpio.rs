//! A reproducible cpio "newc" archive writer (the format the kernel unpacks
//! as an initramfs).
//!
//! Entries are written in path order with inode numbers assigned in that
//! order, owner 0:0 and one fixed mtime, so the same inputs always give the
//! same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// One archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits (e.g. 0o755).
    pub perm: u32,
    /// Type and contents.
    pub kind: EntryKind,
}

/// An archive being assembled: paths (without a leading `/`) to entries.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Two different entries for one path.
    #[error("{0}: added twice with different contents")]
    Conflict(String),
    /// An empty or `..` path, one with a NUL byte (the kernel reads names as
    /// C strings), or `TRAILER!!!` (the name that ends an archive).
    #[error("invalid archive path {0:?}")]
    BadPath(String),
    /// Permission bits beyond 0o7777 (they would change the entry's type).
    #[error("{0}: invalid permissions {1:#o}")]
    BadPerm(String, u32),
    /// A symbolic link target with a NUL byte.
    #[error("{0}: invalid symbolic link target {1:?}")]
    BadTarget(String, String),
}

/// The name whose entry ends a newc archive.
const TRAILER: &str = "TRAILER!!!";

fn normalize(path: &str) -> Result<String, CpioError> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty()
        || p == TRAILER
        || p.contains('\0')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(p.to_string())
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry, creating its parent directories (0755). A parent that
    /// exists as something other than a directory is a conflict.
    pub fn add(&mut self, path: &str, perm: u32, kind: EntryKind) -> Result<(), CpioError> {
        let p = normalize(path)?;
        if perm & !0o7777 != 0 {
            return Err(CpioError::BadPerm(p, perm));
        }
        if let EntryKind::Symlink(target) = &kind
            && target.contains('\0')
        {
            return Err(CpioError::BadTarget(p, target.clone()));
        }
        let comps: Vec<&str> = p.split('/').collect();
        let parents: Vec<String> = (1..comps.len()).map(|n| comps[..n].join("/")).collect();
        if let Some(file) = parents.iter().find(|d| {
            self.entries
                .get(*d)
                .is_some_and(|e| e.kind != EntryKind::Dir)
        }) {
            return Err(CpioError::Conflict(file.clone()));
        }
        for parent in parents {
            self.entries.entry(parent).or_insert(Entry {
                perm: 0o755,
                kind: EntryKind::Dir,
            });
        }
        let entry = Entry { perm, kind };
        match self.entries.get(&p) {
            Some(old) if *old != entry => {
                if old.kind == EntryKind::Dir && entry.kind == EntryKind::Dir {
                    self.entries.insert(p, entry);
                    return Ok(());
                }
                Err(CpioError::Conflict(p))
            }
            _ => {
                self.entries.insert(p, entry);
                Ok(())
            }
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) -> Result<(), CpioError> {
        self.add(path, 0o755, EntryKind::Dir)
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add(path, perm, EntryKind::File(data))
    }

    /// The entries in archive order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Writes the archive with every mtime set to `mtime`.
    pub fn write_to(&self, out: &mut impl Write, mtime: u32) -> io::Result<u64> {
        let mut w = Counting { inner: out, n: 0 };
        for (ino, (path, e)) in self.entries.iter().enumerate() {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match &e.kind {
                EntryKind::Dir => (0o040000 | e.perm, &[], (0, 0)),
                EntryKind::File(d) => (0o100000 | e.perm, d, (0, 0)),
                EntryKind::Symlink(t) => (0o120000 | e.perm, t.as_bytes(), (0, 0)),
                EntryKind::CharDev(ma, mi) => (0o020000 | e.perm, &[], (*ma, *mi)),
            };
            let nlink = if e.kind == EntryKind::Dir { 2 } else { 1 };
            header(
                &mut w,
                ino as u32 + 1,
                mode,
                nlink,
                mtime,
                data.len(),
                rdev,
                path,
            )?;
            w.write_all(data)?;
            pad4(&mut w)?;
        }
        header(&mut w, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!")?;
        Ok(w.n)
    }
}

#[allow(clippy::too_many_arguments)]
fn header(
    w: &mut Counting<'_, impl Write>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{filesize:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w)
}

fn pad4(w: &mut Counting<'_, impl Write>) -> io::Result<()> {
    let pad = (4 - (w.n % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..pad])
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_parents_first_and_is_deterministic() {
        let build = || {
            let mut a = Archive::new();
            a.file("/lib/modules/x/a.ko", 0o644, b"abc".to_vec())
                .unwrap();
            a.file("init", 0o755, b"#!".to_vec()).unwrap();
            a.add("dev/console", 0o600, EntryKind::CharDev(5, 1))
                .unwrap();
            let mut out = Vec::new();
            a.write_to(&mut out, 0).unwrap();
            (a, out)
        };
        let (a, one) = build();
        let (_, two) = build();
        assert_eq!(one, two);
        let names: Vec<_> = a.entries().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/x",
                "lib/modules/x/a.ko"
            ]
        );
        assert_eq!(one.len() % 4, 0);
        assert!(one.starts_with(b"070701"));
    }

    #[test]
    fn refuses_bad_paths_and_conflicts() {
        let mut a = Archive::new();
        assert!(a.file("../etc/passwd", 0o644, vec![]).is_err());
        a.file("x", 0o644, b"1".to_vec()).unwrap();
        assert!(a.file("x", 0o644, b"2".to_vec()).is_err());
        a.file("x", 0o644, b"1".to_vec()).unwrap();
    }

    /// Entries the kernel would unpack as something else, found by the
    /// `cpio` fuzz target (fuzz/regressions/cpio/).
    #[test]
    fn refuses_entries_the_kernel_would_misread() {
        let mut a = Archive::new();
        // Type bits in the permissions: a "file" that unpacks as a socket.
        assert!(a.file("f", 0o140644, vec![]).is_err());
        // Names are C strings to the kernel; TRAILER!!! ends the archive.
        assert!(a.file("a\0b", 0o644, vec![]).is_err());
        assert!(a.file("TRAILER!!!", 0o644, vec![]).is_err());
        a.file("dir/TRAILER!!!", 0o644, vec![]).unwrap();
        assert!(
            a.add("l", 0o777, EntryKind::Symlink("/x\0y".into()))
                .is_err()
        );
        // A file cannot be the parent of another entry.
        a.file("x", 0o644, b"1".to_vec()).unwrap();
        assert!(a.file("x/y", 0o644, vec![]).is_err());
        assert!(a.entries().all(|(p, _)| p != "x/y"));
    }

    /// The archive is read back by GNU cpio, the reference implementation.
    #[test]
    fn gnu_cpio_lists_it() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: cpio not installed");
            return;
        }
        let mut a = Archive::new();
        a.file("init", 0o755, b"#!/bin/sh\n".to_vec()).unwrap();
        a.add("bin/sh", 0o777, EntryKind::Symlink("busybox".into()))
            .unwrap();
        let mut out = Vec::new();
        a.write_to(&mut out, 1_700_000_000).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        let listing = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        assert!(listing.contains("bin/sh -> busybox"), "{listing}");
        assert!(listing.contains("-rwxr-xr-x"), "{listing}");
    }
}

//! The kernel's module database (`modules.alias`, `modules.dep`,
//! `modules.builtin`, `modules.softdep`), device modaliases from sysfs, and
//! loading a module after its dependencies through `finit_module(2)`.
//! [`super::coldplug`] decides what to load and when.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses (Linux ≥ 6.6).
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// The module database of one kernel.
#[derive(Debug, Default)]
pub struct ModuleDb {
    dir: PathBuf,
    aliases: Vec<(String, String)>,
    deps: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
    /// `pre:` soft dependencies (`modules.softdep`), loaded first, best effort.
    softdeps: HashMap<String, Vec<String>>,
}

/// `foo-bar` and `foo_bar` are the same module.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    normalize(base)
}

impl ModuleDb {
    /// Reads `modules.alias`, `modules.dep`, `modules.builtin` and
    /// `modules.softdep` of `dir` (e.g. `/lib/modules/6.1.0-28-amd64`).
    /// Missing files give an empty db.
    pub fn load(dir: &Path) -> Self {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        let mut db = Self::parse(
            dir,
            &read("modules.alias"),
            &read("modules.dep"),
            &read("modules.builtin"),
        );
        db.set_softdeps(&read("modules.softdep"));
        db
    }

    /// Reads `softdep <module> pre: <module>… [post: …]` lines (the format
    /// `ingot-ramdisk` writes, as modprobe.d has it); only `pre:` is used.
    pub fn set_softdeps(&mut self, text: &str) {
        self.softdeps = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "softdep").then_some(())?;
                let module = normalize(w.next()?);
                let mut pre = Vec::new();
                let mut in_pre = false;
                for word in w {
                    match word {
                        "pre:" => in_pre = true,
                        "post:" => in_pre = false,
                        m if in_pre => pre.push(normalize(m)),
                        _ => {}
                    }
                }
                Some((module, pre))
            })
            .collect();
    }

    /// Builds the db from file contents.
    pub fn parse(dir: &Path, alias: &str, dep: &str, builtin: &str) -> Self {
        let aliases = alias
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "alias").then_some(())?;
                Some((w.next()?.to_string(), normalize(w.next()?)))
            })
            .collect();
        let deps = dep
            .lines()
            .filter_map(|l| {
                let (m, d) = l.split_once(':')?;
                let deps = d.split_whitespace().map(module_name).collect();
                Some((module_name(m), (m.trim().to_string(), deps)))
            })
            .collect();
        let builtin = builtin.lines().map(module_name).collect();
        Self {
            dir: dir.to_path_buf(),
            aliases,
            deps,
            builtin,
            softdeps: HashMap::new(),
        }
    }

    /// Modules whose alias patterns match `modalias`.
    pub fn lookup(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .aliases
            .iter()
            .filter(|(pat, _)| glob_match(pat.as_bytes(), modalias.as_bytes()))
            .map(|(_, m)| m.clone())
            .filter(|m| !self.builtin.contains(m))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `module` and its dependencies, dependencies first.
    pub fn load_order(&self, module: &str) -> Vec<String> {
        fn visit(db: &ModuleDb, m: &str, seen: &mut HashSet<String>, out: &mut Vec<String>) {
            if !seen.insert(m.to_string()) {
                return;
            }
            for soft in db.softdeps.get(m).into_iter().flatten() {
                visit(db, soft, seen, out);
            }
            if let Some((_, deps)) = db.deps.get(m) {
                // modules.dep lists the nearest dependency first; load from the end.
                for d in deps.iter().rev() {
                    visit(db, d, seen, out);
                }
            }
            out.push(m.to_string());
        }
        let mut out = Vec::new();
        visit(self, &normalize(module), &mut HashSet::new(), &mut out);
        out
    }

    fn path_of(&self, module: &str) -> Option<PathBuf> {
        self.deps.get(module).map(|(p, _)| self.dir.join(p))
    }
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` classes.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some(p);
                    mark = i;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, len)) = class_match(&pat[p..], s[i]) {
                        if ok {
                            p += len;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some(sp) => {
                p = sp + 1;
                mark += 1;
                i = mark;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

/// Matches one character against a `[...]` class; returns (matched, class length).
fn class_match(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(1), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            if (pat[i]..=pat[i + 2]).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Every `modalias` value under `sys/devices` of `root`.
pub fn modaliases(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.join("sys/devices")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == "modalias" {
                if let Ok(s) = std::fs::read_to_string(e.path()) {
                    let s = s.trim();
                    if !s.is_empty() {
                        out.insert(s.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Whether the kernel refused `MODULE_INIT_COMPRESSED_FILE` once (before
/// 6.6, or without `CONFIG_MODULE_DECOMPRESS`): then compressed modules are
/// decompressed here without asking it again.
static KERNEL_CANNOT_DECOMPRESS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The largest module accepted once decompressed (mlx5_core, the largest of
/// Debian's, is 4 MiB): a corrupt or hostile file cannot fill memory.
const MODULE_MAX: u64 = 64 << 20;

/// xz's memory limit for a module (xz -9 needs 65 MiB; modules use far less).
const XZ_MEMLIMIT: u64 = 128 << 20;

/// Loads one module file: through finit_module(2); a compressed one
/// (`.ko.zst`, `.ko.xz`, `.ko.gz`, as `ingot-ramdisk` and newer Debian
/// kernels store them) is decompressed by the kernel where it can (Linux ≥
/// 6.6), else here and loaded through init_module(2).
fn finit(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    let compressed = path.extension().is_some_and(|e| e != "ko");
    if compressed && KERNEL_CANNOT_DECOMPRESS.load(Ordering::Relaxed) {
        return load_decompressed(path);
    }
    let f = std::fs::File::open(path)?;
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: a valid fd, an empty NUL-terminated parameter string and flags.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), flags) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(()),
        // Unknown flag (before 6.6) or no in-kernel decompression.
        Some(libc::EINVAL | libc::EOPNOTSUPP) if compressed => {
            KERNEL_CANNOT_DECOMPRESS.store(true, Ordering::Relaxed);
            load_decompressed(path)
        }
        _ => Err(e),
    }
}

/// Decompresses `path` (by its extension) into memory, at most
/// [`MODULE_MAX`] bytes, and loads it through init_module(2).
fn load_decompressed(path: &Path) -> std::io::Result<()> {
    use ingot_image_tools::format::Format;
    use std::io::Read;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("zst") => Format::Zstd,
        Some("xz") => Format::Xz,
        Some("gz") => Format::Gzip,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a compression this loader knows (.ko.zst, .ko.xz, .ko.gz)",
            ));
        }
    };
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let decoder = ingot_image_tools::decode::stream_decoder(format, file, XZ_MEMLIMIT)?;
    let mut image = Vec::new();
    decoder.take(MODULE_MAX + 1).read_to_end(&mut image)?;
    if image.len() as u64 > MODULE_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decompresses to more than {MODULE_MAX} bytes"),
        ));
    }
    // SAFETY: the live buffer with its length, and an empty NUL-terminated
    // parameter string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            c"".as_ptr(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(e)
}

/// Loads a module no device asks for (a file system: `efivarfs`) with its
/// dependencies. True when it is loaded (or built in); false when the
/// kernel has no such module or loading failed (logged).
pub fn load_named(db: &ModuleDb, module: &str) -> bool {
    let name = normalize(module);
    if db.builtin.contains(&name) {
        return true;
    }
    if db.path_of(&name).is_none() {
        return false;
    }
    for dep in db.load_order(&name) {
        let Some(path) = db.path_of(&dep) else {
            continue;
        };
        if let Err(e) = finit(&path) {
            tracing::warn!(module = %dep, error = %e, "module not loaded");
            return false;
        }
    }
    tracing::info!(module = %name, "module loaded");
    true
}

/// A module's load order (dependencies first) with each one's file.
pub type Chain = Vec<(String, PathBuf)>;

impl ModuleDb {
    /// `module`'s [`Chain`]: the modules of [`ModuleDb::load_order`] that
    /// have a file.
    pub fn chain(&self, module: &str) -> Chain {
        self.load_order(module)
            .into_iter()
            .filter_map(|dep| self.path_of(&dep).map(|p| (dep, p)))
            .collect()
    }
}

/// Loads `chain` in order, skipping what `loaded` already holds and adding
/// what loads; `alias` (the device's modalias that matched) is logged.
///
/// Two chains sharing a dependency may both ask for it: the kernel makes
/// the second wait for the first and answers EEXIST, which counts as loaded.
pub fn load_chain(chain: &Chain, alias: &str, loaded: &std::sync::Mutex<Vec<String>>) {
    for (dep, path) in chain {
        if loaded.lock().is_ok_and(|l| l.contains(dep)) {
            continue;
        }
        match finit(path) {
            Ok(()) => {
                if let Ok(mut l) = loaded.lock() {
                    if !l.contains(dep) {
                        tracing::info!(module = %dep, alias = %alias, "module loaded");
                        l.push(dep.clone());
                    }
                }
            }
            Err(e) => tracing::warn!(module = %dep, error = %e, "module not loaded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_module_is_bounded_before_the_kernel_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        // 65 MiB of zeros in a few KiB: a bomb, refused at MODULE_MAX.
        let bomb = zstd::bulk::compress(&vec![0u8; 65 << 20], 3).unwrap();
        let p = dir.path().join("bomb.ko.zst");
        std::fs::write(&p, bomb).unwrap();
        let e = load_decompressed(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        let p = dir.path().join("x.ko.lz4");
        std::fs::write(&p, b"x").unwrap();
        assert_eq!(
            load_decompressed(&p).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        // Not zstd at all: the decoder's error, nothing loaded.
        let p = dir.path().join("junk.ko.zst");
        std::fs::write(&p, b"not zstd").unwrap();
        assert!(load_decompressed(&p).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            b"pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            b"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(glob_match(
            b"virtio:d00000001v*",
            b"virtio:d00000001v00001AF4"
        ));
        assert!(!glob_match(
            b"virtio:d00000002v*",
            b"virtio:d00000001v00001AF4"
        ));
        assert!(glob_match(b"a[0-9]?c", b"a5xc"));
        assert!(!glob_match(b"a[!0-9]c", b"a5c"));
    }

    #[test]
    fn dependencies_first() {
        let db = ModuleDb::parse(
            Path::new("/lib/modules/x"),
            "alias virtio:d00000001v* virtio_net\nalias pci:v00001AF4d* virtio_pci\n",
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko:\n",
            "kernel/drivers/virtio/virtio.ko\n",
        );
        assert_eq!(db.lookup("virtio:d00000001v00001AF4"), vec!["virtio_net"]);
        assert_eq!(
            db.load_order("virtio_net"),
            vec!["failover", "net_failover", "virtio_net"]
        );
        assert_eq!(
            db.path_of("failover"),
            Some(PathBuf::from("/lib/modules/x/kernel/net/core/failover.ko"))
        );
    }

    #[test]
    fn soft_dependencies_come_first() {
        let mut db = ModuleDb::parse(
            Path::new("/lib/modules/x"),
            "",
            "kernel/lib/crc-t10dif.ko: kernel/crypto/crct10dif_common.ko\n\
             kernel/crypto/crct10dif_common.ko:\n\
             kernel/crypto/crct10dif_generic.ko: kernel/crypto/crct10dif_common.ko\n",
            "",
        );
        db.set_softdeps("# comment\nsoftdep crc_t10dif pre: crct10dif_generic post: other\n");
        assert_eq!(
            db.load_order("crc-t10dif"),
            vec!["crct10dif_common", "crct10dif_generic", "crc_t10dif"]
        );
    }

    #[test]
    fn finds_modaliases_in_a_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sys/devices/pci0000:00/0000:00:02.0");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("modalias"),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
        )
        .unwrap();
        assert_eq!(modaliases(dir.path()).len(), 1);
    }
}

//! Assembles the ramdisk: kernel, initramfs (agent as `/init`, modules,
//! firmware, extras), manifest and iPXE script.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cpio::{Archive, EntryKind};
use crate::modules::{self, Class};

/// Target architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
}

impl Arch {
    fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => object::elf::EM_X86_64,
            Arch::Aarch64 => object::elf::EM_AARCH64,
        }
    }

    /// Rust's static musl target for this architecture.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }
}

/// Compression of the initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (level in `BuildOptions::level`); each module is stored
    /// zstd-compressed too (`.ko.zst`), which the agent loads.
    Zstd,
    /// gzip, for old boot loaders and kernels.
    Gzip,
    /// Plain cpio.
    None,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The kernel image.
    pub kernel: PathBuf,
    /// `lib/modules/<version>` of that kernel.
    pub modules: PathBuf,
    /// Where firmware files are looked up (a `lib/firmware` tree).
    pub firmware: Option<PathBuf>,
    /// The static agent binary, installed as `/init`.
    pub agent: PathBuf,
    /// Architecture of the kernel and agent.
    pub arch: Arch,
    /// Initramfs compression.
    pub compress: Compression,
    /// Compression level (zstd 1–22, gzip 1–9).
    pub level: i32,
    /// Module classes to include.
    pub classes: Vec<Class>,
    /// Extra files: (source, destination path in the ramdisk).
    pub extra: Vec<(PathBuf, String)>,
    /// The mtime of every entry (SOURCE_DATE_EPOCH, or 0).
    pub mtime: u32,
    /// Output directory.
    pub out: PathBuf,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The agent binary is not usable as `/init`.
    #[error("agent {path}: {reason}")]
    BadAgent {
        /// The binary.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Module selection failed.
    #[error(transparent)]
    Modules(#[from] modules::SelectError),
    /// Two files for one path in the ramdisk.
    #[error(transparent)]
    Archive(#[from] crate::cpio::CpioError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of the ramdisk in the manifest.
#[derive(Debug, Serialize)]
pub struct ManifestFile {
    /// Path inside the ramdisk.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// Kernel release (`lib/modules/<version>`).
    pub kernel_version: String,
    /// Architecture.
    pub arch: Arch,
    /// Compression of `initramfs.img`.
    pub compression: Compression,
    /// mtime used for every entry.
    pub source_date_epoch: u32,
    /// The output files with sizes and digests (vmlinuz, initramfs.img, boot.ipxe).
    pub outputs: Vec<ManifestFile>,
    /// Every regular file inside the initramfs.
    pub files: Vec<ManifestFile>,
    /// Totals.
    pub totals: Totals,
    /// Included module names.
    pub modules: Vec<String>,
    /// Modules left out, with the reason.
    pub modules_left_out: std::collections::BTreeMap<String, String>,
    /// Firmware referenced by included modules that was not available.
    pub firmware_missing: Vec<String>,
}

/// Size totals.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Regular files in the initramfs.
    pub files: usize,
    /// Their bytes.
    pub file_bytes: u64,
    /// Uncompressed cpio size.
    pub cpio_bytes: u64,
    /// `initramfs.img` size.
    pub initramfs_bytes: u64,
    /// `vmlinuz` size.
    pub kernel_bytes: u64,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Why `data` is not a static executable for `arch` (`None` if it is): the
/// init of a ramdisk must run with no dynamic loader. `package` names what to
/// build for musl in the message.
pub fn not_static_reason(data: &[u8], arch: Arch, package: &str) -> Option<String> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let elf = match ElfFile64::<object::Endianness>::parse(data) {
        Ok(elf) => elf,
        Err(e) => return Some(format!("not a 64-bit ELF executable: {e}")),
    };
    let endian = elf.endian();
    let machine = elf.elf_header().e_machine(endian);
    if machine != arch.elf_machine() {
        return Some(format!("built for ELF machine {machine}, not {arch:?}"));
    }
    elf.elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP)
        .then(|| {
            format!(
                "dynamically linked (it has an interpreter); build it for musl: \
                 cargo build --profile agent --target {} -p {package}",
                arch.musl_target()
            )
        })
}

/// Checks that the agent is a static executable for `arch`.
fn check_agent(path: &Path, data: &[u8], arch: Arch) -> Result<(), BuildError> {
    match not_static_reason(data, arch, "ingot-agent") {
        None => Ok(()),
        Some(reason) => Err(BuildError::BadAgent {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

/// Builds the ramdisk into `opts.out`; returns the manifest.
pub fn build(opts: &BuildOptions) -> Result<Manifest, BuildError> {
    let kernel_version = opts
        .modules
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BuildError::Other("--modules must be lib/modules/<version>".into()))?;
    let agent = std::fs::read(&opts.agent).map_err(io(&opts.agent))?;
    check_agent(&opts.agent, &agent, opts.arch)?;
    let kernel = std::fs::read(&opts.kernel).map_err(io(&opts.kernel))?;

    let mut a = Archive::new();
    a.file("init", 0o755, agent)?;
    for d in ["proc", "sys", "dev", "run", "tmp", "etc", "root", "mnt"] {
        a.dir(d)?;
    }
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    a.add("dev/console", 0o600, EntryKind::CharDev(5, 1))?;
    a.add("dev/null", 0o666, EntryKind::CharDev(1, 3))?;

    let mut sel = modules::select(&opts.modules, &opts.classes, opts.firmware.as_deref())?;
    if opts.compress == Compression::Zstd {
        // Compressed one by one, the kernel no longer decompresses every
        // module when it unpacks the initramfs (58 of its 66 MiB for
        // Debian's amd64 kernel): it unpacks a quarter as much.
        sel.compress_modules(opts.level)
            .map_err(|e| BuildError::Other(format!("compressing the modules: {e}")))?;
    }
    let mroot = format!("lib/modules/{kernel_version}");
    for m in sel.modules.values() {
        a.file(&format!("{mroot}/{}", m.rel_path), 0o644, m.data.clone())?;
    }
    a.file(
        &format!("{mroot}/modules.dep"),
        0o644,
        sel.modules_dep().into_bytes(),
    )?;
    a.file(
        &format!("{mroot}/modules.alias"),
        0o644,
        sel.modules_alias().into_bytes(),
    )?;
    a.file(
        &format!("{mroot}/modules.softdep"),
        0o644,
        sel.modules_softdep().into_bytes(),
    )?;
    for name in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let p = opts.modules.join(name);
        if p.is_file() {
            a.file(
                &format!("{mroot}/{name}"),
                0o644,
                std::fs::read(&p).map_err(io(&p))?,
            )?;
        }
    }
    for (fw, data) in &sel.firmware {
        a.file(&format!("lib/firmware/{fw}"), 0o644, data.clone())?;
    }
    for (src, dest) in &opts.extra {
        let data = std::fs::read(src).map_err(io(src))?;
        let perm = {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(src)
                .map_err(io(src))?
                .permissions()
                .mode();
            if m & 0o111 != 0 { 0o755 } else { 0o644 }
        };
        a.file(dest, perm, data)?;
    }

    let mut cpio = Vec::new();
    let cpio_bytes = a
        .write_to(&mut cpio, opts.mtime)
        .map_err(|e| BuildError::Other(e.to_string()))?;
    let image = compress(&cpio, opts.compress, opts.level)?;

    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let write = |name: &str, data: &[u8]| -> Result<ManifestFile, BuildError> {
        let p = opts.out.join(name);
        std::fs::write(&p, data).map_err(io(&p))?;
        Ok(ManifestFile {
            path: name.to_string(),
            size: data.len() as u64,
            sha256: sha256_hex(data),
        })
    };
    let ipxe = crate::ipxe::template(opts.arch);
    let outputs = vec![
        write("vmlinuz", &kernel)?,
        write("initramfs.img", &image)?,
        write("boot.ipxe", ipxe.as_bytes())?,
    ];
    let files: Vec<ManifestFile> = a
        .entries()
        .filter_map(|(p, e)| match &e.kind {
            EntryKind::File(d) => Some(ManifestFile {
                path: format!("/{p}"),
                size: d.len() as u64,
                sha256: sha256_hex(d),
            }),
            _ => None,
        })
        .collect();
    let manifest = Manifest {
        kernel_version,
        arch: opts.arch,
        compression: opts.compress,
        source_date_epoch: opts.mtime,
        totals: Totals {
            files: files.len(),
            file_bytes: files.iter().map(|f| f.size).sum(),
            cpio_bytes,
            initramfs_bytes: image.len() as u64,
            kernel_bytes: kernel.len() as u64,
        },
        outputs,
        files,
        modules: sel.modules.keys().cloned().collect(),
        modules_left_out: sel.left_out.clone(),
        firmware_missing: sel.missing_firmware.iter().cloned().collect(),
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BuildError::Other(e.to_string()))?;
    write("manifest.json", &json)?;
    Ok(manifest)
}

/// Compresses an initramfs archive, deterministically (the same bytes in,
/// the same bytes out).
pub fn compress(cpio: &[u8], c: Compression, level: i32) -> Result<Vec<u8>, BuildError> {
    let err = |e: std::io::Error| BuildError::Other(format!("compressing the initramfs: {e}"));
    Ok(match c {
        Compression::None => cpio.to_vec(),
        Compression::Zstd => {
            // Single-threaded, checksummed, content size recorded: deterministic.
            let mut enc = zstd::Encoder::new(Vec::new(), level).map_err(err)?;
            enc.include_checksum(true).map_err(err)?;
            enc.set_pledged_src_size(Some(cpio.len() as u64))
                .map_err(err)?;
            enc.include_contentsize(true).map_err(err)?;
            enc.write_all(cpio).map_err(err)?;
            enc.finish().map_err(err)?
        }
        Compression::Gzip => {
            let lvl = u32::try_from(level.clamp(1, 9)).unwrap_or(9);
            // GzBuilder writes mtime 0 and no file name: deterministic.
            let mut enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::new(lvl));
            enc.write_all(cpio).map_err(err)?;
            enc.finish().map_err(err)?
        }
    })
}

//! The lab's test image (`ingot-test-image`): a BIOS-bootable disk image for
//! end-to-end tests. One bootable FAT16 partition at 1 MiB holds syslinux, a
//! kernel and an initramfs whose `/init` is a small static program (the lab
//! uses `ingot-testimage-init`); syslinux's MBR boot code is in sector 0.
//!
//! The UEFI variant ([`Firmware::Uefi`]) is a GPT disk (fixed GUIDs) whose
//! one partition, an EFI system partition at 1 MiB, holds only
//! `EFI/BOOT/BOOTX64.EFI`: a unified kernel image made from systemd's EFI
//! stub (`linuxx64.efi.stub`, package systemd-boot-efi) with `objcopy`,
//! carrying the same kernel, initramfs and command line.
//!
//! For arm64 ([`Arch::Aarch64`], UEFI only) the stub is
//! `linuxaa64.efi.stub` (package `systemd-boot-efi:arm64`), the image is
//! `EFI/BOOT/BOOTAA64.EFI`, the console is the PL011 (`console=ttyAMA0`)
//! and the init must be a static aarch64 ELF; objcopy and objdump must know
//! `pei-aarch64-little` (the host's, or `aarch64-linux-gnu-objcopy` from
//! binutils-aarch64-linux-gnu).
//!
//! A test fixture, not part of the product: it lives under `tests/` so that
//! `ingot-image-tools` (and through it the agent) does not depend on
//! `ingot-initramfs`.
//!
//! Built without root or mounts: `mkfs.vfat -C` makes the partition as a
//! file, `syslinux --install` (Debian's mtools-based installer) makes it
//! bootable, `mcopy` puts the files in, and the DOS partition table is
//! written here. The initramfs (cpio newc, zstd) is made with
//! `ingot-initramfs`'s writer and carries only the named kernel modules and
//! their dependency closure, with `/lib/modules/load.list` listing them in
//! load order (dependencies first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ingot_initramfs::Compression;
use ingot_initramfs::cpio::{Archive, EntryKind};
use ingot_initramfs::modinfo::{self, ModInfo};

/// The architecture the image is for (x86-64 by default; aarch64 boots only
/// under UEFI).
pub use ingot_initramfs::Arch;

/// The modules carried by default: virtio (PCI, block, SCSI), NVMe, AHCI,
/// SCSI disks and CD-ROMs (a config drive attached as a CD), ISO 9660, and
/// virtio-net (the isolation lab's probes; the init configures no NIC
/// unless the config drive asks). Their dependencies come along.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "sr_mod",
    "nvme",
    "ahci",
    "isofs",
    "virtio_net",
];

/// Where the init finds its module list in the initramfs.
pub const LOAD_LIST: &str = "lib/modules/load.list";

/// syslinux's MBR boot code (package syslinux-common).
const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";
/// The partition starts at 1 MiB.
const PART_START_SECTOR: u64 = 2048;
/// FAT cannot date files before 1980-01-01: earlier mtimes are raised to it.
const FAT_EPOCH: u32 = 315_532_800;
/// The DOS disk identifier.
const DISK_ID: u32 = 0x494e_474f;

/// The x86-64 UEFI stub the unified kernel image is made from.
const EFI_STUB_X64: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// The aarch64 UEFI stub (package systemd-boot-efi:arm64).
const EFI_STUB_AA64: &str = "/usr/lib/systemd/boot/efi/linuxaa64.efi.stub";
/// The PE format objcopy must know to edit the aarch64 stub.
const PE_AARCH64: &str = "pei-aarch64-little";

/// What differs between architectures in the UEFI image.
#[derive(Debug, Clone, Copy)]
struct ArchUefi {
    /// systemd's EFI stub.
    stub: &'static str,
    /// The Debian package holding the stub.
    stub_package: &'static str,
    /// The firmware's removable-media path's file name in `EFI/BOOT/`.
    boot_file: &'static str,
}

fn arch_uefi(arch: Arch) -> ArchUefi {
    match arch {
        Arch::X86_64 => ArchUefi {
            stub: EFI_STUB_X64,
            stub_package: "systemd-boot-efi",
            boot_file: "BOOTX64.EFI",
        },
        Arch::Aarch64 => ArchUefi {
            stub: EFI_STUB_AA64,
            stub_package: "systemd-boot-efi:arm64",
            boot_file: "BOOTAA64.EFI",
        },
    }
}

/// `arch` as `--arch` spells it (`x86_64`, `aarch64`).
pub fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "aarch64",
    }
}

/// The kernel console for `arch`: the 16550 on x86, the PL011 on arm64 virt.
pub fn console(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "console=ttyS0,115200",
        Arch::Aarch64 => "console=ttyAMA0",
    }
}

/// The file name of the unified kernel image in the ESP's `EFI/BOOT/`
/// (`BOOTX64.EFI`, `BOOTAA64.EFI`).
pub fn uefi_boot_file(arch: Arch) -> &'static str {
    arch_uefi(arch).boot_file
}
/// The UEFI image's disk GUID and ESP GUID: fixed, for reproducible images
/// (the DOS disk identifier "INGO", then "ingot-test-image" / "-esp").
pub const UEFI_DISK_GUID: &str = "494e474f-696e-676f-742d-746573742d69";
/// The ESP's unique partition GUID in the UEFI image.
pub const UEFI_ESP_GUID: &str = "494e474f-696e-676f-742d-6573702d3031";
/// The ESP type.
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// The firmware the image boots under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// BIOS: DOS table, syslinux.
    #[default]
    Bios,
    /// UEFI: GPT, an ESP with a unified kernel image as the fallback loader.
    Uefi,
}

/// Output format of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// A raw disk image.
    Raw,
    /// qcow2 (converted with `qemu-img`).
    Qcow2,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct TestImageOptions {
    /// The kernel image (`vmlinuz-<version>`).
    pub kernel: PathBuf,
    /// `lib/modules/<version>`, or a directory holding `lib/modules/<version>`
    /// (an unpacked kernel package).
    pub modules: PathBuf,
    /// The static init program, installed as `/init`.
    pub init: PathBuf,
    /// The image file to write.
    pub output: PathBuf,
    /// Size of the disk image in MiB.
    pub size_mib: u64,
    /// Output format.
    pub format: ImageFormat,
    /// Modules to carry (with their dependencies), loaded in that order.
    pub module_names: Vec<String>,
    /// Extra kernel command line arguments after the console
    /// (`console=ttyS0,115200`; `console=ttyAMA0` on aarch64).
    pub append: String,
    /// mtime of every file (SOURCE_DATE_EPOCH, or 0).
    pub mtime: u32,
    /// BIOS (syslinux) or UEFI (unified kernel image).
    pub firmware: Firmware,
    /// The architecture of the kernel and init (aarch64: UEFI only).
    pub arch: Arch,
}

impl TestImageOptions {
    /// Options with the defaults: 64 MiB raw, [`DEFAULT_MODULES`], mtime 0.
    pub fn new(kernel: PathBuf, modules: PathBuf, init: PathBuf, output: PathBuf) -> Self {
        Self {
            kernel,
            modules,
            init,
            output,
            size_mib: 64,
            format: ImageFormat::Raw,
            module_names: DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
            append: String::new(),
            mtime: 0,
            firmware: Firmware::Bios,
            arch: Arch::X86_64,
        }
    }
}

/// What was built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestImageReport {
    /// The image file.
    pub output: PathBuf,
    /// Its format.
    pub format: ImageFormat,
    /// The firmware it boots under.
    pub firmware: Firmware,
    /// The architecture it is for.
    pub arch: Arch,
    /// Its size in bytes (the file; for raw, the disk size).
    pub image_bytes: u64,
    /// The disk size in bytes.
    pub disk_bytes: u64,
    /// Kernel release.
    pub kernel_version: String,
    /// Modules in load order.
    pub modules: Vec<String>,
    /// Requested modules that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Compressed initramfs size.
    pub initrd_bytes: u64,
    /// Kernel size.
    pub kernel_bytes: u64,
    /// The kernel command line.
    pub cmdline: String,
}

/// Why the image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TestImageError {
    /// A needed program or file is not installed.
    #[error("{what} not found: install the Debian package {package}")]
    MissingTool {
        /// The program or file.
        what: String,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr and stdout.
        output: String,
    },
    /// The init is not a static executable.
    #[error("init {path}: {reason}")]
    BadInit {
        /// The binary.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A module could not be found or read.
    #[error("kernel modules: {0}")]
    Modules(String),
    /// The contents do not fit the image, or the options are wrong.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TestImageError + '_ {
    move |source| TestImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finds a program in PATH, or in /usr/sbin and /sbin (mkfs.vfat lives
/// there and a user's PATH often lacks it).
fn find_tool(name: &str, package: &'static str) -> Result<PathBuf, TestImageError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(TestImageError::MissingTool {
            what: format!("{name} (in PATH)"),
            package,
        })
}

/// The programs the build runs.
struct Tools {
    mkfs: PathBuf,
    mcopy: PathBuf,
    /// BIOS: syslinux.
    syslinux: Option<PathBuf>,
    /// UEFI: objcopy, objdump, mmd, sgdisk.
    uefi: Option<UefiTools>,
    qemu_img: Option<PathBuf>,
}

struct UefiTools {
    arch: ArchUefi,
    objcopy: PathBuf,
    objdump: PathBuf,
    mmd: PathBuf,
    sgdisk: PathBuf,
}

/// Whether `objcopy --info` lists `format`.
fn objcopy_knows(objcopy: &Path, format: &str) -> bool {
    Command::new(objcopy)
        .arg("--info")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(format))
}

/// objcopy and objdump that can edit `arch`'s PE stub: the host's, or for
/// aarch64 the cross binutils when the host's lack `pei-aarch64-little`.
fn pe_binutils(arch: Arch) -> Result<(PathBuf, PathBuf), TestImageError> {
    let host = (
        find_tool("objcopy", "binutils")?,
        find_tool("objdump", "binutils")?,
    );
    if arch == Arch::X86_64 || objcopy_knows(&host.0, PE_AARCH64) {
        return Ok(host);
    }
    let cross = (
        find_tool("aarch64-linux-gnu-objcopy", "binutils-aarch64-linux-gnu")?,
        find_tool("aarch64-linux-gnu-objdump", "binutils-aarch64-linux-gnu")?,
    );
    if !objcopy_knows(&cross.0, PE_AARCH64) {
        return Err(TestImageError::MissingTool {
            what: format!("an objcopy that knows {PE_AARCH64}"),
            package: "binutils-aarch64-linux-gnu",
        });
    }
    Ok(cross)
}

/// Refuses combinations that cannot boot: BIOS is x86 only.
fn check_combination(firmware: Firmware, arch: Arch) -> Result<(), TestImageError> {
    if firmware == Firmware::Bios && arch != Arch::X86_64 {
        return Err(TestImageError::Invalid(format!(
            "--firmware bios is x86_64 only (syslinux); build the {} image with --firmware uefi",
            arch_name(arch)
        )));
    }
    Ok(())
}

impl Tools {
    fn find(format: ImageFormat, firmware: Firmware, arch: Arch) -> Result<Self, TestImageError> {
        check_combination(firmware, arch)?;
        let (syslinux, uefi) = match firmware {
            Firmware::Bios => {
                if !Path::new(MBR_BIN).is_file() {
                    return Err(TestImageError::MissingTool {
                        what: MBR_BIN.into(),
                        package: "syslinux-common",
                    });
                }
                (Some(find_tool("syslinux", "syslinux")?), None)
            }
            Firmware::Uefi => {
                let a = arch_uefi(arch);
                if !Path::new(a.stub).is_file() {
                    return Err(TestImageError::MissingTool {
                        what: a.stub.into(),
                        package: a.stub_package,
                    });
                }
                let (objcopy, objdump) = pe_binutils(arch)?;
                let u = UefiTools {
                    arch: a,
                    objcopy,
                    objdump,
                    mmd: find_tool("mmd", "mtools")?,
                    sgdisk: find_tool("sgdisk", "gdisk")?,
                };
                (None, Some(u))
            }
        };
        Ok(Self {
            mkfs: find_tool("mkfs.vfat", "dosfstools")?,
            mcopy: find_tool("mcopy", "mtools")?,
            syslinux,
            uefi,
            qemu_img: match format {
                ImageFormat::Qcow2 => Some(find_tool("qemu-img", "qemu-utils")?),
                ImageFormat::Raw => None,
            },
        })
    }
}

/// Checks the tools the builder needs are installed; the error names the
/// Debian package of the first one missing.
pub fn check_tools(format: ImageFormat) -> Result<(), TestImageError> {
    Tools::find(format, Firmware::Bios, Arch::X86_64).map(|_| ())
}

/// [`check_tools`] for an x86-64 image booting under `firmware`.
pub fn check_tools_for(format: ImageFormat, firmware: Firmware) -> Result<(), TestImageError> {
    Tools::find(format, firmware, Arch::X86_64).map(|_| ())
}

/// [`check_tools`] for an image for `arch` booting under `firmware` (BIOS
/// with aarch64 is refused).
pub fn check_tools_for_arch(
    format: ImageFormat,
    firmware: Firmware,
    arch: Arch,
) -> Result<(), TestImageError> {
    Tools::find(format, firmware, arch).map(|_| ())
}

fn run(cmd: &mut Command, mtime: u32) -> Result<(), TestImageError> {
    cmd.env("SOURCE_DATE_EPOCH", mtime.to_string())
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC");
    let out = cmd.output().map_err(|e| TestImageError::Command {
        command: format!("{cmd:?}"),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(TestImageError::Command {
            command: format!("{cmd:?}"),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(())
}

/// Resolves `--modules`: `lib/modules/<version>` itself, or a root holding
/// exactly one `lib/modules/<version>` (or the one matching the kernel's name).
pub fn modules_dir(given: &Path, kernel: &Path) -> Result<PathBuf, TestImageError> {
    if given.join("kernel").is_dir() {
        return Ok(given.to_path_buf());
    }
    for base in ["lib/modules", "usr/lib/modules"] {
        let dir = given.join(base);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let versions: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("kernel").is_dir())
            .collect();
        let kname = kernel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(v) = versions.iter().find(|v| {
            v.file_name()
                .is_some_and(|n| kname == format!("vmlinuz-{}", n.to_string_lossy()))
        }) {
            return Ok(v.clone());
        }
        if let [one] = versions.as_slice() {
            return Ok(one.clone());
        }
    }
    Err(TestImageError::Invalid(format!(
        "--modules {}: neither lib/modules/<version> nor a directory holding one",
        given.display()
    )))
}

/// Checks the init is a static ELF executable (no interpreter) for `arch`
/// (its `e_machine`).
fn check_init(path: &Path, elf: &[u8], arch: Arch) -> Result<(), TestImageError> {
    match ingot_initramfs::build::not_static_reason(elf, arch, "ingot-testimage-init") {
        None => Ok(()),
        Some(reason) => Err(TestImageError::BadInit {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

/// A module chosen for the initramfs.
#[derive(Debug)]
struct Chosen {
    rel_path: String,
    data: Vec<u8>,
    info: ModInfo,
}

/// The chosen modules in load order (every module after its dependencies),
/// and the requested ones that are built in.
type ModuleSet = (Vec<Chosen>, Vec<String>);

/// Selects `names` and their dependency closure (hard dependencies, and soft
/// dependencies that name a module) from `dir` (`lib/modules/<version>`).
fn select_modules(dir: &Path, names: &[String]) -> Result<ModuleSet, TestImageError> {
    let files = ingot_initramfs::modules::module_files(dir)
        .map_err(|e| TestImageError::Modules(e.to_string()))?;
    let by_name: BTreeMap<String, PathBuf> = files
        .into_iter()
        .map(|f| (modinfo::name_from_path(&f), f))
        .collect();
    let builtin: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(|l| modinfo::name_from_path(Path::new(l)))
        .collect();
    let mut loaded: BTreeMap<String, Chosen> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut builtin_requested = Vec::new();
    // Depth-first, dependencies before the module: (name, required, children done).
    let mut stack: Vec<(String, bool, bool)> = names
        .iter()
        .rev()
        .map(|n| (modinfo::normalize(n), true, false))
        .collect();
    let mut visiting: BTreeSet<String> = BTreeSet::new();
    while let Some((name, required, expanded)) = stack.pop() {
        if expanded {
            visiting.remove(&name);
            if !order.contains(&name) {
                order.push(name);
            }
            continue;
        }
        if loaded.contains_key(&name) || visiting.contains(&name) {
            continue;
        }
        if builtin.contains(&name) {
            if required && names.iter().any(|n| modinfo::normalize(n) == name) {
                builtin_requested.push(name);
            }
            continue;
        }
        let Some(path) = by_name.get(&name) else {
            if required {
                return Err(TestImageError::Modules(format!(
                    "{name} is neither a module in {} nor built in",
                    dir.display()
                )));
            }
            continue;
        };
        let data =
            modinfo::read_module(path).map_err(|e| TestImageError::Modules(e.to_string()))?;
        let info =
            modinfo::parse(path, &data).map_err(|e| TestImageError::Modules(e.to_string()))?;
        let rel = path
            .strip_prefix(dir)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rel_path = ingot_initramfs::modules::uncompressed_ko_path(&rel);
        visiting.insert(name.clone());
        stack.push((name.clone(), required, true));
        for d in info.softdeps.iter().rev() {
            stack.push((d.clone(), false, false));
        }
        for d in info.depends.iter().rev() {
            stack.push((d.clone(), true, false));
        }
        loaded.insert(
            name,
            Chosen {
                rel_path,
                data,
                info,
            },
        );
    }
    let chosen = order
        .into_iter()
        .filter_map(|n| loaded.remove(&n))
        .collect();
    Ok((chosen, builtin_requested))
}

/// The compressed initramfs, its module names in load order, and the
/// requested modules that are built in.
struct Initrd {
    image: Vec<u8>,
    modules: Vec<String>,
    builtin: Vec<String>,
}

/// Builds the initramfs: `/init`, device nodes, modules and the load list,
/// zstd-compressed.
fn initramfs(
    init: Vec<u8>,
    modules_dir: &Path,
    version: &str,
    names: &[String],
    mtime: u32,
) -> Result<Initrd, TestImageError> {
    let (chosen, builtin) = select_modules(modules_dir, names)?;
    let cpio_err = |e: ingot_initramfs::cpio::CpioError| TestImageError::Invalid(e.to_string());
    let mut a = Archive::new();
    a.file("init", 0o755, init).map_err(cpio_err)?;
    for d in ["proc", "sys", "dev", "tmp", "run"] {
        a.dir(d).map_err(cpio_err)?;
    }
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    a.add("dev/console", 0o600, EntryKind::CharDev(5, 1))
        .map_err(cpio_err)?;
    a.add("dev/null", 0o666, EntryKind::CharDev(1, 3))
        .map_err(cpio_err)?;
    let mut list = String::from("# Modules in load order, written by ingot-test-image.\n");
    let mut loaded = Vec::new();
    for m in chosen {
        let path = format!("lib/modules/{version}/{}", m.rel_path);
        list.push_str(&format!("/{path}\n"));
        loaded.push(m.info.name.clone());
        a.file(&path, 0o644, m.data).map_err(cpio_err)?;
    }
    a.file(LOAD_LIST, 0o644, list.into_bytes())
        .map_err(cpio_err)?;
    let mut cpio = Vec::new();
    a.write_to(&mut cpio, mtime)
        .map_err(|e| TestImageError::Invalid(e.to_string()))?;
    let image = ingot_initramfs::build::compress(&cpio, Compression::Zstd, 19)
        .map_err(|e| TestImageError::Invalid(e.to_string()))?;
    Ok(Initrd {
        image,
        modules: loaded,
        builtin,
    })
}

/// The syslinux configuration: serial console, one entry, no prompt.
pub fn syslinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\n\
         DEFAULT ingot\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         LABEL ingot\n\
         \x20 LINUX /vmlinuz\n\
         \x20 INITRD /initrd.img\n\
         \x20 APPEND {cmdline}\n"
    )
}

/// CHS of an LBA for a partition entry (255 heads, 63 sectors; the
/// "beyond CHS" value past cylinder 1023).
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (255 * 63);
    if c > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let h = (lba / 63) % 255;
    let s = lba % 63 + 1;
    [h as u8, (s as u8) | ((c >> 2) as u8 & 0xc0), c as u8]
}

/// Sector 0: syslinux's boot code, the disk identifier and one bootable
/// FAT16 (0x06) partition from sector 2048 for `sectors` sectors.
pub fn mbr(boot_code: &[u8], sectors: u64) -> Result<[u8; 512], TestImageError> {
    let mut s = [0u8; 512];
    let code = boot_code
        .get(..440)
        .ok_or_else(|| TestImageError::Invalid(format!("{MBR_BIN} is shorter than 440 bytes")))?;
    s[..440].copy_from_slice(code);
    s[440..444].copy_from_slice(&DISK_ID.to_le_bytes());
    let e = &mut s[446..462];
    e[0] = 0x80;
    e[1..4].copy_from_slice(&chs(PART_START_SECTOR));
    e[4] = 0x06;
    e[5..8].copy_from_slice(&chs(PART_START_SECTOR + sectors - 1));
    let first = u32::try_from(PART_START_SECTOR).unwrap_or(u32::MAX);
    let len = u32::try_from(sectors)
        .map_err(|_| TestImageError::Invalid("the image is too large for a DOS table".into()))?;
    e[8..12].copy_from_slice(&first.to_le_bytes());
    e[12..16].copy_from_slice(&len.to_le_bytes());
    s[510] = 0x55;
    s[511] = 0xaa;
    Ok(s)
}

/// A scratch directory next to the output, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn set_mtime(path: &Path, mtime: u32) -> Result<(), TestImageError> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(mtime));
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .map_err(io_err(path))
}

/// Builds the test image.
pub fn build(opts: &TestImageOptions) -> Result<TestImageReport, TestImageError> {
    let tools = Tools::find(opts.format, opts.firmware, opts.arch)?;
    if opts.size_mib < 16 {
        return Err(TestImageError::Invalid(
            "--size-mib must be at least 16 (FAT16)".into(),
        ));
    }
    let modules_dir = modules_dir(&opts.modules, &opts.kernel)?;
    let version = modules_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kernel = std::fs::read(&opts.kernel).map_err(io_err(&opts.kernel))?;
    let init = std::fs::read(&opts.init).map_err(io_err(&opts.init))?;
    check_init(&opts.init, &init, opts.arch)?;
    let Initrd {
        image: initrd,
        modules,
        builtin,
    } = initramfs(init, &modules_dir, &version, &opts.module_names, opts.mtime)?;
    let disk_bytes = opts.size_mib << 20;
    let part_sectors = disk_bytes / 512 - PART_START_SECTOR;
    let needed = kernel.len() as u64 + initrd.len() as u64 + (2 << 20);
    if needed > part_sectors * 512 {
        return Err(TestImageError::Invalid(format!(
            "the kernel and initramfs need {} MiB; raise --size-mib",
            needed.div_ceil(1 << 20) + 2
        )));
    }
    let mut cmdline = String::from(console(opts.arch));
    if !opts.append.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(opts.append.trim());
    }

    let out_dir = match opts.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    let scratch = Scratch(out_dir.join(format!(".ingot-test-image.{}.tmp", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(io_err(&scratch.0))?;
    let fat_mtime = opts.mtime.max(FAT_EPOCH);
    let raw = match opts.format {
        ImageFormat::Raw => opts.output.clone(),
        ImageFormat::Qcow2 => scratch.0.join("disk.raw"),
    };
    let inputs = DiskInputs {
        scratch: &scratch.0,
        raw: &raw,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &cmdline,
        disk_bytes,
        fat_mtime,
    };
    match (&tools.syslinux, &tools.uefi) {
        (_, Some(u)) => uefi_disk(&tools, u, &inputs)?,
        (Some(syslinux), None) => bios_disk(&tools, syslinux, &inputs, part_sectors)?,
        (None, None) => return Err(TestImageError::Invalid("no boot loader tools".into())),
    }
    if let Some(qemu_img) = &tools.qemu_img {
        run(
            Command::new(qemu_img)
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .arg(&raw)
                .arg(&opts.output),
            opts.mtime,
        )?;
    }
    let image_bytes = std::fs::metadata(&opts.output)
        .map_err(io_err(&opts.output))?
        .len();
    Ok(TestImageReport {
        output: opts.output.clone(),
        format: opts.format,
        firmware: opts.firmware,
        arch: opts.arch,
        image_bytes,
        disk_bytes,
        kernel_version: version,
        modules,
        builtin,
        initrd_bytes: initrd.len() as u64,
        kernel_bytes: kernel.len() as u64,
        cmdline,
    })
}

/// What both disk layouts are made from.
struct DiskInputs<'a> {
    scratch: &'a Path,
    raw: &'a Path,
    kernel: &'a [u8],
    initrd: &'a [u8],
    cmdline: &'a str,
    disk_bytes: u64,
    fat_mtime: u32,
}

/// Writes `files` into `dir` with mtime `mtime`.
fn stage(dir: &Path, files: &[(&str, &[u8])], mtime: u32) -> Result<(), TestImageError> {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::write(&p, data).map_err(io_err(&p))?;
        set_mtime(&p, mtime)?;
    }
    Ok(())
}

/// A FAT16 file system of `sectors` 512-byte sectors in the file `part`,
/// whose hidden sectors say it starts at 1 MiB.
fn mkfs(tools: &Tools, part: &Path, sectors: u64, mtime: u32) -> Result<(), TestImageError> {
    run(
        Command::new(&tools.mkfs)
            // --invariant: fixed volume ID and dates, for reproducible images.
            .args(["-F", "16", "-n", "INGOT-TEST", "--invariant"])
            .arg("-h")
            .arg(PART_START_SECTOR.to_string())
            .arg("-C")
            .arg(part)
            .arg((sectors / 2).to_string()),
        mtime,
    )
}

/// The BIOS disk: syslinux's MBR and one FAT16 partition with syslinux, the
/// kernel and the initramfs.
fn bios_disk(
    tools: &Tools,
    syslinux: &Path,
    d: &DiskInputs<'_>,
    part_sectors: u64,
) -> Result<(), TestImageError> {
    let cfg = syslinux_cfg(d.cmdline);
    let files: [(&str, &[u8]); 3] = [
        ("vmlinuz", d.kernel),
        ("initrd.img", d.initrd),
        ("syslinux.cfg", cfg.as_bytes()),
    ];
    stage(d.scratch, &files, d.fat_mtime)?;
    // The FAT partition as a file; hidden sectors = its offset on the disk,
    // which syslinux's boot sector uses to find itself.
    let part = d.scratch.join("part.img");
    mkfs(tools, &part, part_sectors, d.fat_mtime)?;
    run(
        Command::new(syslinux).arg("--install").arg(&part),
        d.fat_mtime,
    )?;
    let mut mcopy = Command::new(&tools.mcopy);
    mcopy.arg("-i").arg(&part).args(["-m", "-o"]);
    for (name, _) in &files {
        mcopy.arg(d.scratch.join(name));
    }
    run(mcopy.arg("::/"), d.fat_mtime)?;

    // The disk: sector 0, then the partition at 1 MiB.
    let boot_code = std::fs::read(MBR_BIN).map_err(io_err(Path::new(MBR_BIN)))?;
    let sector0 = mbr(&boot_code, part_sectors)?;
    write_disk(d.raw, d.disk_bytes, Some(&sector0), &part)
}

/// Creates the raw disk file: `disk_bytes` long, `sector0` (if any) at 0,
/// the partition file at 1 MiB.
fn write_disk(
    raw: &Path,
    disk_bytes: u64,
    sector0: Option<&[u8; 512]>,
    part: &Path,
) -> Result<(), TestImageError> {
    use std::os::unix::fs::FileExt;
    let part_data = std::fs::read(part).map_err(io_err(part))?;
    let f = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(sector0.is_some())
        .open(raw)
        .map_err(io_err(raw))?;
    f.set_len(disk_bytes).map_err(io_err(raw))?;
    if let Some(s) = sector0 {
        f.write_all_at(s, 0).map_err(io_err(raw))?;
    }
    f.write_all_at(&part_data, PART_START_SECTOR * 512)
        .map_err(io_err(raw))?;
    f.sync_all().map_err(io_err(raw))
}

/// The sections of a PE file as `objdump -h` lists them: (VMA, size).
fn pe_sections(objdump: &Path, file: &Path) -> Result<Vec<(u64, u64)>, TestImageError> {
    let out = Command::new(objdump)
        .arg("-h")
        .arg(file)
        .output()
        .map_err(|e| TestImageError::Command {
            command: format!("{} -h {}", objdump.display(), file.display()),
            output: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t.first()?.parse::<u32>().ok()?;
            let size = u64::from_str_radix(t.get(2)?, 16).ok()?;
            let vma = u64::from_str_radix(t.get(3)?, 16).ok()?;
            Some((vma, size))
        })
        .collect())
}

/// Sets the PE/COFF header's TimeDateStamp (objcopy writes the build time)
/// and recomputes the optional header's CheckSum, which covers it.
fn set_pe_timestamp(efi: &mut [u8], stamp: u32) -> Result<(), TestImageError> {
    let bad = || TestImageError::Invalid("the unified kernel image is not a PE file".into());
    let pe = efi
        .get(0x3c..0x40)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    if efi.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(bad());
    }
    // Signature (4), Machine (2), NumberOfSections (2), TimeDateStamp (4).
    efi.get_mut(pe + 8..pe + 12)
        .ok_or_else(bad)?
        .copy_from_slice(&stamp.to_le_bytes());
    // The optional header follows the 24-byte signature + COFF header; its
    // CheckSum is at offset 64 (PE32 and PE32+ alike).
    let sum_at = pe + 24 + 64;
    efi.get_mut(sum_at..sum_at + 4).ok_or_else(bad)?.fill(0);
    let mut sum: u64 = 0;
    for w in efi.chunks(2) {
        sum += u64::from(u16::from_le_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = (sum & 0xffff) as u32 + efi.len() as u32;
    efi[sum_at..sum_at + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The unified kernel image: systemd's EFI stub with `.osrel`, `.cmdline`,
/// `.initrd` and `.linux` sections added after its own, page-aligned (as
/// systemd's UKI documentation does it with objcopy).
fn unified_kernel_image(u: &UefiTools, d: &DiskInputs<'_>) -> Result<Vec<u8>, TestImageError> {
    let osrel = "ID=ingot-test\nNAME=\"Ingot test image\"\n";
    stage(
        d.scratch,
        &[
            ("osrel", osrel.as_bytes()),
            ("cmdline", d.cmdline.as_bytes()),
            ("initrd.img", d.initrd),
            ("vmlinuz", d.kernel),
        ],
        d.fat_mtime,
    )?;
    let stub = Path::new(u.arch.stub);
    let end = pe_sections(&u.objdump, stub)?
        .iter()
        .map(|(vma, size)| vma + size)
        .max()
        .ok_or_else(|| TestImageError::Invalid(format!("{}: no sections", u.arch.stub)))?;
    let align = |v: u64| v.div_ceil(0x1000) * 0x1000;
    let mut at = align(end);
    let mut cmd = Command::new(&u.objcopy);
    for (section, file, len) in [
        (".osrel", "osrel", osrel.len()),
        (".cmdline", "cmdline", d.cmdline.len()),
        (".initrd", "initrd.img", d.initrd.len()),
        (".linux", "vmlinuz", d.kernel.len()),
    ] {
        cmd.arg("--add-section")
            .arg(format!("{section}={}", d.scratch.join(file).display()))
            .arg("--change-section-vma")
            .arg(format!("{section}=0x{at:x}"));
        at = align(at + len as u64);
    }
    let uki = d.scratch.join(u.arch.boot_file);
    run(cmd.arg(stub).arg(&uki), d.fat_mtime)?;
    let mut data = std::fs::read(&uki).map_err(io_err(&uki))?;
    set_pe_timestamp(&mut data, d.fat_mtime)?;
    std::fs::write(&uki, &data).map_err(io_err(&uki))?;
    set_mtime(&uki, d.fat_mtime)?;
    Ok(data)
}

/// The UEFI disk: a GPT (fixed GUIDs) with one EFI system partition at
/// 1 MiB holding the unified kernel image as `EFI/BOOT/BOOTX64.EFI` (x86-64)
/// or `EFI/BOOT/BOOTAA64.EFI` (aarch64).
fn uefi_disk(tools: &Tools, u: &UefiTools, d: &DiskInputs<'_>) -> Result<(), TestImageError> {
    unified_kernel_image(u, d)?;
    // The backup GPT takes the last 33 sectors; the ESP ends on a MiB.
    let disk_sectors = d.disk_bytes / 512;
    let part_sectors = (disk_sectors - PART_START_SECTOR - 34) / 2048 * 2048;
    let part = d.scratch.join("esp.img");
    mkfs(tools, &part, part_sectors, d.fat_mtime)?;
    run(
        Command::new(&u.mmd)
            .arg("-i")
            .arg(&part)
            .args(["::/EFI", "::/EFI/BOOT"]),
        d.fat_mtime,
    )?;
    run(
        Command::new(&tools.mcopy)
            .arg("-i")
            .arg(&part)
            .args(["-m", "-o"])
            .arg(d.scratch.join(u.arch.boot_file))
            .arg(format!("::/EFI/BOOT/{}", u.arch.boot_file)),
        d.fat_mtime,
    )?;
    std::fs::remove_file(d.raw).ok();
    let f = std::fs::File::create(d.raw).map_err(io_err(d.raw))?;
    f.set_len(d.disk_bytes).map_err(io_err(d.raw))?;
    drop(f);
    let last = PART_START_SECTOR + part_sectors - 1;
    run(
        Command::new(&u.sgdisk)
            .arg(format!("--disk-guid={UEFI_DISK_GUID}"))
            .arg(format!("--new=1:{PART_START_SECTOR}:{last}"))
            .arg(format!("--typecode=1:{ESP_TYPE}"))
            .arg(format!("--partition-guid=1:{UEFI_ESP_GUID}"))
            .arg("--change-name=1:ESP")
            .arg(d.raw),
        d.fat_mtime,
    )?;
    write_disk(d.raw, d.disk_bytes, None, &part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_has_one_bootable_fat16_partition_at_1_mib() {
        let s = mbr(&[0xeb; 440], 63 * 2048).unwrap();
        assert_eq!(&s[..440], &[0xeb; 440][..]);
        assert_eq!(s[446], 0x80);
        assert_eq!(s[446 + 4], 0x06);
        assert_eq!(&s[446 + 8..446 + 12], &2048u32.to_le_bytes());
        assert_eq!(&s[446 + 12..446 + 16], &(63u32 * 2048).to_le_bytes());
        // LBA 2048 = C0 H32 S33.
        assert_eq!(&s[447..450], &[32, 33, 0]);
        assert!(s[462..510].iter().all(|b| *b == 0));
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert!(mbr(&[0; 100], 10).is_err());
    }

    #[test]
    fn syslinux_cfg_is_serial_without_prompt() {
        let cfg = syslinux_cfg("console=ttyS0,115200");
        assert!(cfg.starts_with("SERIAL 0 115200\n"));
        assert!(cfg.contains("\n  APPEND console=ttyS0,115200\n"));
        assert!(cfg.contains("PROMPT 0") && cfg.contains("TIMEOUT 0"));
    }

    #[test]
    fn bios_is_refused_for_aarch64() {
        let e = check_combination(Firmware::Bios, Arch::Aarch64).unwrap_err();
        assert!(
            e.to_string().contains("aarch64 image with --firmware uefi"),
            "{e}"
        );
        let e = Tools::find(ImageFormat::Raw, Firmware::Bios, Arch::Aarch64)
            .err()
            .unwrap();
        assert!(matches!(e, TestImageError::Invalid(_)), "{e}");
        assert!(check_combination(Firmware::Uefi, Arch::Aarch64).is_ok());
        assert!(check_combination(Firmware::Bios, Arch::X86_64).is_ok());
    }

    #[test]
    fn aarch64_uses_the_pl011_console_and_bootaa64() {
        assert_eq!(console(Arch::Aarch64), "console=ttyAMA0");
        assert_eq!(console(Arch::X86_64), "console=ttyS0,115200");
        assert_eq!(uefi_boot_file(Arch::Aarch64), "BOOTAA64.EFI");
        assert_eq!(arch_uefi(Arch::Aarch64).stub, EFI_STUB_AA64);
        assert_eq!(uefi_boot_file(Arch::X86_64), "BOOTX64.EFI");
    }

    #[test]
    fn an_x86_init_is_refused_for_aarch64() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        let e = check_init(Path::new("init"), &me, Arch::Aarch64).unwrap_err();
        assert!(e.to_string().contains("not Aarch64"), "{e}");
    }

    #[test]
    fn refuses_a_dynamic_or_foreign_init() {
        let p = Path::new("init");
        assert!(check_init(p, b"#!/bin/sh\n", Arch::X86_64).is_err());
        let me = std::fs::read("/proc/self/exe").unwrap_or_default();
        // The test binary is dynamically linked on glibc hosts.
        if me.len() > 64 {
            let r = check_init(p, &me, Arch::X86_64);
            assert!(
                r.is_err() || !Path::new("/lib64/ld-linux-x86-64.so.2").exists(),
                "{r:?}"
            );
        }
    }
}

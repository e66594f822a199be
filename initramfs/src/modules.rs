//! Which kernel modules go into the ramdisk: the classes Ingot needs (storage,
//! network, BMC), their dependency closure, the firmware they reference, and
//! `modules.dep` / `modules.alias` for the agent's loader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::modinfo::{self, ModInfo, ModinfoError};

/// A class of hardware whose drivers the ramdisk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Disks and controllers: NVMe, AHCI/libata, SCSI/SAS HBAs and sd, virtio-blk, md, dm.
    Storage,
    /// Ethernet drivers and virtio-net.
    Network,
    /// In-band IPMI (the KCS/SMIC/BT interface and /dev/ipmi0), for the BMC address.
    Bmc,
    /// Buses the disks and NICs hang off that no driver depends on by name:
    /// virtio-pci, virtio-mmio (arm64 virtual machines, Firecracker), Intel
    /// VMD; and efivarfs (UEFI variables: the agent's boot entry), a module
    /// in Debian's kernels that no device asks for either.
    Bus,
}

impl Class {
    /// All classes.
    pub const ALL: [Class; 4] = [Class::Storage, Class::Network, Class::Bmc, Class::Bus];

    /// The class's name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Storage => "storage",
            Class::Network => "network",
            Class::Bmc => "bmc",
            Class::Bus => "bus",
        }
    }

    /// Parses a class name.
    pub fn from_name(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Module paths (relative to `lib/modules/<version>/`) in this class.
    fn matches(self, rel: &str) -> bool {
        let prefixes: &[&str] = match self {
            Class::Storage => &[
                "kernel/drivers/nvme/",
                "kernel/drivers/ata/",
                "kernel/drivers/scsi/",
                "kernel/drivers/block/virtio_blk.",
                "kernel/drivers/md/",
            ],
            Class::Network => &[
                "kernel/drivers/net/ethernet/",
                "kernel/drivers/net/virtio_net.",
            ],
            Class::Bmc => &["kernel/drivers/char/ipmi/"],
            Class::Bus => &[
                "kernel/drivers/virtio/virtio_pci",
                "kernel/drivers/virtio/virtio_mmio.",
                "kernel/drivers/pci/controller/vmd.",
                "kernel/fs/efivarfs/",
            ],
        };
        // Storage reached over a fabric (Fibre Channel, FCoE, iSCSI, NVMe-oF)
        // and target-side drivers are not local disks: they would double the
        // ramdisk, and unpacking it is a large part of the boot time.
        let excluded: &[&str] = match self {
            Class::Storage => &[
                "kernel/drivers/scsi/lpfc/",
                "kernel/drivers/scsi/qla2xxx/",
                "kernel/drivers/scsi/qla4xxx/",
                "kernel/drivers/scsi/bnx2fc/",
                "kernel/drivers/scsi/bnx2i/",
                "kernel/drivers/scsi/cxgbi/",
                "kernel/drivers/scsi/fnic/",
                "kernel/drivers/scsi/qedf/",
                "kernel/drivers/scsi/qedi/",
                "kernel/drivers/scsi/csiostor/",
                "kernel/drivers/scsi/be2iscsi/",
                "kernel/drivers/scsi/libfc/",
                "kernel/drivers/scsi/fcoe/",
                "kernel/drivers/scsi/bfa/",
                "kernel/drivers/scsi/snic/",
                "kernel/drivers/scsi/pcmcia/",
                "kernel/drivers/scsi/scsi_debug.",
                "kernel/drivers/scsi/iscsi_",
                "kernel/drivers/scsi/libiscsi",
                "kernel/drivers/scsi/st.",
                "kernel/drivers/scsi/ch.",
                "kernel/drivers/nvme/target/",
                "kernel/drivers/nvme/host/nvme-fc.",
                "kernel/drivers/nvme/host/nvme-rdma.",
                "kernel/drivers/nvme/host/nvme-tcp.",
            ],
            _ => &[],
        };
        prefixes.iter().any(|p| rel.starts_with(p)) && !excluded.iter().any(|p| rel.starts_with(p))
    }
}

/// One module chosen for the ramdisk.
#[derive(Debug, Clone)]
pub struct Module {
    /// Path relative to `lib/modules/<version>/`, always ending in `.ko`
    /// (compressed modules are stored decompressed).
    pub rel_path: String,
    /// The uncompressed module.
    pub data: Vec<u8>,
    /// Its metadata.
    pub info: ModInfo,
    /// Why it is included: a class name, or `dependency of <module>`.
    pub reason: String,
}

/// The outcome of module selection.
#[derive(Debug, Default)]
pub struct Selection {
    /// Included modules by name.
    pub modules: BTreeMap<String, Module>,
    /// Modules (or dependencies) left out, with the reason.
    pub left_out: BTreeMap<String, String>,
    /// Firmware files referenced by included modules but not provided.
    pub missing_firmware: BTreeSet<String>,
    /// Firmware files to include: path relative to /lib/firmware → contents.
    pub firmware: BTreeMap<String, Vec<u8>>,
    /// Soft (`pre:`/`post:`) dependencies resolved to module names, by module.
    pub softdeps: BTreeMap<String, BTreeSet<String>>,
}

/// Why selection failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The modules directory could not be walked.
    #[error("{path}: {source}")]
    Walk {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A module file could not be read.
    #[error(transparent)]
    Modinfo(#[from] ModinfoError),
}

/// Every module file (`*.ko`, `*.ko.xz`, `*.ko.zst`) under `modules_dir/kernel`
/// (`lib/modules/<version>`), in path order.
pub fn module_files(modules_dir: &Path) -> Result<Vec<PathBuf>, SelectError> {
    let mut files = Vec::new();
    walk(&modules_dir.join("kernel"), &mut files)?;
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SelectError> {
    let rd = std::fs::read_dir(dir).map_err(|source| SelectError::Walk {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.to_string_lossy().contains(".ko") {
            out.push(p);
        }
    }
    Ok(())
}

/// Selects the modules of `classes` from `modules_dir` (`lib/modules/<version>`)
/// plus everything they depend on, and the firmware they reference from
/// `firmware_dir` when given.
pub fn select(
    modules_dir: &Path,
    classes: &[Class],
    firmware_dir: Option<&Path>,
) -> Result<Selection, SelectError> {
    let mut files = Vec::new();
    walk(&modules_dir.join("kernel"), &mut files)?;
    // Index every module by name (path only; metadata is read on demand).
    let mut by_name: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(modules_dir)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        by_name.insert(modinfo::name_from_path(&f), (f, rel));
    }
    let builtin: BTreeSet<String> = std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(|l| modinfo::name_from_path(Path::new(l)))
        .collect();

    let mut sel = Selection::default();
    // (module, why, whether it is only a soft dependency)
    let mut queue: Vec<(String, String, bool)> = by_name
        .iter()
        .filter_map(|(name, (_, rel))| {
            classes
                .iter()
                .find(|c| c.matches(rel))
                .map(|c| (name.clone(), c.name().to_string(), false))
        })
        .collect();
    queue.reverse();
    let mut aliases: Option<BTreeMap<String, BTreeSet<String>>> = None;
    loop {
        let mut unresolved: Vec<(String, String)> = Vec::new();
        drain(
            &mut queue,
            &mut sel,
            &by_name,
            &builtin,
            firmware_dir,
            &mut unresolved,
        )?;
        if unresolved.is_empty() {
            break;
        }
        // A soft dependency may name an alias ("crct10dif" → crypto-crct10dif),
        // provided by one or more modules: resolve it through every module's aliases.
        let index = match &mut aliases {
            Some(i) => i,
            None => aliases.insert(alias_index(&by_name)?),
        };
        for (dep, owner) in unresolved {
            let providers = index
                .get(&dep)
                .or_else(|| index.get(&format!("crypto-{dep}")))
                .cloned()
                .unwrap_or_default();
            for p in providers {
                sel.softdeps
                    .entry(owner.clone())
                    .or_default()
                    .insert(p.clone());
                queue.push((p, format!("soft dependency of {owner}"), true));
            }
        }
        if queue.is_empty() {
            break;
        }
    }
    Ok(sel)
}

/// Every module's aliases (and names), for resolving soft dependencies.
fn alias_index(
    by_name: &BTreeMap<String, (PathBuf, String)>,
) -> Result<BTreeMap<String, BTreeSet<String>>, SelectError> {
    let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (path, _)) in by_name {
        let data = modinfo::read_module(path)?;
        let Ok(info) = modinfo::parse(path, &data) else {
            continue;
        };
        for a in info.aliases.iter().filter(|a| !a.contains('*')) {
            index.entry(a.clone()).or_default().insert(name.clone());
        }
    }
    Ok(index)
}

type Queue = Vec<(String, String, bool)>;

/// Takes modules off the queue until it is empty, adding each with its
/// dependencies; soft dependencies that name no module go to `unresolved`.
fn drain(
    queue: &mut Queue,
    sel: &mut Selection,
    by_name: &BTreeMap<String, (PathBuf, String)>,
    builtin: &BTreeSet<String>,
    firmware_dir: Option<&Path>,
    unresolved: &mut Vec<(String, String)>,
) -> Result<(), SelectError> {
    while let Some((name, reason, soft)) = queue.pop() {
        if sel.modules.contains_key(&name) || builtin.contains(&name) {
            continue;
        }
        let Some((path, rel)) = by_name.get(&name) else {
            if soft {
                if let Some(owner) = reason.strip_prefix("soft dependency of ") {
                    unresolved.push((name, owner.to_string()));
                }
            } else {
                sel.left_out.insert(
                    name,
                    format!("not found in the kernel's modules ({reason})"),
                );
            }
            continue;
        };
        let data = modinfo::read_module(path)?;
        let info = match modinfo::parse(path, &data) {
            Ok(i) => i,
            Err(e) => {
                sel.left_out.insert(name, e.to_string());
                continue;
            }
        };
        for dep in &info.depends {
            queue.push((dep.clone(), format!("dependency of {name}"), false));
        }
        for dep in &info.softdeps {
            queue.push((dep.clone(), format!("soft dependency of {name}"), true));
        }
        for fw in &info.firmware {
            match firmware_dir.map(|d| d.join(fw)) {
                Some(p) if p.is_file() => {
                    if let Ok(bytes) = std::fs::read(&p) {
                        sel.firmware.insert(fw.clone(), bytes);
                    }
                }
                _ => {
                    sel.missing_firmware.insert(fw.clone());
                }
            }
        }
        let rel_path = uncompressed_ko_path(rel);
        if soft {
            if let Some(owner) = reason.strip_prefix("soft dependency of ") {
                sel.softdeps
                    .entry(owner.to_string())
                    .or_default()
                    .insert(name.clone());
            }
        }
        sel.modules.insert(
            name,
            Module {
                rel_path,
                data,
                info,
                reason,
            },
        );
    }
    Ok(())
}

impl Selection {
    /// Stores every module zstd-compressed at `level`, as `<path>.ko.zst`
    /// (deterministic: single-threaded, no dictionary). The agent loads them
    /// through the kernel's own decompression (Linux ≥ 6.6) or decompresses
    /// them itself; either way only the modules the hardware needs are ever
    /// decompressed, instead of every module at each boot as part of the
    /// initramfs.
    pub fn compress_modules(&mut self, level: i32) -> std::io::Result<()> {
        for m in self.modules.values_mut() {
            if m.rel_path.ends_with(".ko") {
                m.data = zstd::bulk::compress(&m.data, level)?;
                m.rel_path.push_str(".zst");
            }
        }
        Ok(())
    }

    /// `modules.dep` in depmod's format: `path: dep dep …`, where the
    /// dependencies are listed so that loading them from last to first
    /// satisfies every module (as modprobe does).
    pub fn modules_dep(&self) -> String {
        let mut out = String::new();
        for m in self.modules.values() {
            let mut order = Vec::new();
            let mut seen = BTreeSet::new();
            self.post_order(&m.info.name, &mut seen, &mut order);
            order.pop(); // the module itself
            order.reverse();
            let deps: Vec<&str> = order
                .iter()
                .filter_map(|n| self.modules.get(n).map(|d| d.rel_path.as_str()))
                .collect();
            out.push_str(&m.rel_path);
            out.push(':');
            for d in deps {
                out.push(' ');
                out.push_str(d);
            }
            out.push('\n');
        }
        out
    }

    fn post_order(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some(m) = self.modules.get(name) {
            for d in &m.info.depends {
                self.post_order(d, seen, out);
            }
        }
        out.push(name.to_string());
    }

    /// `modules.softdep` in modprobe.d's format: `softdep <module> pre: <module>…`.
    /// Soft dependencies are loaded before the module, best effort (some,
    /// like CPU-specific crypto drivers, fail on hardware without the feature).
    pub fn modules_softdep(&self) -> String {
        let mut out = String::from("# Soft dependencies, resolved to module names.\n");
        for (owner, deps) in &self.softdeps {
            let deps: Vec<&str> = deps
                .iter()
                .filter(|d| self.modules.contains_key(*d))
                .map(String::as_str)
                .collect();
            if self.modules.contains_key(owner) && !deps.is_empty() {
                out.push_str(&format!("softdep {owner} pre: {}\n", deps.join(" ")));
            }
        }
        out
    }

    /// `modules.alias` in depmod's format: `alias <pattern> <module>`.
    pub fn modules_alias(&self) -> String {
        let mut out = String::from("# Aliases extracted from modules themselves.\n");
        for m in self.modules.values() {
            for a in &m.info.aliases {
                out.push_str(&format!("alias {a} {}\n", m.info.name));
            }
        }
        out
    }
}

/// A module's path as the initramfs holds it: uncompressed, so `.ko.xz` and
/// `.ko.zst` become `.ko` (paths without `.ko` stay as they are).
pub fn uncompressed_ko_path(rel: &str) -> String {
    match rel.find(".ko") {
        Some(i) => format!("{}.ko", &rel[..i]),
        None => rel.to_owned(),
    }
}

//! The hardware inventory, read directly from sysfs, procfs and DMI without
//! running any tool, in ironic-python-agent's document shape
//! ([`ingot_proto::inventory::Inventory`]).
//!
//! Every reader takes a root directory, so the same code runs on the live
//! system (`/`) and on fixture trees captured from real machines
//! (`agent/tests/fixtures/capture.sh`). Things that only exist on a live
//! system (interface addresses through `getifaddrs`, LLDP frames, the IPMI
//! device) are read only when the root is `/`.

mod addresses;
mod bmc;
mod cpu;
mod disks;
mod dmi;
mod interfaces;
pub mod lldp;
mod memory;
mod midr;
mod sysfs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ingot_proto::inventory::{Boot, Inventory};

pub use disks::list_disks;

/// What to read and from where.
#[derive(Debug, Clone)]
pub struct InventoryOptions {
    /// Root of the tree holding `proc/` and `sys/` (`/` on a live system).
    pub root: PathBuf,
    /// Listen this long for LLDP frames on every interface with carrier
    /// (live systems only; `None` leaves `lldp` null, as IPA does by default).
    pub lldp_timeout: Option<Duration>,
    /// Ask the BMC for its addresses through `/dev/ipmi0` (live systems only).
    pub bmc: bool,
}

impl Default for InventoryOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            lldp_timeout: None,
            bmc: true,
        }
    }
}

impl InventoryOptions {
    /// True when reading the running system rather than a fixture tree.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Collects the whole inventory. Missing files give `null` values, never errors:
/// an inventory of a strange machine is still an inventory.
pub fn collect(opts: &InventoryOptions) -> Inventory {
    let root = &opts.root;
    let live = opts.is_live();
    let mut interfaces = interfaces::list(root, live);
    if let (true, Some(timeout)) = (live, opts.lldp_timeout) {
        let names: Vec<String> = interfaces
            .iter()
            .filter(|i| i.has_carrier)
            .map(|i| i.name.clone())
            .collect();
        let mut found = lldp::capture(&names, timeout);
        for i in &mut interfaces {
            i.lldp = Some(found.remove(&i.name).unwrap_or_default());
        }
    }
    let bmc = if live && opts.bmc {
        bmc::query(Path::new("/dev/ipmi0"))
    } else {
        bmc::BmcInfo::default()
    };
    Inventory {
        cpu: cpu::read(root, live),
        memory: memory::read(root),
        disks: disks::list_disks(root),
        interfaces,
        bmc_address: bmc.address,
        bmc_v6address: bmc.v6address,
        bmc_mac: bmc.mac,
        system_vendor: dmi::read(root),
        boot: Boot {
            current_boot_mode: boot_mode(root).to_string(),
            pxe_interface: bootif(root),
        },
        hostname: sysfs::read_trimmed(&root.join("proc/sys/kernel/hostname")).unwrap_or_default(),
    }
}

/// `uefi` when the kernel was started by UEFI firmware, else `bios`.
pub fn boot_mode(root: &Path) -> &'static str {
    if root.join("sys/firmware/efi").is_dir() {
        "uefi"
    } else {
        "bios"
    }
}

/// The raw `BOOTIF=` value of the kernel command line (IPA reports it as is).
fn bootif(root: &Path) -> Option<String> {
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("BOOTIF="))
        .map(str::to_string)
}

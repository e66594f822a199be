//! The hardware inventory document, in ironic-python-agent's shape: what
//! `ingot-agent inventory` prints, what `poll.get_hardware_info` returns, and
//! what the coordinator turns into node properties and ports.
//!
//! Keys and types follow IPA's `list_hardware_info()` serialization exactly;
//! values the hardware does not provide are `null`. Deserialization is lenient
//! (missing keys take defaults), so inventories sent by a real IPA parse too.

use serde::{Deserialize, Serialize};

/// The whole inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inventory {
    /// Processors.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Whole disks (no partitions, no ram/zram/loop devices of size 0).
    pub disks: Vec<Disk>,
    /// Network interfaces other than loopback.
    pub interfaces: Vec<Interface>,
    /// IPv4 address of the BMC: `null` without `/dev/ipmi0`, `0.0.0.0` if unset.
    pub bmc_address: Option<String>,
    /// IPv6 address of the BMC: `null` without `/dev/ipmi0`, `::/0` if unset.
    pub bmc_v6address: Option<String>,
    /// MAC address of the BMC's LAN channel, when known (omitted otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bmc_mac: Option<String>,
    /// Vendor data from DMI/SMBIOS.
    pub system_vendor: SystemVendor,
    /// How the machine booted.
    pub boot: Boot,
    /// The kernel's host name.
    pub hostname: String,
}

/// Processors (IPA `CPU`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    /// Model name of the first processor.
    pub model_name: Option<String>,
    /// Maximum frequency in MHz as a decimal string (current frequency if unknown).
    pub frequency: Option<String>,
    /// Logical CPUs.
    pub count: u32,
    /// Architecture, e.g. `x86_64`.
    pub architecture: String,
    /// CPU flags of the first processor.
    pub flags: Vec<String>,
    /// Physical packages.
    pub socket_count: u32,
}

/// Memory (IPA `Memory`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// Bytes visible to the kernel (`MemTotal`).
    pub total: u64,
    /// MiB of installed memory modules (SMBIOS type 17), when known.
    pub physical_mb: Option<u64>,
}

/// A whole disk (IPA `BlockDevice`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    /// Device path, e.g. `/dev/sda`.
    pub name: String,
    /// Model string.
    pub model: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Spinning disk.
    pub rotational: bool,
    /// World wide name (`0x…`, `eui.…`, `naa.…`).
    pub wwn: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Vendor string (SCSI/ATA).
    pub vendor: Option<String>,
    /// WWN with vendor extension.
    pub wwn_with_extension: Option<String>,
    /// Vendor extension of the WWN.
    pub wwn_vendor_extension: Option<String>,
    /// SCSI address `H:C:T:L`.
    pub hctl: Option<String>,
    /// Stable path, e.g. `/dev/disk/by-path/pci-0000:00:1f.2-ata-1`.
    pub by_path: Option<String>,
    /// Logical sector size in bytes.
    pub logical_sectors: Option<u64>,
    /// Physical sector size in bytes.
    pub physical_sectors: Option<u64>,
    /// Transport: `sata`, `sas`, `nvme`, `usb`, `virtio`, …
    pub tran: Option<String>,
}

/// A network interface (IPA `NetworkInterface`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    /// Kernel name, e.g. `eno1`.
    pub name: String,
    /// MAC address, lower case.
    pub mac_address: String,
    /// First IPv4 address.
    pub ipv4_address: Option<String>,
    /// First IPv6 address (link-local ones carry `%<name>`).
    pub ipv6_address: Option<String>,
    /// Link detected.
    pub has_carrier: bool,
    /// LLDP TLVs received: `[type, hex value]` pairs, or `null` if not collected.
    pub lldp: Option<Vec<(u8, String)>>,
    /// PCI vendor ID, e.g. `0x8086`.
    pub vendor: Option<String>,
    /// PCI device ID, e.g. `0x1572`.
    pub product: Option<String>,
    /// InfiniBand DHCP client ID.
    pub client_id: Option<String>,
    /// biosdevname (never computed by Ingot).
    pub biosdevname: Option<String>,
    /// Link speed in Mbit/s.
    pub speed_mbps: Option<u32>,
    /// PCI address, e.g. `0000:31:00.0`.
    pub pci_address: Option<String>,
    /// Kernel driver name.
    pub driver: Option<String>,
}

/// DMI/SMBIOS system information.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemVendor {
    /// Product name.
    pub product_name: Option<String>,
    /// System serial number.
    pub serial_number: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Firmware (BIOS/UEFI) information.
    pub firmware: Firmware,
}

/// Firmware information.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Firmware {
    /// Firmware vendor.
    pub vendor: Option<String>,
    /// Firmware version.
    pub version: Option<String>,
    /// Release date as the firmware states it.
    pub build_date: Option<String>,
}

/// Boot information.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Boot {
    /// `uefi` or `bios`.
    pub current_boot_mode: String,
    /// The PXE interface's MAC from `BOOTIF=`, when given.
    pub pxe_interface: Option<String>,
}

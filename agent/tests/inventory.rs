//! `ingot-agent inventory` against fixture trees captured from a QEMU q35 VM
//! booted with OVMF (virtio-blk, NVMe, AHCI disks; virtio-net and e1000 NICs;
//! SMBIOS strings set on the QEMU command line) and from the Firecracker VM
//! the project is developed on. See agent/tests/fixtures/capture.sh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ingot_proto::inventory::Inventory;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn inventory(root: &Path) -> Inventory {
    let out = Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .args(["inventory", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn qemu_q35_uefi_inventory() {
    let inv = inventory(&fixture("qemu-q35-uefi"));
    assert_eq!(inv.cpu.count, 2);
    assert_eq!(inv.cpu.socket_count, 2);
    assert_eq!(inv.cpu.architecture, "x86_64");
    assert_eq!(
        inv.cpu.model_name.as_deref(),
        Some("QEMU Virtual CPU version 2.5+")
    );
    assert!(inv.cpu.flags.iter().any(|f| f == "lm"));
    assert_eq!(inv.memory.total, 473_190_400);
    assert_eq!(inv.memory.physical_mb, Some(512));

    let names: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["/dev/nvme0n1", "/dev/sda", "/dev/vda"]);
    let nvme = &inv.disks[0];
    assert_eq!(nvme.size, 64 << 20);
    assert_eq!(nvme.model.as_deref(), Some("QEMU NVMe Ctrl"));
    assert_eq!(nvme.serial.as_deref(), Some("NVME-SER-1"));
    assert_eq!(nvme.tran.as_deref(), Some("nvme"));
    assert!(!nvme.rotational);
    assert_eq!(
        nvme.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:05.0-nvme-1")
    );
    assert!(
        nvme.wwn
            .as_deref()
            .is_some_and(|w| w.starts_with("nvme.1b36-"))
    );
    let sata = &inv.disks[1];
    assert_eq!(sata.model.as_deref(), Some("INGOT-SATA-64M"));
    assert_eq!(sata.vendor.as_deref(), Some("ATA"));
    assert_eq!(sata.serial.as_deref(), Some("SATA-SER-1"));
    assert_eq!(sata.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
    assert_eq!(
        sata.wwn_with_extension.as_deref(),
        Some("0x5000c500a1b2c3d4")
    );
    assert_eq!(sata.hctl.as_deref(), Some("0:0:0:0"));
    assert_eq!(sata.tran.as_deref(), Some("sata"));
    assert!(sata.rotational);
    assert_eq!(
        sata.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-1")
    );
    let vda = &inv.disks[2];
    assert_eq!(vda.serial.as_deref(), Some("VIRTIO-SER-1"));
    assert_eq!(vda.tran.as_deref(), Some("virtio"));
    assert_eq!(
        vda.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:04.0")
    );
    assert_eq!(vda.logical_sectors, Some(512));

    assert_eq!(inv.interfaces.len(), 2);
    let eth0 = &inv.interfaces[0];
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.mac_address, "52:54:00:12:34:56");
    assert_eq!(eth0.ipv4_address.as_deref(), Some("10.0.2.15"));
    assert!(eth0.has_carrier);
    assert_eq!(eth0.driver.as_deref(), Some("virtio_net"));
    assert_eq!(eth0.pci_address.as_deref(), Some("0000:00:02.0"));
    let eth1 = &inv.interfaces[1];
    assert_eq!(eth1.mac_address, "52:54:00:ab:cd:ef");
    assert_eq!(eth1.driver.as_deref(), Some("e1000"));
    assert_eq!(eth1.vendor.as_deref(), Some("0x8086"));
    assert_eq!(eth1.product.as_deref(), Some("0x100e"));
    assert_eq!(eth1.speed_mbps, Some(1000));
    assert_eq!(eth1.ipv4_address, None);
    assert_eq!(
        eth1.ipv6_address.as_deref(),
        Some("fec0::5054:ff:feab:cdef")
    );

    assert_eq!(
        inv.system_vendor.manufacturer.as_deref(),
        Some("Ingot Labs")
    );
    assert_eq!(
        inv.system_vendor.product_name.as_deref(),
        Some("Virtual Node 1")
    );
    assert_eq!(inv.system_vendor.serial_number.as_deref(), Some("VN-0001"));
    assert_eq!(
        inv.system_vendor.firmware.vendor.as_deref(),
        Some("EDK II test")
    );
    assert_eq!(inv.system_vendor.firmware.version.as_deref(), Some("1.2.3"));
    assert_eq!(
        inv.system_vendor.firmware.build_date.as_deref(),
        Some("01/02/2024")
    );
    assert_eq!(inv.boot.current_boot_mode, "uefi");
    assert_eq!(
        inv.boot.pxe_interface.as_deref(),
        Some("01-52-54-00-12-34-56")
    );
    assert_eq!(inv.hostname, "qemu-node");
    assert_eq!(inv.bmc_address, None);
}

#[test]
fn firecracker_host_inventory() {
    let inv = inventory(&fixture("host-firecracker"));
    assert_eq!(inv.cpu.count, 2);
    assert_eq!(inv.cpu.socket_count, 1);
    assert_eq!(
        inv.cpu.model_name.as_deref(),
        Some("Intel(R) Xeon(R) Processor")
    );
    assert_eq!(inv.memory.total, 25_276_502_016);
    assert_eq!(inv.memory.physical_mb, None);
    // loop and zram devices are not disks.
    assert_eq!(inv.disks.len(), 1);
    let vda = &inv.disks[0];
    assert_eq!(vda.name, "/dev/vda");
    assert_eq!(vda.size, 256 << 30);
    assert_eq!(vda.serial.as_deref(), Some("overlayblk"));
    assert_eq!(vda.physical_sectors, Some(4096));
    assert_eq!(
        vda.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:02.0")
    );
    // ifb0/ifb1 are virtual (no device link) and lo is skipped.
    assert_eq!(inv.interfaces.len(), 1);
    let eth0 = &inv.interfaces[0];
    assert_eq!(eth0.mac_address, "02:fc:00:00:00:01");
    assert_eq!(eth0.ipv4_address.as_deref(), Some("192.0.2.2"));
    assert_eq!(eth0.ipv6_address.as_deref(), Some("fd00::2"));
    assert_eq!(inv.system_vendor.manufacturer, None);
    assert_eq!(inv.boot.current_boot_mode, "bios");
    assert_eq!(inv.boot.pxe_interface, None);
    assert_eq!(inv.hostname, "vm");
}

#[test]
fn live_inventory_is_well_formed() {
    let inv = inventory(Path::new("/"));
    assert!(inv.cpu.count >= 1);
    assert!(inv.memory.total > 0);
    assert!(!inv.cpu.architecture.is_empty());
    for d in &inv.disks {
        assert!(d.name.starts_with("/dev/") && d.size > 0, "{d:?}");
    }
}

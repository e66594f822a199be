//! Disks from `/sys/block`: size, rotation, sector sizes, identity (model,
//! vendor, serial, WWN), SCSI address, transport and the udev-style by-path
//! name, all derived from sysfs attributes and the device's sysfs path.

use std::path::Path;

use ingot_proto::inventory::Disk;

use super::sysfs;

/// Kernel name prefixes that are never installation targets (IPA lists only
/// lsblk types disk/raid/mpath; these are loop, ram, rom, floppy, … devices).
const SKIPPED_PREFIXES: &[&str] = &["loop", "ram", "zram", "fd", "sr", "nbd", "dm-", "mtdblock"];

/// Lists whole disks under `<root>/sys/block`, sorted by name.
pub fn list_disks(root: &Path) -> Vec<Disk> {
    sysfs::sorted_entries(&root.join("sys/block"))
        .into_iter()
        .filter(|n| !SKIPPED_PREFIXES.iter().any(|p| n.starts_with(p)))
        .filter_map(|n| read_disk(root, &n))
        .collect()
}

fn read_disk(root: &Path, name: &str) -> Option<Disk> {
    let link = root.join("sys/block").join(name);
    let real = sysfs::resolve(&link).unwrap_or(link);
    let size = sysfs::read_u64(&real.join("size"))? * 512;
    if size == 0 {
        return None;
    }
    let device = sysfs::resolve(&real.join("device"));
    let dev_attr = |a: &str| {
        device
            .as_ref()
            .and_then(|d| sysfs::read_trimmed(&d.join(a)))
    };
    let path_str = real.to_string_lossy().into_owned();
    let tran = transport(&path_str, device.as_deref());
    let hctl = device.as_ref().and_then(|d| {
        sysfs::sorted_entries(&d.join("scsi_device"))
            .into_iter()
            .find(|n| n.split(':').count() == 4)
    });
    let serial = sysfs::read_trimmed(&real.join("serial"))
        .or_else(|| dev_attr("serial"))
        .or_else(|| {
            let d = device.as_ref()?;
            std::fs::read(d.join("vpd_pg80"))
                .ok()
                .and_then(|p| vpd_serial(&p))
        });
    let wwid = sysfs::read_trimmed(&real.join("wwid")).or_else(|| dev_attr("wwid"));
    let wwn = wwid
        .as_deref()
        .and_then(|w| wwn_from_wwid(w, tran.as_deref()));
    let by_path = by_path(&path_str, name, tran.as_deref(), hctl.as_deref(), &real);
    Some(Disk {
        name: format!("/dev/{name}"),
        model: dev_attr("model"),
        size,
        rotational: sysfs::read_u64(&real.join("queue/rotational")) == Some(1),
        wwn_with_extension: wwn.as_ref().map(|w| w.with_extension.clone()),
        wwn_vendor_extension: wwn.as_ref().and_then(|w| w.vendor_extension.clone()),
        wwn: wwn.map(|w| w.wwn),
        serial,
        vendor: dev_attr("vendor"),
        hctl,
        by_path,
        logical_sectors: sysfs::read_u64(&real.join("queue/logical_block_size")),
        physical_sectors: sysfs::read_u64(&real.join("queue/physical_block_size")),
        tran,
    })
}

/// The transport, as lsblk's TRAN column names it.
fn transport(path: &str, device: Option<&Path>) -> Option<String> {
    let has = |s: &str| path.contains(s);
    let t = if has("/nvme/") {
        "nvme"
    } else if has("/usb") {
        "usb"
    } else if path
        .split('/')
        .any(|c| c.starts_with("ata") && c[3..].bytes().all(|b| b.is_ascii_digit()) && c.len() > 3)
    {
        "sata"
    } else if has("/sas_") || path.split('/').any(|c| c.starts_with("end_device-")) {
        "sas"
    } else if has("/mmc_host/") || path.split('/').any(|c| c.starts_with("mmc")) {
        "mmc"
    } else if device
        .and_then(|d| sysfs::link_name(&d.join("subsystem")))
        .as_deref()
        == Some("virtio")
        || path.split('/').any(|c| c.starts_with("virtio"))
    {
        "virtio"
    } else {
        return None;
    };
    Some(t.to_string())
}

/// The serial number in a SCSI VPD page 0x80 (Unit Serial Number).
pub fn vpd_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(page[3]);
    let s = String::from_utf8_lossy(page.get(4..4 + len.min(page.len() - 4))?)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// A WWN split as udev does (`ID_WWN`, `ID_WWN_WITH_EXTENSION`,
/// `ID_WWN_VENDOR_EXTENSION`).
#[derive(Debug, PartialEq, Eq)]
pub struct Wwn {
    /// The WWN.
    pub wwn: String,
    /// The WWN with its vendor extension (= `wwn` without one).
    pub with_extension: String,
    /// The vendor extension (NAA 6 identifiers only).
    pub vendor_extension: Option<String>,
}

/// Turns a sysfs `wwid` into WWNs: `naa.` identifiers become `0x…` as udev
/// reports them; NVMe identifiers (`eui.`, `nvme.`, `uuid.`) are kept as lsblk
/// shows them; T10 vendor identifiers are not WWNs.
pub fn wwn_from_wwid(wwid: &str, tran: Option<&str>) -> Option<Wwn> {
    let wwid = wwid.trim();
    if let Some(hex) = wwid.strip_prefix("naa.") {
        let hex = hex.to_ascii_lowercase();
        if hex.len() == 32 {
            let (id, ext) = hex.split_at(16);
            return Some(Wwn {
                wwn: format!("0x{id}"),
                with_extension: format!("0x{hex}"),
                vendor_extension: Some(format!("0x{ext}")),
            });
        }
        let w = format!("0x{hex}");
        return Some(Wwn {
            wwn: w.clone(),
            with_extension: w,
            vendor_extension: None,
        });
    }
    if tran == Some("nvme") || wwid.starts_with("eui.") {
        return Some(Wwn {
            wwn: wwid.to_string(),
            with_extension: wwid.to_string(),
            vendor_extension: None,
        });
    }
    None
}

/// The name udev's path_id gives the disk in `/dev/disk/by-path` (the first
/// link in sorted order, which is what IPA reports).
fn by_path(
    path: &str,
    name: &str,
    tran: Option<&str>,
    hctl: Option<&str>,
    real: &Path,
) -> Option<String> {
    let pci = sysfs::pci_ancestor(Path::new(path))?;
    let suffix = match tran {
        Some("nvme") => {
            let nsid = sysfs::read_u64(&real.join("nsid")).or_else(|| {
                // nvme0n1 → namespace 1
                name.rsplit_once('n').and_then(|(_, n)| n.parse().ok())
            })?;
            format!("-nvme-{nsid}")
        }
        Some("sata") => {
            let port = path
                .split('/')
                .filter_map(|c| c.strip_prefix("ata"))
                .find(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?;
            format!("-ata-{port}")
        }
        Some("virtio") if hctl.is_none() => String::new(),
        Some("usb") => return None,
        _ => format!("-scsi-{}", hctl?),
    };
    Some(format!("/dev/disk/by-path/pci-{pci}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wwns() {
        assert_eq!(
            wwn_from_wwid("naa.5000c500a1b2c3d4", Some("sata")),
            Some(Wwn {
                wwn: "0x5000c500a1b2c3d4".into(),
                with_extension: "0x5000c500a1b2c3d4".into(),
                vendor_extension: None
            })
        );
        let w = wwn_from_wwid("naa.600508b1001c4d5e6f70819aabbccdde", None).unwrap();
        assert_eq!(w.wwn, "0x600508b1001c4d5e");
        assert_eq!(w.vendor_extension.as_deref(), Some("0x6f70819aabbccdde"));
        assert_eq!(
            wwn_from_wwid("t10.ATA     QEMU HARDDISK", Some("sata")),
            None
        );
    }

    #[test]
    fn vpd80() {
        let mut p = vec![0u8, 0x80, 0, 6];
        p.extend_from_slice(b" AB12 ");
        assert_eq!(vpd_serial(&p).as_deref(), Some("AB12"));
    }
}

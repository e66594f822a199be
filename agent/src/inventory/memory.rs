//! Memory: `MemTotal` from `/proc/meminfo`, and the installed modules from the
//! SMBIOS type 17 (Memory Device) tables the kernel exposes in
//! `/sys/firmware/dmi/entries/17-*/raw`.

use std::path::Path;

use ingot_proto::inventory::Memory;

use super::sysfs;

/// Reads the memory section.
pub fn read(root: &Path) -> Memory {
    let total = std::fs::read_to_string(root.join("proc/meminfo"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let entries = root.join("sys/firmware/dmi/entries");
    let sizes: Vec<u64> = sysfs::sorted_entries(&entries)
        .iter()
        .filter(|n| n.starts_with("17-"))
        .filter_map(|n| std::fs::read(entries.join(n).join("raw")).ok())
        .filter_map(|raw| memory_device_mib(&raw))
        .collect();
    Memory {
        total,
        physical_mb: (!sizes.is_empty()).then(|| sizes.iter().sum()),
    }
}

/// The size in MiB of one SMBIOS Memory Device structure (type 17), or `None`
/// for an empty slot or an unknown size.
///
/// Size is the word at offset 0x0C: 0 = no module, 0xFFFF = unknown,
/// 0x7FFF = see the Extended Size dword at 0x1C (MiB); bit 15 set = KiB units.
pub fn memory_device_mib(raw: &[u8]) -> Option<u64> {
    if raw.len() < 0x0E || raw[0] != 17 {
        return None;
    }
    let size = u16::from_le_bytes([raw[0x0C], raw[0x0D]]);
    match size {
        0 | 0xFFFF => None,
        0x7FFF => {
            let ext = raw.get(0x1C..0x20)?;
            Some(u64::from(
                u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]) & 0x7FFF_FFFF,
            ))
        }
        s if s & 0x8000 != 0 => Some(u64::from(s & 0x7FFF) / 1024),
        s => Some(u64::from(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smbios_sizes() {
        let mut raw = vec![0u8; 0x28];
        raw[0] = 17;
        raw[1] = 0x28;
        raw[0x0C..0x0E].copy_from_slice(&16384u16.to_le_bytes());
        assert_eq!(memory_device_mib(&raw), Some(16384));
        raw[0x0C..0x0E].copy_from_slice(&0x7FFFu16.to_le_bytes());
        raw[0x1C..0x20].copy_from_slice(&65536u32.to_le_bytes());
        assert_eq!(memory_device_mib(&raw), Some(65536));
        raw[0x0C..0x0E].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(memory_device_mib(&raw), None);
        raw[0x0C..0x0E].copy_from_slice(&(0x8000u16 | 2048).to_le_bytes());
        assert_eq!(memory_device_mib(&raw), Some(2));
    }
}

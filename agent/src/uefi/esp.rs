//! Finding the EFI system partition of a disk from its partition table: GPT
//! type `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`, or DOS type `0xEF`.

use std::fs::File;
use std::io;

use super::loadopt::{HardDrive, PartitionSignature};
use crate::ptable::{gpt, mbr};

/// The GPT partition type of an EFI system partition.
pub const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// The DOS partition type of an EFI system partition.
pub const MBR_ESP_TYPE: u8 = 0xef;

/// An EFI system partition on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Esp {
    /// 1-based partition number.
    pub number: u32,
    /// First logical block.
    pub first_lba: u64,
    /// Length in logical blocks.
    pub blocks: u64,
    /// Logical block size.
    pub sector: u64,
    /// The partition's GUID (GPT) or the disk's signature (DOS).
    pub signature: PartitionSignature,
}

impl Esp {
    /// The first byte on the disk (checked by [`find_esp`] not to overflow).
    pub fn offset(&self) -> u64 {
        self.first_lba.saturating_mul(self.sector)
    }

    /// The length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.sector)
    }

    /// The partition as a UEFI hard drive device path node describes it.
    pub fn hard_drive(&self) -> HardDrive {
        HardDrive {
            number: self.number,
            start: self.first_lba,
            size: self.blocks,
            signature: self.signature,
        }
    }
}

/// True if `first..first+blocks` blocks of `sector` bytes lie on a disk of
/// `disk_bytes`.
fn fits(first: u64, blocks: u64, sector: u64, disk_bytes: u64) -> bool {
    blocks > 0
        && first
            .checked_add(blocks)
            .and_then(|end| end.checked_mul(sector))
            .is_some_and(|end| end <= disk_bytes)
}

/// Finds the ESP of the disk `dev` (`disk_bytes` long, `sector`-byte logical
/// blocks): the first GPT partition of the ESP type, else the one whose
/// unique GUID is `uuid` (IPA's `efi_system_part_uuid`), else the first DOS
/// partition of type 0xEF. `None` if there is none, or it does not fit the
/// disk.
pub fn find_esp(
    dev: &File,
    sector: u64,
    disk_bytes: u64,
    uuid: Option<&str>,
) -> io::Result<Option<Esp>> {
    if let Some(table) = gpt::Gpt::read(dev, sector, disk_bytes)? {
        let parts = table.partitions();
        let by_type = parts.iter().find(|p| p.type_guid == ESP_TYPE_GUID);
        let by_uuid = || {
            let want = uuid?.to_ascii_lowercase();
            parts.iter().find(|p| p.unique_guid == want)
        };
        let Some(p) = by_type.or_else(by_uuid) else {
            return Ok(None);
        };
        let Some(blocks) = p
            .last_lba
            .checked_sub(p.first_lba)
            .and_then(|d| d.checked_add(1))
        else {
            return Ok(None);
        };
        let Some(guid) = gpt::guid_from_string(&p.unique_guid) else {
            return Ok(None);
        };
        return Ok(
            fits(p.first_lba, blocks, sector, disk_bytes).then_some(Esp {
                number: p.number,
                first_lba: p.first_lba,
                blocks,
                sector,
                signature: PartitionSignature::Gpt(guid),
            }),
        );
    }
    let Some(s0) = mbr::read(dev)? else {
        return Ok(None);
    };
    if mbr::is_protective(&s0) {
        // A GPT disk whose GPT did not read: no partition to trust.
        return Ok(None);
    }
    let disk_id = u32::from_le_bytes([s0[440], s0[441], s0[442], s0[443]]);
    Ok(mbr::primaries(&s0)
        .into_iter()
        .find(|p| p.kind == MBR_ESP_TYPE)
        .filter(|p| fits(p.first, p.sectors, sector, disk_bytes))
        .map(|p| Esp {
            number: p.number,
            first_lba: p.first,
            blocks: p.sectors,
            sector,
            signature: PartitionSignature::Mbr(disk_id),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn dos_disk(kind: u8, first: u32, sectors: u32, disk_bytes: u64) -> File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(disk_bytes).unwrap();
        let mut s0 = [0u8; 512];
        s0[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        s0[446 + 4] = kind;
        s0[446 + 8..446 + 12].copy_from_slice(&first.to_le_bytes());
        s0[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
        s0[510] = 0x55;
        s0[511] = 0xaa;
        f.write_all_at(&s0, 0).unwrap();
        f
    }

    #[test]
    fn dos_esp_is_found_by_type_and_must_fit_the_disk() {
        let disk = 8u64 << 20;
        let f = dos_disk(0xef, 2048, 4096, disk);
        let esp = find_esp(&f, 512, disk, None).unwrap().unwrap();
        assert_eq!(
            (esp.number, esp.offset(), esp.len_bytes()),
            (1, 1 << 20, 2 << 20)
        );
        assert_eq!(esp.signature, PartitionSignature::Mbr(0x1234_5678));
        // Not an ESP.
        let f = dos_disk(0x83, 2048, 4096, disk);
        assert_eq!(find_esp(&f, 512, disk, None).unwrap(), None);
        // Beyond the end of the disk, or empty: refused.
        let f = dos_disk(0xef, 2048, u32::MAX, disk);
        assert_eq!(find_esp(&f, 512, disk, None).unwrap(), None);
        let f = dos_disk(0xef, 2048, 0, disk);
        assert_eq!(find_esp(&f, 512, disk, None).unwrap(), None);
        // A protective MBR without a readable GPT: nothing trusted.
        let f = dos_disk(0xee, 1, 16383, disk);
        assert_eq!(find_esp(&f, 512, disk, None).unwrap(), None);
    }
}

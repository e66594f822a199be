//! `EFI_LOAD_OPTION` (the contents of a `Boot####` variable, UEFI 2.10
//! §3.1.3) and the device path nodes Ingot writes (§10.3): a hard drive
//! media node for the ESP, a file path node for the loader, and the end node.
//! Also a text form of device paths in efibootmgr's style, which
//! `clean_uefi_nvram`'s patterns are matched against (as IPA matches them
//! against `efibootmgr -v`).

use crate::ptable::gpt::guid_to_string;

/// `LOAD_OPTION_ACTIVE`.
pub const LOAD_OPTION_ACTIVE: u32 = 0x0000_0001;
/// Largest device path walked when rendering (bytes) and most nodes.
const MAX_NODES: usize = 64;

const MEDIA: u8 = 0x04;
const MEDIA_HARD_DRIVE: u8 = 0x01;
const MEDIA_FILE_PATH: u8 = 0x04;
const END: u8 = 0x7f;
const END_ENTIRE: u8 = 0xff;

/// How the partition of a hard drive node is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionSignature {
    /// The GPT partition's unique GUID, in its on-disk (mixed-endian) bytes.
    Gpt([u8; 16]),
    /// The DOS disk signature (the `u32` at offset 440 of sector 0).
    Mbr(u32),
}

/// A hard drive media device path node's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardDrive {
    /// 1-based partition number.
    pub number: u32,
    /// First logical block.
    pub start: u64,
    /// Logical blocks.
    pub size: u64,
    /// Partition identification.
    pub signature: PartitionSignature,
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The hard drive media node (§10.3.5.1), 42 bytes.
pub fn hard_drive_node(hd: &HardDrive) -> Vec<u8> {
    let mut n = Vec::with_capacity(42);
    n.extend_from_slice(&[MEDIA, MEDIA_HARD_DRIVE]);
    n.extend_from_slice(&42u16.to_le_bytes());
    n.extend_from_slice(&hd.number.to_le_bytes());
    n.extend_from_slice(&hd.start.to_le_bytes());
    n.extend_from_slice(&hd.size.to_le_bytes());
    let mut sig = [0u8; 16];
    let (format, kind) = match hd.signature {
        PartitionSignature::Gpt(g) => {
            sig = g;
            (0x02, 0x02)
        }
        PartitionSignature::Mbr(id) => {
            sig[..4].copy_from_slice(&id.to_le_bytes());
            (0x01, 0x01)
        }
    };
    n.extend_from_slice(&sig);
    n.extend_from_slice(&[format, kind]);
    n
}

/// The file path media node (§10.3.5.4): `path` as a NUL-terminated UCS-2
/// string. `None` if the node would be longer than its 16-bit length field.
pub fn file_path_node(path: &str) -> Option<Vec<u8>> {
    let name = utf16z(path);
    let len = u16::try_from(name.len().checked_add(4)?).ok()?;
    let mut n = vec![MEDIA, MEDIA_FILE_PATH];
    n.extend_from_slice(&len.to_le_bytes());
    n.extend_from_slice(&name);
    Some(n)
}

/// `HD(...)/File(path)/End`: the device path of a loader on a partition.
/// The loader paths Ingot writes are short constants.
pub fn disk_file_path(hd: &HardDrive, path: &str) -> Vec<u8> {
    let mut p = hard_drive_node(hd);
    p.extend(file_path_node(path).unwrap_or_default());
    p.extend_from_slice(&[END, END_ENTIRE, 4, 0]);
    p
}

/// A decoded (or to be encoded) `EFI_LOAD_OPTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    /// Attributes (`LOAD_OPTION_ACTIVE`, ...).
    pub attributes: u32,
    /// The description shown by the boot manager.
    pub description: String,
    /// The device path list (`FilePathList`).
    pub file_path: Vec<u8>,
    /// Optional data after the path list.
    pub optional_data: Vec<u8>,
}

impl LoadOption {
    /// The variable data. `None` if the path list exceeds 64 KiB.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let fpl = u16::try_from(self.file_path.len()).ok()?;
        let mut v = Vec::new();
        v.extend_from_slice(&self.attributes.to_le_bytes());
        v.extend_from_slice(&fpl.to_le_bytes());
        v.extend(utf16z(&self.description));
        v.extend_from_slice(&self.file_path);
        v.extend_from_slice(&self.optional_data);
        Some(v)
    }

    /// Parses variable data; `None` if it is malformed.
    pub fn decode(data: &[u8]) -> Option<LoadOption> {
        let attributes = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
        let fpl = usize::from(u16::from_le_bytes(data.get(4..6)?.try_into().ok()?));
        let mut units = Vec::new();
        let mut at = 6usize;
        loop {
            let c = u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?);
            at += 2;
            if c == 0 {
                break;
            }
            units.push(c);
        }
        let end = at.checked_add(fpl)?;
        Some(LoadOption {
            attributes,
            description: String::from_utf16_lossy(&units),
            file_path: data.get(at..end)?.to_vec(),
            optional_data: data.get(end..)?.to_vec(),
        })
    }
}

fn guid_at(b: &[u8]) -> String {
    b.get(..16).map(guid_to_string).unwrap_or_default()
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn render_node(kind: u8, sub: u8, d: &[u8]) -> String {
    match (kind, sub) {
        (MEDIA, MEDIA_HARD_DRIVE) if d.len() >= 38 => {
            let sig = match d[36] {
                0x02 => format!("GPT,{}", guid_at(&d[20..36])),
                0x01 => format!("MBR,0x{:x}", u32_at(d, 20)),
                other => format!("{other},0"),
            };
            format!(
                "HD({},{},0x{:x},0x{:x})",
                u32_at(d, 0),
                sig,
                u64_at(d, 4),
                u64_at(d, 12)
            )
        }
        (MEDIA, MEDIA_FILE_PATH) => {
            let units: Vec<u16> = d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|c| *c != 0)
                .collect();
            format!("File({})", String::from_utf16_lossy(&units))
        }
        (MEDIA, 0x06) => format!("FvFile({})", guid_at(d)),
        (MEDIA, 0x07) => format!("FvVol({})", guid_at(d)),
        (0x02, 0x01) if d.len() >= 8 && u32_at(d, 0) == 0x0a03_41d0 => {
            format!("PciRoot(0x{:x})", u32_at(d, 4))
        }
        (0x01, 0x01) if d.len() >= 2 => format!("Pci(0x{:x},0x{:x})", d[1], d[0]),
        (0x01, 0x04) => format!("VenHw({})", guid_at(d)),
        (0x03, 0x0a) => format!("VenMsg({})", guid_at(d)),
        (0x05, 0x01) => "BBS(...)".to_string(),
        _ => format!(
            "Path({kind},{sub},{})",
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// The text form of a device path list, efibootmgr-style:
/// `HD(1,GPT,<guid>,0x800,0x100000)/File(\EFI\BOOT\BOOTX64.EFI)`. Instances
/// are separated by `,`; a malformed node ends the text with `/?`.
pub fn render_device_path(mut dp: &[u8]) -> String {
    let mut out = String::new();
    for _ in 0..MAX_NODES {
        if dp.len() < 4 {
            break;
        }
        let (kind, sub) = (dp[0], dp[1]);
        let len = usize::from(u16::from_le_bytes([dp[2], dp[3]]));
        if len < 4 || len > dp.len() {
            out.push_str("/?");
            break;
        }
        if kind == END {
            if sub == END_ENTIRE {
                break;
            }
            out.push(',');
            dp = &dp[len..];
            continue;
        }
        if !out.is_empty() && !out.ends_with(',') {
            out.push('/');
        }
        out.push_str(&render_node(kind, sub, &dp[4..len]));
        dp = &dp[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptable::gpt::guid_from_string;

    /// `efibootmgr -c -d /dev/sda -p 1 -L ingot -l '\EFI\BOOT\BOOTX64.EFI'`
    /// for partition 1 at LBA 2048 of 204800 blocks, unique GUID
    /// 8c8f8eff-ac95-4770-814a-21994f2dbc8f: the bytes written out by hand
    /// from UEFI 2.10 §3.1.3 (EFI_LOAD_OPTION), §10.3.5.1 (hard drive),
    /// §10.3.5.4 (file path) and §10.3.1 (end of entire device path).
    #[test]
    fn load_option_bytes_match_the_spec() {
        let guid = guid_from_string("8c8f8eff-ac95-4770-814a-21994f2dbc8f").unwrap();
        let hd = HardDrive {
            number: 1,
            start: 2048,
            size: 204_800,
            signature: PartitionSignature::Gpt(guid),
        };
        let path = disk_file_path(&hd, "\\EFI\\BOOT\\BOOTX64.EFI");
        let opt = LoadOption {
            attributes: LOAD_OPTION_ACTIVE,
            description: "ingot".into(),
            file_path: path,
            optional_data: vec![],
        };
        let mut want: Vec<u8> = vec![
            0x01, 0x00, 0x00, 0x00, // Attributes: LOAD_OPTION_ACTIVE
            0x5e, 0x00, // FilePathListLength: 42 (HD) + 48 (File) + 4 (End)
        ];
        // Description "ingot\0" in UCS-2.
        want.extend_from_slice(&[b'i', 0, b'n', 0, b'g', 0, b'o', 0, b't', 0, 0, 0]);
        // HD: type 4, subtype 1, length 42.
        want.extend_from_slice(&[0x04, 0x01, 0x2a, 0x00]);
        want.extend_from_slice(&[0x01, 0x00, 0x00, 0x00]); // partition 1
        want.extend_from_slice(&[0x00, 0x08, 0, 0, 0, 0, 0, 0]); // start 0x800
        want.extend_from_slice(&[0x00, 0x20, 0x03, 0, 0, 0, 0, 0]); // size 0x32000
        // The GUID in its mixed-endian on-disk form.
        want.extend_from_slice(&[
            0xff, 0x8e, 0x8f, 0x8c, 0x95, 0xac, 0x70, 0x47, 0x81, 0x4a, 0x21, 0x99, 0x4f, 0x2d,
            0xbc, 0x8f,
        ]);
        want.extend_from_slice(&[0x02, 0x02]); // GPT, GUID signature
        // File: type 4, subtype 4, length 4 + (21 characters + NUL) * 2 = 48.
        want.extend_from_slice(&[0x04, 0x04, 0x30, 0x00]);
        for c in "\\EFI\\BOOT\\BOOTX64.EFI".bytes() {
            want.extend_from_slice(&[c, 0]);
        }
        want.extend_from_slice(&[0, 0]);
        // End of entire device path.
        want.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);
        assert_eq!(opt.encode().unwrap(), want);
        assert_eq!(LoadOption::decode(&want).unwrap(), opt);
        assert_eq!(
            render_device_path(&opt.file_path),
            "HD(1,GPT,8c8f8eff-ac95-4770-814a-21994f2dbc8f,0x800,0x32000)/File(\\EFI\\BOOT\\BOOTX64.EFI)"
        );
    }

    #[test]
    fn mbr_hard_drive_node() {
        let n = hard_drive_node(&HardDrive {
            number: 2,
            start: 63,
            size: 1000,
            signature: PartitionSignature::Mbr(0x494e_474f),
        });
        assert_eq!(n.len(), 42);
        assert_eq!(&n[24..28], &[0x4f, 0x47, 0x4e, 0x49]);
        assert!(n[28..40].iter().all(|b| *b == 0));
        assert_eq!(&n[40..42], &[0x01, 0x01]);
        let mut p = n;
        p.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        assert_eq!(render_device_path(&p), "HD(2,MBR,0x494e474f,0x3f,0x3e8)");
    }

    #[test]
    fn malformed_options_are_rejected_or_marked() {
        assert!(LoadOption::decode(&[1, 0, 0]).is_none());
        // No NUL after the description.
        assert!(LoadOption::decode(&[1, 0, 0, 0, 0, 0, b'a', 0]).is_none());
        // Path list longer than the data.
        assert!(LoadOption::decode(&[1, 0, 0, 0, 9, 0, 0, 0, 1, 2]).is_none());
        // A node whose length runs past the end.
        assert_eq!(render_device_path(&[4, 4, 0xff, 0, 0, 0]), "/?");
        // A node shorter than its header.
        assert_eq!(render_device_path(&[4, 4, 2, 0, 0, 0]), "/?");
        // PciRoot(0x0)/Pci(0x1,0x1): a firmware entry for a disk controller.
        let fw = [
            2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0, 1, 1, 6, 0, 1, 1, 0x7f, 0xff, 4, 0,
        ];
        assert_eq!(render_device_path(&fw), "PciRoot(0x0)/Pci(0x1,0x1)");
    }
}

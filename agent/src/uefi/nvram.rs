//! The firmware's boot entries: adding Ingot's (`Boot####` + `BootOrder`)
//! and removing stale ones during cleaning (IPA's `clean_uefi_nvram`).

use std::io;

use regex::Regex;
use serde::Serialize;

use super::efivars::{ATTRS_NV_BS_RT, EfiVars};
use super::loadopt::{LOAD_OPTION_ACTIVE, LoadOption, render_device_path};

/// The description of the entries Ingot writes.
pub const DESCRIPTION: &str = "ingot";
/// IPA's default `match_patterns`: every entry whose device path starts at a
/// hard drive partition (`HD(...)`), leaving network, firmware-application
/// and whole-device entries the firmware made itself.
pub const DEFAULT_CLEAN_PATTERNS: &[&str] = &["^HD"];

/// `Boot0003`.
pub fn boot_var_name(n: u16) -> String {
    format!("Boot{n:04X}")
}

/// What [`install_boot_entry`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOutcome {
    /// The entry's number.
    pub number: u16,
    /// False if an entry with the same device path was reused.
    pub created: bool,
    /// Other entries with our description (for another disk) removed.
    pub removed: Vec<u16>,
    /// `BootOrder` afterwards.
    pub boot_order: Vec<u16>,
}

fn read_entry(vars: &EfiVars, n: u16) -> io::Result<Option<LoadOption>> {
    Ok(vars
        .read(&boot_var_name(n))?
        .and_then(|(_, d)| LoadOption::decode(&d)))
}

/// Writes an active boot entry `description` for `file_path` (a device path
/// list) and puts it first in `BootOrder`. An entry with the same device
/// path is reused (made active, renamed); other entries with the same
/// description are removed, as IPA removes its labels before adding them.
pub fn install_boot_entry(
    vars: &EfiVars,
    file_path: &[u8],
    description: &str,
) -> io::Result<EntryOutcome> {
    let numbers = vars.boot_numbers()?;
    let mut reuse = None;
    let mut removed = Vec::new();
    for &n in &numbers {
        let Some(opt) = read_entry(vars, n)? else {
            continue;
        };
        if opt.file_path == file_path && reuse.is_none() {
            reuse = Some((n, opt));
        } else if opt.description == description {
            vars.remove(&boot_var_name(n))?;
            removed.push(n);
        }
    }
    let want = LoadOption {
        attributes: LOAD_OPTION_ACTIVE,
        description: description.to_string(),
        file_path: file_path.to_vec(),
        optional_data: Vec::new(),
    };
    let (number, created) = match reuse {
        Some((n, opt)) => {
            let same = opt.attributes & LOAD_OPTION_ACTIVE != 0 && opt.description == description;
            if !same {
                write_option(
                    vars,
                    n,
                    &LoadOption {
                        optional_data: opt.optional_data,
                        ..want
                    },
                )?;
            }
            (n, false)
        }
        None => {
            let n = (0..=u16::MAX)
                .find(|n| !numbers.contains(n) || removed.contains(n))
                .ok_or_else(|| io::Error::other("no free Boot#### number"))?;
            write_option(vars, n, &want)?;
            (n, true)
        }
    };
    let mut order: Vec<u16> = vars
        .boot_order()?
        .into_iter()
        .filter(|o| *o != number && !removed.contains(o))
        .collect();
    order.insert(0, number);
    vars.set_boot_order(&order)?;
    tracing::info!(entry = %boot_var_name(number), created, removed = removed.len(), "UEFI boot entry written");
    Ok(EntryOutcome {
        number,
        created,
        removed,
        boot_order: order,
    })
}

fn write_option(vars: &EfiVars, n: u16, opt: &LoadOption) -> io::Result<()> {
    let data = opt
        .encode()
        .ok_or_else(|| io::Error::other("device path too long"))?;
    vars.write(&boot_var_name(n), ATTRS_NV_BS_RT, &data)
}

/// A boot entry removed by [`clean_boot_entries`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedEntry {
    /// `Boot0003`.
    pub entry: String,
    /// Its description.
    pub description: String,
    /// Its device path in text form.
    pub path: String,
}

/// Removes every boot entry whose device path (in text form,
/// [`render_device_path`]) matches one of `patterns` (searched, as Python's
/// `re.search`), and drops them from `BootOrder`.
pub fn clean_boot_entries(vars: &EfiVars, patterns: &[Regex]) -> io::Result<Vec<RemovedEntry>> {
    let mut removed = Vec::new();
    let mut numbers = Vec::new();
    for n in vars.boot_numbers()? {
        let Some(opt) = read_entry(vars, n)? else {
            continue;
        };
        let path = render_device_path(&opt.file_path);
        if let Some(p) = patterns.iter().find(|p| p.is_match(&path)) {
            tracing::info!(entry = %boot_var_name(n), description = %opt.description, path = %path, pattern = %p, "removing UEFI boot entry");
            vars.remove(&boot_var_name(n))?;
            numbers.push(n);
            removed.push(RemovedEntry {
                entry: boot_var_name(n),
                description: opt.description,
                path,
            });
        }
    }
    if !numbers.is_empty() {
        let order = vars.boot_order()?;
        let kept: Vec<u16> = order
            .iter()
            .copied()
            .filter(|o| !numbers.contains(o))
            .collect();
        if kept != order {
            vars.set_boot_order(&kept)?;
        }
    }
    Ok(removed)
}

/// Compiles `clean_uefi_nvram` patterns, case-insensitively as IPA does.
pub fn compile_patterns(patterns: &[String]) -> Result<Vec<Regex>, regex::Error> {
    patterns
        .iter()
        .map(|p| {
            regex::RegexBuilder::new(p)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Against a plain directory standing in for efivarfs: this VM boots
    //! without UEFI variables, so no real efivarfs can be mounted here.
    //! The file format (4-byte attributes, then the data) is efivarfs's.

    use super::*;
    use crate::ptable::gpt::guid_from_string;
    use crate::uefi::loadopt::{HardDrive, PartitionSignature, disk_file_path};

    fn hd(n: u32, guid: &str) -> Vec<u8> {
        disk_file_path(
            &HardDrive {
                number: n,
                start: 2048,
                size: 4096,
                signature: PartitionSignature::Gpt(guid_from_string(guid).unwrap()),
            },
            "\\EFI\\BOOT\\BOOTX64.EFI",
        )
    }

    fn put(vars: &EfiVars, n: u16, desc: &str, path: Vec<u8>) {
        let opt = LoadOption {
            attributes: LOAD_OPTION_ACTIVE,
            description: desc.into(),
            file_path: path,
            optional_data: vec![],
        };
        vars.write(&boot_var_name(n), ATTRS_NV_BS_RT, &opt.encode().unwrap())
            .unwrap();
    }

    /// What OVMF makes for the PXE and the UEFI shell entries: not HD().
    fn firmware_path() -> Vec<u8> {
        let mut p = vec![2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0];
        p.extend_from_slice(&[1, 1, 6, 0, 0, 3, 0x7f, 0xff, 4, 0]);
        p
    }

    #[test]
    fn entry_is_added_first_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::new(dir.path());
        put(&vars, 0, "UEFI PXEv4", firmware_path());
        put(&vars, 1, "UEFI Shell", firmware_path());
        vars.set_boot_order(&[0, 1]).unwrap();
        let path = hd(1, "11111111-2222-3333-4444-555555555555");
        let first = install_boot_entry(&vars, &path, DESCRIPTION).unwrap();
        assert_eq!(first.number, 2);
        assert!(first.created);
        assert_eq!(first.boot_order, vec![2, 0, 1]);
        // The file is efivarfs's format: attributes 0x7, then the option.
        let raw = std::fs::read(
            dir.path()
                .join(format!("Boot0002-{}", super::super::efivars::GLOBAL_GUID)),
        )
        .unwrap();
        assert_eq!(&raw[..4], &[7, 0, 0, 0]);
        assert_eq!(LoadOption::decode(&raw[4..]).unwrap().file_path, path);
        assert_eq!(
            std::fs::read(
                dir.path()
                    .join(format!("BootOrder-{}", super::super::efivars::GLOBAL_GUID))
            )
            .unwrap(),
            vec![7, 0, 0, 0, 2, 0, 0, 0, 1, 0]
        );
        // The same path again: reused, no duplicate.
        let again = install_boot_entry(&vars, &path, DESCRIPTION).unwrap();
        assert_eq!((again.number, again.created), (2, false));
        assert_eq!(vars.boot_numbers().unwrap(), vec![0, 1, 2]);
        assert_eq!(vars.boot_order().unwrap(), vec![2, 0, 1]);
        // Another disk: the old ingot entry goes, the new one comes first.
        let other = hd(2, "66666666-2222-3333-4444-555555555555");
        let moved = install_boot_entry(&vars, &other, DESCRIPTION).unwrap();
        assert_eq!(moved.removed, vec![2]);
        assert_eq!(moved.number, 2);
        assert_eq!(vars.boot_order().unwrap(), vec![2, 0, 1]);
        assert_eq!(vars.boot_numbers().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn clean_removes_disk_entries_and_fixes_boot_order() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::new(dir.path());
        put(&vars, 0, "UEFI PXEv4", firmware_path());
        put(
            &vars,
            3,
            "debian",
            hd(1, "11111111-2222-3333-4444-555555555555"),
        );
        put(
            &vars,
            4,
            "ingot",
            hd(2, "66666666-2222-3333-4444-555555555555"),
        );
        vars.set_boot_order(&[4, 3, 0]).unwrap();
        let patterns = compile_patterns(&["^hd".to_string()]).unwrap();
        let removed = clean_boot_entries(&vars, &patterns).unwrap();
        let names: Vec<&str> = removed.iter().map(|r| r.entry.as_str()).collect();
        assert_eq!(names, ["Boot0003", "Boot0004"]);
        assert!(
            removed[0]
                .path
                .starts_with("HD(1,GPT,11111111-2222-3333-4444-555555555555,0x800,0x1000)")
        );
        assert_eq!(vars.boot_numbers().unwrap(), vec![0]);
        assert_eq!(vars.boot_order().unwrap(), vec![0]);
        // A pattern on the loader path only.
        put(&vars, 5, "x", hd(1, "11111111-2222-3333-4444-555555555555"));
        let none = compile_patterns(&["shimx64".to_string()]).unwrap();
        assert!(clean_boot_entries(&vars, &none).unwrap().is_empty());
        assert!(compile_patterns(&["(".to_string()]).is_err());
    }
}

//! The lab under UEFI (`--firmware uefi`): OVMF as pflash, and reading the
//! server's NVRAM from its variable store file.
//!
//! Each node gets its own copy of `OVMF_VARS_4M.fd` in its directory, the
//! writable second pflash; the code is the first, read-only. The file
//! outlives the QEMU processes the BMC starts and stops, as NVRAM outlives
//! power cycles. The lab reads it with [`boot_entries`]: the variable store
//! is log-structured (a deleted variable stays in the file, marked deleted,
//! until the store is compacted), so only variables in the `added` state
//! count.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::machine::Arch;

/// Debian's OVMF (package `ovmf`), 4 MiB flash layout.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Its empty variable store, copied per node.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Debian's AAVMF (package `qemu-efi-aarch64`), padded to the virt
/// machine's 64 MiB flash.
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
/// Its empty variable store, copied per node.
pub const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// The firmware's code and empty variable store for `arch`.
pub fn firmware_files(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => (OVMF_CODE, OVMF_VARS),
        Arch::Aarch64 => (AAVMF_CODE, AAVMF_VARS),
    }
}

/// The server's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    #[default]
    Bios,
    /// OVMF (UEFI) with a writable variable store per node.
    Uefi,
}

impl Firmware {
    /// Its name on the command line, in `report.json` and Ironic's `boot_mode`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bios => "bios",
            Self::Uefi => "uefi",
        }
    }
}

/// The node's variable store (`<node dir>/OVMF_VARS.fd`).
pub fn vars_file(node_dir: &Path) -> PathBuf {
    node_dir.join("OVMF_VARS.fd")
}

/// Makes the node's variable store from the firmware's empty one.
pub fn make_vars(node_dir: &Path, arch: Arch) -> Result<PathBuf> {
    let (code, empty) = firmware_files(arch);
    for f in [code, empty] {
        ensure!(
            Path::new(f).is_file(),
            "{f} not found: the UEFI lab needs Debian's {} package",
            match arch {
                Arch::X86_64 => "ovmf",
                Arch::Aarch64 => "qemu-efi-aarch64",
            }
        );
    }
    let vars = vars_file(node_dir);
    std::fs::copy(empty, &vars).with_context(|| format!("copying {empty}"))?;
    Ok(vars)
}

/// QEMU's arguments for the firmware with the node's variable store.
pub fn qemu_args(node_dir: &Path, arch: Arch) -> Vec<String> {
    let (code, _) = firmware_files(arch);
    vec![
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars_file(node_dir).display()
        ),
    ]
}

/// One `Boot####` variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootEntry {
    /// `Boot0003` → 3.
    pub number: u16,
    /// The option's description (`ingot`, `UEFI PXEv4 (MAC:…)`, …).
    pub description: String,
    /// Its device path, roughly as the UEFI shell shows it.
    pub path: String,
}

impl std::fmt::Display for BootEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Boot{:04X} \"{}\" {}",
            self.number, self.description, self.path
        )
    }
}

/// The live boot options and `BootOrder` of a variable store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Nvram {
    /// Live `Boot####` variables, by number.
    pub entries: Vec<BootEntry>,
    /// `BootOrder`, when set.
    pub boot_order: Vec<u16>,
}

impl Nvram {
    /// The live entries with this description.
    pub fn named(&self, description: &str) -> Vec<&BootEntry> {
        self.entries
            .iter()
            .filter(|e| e.description == description)
            .collect()
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn ucs2(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// A device path as text, for the nodes the lab meets (PCI, MAC, IPv4,
/// hard drive, file path); others as `Path(type,subtype)`.
fn device_path(mut b: &[u8]) -> String {
    let mut parts = vec![];
    while let (Some(&t), Some(&s), Some(len)) = (b.first(), b.get(1), u16_at(b, 2)) {
        let len = usize::from(len);
        if t == 0x7f || len < 4 || len > b.len() {
            break;
        }
        let body = &b[4..len];
        parts.push(match (t, s) {
            (1, 1) if body.len() >= 2 => format!("Pci({:#x},{:#x})", body[1], body[0]),
            (2, 1) => "PciRoot".into(),
            (3, 11) => "MAC".into(),
            (3, 12) => "IPv4".into(),
            (4, 1) if body.len() >= 4 => format!(
                "HD({},{})",
                u32_at(body, 0).unwrap_or(0),
                if body.get(37) == Some(&2) {
                    "GPT"
                } else {
                    "MBR"
                }
            ),
            (4, 4) => ucs2(body),
            (4, 6) => "FvFile".into(),
            (4, 7) => "Fv".into(),
            _ => format!("Path({t},{s})"),
        });
        b = &b[len..];
    }
    parts.join("/")
}

/// Decodes an `EFI_LOAD_OPTION`.
fn load_option(number: u16, data: &[u8]) -> Option<BootEntry> {
    let path_len = usize::from(u16_at(data, 4)?);
    let rest = data.get(6..)?;
    let end = rest
        .chunks_exact(2)
        .position(|c| c == [0, 0])?
        .checked_mul(2)?;
    let description = ucs2(&rest[..end]);
    let path_start = end.checked_add(2)?;
    let path = rest.get(path_start..path_start.checked_add(path_len)?)?;
    Some(BootEntry {
        number,
        description,
        path: device_path(path),
    })
}

/// `VAR_ADDED`: a variable whose later states (deleted) are not set.
const VAR_ADDED: u8 = 0x3f;
/// `VAR_ADDED & VAR_IN_DELETED_TRANSITION`: valid until its new copy is in.
const VAR_IN_TRANSITION: u8 = 0x3e;
/// The authenticated variable header's size.
const HEADER: usize = 60;

/// Reads the live boot options of an OVMF variable store (its firmware
/// volume header, then the authenticated variable store).
pub fn parse(store: &[u8]) -> Result<Nvram> {
    ensure!(
        store.get(40..44) == Some(b"_FVH"),
        "not a firmware volume (no _FVH signature)"
    );
    let fv_header = usize::from(u16_at(store, 0x30).context("truncated FV header")?);
    let vs = fv_header;
    let vs_size = usize::try_from(u32_at(store, vs + 16).context("truncated store header")?)?;
    let end = vs.saturating_add(vs_size).min(store.len());
    // After the 28-byte store header, 4-byte aligned.
    let mut at = (vs + 28 + 3) & !3;
    // name → (state, data): the added copy wins over one in transition.
    let mut live: Vec<(String, u8, Vec<u8>)> = vec![];
    while at + HEADER <= end && u16_at(store, at) == Some(0x55aa) {
        let state = store[at + 2];
        let name_size = usize::try_from(u32_at(store, at + 36).context("header")?)?;
        let data_size = usize::try_from(u32_at(store, at + 40).context("header")?)?;
        let name_at = at + HEADER;
        let data_at = name_at.checked_add(name_size).context("name size")?;
        let data_end = data_at.checked_add(data_size).context("data size")?;
        ensure!(data_end <= end, "variable at {at:#x} runs past the store");
        if state == VAR_ADDED || state == VAR_IN_TRANSITION {
            let name = ucs2(&store[name_at..data_at]);
            let data = store[data_at..data_end].to_vec();
            match live.iter_mut().find(|(n, _, _)| *n == name) {
                Some(slot) if state == VAR_ADDED || slot.1 != VAR_ADDED => {
                    *slot = (name, state, data)
                }
                Some(_) => {}
                None => live.push((name, state, data)),
            }
        }
        at = (data_end + 3) & !3;
    }
    let mut nvram = Nvram::default();
    for (name, _, data) in live {
        if name == "BootOrder" {
            nvram.boot_order = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
        } else if let Some(hex) = name.strip_prefix("Boot").filter(|h| h.len() == 4) {
            if let Ok(n) = u16::from_str_radix(hex, 16) {
                if let Some(e) = load_option(n, &data) {
                    nvram.entries.push(e);
                }
            }
        }
    }
    nvram.entries.sort_by_key(|e| e.number);
    Ok(nvram)
}

/// [`parse`] on a file.
pub fn boot_entries(vars: &Path) -> Result<Nvram> {
    let b = std::fs::read(vars).with_context(|| format!("reading {}", vars.display()))?;
    parse(&b).with_context(|| format!("parsing {}", vars.display()))
}

/// The firmware's boot log lines on the console (OVMF's BdsDxe prints which
/// option it loads and starts).
pub fn bds_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| l.contains("BdsDxe:"))
        .map(|l| crate::console::strip_ansi(l).trim().to_owned())
        .collect()
}

/// The description of the boot entry the agent writes.
pub const AGENT_ENTRY: &str = "ingot";

/// What the UEFI run proves (`uefi` in `report.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// `boot_mode` after inspection: `uefi`.
    pub inspected_boot_mode: String,
    /// The agent's answer to `image.install_bootloader`, from the
    /// coordinator's log (loader, ESP, boot entry).
    pub install_bootloader: String,
    /// The live boot entries (and `BootOrder`) in the node's variable
    /// store once the instance booted: the agent's `ingot` entry among them.
    pub after_deploy: Vec<String>,
    /// OVMF's own lines about the instance's boot (`BdsDxe: loading …`,
    /// `starting …`): which option it booted.
    pub firmware_boot_log: Vec<String>,
    /// What `clean_uefi_nvram` reported removing during the undeploy's
    /// cleaning.
    pub removed_by_cleaning: Vec<String>,
    /// The live boot entries once cleaning is over and the server is off:
    /// no `ingot` entry.
    pub after_cleaning: Vec<String>,
}

fn shown(n: &Nvram) -> Vec<String> {
    let mut v: Vec<String> = n.entries.iter().map(ToString::to_string).collect();
    v.push(format!(
        "BootOrder {}",
        n.boot_order
            .iter()
            .map(|b| format!("{b:04X}"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    v
}

/// The coordinator's `UEFI boot loader installed` line, reduced to the
/// agent's result text; it must name the NVRAM entry the agent wrote.
pub fn installed_line(coordinator_log: &Path) -> Result<String> {
    let log = std::fs::read_to_string(coordinator_log).unwrap_or_default();
    let line = log
        .lines()
        .rfind(|l| l.contains("UEFI boot loader installed"))
        .context("the coordinator did not install the UEFI boot loader (no `UEFI boot loader installed` in coordinator.log)")?;
    let text = line
        .split("install_bootloader: ")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or(line)
        .replace("\\\\", "\\");
    ensure!(
        text.contains("; Boot"),
        "the agent wrote no NVRAM boot entry: {text}"
    );
    Ok(text)
}

/// After the instance printed its marker: the agent's entry is live in the
/// variable store, and OVMF's boot lines for this boot show it started it.
pub fn check_booted(e: &mut Evidence, node_dir: &Path, console: &str) -> Result<()> {
    let n = boot_entries(&vars_file(node_dir))?;
    e.after_deploy = shown(&n);
    ensure!(
        !n.named(AGENT_ENTRY).is_empty(),
        "the agent's {AGENT_ENTRY:?} boot entry is not in the variable store after the instance booted: {:?}",
        e.after_deploy
    );
    let bds = bds_lines(console);
    // The last loading/starting pair is the instance's boot.
    let from = bds
        .iter()
        .rposition(|l| l.contains("loading"))
        .unwrap_or(bds.len());
    e.firmware_boot_log = bds[from..].to_vec();
    // OVMF keeps the entry first (it matches the disk QEMU's bootindex
    // names) and says so on the console.
    ensure!(
        e.firmware_boot_log
            .iter()
            .any(|l| l.contains("starting") && l.contains(&format!("{AGENT_ENTRY:?}"))),
        "OVMF did not start the agent's {AGENT_ENTRY:?} entry for the instance's boot: {:?}",
        e.firmware_boot_log
    );
    Ok(())
}

/// After the undeploy's cleaning, with the server off: the step reported
/// removing the agent's entry, and the store holds no live one.
pub fn check_cleaned(
    e: &mut Evidence,
    node_dir: &Path,
    clean_report: &serde_json::Value,
) -> Result<()> {
    let step = clean_report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["step"] == "clean_uefi_nvram" || s["clean_step"]["step"] == "clean_uefi_nvram")
        .with_context(|| {
            format!("the undeploy's cleaning did not run clean_uefi_nvram: {clean_report}")
        })?;
    let result = if step["result"].is_null() {
        &step["clean_result"]
    } else {
        &step["result"]
    };
    e.removed_by_cleaning = result["removed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {:?} {}",
                r["entry"].as_str().unwrap_or("?"),
                r["description"].as_str().unwrap_or(""),
                r["path"].as_str().unwrap_or("")
            )
        })
        .collect();
    ensure!(
        e.removed_by_cleaning
            .iter()
            .any(|r| r.contains(&format!("{AGENT_ENTRY:?}"))),
        "clean_uefi_nvram did not remove the {AGENT_ENTRY:?} entry: {step}"
    );
    let n = boot_entries(&vars_file(node_dir))?;
    e.after_cleaning = n.entries.iter().map(ToString::to_string).collect();
    ensure!(
        n.named(AGENT_ENTRY).is_empty(),
        "the {AGENT_ENTRY:?} boot entry is still live in the variable store after cleaning: {:?}",
        e.after_cleaning
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    fn var(state: u8, name: &str, data: &[u8]) -> Vec<u8> {
        let n = utf16z(name);
        let mut v = vec![0xaa, 0x55, state, 0];
        v.resize(36, 0);
        v.extend((n.len() as u32).to_le_bytes());
        v.extend((data.len() as u32).to_le_bytes());
        v.resize(HEADER, 0);
        v.extend(&n);
        v.extend(data);
        while v.len() % 4 != 0 {
            v.push(0xff);
        }
        v
    }

    fn option(desc: &str) -> Vec<u8> {
        // HD(1,GPT,…) then \EFI\BOOT\BOOTX64.EFI, then the end node.
        let mut hd = vec![4, 1, 42, 0];
        hd.extend(1u32.to_le_bytes());
        hd.resize(42, 0);
        hd[4 + 37] = 2;
        let file = utf16z("\\EFI\\BOOT\\BOOTX64.EFI");
        let mut fp = vec![4, 4];
        fp.extend(((file.len() + 4) as u16).to_le_bytes());
        fp.extend(&file);
        let path: Vec<u8> = [hd, fp, vec![0x7f, 0xff, 4, 0]].concat();
        let mut o = 1u32.to_le_bytes().to_vec();
        o.extend((path.len() as u16).to_le_bytes());
        o.extend(utf16z(desc));
        o.extend(path);
        o
    }

    fn store(vars: &[Vec<u8>]) -> Vec<u8> {
        let mut s = vec![0u8; 0x48];
        s[40..44].copy_from_slice(b"_FVH");
        s[0x30..0x32].copy_from_slice(&0x48u16.to_le_bytes());
        let mut vs = vec![0u8; 28];
        vs[16..20].copy_from_slice(&0x4000u32.to_le_bytes());
        s.extend(vs);
        for v in vars {
            s.extend(v);
        }
        s.resize(0x48 + 0x4000, 0xff);
        s
    }

    #[test]
    fn reads_live_boot_options_only() {
        let s = store(&[
            var(VAR_ADDED & 0xfd, "Boot0004", &option("stale")),
            var(VAR_ADDED, "Boot0001", &option("UEFI Misc Device")),
            var(VAR_ADDED, "Boot0003", &option("ingot")),
            var(VAR_ADDED & 0xfd, "BootOrder", &[1, 0]),
            var(VAR_ADDED, "BootOrder", &[3, 0, 1, 0]),
        ]);
        let n = parse(&s).unwrap();
        assert_eq!(n.boot_order, [3, 1]);
        assert_eq!(n.entries.len(), 2);
        let ingot = n.named("ingot");
        assert_eq!(ingot.len(), 1);
        assert_eq!(ingot[0].number, 3);
        assert_eq!(ingot[0].path, "HD(1,GPT)/\\EFI\\BOOT\\BOOTX64.EFI");
        assert_eq!(
            ingot[0].to_string(),
            "Boot0003 \"ingot\" HD(1,GPT)/\\EFI\\BOOT\\BOOTX64.EFI"
        );
        assert!(n.named("stale").is_empty());
    }

    #[test]
    fn reads_debians_empty_store() {
        let Ok(b) = std::fs::read(OVMF_VARS) else {
            eprintln!("SKIPPED: {OVMF_VARS} not installed");
            return;
        };
        let n = parse(&b).unwrap();
        assert!(n.entries.is_empty(), "{n:?}");
        assert!(parse(&b[..100]).is_err() || parse(&b[..100]).unwrap().entries.is_empty());
    }
}

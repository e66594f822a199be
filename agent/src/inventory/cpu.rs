//! Processors: `/proc/cpuinfo` plus the topology and cpufreq attributes in sysfs.
//!
//! x86_64 names its processors in cpuinfo ("model name"); arm64 does not, and
//! the name comes from the Main ID Register instead ([`super::midr`]): the
//! `CPU implementer`/`CPU part` lines of cpuinfo, or sysfs's `midr_el1`.

use std::collections::BTreeSet;
use std::path::Path;

use ingot_proto::inventory::Cpu;

use super::midr::{self, Midr};
use super::sysfs;

/// Reads the CPU section. `live` selects `uname` for the architecture.
pub fn read(root: &Path, live: bool) -> Cpu {
    let text = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let mut cpu = parse_cpuinfo(&text);
    let cpus = sysfs::sorted_entries(&root.join("sys/devices/system/cpu"));
    let cpus: Vec<&String> = cpus
        .iter()
        .filter(|n| {
            n.strip_prefix("cpu")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    // arm64 without MIDR lines in cpuinfo (emulators, some kernels): the
    // register as sysfs exposes it for the first CPU that has it.
    if cpu.model_name.is_none() {
        cpu.model_name = cpus
            .iter()
            .find_map(|c| {
                sysfs::read_trimmed(&root.join(format!(
                    "sys/devices/system/cpu/{c}/regs/identification/midr_el1"
                )))
                .and_then(|t| Midr::parse_register(&t))
            })
            .map(|m| m.model_name());
    }
    let packages: BTreeSet<u64> = cpus
        .iter()
        .filter_map(|c| {
            sysfs::read_u64(&root.join(format!(
                "sys/devices/system/cpu/{c}/topology/physical_package_id"
            )))
        })
        .collect();
    if !packages.is_empty() {
        cpu.socket_count = packages.len() as u32;
    }
    // lscpu's "CPU max MHz" when cpufreq knows it (kHz in sysfs).
    if let Some(khz) = cpus
        .iter()
        .filter_map(|c| {
            sysfs::read_u64(&root.join(format!(
                "sys/devices/system/cpu/{c}/cpufreq/cpuinfo_max_freq"
            )))
        })
        .max()
    {
        cpu.frequency = Some(format!("{:.4}", khz as f64 / 1000.0));
    }
    cpu.architecture = if live { uname_machine() } else { None }
        .unwrap_or_else(|| guess_architecture(&text).to_string());
    cpu
}

/// Parses `/proc/cpuinfo`: count, model, flags, frequency and sockets.
///
/// On arm64 the model is named from the first processor's `CPU implementer`
/// and `CPU part` (MIDR) when there is no "model name" line.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    let mut sockets = BTreeSet::new();
    let (mut implementer, mut part, mut variant, mut revision) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cpu.count += 1,
            "model name" | "Processor" if cpu.model_name.is_none() => {
                cpu.model_name = Some(value.to_string())
            }
            "cpu MHz" if cpu.frequency.is_none() => cpu.frequency = Some(value.to_string()),
            "flags" | "Features" if cpu.flags.is_empty() => {
                cpu.flags = value.split_whitespace().map(str::to_string).collect()
            }
            "physical id" => {
                sockets.insert(value.to_string());
            }
            "CPU implementer" if implementer.is_none() => implementer = midr::parse_hex(value),
            "CPU part" if part.is_none() => part = midr::parse_hex(value),
            "CPU variant" if variant.is_none() => variant = midr::parse_hex(value),
            "CPU revision" if revision.is_none() => revision = value.parse().ok(),
            _ => {}
        }
    }
    if let (None, Some(implementer), Some(part)) = (&cpu.model_name, implementer, part) {
        let m = Midr {
            implementer: (implementer & 0xff) as u32,
            variant: variant.map_or(0, |v| (v & 0xf) as u32),
            part: (part & 0xfff) as u32,
            revision: revision.map_or(0, |r: u64| (r & 0xf) as u32),
        };
        cpu.model_name = Some(m.model_name());
    }
    cpu.socket_count = (sockets.len() as u32).max(u32::from(cpu.count > 0));
    cpu
}

/// The architecture a cpuinfo text describes (for fixture trees): arm64
/// kernels print `CPU architecture: 8` (ARMv8 and later print 8 too).
fn guess_architecture(cpuinfo: &str) -> &'static str {
    let arm_v8 = cpuinfo.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim() == "CPU architecture" && matches!(v.trim(), "8" | "AArch64")
        })
    });
    if arm_v8 {
        "aarch64"
    } else if cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "lm"))
    {
        "x86_64"
    } else {
        std::env::consts::ARCH
    }
}

fn uname_machine() -> Option<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates `machine` within the array.
    let m = unsafe { std::ffi::CStr::from_ptr(u.machine.as_ptr()) };
    Some(m.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/cpuinfo` of a Debian 6.1 arm64 kernel under
    /// `qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 2` (TCG).
    const QEMU_CORTEX_A57: &str =
        include_str!("../../tests/fixtures/cpuinfo/aarch64-qemu-cortex-a57.txt");
    /// `/proc/cpuinfo` of an Ampere Altra Q80-30 (80 Neoverse-N1 cores, one socket).
    const ALTRA_NEOVERSE_N1: &str =
        include_str!("../../tests/fixtures/cpuinfo/aarch64-ampere-altra-neoverse-n1.txt");

    #[test]
    fn names_a_qemu_cortex_a57_from_its_midr() {
        let cpu = parse_cpuinfo(QEMU_CORTEX_A57);
        assert_eq!(cpu.count, 2);
        assert_eq!(cpu.model_name.as_deref(), Some("Cortex-A57"));
        assert_eq!(cpu.socket_count, 1);
        // No "cpu MHz" on arm64: the frequency comes from cpufreq, if any.
        assert_eq!(cpu.frequency, None);
        assert!(cpu.flags.iter().any(|f| f == "asimd"));
        assert_eq!(guess_architecture(QEMU_CORTEX_A57), "aarch64");
    }

    #[test]
    fn names_a_neoverse_n1_server() {
        let cpu = parse_cpuinfo(ALTRA_NEOVERSE_N1);
        assert_eq!(cpu.count, 80);
        assert_eq!(cpu.model_name.as_deref(), Some("Neoverse-N1"));
        assert_eq!(cpu.flags.len(), 17);
        assert!(cpu.flags.iter().any(|f| f == "atomics"));
        assert_eq!(guess_architecture(ALTRA_NEOVERSE_N1), "aarch64");
    }

    #[test]
    fn an_arm64_tree_reads_as_aarch64_with_sysfs_facts() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join("proc/cpuinfo"), ALTRA_NEOVERSE_N1).unwrap();
        for n in 0..2 {
            let c = root.join(format!("sys/devices/system/cpu/cpu{n}"));
            std::fs::create_dir_all(c.join("topology")).unwrap();
            std::fs::create_dir_all(c.join("cpufreq")).unwrap();
            std::fs::write(c.join("topology/physical_package_id"), "0\n").unwrap();
            std::fs::write(c.join("cpufreq/cpuinfo_max_freq"), "3000000\n").unwrap();
        }
        let cpu = read(root, false);
        assert_eq!(cpu.architecture, "aarch64");
        assert_eq!(cpu.socket_count, 1);
        assert_eq!(cpu.frequency.as_deref(), Some("3000.0000"));
        assert_eq!(cpu.model_name.as_deref(), Some("Neoverse-N1"));
    }

    #[test]
    fn falls_back_to_the_sysfs_midr_register() {
        // A cpuinfo with neither "model name" nor MIDR lines.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(
            root.join("proc/cpuinfo"),
            "processor\t: 0\nFeatures\t: fp asimd\nCPU architecture: 8\n\n",
        )
        .unwrap();
        let id = root.join("sys/devices/system/cpu/cpu0/regs/identification");
        std::fs::create_dir_all(&id).unwrap();
        std::fs::write(id.join("midr_el1"), "0x00000000410fd083\n").unwrap();
        let cpu = read(root, false);
        assert_eq!(cpu.model_name.as_deref(), Some("Cortex-A72"));
        assert_eq!(cpu.architecture, "aarch64");
        assert_eq!(cpu.count, 1);
    }

    #[test]
    fn x86_model_name_wins_and_old_arm_processor_line_is_kept() {
        let x86 =
            "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nflags\t\t: fpu lm\n\n";
        let cpu = parse_cpuinfo(x86);
        assert_eq!(
            cpu.model_name.as_deref(),
            Some("AMD EPYC 7763 64-Core Processor")
        );
        assert_eq!(guess_architecture(x86), "x86_64");
        // arm64 kernels before 4.x printed a "Processor" line first.
        let old = "Processor\t: AArch64 Processor rev 1 (aarch64)\nprocessor\t: 0\nCPU implementer\t: 0x41\nCPU architecture: AArch64\nCPU part\t: 0xd03\n";
        let cpu = parse_cpuinfo(old);
        assert_eq!(
            cpu.model_name.as_deref(),
            Some("AArch64 Processor rev 1 (aarch64)")
        );
        assert_eq!(guess_architecture(old), "aarch64");
    }
}

//! Processors: `/proc/cpuinfo` plus the topology and cpufreq attributes in sysfs.

use std::collections::BTreeSet;
use std::path::Path;

use ingot_proto::inventory::Cpu;

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
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    let mut sockets = BTreeSet::new();
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
            _ => {}
        }
    }
    cpu.socket_count = (sockets.len() as u32).max(u32::from(cpu.count > 0));
    cpu
}

/// The architecture a cpuinfo text describes (for fixture trees).
fn guess_architecture(cpuinfo: &str) -> &'static str {
    if cpuinfo.contains("CPU architecture: 8") {
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

//! Small helpers for reading sysfs and procfs attribute files.

use std::path::{Path, PathBuf};

/// Reads a file and trims whitespace; `None` if missing, unreadable or empty.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Reads a decimal number.
pub fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// Resolves a sysfs symlink to the real directory (links are relative, so
/// this works in fixture trees too).
pub fn resolve(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// The last path component of a symlink's target, e.g. a driver's name.
pub fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// True for a PCI address such as `0000:00:1f.2`.
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The nearest PCI device at or above a sysfs device path.
pub fn pci_ancestor(device: &Path) -> Option<String> {
    device
        .ancestors()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy())
        .find(|n| is_pci_address(n))
        .map(|n| n.into_owned())
}

/// Entries of a directory, sorted by name; empty if it cannot be read.
pub fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:00:1f.2"));
        assert!(!is_pci_address("pci0000:00"));
        assert!(!is_pci_address("virtio0"));
        assert_eq!(
            pci_ancestor(Path::new(
                "/sys/devices/pci0000:00/0000:00:02.0/virtio0/net/eth0"
            )),
            Some("0000:00:02.0".into())
        );
    }
}

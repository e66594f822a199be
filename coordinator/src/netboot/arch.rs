//! CPU architecture names, as nodes, firmware and boot loaders spell them.
//!
//! A node's `properties.cpu_arch` (Ironic and inspection say `x86_64`,
//! `aarch64`), the client architecture of DHCP option 93 (RFC 4578, IANA
//! "Processor Architecture Types"), iPXE's `${buildarch}` (`x86_64`, `i386`,
//! `arm64`) and GRUB's `$grub_cpu` (`x86_64`, `arm64`) all name the same few
//! machines differently; [`normalize`] maps them to one name, the key of
//! `[boot.by_arch.<arch>]`.

use std::collections::HashMap;
use std::sync::Mutex;

/// The name used for `[boot.by_arch]` keys and in `/boot/<arch>/…` paths:
/// `x86_64` and `aarch64` for their aliases, any other plain name
/// (`[a-z0-9_]`, at most 16 characters, such as `riscv64`) lower-cased as
/// it is, `None` for anything else (it never reaches a path or a script).
///
/// `i386`/`i686` count as `x86_64`: iPXE's BIOS loader (`undionly.kpxe`) is a
/// 32-bit build on 64-bit machines, and Ingot builds no 32-bit ramdisk.
pub fn normalize(name: &str) -> Option<String> {
    let n = name.trim().to_ascii_lowercase();
    let canonical = match n.as_str() {
        "x86_64" | "amd64" | "x64" | "x86-64" | "i386" | "i686" | "x86" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        other => {
            let plain = !other.is_empty()
                && other.len() <= 16
                && other
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            return plain.then(|| other.to_owned());
        }
    };
    Some(canonical.to_owned())
}

/// The architecture of a DHCP client architecture type (option 93), for the
/// types that name one: 0 (BIOS), 6, 7, 9 (x86 UEFI), 16 (x64 UEFI HTTP)
/// → `x86_64`; 11 (arm64 UEFI), 19 (arm64 UEFI HTTP) → `aarch64`.
pub fn from_dhcp(client_arch: u16) -> Option<&'static str> {
    match client_arch {
        0 | 6 | 7 | 9 | 15 | 16 => Some("x86_64"),
        11 | 19 => Some("aarch64"),
        _ => None,
    }
}

/// How long a DHCP-reported architecture is remembered for a MAC.
const HINT_TTL_MS: i64 = 30 * 60 * 1000;
/// At most this many MACs are remembered (the oldest go first).
const MAX_HINTS: usize = 4096;

/// The architecture each MAC's firmware last reported in DHCP option 93,
/// for the per-MAC boot script and `grub.cfg` of a node whose `cpu_arch` is
/// not known yet (first inspection). In memory, on the coordinator that
/// answered the DHCP request; bounded in size and age.
#[derive(Debug, Default)]
pub struct ArchHints {
    by_mac: Mutex<HashMap<String, (String, i64)>>,
}

impl ArchHints {
    /// Records what `mac` (normalised) reported at `now_ms`.
    pub fn record(&self, mac: &str, arch: &str, now_ms: i64) {
        let Ok(mut m) = self.by_mac.lock() else {
            return;
        };
        m.retain(|_, (_, at)| now_ms.saturating_sub(*at) < HINT_TTL_MS);
        if m.len() >= MAX_HINTS
            && !m.contains_key(mac)
            && let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        m.insert(mac.to_owned(), (arch.to_owned(), now_ms));
    }

    /// What `mac` reported, if recently.
    pub fn get(&self, mac: &str, now_ms: i64) -> Option<String> {
        let m = self.by_mac.lock().ok()?;
        m.get(mac)
            .filter(|(_, at)| now_ms.saturating_sub(*at) < HINT_TTL_MS)
            .map(|(a, _)| a.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("x86_64").as_deref(), Some("x86_64"));
        assert_eq!(normalize("AMD64").as_deref(), Some("x86_64"));
        assert_eq!(normalize("i386").as_deref(), Some("x86_64"));
        assert_eq!(normalize("arm64").as_deref(), Some("aarch64"));
        assert_eq!(normalize("aarch64").as_deref(), Some("aarch64"));
        assert_eq!(normalize("riscv64").as_deref(), Some("riscv64"));
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("../etc"), None);
        assert_eq!(normalize("x\nboot"), None);
    }

    #[test]
    fn dhcp_architectures() {
        assert_eq!(from_dhcp(0), Some("x86_64"));
        assert_eq!(from_dhcp(7), Some("x86_64"));
        assert_eq!(from_dhcp(9), Some("x86_64"));
        assert_eq!(from_dhcp(11), Some("aarch64"));
        assert_eq!(from_dhcp(10), None);
    }

    #[test]
    fn hints_expire_and_stay_bounded() {
        let h = ArchHints::default();
        h.record("52:54:00:00:00:01", "aarch64", 1000);
        assert_eq!(h.get("52:54:00:00:00:01", 2000).as_deref(), Some("aarch64"));
        assert_eq!(h.get("52:54:00:00:00:01", 1000 + HINT_TTL_MS), None);
        for i in 0..(MAX_HINTS + 10) {
            h.record(&format!("m{i}"), "x86_64", 5000 + i as i64);
        }
        assert!(h.by_mac.lock().unwrap().len() <= MAX_HINTS);
        assert_eq!(h.get("m0", 6000), None, "the oldest went first");
    }
}

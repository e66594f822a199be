//! The lab server's CPU architecture: which QEMU, machine, firmware and
//! serial console each one uses (docs/architectures.md, "Tests and lab").
//!
//! - x86_64: `qemu-system-x86_64 -M q35`, SeaBIOS or OVMF, `ttyS0`, the BMC
//!   as an ISA KCS interface, iPXE from the NIC's option ROM.
//! - aarch64: `qemu-system-aarch64 -M virt -cpu max` under TCG, always UEFI
//!   (Debian's AAVMF with a variable store per node), `ttyAMA0`, no in-band
//!   BMC interface (the virt machine has no ISA bus; ipmi_sim's chassis
//!   control powers it all the same), and the firmware's own PXE: the
//!   coordinator's DHCP answers client architecture 11 with Debian's signed
//!   network GRUB over its TFTP, and a per-MAC `grub.cfg`.

/// A lab server's architecture.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// `qemu-system-x86_64 -M q35`.
    #[default]
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    /// `qemu-system-aarch64 -M virt`.
    #[value(name = "aarch64", alias = "arm64")]
    Aarch64,
}

impl Arch {
    /// The kernel's name (`uname -m`), Ironic's `cpu_arch`.
    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    /// Debian's name (packages, `fetch-kernel --arch`).
    pub fn debian(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Aarch64 => "arm64",
        }
    }

    /// The ramdisk builder's architecture.
    pub fn initramfs(self) -> ingot_initramfs::Arch {
        match self {
            Self::X86_64 => ingot_initramfs::Arch::X86_64,
            Self::Aarch64 => ingot_initramfs::Arch::Aarch64,
        }
    }

    /// The QEMU system emulator.
    pub fn qemu(self) -> &'static str {
        match self {
            Self::X86_64 => "qemu-system-x86_64",
            Self::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// `-machine` (and `-cpu`) for TCG. `pauth-impdef` makes pointer
    /// authentication cheap to emulate: `max` with QEMU's default
    /// algorithm spends much of a boot in it.
    pub fn machine_args(self) -> &'static [&'static str] {
        match self {
            Self::X86_64 => &["-machine", "q35,accel=tcg,graphics=off"],
            Self::Aarch64 => &["-machine", "virt,accel=tcg", "-cpu", "max,pauth-impdef=on"],
        }
    }

    /// The serial console's name in the guest.
    pub fn console(self) -> &'static str {
        match self {
            Self::X86_64 => "ttyS0,115200n8",
            Self::Aarch64 => "ttyAMA0",
        }
    }

    /// True when QEMU can give the server an in-band BMC interface (KCS on
    /// the ISA bus, which only x86's machines have).
    pub fn has_kcs(self) -> bool {
        self == Self::X86_64
    }

    /// True when the architecture only boots UEFI (no BIOS firmware).
    pub fn uefi_only(self) -> bool {
        self == Self::Aarch64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum as _;

    #[test]
    fn names_and_aliases() {
        assert_eq!(Arch::from_str("arm64", true).unwrap(), Arch::Aarch64);
        assert_eq!(Arch::from_str("aarch64", true).unwrap(), Arch::Aarch64);
        assert_eq!(Arch::from_str("amd64", true).unwrap(), Arch::X86_64);
        assert_eq!(Arch::Aarch64.debian(), "arm64");
        assert!(Arch::Aarch64.uefi_only() && !Arch::Aarch64.has_kcs());
        assert_eq!(
            serde_json::to_string(&Arch::Aarch64).unwrap(),
            "\"aarch64\""
        );
    }
}

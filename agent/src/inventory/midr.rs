//! Arm processor names from the Main ID Register (MIDR_EL1): `/proc/cpuinfo`
//! on arm64 has no "model name", only `CPU implementer` and `CPU part`, and
//! `/sys/devices/system/cpu/cpuN/regs/identification/midr_el1` holds the
//! whole register. The names are those `lscpu` prints (util-linux's
//! `lscpu-arm.c`), so an inventory reads as IPA's does with `lscpu`.

/// The fields of MIDR_EL1 that name a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Midr {
    /// Implementer (bits 31:24), e.g. 0x41 for Arm.
    pub implementer: u32,
    /// Variant (bits 23:20): the major revision, `rN`.
    pub variant: u32,
    /// Primary part number (bits 15:4).
    pub part: u32,
    /// Revision (bits 3:0): the minor revision, `pN`.
    pub revision: u32,
}

impl Midr {
    /// Splits a raw MIDR_EL1 value (as in sysfs `midr_el1`, e.g. `0x00000000410fd0c1`).
    pub fn from_register(value: u64) -> Self {
        let v = value & 0xffff_ffff;
        Self {
            implementer: ((v >> 24) & 0xff) as u32,
            variant: ((v >> 20) & 0xf) as u32,
            part: ((v >> 4) & 0xfff) as u32,
            revision: (v & 0xf) as u32,
        }
    }

    /// Parses the sysfs `midr_el1` file's text (hexadecimal with `0x`).
    pub fn parse_register(text: &str) -> Option<Self> {
        parse_hex(text).map(Self::from_register)
    }

    /// The implementer's name, if known (`lscpu`'s "Vendor ID").
    pub fn vendor(&self) -> Option<&'static str> {
        implementer_name(self.implementer)
    }

    /// The processor's name as `lscpu` gives it ("Cortex-A57",
    /// "Neoverse-N1"); an unknown part gives `<vendor> part 0x<part>`, and an
    /// unknown implementer `implementer 0x<imp> part 0x<part>`.
    pub fn model_name(&self) -> String {
        if let Some(name) = part_name(self.implementer, self.part) {
            return name.to_string();
        }
        match self.vendor() {
            Some(v) => format!("{v} part {:#05x}", self.part),
            None => format!(
                "implementer {:#04x} part {:#05x}",
                self.implementer, self.part
            ),
        }
    }
}

/// Parses `0x41`, `0XD07` or `41` as hexadecimal.
pub fn parse_hex(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u64::from_str_radix(digits, 16).ok()
}

/// Implementer codes (Arm ARM, "MIDR_EL1"), with `lscpu`'s names.
fn implementer_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0x41 => "ARM",
        0x42 => "Broadcom",
        0x43 => "Cavium",
        0x46 => "FUJITSU",
        0x48 => "HiSilicon",
        0x4e => "NVIDIA",
        0x50 => "APM",
        0x51 => "Qualcomm",
        0x53 => "Samsung",
        0x56 => "Marvell",
        0x61 => "Apple",
        0x6d => "Microsoft",
        0x70 => "Phytium",
        0xc0 => "Ampere",
        _ => return None,
    })
}

/// Part numbers of 64-bit cores, per implementer.
fn part_name(implementer: u32, part: u32) -> Option<&'static str> {
    Some(match (implementer, part) {
        // Arm.
        (0x41, 0xd02) => "Cortex-A34",
        (0x41, 0xd03) => "Cortex-A53",
        (0x41, 0xd04) => "Cortex-A35",
        (0x41, 0xd05) => "Cortex-A55",
        (0x41, 0xd06) => "Cortex-A65",
        (0x41, 0xd07) => "Cortex-A57",
        (0x41, 0xd08) => "Cortex-A72",
        (0x41, 0xd09) => "Cortex-A73",
        (0x41, 0xd0a) => "Cortex-A75",
        (0x41, 0xd0b) => "Cortex-A76",
        (0x41, 0xd0c) => "Neoverse-N1",
        (0x41, 0xd0d) => "Cortex-A77",
        (0x41, 0xd0e) => "Cortex-A76AE",
        (0x41, 0xd40) => "Neoverse-V1",
        (0x41, 0xd41) => "Cortex-A78",
        (0x41, 0xd42) => "Cortex-A78AE",
        (0x41, 0xd43) => "Cortex-A65AE",
        (0x41, 0xd44) => "Cortex-X1",
        (0x41, 0xd46) => "Cortex-A510",
        (0x41, 0xd47) => "Cortex-A710",
        (0x41, 0xd48) => "Cortex-X2",
        (0x41, 0xd49) => "Neoverse-N2",
        (0x41, 0xd4a) => "Neoverse-E1",
        (0x41, 0xd4b) => "Cortex-A78C",
        (0x41, 0xd4c) => "Cortex-X1C",
        (0x41, 0xd4d) => "Cortex-A715",
        (0x41, 0xd4e) => "Cortex-X3",
        (0x41, 0xd4f) => "Neoverse-V2",
        (0x41, 0xd80) => "Cortex-A520",
        (0x41, 0xd81) => "Cortex-A720",
        (0x41, 0xd82) => "Cortex-X4",
        (0x41, 0xd84) => "Neoverse-V3",
        (0x41, 0xd8e) => "Neoverse-N3",
        // Broadcom, Cavium/Marvell.
        (0x42, 0x516) => "ThunderX2",
        (0x43, 0x0a1) => "ThunderX-88XX",
        (0x43, 0x0a2) => "ThunderX-81XX",
        (0x43, 0x0a3) => "ThunderX-83XX",
        (0x43, 0x0af) => "ThunderX2-99xx",
        (0x43, 0x0b8) => "ThunderX3-T110",
        // Fujitsu, HiSilicon, NVIDIA.
        (0x46, 0x001) => "A64FX",
        (0x48, 0xd01) => "Kunpeng-920",
        (0x4e, 0x004) => "Carmel",
        // Applied Micro (X-Gene).
        (0x50, 0x000) => "X-Gene",
        // Qualcomm.
        (0x51, 0x800) => "Falkor-V1/Kryo",
        (0x51, 0x801) => "Kryo-V2",
        (0x51, 0x802) => "Kryo-3XX-Gold",
        (0x51, 0x803) => "Kryo-3XX-Silver",
        (0x51, 0x804) => "Kryo-4XX-Gold",
        (0x51, 0x805) => "Kryo-4XX-Silver",
        (0x51, 0xc00) => "Falkor",
        (0x51, 0xc01) => "Saphira",
        // Apple.
        (0x61, 0x022) => "Icestorm-M1",
        (0x61, 0x023) => "Firestorm-M1",
        (0x61, 0x024) => "Icestorm-M1-Pro",
        (0x61, 0x025) => "Firestorm-M1-Pro",
        (0x61, 0x028) => "Icestorm-M1-Max",
        (0x61, 0x029) => "Firestorm-M1-Max",
        (0x61, 0x032) => "Blizzard-M2",
        (0x61, 0x033) => "Avalanche-M2",
        // Ampere.
        (0xc0, 0xac3) => "Ampere-1",
        (0xc0, 0xac4) => "Ampere-1a",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_register() {
        // Neoverse-N1 r3p1 (Ampere Altra), as sysfs prints it.
        let m = Midr::parse_register("0x00000000413fd0c1\n").unwrap();
        assert_eq!(
            m,
            Midr {
                implementer: 0x41,
                variant: 3,
                part: 0xd0c,
                revision: 1
            }
        );
        assert_eq!(m.model_name(), "Neoverse-N1");
        assert_eq!(m.vendor(), Some("ARM"));
        // Cortex-A57 r1p0 (QEMU's -cpu cortex-a57).
        let m = Midr::from_register(0x411f_d070);
        assert_eq!((m.variant, m.revision), (1, 0));
        assert_eq!(m.model_name(), "Cortex-A57");
    }

    #[test]
    fn names_other_implementers_and_unknown_parts() {
        let name = |implementer, part| {
            Midr {
                implementer,
                variant: 0,
                part,
                revision: 0,
            }
            .model_name()
        };
        assert_eq!(name(0xc0, 0xac3), "Ampere-1");
        assert_eq!(name(0x48, 0xd01), "Kunpeng-920");
        assert_eq!(name(0x51, 0xc00), "Falkor");
        assert_eq!(name(0x61, 0x023), "Firestorm-M1");
        assert_eq!(name(0x41, 0xfff), "ARM part 0xfff");
        assert_eq!(name(0xc0, 0x001), "Ampere part 0x001");
        assert_eq!(name(0x99, 0x123), "implementer 0x99 part 0x123");
    }

    #[test]
    fn parses_hex_forms() {
        assert_eq!(parse_hex("0x41"), Some(0x41));
        assert_eq!(parse_hex(" 0XD07 "), Some(0xd07));
        assert_eq!(parse_hex("c0"), Some(0xc0));
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("zz"), None);
    }
}

//! The chassis and application commands Ingot sends: their numbers, request
//! data and the decoding of their answers (no I/O).

use crate::IpmiError;

/// Get Device ID (App).
pub const GET_DEVICE_ID: u8 = 0x01;
/// Get Chassis Status (Chassis).
pub const GET_CHASSIS_STATUS: u8 = 0x01;
/// Chassis Control (Chassis).
pub const CHASSIS_CONTROL: u8 = 0x02;
/// Set System Boot Options (Chassis).
pub const SET_BOOT_OPTIONS: u8 = 0x08;
/// Get System Boot Options (Chassis).
pub const GET_BOOT_OPTIONS: u8 = 0x09;

/// Chassis Control actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    /// Power down.
    Off = 0,
    /// Power up.
    On = 1,
    /// Power cycle.
    Cycle = 2,
    /// Hard reset.
    Reset = 3,
    /// Soft shutdown (ACPI).
    Soft = 5,
}

/// Boot devices of boot flags parameter 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    /// No override.
    None,
    /// Network (PXE).
    Pxe,
    /// Default hard drive.
    Disk,
    /// Default hard drive, safe mode.
    Safe,
    /// CD/DVD.
    Cdrom,
    /// BIOS setup.
    Bios,
    /// Floppy / removable media.
    Floppy,
}

impl BootDevice {
    /// The device selector bits (byte 2, bits 5:2).
    pub fn selector(self) -> u8 {
        match self {
            Self::None => 0x00,
            Self::Pxe => 0x04,
            Self::Disk => 0x08,
            Self::Safe => 0x0C,
            Self::Cdrom => 0x14,
            Self::Bios => 0x18,
            Self::Floppy => 0x3C,
        }
    }

    /// Parses the selector bits.
    pub fn from_selector(b: u8) -> Option<Self> {
        [
            Self::None,
            Self::Pxe,
            Self::Disk,
            Self::Safe,
            Self::Cdrom,
            Self::Bios,
            Self::Floppy,
        ]
        .into_iter()
        .find(|d| d.selector() == b & 0x3C)
    }

    /// Ironic's name of the device.
    pub fn ironic_name(self) -> Option<&'static str> {
        Some(match self {
            Self::None => return None,
            Self::Pxe => "pxe",
            Self::Disk => "disk",
            Self::Safe => "safe",
            Self::Cdrom => "cdrom",
            Self::Bios => "bios",
            Self::Floppy => "floppy",
        })
    }

    /// From Ironic's name.
    pub fn from_ironic(name: &str) -> Option<Self> {
        Some(match name {
            "pxe" => Self::Pxe,
            "disk" => Self::Disk,
            "safe" => Self::Safe,
            "cdrom" => Self::Cdrom,
            "bios" => Self::Bios,
            "floppy" => Self::Floppy,
            _ => return None,
        })
    }
}

/// The data bytes of Set System Boot Options parameter 5 (boot flags).
pub fn boot_flags(device: BootDevice, persistent: bool, uefi: bool) -> [u8; 6] {
    let mut b1 = 0x80; // boot flags valid
    if persistent {
        b1 |= 0x40;
    }
    if uefi {
        b1 |= 0x20;
    }
    [0x05, b1, device.selector(), 0, 0, 0]
}

/// Set System Boot Options parameter 3 (boot flag valid bit clearing):
/// keep the boot flags when the BMC's 60 s timer expires.
pub const BOOT_TIMEOUT_OFF: [u8; 2] = [0x03, 0x08];

/// Get System Boot Options request data for parameter 5.
pub const GET_BOOT_FLAGS: [u8; 3] = [0x05, 0, 0];

/// Decodes a Get System Boot Options parameter 5 answer: (device,
/// persistent, uefi).
pub fn parse_boot_flags(d: &[u8]) -> Result<(Option<BootDevice>, bool, bool), IpmiError> {
    let [_, _, b1, b2, ..] = d else {
        return Err(IpmiError::Protocol(
            "Get System Boot Options: short response".into(),
        ));
    };
    Ok((
        BootDevice::from_selector(*b2),
        b1 & 0x40 != 0,
        b1 & 0x20 != 0,
    ))
}

/// Decodes a Get Chassis Status answer: whether the system power is on.
pub fn parse_power_on(d: &[u8]) -> Result<bool, IpmiError> {
    d.first()
        .map(|b| b & 1 == 1)
        .ok_or_else(|| IpmiError::Protocol("Get Chassis Status: empty response".into()))
}

/// Get Device ID, the fields Ingot uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId {
    /// Device ID.
    pub device_id: u8,
    /// Device revision (low 4 bits).
    pub revision: u8,
    /// Firmware major.minor, minor in BCD as the spec stores it.
    pub firmware: (u8, u8),
    /// IPMI version (BCD, 0x20 = 2.0).
    pub ipmi_version: u8,
    /// IANA manufacturer ID.
    pub manufacturer: u32,
    /// Product ID.
    pub product: u16,
}

impl DeviceId {
    /// Decodes a Get Device ID answer.
    pub fn parse(d: &[u8]) -> Result<Self, IpmiError> {
        if d.len() < 11 {
            return Err(IpmiError::Protocol("Get Device ID: short response".into()));
        }
        Ok(Self {
            device_id: d[0],
            revision: d[1] & 0x0F,
            firmware: (d[2] & 0x7F, d[3]),
            ipmi_version: d[4],
            manufacturer: u32::from_le_bytes([d[6], d[7], d[8], 0]),
            product: u16::from_le_bytes([d[9], d[10]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flag_bytes_match_ironic_raw_commands() {
        // Ironic's ipmitool driver sends `raw 0x00 0x08 0x05 0xe0 0x04 0x00 0x00 0x00`
        // for persistent UEFI PXE, and 0xa0 for UEFI next boot only.
        assert_eq!(
            boot_flags(BootDevice::Pxe, true, true),
            [0x05, 0xE0, 0x04, 0, 0, 0]
        );
        assert_eq!(
            boot_flags(BootDevice::Pxe, false, true),
            [0x05, 0xA0, 0x04, 0, 0, 0]
        );
        assert_eq!(
            boot_flags(BootDevice::Disk, false, false),
            [0x05, 0x80, 0x08, 0, 0, 0]
        );
        assert_eq!(
            boot_flags(BootDevice::Bios, true, false),
            [0x05, 0xC0, 0x18, 0, 0, 0]
        );
        for d in ["pxe", "disk", "safe", "cdrom", "bios", "floppy"] {
            let dev = BootDevice::from_ironic(d).expect("known");
            assert_eq!(BootDevice::from_selector(dev.selector()), Some(dev));
            assert_eq!(dev.ironic_name(), Some(d));
        }
        assert_eq!(
            parse_boot_flags(&[1, 5, 0xE0, 0x04, 0, 0]).expect("flags"),
            (Some(BootDevice::Pxe), true, true)
        );
        assert!(parse_boot_flags(&[1, 5, 0xE0]).is_err());
        assert!(parse_power_on(&[]).is_err());
        assert!(DeviceId::parse(&[0; 10]).is_err());
    }
}

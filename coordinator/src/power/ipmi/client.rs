//! The session pool and the commands: chassis status and control, Get
//! Device ID, and Set/Get System Boot Options parameter 5.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::session::Session;
use super::{BmcConfig, IpmiError, Timing};

const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;

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

#[derive(Debug, Default)]
struct BmcSlot {
    session: Option<Session>,
    last_request: Option<Instant>,
}

/// A pool of RMCP+ sessions, one per BMC, with per-BMC pacing.
#[derive(Debug, Default)]
pub struct IpmiClient {
    timing: Timing,
    slots: Mutex<HashMap<BmcConfig, Arc<tokio::sync::Mutex<BmcSlot>>>>,
    opened: AtomicU64,
}

impl IpmiClient {
    /// A client with the given timing.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            slots: Mutex::default(),
            opened: AtomicU64::new(0),
        }
    }

    /// How many sessions this client has opened (for tests and metrics).
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn slot(&self, cfg: &BmcConfig) -> Arc<tokio::sync::Mutex<BmcSlot>> {
        let mut g = match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(cfg.clone()).or_default().clone()
    }

    /// Sends a raw command and returns the response data after a zero
    /// completion code. Opens (or reopens) the BMC's session as needed; a
    /// request that times out in an existing session is retried once in a
    /// new session.
    pub async fn raw(
        &self,
        cfg: &BmcConfig,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        name: &'static str,
    ) -> Result<Vec<u8>, IpmiError> {
        let slot = self.slot(cfg);
        let mut slot = slot.lock().await;
        for fresh_retry in [false, true] {
            if let Some(last) = slot.last_request {
                let next = last + self.timing.min_interval;
                tokio::time::sleep_until(next.into()).await;
            }
            slot.last_request = Some(Instant::now());
            if slot
                .session
                .as_ref()
                .is_some_and(|s| s.idle() > self.timing.session_idle)
            {
                if let Some(old) = slot.session.take() {
                    old.close().await;
                }
            }
            let reused = slot.session.is_some();
            let session = match &mut slot.session {
                Some(s) => s,
                None => {
                    let s = Session::open(cfg, &self.timing).await?;
                    self.opened.fetch_add(1, Ordering::Relaxed);
                    slot.session.insert(s)
                }
            };
            match session.request(netfn, cmd, data).await {
                Ok(r) => return r.completed(name).map(|r| r.data),
                Err(IpmiError::Timeout) if reused && !fresh_retry => {
                    tracing::info!(host = %cfg.host, port = cfg.port, command = name,
                        "ipmi session stopped answering; opening a new one");
                    slot.session = None;
                }
                Err(e) => {
                    slot.session = None;
                    return Err(e);
                }
            }
        }
        Err(IpmiError::Timeout)
    }

    /// Closes every open session (best effort).
    pub async fn close_all(&self) {
        let slots: Vec<_> = {
            let g = match self.slots.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.values().cloned().collect()
        };
        for s in slots {
            if let Some(sess) = s.lock().await.session.take() {
                sess.close().await;
            }
        }
    }

    /// Get Chassis Status: whether the system power is on.
    pub async fn power_is_on(&self, cfg: &BmcConfig) -> Result<bool, IpmiError> {
        let d = self
            .raw(cfg, NETFN_CHASSIS, 0x01, &[], "Get Chassis Status")
            .await?;
        d.first()
            .map(|b| b & 1 == 1)
            .ok_or_else(|| IpmiError::Protocol("Get Chassis Status: empty response".into()))
    }

    /// Chassis Control.
    pub async fn chassis_control(
        &self,
        cfg: &BmcConfig,
        action: ChassisControl,
    ) -> Result<(), IpmiError> {
        self.raw(cfg, NETFN_CHASSIS, 0x02, &[action as u8], "Chassis Control")
            .await
            .map(|_| ())
    }

    /// Get Device ID.
    pub async fn device_id(&self, cfg: &BmcConfig) -> Result<DeviceId, IpmiError> {
        let d = self.raw(cfg, NETFN_APP, 0x01, &[], "Get Device ID").await?;
        if d.len() < 11 {
            return Err(IpmiError::Protocol("Get Device ID: short response".into()));
        }
        Ok(DeviceId {
            device_id: d[0],
            revision: d[1] & 0x0F,
            firmware: (d[2] & 0x7F, d[3]),
            ipmi_version: d[4],
            manufacturer: u32::from_le_bytes([d[6], d[7], d[8], 0]),
            product: u16::from_le_bytes([d[9], d[10]]),
        })
    }

    /// Set System Boot Options parameter 5: boot device, next boot only or
    /// persistent, and the UEFI boot type flag.
    pub async fn set_boot_device(
        &self,
        cfg: &BmcConfig,
        device: BootDevice,
        persistent: bool,
        uefi: bool,
    ) -> Result<(), IpmiError> {
        let data = boot_flags(device, persistent, uefi);
        self.raw(cfg, NETFN_CHASSIS, 0x08, &data, "Set System Boot Options")
            .await
            .map(|_| ())
    }

    /// Set System Boot Options parameter 3 (boot flag valid bit clearing):
    /// keep the boot flags when the BMC's 60 s timer expires.
    pub async fn disable_boot_timeout(&self, cfg: &BmcConfig) -> Result<(), IpmiError> {
        self.raw(
            cfg,
            NETFN_CHASSIS,
            0x08,
            &[0x03, 0x08],
            "Set System Boot Options",
        )
        .await
        .map(|_| ())
    }

    /// Get System Boot Options parameter 5: (device, persistent, uefi).
    pub async fn boot_device(
        &self,
        cfg: &BmcConfig,
    ) -> Result<(Option<BootDevice>, bool, bool), IpmiError> {
        let d = self
            .raw(
                cfg,
                NETFN_CHASSIS,
                0x09,
                &[0x05, 0, 0],
                "Get System Boot Options",
            )
            .await?;
        if d.len() < 4 {
            return Err(IpmiError::Protocol(
                "Get System Boot Options: short response".into(),
            ));
        }
        let (b1, b2) = (d[2], d[3]);
        Ok((
            BootDevice::from_selector(b2),
            b1 & 0x40 != 0,
            b1 & 0x20 != 0,
        ))
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
    }
}

//! NVMe admin commands through `NVME_IOCTL_ADMIN_CMD` on the namespace's
//! block device: Identify, Sanitize, Format NVM and the Sanitize Status log.
//!
//! Field layouts follow the NVM Express Base Specification 2.0 (Identify
//! Controller: OACS bytes 257:256, FNA byte 524, SANICAP bytes 331:328;
//! Format NVM CDW10: LBAFL 3:0, MSET 4, PI 7:5, PIL 8, SES 11:9, LBAFU 13:12;
//! Sanitize CDW10: SANACT 2:0, AUSE 3, OWPASS 7:4, OIPBP 8, NDAS 9; Sanitize
//! Status log page 81h: SPROG 1:0, SSTAT 3:2). The encoders are pure
//! functions, unit-tested against those values, because QEMU's emulated NVMe
//! does not implement Sanitize.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ingot_image_tools::blockdev::request;

/// Admin opcode: Get Log Page.
pub const OPC_GET_LOG_PAGE: u8 = 0x02;
/// Admin opcode: Identify.
pub const OPC_IDENTIFY: u8 = 0x06;
/// Admin opcode: Format NVM.
pub const OPC_FORMAT_NVM: u8 = 0x80;
/// Admin opcode: Sanitize.
pub const OPC_SANITIZE: u8 = 0x84;
/// Log identifier of the Sanitize Status log.
pub const LID_SANITIZE_STATUS: u8 = 0x81;
/// NSID meaning "all namespaces".
pub const NSID_ALL: u32 = 0xffff_ffff;

/// `struct nvme_passthru_cmd` from `<linux/nvme_ioctl.h>` (72 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassthruCmd {
    /// Opcode.
    pub opcode: u8,
    /// Flags (unused).
    pub flags: u8,
    /// Reserved.
    pub rsvd1: u16,
    /// Namespace ID.
    pub nsid: u32,
    /// Command dword 2.
    pub cdw2: u32,
    /// Command dword 3.
    pub cdw3: u32,
    /// Metadata buffer address.
    pub metadata: u64,
    /// Data buffer address.
    pub addr: u64,
    /// Metadata length.
    pub metadata_len: u32,
    /// Data length.
    pub data_len: u32,
    /// Command dword 10.
    pub cdw10: u32,
    /// Command dword 11.
    pub cdw11: u32,
    /// Command dword 12.
    pub cdw12: u32,
    /// Command dword 13.
    pub cdw13: u32,
    /// Command dword 14.
    pub cdw14: u32,
    /// Command dword 15.
    pub cdw15: u32,
    /// Timeout in milliseconds (0: the driver's admin timeout).
    pub timeout_ms: u32,
    /// Completion dword 0.
    pub result: u32,
}

/// `NVME_IOCTL_ID`: `_IO('N', 0x40)`.
pub const NVME_IOCTL_ID: u32 = 0x4e40;
/// `NVME_IOCTL_ADMIN_CMD`: `_IOWR('N', 0x41, struct nvme_admin_cmd)`.
pub const NVME_IOCTL_ADMIN_CMD: u32 =
    (3 << 30) | ((std::mem::size_of::<PassthruCmd>() as u32) << 16) | (0x4e << 8) | 0x41;

/// An NVMe command failed.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    /// The ioctl itself failed.
    #[error("NVMe ioctl failed")]
    Os(#[source] io::Error),
    /// The controller completed the command with an error status.
    #[error("NVMe status {status:#06x} ({})", describe_status(*.status))]
    Status {
        /// Status field: SCT in bits 10:8, SC in bits 7:0 (plus DNR/More).
        status: u32,
    },
    /// A sanitize operation completed as failed, or did not finish in time.
    #[error("sanitize {0}")]
    Sanitize(String),
}

fn describe_status(status: u32) -> &'static str {
    match status & 0x7ff {
        0x001 => "invalid command opcode",
        0x002 => "invalid field in command",
        0x00a => "invalid format",
        0x01d => "sanitize failed",
        0x01e => "sanitize in progress",
        0x10a => "invalid format",
        0x10b => "invalid namespace or format",
        0x115 => "namespace is write protected",
        0x11d => "sanitize prohibited while persistent memory region is enabled",
        _ => "see the NVMe specification",
    }
}

/// Sanitize actions (SANACT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// 010b.
    BlockErase,
    /// 011b.
    Overwrite,
    /// 100b.
    CryptoErase,
}

/// CDW10 of Sanitize: SANACT in bits 2:0, AUSE bit 3 (allow unrestricted
/// sanitize exit), OWPASS bits 7:4, OIPBP bit 8, NDAS bit 9 (no-deallocate
/// after sanitize).
pub fn sanitize_cdw10(
    action: SanitizeAction,
    ause: bool,
    owpass: u8,
    oipbp: bool,
    ndas: bool,
) -> u32 {
    let sanact = match action {
        SanitizeAction::BlockErase => 0b010,
        SanitizeAction::Overwrite => 0b011,
        SanitizeAction::CryptoErase => 0b100,
    };
    sanact
        | (u32::from(ause) << 3)
        | (u32::from(owpass & 0xf) << 4)
        | (u32::from(oipbp) << 8)
        | (u32::from(ndas) << 9)
}

/// The Sanitize command (NSID is not used by Sanitize and is 0).
pub fn sanitize_cmd(action: SanitizeAction) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_SANITIZE,
        // AUSE=1: if it fails, the drive may leave the failure state with a
        // later successful sanitize instead of needing Exit Failure Mode.
        cdw10: sanitize_cdw10(action, true, 0, false, false),
        timeout_ms: 60_000,
        ..Default::default()
    }
}

/// Secure Erase Settings of Format NVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureErase {
    /// SES 001b: user data erase.
    UserData,
    /// SES 010b: cryptographic erase.
    Crypto,
}

/// CDW10 of Format NVM: LBAF lower bits 3:0, MSET bit 4, PI bits 7:5, PIL
/// bit 8, SES bits 11:9, LBAF upper bits 13:12.
pub fn format_cdw10(lbaf: u8, mset: bool, pi: u8, pil: bool, ses: SecureErase) -> u32 {
    let ses = match ses {
        SecureErase::UserData => 0b001,
        SecureErase::Crypto => 0b010,
    };
    u32::from(lbaf & 0xf)
        | (u32::from(mset) << 4)
        | (u32::from(pi & 0x7) << 5)
        | (u32::from(pil) << 8)
        | (ses << 9)
        | (u32::from((lbaf >> 4) & 0x3) << 12)
}

/// Format NVM of namespace `nsid` (or [`NSID_ALL`]) keeping its current
/// LBA format, metadata and protection settings.
pub fn format_cmd(nsid: u32, ns: &IdNamespace, ses: SecureErase) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_FORMAT_NVM,
        nsid,
        cdw10: format_cdw10(
            ns.lbaf_index(),
            ns.flbas & 0x10 != 0,
            ns.dps & 0x7,
            ns.dps & 0x8 != 0,
            ses,
        ),
        // A user-data erase of a large drive can take many minutes.
        timeout_ms: 4 * 3600 * 1000,
        ..Default::default()
    }
}

/// Identify with `cns` (0: namespace, 1: controller, 2: active namespace list).
pub fn identify_cmd(cns: u8, nsid: u32, buf: &mut [u8; 4096]) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_IDENTIFY,
        nsid,
        addr: buf.as_mut_ptr() as u64,
        data_len: 4096,
        cdw10: u32::from(cns),
        ..Default::default()
    }
}

/// CDW10 of Get Log Page: LID bits 7:0, LSP 11:8, RAE bit 15, NUMDL 31:16
/// (dwords minus one; NUMDU goes in CDW11).
pub fn get_log_cdw10(lid: u8, len_bytes: u32, rae: bool) -> u32 {
    let numd = len_bytes / 4 - 1;
    u32::from(lid) | (u32::from(rae) << 15) | ((numd & 0xffff) << 16)
}

/// Get Log Page for the 512-byte Sanitize Status log.
pub fn sanitize_log_cmd(buf: &mut [u8; 512]) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_GET_LOG_PAGE,
        nsid: NSID_ALL,
        addr: buf.as_mut_ptr() as u64,
        data_len: 512,
        cdw10: get_log_cdw10(LID_SANITIZE_STATUS, 512, false),
        ..Default::default()
    }
}

/// The fields of Identify Controller the wipe uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdController {
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Optional Admin Command Support.
    pub oacs: u16,
    /// Format NVM Attributes.
    pub fna: u8,
    /// Sanitize Capabilities.
    pub sanicap: u32,
    /// Number of namespaces.
    pub nn: u32,
}

impl IdController {
    /// Parses an Identify Controller data structure.
    pub fn parse(d: &[u8; 4096]) -> Self {
        Self {
            serial: ascii(&d[4..24]),
            model: ascii(&d[24..64]),
            oacs: u16::from_le_bytes([d[256], d[257]]),
            fna: d[524],
            sanicap: u32::from_le_bytes([d[328], d[329], d[330], d[331]]),
            nn: u32::from_le_bytes([d[516], d[517], d[518], d[519]]),
        }
    }

    /// OACS bit 1: Format NVM supported.
    pub fn format_supported(&self) -> bool {
        self.oacs & 0x2 != 0
    }

    /// SANICAP bit 0: crypto erase sanitize supported.
    pub fn sanitize_crypto(&self) -> bool {
        self.sanicap & 0x1 != 0
    }

    /// SANICAP bit 1: block erase sanitize supported.
    pub fn sanitize_block(&self) -> bool {
        self.sanicap & 0x2 != 0
    }

    /// FNA bit 0: a format applies to all namespaces.
    pub fn format_all_namespaces(&self) -> bool {
        self.fna & 0x1 != 0
    }

    /// FNA bit 1: a secure erase applies to all namespaces.
    pub fn erase_all_namespaces(&self) -> bool {
        self.fna & 0x2 != 0
    }

    /// FNA bit 2: cryptographic erase supported as part of a format.
    pub fn format_crypto(&self) -> bool {
        self.fna & 0x4 != 0
    }
}

/// The fields of Identify Namespace the wipe uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdNamespace {
    /// Namespace size in logical blocks.
    pub nsze: u64,
    /// Formatted LBA Size.
    pub flbas: u8,
    /// End-to-end Data Protection Type Settings.
    pub dps: u8,
}

impl IdNamespace {
    /// Parses an Identify Namespace data structure.
    pub fn parse(d: &[u8; 4096]) -> Self {
        let mut n = [0u8; 8];
        n.copy_from_slice(&d[0..8]);
        Self {
            nsze: u64::from_le_bytes(n),
            flbas: d[26],
            dps: d[29],
        }
    }

    /// Index of the current LBA format: FLBAS bits 3:0, and bits 6:5 as the
    /// upper bits when more than 16 formats exist.
    pub fn lbaf_index(&self) -> u8 {
        (self.flbas & 0xf) | (((self.flbas >> 5) & 0x3) << 4)
    }
}

/// Sanitize Status log: the state of the most recent sanitize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeStatus {
    /// Progress, out of 65536 (valid while in progress).
    pub progress: u16,
    /// SSTAT bits 2:0: 0 never, 1 completed, 2 in progress, 3 failed,
    /// 4 completed without deallocation.
    pub state: u8,
    /// SCDW10: CDW10 of the sanitize command this status describes.
    pub cdw10: u32,
}

impl SanitizeStatus {
    /// Parses the log page.
    pub fn parse(d: &[u8; 512]) -> Self {
        Self {
            progress: u16::from_le_bytes([d[0], d[1]]),
            state: d[2] & 0x7,
            cdw10: u32::from_le_bytes([d[4], d[5], d[6], d[7]]),
        }
    }
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Runs an admin command. `Ok(result dword)`; NVMe error statuses become
/// [`NvmeError::Status`]: a zero exit from the ioctl is not assumed.
pub fn admin(file: &File, cmd: &mut PassthruCmd) -> Result<u32, NvmeError> {
    // SAFETY: the command is a live, correctly sized nvme_passthru_cmd; any
    // data pointer in it was set from a buffer of at least `data_len` bytes
    // that the caller keeps alive across this call.
    let ret = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            request(NVME_IOCTL_ADMIN_CMD),
            cmd as *mut PassthruCmd,
        )
    };
    if ret < 0 {
        return Err(NvmeError::Os(io::Error::last_os_error()));
    }
    if ret > 0 {
        return Err(NvmeError::Status { status: ret as u32 });
    }
    Ok(cmd.result)
}

/// The namespace ID of an NVMe namespace block device, or `None` for any other device.
pub fn namespace_id(file: &File) -> Option<u32> {
    // SAFETY: NVME_IOCTL_ID takes no argument; other drivers reject it.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), request(NVME_IOCTL_ID)) };
    (ret > 0).then_some(ret as u32)
}

/// Identify Controller.
pub fn identify_controller(file: &File) -> Result<IdController, NvmeError> {
    let mut buf = Box::new([0u8; 4096]);
    let mut cmd = identify_cmd(1, 0, &mut buf);
    admin(file, &mut cmd)?;
    Ok(IdController::parse(&buf))
}

/// Identify Namespace.
pub fn identify_namespace(file: &File, nsid: u32) -> Result<IdNamespace, NvmeError> {
    let mut buf = Box::new([0u8; 4096]);
    let mut cmd = identify_cmd(0, nsid, &mut buf);
    admin(file, &mut cmd)?;
    Ok(IdNamespace::parse(&buf))
}

/// Active namespace IDs (Identify CNS 02h).
pub fn active_namespaces(file: &File) -> Result<Vec<u32>, NvmeError> {
    let mut buf = Box::new([0u8; 4096]);
    let mut cmd = identify_cmd(2, 0, &mut buf);
    admin(file, &mut cmd)?;
    Ok(buf
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&n| n != 0)
        .collect())
}

/// Reads the Sanitize Status log.
pub fn sanitize_status(file: &File) -> Result<SanitizeStatus, NvmeError> {
    let mut buf = Box::new([0u8; 512]);
    let mut cmd = sanitize_log_cmd(&mut buf);
    admin(file, &mut cmd)?;
    Ok(SanitizeStatus::parse(&buf))
}

/// Starts a sanitize and polls the status log until it has finished.
pub fn sanitize(file: &File, action: SanitizeAction, limit: Duration) -> Result<(), NvmeError> {
    let mut cmd = sanitize_cmd(action);
    admin(file, &mut cmd)?;
    let start = Instant::now();
    let mut last_log = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let st = sanitize_status(file)?;
        match st.state {
            1 | 4 => {
                if st.cdw10 != cmd.cdw10 {
                    tracing::warn!(
                        expected = cmd.cdw10,
                        logged = st.cdw10,
                        "sanitize status log names another command; relying on verification"
                    );
                }
                return Ok(());
            }
            2 => {
                if last_log.elapsed() > Duration::from_secs(30) {
                    last_log = Instant::now();
                    tracing::info!(
                        ?action,
                        percent = f64::from(st.progress) * 100.0 / 65536.0,
                        "sanitize in progress"
                    );
                }
            }
            3 => {
                return Err(NvmeError::Sanitize(
                    "completed as failed (sanitize status log)".into(),
                ));
            }
            other => {
                return Err(NvmeError::Sanitize(format!(
                    "status log reports state {other} after the command was accepted"
                )));
            }
        }
        if start.elapsed() > limit {
            return Err(NvmeError::Sanitize(format!(
                "still in progress after {} s",
                limit.as_secs()
            )));
        }
    }
}

/// Runs Format NVM on namespace `nsid` with secure erase settings `ses`.
pub fn format(file: &File, nsid: u32, ns: &IdNamespace, ses: SecureErase) -> Result<(), NvmeError> {
    let mut cmd = format_cmd(nsid, ns, ses);
    admin(file, &mut cmd).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(std::mem::size_of::<PassthruCmd>(), 72);
        assert_eq!(NVME_IOCTL_ADMIN_CMD, 0xc048_4e41);
        assert_eq!(NVME_IOCTL_ID, 0x4e40);
    }

    #[test]
    fn sanitize_encoding() {
        // SANACT 100b crypto, 010b block, 011b overwrite.
        assert_eq!(
            sanitize_cdw10(SanitizeAction::CryptoErase, false, 0, false, false),
            0x4
        );
        assert_eq!(
            sanitize_cdw10(SanitizeAction::BlockErase, false, 0, false, false),
            0x2
        );
        assert_eq!(
            sanitize_cdw10(SanitizeAction::BlockErase, true, 0, false, false),
            0xa
        );
        // Overwrite, 3 passes (OWPASS 7:4), invert (OIPBP 8), no-dealloc (NDAS 9).
        assert_eq!(
            sanitize_cdw10(SanitizeAction::Overwrite, false, 3, true, true),
            0x333
        );
        let c = sanitize_cmd(SanitizeAction::CryptoErase);
        assert_eq!(c.opcode, 0x84);
        assert_eq!(c.nsid, 0);
        assert_eq!(c.cdw10, 0b1100);
        assert_eq!(c.data_len, 0);
    }

    #[test]
    fn format_encoding() {
        // SES is bits 11:9: user data erase = 0x200, crypto = 0x400.
        assert_eq!(
            format_cdw10(0, false, 0, false, SecureErase::UserData),
            0x200
        );
        assert_eq!(format_cdw10(0, false, 0, false, SecureErase::Crypto), 0x400);
        // LBAF 3, MSET, PI type 1, PIL, crypto.
        assert_eq!(
            format_cdw10(3, true, 1, true, SecureErase::Crypto),
            0x400 | 0x100 | 0x20 | 0x10 | 3
        );
        // LBAF 0x15: lower 5 in bits 3:0, upper 1 in bits 13:12.
        assert_eq!(
            format_cdw10(0x15, false, 0, false, SecureErase::UserData),
            0x1000 | 0x200 | 5
        );
        let ns = IdNamespace {
            nsze: 1,
            flbas: 0x10 | 0x20 | 0x1, // MSET, LBAF upper bit 0 set, lower 1
            dps: 0x9,                 // PI type 1, first bytes
        };
        assert_eq!(ns.lbaf_index(), 0x11);
        let c = format_cmd(1, &ns, SecureErase::Crypto);
        assert_eq!(c.opcode, 0x80);
        assert_eq!(c.nsid, 1);
        assert_eq!(c.cdw10, 0x1000 | 0x400 | 0x100 | 0x20 | 0x10 | 1);
    }

    #[test]
    fn identify_and_log_encoding() {
        let mut buf = [0u8; 4096];
        let c = identify_cmd(1, 0, &mut buf);
        assert_eq!((c.opcode, c.cdw10, c.data_len), (0x06, 1, 4096));
        // Sanitize log: LID 0x81, 128 dwords => NUMDL 127.
        assert_eq!(get_log_cdw10(0x81, 512, false), 0x007f_0081);
        let mut log = [0u8; 512];
        let c = sanitize_log_cmd(&mut log);
        assert_eq!((c.opcode, c.nsid), (0x02, NSID_ALL));
    }

    #[test]
    fn parse_identify_controller() {
        let mut d = [0u8; 4096];
        d[4..24].copy_from_slice(b"LABNVME0            ");
        d[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        d[256] = 0x0a; // OACS 0x10a (as QEMU 7.2 reports)
        d[257] = 0x01;
        d[516] = 1;
        let c = IdController::parse(&d);
        assert_eq!(c.serial, "LABNVME0");
        assert_eq!(c.model, "QEMU NVMe Ctrl");
        assert!(c.format_supported());
        assert!(!c.sanitize_crypto() && !c.sanitize_block());
        assert!(!c.format_crypto() && !c.format_all_namespaces());
        d[524] = 0x5;
        d[328] = 0x3;
        let c = IdController::parse(&d);
        assert!(c.format_crypto() && c.format_all_namespaces() && !c.erase_all_namespaces());
        assert!(c.sanitize_crypto() && c.sanitize_block());
    }

    #[test]
    fn parse_sanitize_status() {
        let mut d = [0u8; 512];
        d[0] = 0x00;
        d[1] = 0x80;
        d[2] = 0x02;
        assert_eq!(
            SanitizeStatus::parse(&d),
            SanitizeStatus {
                progress: 0x8000,
                state: 2,
                cdw10: 0
            }
        );
    }
}

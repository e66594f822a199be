//! ATA Security Erase through SG_IO and the SCSI ATA PASS-THROUGH (16)
//! command (SAT-4, opcode 85h), as `hdparm --security-erase` does it, but
//! checking the security state before and after instead of trusting the
//! command's status: QEMU's emulated disks abort the erase while hdparm
//! reports success.
//!
//! Sequence: IDENTIFY DEVICE (ECh) → SECURITY SET PASSWORD (F1h, user
//! password [`TEMP_PASSWORD`]) → SECURITY ERASE PREPARE (F3h) → SECURITY
//! ERASE UNIT (F4h, enhanced if supported) → IDENTIFY again: security must be
//! disabled and unlocked (the erase clears the user password).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use ingot_image_tools::blockdev::request;

/// ATA command: IDENTIFY DEVICE.
pub const ATA_IDENTIFY: u8 = 0xec;
/// ATA command: SECURITY SET PASSWORD.
pub const ATA_SECURITY_SET_PASSWORD: u8 = 0xf1;
/// ATA command: SECURITY ERASE PREPARE.
pub const ATA_SECURITY_ERASE_PREPARE: u8 = 0xf3;
/// ATA command: SECURITY ERASE UNIT.
pub const ATA_SECURITY_ERASE_UNIT: u8 = 0xf4;
/// ATA command: SECURITY DISABLE PASSWORD.
pub const ATA_SECURITY_DISABLE_PASSWORD: u8 = 0xf6;
/// SCSI opcode of ATA PASS-THROUGH (16).
pub const ATA_PASS_THROUGH_16: u8 = 0x85;

/// The temporary user password set for the erase. It is documented (see
/// docs/wipe.md) so that an operator can unlock a drive left locked by a
/// power loss mid-erase: `hdparm --user-master u --security-unlock ingot`.
pub const TEMP_PASSWORD: &[u8] = b"ingot";

const SG_IO: libc::Ioctl = request(0x2285);
const SG_DXFER_NONE: libc::c_int = -1;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

/// ATA protocols of the pass-through CDB (byte 1, bits 4:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 3: non-data.
    NonData,
    /// 4: PIO data-in.
    PioIn,
    /// 5: PIO data-out.
    PioOut,
}

/// Builds an ATA PASS-THROUGH (16) CDB for a 28-bit command with at most one
/// 512-byte data block.
///
/// Byte 1: PROTOCOL in bits 4:1 (EXTEND = 0). Byte 2: T_DIR (bit 3, 1 = from
/// the device), BYT_BLOK (bit 2, length in blocks), T_LENGTH (bits 1:0, 2 =
/// length in the COUNT field); 0 for non-data. Bytes 4, 6, 8, 10, 12:
/// FEATURES, COUNT, LBA 7:0, 15:8, 23:16. Byte 13: DEVICE. Byte 14: COMMAND.
pub fn ata16_cdb(protocol: Protocol, command: u8, features: u8, count: u8) -> [u8; 16] {
    let (proto, flags) = match protocol {
        Protocol::NonData => (3u8, 0u8),
        Protocol::PioIn => (4, 0b0000_1110),
        Protocol::PioOut => (5, 0b0000_0110),
    };
    let mut cdb = [0u8; 16];
    cdb[0] = ATA_PASS_THROUGH_16;
    cdb[1] = proto << 1;
    cdb[2] = flags;
    cdb[4] = features;
    cdb[6] = count;
    cdb[14] = command;
    cdb
}

/// The 512-byte data block of SECURITY SET PASSWORD / ERASE UNIT / DISABLE
/// PASSWORD: word 0 bit 0 = identifier (0 user, 1 master), bit 1 = enhanced
/// erase (ERASE UNIT only); words 1-16 = the 32-byte password, zero padded.
pub fn security_block(master: bool, enhanced: bool, password: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0] = u8::from(master) | (u8::from(enhanced) << 1);
    let n = password.len().min(32);
    b[2..2 + n].copy_from_slice(&password[..n]);
    b
}

/// `sg_io_hdr_t` from `<scsi/sg.h>`.
#[repr(C)]
#[derive(Debug)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

/// An ATA pass-through command failed.
#[derive(Debug, thiserror::Error)]
pub enum AtaError {
    /// SG_IO itself failed (not a SCSI/ATA device, or the ioctl was refused).
    #[error("SG_IO failed")]
    Os(#[source] io::Error),
    /// The command completed with an error (device abort, transport error).
    #[error("ATA command {command:#04x} failed: {detail}")]
    Command {
        /// The ATA command.
        command: u8,
        /// Sense key / status detail.
        detail: String,
    },
}

/// What a sense buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// ATA status from an ATA Status Return descriptor (09h), if present.
    pub ata_status: Option<u8>,
}

/// Parses fixed (70h/71h) or descriptor (72h/73h) format sense data.
pub fn parse_sense(sb: &[u8]) -> Option<Sense> {
    if sb.len() < 8 {
        return None;
    }
    match sb[0] & 0x7f {
        0x70 | 0x71 if sb.len() >= 14 => Some(Sense {
            key: sb[2] & 0xf,
            asc: sb[12],
            ascq: sb[13],
            ata_status: None,
        }),
        0x72 | 0x73 => {
            let mut ata_status = None;
            let add = usize::from(sb[7]);
            let mut i = 8;
            while i + 1 < sb.len().min(8 + add) {
                let (code, len) = (sb[i], usize::from(sb[i + 1]));
                if code == 0x09 && len >= 12 && i + 13 < sb.len() {
                    ata_status = Some(sb[i + 13]);
                }
                i += 2 + len;
            }
            Some(Sense {
                key: sb[1] & 0xf,
                asc: sb[2],
                ascq: sb[3],
                ata_status,
            })
        }
        _ => None,
    }
}

/// Sends one ATA command. `data` is the 512-byte block for PIO commands.
pub fn ata_command(
    file: &File,
    protocol: Protocol,
    command: u8,
    data: Option<&mut [u8; 512]>,
    timeout: Duration,
) -> Result<(), AtaError> {
    let count = u8::from(data.is_some());
    let cdb = ata16_cdb(protocol, command, 0, count);
    let mut sense = [0u8; 64];
    let (dir, ptr, len) = match (protocol, data) {
        (Protocol::PioIn, Some(d)) => (SG_DXFER_FROM_DEV, d.as_mut_ptr().cast(), 512),
        (Protocol::PioOut, Some(d)) => (SG_DXFER_TO_DEV, d.as_mut_ptr().cast(), 512),
        _ => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
    };
    let mut hdr = SgIoHdr {
        interface_id: libc::c_int::from(b'S'),
        dxfer_direction: dir,
        cmd_len: 16,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: len,
        dxferp: ptr,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: hdr is a valid sg_io_hdr; cmdp, sbp and dxferp point at buffers
    // of the stated lengths (16, 64, and 512 or 0 bytes) that outlive the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO, &mut hdr as *mut SgIoHdr) };
    if ret < 0 {
        return Err(AtaError::Os(io::Error::last_os_error()));
    }
    let fail = |detail: String| AtaError::Command { command, detail };
    if hdr.host_status != 0 {
        return Err(fail(format!("host status {:#x}", hdr.host_status)));
    }
    let sense_len = usize::from(hdr.sb_len_wr).min(sense.len());
    if hdr.status != 0 || sense_len > 0 {
        match parse_sense(&sense[..sense_len]) {
            // "ATA pass-through information available" with no error bit.
            Some(s) if s.key <= 1 && s.ata_status.is_none_or(|st| st & 0x01 == 0) => {}
            Some(s) => {
                return Err(fail(format!(
                    "sense key {:#x} asc {:#04x} ascq {:#04x}{}",
                    s.key,
                    s.asc,
                    s.ascq,
                    if s.key == 0xb {
                        " (aborted by the device)"
                    } else {
                        ""
                    }
                )));
            }
            None => return Err(fail(format!("SCSI status {:#x}", hdr.status))),
        }
    }
    if hdr.driver_status & 0x0f != 0 && hdr.driver_status & 0x0f != 0x08 {
        return Err(fail(format!("driver status {:#x}", hdr.driver_status)));
    }
    Ok(())
}

/// The IDENTIFY DEVICE fields the wipe needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identify {
    /// Model (words 27-46).
    pub model: String,
    /// Serial (words 10-19).
    pub serial: String,
    /// Word 82 bit 1: security feature set supported.
    pub security_supported: bool,
    /// Word 128.
    pub security: u16,
    /// Word 89: normal erase time.
    pub erase_time: u16,
    /// Word 90: enhanced erase time.
    pub enhanced_erase_time: u16,
}

impl Identify {
    /// Parses the 512-byte IDENTIFY DEVICE data.
    pub fn parse(d: &[u8; 512]) -> Self {
        let w = |i: usize| u16::from_le_bytes([d[2 * i], d[2 * i + 1]]);
        Self {
            model: ata_string(&d[54..94]),
            serial: ata_string(&d[20..40]),
            security_supported: w(82) & 0x2 != 0,
            security: w(128),
            erase_time: w(89),
            enhanced_erase_time: w(90),
        }
    }

    /// Word 128 bit 0.
    pub fn supported(&self) -> bool {
        self.security_supported && self.security & 0x1 != 0
    }
    /// Word 128 bit 1: a user password is set.
    pub fn enabled(&self) -> bool {
        self.security & 0x2 != 0
    }
    /// Word 128 bit 2.
    pub fn locked(&self) -> bool {
        self.security & 0x4 != 0
    }
    /// Word 128 bit 3: security commands are refused until a power cycle.
    pub fn frozen(&self) -> bool {
        self.security & 0x8 != 0
    }
    /// Word 128 bit 4: password attempts exhausted.
    pub fn count_expired(&self) -> bool {
        self.security & 0x10 != 0
    }
    /// Word 128 bit 5.
    pub fn enhanced_supported(&self) -> bool {
        self.security & 0x20 != 0
    }

    /// Generous timeout for the erase, from the drive's own estimate
    /// (words 89/90 in units of 2 minutes; bit 15 = extended format).
    pub fn erase_timeout(&self, enhanced: bool) -> Duration {
        let w = if enhanced {
            self.enhanced_erase_time
        } else {
            self.erase_time
        };
        let units = if w & 0x8000 != 0 {
            w & 0x7fff
        } else {
            w & 0xff
        };
        let minutes = if units == 0 {
            12 * 60
        } else {
            u64::from(units) * 2 * 2 + 30
        };
        Duration::from_secs(minutes * 60)
    }

    /// A short description of the security state for reports.
    pub fn describe(&self) -> String {
        format!(
            "security word {:#06x}: supported={} enabled={} locked={} frozen={} expired={} enhanced={}",
            self.security,
            self.supported(),
            self.enabled(),
            self.locked(),
            self.frozen(),
            self.count_expired(),
            self.enhanced_supported()
        )
    }
}

/// ATA strings store two characters per word, high byte first.
fn ata_string(b: &[u8]) -> String {
    let mut s = Vec::with_capacity(b.len());
    for pair in b.chunks_exact(2) {
        s.push(pair[1]);
        s.push(pair[0]);
    }
    String::from_utf8_lossy(&s).trim().to_string()
}

/// IDENTIFY DEVICE. An error means "not an ATA device we can talk to".
pub fn identify(file: &File) -> Result<Identify, AtaError> {
    let mut buf = [0u8; 512];
    ata_command(
        file,
        Protocol::PioIn,
        ATA_IDENTIFY,
        Some(&mut buf),
        Duration::from_secs(15),
    )?;
    Ok(Identify::parse(&buf))
}

/// Sets the temporary password, prepares and runs SECURITY ERASE UNIT.
/// Does not judge the outcome: the caller re-reads IDENTIFY and verifies data.
pub fn security_erase(file: &File, id: &Identify, enhanced: bool) -> Result<(), AtaError> {
    let short = Duration::from_secs(15);
    let mut set = security_block(false, false, TEMP_PASSWORD);
    ata_command(
        file,
        Protocol::PioOut,
        ATA_SECURITY_SET_PASSWORD,
        Some(&mut set),
        short,
    )?;
    let erase = (|| {
        ata_command(
            file,
            Protocol::NonData,
            ATA_SECURITY_ERASE_PREPARE,
            None,
            short,
        )?;
        let mut blk = security_block(false, enhanced, TEMP_PASSWORD);
        ata_command(
            file,
            Protocol::PioOut,
            ATA_SECURITY_ERASE_UNIT,
            Some(&mut blk),
            id.erase_timeout(enhanced),
        )
    })();
    if erase.is_err() {
        // Do not leave a password behind on a drive whose erase failed.
        disable_password(file).ok();
    }
    erase
}

/// SECURITY DISABLE PASSWORD with the temporary password.
pub fn disable_password(file: &File) -> Result<(), AtaError> {
    let mut blk = security_block(false, false, TEMP_PASSWORD);
    ata_command(
        file,
        Protocol::PioOut,
        ATA_SECURITY_DISABLE_PASSWORD,
        Some(&mut blk),
        Duration::from_secs(15),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdb_bytes_match_sat() {
        // IDENTIFY DEVICE: PIO data-in, T_DIR=1 BYT_BLOK=1 T_LENGTH=2, one block.
        assert_eq!(
            ata16_cdb(Protocol::PioIn, ATA_IDENTIFY, 0, 1),
            [0x85, 0x08, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xec, 0]
        );
        // SECURITY ERASE UNIT: PIO data-out, T_DIR=0.
        assert_eq!(
            ata16_cdb(Protocol::PioOut, ATA_SECURITY_ERASE_UNIT, 0, 1),
            [0x85, 0x0a, 0x06, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xf4, 0]
        );
        // SECURITY ERASE PREPARE: non-data.
        assert_eq!(
            ata16_cdb(Protocol::NonData, ATA_SECURITY_ERASE_PREPARE, 0, 0),
            [0x85, 0x06, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf3, 0]
        );
        assert_eq!(ATA_SECURITY_SET_PASSWORD, 0xf1);
        assert_eq!(ATA_SECURITY_DISABLE_PASSWORD, 0xf6);
    }

    #[test]
    fn security_blocks() {
        let b = security_block(false, true, b"ingot");
        assert_eq!(b[0], 0b10); // user password, enhanced
        assert_eq!(&b[2..7], b"ingot");
        assert!(b[7..].iter().all(|&x| x == 0));
        let b = security_block(true, false, &[0x41; 40]);
        assert_eq!(b[0], 1);
        assert_eq!(&b[2..34], &[0x41; 32]);
        assert_eq!(b[34], 0);
    }

    #[test]
    fn sg_io_header_layout() {
        assert_eq!(std::mem::size_of::<SgIoHdr>(), 88);
    }

    #[test]
    fn identify_parsing() {
        let mut d = [0u8; 512];
        // "QEMU HARDDISK" byte-swapped in words 27..
        let model = b"QEMU HARDDISK                           ";
        for (i, pair) in model.chunks_exact(2).enumerate() {
            d[54 + 2 * i] = pair[1];
            d[54 + 2 * i + 1] = pair[0];
        }
        d[164] = 0x02; // word 82 bit 1
        d[256] = 0x29; // word 128: supported, frozen, enhanced
        d[178] = 30; // word 89: 60 minutes
        let id = Identify::parse(&d);
        assert_eq!(id.model, "QEMU HARDDISK");
        assert!(id.supported() && id.frozen() && id.enhanced_supported());
        assert!(!id.enabled() && !id.locked());
        assert_eq!(
            id.erase_timeout(false),
            Duration::from_secs((30 * 4 + 30) * 60)
        );
    }

    #[test]
    fn sense_parsing() {
        // Descriptor sense: aborted command with an ATA status return descriptor (ERR set).
        let mut sb = [0u8; 22];
        sb[0] = 0x72;
        sb[1] = 0x0b;
        sb[7] = 14;
        sb[8] = 0x09;
        sb[9] = 12;
        sb[8 + 13] = 0x51;
        let s = parse_sense(&sb).unwrap();
        assert_eq!(s.key, 0x0b);
        assert_eq!(s.ata_status, Some(0x51));
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x05;
        fixed[12] = 0x24;
        assert_eq!(parse_sense(&fixed).unwrap().asc, 0x24);
    }
}

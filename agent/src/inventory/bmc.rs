//! The BMC's LAN addresses, read in-band through the kernel IPMI driver
//! (`/dev/ipmi0`) with "Get LAN Configuration Parameters", as IPA does with
//! `ipmitool lan print` on channels 1–11. The command's data and answers
//! are `ingot-ipmi`'s message codec; this module is the driver's ioctls.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use ingot_ipmi::message::{self, lan, netfn};

/// What the BMC reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BmcInfo {
    /// IPv4 address, `0.0.0.0` if none is set, `None` without a BMC.
    pub address: Option<String>,
    /// IPv6 address; `::/0` (IPv6 parameters are not queried yet).
    pub v6address: Option<String>,
    /// MAC address of the LAN channel.
    pub mac: Option<String>,
}

const IPMI_SYSTEM_INTERFACE_ADDR_TYPE: i32 = 0x0c;
const IPMI_BMC_CHANNEL: i16 = 0xf;

#[repr(C)]
struct SystemInterfaceAddr {
    addr_type: i32,
    channel: i16,
    lun: u8,
}

#[repr(C)]
struct IpmiMsg {
    netfn: u8,
    cmd: u8,
    data_len: u16,
    data: *mut u8,
}

#[repr(C)]
struct IpmiReq {
    addr: *mut u8,
    addr_len: u32,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

#[repr(C)]
struct IpmiRecv {
    recv_type: i32,
    addr: *mut u8,
    addr_len: u32,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'i' as u64) << 8) | nr
}
/// `_IOWR('i', 11, struct ipmi_recv)`.
const IPMICTL_RECEIVE_MSG_TRUNC: u64 = ioc(3, 11, std::mem::size_of::<IpmiRecv>());
/// `_IOR('i', 13, struct ipmi_req)`.
const IPMICTL_SEND_COMMAND: u64 = ioc(2, 13, std::mem::size_of::<IpmiReq>());

/// Queries the BMC; a missing device gives all-`None` (IPA's `null`).
pub fn query(dev: &Path) -> BmcInfo {
    let Ok(file) = File::options().read(true).write(true).open(dev) else {
        return BmcInfo::default();
    };
    let mut info = BmcInfo {
        address: Some("0.0.0.0".into()),
        v6address: Some("::/0".into()),
        mac: None,
    };
    for channel in 1..=11u8 {
        let Some(ip) = lan_param(&file, channel, lan::PARAM_IP) else {
            continue;
        };
        if let Some(ip) = lan::parse_ip(&ip) {
            info.address = Some(ip);
            info.mac = lan_param(&file, channel, lan::PARAM_MAC).and_then(|m| lan::parse_mac(&m));
            break;
        }
    }
    info
}

/// Sends Get LAN Configuration Parameters and returns the data after the
/// completion code, or `None` on any error.
fn lan_param(file: &File, channel: u8, param: u8) -> Option<Vec<u8>> {
    let fd = file.as_raw_fd();
    let mut addr = SystemInterfaceAddr {
        addr_type: IPMI_SYSTEM_INTERFACE_ADDR_TYPE,
        channel: IPMI_BMC_CHANNEL,
        lun: 0,
    };
    let mut data = lan::get_request(channel, param);
    let mut req = IpmiReq {
        addr: (&mut addr as *mut SystemInterfaceAddr).cast(),
        addr_len: std::mem::size_of::<SystemInterfaceAddr>() as u32,
        msgid: libc::c_long::from(param) << 8 | libc::c_long::from(channel),
        msg: IpmiMsg {
            netfn: netfn::TRANSPORT,
            cmd: lan::GET_LAN_CONFIG,
            data_len: data.len() as u16,
            data: data.as_mut_ptr(),
        },
    };
    // SAFETY: `req` and the buffers it points to outlive the call.
    if unsafe { libc::ioctl(fd, IPMICTL_SEND_COMMAND as _, &mut req) } != 0 {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 1000) } <= 0 {
            if Instant::now() > deadline {
                return None;
            }
            continue;
        }
        let mut raddr = [0u8; 64];
        let mut rdata = [0u8; 64];
        let mut recv = IpmiRecv {
            recv_type: 0,
            addr: raddr.as_mut_ptr(),
            addr_len: raddr.len() as u32,
            msgid: 0,
            msg: IpmiMsg {
                netfn: 0,
                cmd: 0,
                data_len: rdata.len() as u16,
                data: rdata.as_mut_ptr(),
            },
        };
        // SAFETY: `recv` and the buffers it points to outlive the call.
        if unsafe { libc::ioctl(fd, IPMICTL_RECEIVE_MSG_TRUNC as _, &mut recv) } != 0 {
            return None;
        }
        if recv.msgid != req.msgid {
            continue;
        }
        let len = usize::from(recv.msg.data_len).min(rdata.len());
        return message::completed_data(&rdata[..len]).map(<[u8]>::to_vec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers() {
        assert_eq!(IPMICTL_SEND_COMMAND, 0x8028_690d);
        assert_eq!(IPMICTL_RECEIVE_MSG_TRUNC, 0xc030_690b);
    }
}

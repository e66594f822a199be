//! The kernel's device announcements (uevents, `NETLINK_KOBJECT_UEVENT`),
//! read for the `MODALIAS` of every device added, as udev does: a bus driver
//! that binds (virtio_pci) announces the devices it creates (virtio0…), and
//! a controller that finds its disks late (a SATA link coming up after a
//! second, a USB stick) announces them when it does.
//!
//! Only the kernel's messages are taken (sender port 0, multicast group 1);
//! each is bounded by the receive buffer, and a malformed one is skipped.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The kernel's uevent multicast group (udev's is 2, and only userspace sends there).
const KERNEL_GROUP: u32 = 1;
/// The kernel's uevent buffer is 2 KiB (`UEVENT_BUFFER_SIZE`); twice that is plenty.
const MESSAGE_MAX: usize = 4096;
/// Socket receive buffer: a burst of announcements at boot must not overflow it.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// One announcement, as far as module loading needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`…
    pub action: String,
    /// The device's `MODALIAS`, if it has one.
    pub modalias: Option<String>,
}

/// Parses a kernel uevent: `ACTION@DEVPATH`, then NUL-separated `KEY=VALUE`
/// fields. `None` for anything else (libudev's messages start `libudev`).
pub fn parse(msg: &[u8]) -> Option<Uevent> {
    let mut fields = msg.split(|b| *b == 0).filter(|f| !f.is_empty());
    let header = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = header.split_once('@')?;
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    let mut modalias = None;
    for f in fields {
        if let Some(v) = f.strip_prefix(b"MODALIAS=") {
            let v = std::str::from_utf8(v).ok()?.trim();
            if !v.is_empty() {
                modalias = Some(v.to_string());
            }
        }
    }
    Some(Uevent {
        action: action.to_string(),
        modalias,
    })
}

/// What a read of the socket found.
#[derive(Debug, Default)]
pub struct Received {
    /// The announcements that carry a modalias, in order.
    pub events: Vec<Uevent>,
    /// The receive buffer overflowed (`ENOBUFS`): announcements were lost,
    /// and the caller must scan sysfs again to catch up.
    pub lost: bool,
}

/// A socket subscribed to the kernel's uevents.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl Received {
    /// The modaliases of the devices added.
    pub fn added(&self) -> impl Iterator<Item = &str> {
        self.events
            .iter()
            .filter(|e| e.action == "add")
            .filter_map(|e| e.modalias.as_deref())
    }
}

impl Socket {
    /// Subscribes; announcements are queued from now on.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = RECEIVE_BUFFER;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: a valid descriptor and a c_int option value.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = KERNEL_GROUP;
        // SAFETY: a valid descriptor and a sockaddr_nl of the stated size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Everything queued now; never blocks.
    pub fn drain(&self) -> Received {
        let mut out = Received::default();
        let mut buf = [0u8; MESSAGE_MAX];
        loop {
            let (n, from) =
                match crate::net::recv_from::<libc::sockaddr_nl>(self.fd.as_fd(), &mut buf) {
                    Ok(got) => got,
                    Err(e) => match e.raw_os_error() {
                        Some(libc::EINTR) => continue,
                        Some(libc::ENOBUFS) => {
                            out.lost = true;
                            continue;
                        }
                        _ => break,
                    },
                };
            // Only the kernel speaks with port 0.
            if from.nl_pid != 0 {
                continue;
            }
            let Some(msg) = buf.get(..n.min(buf.len())) else {
                continue;
            };
            if let Some(e) = parse(msg).filter(|e| e.modalias.is_some()) {
                out.events.push(e);
            }
        }
        out
    }

    /// Waits until something is queued, or `timeout` (forever if `None`).
    /// Returns whether something is.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let ms = timeout.map_or(-1, |t| {
            libc::c_int::try_from(t.as_millis()).unwrap_or(i32::MAX)
        });
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        r > 0 && p.revents & libc::POLLIN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_announcement() {
        let msg = b"add@/devices/pci0000:00/0000:00:01.0/virtio0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:01.0/virtio0\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1234\0";
        assert_eq!(
            parse(msg),
            Some(Uevent {
                action: "add".into(),
                modalias: Some("virtio:d00000001v00001AF4".into())
            })
        );
        let bind = b"bind@/devices/x\0ACTION=bind\0DRIVER=virtio_net\0";
        assert_eq!(parse(bind).and_then(|u| u.modalias), None);
    }

    #[test]
    fn refuses_what_is_not_one() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse(b"add@devices-without-slash\0MODALIAS=x\0"), None);
        assert_eq!(parse(b"\xff\xfe@/x\0"), None);
        // A modalias that is not UTF-8 drops the message, not the reader.
        assert_eq!(parse(b"add@/x\0MODALIAS=\xff\0"), None);
        let empty = parse(b"add@/x\0MODALIAS=\0").and_then(|u| u.modalias);
        assert_eq!(empty, None);
    }

    /// Needs root (writes `change` to a platform device's `uevent` file, which
    /// makes the kernel announce it again and changes nothing); skipped otherwise.
    #[test]
    fn receives_the_kernels_announcements() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let s = Socket::open().expect("uevent socket");
        // /dev/null's device has no modalias; a platform device has.
        let dev = std::fs::read_dir("/sys/bus/platform/devices")
            .into_iter()
            .flat_map(|rd| rd.flatten())
            .map(|e| e.path())
            .find(|p| {
                std::fs::read_to_string(p.join("modalias")).is_ok_and(|m| !m.trim().is_empty())
            });
        let Some(dev) = dev else {
            eprintln!("skipped: no device with a modalias");
            return;
        };
        let want = std::fs::read_to_string(dev.join("modalias")).unwrap();
        let want = Uevent {
            action: "change".into(),
            modalias: Some(want.trim().to_string()),
        };
        std::fs::write(dev.join("uevent"), "change").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline && !seen.contains(&want) {
            s.wait(Some(Duration::from_millis(200)));
            seen.extend(s.drain().events);
        }
        assert!(seen.contains(&want), "{seen:?}");
    }
}

//! Probe mode, for the isolation lab (docs/e2e.md, "Tenant isolation"): when
//! the config drive's `meta_data.json` has `meta.ingot_probe`, the init
//! gives the NIC with the named MAC a static address and tries to reach each
//! listed host, printing one line per probe:
//!
//! ```text
//! INGOT-TEST-IMAGE probe {"name":"tenant-a host","kind":"tcp","to":"10.77.0.21:7","observed":"reached","detail":"refused: the host answered"}
//! ```
//!
//! `meta.ingot_probe` (an object, or the same as a JSON string, as Nova's
//! metadata values are strings):
//!
//! ```json
//! {"mac": "52:54:00:e2:e1:01", "address": "10.77.0.11/24", "timeout_ms": 4000,
//!  "probes": [{"name": "coordinator API", "kind": "http", "to": "10.77.0.1:6385"},
//!             {"name": "coordinator TFTP", "kind": "tftp", "to": "10.77.0.1:69", "file": "probe.txt"},
//!             {"name": "tenant-a host", "kind": "tcp", "to": "10.77.0.21:7"}]}
//! ```
//!
//! A host is `reached` when it answered at all: a TCP connection accepted or
//! refused (a reset is an answer), an HTTP status line, any TFTP packet
//! (data or error). It is `unreached` when nothing came back within the
//! timeout (no ARP answer gives "host unreachable"). The probes run at once,
//! each in a thread.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What to probe.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The NIC's MAC (lower case).
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub timeout: Duration,
    pub probes: Vec<Probe>,
}

/// One probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    /// `tcp`, `http` or `tftp`.
    pub kind: String,
    pub to: SocketAddrV4,
    /// TFTP: the file asked for.
    pub file: String,
}

/// Reads `meta.ingot_probe` from meta_data.json; None when absent.
pub fn spec(meta: &Value) -> Option<Result<Spec, String>> {
    let raw = meta.get("meta")?.get("ingot_probe")?;
    let v = match raw {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(e) => return Some(Err(format!("ingot_probe: {e}"))),
        },
        v => v.clone(),
    };
    Some(parse(&v))
}

fn parse(v: &Value) -> Result<Spec, String> {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("ingot_probe: no \"{k}\""))
    };
    let mac = s("mac")?.to_ascii_lowercase();
    let (ip, prefix) = s("address")?
        .split_once('/')
        .ok_or("ingot_probe: address is not a.b.c.d/len")?;
    let address: Ipv4Addr = ip.parse().map_err(|e| format!("ingot_probe: {ip}: {e}"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or("ingot_probe: bad prefix length")?;
    let timeout = Duration::from_millis(
        v.get("timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(4000)
            .clamp(100, 60_000),
    );
    let mut probes = Vec::new();
    for p in v
        .get("probes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let to = g("to");
        let kind = g("kind");
        if !["tcp", "http", "tftp"].contains(&kind.as_str()) {
            return Err(format!("ingot_probe: unknown kind {kind:?}"));
        }
        probes.push(Probe {
            name: g("name"),
            kind,
            to: to
                .parse()
                .map_err(|e| format!("ingot_probe: {to:?}: {e}"))?,
            file: g("file"),
        });
    }
    Ok(Spec {
        mac,
        address,
        prefix,
        timeout,
        probes,
    })
}

/// Finds the NIC with the spec's MAC (waiting up to 10 s for its driver),
/// gives it the address and brings it up.
pub fn configure(spec: &Spec) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let name = loop {
        let found = std::fs::read_dir("/sys/class/net").ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let mac = std::fs::read_to_string(e.path().join("address")).ok()?;
                (mac.trim() == spec.mac).then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        if let Some(n) = found {
            break n;
        }
        if Instant::now() > deadline {
            return Err(format!("no NIC with MAC {} after 10 s", spec.mac));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mask = if spec.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(spec.prefix))
    };
    set_up(&name, spec.address, Ipv4Addr::from(mask)).map_err(|e| format!("{name}: {e}"))?;
    Ok(name)
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and
    // every bit pattern is valid for both.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// SIOCSIFADDR, SIOCSIFNETMASK, then IFF_UP (the kernel adds the subnet's
/// route).
fn set_up(name: &str, ip: Ipv4Addr, mask: Ipv4Addr) -> std::io::Result<()> {
    // SAFETY: a plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let r = (|| {
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr
            .ifr_name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *d = s as libc::c_char;
        }
        let ioctl = |req: libc::c_ulong, ifr: &mut libc::ifreq| {
            // SAFETY: a valid socket and a valid ifreq for these requests.
            if unsafe { libc::ioctl(fd, req as _, ifr as *mut libc::ifreq) } < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        ifr.ifr_ifru.ifru_addr = sockaddr(ip);
        ioctl(libc::SIOCSIFADDR, &mut ifr)?;
        ifr.ifr_ifru.ifru_netmask = sockaddr(mask);
        ioctl(libc::SIOCSIFNETMASK, &mut ifr)?;
        ioctl(libc::SIOCGIFFLAGS, &mut ifr)?;
        // SAFETY: SIOCGIFFLAGS filled in the flags member.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        ioctl(libc::SIOCSIFFLAGS, &mut ifr)
    })();
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    r
}

/// Runs every probe at once; returns one JSON object per probe, in order.
pub fn run(spec: &Spec) -> Vec<Value> {
    let handles: Vec<_> = spec
        .probes
        .iter()
        .cloned()
        .map(|p| {
            let t = spec.timeout;
            std::thread::spawn(move || {
                let (reached, detail) = match p.kind.as_str() {
                    "tftp" => tftp(&p, t),
                    kind => tcp(&p, t, kind == "http"),
                };
                json!({
                    "name": p.name,
                    "kind": p.kind,
                    "to": p.to.to_string(),
                    "observed": if reached { "reached" } else { "unreached" },
                    "detail": detail,
                })
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| json!({"observed": "error", "detail": "probe panicked"}))
        })
        .collect()
}

fn tcp(p: &Probe, t: Duration, http: bool) -> (bool, String) {
    let mut s = match TcpStream::connect_timeout(&SocketAddr::V4(p.to), t) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return (true, "refused: the host answered".into());
        }
        Err(e) => return (false, format!("connect: {e}")),
    };
    if !http {
        return (true, "connected".into());
    }
    let _ = s.set_read_timeout(Some(t));
    let req = format!("GET /v1 HTTP/1.0\r\nHost: {}\r\n\r\n", p.to);
    if let Err(e) = s.write_all(req.as_bytes()) {
        return (true, format!("connected; sending GET /v1: {e}"));
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            let line = text.lines().next().unwrap_or("").to_owned();
            (true, format!("GET /v1: {line}"))
        }
        Err(e) => (true, format!("connected; no answer to GET /v1: {e}")),
    }
}

fn tftp(p: &Probe, t: Duration) -> (bool, String) {
    let r = (|| -> std::io::Result<(usize, [u8; 516])> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(t))?;
        let mut rrq = vec![0, 1];
        rrq.extend_from_slice(p.file.as_bytes());
        rrq.push(0);
        rrq.extend_from_slice(b"octet\0");
        s.send_to(&rrq, p.to)?;
        let mut buf = [0u8; 516];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok((n, buf))
    })();
    match r {
        Ok((n, buf)) if n >= 4 && buf[1] == 3 => (true, format!("DATA block 1, {} bytes", n - 4)),
        Ok((n, buf)) if n >= 4 && buf[1] == 5 => (
            true,
            format!(
                "ERROR {}: {}",
                u16::from_be_bytes([buf[2], buf[3]]),
                String::from_utf8_lossy(&buf[4..n]).trim_end_matches('\0')
            ),
        ),
        Ok((n, _)) => (true, format!("an answer of {n} bytes")),
        Err(e) => (false, format!("no answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_the_spec_as_object_or_string() {
        let o = json!({"mac": "52:54:00:AA:00:01", "address": "10.77.0.11/24",
            "probes": [{"name": "api", "kind": "http", "to": "10.77.0.1:6385"},
                       {"name": "tftp", "kind": "tftp", "to": "10.77.0.1:69", "file": "p"}]});
        let meta = json!({"uuid": "u", "meta": {"ingot_probe": o.to_string()}});
        let s = spec(&meta).unwrap().unwrap();
        assert_eq!(s.mac, "52:54:00:aa:00:01");
        assert_eq!(s.address, Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(s.prefix, 24);
        assert_eq!(s.probes.len(), 2);
        assert_eq!(s.probes[1].file, "p");
        let meta = json!({"meta": {"ingot_probe": o}});
        assert!(spec(&meta).unwrap().is_ok());
        assert!(spec(&json!({"uuid": "u"})).is_none());
        let bad = json!({"meta": {"ingot_probe": {"mac": "m", "address": "10.0.0.1"}}});
        assert!(spec(&bad).unwrap().is_err());
    }

    #[test]
    fn probes_a_local_listener_and_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let s = Spec {
            mac: String::new(),
            address: Ipv4Addr::LOCALHOST,
            prefix: 8,
            timeout: Duration::from_millis(500),
            probes: vec![Probe {
                name: "closed".into(),
                kind: "tcp".into(),
                to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
                file: String::new(),
            }],
        };
        let r = run(&s);
        assert_eq!(r[0]["observed"], "reached", "{r:?}");
    }
}

//! The server's serial line, wired as on hardware: QEMU's serial port is
//! reached by the BMC (ipmi_sim's Serial-over-LAN), whatever QEMU process
//! currently plays the server.
//!
//! ipmi_sim connects to a TCP "serial device" once and reconnects only after
//! seconds when it drops; QEMU is restarted on every power cycle. So the lab
//! sits between them: ipmi_sim keeps one connection to the BMC side of this
//! relay, each QEMU connects to its server side (`-chardev socket,…,
//! reconnect=1`), and bytes are copied both ways. QEMU's `logfile=` keeps
//! the console log file whether or not anyone listens.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::Result;

type Slot = Arc<Mutex<Option<TcpStream>>>;

/// The relay's two ports on 127.0.0.1.
pub struct SerialRelay {
    /// Where ipmi_sim's `sol "tcp:…"` connects.
    pub bmc_port: u16,
    /// Where QEMU's serial chardev connects.
    pub server_port: u16,
}

/// Accepts connections on `listener` forever; the newest one fills `mine`,
/// and what it sends goes to whatever fills `peer`.
fn side(listener: TcpListener, mine: Slot, peer: Slot) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(reader) = conn.try_clone() else {
                continue;
            };
            if let Ok(mut m) = mine.lock() {
                *m = Some(conn);
            }
            let peer = peer.clone();
            std::thread::spawn(move || pump(reader, &peer));
        }
    });
}

fn pump(mut from: TcpStream, to: &Slot) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Ok(mut t) = to.lock() {
            let failed = t
                .as_mut()
                .is_some_and(|s| s.write_all(buf.get(..n).unwrap_or_default()).is_err());
            if failed {
                *t = None;
            }
        }
    }
}

/// Starts the relay; it runs until the process ends.
pub fn start() -> Result<SerialRelay> {
    let bmc = TcpListener::bind("127.0.0.1:0")?;
    let server = TcpListener::bind("127.0.0.1:0")?;
    let relay = SerialRelay {
        bmc_port: bmc.local_addr()?.port(),
        server_port: server.local_addr()?.port(),
    };
    let bmc_slot: Slot = Arc::default();
    let server_slot: Slot = Arc::default();
    side(bmc, bmc_slot.clone(), server_slot.clone());
    side(server, server_slot, bmc_slot);
    Ok(relay)
}

/// A client of the coordinator's console (Ironic's `console_info`, type
/// `socat`, with Ingot's per-node token): everything the server prints over
/// Serial-over-LAN is appended to `log`. Runs until the coordinator closes
/// the connection. `ssl://` URLs (a coordinator serving HTTPS) are spoken
/// in TLS, verified with `ca_pem`.
pub fn console_client(
    url: &str,
    token: &str,
    log: &std::path::Path,
    ca_pem: Option<&[u8]>,
) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    if let Some(addr) = url.strip_prefix("ssl://") {
        let tcp = TcpStream::connect(addr)?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
        let tls = tls_client(tcp, &host, ca_pem)?;
        return log_console(tls, token, out);
    }
    let addr = url.strip_prefix("tcp://").unwrap_or(url);
    log_console(TcpStream::connect(addr)?, token, out)
}

/// Sends the token, then copies everything read into `out` on a thread.
fn log_console<S: std::io::Read + std::io::Write + Send + 'static>(
    mut c: S,
    token: &str,
    mut out: std::fs::File,
) -> Result<()> {
    c.write_all(format!("{token}\r\n").as_bytes())?;
    c.flush()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 || out.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// A blocking TLS client over `tcp`, trusting `ca_pem` for `host`.
fn tls_client(
    tcp: TcpStream,
    host: &str,
    ca_pem: Option<&[u8]>,
) -> Result<tokio_rustls::rustls::StreamOwned<tokio_rustls::rustls::ClientConnection, TcpStream>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.unwrap_or_default()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

//! A read-only TFTP server for network-boot loaders (iPXE's `undionly.kpxe`,
//! `snponly.efi`, …): RFC 1350 with the `blksize`, `tsize`, `timeout`
//! (RFC 2347–2349) and `windowsize` (RFC 7440) options.
//!
//! - Only the configured root is served; `..`, and symbolic links that
//!   resolve outside the root, are refused with an access violation.
//! - Write requests are refused with an ERROR packet.
//! - Only `octet` mode is served (every boot loader uses it); `netascii` and
//!   `mail` are refused.
//! - Each transfer runs on its own ephemeral socket (its TID), connected to
//!   the client, so strangers' packets never reach it.
//! - Bounded: at most `max_transfers` at once (more get "server busy"), a
//!   retransmission timeout and retry count per block, and a deadline for
//!   the whole transfer. Malformed datagrams are dropped.
//! - Block numbers roll over to 0 after 65535 (see [`transfer`]).
//! - Files the application makes up ([`VirtualFiles`], such as GRUB's
//!   per-MAC `grub.cfg`, see [`crate::netboot::tftp`]) are looked up before
//!   the root.

pub mod packet;
pub mod path;
pub mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::TftpConfig;
use packet::{ErrorCode, Packet, Request};

/// Start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// No root configured and the default one is missing.
    #[error("[tftp] root is not set and {0} does not exist")]
    NoRoot(String),
    /// The root cannot be used.
    #[error("[tftp] root {path}: {source}")]
    Root {
        /// The root.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Binding.
    #[error("TFTP listening on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A file the application serves under a name of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualFile {
    /// Bytes made up for this request.
    Bytes(Vec<u8>),
    /// A file anywhere on this host (the application vouches for it).
    Path(PathBuf),
}

/// A boxed future of [`VirtualFiles::open`].
pub type OpenFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<VirtualFile>> + Send + 'a>>;

/// Files made up by the application, asked before the root.
pub trait VirtualFiles: Send + Sync + 'static {
    /// The file for a requested name (as sent, leading `/` included), from
    /// `peer`; `None` when the name is not one of these files.
    fn open<'a>(&'a self, name: &'a str, peer: SocketAddr) -> OpenFuture<'a>;
}

/// Where Debian's `ipxe` package puts its loaders; the default root.
pub const DEBIAN_IPXE_DIR: &str = "/usr/lib/ipxe";

/// Settings a running server uses.
#[derive(Clone)]
struct Settings {
    root: PathBuf,
    virtual_files: Option<Arc<dyn VirtualFiles>>,
    timeout: Duration,
    retries: u32,
    transfer_deadline: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("root", &self.root)
            .field("virtual_files", &self.virtual_files.is_some())
            .finish_non_exhaustive()
    }
}

/// A bound TFTP server; [`TftpServer::run`] serves it.
#[derive(Debug)]
pub struct TftpServer {
    sock: UdpSocket,
    settings: Arc<Settings>,
    slots: Arc<Semaphore>,
}

impl TftpServer {
    /// Checks the root and binds the listen address.
    pub async fn bind(cfg: &TftpConfig) -> Result<Self, TftpError> {
        let root = match &cfg.root {
            Some(r) => r.clone(),
            None => {
                let d = PathBuf::from(DEBIAN_IPXE_DIR);
                if !d.is_dir() {
                    return Err(TftpError::NoRoot(DEBIAN_IPXE_DIR.into()));
                }
                d
            }
        };
        let root = root.canonicalize().map_err(|source| TftpError::Root {
            path: root.display().to_string(),
            source,
        })?;
        let sock = UdpSocket::bind(cfg.listen)
            .await
            .map_err(|source| TftpError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Ok(Self {
            sock,
            settings: Arc::new(Settings {
                root,
                virtual_files: None,
                timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
                retries: cfg.retries,
                transfer_deadline: Duration::from_secs(cfg.transfer_timeout.max(1)),
            }),
            slots: Arc::new(Semaphore::new(cfg.max_transfers.max(1))),
        })
    }

    /// Serves `files` too, before the root.
    pub fn with_virtual_files(mut self, files: Arc<dyn VirtualFiles>) -> Self {
        let mut s = (*self.settings).clone();
        s.virtual_files = Some(files);
        self.settings = Arc::new(s);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Serves until the task is aborted.
    pub async fn run(self) {
        let addr = self.sock.local_addr().ok();
        info!(addr = ?addr, root = %self.settings.root.display(), "TFTP server listening");
        let mut buf = vec![0u8; 65536];
        loop {
            let (len, peer) = match self.sock.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends land here; nothing to do.
                    debug!(error = %e, "TFTP: receive error");
                    continue;
                }
            };
            match Packet::parse(&buf[..len]) {
                Ok(Packet::Rrq(req)) => self.start(req, peer).await,
                Ok(Packet::Wrq(req)) => {
                    info!(%peer, file = %req.filename, "TFTP: write request refused");
                    self.reply_error(peer, ErrorCode::AccessViolation, "read-only server")
                        .await;
                }
                Ok(other) => {
                    debug!(%peer, packet = ?other, "TFTP: unexpected packet on the server port")
                }
                Err(e) => debug!(%peer, error = %e, "TFTP: dropped a malformed packet"),
            }
        }
    }

    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, msg: &str) {
        let _ = self
            .sock
            .send_to(&packet::encode_error(code, msg), peer)
            .await;
    }

    async fn start(&self, req: Request, peer: SocketAddr) {
        if req.mode != "octet" {
            self.reply_error(
                peer,
                ErrorCode::IllegalOperation,
                "only octet mode is served",
            )
            .await;
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            warn!(%peer, file = %req.filename, "TFTP: too many transfers, request refused");
            self.reply_error(peer, ErrorCode::NotDefined, "server busy")
                .await;
            return;
        };
        let settings = self.settings.clone();
        // The transfer's socket: same local IP, a fresh port (its TID).
        let local_ip = match self.sock.local_addr() {
            Ok(a) => a.ip(),
            Err(_) => return,
        };
        tokio::spawn(async move {
            let _permit = permit;
            let sock = match UdpSocket::bind(SocketAddr::new(local_ip, 0)).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "TFTP: no socket for a transfer");
                    return;
                }
            };
            if sock.connect(peer).await.is_err() {
                return;
            }
            let file = req.filename.clone();
            match tokio::time::timeout(
                settings.transfer_deadline,
                serve(&sock, req, peer, &settings),
            )
            .await
            {
                Ok(Ok(Some(size))) => info!(%peer, %file, size, "TFTP: sent"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => info!(%peer, %file, error = %e, "TFTP: transfer ended"),
                Err(_) => {
                    warn!(%peer, %file, "TFTP: transfer deadline passed");
                    let _ = sock
                        .send(&packet::encode_error(
                            ErrorCode::NotDefined,
                            "transfer took too long",
                        ))
                        .await;
                }
            }
        });
    }
}

/// Opens the requested file and sends it; returns its size, or `None` when
/// the request was refused.
async fn serve(
    sock: &UdpSocket,
    req: Request,
    peer: SocketAddr,
    s: &Settings,
) -> Result<Option<u64>, transfer::TransferError> {
    let made_up = match &s.virtual_files {
        Some(v) => v.open(&req.filename, peer).await,
        None => None,
    };
    let path = match made_up {
        Some(VirtualFile::Bytes(bytes)) => {
            let size = bytes.len() as u64;
            let neg = transfer::negotiate(&req.options, size, s.timeout);
            transfer::send_file(sock, transfer::Source::Memory(bytes), size, &neg, s.retries)
                .await?;
            return Ok(Some(size));
        }
        Some(VirtualFile::Path(p)) => Ok(p),
        None => path::resolve(&s.root, &req.filename),
    };
    let path = match path {
        Ok(p) => p,
        Err(e) => {
            let code = match e {
                path::PathError::NotFound => ErrorCode::FileNotFound,
                _ => ErrorCode::AccessViolation,
            };
            debug!(file = %req.filename, error = %e, "TFTP: request refused");
            sock.send(&packet::encode_error(code, &e.to_string()))
                .await?;
            return Ok(None);
        }
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            sock.send(&packet::encode_error(
                ErrorCode::AccessViolation,
                "cannot open",
            ))
            .await?;
            return Err(e.into());
        }
    };
    let size = file.metadata().await?.len();
    let neg = transfer::negotiate(&req.options, size, s.timeout);
    transfer::send_file(sock, transfer::Source::File(file), size, &neg, s.retries).await?;
    Ok(Some(size))
}

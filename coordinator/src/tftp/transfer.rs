//! One read transfer: option negotiation, then DATA blocks in windows until
//! the last block is acknowledged.
//!
//! Block numbers: the transfer counts blocks in a `u64`; the wire carries
//! the low 16 bits, so after block 65535 the next block is 0 ("rollover to
//! 0", what tftp-hpa, iPXE and most PXE firmware expect). Files larger than
//! 65535 blocks (32 MiB at 512-byte blocks) therefore transfer. An ACK is
//! matched against the blocks in flight by its 16-bit distance from the
//! oldest unacknowledged block, which is unambiguous because at most
//! [`MAX_WINDOW`] blocks are ever in flight.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::UdpSocket;

use super::packet::{self, ErrorCode, Packet};

/// Default and bounds of the `blksize` option (RFC 2348).
pub const DEFAULT_BLKSIZE: usize = 512;
const MIN_BLKSIZE: u64 = 8;
const MAX_BLKSIZE: u64 = 65464;
/// Largest `windowsize` granted (RFC 7440 allows 65535; more blocks in
/// flight than this buys nothing on a LAN and costs memory).
pub const MAX_WINDOW: u64 = 64;

/// What was agreed with the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per block.
    pub blksize: usize,
    /// Retransmission interval.
    pub timeout: Duration,
    /// Blocks sent before waiting for an ACK.
    pub window: u64,
    /// The OACK to send first (empty: no options recognised, no OACK).
    pub oack: Vec<(&'static str, u64)>,
}

/// Reads the options of a request. Unknown options and out-of-range values
/// are left out of the OACK (RFC 2347: the server simply does not
/// acknowledge them), except a too large `blksize`/`windowsize`, which is
/// lowered to what the server allows.
pub fn negotiate(options: &[(String, String)], size: u64, default_timeout: Duration) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        timeout: default_timeout,
        window: 1,
        oack: Vec::new(),
    };
    for (name, value) in options {
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        match name.as_str() {
            "blksize" if v >= MIN_BLKSIZE => {
                let b = v.min(MAX_BLKSIZE);
                // b <= 65464 always fits.
                n.blksize = usize::try_from(b).unwrap_or(DEFAULT_BLKSIZE);
                n.oack.push(("blksize", b));
            }
            "tsize" => n.oack.push(("tsize", size)),
            "timeout" if (1..=255).contains(&v) => {
                n.timeout = Duration::from_secs(v);
                n.oack.push(("timeout", v));
            }
            "windowsize" if v >= 1 => {
                n.window = v.min(MAX_WINDOW);
                n.oack.push(("windowsize", n.window));
            }
            _ => {}
        }
    }
    n
}

/// Why a transfer ended early.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The client stopped answering.
    #[error("no ACK after {0} retries")]
    Timeout(u32),
    /// The client sent an ERROR.
    #[error("client error {code}: {message}")]
    Client {
        /// Code.
        code: u16,
        /// Message.
        message: String,
    },
    /// Socket or file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file is larger than a `u64` block count can describe.
    #[error("file too large")]
    TooLarge,
}

/// The 16-bit wire number of block `n`.
fn wire(n: u64) -> u16 {
    (n & 0xffff) as u16
}

/// What a transfer sends: a file, or bytes made up by the server
/// ([`super::VirtualFile::Bytes`]).
#[derive(Debug)]
pub enum Source {
    /// An open file.
    File(tokio::fs::File),
    /// Bytes in memory.
    Memory(Vec<u8>),
}

/// Reads block `n` (1-based) into `buf`; short only at the end of the file.
async fn read_block(
    source: &mut Source,
    n: u64,
    blksize: usize,
    buf: &mut Vec<u8>,
) -> Result<(), TransferError> {
    let offset = n
        .checked_sub(1)
        .and_then(|i| i.checked_mul(blksize as u64))
        .ok_or(TransferError::TooLarge)?;
    let file = match source {
        Source::File(f) => f,
        Source::Memory(bytes) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = start.saturating_add(blksize).min(bytes.len());
            buf.clear();
            buf.extend_from_slice(&bytes[start..end]);
            return Ok(());
        }
    };
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    buf.clear();
    buf.resize(blksize, 0);
    let mut filled = 0;
    while filled < blksize {
        let got = file.read(&mut buf[filled..]).await?;
        if got == 0 {
            break;
        }
        filled += got;
    }
    buf.truncate(filled);
    Ok(())
}

/// Waits for the next packet on the connected socket, or `None` on timeout.
/// Unparseable datagrams are dropped.
async fn recv(sock: &UdpSocket, buf: &mut [u8], until: tokio::time::Instant) -> Option<Packet> {
    loop {
        let got = tokio::time::timeout_at(until, sock.recv(buf)).await;
        match got {
            Err(_) => return None,
            // ICMP port unreachable shows up here; keep waiting for the deadline.
            Ok(Err(_)) => continue,
            Ok(Ok(len)) => match Packet::parse(&buf[..len]) {
                Ok(p) => return Some(p),
                Err(e) => tracing::debug!(error = %e, "TFTP: dropped a malformed packet"),
            },
        }
    }
}

/// Sends `file` (of `size` bytes) to the client `sock` is connected to.
pub async fn send_file(
    sock: &UdpSocket,
    mut file: Source,
    size: u64,
    neg: &Negotiated,
    retries: u32,
) -> Result<(), TransferError> {
    let mut rbuf = vec![0u8; 4 + 65535];
    let bs = neg.blksize as u64;
    // The last block is the first one shorter than blksize (possibly empty).
    let last = (size / bs).checked_add(1).ok_or(TransferError::TooLarge)?;

    if !neg.oack.is_empty() {
        let oack = packet::encode_oack(&neg.oack);
        let mut tries = 0;
        loop {
            sock.send(&oack).await?;
            let until = tokio::time::Instant::now() + neg.timeout;
            match recv(sock, &mut rbuf, until).await {
                Some(Packet::Ack(0)) => break,
                Some(Packet::Error { code, message }) => {
                    return Err(TransferError::Client { code, message });
                }
                Some(_) => {}
                None => {
                    tries += 1;
                    if tries > retries {
                        return Err(TransferError::Timeout(retries));
                    }
                }
            }
        }
    }

    let mut base: u64 = 1;
    let mut tries = 0u32;
    let mut block = Vec::with_capacity(neg.blksize);
    let mut out = Vec::with_capacity(neg.blksize + 4);
    loop {
        let end = base
            .checked_add(neg.window - 1)
            .ok_or(TransferError::TooLarge)?
            .min(last);
        for n in base..=end {
            read_block(&mut file, n, neg.blksize, &mut block).await?;
            packet::encode_data(&mut out, wire(n), &block);
            sock.send(&out).await?;
        }
        let in_flight = end - base + 1;
        let until = tokio::time::Instant::now() + neg.timeout;
        let mut progressed = false;
        while let Some(p) = recv(sock, &mut rbuf, until).await {
            match p {
                Packet::Ack(w) => {
                    let k = u64::from(w.wrapping_sub(wire(base)).wrapping_add(1));
                    if (1..=in_flight).contains(&k) {
                        base += k;
                        progressed = true;
                        break;
                    }
                    // An old or duplicate ACK: ignored (resending on it
                    // would be the Sorcerer's Apprentice bug).
                }
                Packet::Error { code, message } => {
                    return Err(TransferError::Client { code, message });
                }
                _ => {}
            }
        }
        if progressed {
            tries = 0;
            if base > last {
                return Ok(());
            }
        } else {
            tries += 1;
            if tries > retries {
                let _ = sock
                    .send(&packet::encode_error(ErrorCode::NotDefined, "timed out"))
                    .await;
                return Err(TransferError::Timeout(retries));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn negotiation() {
        let d = Duration::from_secs(1);
        let n = negotiate(
            &opts(&[("blksize", "1432"), ("tsize", "0"), ("foo", "1")]),
            99,
            d,
        );
        assert_eq!(n.blksize, 1432);
        assert_eq!(n.oack, vec![("blksize", 1432), ("tsize", 99)]);
        let n = negotiate(
            &opts(&[
                ("blksize", "100000"),
                ("windowsize", "1000"),
                ("timeout", "3"),
            ]),
            0,
            d,
        );
        assert_eq!(n.blksize, 65464);
        assert_eq!(n.window, MAX_WINDOW);
        assert_eq!(n.timeout, Duration::from_secs(3));
        let n = negotiate(
            &opts(&[
                ("blksize", "7"),
                ("timeout", "0"),
                ("windowsize", "x"),
                ("tsize", "-1"),
            ]),
            5,
            d,
        );
        assert_eq!(n.blksize, DEFAULT_BLKSIZE);
        assert!(n.oack.is_empty());
    }

    #[test]
    fn wire_numbers_roll_over() {
        assert_eq!(wire(65535), 65535);
        assert_eq!(wire(65536), 0);
        assert_eq!(wire(65537), 1);
        // An ACK of wire block 0 right after the rollover acknowledges block 65536.
        let base = 65535u64;
        assert_eq!(u64::from(0u16.wrapping_sub(wire(base)).wrapping_add(1)), 2);
    }
}

//! A fleet of simulated IPMI 2.0 BMCs for tests and benchmarks: each BMC has
//! its own UDP port on 127.0.0.1 and answers RMCP+ with cipher suite 3
//! (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128): Get Channel Authentication
//! Capabilities, Open Session, RAKP 1–4, Set Session Privilege Level, Close
//! Session, Get Device ID, Get Chassis Status and Chassis Control. The packet
//! and RAKP code is `ingot-ipmi`'s, the coordinator's client's own, used from
//! the BMC side.

pub mod bmc;

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

pub use bmc::Bmc;

/// A started fleet: one task per BMC on the current runtime.
#[derive(Debug)]
pub struct Fleet {
    /// The BMCs' UDP ports, in index order.
    pub ports: Vec<u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds `count` BMCs on 127.0.0.1, at `base_port`, `base_port + 1`, … or on
/// free ports when `base_port` is 0, and serves them until the fleet is dropped.
pub async fn start(count: usize, base_port: u16, user: &str, password: &str) -> io::Result<Fleet> {
    let mut ports = Vec::with_capacity(count);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let port = if base_port == 0 {
            0
        } else {
            u16::try_from(usize::from(base_port) + i)
                .map_err(|_| io::Error::other("port range exceeds 65535"))?
        };
        let sock = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        ports.push(sock.local_addr()?.port());
        let mut bmc = Bmc::new(i as u64, user, password);
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = bmc.handle(&buf[..n]) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        }));
    }
    Ok(Fleet { ports, tasks })
}

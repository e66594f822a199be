//! A fleet of simulated IPMI 2.0 BMCs for tests and benchmarks: each BMC has
//! its own UDP port on 127.0.0.1 and answers RMCP+ with cipher suite 3
//! (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128): Get Channel Authentication
//! Capabilities, Open Session, RAKP 1–4, Set Session Privilege Level, Close
//! Session, Get Device ID, Get Chassis Status and Chassis Control. The packet
//! and RAKP code is `ingot-ipmi`'s, the coordinator's client's own, used from
//! the BMC side.
//!
//! Each BMC remembers when it answered Get Chassis Status, and in which
//! session ([`Bmc::status_queries`]); [`Fleet::status_report`] and the
//! control endpoint ([`control`]) hand that to a benchmark.

pub mod bmc;
pub mod control;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;

pub use bmc::{Bmc, StatusQuery};

/// The fleet's BMCs, shared between their tasks and the control endpoint.
pub type Bmcs = Arc<[Mutex<Bmc>]>;

/// Locks one BMC (a poisoned lock still holds a usable BMC).
pub fn lock(bmc: &Mutex<Bmc>) -> MutexGuard<'_, Bmc> {
    bmc.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A started fleet: one task per BMC on the current runtime.
#[derive(Debug)]
pub struct Fleet {
    /// The BMCs' UDP ports, in index order.
    pub ports: Vec<u16>,
    bmcs: Bmcs,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Fleet {
    /// The BMCs, in index order (for the control endpoint, or to switch a
    /// chassis out of band).
    pub fn bmcs(&self) -> Bmcs {
        Arc::clone(&self.bmcs)
    }

    /// The status queries every BMC answered at or after `since_ms`
    /// (milliseconds since the Unix epoch), one list per BMC in index order.
    pub fn status_report(&self, since_ms: u64) -> Vec<Vec<StatusQuery>> {
        self.bmcs
            .iter()
            .map(|b| lock(b).status_queries(since_ms).collect())
            .collect()
    }
}

/// Binds `count` BMCs on 127.0.0.1, at `base_port`, `base_port + 1`, … or on
/// free ports when `base_port` is 0, and serves them until the fleet is dropped.
pub async fn start(count: usize, base_port: u16, user: &str, password: &str) -> io::Result<Fleet> {
    let mut ports = Vec::with_capacity(count);
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let port = if base_port == 0 {
            0
        } else {
            u16::try_from(usize::from(base_port) + i)
                .map_err(|_| io::Error::other("port range exceeds 65535"))?
        };
        let sock = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        ports.push(sock.local_addr()?.port());
        sockets.push(sock);
    }
    let bmcs: Bmcs = (0..count)
        .map(|i| Mutex::new(Bmc::new(i as u64, user, password)))
        .collect();
    let mut tasks = Vec::with_capacity(count);
    for (i, sock) in sockets.into_iter().enumerate() {
        let bmcs = Arc::clone(&bmcs);
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let reply = bmcs.get(i).and_then(|b| lock(b).handle(&buf[..n]));
                if let Some(reply) = reply {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        }));
    }
    Ok(Fleet { ports, bmcs, tasks })
}

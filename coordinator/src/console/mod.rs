//! Serial consoles of nodes: Ironic's console interface `ipmitool-socat`,
//! served natively. Enabling a node's console starts an [`endpoint`]: a TCP
//! listener on the API's address and a free port, guarded by a random
//! per-node token, bridged to the BMC's Serial-over-LAN payload
//! ([`crate::power::ipmi::sol`]). Disabling it (or deleting the node, or
//! shutting the coordinator down) closes the listener, deactivates the
//! payload and then closes the client's connection.
//!
//! `console_enabled` is stored on the node; tokens and ports live only in
//! memory. At start-up [`restore`] starts an endpoint for every node with
//! its console enabled: the port and the token are new after a restart.

pub mod endpoint;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::db::Db;
use crate::model::Node;
use crate::power::ipmi::{BmcConfig, IpmiVersion, Timing};

/// The console interface served here (Ironic's name, so clients and
/// `baremetal node set --console-interface` use what they know).
pub const SOCAT: &str = "ipmitool-socat";

/// Console errors.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The listener could not be bound.
    #[error("binding the console listener on {addr}: {source}")]
    Bind {
        /// Address.
        addr: IpAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No randomness for the token.
    #[error("generating the console token: {0}")]
    Random(String),
}

/// Where a node's console listens and the token it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleInfo {
    /// Listener address.
    pub addr: SocketAddr,
    /// The token a client sends as its first line.
    pub token: String,
    /// The endpoint speaks TLS (`ssl://` in the URL).
    pub tls: bool,
}

impl ConsoleInfo {
    /// Ironic's `console_info` for a socat console, plus the token.
    /// `host` replaces an unspecified listen address (0.0.0.0, ::).
    pub fn to_json(&self, host: &str) -> Value {
        let ip = self.addr.ip();
        let h = if ip.is_unspecified() {
            host.to_owned()
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let scheme = if self.tls { "ssl" } else { "tcp" };
        json!({
            "type": "socat",
            "url": format!("{scheme}://{h}:{}", self.addr.port()),
            "token": self.token,
        })
    }
}

/// The running consoles, by node UUID.
#[derive(Clone, Default)]
pub struct Consoles {
    running: Arc<tokio::sync::Mutex<HashMap<String, endpoint::Endpoint>>>,
    timing: Timing,
    tls: Arc<std::sync::OnceLock<tokio_rustls::TlsAcceptor>>,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consoles")
            .field("tls", &self.tls.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Consoles {
    /// Serves the endpoints started from now on with TLS (the API's
    /// certificate); set once at start-up.
    pub fn set_tls(&self, acceptor: tokio_rustls::TlsAcceptor) {
        let _ = self.tls.set(acceptor);
    }

    /// Starts the node's console (or returns the running one's info).
    pub async fn start(
        &self,
        node: &str,
        bmc: BmcConfig,
        bind: IpAddr,
    ) -> Result<ConsoleInfo, ConsoleError> {
        let mut running = self.running.lock().await;
        if let Some(e) = running.get(node) {
            return Ok(e.info.clone());
        }
        let tls = self.tls.get().cloned();
        let e = endpoint::Endpoint::start(node, bmc, bind, self.timing.clone(), tls).await?;
        let info = e.info.clone();
        running.insert(node.to_owned(), e);
        Ok(info)
    }

    /// Stops the node's console; whether one was running.
    pub async fn stop(&self, node: &str) -> bool {
        let e = self.running.lock().await.remove(node);
        match e {
            Some(e) => {
                e.stop().await;
                true
            }
            None => false,
        }
    }

    /// The running console of a node.
    pub async fn info(&self, node: &str) -> Option<ConsoleInfo> {
        self.running.lock().await.get(node).map(|e| e.info.clone())
    }

    /// Stops every console.
    pub async fn stop_all(&self) {
        let all: Vec<_> = self.running.lock().await.drain().collect();
        for (_, e) in all {
            e.stop().await;
        }
    }
}

/// Whether the node's console interface is served by this module.
pub fn supported(node: &Node) -> bool {
    node.console_interface.as_deref() == Some(SOCAT)
}

/// True for Ironic's `fake` console interface: enabling and disabling are
/// recorded, nothing listens, and `console_info` is empty.
pub fn is_fake(node: &Node) -> bool {
    node.console_interface.as_deref() == Some("fake")
}

/// The node's BMC as its console needs it: the `driver_info` parses and
/// speaks IPMI 2.0 (Serial-over-LAN is an RMCP+ payload; a node with
/// `ipmi_protocol_version: "1.5"` has no console).
pub fn console_bmc(node: &Node) -> Result<BmcConfig, String> {
    let cfg =
        crate::power::ipmi::driver::bmc_config(&node.driver_info).map_err(|e| e.to_string())?;
    if cfg.version != IpmiVersion::V20 {
        return Err(
            "Serial-over-LAN needs IPMI 2.0 (RMCP+); the node's ipmi_protocol_version is 1.5"
                .into(),
        );
    }
    Ok(cfg)
}

/// Where a node's console runs, in `driver_internal_info`: the
/// coordinator and the `console_info` it gave out, so that every member of
/// a group answers `GET …/states/console` and a new owner knows when to
/// start it again.
pub const HOST_KEY: &str = "console_conductor";
/// See [`HOST_KEY`].
pub const INFO_KEY: &str = "console_info";

/// Records that coordinator `me` runs the node's console with `info`.
pub fn record(node: &mut Node, me: &str, info: Value) {
    node.driver_internal_info
        .insert(HOST_KEY.into(), Value::String(me.to_owned()));
    node.driver_internal_info.insert(INFO_KEY.into(), info);
}

/// Forgets where the node's console ran.
pub fn forget(node: &mut Node) {
    node.driver_internal_info.remove(HOST_KEY);
    node.driver_internal_info.remove(INFO_KEY);
}

/// The coordinator recorded as running the node's console.
pub fn host_of(node: &Node) -> Option<&str> {
    node.driver_internal_info
        .get(HOST_KEY)
        .and_then(Value::as_str)
}

/// Starts the console of a node that has `console_enabled` on this
/// coordinator (`me`), listening on `bind`, and records where it runs
/// (`host` names this coordinator in the URL when `bind` is unspecified):
/// at start-up and after a takeover. A console that cannot start gets
/// `console_enabled = false` and the reason in `last_error`. It takes the
/// database and the consoles rather than the conductor, so that this module
/// does not depend on the conductor (which owns the [`Consoles`]).
pub async fn restore_one(
    db: &Db,
    consoles: &Consoles,
    bind: IpAddr,
    host: &str,
    me: &str,
    n: &Node,
) -> bool {
    let result = if supported(n) {
        match console_bmc(n) {
            Ok(cfg) => consoles
                .start(&n.uuid, cfg, bind)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    } else {
        Err(format!(
            "console interface {} has no console",
            n.console_interface.as_deref().unwrap_or("none")
        ))
    };
    match result {
        Ok(info) => {
            tracing::info!(node = %n.uuid, addr = %info.addr, "console restored");
            let json = info.to_json(host);
            let r = db
                .update_node(&n.uuid, |m| {
                    record(m, me, json.clone());
                    Ok::<(), std::convert::Infallible>(())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(node = %n.uuid, error = ?e, "recording the console failed");
            }
            true
        }
        Err(reason) => {
            tracing::warn!(node = %n.uuid, error = %reason, "console could not be restored; disabling it");
            let msg = format!(
                "The console could not be restarted after a coordinator restart or takeover: {reason}"
            );
            let r = db
                .update_node(&n.uuid, |m| {
                    m.console_enabled = false;
                    forget(m);
                    m.last_error = Some(msg.clone());
                    Ok::<(), std::convert::Infallible>(())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(node = %n.uuid, error = ?e, "recording the console failure failed");
            }
            false
        }
    }
}

//! The agent's main loop: discover the coordinator's API version, start the
//! agent API (auto-TLS when the coordinator supports `agent_verify_ca`), look
//! the node up by its MACs, then heartbeat until the token is revoked, and
//! look up again. It never returns: a lost coordinator means retrying, on the
//! next coordinator URL when there are several ([`super::failover`]).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingot_proto::agent::{HeartbeatRequest, LookupResponse};
use tokio::net::TcpListener;

use super::failover::{Backoff, Coordinators, moves_on};
use super::{Client, ClientError};
use crate::api;
use crate::ca::TrustedCa;
use crate::random::uniform;
use crate::state::AgentState;

/// Whether the agent API uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS when the coordinator accepts `agent_verify_ca` (API ≥ 1.68), as IPA.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// How to reach the coordinator and serve the API.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Coordinator URLs: the first that answers is used, and the next one
    /// (round-robin) whenever the one in use stops answering.
    pub api_urls: Vec<String>,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The host in the callback URL (default: the source address of the
    /// route to the coordinator).
    pub advertise_host: Option<String>,
    /// The port in the callback URL (default: the listening port).
    pub advertise_port: Option<u16>,
    /// TLS of the agent API.
    pub tls: TlsMode,
    /// CA certificates trusted for the coordinator (besides the public roots).
    pub ca: TrustedCa,
    /// Do not verify the coordinator's certificate.
    pub insecure: bool,
    /// First lookup retry interval (doubles up to `lookup_max_interval`).
    pub lookup_interval: Duration,
    /// Longest lookup retry interval.
    pub lookup_max_interval: Duration,
    /// MAC addresses to look up with (default: every interface of the inventory).
    pub macs: Vec<String>,
    /// Notified when the network has been configured (as PID 1, the network
    /// comes up beside the runtime): a retry waiting for the coordinator to
    /// answer then goes at once instead of at the end of its delay.
    pub network_ready: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl RunOptions {
    /// Defaults for a coordinator URL.
    pub fn new(api_url: &str) -> Self {
        Self {
            api_urls: api_url
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            listen: SocketAddr::from(([0, 0, 0, 0], ingot_proto::agent::DEFAULT_AGENT_PORT)),
            advertise_host: None,
            advertise_port: None,
            tls: TlsMode::Auto,
            ca: TrustedCa::none(),
            insecure: false,
            // Short at first: the network often comes up within a second of the
            // first try, and every retry delay adds to the time to the first heartbeat.
            lookup_interval: Duration::from_millis(250),
            lookup_max_interval: Duration::from_secs(60),
            macs: Vec::new(),
            network_ready: None,
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No coordinator URL.
    #[error("no coordinator URL given")]
    NoUrl,
    /// The API could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] api::tls::TlsError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The source address the kernel would use to reach `url`'s host.
pub fn route_source(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let default_port = if url.starts_with("https") { 443 } else { 80 };
    let target: SocketAddr = if let Ok(sa) = authority.parse() {
        sa
    } else {
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .ok()?
            .next()?
    };
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .ok()?;
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(target).ok()?;
    Some(s.local_addr().ok()?.ip())
}

fn callback_url(tls: bool, host: &str, port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Tries each coordinator URL until one answers `GET /`; retries forever.
async fn discover(coords: &mut Coordinators, opts: &RunOptions) {
    let mut backoff = Backoff::new(opts.lookup_interval, opts.lookup_max_interval);
    while coords.discover_round().await.is_none() {
        let delay = tokio::time::sleep(backoff.next_delay());
        match &opts.network_ready {
            Some(ready) => {
                tokio::select! {
                    () = delay => {}
                    () = ready.notified() => tracing::debug!("network configured: asking the coordinator again"),
                }
            }
            None => delay.await,
        }
    }
}

/// Looks the node up until it is found with a usable token; retries forever
/// (IPA gives up after 10 minutes; PID 1 must not). A URL that does not
/// answer (or answers 5xx) hands over to the next one at once.
async fn lookup(
    coords: &mut Coordinators,
    state: &AgentState,
    opts: &RunOptions,
) -> LookupResponse {
    let mut backoff = Backoff::new(opts.lookup_interval, opts.lookup_max_interval);
    let mut conflicts = 0usize;
    let started = Instant::now();
    loop {
        let result = coords.current().lookup(&opts.macs, None).await;
        if !result.as_ref().is_err_and(moves_on) {
            coords.answered();
        }
        let wait = match result {
            Ok(resp) => {
                let offered = resp
                    .config
                    .agent_token
                    .clone()
                    .filter(|t| !t.is_empty() && t != "******");
                let required = resp.config.agent_token_required.unwrap_or(true);
                match (offered, state.token()) {
                    (Some(t), _) => {
                        state.accept_lookup_token(t);
                        tracing::info!(node = %resp.node.uuid, "looked up; received the agent token");
                        state.set_lookup(resp.node.clone(), resp.config.clone());
                        return resp;
                    }
                    (None, Some(_)) => {
                        tracing::info!(node = %resp.node.uuid, "looked up; keeping the agent token this agent already holds");
                        state.set_lookup(resp.node.clone(), resp.config.clone());
                        return resp;
                    }
                    (None, None) if !required => {
                        state.set_lookup(resp.node.clone(), resp.config.clone());
                        return resp;
                    }
                    (None, None) => {
                        // Issued to an earlier run of the agent that lost it.
                        // Keep asking: the coordinator issues a new one once
                        // it has wiped the old (power cycle, new operation).
                        tracing::warn!(node = %resp.node.uuid, "the coordinator issued the agent token to an earlier run; waiting for a new one");
                        state.set_lookup(resp.node.clone(), resp.config.clone());
                        Duration::from_secs(30).min(opts.lookup_max_interval)
                    }
                }
            }
            Err(e) if e.status() == Some(409) => {
                let d = [5u64, 10, 30][conflicts.min(2)];
                conflicts += 1;
                tracing::info!(error = %e, "node locked by the coordinator; retrying");
                Duration::from_secs(d).min(opts.lookup_max_interval.max(opts.lookup_interval))
            }
            Err(e) if moves_on(&e) => {
                tracing::warn!(error = %e, elapsed_s = started.elapsed().as_secs(), "lookup failed; retrying");
                if coords.failed("lookup", &e).await {
                    Duration::ZERO
                } else {
                    backoff.next_delay()
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, elapsed_s = started.elapsed().as_secs(), "lookup failed; retrying");
                backoff.next_delay()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Heartbeats until the coordinator stops accepting the token (or forgets
/// the node); returns so that the caller looks up again. A heartbeat that
/// gets no answer (or a 5xx) is sent again at once to the next URL that
/// answers; when none does, again after a bounded backoff (1 s doubling up
/// to `heartbeat_timeout × 0.3`, at most 30 s).
async fn heartbeat_loop(
    coords: &mut Coordinators,
    state: &AgentState,
    node: &str,
    callback: &str,
    cert_pem: Option<&str>,
    timeout: f64,
) {
    let mut rejected = 0u32;
    let mut backoff = Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs_f64((timeout * 0.3).clamp(1.0, 30.0)),
    );
    loop {
        let client = coords.current();
        let body = HeartbeatRequest {
            callback_url: callback.to_string(),
            agent_version: state.config.version.clone(),
            agent_token: state.token(),
            agent_verify_ca: cert_pem
                .filter(|_| client.supports_verify_ca())
                .map(str::to_string),
        };
        let result = client.heartbeat(node, &body).await;
        let next = match result {
            Ok(()) => {
                rejected = 0;
                coords.answered();
                backoff.reset();
                tracing::debug!(node, "heartbeat accepted");
                Duration::from_secs_f64(timeout * uniform(0.3, 0.6))
            }
            Err(e) if moves_on(&e) => {
                tracing::warn!(url = %coords.current().base(), error = %e, "heartbeat failed");
                if coords.failed("heartbeat", &e).await {
                    Duration::ZERO
                } else {
                    backoff.next_delay()
                }
            }
            Err(e) => {
                coords.answered();
                let status = e.status();
                let token_problem = matches!(status, Some(400 | 401))
                    && e.to_string().to_lowercase().contains("token");
                if token_problem || status == Some(404) {
                    rejected += 1;
                    tracing::warn!(error = %e, rejected, "heartbeat rejected");
                    if rejected >= 3 {
                        tracing::info!(
                            "the coordinator no longer accepts this agent's token; looking up again"
                        );
                        if token_problem {
                            state.set_token(None);
                        }
                        return;
                    }
                } else {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                Duration::from_secs_f64(5.0 * uniform(1.0, 2.0))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = state.heartbeat_now.notified() => {
                tracing::debug!("a command finished: heartbeating now");
            }
        }
    }
}

/// Runs the agent against a coordinator. Returns only on a setup error.
pub async fn run(state: Arc<AgentState>, mut opts: RunOptions) -> Result<(), RunError> {
    if opts.api_urls.is_empty() {
        return Err(RunError::NoUrl);
    }
    if opts.insecure {
        tracing::warn!(
            ignored_ca_certificates = opts.ca.len(),
            "TLS verification is off (ingot.insecure / ipa-insecure / --insecure): neither the coordinator's nor the image servers' certificates are verified"
        );
    } else if !opts.ca.is_empty() {
        tracing::info!(
            certificates = opts.ca.len(),
            from = ?opts.ca.origins(),
            "trusting the configured CA certificates besides the public roots"
        );
    }
    let mut coords = Coordinators::new(
        opts.api_urls
            .iter()
            .map(|u| Client::new(u, &opts.ca, opts.insecure))
            .collect::<Result<Vec<_>, _>>()?,
    );
    if opts.macs.is_empty() {
        let root = state.config.root.clone();
        let inv = tokio::task::spawn_blocking(move || {
            crate::inventory::collect(&crate::inventory::InventoryOptions {
                root,
                lldp_timeout: None,
                bmc: false,
            })
        })
        .await
        .unwrap_or_default();
        opts.macs = inv
            .interfaces
            .iter()
            .map(|i| i.mac_address.clone())
            .filter(|m| !m.is_empty())
            .collect();
    }
    tracing::info!(macs = ?opts.macs, "hardware addresses for lookup");
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: opts.listen,
            source,
        })?;
    let port = opts.advertise_port.unwrap_or(
        listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(opts.listen.port()),
    );
    discover(&mut coords, &opts).await;
    let client = coords.current();
    let use_tls = match opts.tls {
        TlsMode::On => true,
        TlsMode::Off => false,
        TlsMode::Auto => client.supports_verify_ca(),
    };
    let host = match &opts.advertise_host {
        Some(h) => h.clone(),
        None => route_source(client.base())
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "127.0.0.1".into()),
    };
    let tls = if use_tls {
        Some(api::tls::generate(&host)?)
    } else {
        None
    };
    let callback = callback_url(use_tls, &host, port);
    tracing::info!(callback_url = %callback, tls = use_tls, "agent API listening");
    tokio::spawn(api::serve(
        listener,
        tls.as_ref().map(|t| t.acceptor.clone()),
        state.clone(),
    ));
    let cert_pem = tls.map(|t| t.cert_pem);
    loop {
        let resp = lookup(&mut coords, &state, &opts).await;
        let timeout = resp
            .config
            .heartbeat_timeout
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(300.0)
            // Bounded: the heartbeat delay is built from it with
            // Duration::from_secs_f64, which panics on absurd values.
            .clamp(1.0, 86_400.0);
        heartbeat_loop(
            &mut coords,
            &state,
            &resp.node.uuid,
            &callback,
            cert_pem.as_deref(),
            timeout,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls() {
        assert_eq!(
            callback_url(true, "10.0.0.5", 9999),
            "https://10.0.0.5:9999"
        );
        assert_eq!(
            callback_url(false, "fd00::5", 9999),
            "http://[fd00::5]:9999"
        );
        assert_eq!(
            route_source("http://127.0.0.1:6385"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
    }
}

//! The API's HTTP server: hyper's HTTP/1 connection handling under limits
//! that a hostile or careless client cannot outgrow.
//!
//! - A request's headers must arrive within `header_timeout_ms`; hyper
//!   starts the same timer when a kept-alive connection goes idle, so it is
//!   also the idle timeout.
//! - At most `max_connections` connections at once, and at most
//!   `max_connections_per_ip` from one address: one neighbour holding
//!   thousands of idle sockets cannot lock others out.
//! - A connection serves at most `max_requests_per_connection` requests,
//!   then answers with `Connection: close`.
//! - Bodies are bounded in size and time by [`crate::api::limits`].
//!
//! Every limit that triggers is logged as a warning (at most one line per
//! kind every 10 s, with the count).
//!
//! With a TLS acceptor the connection is HTTPS; the handshake must also
//! finish within `header_timeout_ms`. Each request carries its
//! [`RequestScheme`], so the URLs the API writes (links, iPXE scripts) use
//! the scheme the client used.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::config::ApiConfig;

/// Counts connections in total and per address.
#[derive(Debug, Default)]
struct Connections {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
struct Admitted {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut m) = self.conns.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerIp,
}

impl Connections {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ApiConfig) -> Result<Admitted, Refusal> {
        let mut m = self
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = m.values().sum();
        if total >= limits.max_connections {
            return Err(Refusal::Total);
        }
        let n = m.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        Ok(Admitted {
            conns: self.clone(),
            ip,
        })
    }
}

/// A warning that is logged at most once per period, with how often it
/// happened meanwhile.
#[derive(Debug)]
pub struct RateLimitedWarning {
    what: &'static str,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedWarning {
    const PERIOD: Duration = Duration::from_secs(10);

    /// A warning about `what`.
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence (from `peer`) and logs when the period is over.
    pub fn hit(&self, peer: SocketAddr, detail: &str) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.1 += 1;
        let due = s.0.is_none_or(|t| t.elapsed() >= Self::PERIOD);
        if due {
            warn!(limit = self.what, %peer, count = s.1, detail, "HTTP limit triggered");
            *s = (Some(Instant::now()), 0);
        }
    }
}

static REFUSED_TOTAL: RateLimitedWarning = RateLimitedWarning::new("max_connections");
static REFUSED_PER_IP: RateLimitedWarning = RateLimitedWarning::new("max_connections_per_ip");
static HEADER_TIMEOUT: RateLimitedWarning = RateLimitedWarning::new("header_timeout_ms");
static TLS_HANDSHAKE: RateLimitedWarning = RateLimitedWarning::new("tls_handshake");

/// A task aborted when this is dropped (a listener that lives as long as
/// another task).
#[derive(Debug)]
pub struct AbortOnDrop<T = std::io::Result<()>>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The scheme a request came in with (`http` or `https`), as a request
/// extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestScheme(pub &'static str);

/// Serves `app` on `listener` under the limits of `limits` (HTTPS with
/// `tls`), until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ApiConfig,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let conns = Arc::new(Connections::default());
    let limits = Arc::new(limits);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = match conns.admit(peer.ip(), &limits) {
            Ok(a) => a,
            Err(why) => {
                let (w, max) = match why {
                    Refusal::Total => (&REFUSED_TOTAL, limits.max_connections),
                    Refusal::PerIp => (&REFUSED_PER_IP, limits.max_connections_per_ip),
                };
                w.hit(peer, &format!("connection refused: {max} already open"));
                drop(stream);
                continue;
            }
        };
        let app = app.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_connection(stream, peer, app, &limits, "http").await,
                Some(acceptor) => {
                    let timeout = Duration::from_millis(limits.header_timeout_ms);
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, peer, app, &limits, "https").await,
                        Ok(Err(e)) => {
                            TLS_HANDSHAKE.hit(peer, &format!("TLS handshake failed: {e}"))
                        }
                        Err(_) => TLS_HANDSHAKE.hit(peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(admitted);
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: &ApiConfig,
    scheme: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(AtomicU64::new(0));
    let max_requests = limits.max_requests_per_connection;
    let counted = served.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let mut app = app.clone();
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(RequestScheme(scheme));
        async move {
            let mut resp = tower_service::Service::call(&mut app, req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            if n >= max_requests {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        // A kept-alive connection that went idle ends the same way; only a
        // connection that never completed a request is worth a warning.
        if e.is_timeout() && counted.load(Ordering::Relaxed) == 0 {
            HEADER_TIMEOUT.hit(
                peer,
                "no complete request headers in time; connection closed",
            );
        } else {
            debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

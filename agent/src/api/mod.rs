//! The agent API on port 9999, IPA-compatible: `GET /`, `GET /v1/`,
//! `GET /v1/status`, `GET|POST /v1/commands/`, `GET /v1/commands/<id>`.
//! HTTP/1.1 over plain TCP or auto-TLS, served by hyper.

mod routes;
pub mod tls;

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::state::AgentState;

pub use routes::handle;

/// Serves the API on `listener` forever (TLS when `tls` is given).
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<AgentState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
            });
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
}

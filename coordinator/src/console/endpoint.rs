//! One node's console endpoint: a TCP listener (TLS when the API serves
//! HTTPS: the same certificate, handshake within the token's time) whose
//! clients must send the
//! node's token as their first line (within 10 s, up to 128 bytes, `\r\n`
//! or `\n`); then bytes from the client go to the server's serial input and
//! the server's serial output goes to the client. One client at a time: a
//! second authenticated client is told the console is in use and closed.
//! A wrong or missing token gets "invalid console token" and is closed.
//!
//! The SOL session is activated when the endpoint starts (output while no
//! client is connected is dropped) and re-activated whenever it ends (BMC
//! restarted, session lost, payload deactivated by another session): after
//! 3 s, doubling per failed attempt up to 60 s. Successive activations
//! share one [`SolSequence`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{ConsoleError, ConsoleInfo};
use crate::power::ipmi::sol::{SolConsole, SolSequence};
use crate::power::ipmi::{BmcConfig, IpmiError, Timing};

/// Time a new connection has to send its token.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest token line accepted.
const TOKEN_LINE_MAX: usize = 128;
/// Pause before re-activating SOL after a failure; doubled after each
/// failed activation up to [`SOL_RETRY_MAX`].
const SOL_RETRY: Duration = Duration::from_secs(3);
/// Longest pause between activation attempts.
const SOL_RETRY_MAX: Duration = Duration::from_secs(60);
/// A client that does not take output for this long is disconnected.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long stopping waits for an SOL activation in flight (which is then
/// deactivated) before abandoning it.
const STOP_ACTIVATION_WAIT: Duration = Duration::from_secs(2);

/// A client's byte stream: plain TCP or TLS.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}
type ClientStream = Box<dyn ClientIo>;

/// A running endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Address and token.
    pub info: ConsoleInfo,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn new_token() -> Result<String, ConsoleError> {
    let mut b = [0u8; 24];
    getrandom::getrandom(&mut b).map_err(|e| ConsoleError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Endpoint {
    /// Binds the listener and starts the endpoint's task.
    pub async fn start(
        node: &str,
        bmc: BmcConfig,
        bind: IpAddr,
        timing: Timing,
        tls: Option<TlsAcceptor>,
    ) -> Result<Self, ConsoleError> {
        let listener = TcpListener::bind(SocketAddr::new(bind, 0))
            .await
            .map_err(|source| ConsoleError::Bind { addr: bind, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ConsoleError::Bind { addr: bind, source })?;
        let token = new_token()?;
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(
            node.to_owned(),
            listener,
            token.clone(),
            bmc,
            timing,
            stop_rx,
            tls.clone(),
        ));
        tracing::info!(node, %addr, tls = tls.is_some(), "console listening");
        Ok(Self {
            info: ConsoleInfo {
                addr,
                token,
                tls: tls.is_some(),
            },
            stop,
            task,
        })
    }

    /// Closes the listener, deactivates SOL and then closes the client
    /// (waits up to 10 s).
    pub async fn stop(mut self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Completes TLS (when configured) and reads the token line, both within
/// [`TOKEN_TIMEOUT`].
async fn handshake(
    s: tokio::net::TcpStream,
    token: String,
    tls: Option<TlsAcceptor>,
) -> Option<ClientStream> {
    let s: ClientStream = match tls {
        None => Box::new(s),
        Some(acceptor) => match tokio::time::timeout(TOKEN_TIMEOUT, acceptor.accept(s)).await {
            Ok(Ok(t)) => Box::new(t),
            _ => return None,
        },
    };
    check_token(s, token).await
}

/// Reads the first line and checks it against the token.
async fn check_token(mut s: ClientStream, token: String) -> Option<ClientStream> {
    let mut line = Vec::with_capacity(64);
    let read = async {
        let mut b = [0u8; 1];
        while line.len() <= TOKEN_LINE_MAX {
            match s.read(&mut b).await {
                Ok(1) if b[0] == b'\n' => return true,
                Ok(1) => line.push(b[0]),
                _ => return false,
            }
        }
        false
    };
    let complete = tokio::time::timeout(TOKEN_TIMEOUT, read)
        .await
        .unwrap_or(false);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if complete && same(&line, token.as_bytes()) {
        return Some(s);
    }
    let _ = s.write_all(b"invalid console token\r\n").await;
    let _ = s.shutdown().await;
    None
}

/// A connected, authenticated client.
struct Client {
    id: u64,
    writer: WriteHalf<ClientStream>,
    reader: JoinHandle<()>,
}

async fn join_opt<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn sol_output(s: &mut Option<SolConsole>) -> Option<Vec<u8>> {
    match s {
        Some(s) => s.output.recv().await,
        None => std::future::pending().await,
    }
}

async fn run(
    node: String,
    listener: TcpListener,
    token: String,
    bmc: BmcConfig,
    timing: Timing,
    mut stop: oneshot::Receiver<()>,
    tls: Option<TlsAcceptor>,
) {
    let (authed_tx, mut authed_rx) = mpsc::channel::<ClientStream>(4);
    let (in_tx, mut in_rx) = mpsc::channel::<(u64, Option<Vec<u8>>)>(64);
    let mut handshakes = JoinSet::new();
    let mut client: Option<Client> = None;
    let mut next_id = 0u64;
    let mut sol: Option<SolConsole> = None;
    let mut connecting: Option<JoinHandle<Result<SolConsole, IpmiError>>> = None;
    let mut retry_at = Instant::now();
    let mut backoff = SOL_RETRY;
    // Shared by this console's successive activations (see SolSequence).
    let seq = SolSequence::default();
    loop {
        if sol.is_none() && connecting.is_none() && Instant::now() >= retry_at {
            let (b, t, q) = (bmc.clone(), timing.clone(), seq.clone());
            connecting = Some(tokio::spawn(async move {
                SolConsole::activate(&b, &t, q).await
            }));
        }
        tokio::select! {
            _ = &mut stop => break,
            acc = listener.accept() => match acc {
                Ok((s, peer)) => {
                    tracing::debug!(node = %node, %peer, "console connection");
                    let (tok, tx, tls) = (token.clone(), authed_tx.clone(), tls.clone());
                    handshakes.spawn(async move {
                        match handshake(s, tok, tls).await {
                            Some(s) => { let _ = tx.send(s).await; }
                            None => tracing::warn!(%peer, "console connection refused: invalid token"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "console accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(()) = async { handshakes.join_next().await.map(|_| ()) }, if !handshakes.is_empty() => {}
            Some(mut s) = authed_rx.recv() => {
                if client.is_some() {
                    let _ = s.write_all(b"console in use by another client\r\n").await;
                    let _ = s.shutdown().await;
                    continue;
                }
                next_id += 1;
                let id = next_id;
                let (mut r, w) = tokio::io::split(s);
                let tx = in_tx.clone();
                let reader = tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send((id, Some(buf[..n].to_vec()))).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tx.send((id, None)).await;
                });
                tracing::info!(node = %node, "console client attached");
                client = Some(Client { id, writer: w, reader });
            }
            Some((id, data)) = in_rx.recv() => {
                if client.as_ref().is_some_and(|c| c.id == id) {
                    match data {
                        Some(b) => match &sol {
                            Some(s) => {
                                if s.input.send(b).await.is_err() {
                                    tracing::debug!(node = %node, "SOL input closed");
                                }
                            }
                            None => tracing::debug!(node = %node, "SOL not active; client input dropped"),
                        },
                        None => {
                            tracing::info!(node = %node, "console client left");
                            client = None;
                        }
                    }
                }
            }
            r = join_opt(&mut connecting) => {
                connecting = None;
                match r {
                    Ok(Ok(s)) => {
                        sol = Some(s);
                        backoff = SOL_RETRY;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(node = %node, error = %e, retry_in_s = backoff.as_secs(), "SOL activation failed; retrying");
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(SOL_RETRY_MAX);
                    }
                    Err(e) => {
                        tracing::warn!(node = %node, error = %e, "SOL activation task failed");
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(SOL_RETRY_MAX);
                    }
                }
            }
            out = sol_output(&mut sol) => match out {
                Some(b) => {
                    if let Some(c) = &mut client {
                        let w = tokio::time::timeout(CLIENT_WRITE_TIMEOUT, c.writer.write_all(&b)).await;
                        if !matches!(w, Ok(Ok(()))) {
                            tracing::info!(node = %node, "console client not reading; disconnected");
                            if let Some(c) = client.take() {
                                c.reader.abort();
                            }
                        }
                    }
                }
                None => {
                    tracing::warn!(node = %node, "SOL session ended; re-activating");
                    sol = None;
                    retry_at = Instant::now() + SOL_RETRY;
                }
            },
            _ = tokio::time::sleep_until(retry_at), if sol.is_none() && connecting.is_none() => {}
        }
    }
    handshakes.abort_all();
    drop(listener);
    // The BMC's payload is released before the client sees its connection
    // close, so whoever waits for that close (a user about to run
    // `ipmitool sol activate`) finds SOL free. An activation in flight is
    // let finish briefly and released too, rather than left active.
    let in_flight = match connecting.take() {
        Some(mut c) => match tokio::time::timeout(STOP_ACTIVATION_WAIT, &mut c).await {
            Ok(Ok(Ok(s))) => Some(s),
            Ok(_) => None,
            Err(_) => {
                c.abort();
                None
            }
        },
        None => None,
    };
    for s in sol.take().into_iter().chain(in_flight) {
        s.stop().await;
    }
    if let Some(mut c) = client.take() {
        let _ = c.writer.shutdown().await;
        c.reader.abort();
    }
    tracing::info!(node = %node, "console stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        let t = new_token().expect("random");
        assert_eq!(t.len(), 48);
        assert_ne!(t, new_token().expect("random"));
    }
}

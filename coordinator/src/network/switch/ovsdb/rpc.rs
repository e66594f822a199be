//! The JSON-RPC 1.0 exchange of RFC 7047 over a unix or TCP socket: one
//! request, its answer, and "echo" requests from the server answered on the
//! way (ovsdb-server's inactivity probe).
//!
//! One connection per call: a call connects, sends its request, reads
//! until the answer with its id arrives and closes. Messages are split by
//! [`super::framing::Framer`], which bounds their size. The caller puts a
//! timeout around the whole call.

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::framing::{FrameError, Framer};

/// Where an OVSDB server listens, in Open vSwitch's notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvsdbAddress {
    /// `unix:/path/to/db.sock`
    Unix(PathBuf),
    /// `tcp:host:port` (an IPv6 host in brackets: `tcp:[::1]:6640`).
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl OvsdbAddress {
    /// Parses `unix:/path` or `tcp:host:port`. (`ssl:` is not supported.)
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("{text:?}: the unix socket path must be absolute"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("tcp:") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{text:?}: expected tcp:HOST:PORT"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(format!("{text:?}: no host"));
            }
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{text:?}: invalid port {port:?}"))?;
            return Ok(Self::Tcp {
                host: host.to_owned(),
                port,
            });
        }
        Err(format!(
            "{text:?}: expected unix:/path or tcp:host:port (ssl: is not supported)"
        ))
    }
}

impl std::fmt::Display for OvsdbAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Connecting failed.
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    /// Reading or writing failed, or the server closed the connection.
    #[error("{0}")]
    Lost(String),
    /// The server sent something that is not an OVSDB message, or too much.
    #[error("{0}")]
    Protocol(String),
    /// The answer carries a JSON-RPC error.
    #[error("{0}")]
    Server(String),
}

impl From<FrameError> for RpcError {
    fn from(e: FrameError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Connects to `address`, sends `method(params)` with `id`, and returns the
/// answer's `result`. Messages longer than `max_message` bytes are refused.
pub async fn call(
    address: &OvsdbAddress,
    method: &str,
    params: Value,
    id: u64,
    max_message: usize,
) -> Result<Value, RpcError> {
    match address {
        OvsdbAddress::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(RpcError::Connect)?;
            exchange(stream, method, params, id, max_message).await
        }
        OvsdbAddress::Tcp { host, port } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(RpcError::Connect)?;
            let _ = stream.set_nodelay(true);
            exchange(stream, method, params, id, max_message).await
        }
    }
}

/// One request and its answer on a connected stream.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    params: Value,
    id: u64,
    max_message: usize,
) -> Result<Value, RpcError> {
    let request = json!({"method": method, "params": params, "id": id});
    send(&mut stream, &request).await?;
    let mut framer = Framer::new(max_message);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        while let Some(message) = framer.next_message()? {
            let message: Value = serde_json::from_slice(&message)
                .map_err(|e| RpcError::Protocol(format!("malformed JSON: {e}")))?;
            if let Some(result) = handle(&mut stream, message, id).await? {
                return Ok(result);
            }
        }
        let room = framer.room().clamp(1, READ_CHUNK);
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|e| RpcError::Lost(format!("reading: {e}")))?;
        if n == 0 {
            return Err(RpcError::Lost(
                "the server closed the connection before answering".into(),
            ));
        }
        framer.push(&chunk[..n]);
    }
}

/// Handles one received message: `Some(result)` when it is our answer.
async fn handle<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: Value,
    id: u64,
) -> Result<Option<Value>, RpcError> {
    let Value::Object(mut message) = message else {
        return Err(RpcError::Protocol("a message that is not an object".into()));
    };
    if let Some(method) = message.get("method") {
        if method == "echo" {
            let reply = json!({
                "id": message.remove("id").unwrap_or(Value::Null),
                "result": message.remove("params").unwrap_or(Value::Array(Vec::new())),
                "error": null,
            });
            send(stream, &reply).await?;
        } else {
            // Notifications (update, locked…) belong to requests we never
            // make; anything else the server asks is not ours to answer.
            tracing::debug!(method = %method, "ignoring an OVSDB request or notification");
        }
        return Ok(None);
    }
    if message.get("id").and_then(Value::as_u64) != Some(id) {
        tracing::debug!("ignoring an OVSDB answer to another request");
        return Ok(None);
    }
    match message.remove("error") {
        None | Some(Value::Null) => {}
        Some(error) => return Err(RpcError::Server(describe_error(&error))),
    }
    Ok(Some(message.remove("result").unwrap_or(Value::Null)))
}

/// An OVSDB error object (`{"error": "...", "details": "..."}`) or any
/// other error value, as text.
pub fn describe_error(error: &Value) -> String {
    let Some(kind) = error.get("error").and_then(Value::as_str) else {
        let mut text = error.to_string();
        truncate(&mut text, 500);
        return text;
    };
    let mut text = match error.get("details").and_then(Value::as_str) {
        Some(details) => format!("{kind}: {details}"),
        None => kind.to_owned(),
    };
    truncate(&mut text, 500);
    text
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, message: &Value) -> Result<(), RpcError> {
    let bytes = serde_json::to_vec(message)
        .map_err(|e| RpcError::Protocol(format!("encoding a request: {e}")))?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| RpcError::Lost(format!("writing: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| RpcError::Lost(format!("writing: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_parse_as_open_vswitch_writes_them() {
        assert_eq!(
            OvsdbAddress::parse("unix:/run/openvswitch/db.sock").unwrap(),
            OvsdbAddress::Unix("/run/openvswitch/db.sock".into())
        );
        assert_eq!(
            OvsdbAddress::parse("tcp:10.0.0.2:6640").unwrap(),
            OvsdbAddress::Tcp {
                host: "10.0.0.2".into(),
                port: 6640
            }
        );
        let v6 = OvsdbAddress::parse("tcp:[::1]:6640").unwrap();
        assert_eq!(
            v6,
            OvsdbAddress::Tcp {
                host: "::1".into(),
                port: 6640
            }
        );
        assert_eq!(v6.to_string(), "tcp:[::1]:6640");
        for bad in [
            "ssl:10.0.0.2:6640",
            "unix:db.sock",
            "tcp:10.0.0.2",
            "tcp::6640",
            "tcp:h:0",
            "tcp:h:x",
            "/run/db.sock",
        ] {
            assert!(OvsdbAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_errors_are_described() {
        let e = json!({"error": "constraint violation", "details": "tag 5000 out of range"});
        assert_eq!(
            describe_error(&e),
            "constraint violation: tag 5000 out of range"
        );
        assert_eq!(
            describe_error(&json!("unknown method")),
            "\"unknown method\""
        );
    }

    #[tokio::test]
    async fn echo_requests_are_answered_while_waiting() {
        let (client, mut server) = tokio::io::duplex(4096);
        let task = tokio::spawn(exchange(client, "list_dbs", json!([]), 7, 1 << 20));
        let mut buf = vec![0u8; 4096];
        let n = server.read(&mut buf).await.unwrap();
        let request: Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(request["method"], "list_dbs");
        assert_eq!(request["id"], 7);
        server
            .write_all(br#"{"id":"echo","method":"echo","params":["x"]}"#)
            .await
            .unwrap();
        let n = server.read(&mut buf).await.unwrap();
        let reply: Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(reply, json!({"id": "echo", "result": ["x"], "error": null}));
        server
            .write_all(br#"{"id":6,"result":["old"],"error":null}{"id":7,"result":["Open_vSwitch"],"error":null}"#)
            .await
            .unwrap();
        assert_eq!(task.await.unwrap().unwrap(), json!(["Open_vSwitch"]));
    }

    #[tokio::test]
    async fn a_json_rpc_error_is_returned() {
        let (client, mut server) = tokio::io::duplex(4096);
        let task = tokio::spawn(exchange(client, "transact", json!([]), 1, 1 << 20));
        let mut buf = vec![0u8; 4096];
        let _ = server.read(&mut buf).await.unwrap();
        server
            .write_all(br#"{"id":1,"result":null,"error":{"error":"unknown database"}}"#)
            .await
            .unwrap();
        let e = task.await.unwrap().unwrap_err();
        assert!(
            matches!(e, RpcError::Server(ref s) if s == "unknown database"),
            "{e}"
        );
    }
}

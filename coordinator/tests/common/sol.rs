//! The serial side of a simulated server's console, for tests of the
//! `ipmitool-socat` console interface: the TCP connection `ipmi_sim` makes
//! to the "serial port", and a console client that attaches with the token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The serial line of the simulated server: the connection ipmi_sim makes.
pub struct Serial {
    stream: TcpStream,
}

impl Serial {
    pub async fn accept(l: &TcpListener) -> Self {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(30), l.accept())
            .await
            .expect("ipmi_sim connected to the serial port")
            .unwrap();
        Self { stream }
    }

    pub async fn write(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.unwrap();
    }

    /// Reads until `want` was seen (panics after `secs`).
    pub async fn expect(&mut self, want: &str, secs: u64) -> String {
        read_until(&mut self.stream, want, secs).await
    }
}

pub async fn read_until(s: &mut TcpStream, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) => panic!(
                "connection closed before {want:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!(
                "no {want:?} within {secs} s; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Writes `line` to the serial line every 500 ms until the console client
/// reads it (SOL is back); returns how long that took, panics after `secs`.
pub async fn output_arrives(
    serial: &mut Serial,
    client: &mut TcpStream,
    line: &str,
    secs: u64,
) -> Duration {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(secs);
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(line) {
        serial.write(format!("{line}\r\n").as_bytes()).await;
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), client.read(&mut buf)).await
        {
            let n = r.unwrap();
            assert!(n > 0, "the client was closed");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            Instant::now() < deadline,
            "SOL did not come back within {secs} s"
        );
    }
    t.elapsed()
}

/// The `host:port` of a `console_info` URL.
pub fn addr_of(info: &Value) -> String {
    let url = info["url"].as_str().unwrap();
    url.strip_prefix("tcp://").unwrap().to_owned()
}

/// Connects with the token and waits until the SOL session carries
/// data: the serial side writes a probe until the client sees it.
pub async fn attach(info: &Value, serial: &mut Serial) -> TcpStream {
    let mut c = TcpStream::connect(addr_of(info)).await.unwrap();
    let token = info["token"].as_str().unwrap();
    c.write_all(format!("{token}\r\n").as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    loop {
        serial.write(b"probe\r\n").await;
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await {
            let n = r.unwrap();
            assert!(n > 0, "console closed the authenticated client");
            got.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&got).contains("probe") {
                // Drain the probes still in flight.
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(700), c.read(&mut buf)).await
                {
                    assert!(n > 0);
                }
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no SOL data reached the client: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

//! The shared UDP request helper on real loopback sockets: an answer, a
//! silent peer (timeout) and a closed port (ICMP port unreachable: each
//! attempt fails, all attempts are made, the result says unreachable).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ingot_ipmi::udp::{self, Closures, Retry, UdpError};

fn retry() -> Retry {
    Retry {
        timeout: Duration::from_millis(100),
        max_timeout: Duration::from_millis(200),
        retries: 2,
        backoff: Duration::from_millis(20),
    }
}

/// Runs one request against `port`, counting the datagrams built.
async fn request(port: u16) -> (Result<Vec<u8>, UdpError>, u32) {
    let (sock, _) = udp::connect("127.0.0.1", port).await.unwrap();
    let mut built = 0u32;
    let mut x = Closures(
        || {
            built += 1;
            Ok::<_, UdpError>(b"ping".to_vec())
        },
        |p: &[u8]| (p == b"pong").then(|| Ok(p.to_vec())),
    );
    let r = udp::exchange(&sock, &retry(), &mut x).await;
    (r, built)
}

#[tokio::test]
async fn answered_after_ignoring_strays() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = peer.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        // Drop the first datagram, answer the second with a stray, then the answer.
        let (_, _) = peer.recv_from(&mut buf).await.unwrap();
        let (_, from) = peer.recv_from(&mut buf).await.unwrap();
        peer.send_to(b"stray", from).await.unwrap();
        peer.send_to(b"pong", from).await.unwrap();
    });
    let (r, built) = request(port).await;
    assert_eq!(r.unwrap(), b"pong");
    assert_eq!(built, 2, "one retransmission");
    server.await.unwrap();
}

#[tokio::test]
async fn a_silent_peer_times_out_after_every_attempt() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let t = Instant::now();
    let (r, built) = request(port).await;
    assert_eq!(r, Err(UdpError::Timeout { attempts: 3 }));
    assert_eq!(built, 3);
    // 100 + 200 + 200 ms of waiting, 20 + 40 ms of backoff.
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable_after_every_attempt() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let (r, built) = request(port).await;
    match r {
        Err(UdpError::Unreachable { attempts: 3, error }) => {
            assert!(error.to_lowercase().contains("refused"), "{error}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(built, 3, "an ICMP error is one failed attempt, not the end");
    // No attempt waits for its timeout: only the backoff pauses remain.
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

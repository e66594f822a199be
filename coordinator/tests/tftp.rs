//! The coordinator's TFTP server against real clients: atftp (options,
//! transfers, write requests) and tftp-hpa, on 127.0.0.1, plus a raw
//! socket for what clients do not send (garbage, traversal names).
//!
//! The coordinator is started through `server::start` with `[tftp]` on, so
//! the start-up wiring is covered too. Without the clients the test is skipped
//! (it fails under CI or INGOT_REQUIRE_PRIVILEGED=1; `cargo xtask deps`
//! installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ingot_coordinator::config::TftpConfig;
use ingot_coordinator::tftp::packet::{self, Packet};
use tokio::net::UdpSocket;

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            !common::must_not_skip(),
            "{tool} is missing (apt-get install atftp tftp-hpa, or cargo xtask deps)"
        );
        eprintln!("SKIPPED: {tool} missing");
    }
    found
}

/// Deterministic pseudo-random content.
fn content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 3) as u8
        })
        .collect()
}

struct Lab {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    out: std::path::PathBuf,
    addr: SocketAddr,
    running: ingot_coordinator::server::Running,
}

async fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = dir.path().join("out");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(dir.path().join("secret"), b"not for you").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
    std::fs::write(root.join("1mib.bin"), content(1 << 20)).unwrap();
    std::fs::write(root.join("sub/small"), b"hello\n").unwrap();
    let db = format!("sqlite://{}/ingot.db", dir.path().display());
    let mut cfg = common::test_config(&db);
    cfg.tftp = TftpConfig {
        enabled: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        root: Some(root.clone()),
        timeout_ms: 300,
        retries: 3,
        ..TftpConfig::default()
    };
    let (running, _api) = common::start_with(cfg).await;
    let addr = running.tftp_addr.expect("TFTP enabled");
    Lab {
        _dir: dir,
        root,
        out,
        addr,
        running,
    }
}

fn atftp(addr: SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new("atftp")
        .args(args)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .output()
        .unwrap()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients() {
    if !have("atftp") || !have("tftp") {
        return;
    }
    let lab = lab().await;
    let addr = lab.addr;

    // 1 MiB, byte-exact, with blksize and tsize negotiated (atftp prints the OACK).
    let dest = lab.out.join("a.bin");
    let d = dest.clone();
    let o = blocking(move || {
        atftp(
            addr,
            &[
                "--verbose",
                "--trace",
                "--option",
                "blksize 1428",
                "--option",
                "tsize 0",
                "-g",
                "-r",
                "1mib.bin",
                "-l",
                d.to_str().unwrap(),
            ],
        )
    })
    .await;
    let log = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("blksize: 1428"),
        "blksize not acknowledged: {log}"
    );
    assert!(
        log.contains("tsize: 1048576"),
        "tsize not acknowledged: {log}"
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(lab.root.join("1mib.bin")).unwrap()
    );

    // The same file at the default 512-byte blocks with tftp-hpa (no options): 2049 blocks.
    let dest2 = lab.out.join("b.bin");
    let d2 = dest2.clone();
    let o = blocking(move || {
        Command::new("tftp")
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                &addr.port().to_string(),
                "-c",
                "get",
                "1mib.bin",
            ])
            .arg(d2.to_str().unwrap())
            .output()
            .unwrap()
    })
    .await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read(&dest2).unwrap(),
        std::fs::read(lab.root.join("1mib.bin")).unwrap()
    );

    // windowsize (RFC 7440) with atftp.
    let dest3 = lab.out.join("c.bin");
    let d3 = dest3.clone();
    let o = blocking(move || {
        atftp(
            addr,
            &[
                "--option",
                "windowsize 8",
                "--option",
                "blksize 1024",
                "-g",
                "-r",
                "/1mib.bin",
                "-l",
                d3.to_str().unwrap(),
            ],
        )
    })
    .await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read(&dest3).unwrap(),
        std::fs::read(lab.root.join("1mib.bin")).unwrap()
    );

    // A write request is refused and nothing is written.
    let src = lab.out.join("a.bin");
    let o =
        blocking(move || atftp(addr, &["-p", "-r", "uploaded", "-l", src.to_str().unwrap()])).await;
    assert!(!o.status.success(), "{o:?}");
    assert!(!lab.root.join("uploaded").exists());

    // Traversal and symlink escapes are refused; the client gets no file.
    for name in ["../secret", "sub/../../secret", "escape", "/../secret"] {
        let dest = lab.out.join("stolen");
        let d = dest.clone();
        let n = name.to_owned();
        let o = blocking(move || atftp(addr, &["-g", "-r", &n, "-l", d.to_str().unwrap()])).await;
        assert!(!o.status.success(), "{name}: {o:?}");
        let got = std::fs::read(&dest).unwrap_or_default();
        assert!(!got.starts_with(b"not for you"), "{name} leaked the file");
    }
    lab.running.shutdown().await;
}

/// Sends `req` from a fresh socket and returns the first reply and its source.
async fn ask(addr: SocketAddr, req: &[u8]) -> Option<(Packet, SocketAddr)> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(req, addr).await.unwrap();
    let mut buf = vec![0u8; 70000];
    let (len, from) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some((Packet::parse(&buf[..len]).unwrap(), from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_packets() {
    let lab = lab().await;
    let addr = lab.addr;
    // Garbage gets no answer, and the server keeps serving afterwards.
    for junk in [
        &b""[..],
        &[0],
        &[0, 1, b'x'],
        &[0, 9, 9, 9],
        &[0, 4, 0, 1],
        &[0, 3, 0, 1, 1, 2],
    ] {
        assert!(ask(addr, junk).await.is_none(), "{junk:?} was answered");
    }
    // The error packets name the reason.
    let wrq = packet::encode_request(true, "x", "octet", &[]);
    assert!(matches!(
        ask(addr, &wrq).await,
        Some((Packet::Error { code: 2, .. }, _))
    ));
    let trav = packet::encode_request(false, "../secret", "octet", &[]);
    assert!(matches!(
        ask(addr, &trav).await,
        Some((Packet::Error { code: 2, .. }, _))
    ));
    let missing = packet::encode_request(false, "nope", "octet", &[]);
    assert!(matches!(
        ask(addr, &missing).await,
        Some((Packet::Error { code: 1, .. }, _))
    ));
    let ascii = packet::encode_request(false, "sub/small", "netascii", &[]);
    assert!(matches!(
        ask(addr, &ascii).await,
        Some((Packet::Error { code: 4, .. }, _))
    ));
    // A transfer comes from its own port (TID) and the server port stays free.
    let rrq = packet::encode_request(false, "sub/small", "octet", &[("tsize", "0")]);
    let (p, from) = ask(addr, &rrq).await.unwrap();
    assert_ne!(from.port(), addr.port());
    assert_eq!(p, Packet::Oack(vec![("tsize".into(), "6".into())]));
    // A client that never ACKs is given up on after the retries (300 ms x 3),
    // and its slot is freed: a later request is still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rrq = packet::encode_request(false, "sub/small", "octet", &[]);
    let (p, _) = ask(addr, &rrq).await.unwrap();
    assert!(matches!(p, Packet::Data { block: 1, len: 6 }), "{p:?}");
    lab.running.shutdown().await;
}

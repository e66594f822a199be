//! The agent's HTTPS clients against a coordinator (and image server) whose
//! certificate a private CA signed, the CA handed over as on the kernel
//! command line: `ingot.ca_b64=` of the right CA connects, a wrong CA or no
//! CA (public roots only) does not, and `ipa-insecure=1` connects without
//! verifying. The image download path gets the same certificates.
//! Unprivileged: the server is a small rustls HTTP/1.1 server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ingot_agent::cmdline;
use ingot_agent::coordinator::{ApiVersion, Client, ClientError};
use ingot_image_tools::source::{SourceOptions, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const IMAGE: &[u8] = b"not really a disk image, but bytes to download";

/// A CA: its certificate (DER and PEM) and the issuer that signs with it.
struct Ca {
    der: Vec<u8>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// An HTTPS server on 127.0.0.1 with a certificate `ca` signed: `GET /` is
/// Ironic's version document, anything else the image. Stops when dropped.
struct HttpsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(config: Arc<rustls::ServerConfig>, stream: TcpStream) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    // The request head; a failed handshake (a client that does not trust
    // the certificate) ends here.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let body = if path == "/" {
        let v = json!({"id": "v1", "status": "CURRENT", "min_version": "1.1", "version": "1.68"});
        json!({"name": "OpenStack Ironic API", "default_version": v, "versions": [v]})
            .to_string()
            .into_bytes()
    } else {
        IMAGE.to_vec()
    };
    let _ = write!(
        tls,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tls.write_all(&body);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

impl HttpsServer {
    fn start(ca: &Ca) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(cert.der().to_vec())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let config = config.clone();
                        std::thread::spawn(move || serve_one(config, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, stop }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// What the agent does with a kernel command line: check the CA once, then
/// `GET /` on the coordinator with a client built from it.
fn discover(cmdline: &str) -> Result<ApiVersion, ClientError> {
    let p = cmdline::parse(cmdline);
    let ca = p.trusted_ca().unwrap();
    let mut client = Client::new(p.api_url.as_deref().unwrap(), &ca, p.insecure)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client.discover())
}

/// Downloads the image as `ipa/write.rs` hands the CA to the image tools.
fn download(cmdline: &str, url: &str) -> Result<Vec<u8>, String> {
    let p = cmdline::parse(cmdline);
    let ca = p.trusted_ca().unwrap();
    let opts = SourceOptions {
        tls: TlsOptions {
            ca_pem: ca.pem(),
            insecure: p.insecure,
        },
        retry: ingot_image_tools::source::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
    };
    let mut src = ingot_image_tools::source::open(url, &opts).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = src.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn ca_b64_verifies_the_coordinator_wrong_ca_fails_and_insecure_skips_verification() {
    let ca = make_ca("ingot test CA");
    let wrong = make_ca("another CA");
    let server = HttpsServer::start(&ca);
    let api = format!("ingot.api={}", server.url());

    // The right CA as DER (standard alphabet) and as PEM (URL-safe, no padding).
    let der_b64 = format!("{api} ingot.ca_b64={}", STANDARD.encode(&ca.der));
    assert_eq!(discover(&der_b64).unwrap(), ApiVersion(1, 68));
    let pem_b64 = format!("{api} ingot.ca_b64={}", URL_SAFE_NO_PAD.encode(&ca.pem));
    assert_eq!(discover(&pem_b64).unwrap(), ApiVersion(1, 68));

    // A wrong CA, or none (public roots only): no connection.
    let wrong_b64 = format!("{api} ingot.ca_b64={}", STANDARD.encode(&wrong.der));
    for cmdline in [&wrong_b64, &api] {
        let e = discover(cmdline).unwrap_err();
        assert!(
            matches!(&e, ClientError::Transport { reason, .. } if reason.contains("UnknownIssuer")),
            "{e}"
        );
    }

    // ingot.ca (a file) with the wrong CA and ingot.ca_b64 with the right one:
    // both are roots, so the server's chain verifies.
    let dir = tempfile::tempdir().unwrap();
    let wrong_file = dir.path().join("wrong.pem");
    std::fs::write(&wrong_file, &wrong.pem).unwrap();
    let both = format!("{der_b64} ingot.ca={}", wrong_file.display());
    assert_eq!(discover(&both).unwrap(), ApiVersion(1, 68));

    // ipa-insecure=1: no verification at all, even with the wrong CA.
    assert_eq!(
        discover(&format!("{api} ipa-insecure=1")).unwrap(),
        ApiVersion(1, 68)
    );
    assert_eq!(
        discover(&format!("{wrong_b64} ipa-insecure=1")).unwrap(),
        ApiVersion(1, 68)
    );

    // Image downloads trust the same certificates (a DER CA reaches the
    // image tools as PEM).
    let image = format!("{}/image.raw", server.url());
    assert_eq!(download(&der_b64, &image).unwrap(), IMAGE);
    let e = download(&wrong_b64, &image).unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert_eq!(
        download(&format!("{wrong_b64} ipa-insecure=1"), &image).unwrap(),
        IMAGE
    );
}

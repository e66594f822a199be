//! HTTPS for the API (issue 13): a certificate signed by a test CA, clients
//! that verify it (reqwest, the real `baremetal` CLI with `OS_CACERT`), the
//! plain-HTTP boot listener that serves only `/boot/*`, and iPXE scripts
//! that send agents to the HTTPS API with the CA on the kernel line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Backend, start_with, test_config, test_db};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// A CA and a server certificate for 127.0.0.1 and localhost, written as
/// PEM files; returns (ca, cert, key) paths.
fn pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Ingot test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("api.crt"), dir.join("api.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_and_boot_files_stay_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path());
    let db = test_db(Backend::Sqlite, "tls").await.unwrap();
    let boot_port = common::free_port();
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"kernel bytes").unwrap();
    let mut cfg = test_config(&db.url);
    cfg.api.tls_cert_file = Some(cert);
    cfg.api.tls_key_file = Some(key);
    cfg.api.header_timeout_ms = 1500;
    cfg.api.boot_listen = Some(format!("127.0.0.1:{boot_port}").parse().unwrap());
    cfg.boot.agent_ca_file = Some(ca.clone());
    cfg.boot.kernel = Some(kernel);
    let (running, _) = start_with(cfg).await;
    let port = running.addr.port();
    let base = format!("https://127.0.0.1:{port}");

    let ca_cert = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca_cert)
        .build()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(
        &client
            .get(format!("{base}/v1"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        v["links"][0]["href"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{v}"
    );
    // Without the CA, or in plain HTTP, nothing is served.
    assert!(reqwest::get(format!("{base}/v1")).await.is_err());
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/v1")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that never starts the handshake is closed.
    let mut idle = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");

    // A node that boots the agent: its script comes over plain HTTP, sends
    // the agent to the HTTPS API and carries the CA.
    let node: serde_json::Value = serde_json::from_slice(
        &client
            .post(format!("{base}/v1/nodes"))
            .header("X-OpenStack-Ironic-API-Version", "latest")
            .header("Content-Type", "application/json")
            .body(json!({"driver": "fake-hardware", "name": "n1"}).to_string())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let uuid = node["uuid"].as_str().unwrap();
    let r = client
        .post(format!("{base}/v1/ports"))
        .header("X-OpenStack-Ironic-API-Version", "latest")
        .header("Content-Type", "application/json")
        .body(json!({"address": "52:54:00:00:00:42", "node_uuid": uuid}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let handle = ingot_coordinator::db::Db::connect(&db.url).await.unwrap();
    handle
        .update_node::<(), _>(uuid, |n| {
            n.provision_state = ingot_coordinator::state::ProvisionState::CleanWait;
            Ok(())
        })
        .await
        .unwrap();
    handle.close().await;
    let boot = format!("http://127.0.0.1:{boot_port}");
    let script = reqwest::get(format!("{boot}/boot/ipxe/52:54:00:00:00:42"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        script.contains(&format!("ingot.api=https://127.0.0.1:{port} ")),
        "{script}"
    );
    assert!(script.contains("ingot.ca_b64="), "{script}");
    assert!(
        script.contains(&format!("kernel {boot}/boot/vmlinuz")),
        "{script}"
    );
    let k = reqwest::get(format!("{boot}/boot/vmlinuz")).await.unwrap();
    assert_eq!(k.bytes().await.unwrap().as_ref(), b"kernel bytes");
    // The boot listener serves nothing else.
    let r = reqwest::get(format!("{boot}/v1/nodes")).await.unwrap();
    assert_eq!(r.status(), 404);

    // The real CLI over HTTPS with the CA.
    if let Some(venv) = common::venv::venv() {
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(venv.join("bin/baremetal"))
                .args(["node", "list", "-f", "json"])
                .env("OS_AUTH_TYPE", "none")
                .env("OS_ENDPOINT", &base)
                .env("OS_CACERT", &ca)
                .env_remove("OS_CLOUD")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("n1"));
    }
    running.shutdown().await;
}

/// A TLS client of the console endpoint at `addr` trusting `ca`; sends
/// `line` and returns what the endpoint answered within `wait`.
async fn console_exchange(addr: &str, ca: &Path, line: &str, wait: Duration) -> Option<String> {
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    s.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    // Keep the connection open until the caller is done with the answer.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(s);
    });
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_endpoints_speak_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path());
    let db = test_db(Backend::Sqlite, "tls_console").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.api.tls_cert_file = Some(cert);
    cfg.api.tls_key_file = Some(key);
    let (running, _) = start_with(cfg).await;
    let base = format!("https://127.0.0.1:{}", running.addr.port());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let send = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = client
            .request(method, format!("{base}{path}"))
            .header("X-OpenStack-Ironic-API-Version", "latest");
        if let Some(b) = body {
            r = r
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        r.send()
    };
    // A BMC nobody answers at: SOL keeps retrying; the endpoint is up anyway.
    let bmc_port = common::free_port();
    let r = send(
        reqwest::Method::POST,
        "/v1/nodes",
        Some(
            json!({"driver": "ipmi", "name": "c1", "console_interface": "ipmitool-socat",
            "driver_info": {"ipmi_address": "127.0.0.1", "ipmi_port": bmc_port,
                            "ipmi_username": "u", "ipmi_password": "p"}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = send(
        reqwest::Method::PUT,
        "/v1/nodes/c1/states/console",
        Some(json!({"enabled": true})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let info: serde_json::Value = serde_json::from_slice(
        &send(reqwest::Method::GET, "/v1/nodes/c1/states/console", None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let url = info["console_info"]["url"].as_str().unwrap().to_owned();
    let token = info["console_info"]["token"].as_str().unwrap().to_owned();
    let addr = url
        .strip_prefix("ssl://")
        .unwrap_or_else(|| panic!("{info}"));
    let short = Duration::from_millis(800);
    let wrong = console_exchange(addr, &ca, "not-the-token", short)
        .await
        .unwrap();
    assert!(wrong.contains("invalid console token"), "{wrong:?}");
    let first = console_exchange(addr, &ca, &token, short).await.unwrap();
    assert!(!first.contains("invalid"), "{first:?}");
    let second = console_exchange(addr, &ca, &token, short).await.unwrap();
    assert!(second.contains("in use"), "{second:?}");
    // In plain TCP the token is not even read.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, format!("{token}\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_)))
            || matches!(r, Ok(Ok(n)) if !String::from_utf8_lossy(&buf[..n]).contains("console")),
        "{r:?}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_half_configured_tls_is_refused() {
    let db = test_db(Backend::Sqlite, "tls_half").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.api.tls_cert_file = Some("/nonexistent.crt".into());
    let e =
        ingot_coordinator::server::start(cfg, ingot_coordinator::power::PowerDrivers::default())
            .await
            .expect_err("started with half a TLS configuration");
    assert!(e.to_string().contains("go together"), "{e}");
}

//! sushy-tools' Redfish emulator with its fake driver on 127.0.0.1 and a
//! free TCP port, for the Redfish tests: one system, basic authentication
//! (a bcrypt user file), optionally TLS with a self-signed certificate.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The emulated system's UUID.
pub const SYSTEM: &str = "5b6f1a52-1f0c-4c43-9a57-2d2d7b5c9e01";
/// User of the emulator's auth file.
pub const USER: &str = "ingot";
/// Password of [`USER`].
pub const PASSWORD: &str = "redfish-pass";

/// The venv with sushy-tools (made by `tests/python-venv.sh` when missing);
/// `None` (skip) when it cannot be made and skipping is allowed.
pub fn venv() -> Option<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    super::common::venv::ensure(&super::common::venv::SUSHY, &CACHE)
}

/// A running emulator (killed on drop).
pub struct Sushy {
    /// `http://127.0.0.1:port` or `https://…`.
    pub base: String,
    /// The self-signed certificate (PEM) when serving TLS.
    pub cert: Option<PathBuf>,
    /// Config, state, auth file, log.
    pub dir: tempfile::TempDir,
    child: Child,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl Sushy {
    /// Starts the emulator; `tls` serves HTTPS with a fresh self-signed
    /// certificate. `None` when sushy-tools is unavailable and skipping is allowed.
    pub async fn start(tls: bool) -> Option<Self> {
        let venv = venv()?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hash = Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())",
                PASSWORD,
            ])
            .output()
            .unwrap();
        assert!(hash.status.success());
        let hash = String::from_utf8(hash.stdout).unwrap();
        std::fs::write(d.join("users"), format!("{USER}:{}\n", hash.trim())).unwrap();
        let (cert, tls_conf) = if tls {
            let (c, k) = self_signed(d);
            let conf = format!(
                "SUSHY_EMULATOR_SSL_CERT = {:?}\nSUSHY_EMULATOR_SSL_KEY = {:?}\n",
                c.display().to_string(),
                k.display().to_string()
            );
            (Some(c), conf)
        } else {
            (None, String::new())
        };
        let port = free_port();
        let conf = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
             SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_STATE_DIR = {state:?}\n\
             SUSHY_EMULATOR_AUTH_FILE = {users:?}\n\
             {tls_conf}\
             SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{SYSTEM}', 'name': 'ingot-node', \
             'power_state': 'Off', 'nics': [{{'mac': '52:54:00:12:34:56', 'ip': '127.0.0.2'}}]}}]\n",
            state = d.join("state").display().to_string(),
            users = d.join("users").display().to_string(),
        );
        std::fs::write(d.join("emulator.conf"), conf).unwrap();
        let log = std::fs::File::create(d.join("emulator.log")).unwrap();
        let mut child = Command::new(venv.join("bin/sushy-emulator"))
            .arg("--config")
            .arg(d.join("emulator.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/redfish/v1")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            let exited = child.try_wait().unwrap().is_some();
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sushy-emulator did not start: {}",
                    std::fs::read_to_string(d.join("emulator.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Self {
            base,
            cert,
            dir,
            child,
        })
    }

    /// driver_info for a node on the emulated system.
    pub fn driver_info(&self) -> serde_json::Value {
        serde_json::json!({
            "redfish_address": self.base,
            "redfish_system_id": format!("/redfish/v1/Systems/{SYSTEM}"),
            "redfish_username": USER,
            "redfish_password": PASSWORD,
        })
    }

    /// The system document, read directly with basic auth.
    pub async fn system(&self) -> serde_json::Value {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let r = client
            .get(format!("{}/redfish/v1/Systems/{SYSTEM}", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

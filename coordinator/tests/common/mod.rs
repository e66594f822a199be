//! Shared helpers of the coordinator's integration tests: starting a
//! coordinator on a free port over SQLite or a private PostgreSQL cluster,
//! and a small JSON HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod agent_sim;
pub mod drive;
pub mod glance;
pub mod hooked_power;
pub mod link;
pub mod ovs;
pub mod pg;
pub mod pxe_vm;
pub mod roles;
pub mod sol;
pub mod venv;

use std::time::{Duration, Instant};

use ingot_coordinator::config::Config;
use ingot_coordinator::power::PowerDrivers;
use ingot_coordinator::server::{Running, start};
use serde_json::Value;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A database in the test process's private PostgreSQL cluster.
    Postgres,
}

/// A database for one test (kept alive by the guard).
pub struct TestDb {
    /// The URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh, empty database; `None` when PostgreSQL is unavailable and the
/// environment allows skipping.
pub async fn test_db(backend: Backend, name: &str) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/ingot.db", dir.path().display());
            Some(TestDb {
                url,
                _dir: Some(dir),
            })
        }
        Backend::Postgres => {
            let url = pg::database(name).await?;
            Some(TestDb { url, _dir: None })
        }
    }
}

/// A free TCP port on loopback (free when asked; a race with other
/// processes is possible and tolerated by the callers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET url` as text.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// A configuration for tests: free port, fast timeout checks.
pub fn test_config(db: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: db.to_owned(),
        check_interval_ms: 100,
        heartbeat_timeout: 5,
        agent_command_timeout: 10,
        ..Config::default()
    }
}

/// Starts a coordinator.
pub async fn start_with(config: Config) -> (Running, Api) {
    let running = start(config, PowerDrivers::default()).await.unwrap();
    let api = Api::new(&format!("http://{}", running.addr));
    (running, api)
}

/// A JSON client of the API, sending the latest microversion by default.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:port`
    pub base: String,
    client: reqwest::Client,
    /// The microversion header value (`None` = no header).
    pub version: Option<String>,
    /// Extra headers sent with every request (credentials).
    pub headers: Vec<(String, String)>,
}

/// Status and parsed body (Null if empty or not JSON).
pub type Reply = (u16, Value);

impl Api {
    /// A client of `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::new(),
            version: Some("latest".into()),
            headers: Vec::new(),
        }
    }

    /// The same client sending `name: value` with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut c = self.clone();
        c.headers.push((name.to_owned(), value.to_owned()));
        c
    }

    /// The same client with HTTP Basic credentials.
    pub fn with_basic(&self, user: &str, password: &str) -> Self {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.with_header("Authorization", &format!("Basic {b}"))
    }

    /// The same client with another microversion.
    pub fn with_version(&self, v: Option<&str>) -> Self {
        let mut c = self.clone();
        c.version = v.map(str::to_owned);
        c
    }

    /// Any request with a raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{}", self.base, path))
            .header("Accept", "application/json");
        if let Some(v) = &self.version {
            req = req.header("X-OpenStack-Ironic-API-Version", v);
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v, headers)
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let s = body.map(Value::to_string);
        let (st, v, _) = self.raw(method, path, s.as_deref()).await;
        (st, v)
    }

    /// GET
    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }
    /// POST
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(&body)).await
    }
    /// PUT
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(&body)).await
    }
    /// PATCH
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call("PATCH", path, Some(&body)).await
    }
    /// DELETE
    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None).await
    }

    /// Sets the node's power (`power on`, `power off`) and waits for it. Fake
    /// power knows no state until one is set, and allocations pick only nodes
    /// with a known power state (as Ironic's).
    pub async fn set_power(&self, ident: &str, target: &str) {
        let (st, v) = self
            .put(
                &format!("/v1/nodes/{ident}/states/power"),
                serde_json::json!({ "target": target }),
            )
            .await;
        assert_eq!(st, 202, "power {target} on {ident}: {v}");
        self.wait_power_state(ident, target, Duration::from_secs(30))
            .await;
    }

    /// The node document.
    pub async fn node(&self, ident: &str) -> Value {
        let (st, v) = self.get(&format!("/v1/nodes/{ident}")).await;
        assert_eq!(st, 200, "GET node {ident}: {v}");
        v
    }

    /// Waits until the node reaches `state` (panics with the node on timeout
    /// or if it lands in a failure state instead).
    pub async fn wait_state(&self, ident: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.node(ident).await;
            let ps = n["provision_state"].as_str().unwrap_or_default().to_owned();
            let settled = n["target_provision_state"].is_null() || state.contains("wait");
            if ps == state && settled && n["reservation"].is_null() {
                return n;
            }
            if ps != state
                && (ps.ends_with("failed") || ps == "error")
                && !state.ends_with("failed")
            {
                panic!(
                    "node {ident} went to {ps} while waiting for {state}: {}",
                    n["last_error"]
                );
            }
            if Instant::now() > deadline {
                panic!("node {ident} not in {state} after {timeout:?}: {n}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the node's `power_state` is `state` (panics with the node
    /// on timeout). For power actions that follow a state change, such as
    /// the power-off after a wait-state timeout.
    pub async fn wait_power_state(&self, ident: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.node(ident).await;
            if n["power_state"] == state {
                return n;
            }
            if Instant::now() > deadline {
                panic!("node {ident} not {state} after {timeout:?}: {n}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates a node and returns its UUID.
    pub async fn create_node(&self, body: Value) -> String {
        let (st, v) = self.post("/v1/nodes", body).await;
        assert_eq!(st, 201, "create node: {v}");
        v["uuid"].as_str().unwrap().to_owned()
    }

    /// Sends a provision verb and expects 202.
    pub async fn provision(&self, ident: &str, body: Value) {
        let (st, v) = self
            .put(&format!("/v1/nodes/{ident}/states/provision"), body.clone())
            .await;
        assert_eq!(st, 202, "provision {body}: {v}");
    }
}

/// Unwraps Ironic's error envelope into the faultstring, asserting its shape.
pub fn faultstring(body: &Value) -> String {
    let inner = body["error_message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error_message string in {body}"));
    let inner: Value = serde_json::from_str(inner).unwrap();
    assert!(inner.get("debuginfo").is_some(), "no debuginfo in {inner}");
    assert!(
        inner["faultcode"] == "Client" || inner["faultcode"] == "Server",
        "bad faultcode in {inner}"
    );
    inner["faultstring"].as_str().unwrap().to_owned()
}

/// True if the environment forbids skipping tests for missing prerequisites.
pub fn must_not_skip() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("INGOT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Starts a lab service with its script (`<script> start <dir> <port>`, as
/// `keystone-lab.sh` and `glance-lab.sh` take it). `false` (skip) when it
/// cannot run and skipping is allowed; panics otherwise.
pub fn start_lab(script: &std::path::Path, dir: &std::path::Path, port: u16, what: &str) -> bool {
    let out = std::process::Command::new(script)
        .arg("start")
        .arg(dir)
        .arg(port.to_string())
        .output()
        .unwrap();
    if out.status.success() {
        return true;
    }
    let why = format!(
        "{} start failed: {}{}",
        script.file_name().unwrap_or_default().to_string_lossy(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if must_not_skip() {
        panic!("{what} is required: {why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

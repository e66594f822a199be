//! The coordinator seen as a user sees it: Ironic's REST API v1 over HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// The microversion the lab speaks (Ironic's 2023.2 release).
pub const API_VERSION: &str = "1.81";

/// A client of one coordinator, or of the members of an HA group: a call
/// that cannot connect to the member in use goes to the next one (any member
/// answers any call), which then stays in use.
pub struct Api {
    bases: Vec<String>,
    /// Index in `bases` of the member in use.
    current: AtomicUsize,
    http: reqwest::Client,
}

impl Api {
    /// A client of `base` (`http(s)://127.0.0.1:<port>`); `ca_pem` is the
    /// CA that signed an HTTPS API's certificate.
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<Self> {
        Self::members(&[base.to_owned()], ca_pem)
    }

    /// A client of the members at `bases`, in order of preference.
    pub fn members(bases: &[String], ca_pem: Option<&[u8]>) -> Result<Self> {
        ensure!(!bases.is_empty(), "no coordinator to talk to");
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(Self {
            bases: bases
                .iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            current: AtomicUsize::new(0),
            http: b.build()?,
        })
    }

    /// The base URL of the member in use.
    pub fn base(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Makes the member at `base` the one in use (when it is one of ours).
    pub fn prefer(&self, base: &str) {
        if let Some(i) = self.bases.iter().position(|b| b == base) {
            self.current.store(i, Ordering::Relaxed);
        }
    }

    /// Sends the request to the member in use, and to the next ones while a
    /// member cannot be reached (connection refused: a killed member). A
    /// read (GET) also moves on after any transport error (a connection
    /// cut by the kill); a write does not, as it may have been applied.
    async fn send(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let n = self.bases.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for k in 0..n {
            let i = (first + k) % n;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[i]))
                .header("X-OpenStack-Ironic-API-Version", API_VERSION);
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(b)?);
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) if e.is_connect() || *method == reqwest::Method::GET => {
                    last_err = Some(anyhow::Error::from(e).context(self.bases[i].clone()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no member answered")))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let resp = self
            .send(&method, path, body.as_ref())
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON patch.
    pub async fn patch(&self, path: &str, ops: Value) -> Result<Value> {
        self.call(reqwest::Method::PATCH, path, Some(ops)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// True once `GET /v1` answers.
    pub async fn up(&self) -> bool {
        self.get("/v1").await.is_ok()
    }

    /// `GET /v1/nodes/{node}`.
    pub async fn node(&self, node: &str) -> Result<Value> {
        self.get(&format!("/v1/nodes/{node}")).await
    }

    /// `PUT /v1/nodes/{node}/states/provision` with `target` and extra fields.
    pub async fn provision(&self, node: &str, target: &str, extra: Value) -> Result<()> {
        let mut body = json!({ "target": target });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        self.put(&format!("/v1/nodes/{node}/states/provision"), body)
            .await
            .map(|_| ())
    }

    /// Polls the node until `provision_state` is `want` and no target is
    /// pending; calls `seen` with every node body it reads. Fails
    /// at once on a `* failed` state or when `timeout` passes.
    pub async fn wait_state(
        &self,
        node: &str,
        want: &str,
        timeout: Duration,
        mut seen: impl FnMut(&Value),
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.node(node).await?;
            let state = n["provision_state"].as_str().unwrap_or("").to_owned();
            seen(&n);
            if state == want && n["target_provision_state"].is_null() {
                return Ok(n);
            }
            if state.ends_with("failed") || n["maintenance"].as_bool() == Some(true) {
                bail!(
                    "node went to {state} (maintenance {}): {}",
                    n["maintenance"],
                    n["last_error"].as_str().unwrap_or("no last_error")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "node still {state} after {} s waiting for {want}; last_error: {}",
                    timeout.as_secs(),
                    n["last_error"]
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

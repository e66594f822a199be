//! The coordinator seen as a user sees it: Ironic's REST API v1 over HTTP.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The microversion the lab speaks (Ironic's 2023.2 release).
pub const API_VERSION: &str = "1.81";

/// A client of one coordinator.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of `base` (`http(s)://127.0.0.1:<port>`); `ca_pem` is the
    /// CA that signed an HTTPS API's certificate.
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<Self> {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: b.build()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", API_VERSION);
        if let Some(b) = &body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(b)?);
        }
        let resp = req
            .send()
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

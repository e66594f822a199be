//! HTTP to a Redfish service: one reqwest client per TLS setting, basic or
//! session authentication (sessions are created once per service and user,
//! and recreated after a 401), retries of connection failures, and
//! resolution of the system path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::{AuthType, RedfishConfig, RedfishError, Verify};

#[derive(Debug, Clone)]
enum Auth {
    Basic,
    Token(String),
}

/// A Redfish client shared by all nodes.
#[derive(Debug)]
pub struct RedfishClient {
    clients: Mutex<HashMap<Verify, reqwest::Client>>,
    auth: Mutex<HashMap<(String, String, AuthType), Auth>>,
    systems: Mutex<HashMap<String, String>>,
    timeout: Duration,
    retries: u32,
}

impl Default for RedfishClient {
    fn default() -> Self {
        Self::new(Duration::from_secs(30), 2)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn http(e: impl std::fmt::Display) -> RedfishError {
    RedfishError::Http(e.to_string())
}

/// The Redfish error message of an error body, if any.
fn error_message(v: &Value) -> String {
    let e = &v["error"];
    e["@Message.ExtendedInfo"][0]["Message"]
        .as_str()
        .or_else(|| e["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

impl RedfishClient {
    /// A client with a per-request timeout and retries of connection failures.
    pub fn new(timeout: Duration, retries: u32) -> Self {
        Self {
            clients: Mutex::default(),
            auth: Mutex::default(),
            systems: Mutex::default(),
            timeout,
            retries,
        }
    }

    fn client(&self, verify: &Verify) -> Result<reqwest::Client, RedfishError> {
        if let Some(c) = lock(&self.clients).get(verify) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)));
        match verify {
            Verify::Roots => {}
            Verify::Off => b = b.danger_accept_invalid_certs(true),
            Verify::CaFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| http(format!("reading CA bundle {}: {e}", path.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| http(format!("CA bundle {}: {e}", path.display())))?;
                b = b.tls_built_in_root_certs(false);
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
        }
        let c = b.build().map_err(http)?;
        lock(&self.clients).insert(verify.clone(), c.clone());
        Ok(c)
    }

    async fn send_once(
        &self,
        cfg: &RedfishConfig,
        auth: Option<&Auth>,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, reqwest::header::HeaderMap, Value), RedfishError> {
        let client = self.client(&cfg.verify)?;
        let mut attempt = 0;
        loop {
            let mut req = client
                .request(method.clone(), format!("{}{path}", cfg.base))
                .header("Accept", "application/json")
                .header("OData-Version", "4.0");
            match auth {
                Some(Auth::Token(t)) => req = req.header("X-Auth-Token", t),
                Some(Auth::Basic) if !cfg.username.is_empty() => {
                    req = req.basic_auth(&cfg.username, Some(&cfg.password));
                }
                _ => {}
            }
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.to_string());
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let bytes = resp.bytes().await.map_err(http)?;
                    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    return Ok((status, headers, v));
                }
                Err(e) if attempt < self.retries && (e.is_connect() || e.is_timeout()) => {
                    attempt += 1;
                    tracing::debug!(base = %cfg.base, path, error = %e, attempt, "redfish request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                }
                Err(e) if e.is_connect() || e.is_timeout() => {
                    return Err(RedfishError::Unreachable(e.to_string()));
                }
                Err(e) => return Err(http(e)),
            }
        }
    }

    /// Logs in (session) or settles on basic authentication.
    async fn authenticate(&self, cfg: &RedfishConfig) -> Result<Auth, RedfishError> {
        if cfg.auth == AuthType::Basic || cfg.username.is_empty() {
            return Ok(Auth::Basic);
        }
        let (_, _, root) = self
            .send_once(cfg, None, &reqwest::Method::GET, "/redfish/v1", None)
            .await?;
        let sessions = root["Links"]["Sessions"]["@odata.id"]
            .as_str()
            .map(str::to_owned);
        let Some(sessions) = sessions else {
            if cfg.auth == AuthType::Session {
                return Err(RedfishError::Protocol(
                    "the service offers no SessionService but redfish_auth_type is session".into(),
                ));
            }
            return Ok(Auth::Basic);
        };
        let body = serde_json::json!({"UserName": cfg.username, "Password": cfg.password});
        let (status, headers, v) = self
            .send_once(cfg, None, &reqwest::Method::POST, &sessions, Some(&body))
            .await?;
        let token = headers
            .get("X-Auth-Token")
            .and_then(|t| t.to_str().ok())
            .map(str::to_owned);
        match token {
            Some(t) if (200..300).contains(&status) => Ok(Auth::Token(t)),
            _ if cfg.auth == AuthType::Auto => Ok(Auth::Basic),
            _ => Err(RedfishError::Status {
                method: "POST".into(),
                path: sessions,
                status,
                message: error_message(&v),
            }),
        }
    }

    /// Sends a request and returns the JSON body of a 2xx answer.
    pub async fn request(
        &self,
        cfg: &RedfishConfig,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RedfishError> {
        let key = (cfg.base.clone(), cfg.username.clone(), cfg.auth);
        for second in [false, true] {
            let cached = lock(&self.auth).get(&key).cloned();
            let auth = match cached {
                Some(a) => a,
                None => {
                    let a = self.authenticate(cfg).await?;
                    lock(&self.auth).insert(key.clone(), a.clone());
                    a
                }
            };
            let (status, _, v) = self
                .send_once(cfg, Some(&auth), &method, path, body)
                .await?;
            if status == 401 && matches!(auth, Auth::Token(_)) && !second {
                // The session expired or was deleted: log in again.
                lock(&self.auth).remove(&key);
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(RedfishError::Status {
                    method: method.to_string(),
                    path: path.to_owned(),
                    status,
                    message: error_message(&v),
                });
            }
            return Ok(v);
        }
        Err(RedfishError::Protocol("authentication failed twice".into()))
    }

    /// The system's path: `redfish_system_id`, or the only member of the
    /// Systems collection.
    pub async fn system_path(&self, cfg: &RedfishConfig) -> Result<String, RedfishError> {
        if let Some(s) = &cfg.system_id {
            return Ok(s.clone());
        }
        if let Some(s) = lock(&self.systems).get(&cfg.base) {
            return Ok(s.clone());
        }
        let v = self
            .request(cfg, reqwest::Method::GET, "/redfish/v1/Systems", None)
            .await?;
        let members: Vec<&str> = v["Members"]
            .as_array()
            .map(|m| m.iter().filter_map(|x| x["@odata.id"].as_str()).collect())
            .unwrap_or_default();
        match members.as_slice() {
            [one] => {
                let one = (*one).to_owned();
                lock(&self.systems).insert(cfg.base.clone(), one.clone());
                Ok(one)
            }
            _ => Err(RedfishError::Protocol(format!(
                "the service has {} systems; set redfish_system_id",
                members.len()
            ))),
        }
    }
}

//! `keystone`: `X-Auth-Token` validated against Keystone v3.
//!
//! The coordinator logs in with its own service credentials (password
//! method, project scope), and validates each client's token with
//! `GET /v3/auth/tokens` (`X-Auth-Token`: its own, `X-Subject-Token`: the
//! client's), as keystonemiddleware does. Roles, the project and system
//! scope come from the answer. A validated token is remembered (by its
//! SHA-256) until it expires or `cache_seconds` pass, whichever is first;
//! the cache is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AuthError, Caller, Scope};
use crate::config::{AuthConfig, KeystoneConfig};

/// The service's own token.
#[derive(Debug, Clone)]
struct ServiceToken {
    token: String,
    until: Instant,
}

/// The `keystone` authenticator.
#[derive(Debug)]
pub struct KeystoneAuth {
    config: KeystoneConfig,
    service_project_name: String,
    http: reqwest::Client,
    service: tokio::sync::Mutex<Option<ServiceToken>>,
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl KeystoneAuth {
    /// Most remembered tokens.
    const MAX_CACHED: usize = 10_000;
    /// Longest accepted token.
    const MAX_TOKEN_LEN: usize = 8192;

    /// Checks the settings and builds the client.
    pub fn from_config(config: &AuthConfig) -> Result<Self, String> {
        let k = &config.keystone;
        if k.auth_url.is_empty() || k.username.is_empty() || k.password.is_empty() {
            return Err("auth_url, username and password are required".into());
        }
        if !(k.auth_url.starts_with("http://") || k.auth_url.starts_with("https://")) {
            return Err(format!(
                "auth_url must be an http(s) URL, got {:?}",
                k.auth_url
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(k.timeout_ms))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            config: k.clone(),
            service_project_name: config.service_project_name.clone(),
            http,
            service: tokio::sync::Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Where clients get tokens (for `WWW-Authenticate`).
    pub fn www_authenticate_uri(&self) -> &str {
        self.config
            .www_authenticate_uri
            .as_deref()
            .unwrap_or(&self.config.auth_url)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.auth_url.trim_end_matches('/'))
    }

    /// The service user's token for calling other services (Glance), from
    /// the same login as the one that validates client tokens.
    pub async fn token_for_services(&self) -> Result<String, AuthError> {
        self.service_token(false).await
    }

    /// The service's token, logging in when there is none or it is about
    /// to expire.
    async fn service_token(&self, renew: bool) -> Result<String, AuthError> {
        let mut guard = self.service.lock().await;
        if !renew
            && let Some(t) = guard.as_ref()
            && t.until > Instant::now()
        {
            return Ok(t.token.clone());
        }
        let k = &self.config;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": k.username, "domain": {"name": k.user_domain_name}, "password": k.password}}},
            "scope": {"project": {"name": k.project_name, "domain": {"name": k.project_domain_name}}},
        }});
        let resp = self
            .http
            .post(self.url("/auth/tokens"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(format!("Keystone login: {e}")))?;
        let status = resp.status();
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let doc = read_json(resp).await.unwrap_or(Value::Null);
        let Some(token) = token.filter(|_| status.is_success()) else {
            return Err(AuthError::Unavailable(format!(
                "Keystone refused the service credentials of {:?}: HTTP {status}",
                k.username
            )));
        };
        let until = expiry(&doc["token"]["expires_at"])
            .map(|d| d.saturating_sub(Duration::from_secs(60)))
            .unwrap_or(Duration::from_secs(300));
        *guard = Some(ServiceToken {
            token: token.clone(),
            until: Instant::now() + until,
        });
        Ok(token)
    }

    /// Authenticates `X-Auth-Token`.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let token = headers
            .get("x-auth-token")
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Invalid("X-Auth-Token is not ASCII".into()))?
            .trim()
            .to_owned();
        if token.is_empty() || token.len() > Self::MAX_TOKEN_LEN {
            return Err(AuthError::Invalid(
                "X-Auth-Token is empty or too long".into(),
            ));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let mut renewed = false;
        loop {
            let service = self.service_token(renewed).await?;
            let resp = self
                .http
                .get(self.url("/auth/tokens"))
                .header("X-Auth-Token", &service)
                .header("X-Subject-Token", &token)
                .send()
                .await
                .map_err(|e| AuthError::Unavailable(format!("Keystone validation: {e}")))?;
            let status = resp.status().as_u16();
            match status {
                200 => {
                    let doc = read_json(resp).await.map_err(AuthError::Unavailable)?;
                    let (caller, valid_for) = self.caller_of(&doc["token"])?;
                    let keep = valid_for.min(Duration::from_secs(self.config.cache_seconds));
                    self.remember(key, caller.clone(), keep);
                    return Ok(caller);
                }
                // Our own token expired or was revoked: log in again, once.
                401 if !renewed => renewed = true,
                401 | 403 => {
                    return Err(AuthError::Unavailable(format!(
                        "Keystone refused to validate tokens for {:?} (HTTP {status}); it needs a role that may validate tokens (service or admin)",
                        self.config.username
                    )));
                }
                404 => return Err(AuthError::Invalid("token not found or expired".into())),
                other => {
                    return Err(AuthError::Unavailable(format!(
                        "Keystone answered HTTP {other} to a token validation"
                    )));
                }
            }
        }
    }

    /// The caller a validated token describes, and how long it stays valid.
    fn caller_of(&self, t: &Value) -> Result<(Caller, Duration), AuthError> {
        let valid_for = expiry(&t["expires_at"])
            .ok_or_else(|| AuthError::Invalid("token has expired".into()))?;
        let roles: Vec<&str> = t["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
            .unwrap_or_default();
        let scope = if t["system"]["all"] == true {
            Scope::System
        } else if let Some(id) = t["project"]["id"].as_str() {
            Scope::Project {
                id: id.to_owned(),
                name: t["project"]["name"].as_str().unwrap_or_default().to_owned(),
            }
        } else {
            Scope::None
        };
        let user = t["user"]["name"].as_str().unwrap_or("?");
        Ok((
            Caller::new(user, &roles, scope, &self.service_project_name),
            valid_for,
        ))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Caller> {
        let c = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(c, _)| c.clone())
    }

    fn remember(&self, key: [u8; 32], caller: Caller, keep: Duration) {
        let mut c = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.len() >= Self::MAX_CACHED {
            let now = Instant::now();
            c.retain(|_, (_, until)| *until > now);
            if c.len() >= Self::MAX_CACHED {
                c.clear();
            }
        }
        c.insert(key, (caller, Instant::now() + keep));
    }
}

/// Largest Keystone answer read (a token with its catalog is a few KiB).
const MAX_ANSWER: usize = 1024 * 1024;

/// Reads a JSON answer of at most [`MAX_ANSWER`] bytes.
async fn read_json(mut resp: reqwest::Response) -> Result<Value, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading Keystone's answer: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!(
                "Keystone's answer is larger than {MAX_ANSWER} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("Keystone's answer is not JSON: {e}"))
}

/// Time left until an RFC 3339 `expires_at`; `None` if past or unreadable.
fn expiry(v: &Value) -> Option<Duration> {
    let at = OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()?;
    let left = at - OffsetDateTime::now_utc();
    (left.is_positive()).then(|| Duration::from_secs_f64(left.as_seconds_f64()))
}

#[cfg(test)]
mod tests {
    use super::expiry;
    use serde_json::json;

    #[test]
    fn expiry_of_keystone_times() {
        assert!(expiry(&json!("2999-01-01T00:00:00.000000Z")).is_some());
        assert!(expiry(&json!("2000-01-01T00:00:00.000000Z")).is_none());
        assert!(expiry(&json!("garbage")).is_none());
        assert!(expiry(&json!(null)).is_none());
    }
}

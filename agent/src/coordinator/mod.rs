//! The agent's side of the coordinator protocol (Ironic's ramdisk API):
//! version discovery (`GET /`), lookup (`GET /v1/lookup`) and heartbeat
//! (`POST /v1/heartbeat/<node>`), with IPA's API versions and headers, and
//! fail-over between several coordinator URLs ([`failover`]).

pub mod failover;
pub mod runtime;

use std::time::Duration;

use ingot_proto::agent::{
    HEARTBEAT_API_VERSION, HeartbeatRequest, LOOKUP_API_VERSION, LookupResponse,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::ca::TrustedCa;

/// Why a request to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connection, TLS or timeout.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An unexpected status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The response body (the Ironic error message when there is one).
        body: String,
    },
    /// A body that does not parse.
    #[error("{url}: bad response: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The client could not be built.
    #[error("HTTP client: {0}")]
    Setup(String),
}

impl ClientError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An Ironic API microversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses `1.68`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Self(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The HTTP client for one coordinator URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The server's maximum version, after [`Client::discover`].
    pub server_version: Option<ApiVersion>,
}

impl Client {
    /// A client for `base` (e.g. `http://10.0.0.1:6385`) that trusts `ca`
    /// besides the public roots, or verifies nothing when `insecure`.
    pub fn new(base: &str, ca: &TrustedCa, insecure: bool) -> Result<Self, ClientError> {
        let mut b = ca.apply(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("ingot-agent/", env!("CARGO_PKG_VERSION"))),
        );
        if insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        Ok(Self {
            http: b.build().map_err(|e| ClientError::Setup(e.to_string()))?,
            base: base.trim_end_matches('/').to_string(),
            server_version: None,
        })
    }

    /// The coordinator's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn version_for(&self, wanted: &str) -> String {
        let want = ApiVersion::parse(wanted).unwrap_or(ApiVersion(1, 1));
        match self.server_version {
            Some(s) if s < want => s.to_string(),
            _ => want.to_string(),
        }
    }

    /// `GET /`: reads the server's maximum version (`default_version.version`).
    pub async fn discover(&mut self) -> Result<ApiVersion, ClientError> {
        let url = format!("{}/", self.base);
        let v: Value = self.get_json(&url, None).await?;
        let ver = v
            .get("default_version")
            .and_then(|d| d.get("version"))
            .and_then(Value::as_str)
            .and_then(ApiVersion::parse)
            .ok_or_else(|| ClientError::Decode {
                url: url.clone(),
                reason: "no default_version.version".into(),
            })?;
        self.server_version = Some(ver);
        Ok(ver)
    }

    async fn get_json(&self, url: &str, version: Option<&str>) -> Result<Value, ClientError> {
        let mut req = self.http.get(url).header("Accept", "application/json");
        if let Some(v) = version {
            req = req.header("X-OpenStack-Ironic-API-Version", v);
        }
        let resp = req.send().await.map_err(|e| transport(url, &e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| transport(url, &e))?;
        if status != StatusCode::OK {
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: error_message(&body),
            });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// `GET /v1/lookup?addresses=<macs>[&node_uuid=<uuid>]`.
    pub async fn lookup(
        &self,
        macs: &[String],
        node_uuid: Option<&str>,
    ) -> Result<LookupResponse, ClientError> {
        let mut url = format!("{}/v1/lookup?addresses={}", self.base, macs.join(","));
        if let Some(u) = node_uuid {
            url.push_str(&format!("&node_uuid={u}"));
        }
        let v = self
            .get_json(&url, Some(&self.version_for(LOOKUP_API_VERSION)))
            .await?;
        let resp: LookupResponse = serde_json::from_value(v).map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if resp.node.uuid.is_empty() {
            return Err(ClientError::Decode {
                url,
                reason: "the node has no uuid".into(),
            });
        }
        Ok(resp)
    }

    /// Whether the server accepts `agent_verify_ca` (API 1.68).
    pub fn supports_verify_ca(&self) -> bool {
        self.server_version.is_some_and(|v| v >= ApiVersion(1, 68))
    }

    /// `POST /v1/heartbeat/<node>`.
    pub async fn heartbeat(&self, node: &str, body: &HeartbeatRequest) -> Result<(), ClientError> {
        let url = format!("{}/v1/heartbeat/{node}", self.base);
        let resp = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .header(
                "X-OpenStack-Ironic-API-Version",
                self.version_for(HEARTBEAT_API_VERSION),
            )
            .body(serde_json::to_vec(body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(ClientError::Status {
            url,
            status: status.as_u16(),
            body: error_message(&body),
        })
    }
}

/// A transport error with its causes: reqwest's own message is only "error
/// sending request", the TLS reason (`invalid peer certificate:
/// UnknownIssuer`) is in the source chain.
fn transport(url: &str, e: &reqwest::Error) -> ClientError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = s.source();
    }
    ClientError::Transport {
        url: url.to_string(),
        reason,
    }
}

/// Ironic's error body is `{"error_message": "<JSON string with faultstring>"}`.
pub fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let inner = parsed
        .as_ref()
        .and_then(|v| v.get("error_message"))
        .and_then(|m| match m {
            Value::String(s) => serde_json::from_str::<Value>(s)
                .ok()
                .or_else(|| Some(Value::String(s.clone()))),
            other => Some(other.clone()),
        });
    match inner {
        Some(Value::Object(o)) => o
            .get("faultstring")
            .or_else(|| o.get("description"))
            .and_then(Value::as_str)
            .unwrap_or(body)
            .to_string(),
        Some(Value::String(s)) => s,
        _ => body.chars().take(500).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ironic_error_messages() {
        let b = r#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Resource could not be found.\", \"debuginfo\": null}"}"#;
        assert_eq!(error_message(b), "Resource could not be found.");
        assert_eq!(error_message("plain"), "plain");
        assert!(ApiVersion::parse("1.115").unwrap() > ApiVersion::parse("1.68").unwrap());
    }
}

//! The client of the agent's command API (`POST/GET {callback_url}/v1/commands/`),
//! with the token as the `agent_token` query parameter, as Ironic's conductor does.

use std::time::Duration;

use ingot_proto::agent::{CommandList, CommandRequest, CommandResult};
use serde_json::{Map, Value};

/// Where the agent is and how to talk to it.
#[derive(Debug, Clone)]
pub struct AgentEndpoint {
    /// `http(s)://host:port` from the heartbeat.
    pub url: String,
    /// The token handed out at lookup.
    pub token: String,
    /// PEM of the agent's self-signed certificate (auto-TLS), if any.
    pub verify_ca: Option<String>,
}

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent runs another command (HTTP 409): retry on the next heartbeat.
    #[error("agent is busy: {0}")]
    Busy(String),
    /// The agent refused the request.
    #[error("agent answered HTTP {status}: {message}")]
    Http {
        /// Status code.
        status: u16,
        /// faultstring or body.
        message: String,
    },
    /// Connection or timeout.
    #[error("cannot reach the agent at {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The answer is not a command result.
    #[error("unexpected answer from the agent: {0}")]
    Decode(String),
}

/// The client.
#[derive(Debug, Clone)]
pub struct AgentClient {
    timeout: Duration,
    plain: reqwest::Client,
}

impl AgentClient {
    /// A client with the given per-request timeout.
    pub fn new(timeout: Duration) -> Self {
        let plain = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self { timeout, plain }
    }

    fn client(&self, ep: &AgentEndpoint) -> Result<reqwest::Client, AgentError> {
        match &ep.verify_ca {
            None => Ok(self.plain.clone()),
            Some(pem) => {
                let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| AgentError::Decode(format!("agent_verify_ca: {e}")))?;
                reqwest::Client::builder()
                    .timeout(self.timeout)
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(cert)
                    .build()
                    .map_err(|e| AgentError::Decode(format!("TLS client: {e}")))
            }
        }
    }

    async fn send(
        &self,
        ep: &AgentEndpoint,
        req: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, AgentError> {
        let resp = req.send().await.map_err(|source| AgentError::Transport {
            url: ep.url.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| AgentError::Transport {
            url: ep.url.clone(),
            source,
        })?;
        if status >= 400 {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("faultstring")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            if status == 409 || message.to_ascii_lowercase().contains("agent is busy") {
                return Err(AgentError::Busy(message));
            }
            return Err(AgentError::Http { status, message });
        }
        Ok(body)
    }

    /// Runs `name` (`<extension>.<command>`); `wait` asks the agent to answer
    /// only when the command has finished.
    pub async fn execute(
        &self,
        ep: &AgentEndpoint,
        name: &str,
        params: Map<String, Value>,
        wait: bool,
    ) -> Result<CommandResult, AgentError> {
        let url = format!("{}/v1/commands/", ep.url.trim_end_matches('/'));
        let body = serde_json::to_vec(&CommandRequest {
            name: name.to_owned(),
            params,
        })
        .map_err(|e| AgentError::Decode(e.to_string()))?;
        let req = self
            .client(ep)?
            .post(url)
            .query(&[
                ("wait", if wait { "true" } else { "false" }),
                ("agent_token", ep.token.as_str()),
            ])
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body);
        let started = std::time::Instant::now();
        let r = self.send(ep, req).await.and_then(|body| {
            serde_json::from_slice(&body).map_err(|e| AgentError::Decode(format!("{name}: {e}")))
        });
        crate::metrics::agent_command(name, result_label(&r), started.elapsed());
        r
    }

    /// Every command of this boot, in order.
    pub async fn list_commands(
        &self,
        ep: &AgentEndpoint,
    ) -> Result<Vec<CommandResult>, AgentError> {
        let url = format!("{}/v1/commands/", ep.url.trim_end_matches('/'));
        let req = self
            .client(ep)?
            .get(url)
            .query(&[("agent_token", ep.token.as_str())])
            .header("Accept", "application/json");
        let started = std::time::Instant::now();
        let r = self.send(ep, req).await.and_then(|body| {
            serde_json::from_slice::<CommandList>(&body)
                .map(|l| l.commands)
                .map_err(|e| AgentError::Decode(format!("command list: {e}")))
        });
        crate::metrics::agent_command("list_commands", result_label(&r), started.elapsed());
        r
    }
}

/// The `result` label of an agent request's metrics.
fn result_label<T>(r: &Result<T, AgentError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(AgentError::Busy(_)) => "busy",
        Err(AgentError::Http { .. }) => "http_error",
        Err(AgentError::Transport { .. }) => "unreachable",
        Err(AgentError::Decode(_)) => "bad_answer",
    }
}

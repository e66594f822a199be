//! The `redfish` power interface: ComputerSystem.Reset and boot source
//! override over HTTPS (reqwest on rustls), with basic or session
//! authentication and Ironic's `redfish_verify_ca` options.

pub mod client;
pub mod driver;

use std::path::PathBuf;

use serde_json::{Map, Value};

pub use client::RedfishClient;
pub use driver::RedfishPower;

use super::{PowerError, require_keys};

/// How to check the BMC's TLS certificate (`redfish_verify_ca`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verify {
    /// Against the built-in web PKI roots (`true`, the default).
    Roots,
    /// Not at all (`false`).
    Off,
    /// Against the CA certificate(s) in a PEM file.
    CaFile(PathBuf),
}

/// `redfish_auth_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// A session when the service offers one, else basic (the default).
    Auto,
    /// HTTP basic authentication on every request.
    Basic,
    /// A Redfish session (X-Auth-Token).
    Session,
}

/// Where and how to reach one Redfish system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedfishConfig {
    /// `scheme://host[:port]` without a trailing slash.
    pub base: String,
    /// The system's path (`/redfish/v1/Systems/<id>`), or `None` when the
    /// service has a single system.
    pub system_id: Option<String>,
    /// User name (may be empty: no authentication).
    pub username: String,
    /// Password.
    pub password: String,
    /// TLS verification.
    pub verify: Verify,
    /// Authentication method.
    pub auth: AuthType,
}

/// Redfish errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedfishError {
    /// No connection (refused, unroutable, TLS handshake) or a timeout.
    #[error("cannot reach the Redfish service: {0}")]
    Unreachable(String),
    /// Other HTTP client failures (a CA bundle that cannot be read, a body
    /// that cannot be read).
    #[error("cannot reach the Redfish service: {0}")]
    Http(String),
    /// A non-success HTTP status.
    #[error("{method} {path} returned HTTP {status}: {message}")]
    Status {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Status code.
        status: u16,
        /// The Redfish error message, if any.
        message: String,
    },
    /// Unexpected documents.
    #[error("unexpected Redfish response: {0}")]
    Protocol(String),
}

fn bad(msg: String) -> PowerError {
    PowerError::InvalidDriverInfo(msg)
}

/// Reads a [`RedfishConfig`] from Ironic's redfish_* driver_info keys.
pub fn redfish_config(info: &Map<String, Value>) -> Result<RedfishConfig, PowerError> {
    require_keys(info, &["redfish_address"])?;
    let addr = info
        .get("redfish_address")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('/');
    let base = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("https://{addr}")
    };
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or_default();
    if !(base.starts_with("http://") || base.starts_with("https://"))
        || rest.is_empty()
        || rest.contains('/')
    {
        return Err(bad(format!(
            "Invalid Redfish address {addr} set in driver_info/redfish_address on node"
        )));
    }
    let system_id = match info.get("redfish_system_id").and_then(Value::as_str) {
        None | Some("") => None,
        Some(s) if s.starts_with('/') => Some(s.trim_end_matches('/').to_owned()),
        Some(s) => Some(format!("/redfish/v1/Systems/{s}")),
    };
    let verify = match info.get("redfish_verify_ca") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Verify::Roots,
        Some(Value::Bool(false)) => Verify::Off,
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Verify::Roots,
            "false" | "no" | "0" | "off" => Verify::Off,
            _ => Verify::CaFile(PathBuf::from(s)),
        },
        Some(v) => {
            return Err(bad(format!(
                "Invalid value type set in driver_info/redfish_verify_ca: {v}; \
                 a Boolean or a path to a CA bundle is expected"
            )));
        }
    };
    let auth = match info.get("redfish_auth_type").and_then(Value::as_str) {
        None | Some("auto") => AuthType::Auto,
        Some("basic") => AuthType::Basic,
        Some("session") => AuthType::Session,
        Some(v) => {
            return Err(bad(format!(
                "Invalid value {v} set in driver_info/redfish_auth_type; use basic, session or auto"
            )));
        }
    };
    let s = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(RedfishConfig {
        base,
        system_id,
        username: s("redfish_username"),
        password: s("redfish_password"),
        verify,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Result<RedfishConfig, PowerError> {
        redfish_config(v.as_object().expect("object"))
    }

    #[test]
    fn driver_info_keys() {
        let c = cfg(json!({"redfish_address": "10.0.0.1"})).expect("valid");
        assert_eq!(c.base, "https://10.0.0.1");
        assert_eq!(
            (c.verify.clone(), c.auth, c.system_id.clone()),
            (Verify::Roots, AuthType::Auto, None)
        );
        let c = cfg(
            json!({"redfish_address": "http://127.0.0.1:8000/", "redfish_system_id": "abc",
            "redfish_verify_ca": "False", "redfish_auth_type": "basic"}),
        )
        .expect("valid");
        assert_eq!(c.base, "http://127.0.0.1:8000");
        assert_eq!(c.system_id.as_deref(), Some("/redfish/v1/Systems/abc"));
        assert_eq!((c.verify, c.auth), (Verify::Off, AuthType::Basic));
        let c = cfg(
            json!({"redfish_address": "h", "redfish_verify_ca": "/etc/ca.pem",
            "redfish_system_id": "/redfish/v1/Systems/1"}),
        )
        .expect("valid");
        assert_eq!(c.verify, Verify::CaFile("/etc/ca.pem".into()));
        assert_eq!(c.system_id.as_deref(), Some("/redfish/v1/Systems/1"));
        assert!(cfg(json!({})).is_err());
        assert!(cfg(json!({"redfish_address": "ftp://h"})).is_err());
        assert!(cfg(json!({"redfish_address": "h", "redfish_verify_ca": 3})).is_err());
        assert!(cfg(json!({"redfish_address": "h", "redfish_auth_type": "x"})).is_err());
    }
}

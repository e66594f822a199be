//! Who is calling: Ironic's authentication strategies (`[auth] strategy`).
//!
//! - `noauth`: every caller is a system administrator. Only for a loopback
//!   listen address, unless `allow_noauth_on_network` says otherwise.
//! - `http_basic`: `Authorization: Basic` checked against an Apache htpasswd
//!   file with bcrypt entries ([`htpasswd`]), as Ironic reads it. Ironic
//!   makes every such user an administrator; Ingot does too, unless
//!   `[auth.users.<name>]` gives the user roles and a project scope, so the
//!   role model also works without Keystone.
//! - `keystone`: `X-Auth-Token` validated against Keystone v3 with the
//!   service's own credentials, cached until the token expires
//!   ([`keystone`]).
//!
//! The ramdisk's endpoints (lookup, heartbeat, continue_inspection), the
//! version documents and the boot files stay outside authentication, as in
//! Ironic: agents prove themselves with their agent token.

pub mod htpasswd;
pub mod keystone;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::config::{AuthConfig, AuthStrategy};

/// The scope of a caller's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// System scope (`system_scope: all`).
    System,
    /// A project.
    Project {
        /// Project ID (what `owner` and `lessee` hold).
        id: String,
        /// Project name.
        name: String,
    },
    /// Neither (a domain-scoped or unscoped token).
    None,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User name (for logs).
    pub user: String,
    /// Role names, lowercased, with the implied ones (admin ⇒ member ⇒
    /// reader, manager ⇒ member) added.
    pub roles: Vec<String>,
    /// The scope.
    pub scope: Scope,
    /// Has the `service` role in the configured service project (Ironic's
    /// `rule:service_role`).
    pub service_project: bool,
}

impl Caller {
    /// A system administrator (what `noauth` and plain `http_basic` give).
    pub fn system_admin(user: &str) -> Self {
        Self::new(user, &["admin"], Scope::System, "")
    }

    /// A caller with `roles` (implied roles added) in `scope`.
    pub fn new(user: &str, roles: &[&str], scope: Scope, service_project_name: &str) -> Self {
        let mut all: Vec<String> = Vec::new();
        let mut add = |r: &str| {
            if !all.iter().any(|x| x == r) {
                all.push(r.to_owned());
            }
        };
        for r in roles {
            let r = r.to_ascii_lowercase();
            match r.as_str() {
                "admin" => ["admin", "manager", "member", "reader"]
                    .iter()
                    .for_each(|x| add(x)),
                "manager" => ["manager", "member", "reader"].iter().for_each(|x| add(x)),
                "member" => ["member", "reader"].iter().for_each(|x| add(x)),
                other => add(other),
            }
        }
        let service_project = all.iter().any(|r| r == "service")
            && matches!(&scope, Scope::Project { name, .. } if !service_project_name.is_empty() && name == service_project_name);
        Self {
            user: user.to_owned(),
            roles: all,
            scope,
            service_project,
        }
    }

    /// True if the caller has `role` (implied roles included).
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// True for system-scoped credentials.
    pub fn is_system(&self) -> bool {
        self.scope == Scope::System
    }

    /// The project ID of project-scoped credentials.
    pub fn project(&self) -> Option<&str> {
        match &self.scope {
            Scope::Project { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials.
    #[error("The request you have made requires authentication.")]
    Missing,
    /// Wrong credentials (the reason is logged, not shown).
    #[error("The request you have made requires authentication.")]
    Invalid(String),
    /// The identity service could not be asked.
    #[error("The authentication service is unavailable: {0}")]
    Unavailable(String),
}

/// The configured strategy, ready to authenticate requests.
#[derive(Debug)]
pub enum Authenticator {
    /// Everyone is a system administrator.
    NoAuth,
    /// htpasswd users.
    Basic(htpasswd::BasicAuth),
    /// Keystone tokens.
    Keystone(keystone::KeystoneAuth),
}

/// Errors of the authentication configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `noauth` on an address others can reach.
    #[error(
        "[auth] strategy = \"noauth\" on the non-loopback address {0}: anyone who reaches it could power servers off and read BMC passwords. Configure http_basic or keystone, or set [auth] allow_noauth_on_network = true"
    )]
    NoAuthOnNetwork(std::net::SocketAddr),
    /// The htpasswd file.
    #[error(transparent)]
    Htpasswd(#[from] htpasswd::HtpasswdError),
    /// The Keystone settings.
    #[error("[auth.keystone]: {0}")]
    Keystone(String),
}

impl Authenticator {
    /// Builds the authenticator of `config` for an API on `listen`.
    pub fn from_config(
        config: &AuthConfig,
        listen: std::net::SocketAddr,
    ) -> Result<Self, AuthConfigError> {
        match config.strategy {
            AuthStrategy::NoAuth => {
                if !listen.ip().is_loopback() && !config.allow_noauth_on_network {
                    return Err(AuthConfigError::NoAuthOnNetwork(listen));
                }
                Ok(Self::NoAuth)
            }
            AuthStrategy::HttpBasic => Ok(Self::Basic(htpasswd::BasicAuth::from_config(config)?)),
            AuthStrategy::Keystone => Ok(Self::Keystone(
                keystone::KeystoneAuth::from_config(config).map_err(AuthConfigError::Keystone)?,
            )),
        }
    }

    /// The caller of a request with these headers.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        match self {
            Self::NoAuth => Ok(Caller::system_admin("noauth")),
            Self::Basic(b) => b.caller(headers).await,
            Self::Keystone(k) => k.caller(headers).await,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401.
    fn challenge(&self) -> Option<String> {
        match self {
            Self::NoAuth => None,
            Self::Basic(_) => Some("Basic realm=\"Baremetal API\"".to_owned()),
            Self::Keystone(k) => Some(format!("Keystone uri=\"{}\"", k.www_authenticate_uri())),
        }
    }
}

/// Paths outside authentication: the version documents, the ramdisk's
/// endpoints (agents present their agent token instead), and the boot
/// files and images agents download.
pub fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/v1" | "/v1/" | "/v1/lookup" | "/v1/continue_inspection"
    ) || path.starts_with("/v1/heartbeat/")
        || path.starts_with("/boot/")
        || path.starts_with("/images/")
}

/// The middleware: authenticates every request to a non-public path and
/// puts its [`Caller`] into the request's extensions; 401 otherwise.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    match auth.caller(req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            let status = match &e {
                AuthError::Unavailable(why) => {
                    tracing::error!(error = %why, "authentication service unavailable");
                    StatusCode::SERVICE_UNAVAILABLE
                }
                AuthError::Invalid(why) => {
                    tracing::info!(path = %req.uri().path(), reason = %why, "authentication failed");
                    StatusCode::UNAUTHORIZED
                }
                AuthError::Missing => StatusCode::UNAUTHORIZED,
            };
            let mut resp = ApiError::new(status, e.to_string()).into_response();
            if status == StatusCode::UNAUTHORIZED
                && let Some(c) = auth.challenge()
                && let Ok(v) = HeaderValue::from_str(&c)
            {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            resp
        }
    }
}

/// A shared authenticator.
pub type SharedAuth = Arc<Authenticator>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_roles_and_service_project() {
        let c = Caller::new(
            "u",
            &["Admin"],
            Scope::Project {
                id: "p".into(),
                name: "x".into(),
            },
            "service",
        );
        assert!(c.has("admin") && c.has("member") && c.has("reader") && c.has("manager"));
        assert!(!c.service_project);
        let s = Caller::new(
            "nova",
            &["service"],
            Scope::Project {
                id: "s".into(),
                name: "service".into(),
            },
            "service",
        );
        assert!(s.service_project && !s.has("reader"));
    }

    #[test]
    fn public_paths() {
        for p in [
            "/",
            "/v1",
            "/v1/lookup",
            "/v1/heartbeat/x",
            "/boot/vmlinuz",
            "/images/k",
        ] {
            assert!(is_public(p), "{p}");
        }
        for p in [
            "/v1/nodes",
            "/v1/heartbeats",
            "/v1/conductors",
            "/v1/lookup/x",
        ] {
            assert!(!is_public(p), "{p}");
        }
    }
}

//! `http_basic`: users and bcrypt password hashes from an Apache htpasswd
//! file (`htpasswd -B`), as Ironic reads it. The file is read again when it
//! changes. A password that verified is remembered for five minutes (keyed
//! by a SHA-256 of user, password and hash), so bcrypt's deliberate cost is
//! paid once per client, not per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{AuthError, Caller, Scope};
use crate::config::{AuthConfig, UserScope};

/// Errors of the htpasswd file.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// No file configured.
    #[error("[auth] strategy = \"http_basic\" needs [auth] htpasswd_file")]
    NotConfigured,
    /// The file cannot be read.
    #[error("reading the htpasswd file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line that is not `user:bcrypt-hash`.
    #[error("{path} line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// Parses htpasswd text: `user:$2y$…` lines; blank lines and `#` comments
/// are skipped. Only bcrypt entries are accepted, as in Ironic.
pub fn parse(path: &str, text: &str) -> Result<HashMap<String, String>, HtpasswdError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: &str| HtpasswdError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason: reason.to_owned(),
        };
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| err("expected user:hash"))?;
        if user.is_empty() {
            return Err(err("empty user name"));
        }
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(err(
                "only bcrypt entries are supported (htpasswd -B); this one is another kind",
            ));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

/// The users of the file, as last read.
#[derive(Debug)]
struct Loaded {
    modified: Option<SystemTime>,
    users: HashMap<String, String>,
}

/// The `http_basic` authenticator.
#[derive(Debug)]
pub struct BasicAuth {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    scopes: std::collections::BTreeMap<String, UserScope>,
    service_project_name: String,
}

impl BasicAuth {
    /// How long a verified password is remembered.
    const REMEMBER: Duration = Duration::from_secs(300);
    /// Most remembered verifications.
    const MAX_REMEMBERED: usize = 4096;

    /// Reads the configured file (refusing a malformed one).
    pub fn from_config(config: &AuthConfig) -> Result<Self, HtpasswdError> {
        let path = config
            .htpasswd_file
            .clone()
            .ok_or(HtpasswdError::NotConfigured)?;
        let (modified, users) = read(&path)?;
        Ok(Self {
            path,
            loaded: Mutex::new(Loaded { modified, users }),
            verified: Mutex::new(HashMap::new()),
            scopes: config.users.clone(),
            service_project_name: config.service_project_name.clone(),
        })
    }

    /// The bcrypt hash of `user`, from the file as it is now.
    fn hash_of(&self, user: &str) -> Option<String> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if now != loaded.modified {
            match read(&self.path) {
                Ok((modified, users)) => *loaded = Loaded { modified, users },
                // Keep the users we had; say why the new file is refused.
                Err(e) => tracing::error!(error = %e, "htpasswd file not reloaded"),
            }
        }
        loaded.users.get(user).cloned()
    }

    /// Authenticates `Authorization: Basic …`.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Invalid("Authorization header is not ASCII".into()))?;
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
            .ok_or_else(|| AuthError::Invalid("not Basic credentials".into()))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| AuthError::Invalid("credentials are not base64".into()))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| AuthError::Invalid("credentials are not UTF-8".into()))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| AuthError::Invalid("credentials are not user:password".into()))?;
        let hash = self
            .hash_of(user)
            .ok_or_else(|| AuthError::Invalid(format!("unknown user {user:?}")))?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if !self.remembered(&key) {
            let pw = password.to_owned();
            let h = hash.clone();
            let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &h).unwrap_or(false))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(AuthError::Invalid(format!("wrong password for {user:?}")));
            }
            self.remember(key);
        }
        Ok(self.caller_of(user))
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        let v = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.get(key).is_some_and(|t| t.elapsed() < Self::REMEMBER)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut v = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if v.len() >= Self::MAX_REMEMBERED {
            v.retain(|_, t| t.elapsed() < Self::REMEMBER);
            if v.len() >= Self::MAX_REMEMBERED {
                v.clear();
            }
        }
        v.insert(key, Instant::now());
    }

    /// The caller `user` is: the roles and scope `[auth.users.<user>]`
    /// gives, else a system administrator (Ironic's http_basic).
    fn caller_of(&self, user: &str) -> Caller {
        match self.scopes.get(user) {
            None => Caller::system_admin(user),
            Some(s) => {
                let roles: Vec<&str> = s.roles.iter().map(String::as_str).collect();
                let scope = match &s.project {
                    Some(id) => Scope::Project {
                        id: id.clone(),
                        name: s.project_name.clone().unwrap_or_else(|| id.clone()),
                    },
                    None => Scope::System,
                };
                Caller::new(user, &roles, scope, &self.service_project_name)
            }
        }
    }
}

fn read(path: &Path) -> Result<(Option<SystemTime>, HashMap<String, String>), HtpasswdError> {
    let err = |source| HtpasswdError::Read {
        path: path.display().to_string(),
        source,
    };
    let modified = std::fs::metadata(path).map_err(err)?.modified().ok();
    let text = std::fs::read_to_string(path).map_err(err)?;
    Ok((modified, parse(&path.display().to_string(), &text)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_bcrypt_entries_and_refuses_others() {
        let users = parse(
            "f",
            "# comment\n\nalice:$2y$05$abcdefghijklmnopqrstuu1234567890123456789012345678901\n",
        )
        .unwrap();
        assert!(users.contains_key("alice"));
        let e = parse("f", "bob:$apr1$xyz$abc\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(parse("f", "nocolon\n").is_err());
    }
}

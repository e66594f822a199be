//! Encryption at rest of `driver_info` secrets (`secrets_key_file`): every
//! value under a secret-looking key (see [`crate::model::mask`]), at any
//! depth, is stored as `ingot-aead-v1:<base64 of nonce ‖ AES-256-GCM
//! ciphertext>`, with the node's UUID and the value's path as associated
//! data, so a ciphertext cannot be moved to another node or field. Values
//! stored in clear before the key was configured are read as they are and
//! encrypted at the node's next write.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde_json::{Map, Value};

use crate::model::mask::is_secret_key;

/// The prefix of an encrypted value.
pub const PREFIX: &str = "ingot-aead-v1:";

/// Errors of the key and of decryption.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file.
    #[error("secrets_key_file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value that does not decrypt with this key.
    #[error("node {node}: driver_info{path} does not decrypt with the configured secrets key")]
    Decrypt {
        /// The node.
        node: String,
        /// The value's path.
        path: String,
    },
}

/// The key.
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// Reads a key file: 32 bytes as 64 hex digits (whitespace around is
    /// ignored). The file must not be readable by others.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SecretsError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| SecretsError::Key {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets others read it; chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let key = hex::decode(text.trim()).map_err(|_| {
            err("expected 64 hex digits (head -c32 /dev/urandom | xxd -p -c64)".into())
        })?;
        Self::from_key(&key).ok_or_else(|| err(format!("the key is {} bytes, not 32", key.len())))
    }

    /// A key of 32 bytes.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        if key.len() != 32 {
            return None;
        }
        Aes256Gcm::new_from_slice(key)
            .ok()
            .map(|cipher| Self { cipher })
    }

    fn seal(&self, node: &str, path: &str, v: &Value) -> Option<String> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).ok()?;
        let aad = format!("{node}\0{path}");
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: v.to_string().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Some(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    fn open(&self, node: &str, path: &str, sealed: &str) -> Option<Value> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix(PREFIX)?)
            .ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        let aad = format!("{node}\0{path}");
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&pt).ok()
    }

    /// Encrypts the secrets of a node's `driver_info` in place.
    pub fn seal_driver_info(&self, node: &str, info: &mut Map<String, Value>) {
        walk(info, "", &mut |path, v| {
            if v.as_str().is_some_and(|s| s.starts_with(PREFIX)) || v.is_null() {
                return Ok(());
            }
            if let Some(sealed) = self.seal(node, path, v) {
                *v = Value::String(sealed);
            }
            Ok(())
        })
        .unwrap_or(());
    }

    /// Decrypts the secrets of a node's `driver_info` in place.
    pub fn open_driver_info(
        &self,
        node: &str,
        info: &mut Map<String, Value>,
    ) -> Result<(), SecretsError> {
        walk(info, "", &mut |path, v| {
            let Some(s) = v.as_str().filter(|s| s.starts_with(PREFIX)) else {
                return Ok(());
            };
            *v = self
                .open(node, path, s)
                .ok_or_else(|| SecretsError::Decrypt {
                    node: node.to_owned(),
                    path: path.to_owned(),
                })?;
            Ok(())
        })
    }
}

/// True if a `driver_info` holds an encrypted value (at any depth).
pub fn has_sealed(info: &Map<String, Value>) -> bool {
    let mut stack: Vec<&Value> = info.values().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.starts_with(PREFIX) => return true,
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    false
}

/// Calls `f` with the JSON pointer and value of every secret-keyed value.
fn walk(
    m: &mut Map<String, Value>,
    at: &str,
    f: &mut dyn FnMut(&str, &mut Value) -> Result<(), SecretsError>,
) -> Result<(), SecretsError> {
    for (k, v) in m.iter_mut() {
        let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
        if is_secret_key(k) {
            f(&path, v)?;
        } else if let Value::Object(inner) = v {
            walk(inner, &path, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_open_and_bind_to_node_and_path() {
        let b = SecretBox::from_key(&[7u8; 32]).unwrap();
        let mut info =
            json!({"ipmi_password": "p", "redfish": {"password": "q"}, "ipmi_address": "a"})
                .as_object()
                .cloned()
                .unwrap();
        let clear = info.clone();
        b.seal_driver_info("n1", &mut info);
        let text = Value::Object(info.clone()).to_string();
        assert!(!text.contains("\"p\"") && !text.contains("\"q\""), "{text}");
        assert_eq!(info["ipmi_address"], "a");
        assert!(has_sealed(&info));
        let mut again = info.clone();
        b.open_driver_info("n1", &mut again).unwrap();
        assert_eq!(again, clear);
        // Another node, or another key, cannot open it.
        assert!(
            b.clone_for_test()
                .open_driver_info("n2", &mut info.clone())
                .is_err()
        );
        let other = SecretBox::from_key(&[8u8; 32]).unwrap();
        assert!(other.open_driver_info("n1", &mut info.clone()).is_err());
        // Moved to another field: refused.
        let mut moved = info.clone();
        let sealed = moved["ipmi_password"].clone();
        moved.insert("snmp_community".into(), sealed);
        assert!(b.open_driver_info("n1", &mut moved).is_err());
    }

    impl SecretBox {
        fn clone_for_test(&self) -> Self {
            Self {
                cipher: self.cipher.clone(),
            }
        }
    }
}

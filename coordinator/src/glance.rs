//! Glance image sources, as Ironic resolves them
//! (`deploy_utils.build_instance_info_for_deploy`): an `image_source` that
//! is a UUID or `glance://<uuid>` is looked up with `GET /v2/images/{id}`;
//! the image must be `active` and of a disk format the agent writes (raw,
//! qcow2). Its checksum, hash, formats, size and properties go into
//! `instance_info`, and the image itself is downloaded by the coordinator
//! from `GET /v2/images/{id}/file` into the image cache, which verifies the
//! hash while streaming and serves it to the agent (Ironic's
//! `image_download_source = http` for Glance images). Swift temporary URLs
//! (Ironic's `swift` download source) are not offered.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::auth::keystone::KeystoneAuth;
use crate::config::{Config, GlanceAuthType, GlanceConfig};

/// Disk formats the agent writes.
pub const DISK_FORMATS: [&str; 2] = ["raw", "qcow2"];

/// Largest image record accepted (bytes): records are small JSON documents.
const MAX_RECORD_BYTES: usize = 1 << 20;

/// Why a Glance image cannot be used; the texts are Ironic's.
#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    /// No `[glance] endpoint` configured.
    #[error(
        "instance_info.image_source {0} is a Glance image, but no [glance] endpoint is configured"
    )]
    NotConfigured(String),
    /// Glance did not answer.
    #[error("Connection to glance endpoint {endpoint} failed: {reason}")]
    Connection {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// 404.
    #[error("Image {0} could not be found.")]
    NotFound(String),
    /// 401/403.
    #[error("Not authorized for image {0}.")]
    NotAuthorized(String),
    /// Not active, or a format the agent does not write.
    #[error("Image {image_id} is unacceptable: {reason}")]
    Unacceptable {
        /// The image.
        image_id: String,
        /// Why.
        reason: String,
    },
    /// Anything else Glance answered.
    #[error("Glance answered {status} for image {image_id}: {body}")]
    Other {
        /// The image.
        image_id: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// The image id of a Glance reference (`<uuid>` or `glance://<uuid>`), as
/// Ironic's `is_glance_image`/`parse_image_id` read it.
pub fn image_id(image_source: &str) -> Option<&str> {
    let id = image_source
        .strip_prefix("glance://")
        .map_or(image_source, |rest| rest.rsplit('/').next().unwrap_or(rest));
    crate::model::is_uuid(id).then_some(id)
}

/// What the deploy needs of a Glance image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The image id.
    pub id: String,
    /// The URL of its data.
    pub file_url: String,
    /// The `instance_info` keys Ironic fills from the record.
    pub instance_info: Map<String, Value>,
}

/// A Glance v2 client.
#[derive(Debug, Clone)]
pub struct Glance {
    config: GlanceConfig,
    http: reqwest::Client,
    keystone: Option<Arc<KeystoneAuth>>,
}

impl Glance {
    /// A client of the configured Glance; `Ok(None)` without an endpoint.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let g = &config.glance;
        let Some(endpoint) = &g.endpoint else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "[glance] endpoint must be an http(s) URL, got {endpoint:?}"
            ));
        }
        let keystone = match g.auth_type {
            GlanceAuthType::Password => {
                Some(Arc::new(KeystoneAuth::from_config(&config.auth).map_err(
                    |e| format!("[glance] auth_type = \"password\" needs [auth.keystone]: {e}"),
                )?))
            }
            GlanceAuthType::Token if g.token.is_none() => {
                return Err("[glance] auth_type = \"token\" needs token".into());
            }
            _ => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(g.timeout_ms))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(Self {
            config: g.clone(),
            http,
            keystone,
        }))
    }

    fn endpoint(&self) -> String {
        self.config
            .endpoint
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Headers every Glance request carries: `X-Auth-Token` with the
    /// configured token or the service user's.
    pub async fn auth_headers(&self) -> Result<Vec<(String, String)>, GlanceError> {
        let token = match (&self.config.auth_type, &self.config.token, &self.keystone) {
            (GlanceAuthType::Token, Some(t), _) => t.clone(),
            (GlanceAuthType::Password, _, Some(k)) => {
                k.token_for_services()
                    .await
                    .map_err(|e| GlanceError::Connection {
                        endpoint: self.endpoint(),
                        reason: format!("no Keystone token for Glance: {e}"),
                    })?
            }
            _ => return Ok(Vec::new()),
        };
        Ok(vec![("X-Auth-Token".into(), token)])
    }

    /// Looks the image up and checks it can be deployed.
    pub async fn image(&self, id: &str) -> Result<ImageRecord, GlanceError> {
        let endpoint = self.endpoint();
        let url = format!("{endpoint}/v2/images/{id}");
        let mut req = self
            .http
            .get(&url)
            .timeout(Duration::from_millis(self.config.timeout_ms));
        for (k, v) in self.auth_headers().await? {
            req = req.header(k, v);
        }
        let conn = |reason: String| GlanceError::Connection {
            endpoint: endpoint.clone(),
            reason,
        };
        let resp = req.send().await.map_err(|e| conn(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = read_bounded(resp).await.map_err(conn)?;
        match status {
            200 => {}
            404 => return Err(GlanceError::NotFound(id.to_owned())),
            401 | 403 => return Err(GlanceError::NotAuthorized(id.to_owned())),
            _ => {
                return Err(GlanceError::Other {
                    image_id: id.to_owned(),
                    status,
                    body: String::from_utf8_lossy(&body).chars().take(200).collect(),
                });
            }
        }
        let record: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| conn(format!("the image record is not JSON: {e}")))?;
        record_for_deploy(id, &endpoint, &record)
    }
}

/// Reads a response body of at most [`MAX_RECORD_BYTES`].
async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len().saturating_add(chunk.len()) > MAX_RECORD_BYTES {
            return Err(format!(
                "the image record is larger than {MAX_RECORD_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Glance's own keys of an image record; the rest are properties.
const BASE_KEYS: [&str; 22] = [
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "disk_format",
    "container_format",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "os_hidden",
];

/// Checks a record and turns it into `instance_info` keys, as Ironic's
/// `_instance_info_for_glance` does.
pub fn record_for_deploy(
    id: &str,
    endpoint: &str,
    record: &Map<String, Value>,
) -> Result<ImageRecord, GlanceError> {
    let s = |k: &str| record.get(k).and_then(Value::as_str);
    let unacceptable = |reason: String| GlanceError::Unacceptable {
        image_id: id.to_owned(),
        reason,
    };
    if s("status") != Some("active") {
        return Err(unacceptable(
            "The image is required to be in an active state.".into(),
        ));
    }
    let disk_format = s("disk_format").unwrap_or_default();
    if !DISK_FORMATS.contains(&disk_format) {
        return Err(unacceptable(format!(
            "disk format {disk_format:?} is not one the agent writes ({})",
            DISK_FORMATS.join(", ")
        )));
    }
    let algo = s("os_hash_algo");
    let value = s("os_hash_value");
    let checksum = s("checksum");
    if checksum.is_none() && (algo.is_none() || value.is_none()) {
        return Err(unacceptable(
            "the image has no checksum or hash to verify it with".into(),
        ));
    }
    let properties: Map<String, Value> = record
        .iter()
        .filter(|(k, _)| !BASE_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut ii = Map::new();
    ii.insert("image_checksum".into(), json!(checksum));
    ii.insert("image_os_hash_algo".into(), json!(algo));
    ii.insert("image_os_hash_value".into(), json!(value));
    ii.insert("image_disk_format".into(), json!(disk_format));
    ii.insert(
        "image_container_format".into(),
        record
            .get("container_format")
            .cloned()
            .unwrap_or(Value::Null),
    );
    ii.insert(
        "image_tags".into(),
        record.get("tags").cloned().unwrap_or_else(|| json!([])),
    );
    ii.insert("image_properties".into(), Value::Object(properties));
    ii.insert(
        "image_size".into(),
        record.get("size").cloned().unwrap_or(Value::Null),
    );
    Ok(ImageRecord {
        id: id.to_owned(),
        file_url: format!("{endpoint}/v2/images/{id}/file"),
        instance_info: ii,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6d4eb791-7c1a-4b55-9e4e-1a2b3c4d5e6f";

    #[test]
    fn references() {
        assert_eq!(image_id(ID), Some(ID));
        assert_eq!(image_id(&format!("glance://{ID}")), Some(ID));
        assert_eq!(image_id(&format!("glance://region/{ID}")), Some(ID));
        assert_eq!(image_id("http://x/img.raw"), None);
        assert_eq!(image_id("glance://not-a-uuid"), None);
    }

    fn record(status: &str, fmt: &str) -> Map<String, Value> {
        serde_json::from_value(json!({
            "id": ID, "status": status, "disk_format": fmt, "container_format": "bare",
            "checksum": "0123456789abcdef0123456789abcdef", "os_hash_algo": "sha512",
            "os_hash_value": "ab", "size": 10, "tags": ["t"], "hw_firmware_type": "uefi"
        }))
        .unwrap_or_default()
    }

    #[test]
    fn records() {
        let r = record_for_deploy(ID, "http://g:9292", &record("active", "qcow2"));
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.file_url, format!("http://g:9292/v2/images/{ID}/file"));
        assert_eq!(r.instance_info["image_os_hash_algo"], "sha512");
        assert_eq!(
            r.instance_info["image_properties"],
            json!({"hw_firmware_type": "uefi"})
        );
        let e = record_for_deploy(ID, "", &record("queued", "raw")).err();
        assert!(e.is_some_and(|e| e.to_string().contains("active state")));
        let e = record_for_deploy(ID, "", &record("active", "vmdk")).err();
        assert!(e.is_some_and(|e| {
            e.to_string()
                .starts_with(&format!("Image {ID} is unacceptable"))
        }));
    }
}

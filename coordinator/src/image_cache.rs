//! The image cache: a source image (`instance_info.image_source`, http(s))
//! is downloaded once, verified against `image_checksum` (md5, sha256 or
//! sha512 by length) or `image_os_hash_algo`/`image_os_hash_value`, and
//! served to any number of agents at `/images/<key>` with Range support.
//! `<key>` is the SHA-256 of the source URL and the expected digest, so a
//! changed checksum never reuses a stale file. Concurrent deploys of one
//! image wait for a single download.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use md5::Digest as _;
use serde_json::Value;

use crate::model::Node;

/// Cache errors.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The node's instance_info does not say what to verify against.
    #[error("{0}")]
    Invalid(String),
    /// The download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// Source.
        url: String,
        /// Why.
        message: String,
    },
    /// The digest does not match.
    #[error("checksum mismatch for {url}: expected {algo} {expected}, got {actual}")]
    Checksum {
        /// Source.
        url: String,
        /// Algorithm.
        algo: String,
        /// Expected digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// Local I/O.
    #[error("image cache I/O on {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

enum Hasher {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algo: &str) -> Option<Self> {
        match algo {
            "md5" => Some(Self::Md5(md5::Md5::new())),
            "sha256" => Some(Self::Sha256(sha2::Sha256::new())),
            "sha512" => Some(Self::Sha512(sha2::Sha512::new())),
            _ => None,
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Self::Md5(h) => h.update(b),
            Self::Sha256(h) => h.update(b),
            Self::Sha512(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        match self {
            Self::Md5(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// What to download and how to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// http(s) URL.
    pub url: String,
    /// `md5`, `sha256` or `sha512`.
    pub algo: String,
    /// Lower-case hex digest.
    pub digest: String,
    /// Headers of the download (Glance's `X-Auth-Token`); not in the key.
    pub headers: Vec<(String, String)>,
    /// The size the source declared (Glance's `size`): a longer download is
    /// refused, a shorter one fails its digest.
    pub max_bytes: Option<u64>,
}

impl Source {
    /// From a node's instance_info.
    pub fn of(node: &Node) -> Result<Self, CacheError> {
        let ii = &node.instance_info;
        let s = |k: &str| ii.get(k).and_then(Value::as_str).map(str::to_owned);
        let url = s("image_url")
            .or_else(|| s("image_source"))
            .ok_or_else(|| CacheError::Invalid("instance_info.image_source is missing".into()))?;
        let (algo, digest) = match (
            s("image_os_hash_algo"),
            s("image_os_hash_value"),
            s("image_checksum"),
        ) {
            (Some(a), Some(v), _) => (a.to_ascii_lowercase(), v.to_ascii_lowercase()),
            (_, _, Some(c)) => {
                let algo = match c.len() {
                    32 => "md5",
                    64 => "sha256",
                    128 => "sha512",
                    _ => {
                        return Err(CacheError::Invalid(format!(
                            "image_checksum must be an md5, sha256 or sha512 hex digest to cache the image, got {c:?}"
                        )));
                    }
                };
                (algo.to_owned(), c.to_ascii_lowercase())
            }
            _ => {
                return Err(CacheError::Invalid(
                    "no image checksum to verify the cached image".into(),
                ));
            }
        };
        if Hasher::new(&algo).is_none() {
            return Err(CacheError::Invalid(format!(
                "unsupported hash algorithm {algo}"
            )));
        }
        let max_bytes = ii.get("image_size").and_then(Value::as_u64);
        Ok(Self {
            url,
            algo,
            digest,
            headers: Vec::new(),
            max_bytes,
        })
    }

    /// The cache key.
    pub fn key(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.url.as_bytes());
        h.update(b"\n");
        h.update(self.digest.as_bytes());
        hex::encode(h.finalize())
    }
}

/// The cache.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
    http: reqwest::Client,
    inflight: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// True if `key` looks like a cache key (so it is safe as a file name).
pub fn valid_key(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ImageCache {
    /// A cache in `dir` (created if missing).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            http: reqwest::Client::new(),
            inflight: Arc::default(),
        }
    }

    /// The file of a key.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Makes sure the image is cached and verified; returns its key.
    pub async fn ensure(&self, src: &Source) -> Result<String, CacheError> {
        let key = src.key();
        let lock = {
            let mut m = match self.inflight.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            m.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let path = self.path(&key);
        if path.exists() {
            crate::metrics::image_cache(true);
            return Ok(key);
        }
        crate::metrics::image_cache(false);
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let part = self.dir.join(format!("{key}.part"));
        let dl = |message: String| CacheError::Download {
            url: src.url.clone(),
            message,
        };
        let mut req = self.http.get(&src.url);
        for (k, v) in &src.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send().await.map_err(|e| dl(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(dl(format!("HTTP {}", resp.status())));
        }
        let mut hasher = Hasher::new(&src.algo).ok_or_else(|| {
            CacheError::Invalid(format!("unsupported hash algorithm {}", src.algo))
        })?;
        let mut file = std::fs::File::create(&part).map_err(io_err(&part))?;
        let mut bytes = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| dl(e.to_string()))? {
            bytes = bytes.saturating_add(chunk.len() as u64);
            if src.max_bytes.is_some_and(|max| bytes > max) {
                drop(file);
                let _ = std::fs::remove_file(&part);
                return Err(dl(format!(
                    "more than the {} bytes the source declared",
                    src.max_bytes.unwrap_or_default()
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io_err(&part))?;
        }
        file.sync_all().map_err(io_err(&part))?;
        drop(file);
        let actual = hasher.hex();
        if actual != src.digest {
            let _ = std::fs::remove_file(&part);
            return Err(CacheError::Checksum {
                url: src.url.clone(),
                algo: src.algo.clone(),
                expected: src.digest.clone(),
                actual,
            });
        }
        std::fs::rename(&part, &path).map_err(io_err(&path))?;
        crate::metrics::image_downloaded(bytes);
        tracing::info!(url = %src.url, key = %key, bytes, "image cached");
        Ok(key)
    }
}

//! Where image bytes come from: a local file or an HTTP(S) URL.
//!
//! A [`Source`] is read sequentially by the pipeline's fetch stage, and every
//! byte it yields is hashed. Formats that need random access to metadata
//! (qcow2) use a separate [`RangeRead`] handle; the bytes read through it are
//! checked against the sequential stream when it passes them.

mod file;
mod http;

use std::io;
use std::time::Duration;

pub use file::FileSource;
pub use http::HttpSource;

/// Why reading the source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A local file could not be opened or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The URL was not usable.
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with a status that retrying will not fix.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The download failed and could not be resumed within the retry budget.
    #[error("{url}: download failed at byte {offset} after {attempts} attempts: {reason}")]
    GaveUp {
        /// The URL.
        url: String,
        /// Bytes received so far.
        offset: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// Resuming needs Range support, which the server does not offer, or the
    /// image changed on the server between requests.
    #[error("{url}: cannot resume at byte {offset}: {reason}")]
    CannotResume {
        /// The URL.
        url: String,
        /// Where the download stopped.
        offset: u64,
        /// Why resuming is impossible.
        reason: String,
    },
    /// A resumed download found a different version of the image: its ETag
    /// or Last-Modified changed since the first response. The bytes already
    /// received belong to the old version, so the write fails.
    #[error(
        "{url}: the image changed on the server during the download ({change}) after {offset} bytes; start the write again"
    )]
    Changed {
        /// The URL.
        url: String,
        /// Where the download stopped.
        offset: u64,
        /// The validator and its two values: `ETag "a" -> "b"`.
        change: String,
    },
    /// Fewer bytes arrived than the server announced.
    #[error("{url}: truncated: the server announced {expected} bytes but the image ends at {got}")]
    Truncated {
        /// The URL.
        url: String,
        /// Announced length.
        expected: u64,
        /// Bytes actually available.
        got: u64,
    },
    /// The server answered a `Range` request with the whole object (200):
    /// it does not serve ranges. qcow2 then takes its spooled path.
    #[error("{url}: the server ignores Range requests")]
    RangeUnsupported {
        /// The URL.
        url: String,
    },
    /// A random-access read (for qcow2 metadata) failed.
    #[error("reading {len} bytes at offset {offset} of {what}: {reason}")]
    Range {
        /// The source.
        what: String,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Why.
        reason: String,
    },
}

/// Retry and timeout policy for network sources.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Consecutive failed attempts (without any progress) before giving up.
    pub max_attempts: u32,
    /// First backoff; doubled after each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Upper bound on one backoff.
    pub max_backoff: Duration,
    /// A read that yields nothing for this long counts as a stalled connection.
    pub read_timeout: Duration,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// TLS options for HTTPS sources.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra PEM CA certificates to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any certificate (for labs only).
    pub insecure: bool,
}

/// A sequential byte source.
pub trait Source: Send {
    /// Reads up to `buf.len()` bytes; `Ok(0)` only at the true end of the image.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError>;
    /// Total length, when known before the end (file size, Content-Length).
    fn len_hint(&self) -> Option<u64>;
    /// How many times the transfer was resumed after a failure.
    fn resumes(&self) -> u32;
    /// A handle for random-access reads of the same object.
    fn range_reader(&self) -> Result<Box<dyn RangeRead>, SourceError>;
}

/// Random-access reads of the same object a [`Source`] streams.
pub trait RangeRead: Send {
    /// Reads exactly `len` bytes at `offset`.
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError>;

    /// Reads exactly `buf.len()` bytes at `offset` into `buf`. The default
    /// goes through [`RangeRead::read_range`]; a file reads in place.
    fn read_range_into(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let data = self.read_range(offset, buf.len() as u64)?;
        if data.len() != buf.len() {
            return Err(SourceError::Range {
                what: "the image".into(),
                offset,
                len: buf.len() as u64,
                reason: format!("{} bytes came back", data.len()),
            });
        }
        buf.copy_from_slice(&data);
        Ok(())
    }
}

/// Options for opening a source.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Retries and timeouts for HTTP.
    pub retry: RetryPolicy,
    /// TLS settings for HTTPS.
    pub tls: TlsOptions,
}

/// Opens `location`: an `http://` or `https://` URL, a `file://` URL, or a path.
pub fn open(location: &str, opts: &SourceOptions) -> Result<Box<dyn Source>, SourceError> {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(Box::new(HttpSource::open(location, opts)?))
    } else if let Some(path) = local_path(location) {
        Ok(Box::new(FileSource::open(path)?))
    } else {
        Err(SourceError::BadUrl {
            url: location.to_string(),
            reason: "only http, https and file URLs are supported".into(),
        })
    }
}

/// The local path `location` names (a path, or a `file://` URL), as
/// [`open`] reads it; `None` for a URL of any other scheme.
pub fn local_path(location: &str) -> Option<&str> {
    if let Some(path) = location.strip_prefix("file://") {
        Some(path)
    } else if location.contains("://") {
        None
    } else {
        Some(location)
    }
}

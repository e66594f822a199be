//! HTTP(S) source with resume: a dropped or stalled connection is continued with
//! a `Range` request from the last byte received, guarded by `If-Range`, so the
//! download never restarts from zero and never splices two versions of an image.
//! A server that ignores `If-Range` is caught too: the resumed answer's ETag and
//! Last-Modified must be those of the first answer.

use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_RANGE, LAST_MODIFIED, RANGE,
};
use reqwest::{Client, Response, StatusCode};
use tokio::runtime::Runtime;

use super::{RangeRead, RetryPolicy, Source, SourceError, SourceOptions, TlsOptions};

/// An HTTP(S) image source. Blocking API over a private single-threaded runtime,
/// so the pipeline's fetch thread drives the connection itself.
#[derive(Debug)]
pub struct HttpSource {
    rt: Runtime,
    client: Client,
    opts: SourceOptions,
    url: String,
    resp: Option<Response>,
    pending: bytes_buf::Pending,
    offset: u64,
    total: Option<u64>,
    validators: Validators,
    resumes: u32,
}

/// What identifies the version of the image an answer carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Validators {
    fn of(h: &HeaderMap) -> Self {
        Self {
            etag: h.get(ETAG).cloned(),
            last_modified: h.get(LAST_MODIFIED).cloned(),
        }
    }

    /// The `If-Range` value: the strong ETag, else Last-Modified (a weak ETag
    /// cannot be used there).
    fn if_range(&self) -> Option<&HeaderValue> {
        self.etag
            .as_ref()
            .filter(|v| !v.as_bytes().starts_with(b"W/"))
            .or(self.last_modified.as_ref())
    }

    /// How `now` differs from these: `(validator, before, after)`. ETags are
    /// compared when both answers have one (weakly: `W/` aside), Last-Modified
    /// otherwise. A validator missing from either answer proves nothing.
    fn changed(&self, now: &Validators) -> Option<(&'static str, String, String)> {
        fn opaque(v: &HeaderValue) -> &[u8] {
            let b = v.as_bytes();
            b.strip_prefix(b"W/").unwrap_or(b)
        }
        fn show(v: &HeaderValue) -> String {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        }
        if let (Some(a), Some(b)) = (&self.etag, &now.etag) {
            return (opaque(a) != opaque(b)).then(|| ("ETag", show(a), show(b)));
        }
        if let (Some(a), Some(b)) = (&self.last_modified, &now.last_modified) {
            return (a != b).then(|| ("Last-Modified", show(a), show(b)));
        }
        None
    }
}

/// Leftover bytes of the last chunk the connection delivered.
mod bytes_buf {
    /// A chunk and how much of it was consumed.
    #[derive(Debug, Default)]
    pub struct Pending {
        pub data: bytes::Bytes,
        pub pos: usize,
    }
}

fn runtime(url: &str) -> Result<Runtime, SourceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SourceError::BadUrl {
            url: url.to_string(),
            reason: format!("cannot start the HTTP runtime: {e}"),
        })
}

fn client(url: &str, retry: &RetryPolicy, tls: &TlsOptions) -> Result<Client, SourceError> {
    let mut b = Client::builder()
        .connect_timeout(retry.connect_timeout)
        .tcp_nodelay(true)
        // Image servers must send the bytes as stored: a transparently
        // decompressed body would not match the checksum.
        .no_gzip()
        .user_agent(concat!("ingot/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &tls.ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| SourceError::BadUrl {
                url: url.to_string(),
                reason: format!("bad CA bundle: {e}"),
            })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if tls.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| SourceError::BadUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

fn header_u64(h: &HeaderMap, name: reqwest::header::HeaderName) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Parses `Content-Range: bytes START-END/TOTAL` into (start, total).
fn content_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The outcome of one failed attempt: retry it, or stop.
enum Failure {
    Retry(String),
    Fatal(SourceError),
}

impl HttpSource {
    /// Opens `url` and sends the first request.
    pub fn open(url: &str, opts: &SourceOptions) -> Result<Self, SourceError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| SourceError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if parsed.host_str().is_none() {
            return Err(SourceError::BadUrl {
                url: url.to_string(),
                reason: "no host".into(),
            });
        }
        let rt = runtime(url)?;
        let client = client(url, &opts.retry, &opts.tls)?;
        let mut me = Self {
            rt,
            client,
            opts: opts.clone(),
            url: url.to_string(),
            resp: None,
            pending: Default::default(),
            offset: 0,
            total: None,
            validators: Validators::default(),
            resumes: 0,
        };
        // Connect now so that a 404 or a refused connection fails before the
        // target is touched, and so that the length is known for the size check.
        me.connect_with_retries()?;
        Ok(me)
    }

    fn connect_with_retries(&mut self) -> Result<(), SourceError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.connect() {
                Ok(resp) => {
                    self.resp = Some(resp);
                    return Ok(());
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(reason)) => self.backoff(attempt, reason)?,
            }
        }
    }

    fn backoff(&self, attempt: u32, reason: String) -> Result<(), SourceError> {
        let r = &self.opts.retry;
        if attempt >= r.max_attempts {
            return Err(SourceError::GaveUp {
                url: self.url.clone(),
                offset: self.offset,
                attempts: attempt,
                reason,
            });
        }
        let delay = r
            .initial_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(r.max_backoff);
        tracing::warn!(url = %self.url, offset = self.offset, attempt, ?delay, %reason, "download interrupted; resuming");
        std::thread::sleep(delay);
        Ok(())
    }

    /// Sends one GET from `self.offset` and checks the answer.
    fn connect(&mut self) -> Result<Response, Failure> {
        let mut req = self.client.get(&self.url);
        if self.offset > 0 {
            req = req.header(RANGE, format!("bytes={}-", self.offset));
            if let Some(v) = self.validators.if_range() {
                req = req.header(IF_RANGE, v.clone());
            }
        }
        let timeout = self.opts.retry.connect_timeout + self.opts.retry.read_timeout;
        let resp = match self
            .rt
            .block_on(async { tokio::time::timeout(timeout, req.send()).await })
        {
            Err(_) => return Err(Failure::Retry("no response (timed out)".into())),
            Ok(Err(e)) => return Err(Failure::Retry(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let h = resp.headers();
        if self.offset == 0 {
            if status != StatusCode::OK {
                return Err(self.status_failure(status));
            }
            self.total = header_u64(h, CONTENT_LENGTH);
            self.validators = Validators::of(h);
            return Ok(resp);
        }
        // Whatever the status, an answer about another version of the image
        // ends the download: the bytes received so far are the old version's.
        if let Some(change) = self.validators.changed(&Validators::of(h)) {
            return Err(Failure::Fatal(self.changed(change)));
        }
        match status {
            StatusCode::PARTIAL_CONTENT => match content_range(h) {
                Some((start, total)) if start == self.offset => {
                    if let (Some(t), Some(known)) = (total, self.total) {
                        if t != known {
                            return Err(Failure::Fatal(self.cannot_resume(
                                "the image changed size on the server".into(),
                            )));
                        }
                    }
                    self.resumes += 1;
                    Ok(resp)
                }
                other => Err(Failure::Fatal(self.cannot_resume(format!(
                    "the server answered with the wrong range ({other:?})"
                )))),
            },
            StatusCode::OK => Err(Failure::Fatal(self.cannot_resume(
                if self.validators.if_range().is_some() {
                    "the server sent the whole image again: it ignores Range, or the image changed"
                } else {
                    "the server ignores Range requests"
                }
                .into(),
            ))),
            StatusCode::RANGE_NOT_SATISFIABLE => Err(Failure::Fatal(SourceError::Truncated {
                url: self.url.clone(),
                expected: self.total.unwrap_or(self.offset),
                got: self.offset,
            })),
            other => Err(self.status_failure(other)),
        }
    }

    fn status_failure(&self, status: StatusCode) -> Failure {
        let err = SourceError::Status {
            url: self.url.clone(),
            status: status.as_u16(),
        };
        // Server-side and throttling errors may pass; client errors will not.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Failure::Retry(err.to_string())
        } else {
            Failure::Fatal(err)
        }
    }

    fn changed(&self, (validator, before, after): (&'static str, String, String)) -> SourceError {
        tracing::error!(
            url = %self.url,
            offset = self.offset,
            validator,
            %before,
            %after,
            "the image changed on the server during the download"
        );
        SourceError::Changed {
            url: self.url.clone(),
            offset: self.offset,
            change: format!("{validator} {before} -> {after}"),
        }
    }

    fn cannot_resume(&self, reason: String) -> SourceError {
        SourceError::CannotResume {
            url: self.url.clone(),
            offset: self.offset,
            reason,
        }
    }

    /// Gets the next chunk from the open connection: `Ok(None)` at its end.
    fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, String> {
        let Some(resp) = self.resp.as_mut() else {
            return Err("not connected".into());
        };
        let read_timeout = self.opts.retry.read_timeout;
        match self
            .rt
            .block_on(async { tokio::time::timeout(read_timeout, resp.chunk()).await })
        {
            Err(_) => Err(format!("stalled: no data for {read_timeout:?}")),
            Ok(Err(e)) => Err(error_chain(&e)),
            Ok(Ok(Some(b))) => Ok(Some(b)),
            Ok(Ok(None)) => Ok(None),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Source for HttpSource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        let mut attempt = 0;
        loop {
            let p = &mut self.pending;
            if p.pos < p.data.len() {
                let n = buf.len().min(p.data.len() - p.pos);
                buf[..n].copy_from_slice(&p.data[p.pos..p.pos + n]);
                p.pos += n;
                self.offset += n as u64;
                return Ok(n);
            }
            let failure = match self.next_chunk() {
                Ok(Some(data)) => {
                    self.pending = bytes_buf::Pending { data, pos: 0 };
                    continue;
                }
                Ok(None) => match self.total {
                    Some(t) if self.offset < t => {
                        format!("connection closed at byte {} of {t}", self.offset)
                    }
                    _ => return Ok(0),
                },
                Err(reason) => reason,
            };
            // The connection failed: reconnect from where we are.
            self.resp = None;
            let mut reason = failure;
            loop {
                attempt += 1;
                self.backoff(attempt, reason)?;
                match self.connect() {
                    Ok(resp) => {
                        self.resp = Some(resp);
                        break;
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Retry(r)) => reason = r,
                }
            }
        }
    }

    fn len_hint(&self) -> Option<u64> {
        self.total
    }

    fn resumes(&self) -> u32 {
        self.resumes
    }

    fn range_reader(&self) -> Result<Box<dyn RangeRead>, SourceError> {
        Ok(Box::new(HttpRanges {
            rt: runtime(&self.url)?,
            client: client(&self.url, &self.opts.retry, &self.opts.tls)?,
            url: self.url.clone(),
            validators: self.validators.clone(),
            retry: self.opts.retry.clone(),
        }))
    }
}

/// Random-access reads over HTTP Range requests, with their own client so that
/// they never wait on the streaming connection.
struct HttpRanges {
    rt: Runtime,
    client: Client,
    url: String,
    validators: Validators,
    retry: RetryPolicy,
}

/// Why one range read failed.
enum RangeFailure {
    /// Worth another attempt.
    Retry(String),
    /// Final.
    Fatal(String),
    /// The server sent the whole object: it ignores Range.
    Unsupported,
}

impl HttpRanges {
    fn attempt(&self, offset: u64, len: u64) -> Result<Vec<u8>, RangeFailure> {
        let last = offset
            .checked_add(len)
            .and_then(|end| end.checked_sub(1))
            .ok_or_else(|| RangeFailure::Fatal("the range ends beyond 2^64 bytes".into()))?;
        let mut req = self
            .client
            .get(&self.url)
            .header(RANGE, format!("bytes={offset}-{last}"));
        if let Some(v) = self.validators.if_range() {
            req = req.header(IF_RANGE, v.clone());
        }
        let timeout = self.retry.connect_timeout + self.retry.read_timeout;
        let fut = async {
            let resp = req
                .send()
                .await
                .map_err(|e| RangeFailure::Retry(error_chain(&e)))?;
            let status = resp.status();
            if let Some((validator, before, after)) =
                self.validators.changed(&Validators::of(resp.headers()))
            {
                return Err(RangeFailure::Fatal(format!(
                    "the image changed on the server ({validator} {before} -> {after})"
                )));
            }
            if status == StatusCode::OK {
                // The same version (the validators matched, or there are
                // none): the server does not do ranges. The body is not read.
                return Err(RangeFailure::Unsupported);
            }
            if status != StatusCode::PARTIAL_CONTENT {
                let why = format!("HTTP {status}");
                return Err(if status.is_server_error() {
                    RangeFailure::Retry(why)
                } else {
                    RangeFailure::Fatal(why)
                });
            }
            if content_range(resp.headers()).map(|(s, _)| s) != Some(offset) {
                return Err(RangeFailure::Fatal(
                    "wrong Content-Range in the answer".into(),
                ));
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| RangeFailure::Retry(error_chain(&e)))?;
            Ok(body.to_vec())
        };
        let body = match self
            .rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
        {
            Err(_) => return Err(RangeFailure::Retry("timed out".into())),
            Ok(r) => r?,
        };
        if body.len() as u64 != len {
            return Err(RangeFailure::Fatal(format!("got {} bytes", body.len())));
        }
        Ok(body)
    }
}

impl RangeRead for HttpRanges {
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reason = match self.attempt(offset, len) {
                Ok(b) => return Ok(b),
                Err(RangeFailure::Unsupported) => {
                    tracing::info!(url = %self.url, offset, len, "the server answered a Range request with the whole image");
                    return Err(SourceError::RangeUnsupported {
                        url: self.url.clone(),
                    });
                }
                Err(RangeFailure::Fatal(reason)) => reason,
                Err(RangeFailure::Retry(reason)) if attempt >= self.retry.max_attempts => reason,
                Err(RangeFailure::Retry(_)) => {
                    std::thread::sleep(
                        self.retry
                            .initial_backoff
                            .saturating_mul(1 << (attempt - 1).min(16))
                            .min(self.retry.max_backoff),
                    );
                    continue;
                }
            };
            return Err(SourceError::Range {
                what: self.url.clone(),
                offset,
                len,
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(content_range(&h), Some((100, Some(1000))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("junk"));
        assert_eq!(content_range(&h), None);
    }

    fn validators(etag: Option<&'static str>, modified: Option<&'static str>) -> Validators {
        Validators {
            etag: etag.map(HeaderValue::from_static),
            last_modified: modified.map(HeaderValue::from_static),
        }
    }

    #[test]
    fn validators_decide_if_range_and_changes() {
        let date = "Tue, 01 Apr 2025 10:00:00 GMT";
        let later = "Tue, 01 Apr 2025 10:05:00 GMT";
        let first = validators(Some("\"v1\""), Some(date));
        assert_eq!(first.if_range().unwrap(), "\"v1\"");
        // A weak ETag cannot go in If-Range: Last-Modified does.
        assert_eq!(
            validators(Some("W/\"v1\""), Some(date)).if_range().unwrap(),
            date
        );
        assert_eq!(validators(Some("W/\"v1\""), None).if_range(), None);

        assert_eq!(first.changed(&first), None);
        assert_eq!(
            first.changed(&validators(Some("\"v2\""), Some(date))),
            Some(("ETag", "\"v1\"".into(), "\"v2\"".into()))
        );
        // Same ETag: the content is the same, whatever the date says.
        assert_eq!(
            first.changed(&validators(Some("\"v1\""), Some(later))),
            None
        );
        assert_eq!(first.changed(&validators(Some("W/\"v1\""), None)), None);
        // Without ETags, Last-Modified decides.
        assert_eq!(
            validators(None, Some(date)).changed(&validators(None, Some(later))),
            Some(("Last-Modified", date.into(), later.into()))
        );
        assert_eq!(
            validators(Some("\"v1\""), Some(date)).changed(&validators(None, Some(later))),
            Some(("Last-Modified", date.into(), later.into()))
        );
        // Nothing to compare proves nothing.
        assert_eq!(first.changed(&validators(None, None)), None);
    }
}

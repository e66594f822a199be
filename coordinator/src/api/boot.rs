//! Network boot of the agent ramdisk over HTTP (outside Ironic's API).
//!
//! - `GET /boot/boot.ipxe`: a script that chains to the per-MAC script, for
//!   DHCP/TFTP set-ups that hand every machine the same first script; it
//!   passes iPXE's `${buildarch}` along (`?arch=`).
//! - `GET /boot/ipxe/{mac}`: the node's script. A node that needs the agent
//!   (inspecting, cleaning, deploying and their wait states) gets the ramdisk
//!   with `ingot.api=` and `BOOTIF=`; a known node in any other state boots
//!   from its disk (`exit`); an unknown MAC gets a script that says so.
//!   Always 200 with `text/plain`, so iPXE runs the script and prints why.
//!   The kernel and ramdisk are those of the node's architecture
//!   ([`crate::netboot`]: `properties.cpu_arch`, else `?arch=`, else what
//!   its firmware reported in DHCP option 93).
//! - `GET|HEAD /boot/vmlinuz`, `/boot/initramfs.img`: the configured files,
//!   and `/boot/{arch}/vmlinuz`, `/boot/{arch}/initramfs.img` those of
//!   `[boot.by_arch.<arch>]`, with single-range `Range` requests (206, 416)
//!   as iPXE and curl send them. A node's `driver_info.deploy_kernel`/
//!   `deploy_ramdisk`, when http(s) URLs, replace them in its script.

use std::convert::Infallible;
use std::path::PathBuf;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Ctx};
use crate::model::Node;
use crate::model::port::normalize_mac;
use crate::netboot::{DeployFile, agent_cmdline, served_path, url_override};

fn script(body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET /boot/boot.ipxe`
pub async fn chain(ctx: Ctx) -> Response {
    script(format!(
        "#!ipxe\n# Ingot: ask the coordinator what this machine boots\nchain {}/boot/ipxe/${{net0/mac}}?arch=${{buildarch}}\n",
        ctx.base
    ))
}

/// Renders the per-node script. `base` is where this script was fetched
/// (the kernel and ramdisk come from there); `api` is what agents call.
/// `ca_b64` is the CA agents trust for the API (`ingot.ca_b64=`). `arch`
/// is the node's architecture ([`crate::netboot::node_arch`]).
pub fn node_script(
    node: Option<&Node>,
    mac: &str,
    arch: Option<&str>,
    base: &str,
    api: &str,
    ca_b64: Option<&str>,
    boot: &crate::config::BootConfig,
) -> String {
    let Some(node) = node else {
        return format!(
            "#!ipxe\necho Ingot: no node has a port with MAC {mac}. Enroll it (baremetal port create {mac} --node <node>) and boot again.\nsleep 10\nexit\n"
        );
    };
    let label = node.name.clone().unwrap_or_else(|| node.uuid.clone());
    if !node.provision_state.boots_ramdisk() {
        return format!(
            "#!ipxe\necho Ingot: node {label} is {}: booting from the local disk\nexit\n",
            node.provision_state
        );
    }
    let file = |f: DeployFile| {
        url_override(node, f)
            .unwrap_or_else(|| format!("{base}/boot/{}", served_path(boot, arch, f)))
    };
    let kernel = file(DeployFile::Kernel);
    let initrd = file(DeployFile::Initramfs);
    let args = agent_cmdline(node, mac, arch, api, ca_b64, boot).join(" ");
    format!(
        "#!ipxe\necho Ingot: node {label} is {}: booting the agent ramdisk\n\
         kernel {kernel} initrd=initramfs.img {args}\n\
         initrd --name initramfs.img {initrd}\nboot\n",
        node.provision_state
    )
}

/// `GET /boot/ipxe/{mac}`
pub async fn per_mac(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(mac): Path<String>,
) -> Result<Response, ApiError> {
    let Some(mac) = normalize_mac(&mac) else {
        // Never echo the request into a script iPXE runs: it could carry
        // newlines and iPXE commands.
        tracing::debug!(mac = %mac.escape_debug(), "iPXE script asked for an invalid MAC");
        return Ok(script(
            "#!ipxe\necho Ingot: the path does not name a MAC address\nsleep 10\nexit\n".to_owned(),
        ));
    };
    let node = match st.conductor.db().get_port_by_address(&mac).await? {
        Some(port) => st
            .conductor
            .db()
            .get_node(&port.node_uuid)
            .await?
            .map(|(n, _)| n),
        None => None,
    };
    if let Some(n) = &node {
        tracing::info!(node = %n.uuid, %mac, state = %n.provision_state, "iPXE script");
    } else {
        tracing::info!(%mac, "iPXE script for an unknown MAC");
    }
    let config = st.conductor.config();
    let reported = ctx
        .query
        .iter()
        .find(|(k, _)| k == "arch")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .or_else(|| st.conductor.arch_hints().get(&mac, crate::model::now_ms()));
    let arch = crate::netboot::node_arch(node.as_ref(), reported.as_deref());
    // With several coordinators, agents get every alive member of the
    // node's group (this one first) and move on when one stops answering.
    let api = match &node {
        Some(n) => st
            .conductor
            .cluster()
            .agent_urls(&n.conductor_group, &agent_api_url(config, &ctx.base))
            .join(","),
        None => agent_api_url(config, &ctx.base),
    };
    let ca = match &config.boot.agent_ca_file {
        Some(path) => Some(ca_b64(path).map_err(|e| {
            tracing::error!(error = %e, "boot.agent_ca_file");
            ApiError::internal(format!("boot.agent_ca_file: {e}"))
        })?),
        None => None,
    };
    Ok(script(node_script(
        node.as_ref(),
        &mac,
        arch.as_deref(),
        &ctx.base,
        &api,
        ca.as_deref(),
        &config.boot,
    )))
}

/// What agents call: `[boot] api_url`; else, with HTTPS or a boot
/// listener, the API's port on the host this script was fetched from (the
/// boot listener serves `/boot/*` only, in plain HTTP on a port of its own);
/// else the script's own base.
pub(crate) fn agent_api_url(config: &crate::config::Config, base: &str) -> String {
    if let Some(u) = &config.boot.api_url {
        return u.clone();
    }
    if !config.api.tls() && config.api.boot_listen.is_none() {
        return base.to_owned();
    }
    let scheme = if config.api.tls() { "https" } else { "http" };
    let hostport = base.split_once("://").map_or(base, |(_, h)| h);
    let host = match hostport.rfind(':') {
        Some(i) if !hostport.ends_with(']') => &hostport[..i],
        _ => hostport,
    };
    format!("{scheme}://{host}:{}", config.listen.port())
}

/// The first certificate of a PEM file, as base64 of its DER.
pub(crate) fn ca_b64(path: &std::path::Path) -> Result<String, String> {
    use base64::Engine;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let der =
        CertificateDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(der.as_ref()))
}

/// A single byte range (start, end inclusive), or `Err` if unsatisfiable.
type ByteRange = Result<(u64, u64), ()>;

/// Parses a single `Range` header; `None` means "serve the whole file".
fn parse_range(h: &str, len: u64) -> Option<ByteRange> {
    let spec = h.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 || len == 0 {
                Err(())
            } else {
                Ok((len.saturating_sub(n), len - 1))
            }
        }
        (start, "") => {
            let s: u64 = start.parse().ok()?;
            if s >= len { Err(()) } else { Ok((s, len - 1)) }
        }
        (start, end) => {
            let s: u64 = start.parse().ok()?;
            let e: u64 = end.parse().ok()?;
            if s > e || s >= len {
                Err(())
            } else {
                Ok((s, e.min(len - 1)))
            }
        }
    };
    Some(r)
}

/// Bytes of a file read ahead of the client: [`FileBody::CHUNK`] times
/// [`FileBody::CHUNKS_AHEAD`] per download, whatever the file's size.
struct FileBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
}

impl FileBody {
    const CHUNK: usize = 256 * 1024;
    const CHUNKS_AHEAD: usize = 4;

    /// Streams `len` bytes of `file` from its current position. A task
    /// reads ahead (through tokio's file I/O, so a slow client holds no
    /// thread); it stops when the client goes away.
    fn new(file: std::fs::File, len: u64) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(Self::CHUNKS_AHEAD);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut file = tokio::fs::File::from_std(file);
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left.min(Self::CHUNK as u64)).unwrap_or(Self::CHUNK);
                let mut buf = vec![0u8; want];
                let item = match file.read(&mut buf).await {
                    Ok(0) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while being served",
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        Ok(bytes::Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Self { rx }
    }
}

impl http_body::Body for FileBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}

/// What serving a file takes of a request: GET or HEAD, and the `Range`.
#[derive(Debug, Clone)]
pub struct FileGet {
    head: bool,
    range: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for FileGet {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self {
            head: parts.method == Method::HEAD,
            range: parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}

/// Serves a file with single-range support (206/416), GET or HEAD. The
/// body is streamed from the file with bounded read-ahead, never held whole.
pub(crate) async fn serve_file(
    path: Option<PathBuf>,
    what: &str,
    get: FileGet,
) -> Result<Response, ApiError> {
    let Some(path) = path else {
        return Err(ApiError::not_found(format!(
            "No {what} configured: set boot.{what} in the coordinator's configuration."
        )));
    };
    let range = get.range;
    let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        let r = range.as_deref().and_then(|h| parse_range(h, len));
        if let Some(Ok((start, _))) = r {
            f.seek(SeekFrom::Start(start))?;
        }
        Ok((f, len, r))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::not_found(format!("The {what} cannot be read: {e}")))?;
    let (file, len, r) = opened;
    let (status, start, end) = match r {
        Some(Err(())) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = if get.head || count == 0 {
        axum::body::Body::empty()
    } else {
        axum::body::Body::new(FileBody::new(file, count))
    };
    let mut resp = (status, body).into_response();
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
        resp.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// `GET|HEAD /boot/vmlinuz`
pub async fn kernel(State(st): State<AppState>, get: FileGet) -> Result<Response, ApiError> {
    serve_file(st.conductor.config().boot.kernel.clone(), "kernel", get).await
}

/// `GET|HEAD /boot/initramfs.img`
pub async fn initramfs(State(st): State<AppState>, get: FileGet) -> Result<Response, ApiError> {
    serve_file(
        st.conductor.config().boot.initramfs.clone(),
        "initramfs",
        get,
    )
    .await
}

/// `GET|HEAD /boot/{arch}/vmlinuz`
pub async fn arch_kernel(
    State(st): State<AppState>,
    Path(arch): Path<String>,
    get: FileGet,
) -> Result<Response, ApiError> {
    arch_file(&st, &arch, DeployFile::Kernel, get).await
}

/// `GET|HEAD /boot/{arch}/initramfs.img`
pub async fn arch_initramfs(
    State(st): State<AppState>,
    Path(arch): Path<String>,
    get: FileGet,
) -> Result<Response, ApiError> {
    arch_file(&st, &arch, DeployFile::Initramfs, get).await
}

async fn arch_file(
    st: &AppState,
    arch: &str,
    file: DeployFile,
    get: FileGet,
) -> Result<Response, ApiError> {
    let Some(path) = crate::netboot::by_arch(&st.conductor.config().boot, arch, file) else {
        return Err(ApiError::not_found(format!(
            "No {} configured for this architecture: set boot.by_arch.<arch>.{} in the coordinator's configuration.",
            file.name(),
            match file {
                DeployFile::Kernel => "kernel",
                DeployFile::Initramfs => "initramfs",
            }
        )));
    };
    serve_file(Some(path.to_path_buf()), file.name(), get).await
}

/// `GET|HEAD /images/{key}?node=…&expires=…&sig=…`: a cached, verified
/// image, for the node its signed URL names (see [`crate::temp_url`]).
pub async fn image(
    State(st): State<AppState>,
    Path(key): Path<String>,
    ctx: Ctx,
    get: FileGet,
) -> Result<Response, ApiError> {
    let path = format!("/images/{key}");
    match st
        .conductor
        .url_key()
        .verify(&path, &ctx.query, crate::temp_url::now())
    {
        Ok(node) => tracing::info!(%node, %key, "signed image download"),
        Err(e) => {
            tracing::info!(%key, reason = %e, "image download refused");
            return Err(ApiError::new(StatusCode::FORBIDDEN, e.to_string()));
        }
    }
    let cache = st
        .conductor
        .image_cache()
        .ok_or_else(|| ApiError::not_found("No image cache is configured."))?;
    if !crate::image_cache::valid_key(&key) || !cache.path(&key).exists() {
        return Err(ApiError::not_found(format!(
            "Image {key} could not be found."
        )));
    }
    let head = get.head;
    let resp = serve_file(Some(cache.path(&key)), "image", get).await?;
    if !head
        && resp.status().is_success()
        && let Some(len) = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        crate::metrics::image_served(len);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::{agent_api_url, parse_range};

    #[test]
    fn agents_call_the_api_not_the_boot_listener() {
        let mut c = crate::config::Config {
            listen: "10.0.0.1:6385".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(
            agent_api_url(&c, "http://10.0.0.1:6385"),
            "http://10.0.0.1:6385"
        );
        // iPXE or GRUB fetched from a plain boot listener on port 80: the
        // agent gets the API's port on that host.
        c.api.boot_listen = Some("10.0.0.1:80".parse().unwrap());
        assert_eq!(
            agent_api_url(&c, "http://10.0.0.1:80"),
            "http://10.0.0.1:6385"
        );
        c.boot.api_url = Some("http://api.example:6385".into());
        assert_eq!(
            agent_api_url(&c, "http://10.0.0.1:80"),
            "http://api.example:6385"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}

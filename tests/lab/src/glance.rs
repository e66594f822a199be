//! `--glance`: a real OpenStack Glance beside the coordinator, as Nova's
//! deployments have it. `coordinator/tests/glance/glance-lab.sh` runs Glance
//! 33 from PyPI on loopback (SQLite, a file store, no Keystone; its venv is
//! made when missing); the lab uploads the test image to it as `raw` and
//! deploys the node with `instance_info.image_source` = the image's UUID
//! only, as Nova's Ironic driver does. The coordinator looks the image up,
//! downloads it once into its cache and serves it to the agent.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

/// `glance-lab.sh` in this repository (the lab runs from its checkout).
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../coordinator/tests/glance/glance-lab.sh")
}

/// Runs `glance-lab.sh <args>`, its stderr appended to `log`; returns its
/// stdout, trimmed (a PID, an image id, the venv's path).
fn run_script(log: &Path, args: &[&OsStr]) -> Result<String> {
    let script = script();
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(err)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        bail!(
            "glance-lab.sh {shown} failed ({}); the end of {}:\n{tail}",
            out.status,
            log.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running Glance, stopped (`glance-lab.sh stop`) when dropped: it runs in
/// a session of its own, so neither a Ctrl-C nor the lab's exit reaches it.
pub struct GlanceServer {
    state: PathBuf,
    log: PathBuf,
    port: u16,
    /// gunicorn's master.
    pub pid: u32,
    running: bool,
}

impl GlanceServer {
    /// Makes Glance's venv when it is missing (about 45 s cold, nothing
    /// when present); returns the seconds it took.
    pub fn venv(log: &Path) -> Result<f64> {
        let t = Instant::now();
        run_script(log, &[OsStr::new("venv")])?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// Starts Glance with its state in `state`, on 127.0.0.1:`port`.
    pub fn start(state: &Path, port: u16, log: &Path) -> Result<Self> {
        let port_s = port.to_string();
        let out = run_script(
            log,
            &[OsStr::new("start"), state.as_os_str(), OsStr::new(&port_s)],
        )?;
        let pid = out
            .parse()
            .with_context(|| format!("glance-lab.sh start printed {out:?}, not a PID"))?;
        Ok(Self {
            state: state.to_owned(),
            log: log.to_owned(),
            port,
            pid,
            running: true,
        })
    }

    /// Uploads `file` as a `raw` image named `name`; returns its id once active.
    pub fn upload(&self, file: &Path, name: &str) -> Result<String> {
        let port = self.port.to_string();
        let id = run_script(
            &self.log,
            &[
                OsStr::new("upload"),
                self.state.as_os_str(),
                OsStr::new(&port),
                file.as_os_str(),
                OsStr::new("raw"),
                OsStr::new(name),
            ],
        )?;
        if uuid::Uuid::parse_str(&id).is_err() {
            bail!("glance-lab.sh upload printed {id:?}, not an image id");
        }
        Ok(id)
    }

    /// Its URL, as the coordinator's `[glance] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log (gunicorn's access lines and Glance's own).
    pub fn glance_log(&self) -> PathBuf {
        self.state.join("glance.log")
    }

    /// Stops it (idempotent).
    pub fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            let _ = run_script(&self.log, &[OsStr::new("stop"), self.state.as_os_str()]);
        }
    }
}

impl Drop for GlanceServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a Glance that an earlier, killed run left in `state` (nothing when
/// there is none: `stop` trusts the PID file only if it names that
/// directory's gunicorn).
pub fn stop_left_over(state: &Path, log: &Path) {
    if state.join("glance.pid").exists() {
        let _ = run_script(log, &[OsStr::new("stop"), state.as_os_str()]);
    }
}

/// Glance's access-log lines for a download of image `id`'s data.
pub fn file_downloads(glance_log: &Path, id: &str) -> Vec<String> {
    let want = format!("\"GET /v2/images/{id}/file ");
    std::fs::read_to_string(glance_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&want))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// SHA-512 of a file, in hex (Glance's `os_hash_algo`).
pub fn sha512_file(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha512::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// What the Glance run proves (in `report.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GlanceEvidence {
    /// The coordinator's `[glance] endpoint`.
    pub endpoint: String,
    /// The test image's id in Glance.
    pub image_id: String,
    /// Seconds to make Glance's venv (about 45 s cold; nothing when present).
    pub venv_seconds: f64,
    /// Seconds `glance-lab.sh start` took (db_sync, server answering).
    pub start_seconds: f64,
    /// Seconds to upload the test image until it was `active`.
    pub upload_seconds: f64,
    /// Glance's record of the image (`GET /v2/images/<id>`): status,
    /// formats, size, checksum (md5), os_hash_algo, os_hash_value.
    pub record: Value,
    /// The SHA-512 of the test image, computed by the lab.
    pub sha512: String,
    /// The `instance_info` the lab gave, as Nova does: the UUID only.
    pub instance_info_given: Value,
    /// The node's `instance_info` image keys after the deploy (filled in by
    /// the coordinator from Glance's record).
    pub instance_info_after: Value,
    /// Glance's access-log lines for the image's file: one download.
    pub glance_file_downloads: Vec<String>,
    /// The coordinator's log lines caching it: one.
    pub coordinator_cached: Vec<String>,
    /// Downloads of the image by the agent from the coordinator (signed URL).
    pub agent_downloads: usize,
    /// Requests to the lab's own image store (none: the image came from Glance).
    pub image_store_requests: usize,
}

//! A real Glance 33 for the tests (`tests/glance/glance-lab.sh`), stopped
//! on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Glance of this test, stopped on drop.
pub struct Glance {
    dir: tempfile::TempDir,
    port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/glance/glance-lab.sh")
}

impl Glance {
    /// Starts Glance; `None` (skip) when it cannot run and skipping is allowed.
    pub fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        if !super::start_lab(&script(), dir.path(), port, "a real Glance") {
            return None;
        }
        Some(Self { dir, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates an image record with no data (status `queued`); returns its id.
    pub async fn queued(&self, name: &str) -> String {
        let body =
            serde_json::json!({"name": name, "disk_format": "raw", "container_format": "bare"});
        let resp = reqwest::Client::new()
            .post(format!("{}/v2/images", self.url()))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Uploads `file` as `format`; returns the image id.
    pub fn upload(&self, file: &Path, format: &str) -> String {
        let out = Command::new(script())
            .arg("upload")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .arg(file)
            .arg(format)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "upload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// How often the image's data was downloaded (Glance's access log).
    pub fn downloads(&self, id: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("glance.log")).unwrap_or_default();
        let needle = format!("GET /v2/images/{id}/file");
        log.lines().filter(|l| l.contains(&needle)).count()
    }

    /// The file store's copy of an image.
    pub fn stored(&self, id: &str) -> PathBuf {
        self.dir.path().join("images").join(id)
    }

    pub fn stop(&self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

impl Drop for Glance {
    fn drop(&mut self) {
        self.stop();
    }
}

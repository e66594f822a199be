//! Shared helpers for the agent's integration tests: loop devices and the
//! privilege policy.
//!
//! Tests that need root (loop devices) run for real under `cargo xtask test`
//! and in CI, which set `INGOT_REQUIRE_PRIVILEGED=1`: there, lacking root is a
//! failure. A developer running plain `cargo test` unprivileged sees them skip
//! with a message instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True if privileged tests can run; panics if they must but cannot.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let required = std::env::var_os("INGOT_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1");
    if !root && required {
        panic!("{test}: needs root (INGOT_REQUIRE_PRIVILEGED=1)");
    }
    if !root {
        eprintln!("SKIPPED {test}: needs root for loop devices");
    }
    root
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device over a backing file, detached on drop.
pub struct LoopDev {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// The backing file.
    pub backing: PathBuf,
}

impl LoopDev {
    /// Creates a `size`-byte backing file in `dir` and attaches it with direct
    /// I/O (`read_only` attaches it read-only).
    pub fn new(dir: &Path, name: &str, size: u64, read_only: bool) -> Self {
        let backing = dir.join(name);
        let f = std::fs::File::create(&backing).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let mut cmd = Command::new("losetup");
        cmd.args(["--find", "--show", "--direct-io=on"]);
        if read_only {
            cmd.arg("--read-only");
        }
        cmd.arg(&backing);
        let path = PathBuf::from(sh(&mut cmd).trim());
        Self { path, backing }
    }

    /// Reads the whole device back (through the backing file).
    pub fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.backing).unwrap()
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        Command::new("losetup")
            .arg("-d")
            .arg(&self.path)
            .status()
            .ok();
    }
}

pub mod http;

/// The image fixtures of `image-tools/tests/fixtures/gen.sh`, generated once
/// per test binary under the target dir.
pub fn fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-image-fixtures");
        if !dir.join(".complete").exists() {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../image-tools/tests/fixtures/gen.sh");
            sh(Command::new("bash").arg(script).arg(&dir));
        }
        dir
    })
}

/// Contents of a fixture.
pub fn fixture(name: &str) -> std::sync::Arc<Vec<u8>> {
    std::sync::Arc::new(std::fs::read(fixtures().join(name)).unwrap())
}

/// `sha256:<hex>` of some bytes, computed by coreutils' sha256sum.
pub fn sha256_arg(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

//! The Python venv with python-ironicclient (and with it openstacksdk).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The venv (created by `tests/ironicclient-venv.sh` if missing); `None`
/// (skip) when it cannot be made and skipping is allowed.
pub fn venv() -> Option<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = VENV.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var_os("INGOT_IRONICCLIENT_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("../target/venv-ironicclient"));
        if !dir.join("bin/baremetal").exists() {
            let out = Command::new(manifest.join("tests/ironicclient-venv.sh"))
                .arg(&dir)
                .output()
                .map_err(|e| format!("running ironicclient-venv.sh: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ironicclient-venv.sh failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(dir)
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(e) if super::must_not_skip() => panic!("the baremetal CLI is required: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no baremetal CLI: {e}");
            None
        }
    }
}

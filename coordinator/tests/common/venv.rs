//! Python venvs with real tools from PyPI, made by `tests/python-venv.sh`:
//! python-ironicclient (the `baremetal` CLI, and with it openstacksdk),
//! sushy-tools (the Redfish emulator), pycdlib with cloud-init's Python
//! dependencies (the config drive tests), and metalsmith.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// One venv: where it goes by default, the variable that overrides it, the
/// file that proves it is complete, and what to install.
pub struct VenvSpec {
    /// Directory name under `target/`.
    pub name: &'static str,
    /// Environment variable naming another directory.
    pub env_var: &'static str,
    /// Path inside the venv that exists once it is complete.
    pub marker: &'static str,
    /// PyPI packages.
    pub packages: &'static [&'static str],
    /// What the tests need, for messages.
    pub what: &'static str,
}

/// python-ironicclient, for the `baremetal` CLI and openstacksdk tests.
pub const IRONICCLIENT: VenvSpec = VenvSpec {
    name: "venv-ironicclient",
    env_var: "INGOT_IRONICCLIENT_VENV",
    marker: "bin/baremetal",
    packages: &["python-ironicclient"],
    what: "the baremetal CLI",
};

/// sushy-tools, for the Redfish tests.
pub const SUSHY: VenvSpec = VenvSpec {
    name: "venv-sushy",
    env_var: "INGOT_SUSHY_VENV",
    marker: "bin/sushy-emulator",
    packages: &["sushy-tools"],
    what: "sushy-tools",
};

/// pycdlib, an independent ISO 9660 reader, and the libraries cloud-init's
/// config drive code imports (PyYAML, requests, configobj, jsonpatch;
/// cloud-init itself comes from Debian's package, see `tests/cloud_init.rs`).
pub const CONFIGDRIVE: VenvSpec = VenvSpec {
    name: "venv-configdrive",
    env_var: "INGOT_CONFIGDRIVE_VENV",
    marker: "bin/pycdlib-extract-files",
    packages: &["pycdlib", "PyYAML", "requests", "configobj", "jsonpatch"],
    what: "pycdlib and cloud-init's Python dependencies",
};

/// metalsmith (its own venv: it brings its own openstacksdk), for the
/// metalsmith CLI test. Pinned: the test checks what this version sends.
pub const METALSMITH: VenvSpec = VenvSpec {
    name: "venv-metalsmith",
    env_var: "INGOT_METALSMITH_VENV",
    marker: "bin/metalsmith",
    packages: &["metalsmith==2.5.0"],
    what: "the metalsmith CLI",
};

/// Makes the venv of `spec` (once per test process) and returns its
/// directory; `None` (skip) when it cannot be made and skipping is allowed.
pub fn ensure(
    spec: &VenvSpec,
    cache: &'static OnceLock<Result<PathBuf, String>>,
) -> Option<PathBuf> {
    let r = cache.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var_os(spec.env_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("../target").join(spec.name));
        if !dir.join(spec.marker).exists() {
            let out = Command::new(manifest.join("tests/python-venv.sh"))
                .arg(&dir)
                .arg(spec.marker)
                .args(spec.packages)
                .output()
                .map_err(|e| format!("running python-venv.sh: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "python-venv.sh failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(dir)
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(e) if super::must_not_skip() => panic!("{} is required: {e}", spec.what),
        Err(e) => {
            eprintln!("SKIPPED: no {}: {e}", spec.what);
            None
        }
    }
}

/// The python-ironicclient venv.
pub fn venv() -> Option<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ensure(&IRONICCLIENT, &CACHE)
}

/// The pycdlib venv of the config drive tests.
pub fn configdrive_venv() -> Option<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ensure(&CONFIGDRIVE, &CACHE)
}

/// The metalsmith venv.
pub fn metalsmith_venv() -> Option<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ensure(&METALSMITH, &CACHE)
}

/// Runs `baremetal <args>` (with `-f json`) against `endpoint`; returns its
/// output parsed.
pub async fn baremetal_json(
    venv: &std::path::Path,
    endpoint: &str,
    args: &[&str],
) -> serde_json::Value {
    let out = baremetal(venv, endpoint, args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Runs `baremetal <args>` against `endpoint`; returns stdout.
pub async fn baremetal(venv: &std::path::Path, endpoint: &str, args: &[&str]) -> String {
    let bin = venv.join("bin/baremetal");
    let endpoint = endpoint.to_owned();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&bin)
            .args(&args)
            .env("OS_AUTH_TYPE", "none")
            .env("OS_ENDPOINT", &endpoint)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "baremetal {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// Runs `tests/<script>` with the venv's Python and `args`; panics unless it
/// exits 0 and prints `ok_line`. Returns its stdout and stderr.
pub async fn run_python(
    venv: &std::path::Path,
    script: &str,
    args: Vec<String>,
    ok_line: &str,
) -> String {
    let python = venv.join("bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(args)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{ok_line:?} not reached:\n{text}");
    assert!(text.contains(ok_line), "{text}");
    text
}

//! The `cargo deny` gate: the rules of `deny.toml` (no OpenSSL or aws-lc in
//! the tree, licences from the allowed list, crates.io only, duplicate
//! versions warned), checked by the maintained tool rather than by hand.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::util;

/// The cargo-deny release the gate installs (and `deny.toml`'s format is for).
const VERSION: &str = "0.20.2";

/// The installed cargo-deny's version, if there is one.
fn installed_version() -> Option<String> {
    let out = util::cargo()
        .args(["deny", "--version"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // "cargo-deny 0.20.2"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

/// Installs cargo-deny `VERSION` with `cargo install --locked` if it is
/// missing or another version. The release profile's fat LTO and single
/// codegen unit are turned off for the install: they double its build time
/// on two cores and buy nothing for a check that runs for seconds.
fn ensure() -> Result<String> {
    if installed_version().as_deref() == Some(VERSION) {
        return Ok(format!("cargo-deny {VERSION} present"));
    }
    let t = Instant::now();
    let mut install = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    install
        .args(["install", "cargo-deny", "--locked", "--version", VERSION])
        .arg("--target-dir")
        .arg(util::target_dir().join("tools"))
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    util::run(&mut install).context("could not install cargo-deny")?;
    Ok(format!(
        "cargo-deny {VERSION} installed in {:.0} s",
        t.elapsed().as_secs_f64()
    ))
}

/// Runs the gate: `cargo deny check bans licenses sources` on the workspace.
/// Advisories need the RustSec database from GitHub, which CI cannot reach.
pub fn check() -> Result<String> {
    let installed = ensure()?;
    util::run(util::cargo().args(["deny", "check", "bans", "licenses", "sources"]))
        .context("cargo deny found a violation of deny.toml (see above)")?;
    Ok(format!("bans, licenses, sources ok ({installed})"))
}

//! `cargo xtask e2e` and `cargo xtask demo`: the end-to-end lab.
//!
//! Builds the static agent and the test image's init (musl), the host
//! binaries (coordinator, `ingot-image`, `ingot-lab`), then runs `ingot-lab
//! demo`, which builds the agent ramdisk from the Debian kernel and the test
//! image with `ingot-image test-image`, and drives a QEMU server with an
//! ipmi_sim BMC through its lifecycle via the coordinator's Ironic API.
//! Evidence lands in `target/e2e/` (see docs/e2e.md).

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::util;

/// How the host binaries are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cargo test --workspace --no-run`: the exact build CI's test gate
    /// made, so nothing is compiled twice in CI.
    LikeTests,
    /// Only the three binaries: the shortest way on a fresh machine.
    Minimal,
}

/// The flags `demo` and `e2e` pass on to `ingot-lab`.
const LAB_FLAGS: &[&str] = &["--fast-track", "--tls"];

/// True if every flag is one the lab takes.
pub fn flags_ok(flags: &[String]) -> bool {
    flags.iter().all(|f| LAB_FLAGS.contains(&f.as_str()))
}

/// Runs the lab with `flags` (see [`LAB_FLAGS`]); `verbose` prints progress
/// for a person. Returns where the time went (the builds, then the lab with
/// its own preparation).
pub fn run(build: Build, verbose: bool, flags: &[String]) -> Result<String> {
    crate::deps::ensure()?;
    println!("\n==> building the static agent and the test image's init (musl)");
    let t = Instant::now();
    let agent = util::build_agent()?;
    let init = util::build_test_init()?;
    let musl_s = t.elapsed().as_secs_f64();
    println!("\n==> building the coordinator, ingot-image and ingot-lab");
    let t = Instant::now();
    match build {
        Build::LikeTests => util::run(util::cargo().args(["test", "--workspace", "--no-run"]))?,
        Build::Minimal => util::run(util::cargo().args([
            "build",
            "-p",
            "ingot-coordinator",
            "-p",
            "ingot-image-tools",
            "-p",
            "ingot-lab",
            "--bins",
        ]))?,
    }
    let host_s = t.elapsed().as_secs_f64();
    let target = util::target_dir();
    let bin = target.join("debug");
    let mut cmd = Command::new(bin.join("ingot-lab"));
    cmd.arg("demo")
        .arg("--workdir")
        .arg(target.join("e2e"))
        .arg("--coordinator")
        .arg(bin.join("ingot-coordinator"))
        .arg("--ingot-image")
        .arg(bin.join("ingot-image"))
        .arg("--agent")
        .arg(agent)
        .arg("--test-init")
        .arg(init)
        .arg("--kernel-cache")
        .arg(target.join("kernel"));
    if verbose {
        cmd.arg("--verbose");
    }
    cmd.args(flags);
    println!("\n==> the lab");
    util::announce(&cmd);
    let t = Instant::now();
    let st = cmd.status()?;
    let timings = format!(
        "musl builds {musl_s:.0} s, host build {host_s:.0} s, lab {:.0} s (with kernel, ramdisk and image)",
        t.elapsed().as_secs_f64()
    );
    println!("e2e: {timings}");
    if !st.success() {
        bail!(
            "the end-to-end lab failed ({st}) after {timings}; evidence in {}",
            target.join("e2e").display()
        );
    }
    Ok(timings)
}

/// The lab again with TLS on every hop (`ingot-lab run --tls`), reusing the
/// ramdisk and test image the last [`run`] built in `target/e2e/build`
/// (nothing is built again); evidence in `target/e2e-tls/`.
pub fn run_tls_again() -> Result<String> {
    let target = util::target_dir();
    let bin = target.join("debug");
    let built = target.join("e2e").join("build");
    let mut cmd = Command::new(bin.join("ingot-lab"));
    cmd.arg("run")
        .arg("--workdir")
        .arg(target.join("e2e-tls"))
        .arg("--coordinator")
        .arg(bin.join("ingot-coordinator"))
        .arg("--kernel")
        .arg(built.join("ramdisk/vmlinuz"))
        .arg("--initramfs")
        .arg(built.join("ramdisk/initramfs.img"))
        .arg("--image")
        .arg(built.join("test-image.raw"))
        .arg("--tls");
    println!("\n==> the lab with TLS on every hop");
    util::announce(&cmd);
    let t = Instant::now();
    let st = cmd.status()?;
    let timings = format!("lab {:.0} s", t.elapsed().as_secs_f64());
    if !st.success() {
        bail!(
            "the end-to-end lab with TLS failed ({st}) after {timings}; evidence in {}",
            target.join("e2e-tls").display()
        );
    }
    Ok(timings)
}

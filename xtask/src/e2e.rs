//! `cargo xtask e2e` and `cargo xtask demo`: the end-to-end lab.
//!
//! Builds the static agent and the test image's init (musl), the host
//! binaries (coordinator, `ingot-test-image`, `ingot-lab`), then runs
//! `ingot-lab demo`, which builds the agent ramdisk from the Debian kernel and
//! the test image with `ingot-test-image`, and drives a QEMU server with an
//! ipmi_sim BMC through its lifecycle via the coordinator's Ironic API.
//! Evidence lands in `target/e2e/` (see docs/e2e.md). [`run_tls_glance_again`]
//! runs the lab a second time with TLS on every hop and the image from a
//! real Glance, on the ramdisk and image the first run built, and
//! [`run_ha_again`] the HA lab (three coordinators on PostgreSQL, two of
//! them killed in the middle of the work) on the same files, and
//! [`run_isolation_again`] the isolation lab (two servers on Open vSwitch,
//! tenant VLANs, issue 19), and
//! [`run_multi_arch_again`] the lab under UEFI with two servers on one
//! coordinator, an x86_64 one under OVMF and an aarch64 one under AAVMF
//! (`cargo xtask e2e --arch aarch64`; issue 20).

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::util;

/// Where the lab's ramdisk and test image are built (`ingot-lab demo
/// --build-dir`), shared by every variant.
const BUILD_DIR: &str = "build";

/// How the host binaries are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cargo test --workspace --no-run`: the exact build CI's test gate
    /// made, so nothing is compiled twice in CI. It builds the three
    /// binaries: cargo builds a package's binaries for its integration tests
    /// (`ingot-test-image`'s test runs it).
    LikeTests,
    /// Only the three binaries: the shortest way on a fresh machine.
    Minimal,
}

/// The flags `demo` and `e2e` pass on to `ingot-lab`.
const LAB_FLAGS: &[&str] = &[
    "--fast-track",
    "--tls",
    "--glance",
    "--ha",
    "--isolation",
    "--network=l2",
    "--network=slirp",
    "--firmware=bios",
    "--firmware=uefi",
    "--arch=aarch64",
];

/// `--network X`, `--firmware X` and `--arch X` as one word each
/// (`--network=X`), as [`LAB_FLAGS`] lists them.
pub fn joined_flags(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--network" || a == "--firmware" || a == "--arch" {
            match it.next() {
                Some(v) => out.push(format!("{a}={v}")),
                None => out.push(a),
            }
        } else {
            out.push(a);
        }
    }
    out
}

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
    println!("\n==> building the coordinator, ingot-test-image and ingot-lab");
    let t = Instant::now();
    match build {
        Build::LikeTests => util::run(util::cargo().args(["test", "--workspace", "--no-run"]))?,
        Build::Minimal => util::run(util::cargo().args([
            "build",
            "-p",
            "ingot-coordinator",
            "-p",
            "ingot-test-image",
            "-p",
            "ingot-lab",
            "--bins",
        ]))?,
    }
    let host_s = t.elapsed().as_secs_f64();
    let target = util::target_dir();
    let multi_arch = flags.iter().any(|f| f == "--arch=aarch64");
    // The isolation and multi-architecture labs have work directories of
    // their own (the plain lab's evidence stays); every variant builds into
    // target/e2e/build.
    let work = target.join(if flags.iter().any(|f| f == "--isolation") {
        "e2e-isolation"
    } else if multi_arch {
        MULTI_ARCH_DIR
    } else {
        "e2e"
    });
    let mut cmd = demo_command(&work, &agent, &init);
    if verbose {
        cmd.arg("--verbose");
    }
    if multi_arch {
        cmd.args(multi_arch_args()?);
        cmd.args(flags.iter().filter(|f| {
            !matches!(
                f.as_str(),
                "--arch=aarch64" | "--firmware=uefi" | "--firmware=bios"
            )
        }));
    } else {
        cmd.args(flags);
    }
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
            work.display()
        );
    }
    Ok(timings)
}

/// `ingot-lab demo` in `work` with the host binaries of the last build, the
/// static `agent` and the test image's `init`: it builds the ramdisk and
/// test image into `target/e2e/build` (reused there when current) and runs
/// the lab.
fn demo_command(
    work: &std::path::Path,
    agent: &std::path::Path,
    init: &std::path::Path,
) -> Command {
    let target = util::target_dir();
    let bin = target.join("debug");
    let mut cmd = Command::new(bin.join("ingot-lab"));
    cmd.arg("demo")
        .arg("--workdir")
        .arg(work)
        .arg("--build-dir")
        .arg(target.join("e2e").join(BUILD_DIR))
        .arg("--coordinator")
        .arg(bin.join("ingot-coordinator"))
        .arg("--test-image-builder")
        .arg(bin.join("ingot-test-image"))
        .arg("--agent")
        .arg(agent)
        .arg("--test-init")
        .arg(init)
        .arg("--kernel-cache")
        .arg(target.join("kernel"));
    cmd
}

/// `ingot-lab run` in `work` with the coordinator of the last build and the
/// ramdisk and test image the last [`run`] built in `target/e2e/build`.
fn lab_again(work: &std::path::Path) -> Command {
    let target = util::target_dir();
    let bin = target.join("debug");
    let built = target.join("e2e").join(BUILD_DIR);
    let mut cmd = Command::new(bin.join("ingot-lab"));
    cmd.arg("run")
        .arg("--workdir")
        .arg(work)
        .arg("--coordinator")
        .arg(bin.join("ingot-coordinator"))
        .arg("--kernel")
        .arg(built.join("ramdisk/vmlinuz"))
        .arg("--initramfs")
        .arg(built.join("ramdisk/initramfs.img"))
        .arg("--image")
        .arg(built.join("test-image.raw"));
    cmd
}

/// The lab again with TLS on every hop and the image from a real Glance,
/// deployed by its UUID (`ingot-lab run --tls --glance`), reusing the
/// ramdisk and test image the last [`run`] built in `target/e2e/build`
/// (nothing is built again; Glance's venv is made when missing); evidence in
/// `target/e2e-tls/`. Returns the lab's time, with Glance's venv and start.
pub fn run_tls_glance_again() -> Result<String> {
    let work = util::target_dir().join("e2e-tls");
    let mut cmd = lab_again(&work);
    cmd.arg("--tls").arg("--glance");
    println!("\n==> the lab with TLS on every hop and the image from Glance");
    util::announce(&cmd);
    let t = Instant::now();
    let st = cmd.status()?;
    let report = std::fs::read_to_string(work.join("report.json")).unwrap_or_default();
    let timings = format!(
        "lab {:.0} s{}",
        t.elapsed().as_secs_f64(),
        glance_times(&report)
    );
    println!("e2e (TLS, Glance): {timings}");
    if !st.success() {
        bail!(
            "the end-to-end lab with TLS and Glance failed ({st}) after {timings}; evidence in {}",
            work.display()
        );
    }
    Ok(timings)
}

/// The HA lab (`ingot-lab run --ha`): three coordinators on a private
/// PostgreSQL cluster, the deploy's owner killed while the agent writes the
/// image and a second member during the cleaning after undeploy, the
/// node's journal checked for double ownership. Reuses the ramdisk and test
/// image the last [`run`] built; its deploy time is the baseline of the
/// deploy with a kill. Evidence in `target/e2e-ha/`. Returns the lab's time
/// and each kill's detection, takeover and added delay.
pub fn run_ha_again() -> Result<String> {
    let work = util::target_dir().join("e2e-ha");
    let mut cmd = lab_again(&work);
    cmd.arg("--ha")
        .arg("--baseline")
        .arg(util::target_dir().join("e2e").join("report.json"));
    println!("\n==> the HA lab: three coordinators on PostgreSQL, two killed");
    util::announce(&cmd);
    let t = Instant::now();
    let st = cmd.status()?;
    let summary = std::fs::read_to_string(work.join("ha-summary.txt")).unwrap_or_default();
    let timings = format!("lab {:.0} s; {}", t.elapsed().as_secs_f64(), summary.trim());
    println!("e2e (HA, PostgreSQL): {timings}");
    if !st.success() {
        bail!(
            "the HA lab failed ({st}) after {timings}; evidence in {}",
            work.display()
        );
    }
    Ok(timings)
}

/// The isolation lab (`ingot-lab run --isolation`, issue 19): two servers
/// on a private Open vSwitch the coordinator programs, tenant hosts in
/// network namespaces; reachability before and after, drift corrected, a
/// dead switch failing the deploy closed. Reuses the ramdisk and test image
/// the last [`run`] built. Evidence in `target/e2e-isolation/`
/// (`isolation.json`). Returns the lab's time and the checks' count.
pub fn run_isolation_again() -> Result<String> {
    let work = util::target_dir().join("e2e-isolation");
    let mut cmd = lab_again(&work);
    cmd.arg("--isolation");
    println!("\n==> the isolation lab: two servers on Open vSwitch, tenant VLANs");
    util::announce(&cmd);
    let t = Instant::now();
    let st = cmd.status()?;
    let summary = std::fs::read_to_string(work.join("isolation-summary.txt")).unwrap_or_default();
    let timings = format!("lab {:.0} s; {}", t.elapsed().as_secs_f64(), summary.trim());
    println!("e2e (isolation): {timings}");
    if !st.success() {
        bail!(
            "the isolation lab failed ({st}) after {timings}; evidence in {}",
            work.display()
        );
    }
    Ok(timings)
}

/// The multi-architecture lab's work directory under the target directory.
const MULTI_ARCH_DIR: &str = "e2e-aarch64";

/// `ingot-lab demo`'s arguments for the multi-architecture lab, after
/// building what the aarch64 server needs (the cross toolchain, QEMU's arm
/// emulator, AAVMF and Debian's signed network GRUB installed first when
/// missing): the static aarch64 agent (checked static) and test image init.
/// Two servers, one coordinator: an x86_64 one under OVMF, then an aarch64
/// one under AAVMF.
fn multi_arch_args() -> Result<Vec<std::ffi::OsString>> {
    crate::deps::ensure_arch(util::Arch::Aarch64)?;
    println!("\n==> building the static aarch64 agent and the test image's aarch64 init");
    let agent = util::build_agent_for(util::Arch::Aarch64)?;
    crate::test::check_static_agent(util::Arch::Aarch64)?;
    let init = util::build_test_init_for(util::Arch::Aarch64)?;
    Ok(vec![
        "--arch".into(),
        "x86_64,aarch64".into(),
        "--firmware".into(),
        "uefi".into(),
        "--agent-aarch64".into(),
        agent.into(),
        "--test-init-aarch64".into(),
        init.into(),
    ])
}

/// The multi-architecture lab under UEFI with fast track (`cargo xtask e2e
/// --arch aarch64 --fast-track`, issue 20): one coordinator provisions an
/// x86_64 server under OVMF, then an aarch64 server under AAVMF (network
/// boot through the coordinator's DHCP, TFTP and Debian's signed GRUB), each
/// through inspection, cleaning, deploy of its architecture's UEFI test
/// image, boot from disk and undeploy with a secure wipe. The x86_64
/// ramdisk is the one the last [`run`] built in `target/e2e/build` (it is
/// current); the aarch64 agent, ramdisk and test image are built here.
/// Evidence in `target/e2e-aarch64/` (`report.json`, `report-node2.json`).
/// Returns the lab's time with its builds.
pub fn run_multi_arch_again() -> Result<String> {
    let work = util::target_dir().join(MULTI_ARCH_DIR);
    let t = Instant::now();
    let extra = multi_arch_args()?;
    let build_s = t.elapsed().as_secs_f64();
    // Both are built already: cargo only checks.
    let agent = util::build_agent()?;
    let init = util::build_test_init()?;
    let mut cmd = demo_command(&work, &agent, &init);
    cmd.args(extra).arg("--fast-track");
    println!("\n==> the lab under UEFI: an x86_64 server, then an aarch64 server, one coordinator");
    util::announce(&cmd);
    let t = Instant::now();
    let st = cmd.status()?;
    let timings = format!(
        "aarch64 builds {build_s:.0} s, lab {:.0} s (with the arm64 kernel, ramdisk and test image)",
        t.elapsed().as_secs_f64()
    );
    println!("e2e (UEFI, x86_64 + aarch64): {timings}");
    if !st.success() {
        bail!(
            "the multi-architecture lab failed ({st}) after {timings}; evidence in {}",
            work.display()
        );
    }
    Ok(timings)
}

/// Glance's share of a run, from its `report.json`: " (Glance venv V s,
/// start S s)", or nothing when the report has no Glance times.
fn glance_times(report: &str) -> String {
    match (
        util::json_number(report, "venv_seconds"),
        util::json_number(report, "start_seconds"),
    ) {
        (Some(v), Some(s)) => format!(" (Glance venv {v:.0} s, start {s:.0} s)"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_glance_times() {
        let r = "{\n  \"glance\": {\n    \"venv_seconds\": 31.23846493,\n    \"start_seconds\": 3.1144166110000002,\n    \"upload_seconds\": 0.77\n  }\n}";
        assert_eq!(glance_times(r), " (Glance venv 31 s, start 3 s)");
        assert_eq!(glance_times("{\"glance\": null}"), "");
        assert_eq!(glance_times(""), "");
    }

    #[test]
    fn takes_the_lab_flags() {
        let f = |v: &[&str]| flags_ok(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert!(f(&["--tls", "--glance"]));
        assert!(f(&["--glance", "--fast-track"]));
        assert!(f(&["--ha"]));
        assert!(f(&["--isolation"]));
        assert!(f(&["--network=slirp", "--tls"]));
        assert!(!f(&["--network", "slirp"]));
        assert!(f(&[]));
        assert!(f(&["--arch=aarch64", "--fast-track"]));
        assert!(!f(&["--arch=riscv64"]));
        assert!(!f(&["--glances"]));
        let j = joined_flags(
            ["--firmware", "uefi", "--tls", "--network", "slirp"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        );
        assert_eq!(j, ["--firmware=uefi", "--tls", "--network=slirp"]);
        assert!(flags_ok(&j));
    }
}

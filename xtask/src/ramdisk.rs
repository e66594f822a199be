//! `cargo xtask agent [--arch A]` and `cargo xtask ramdisk [--arch A]`: the
//! static agent, and the ramdisk around it, for one architecture (x86_64 or
//! aarch64), with what they need installed first.
//!
//! `agent` builds `ingot-agent` with the `agent` profile for the
//! architecture's musl target and checks that it is a static ELF for that
//! machine. `ramdisk` also fetches Debian's kernel for the architecture
//! (`ingot-ramdisk fetch-kernel --debian --arch <debian arch>`) and builds the
//! ramdisk with `ingot-ramdisk build --arch <arch>` into
//! `<target>/ramdisk-<arch>/`. `test-init` builds the test image's init
//! (`ingot-testimage-init`) for the architecture the same way.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{self, Arch};

/// Parses `[--arch A]` (default x86_64).
fn parse_arch(args: &[String]) -> Result<Arch> {
    let mut arch = Arch::X86_64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.strip_prefix("--arch=") {
            Some(v) => v,
            None if a == "--arch" => it.next().context("--arch needs a value")?,
            None => bail!("unknown argument {a:?} (expected --arch x86_64|aarch64)"),
        };
        arch = Arch::parse(value)
            .with_context(|| format!("unknown architecture {value:?} (x86_64, aarch64)"))?;
    }
    Ok(arch)
}

/// Builds and checks the static agent for `arch`; returns its path.
fn agent(arch: Arch) -> Result<PathBuf> {
    crate::deps::ensure_arch(arch)?;
    println!("\n==> building the static agent for {}", arch.name());
    let t = Instant::now();
    let path = util::build_agent_for(arch)?;
    let seconds = t.elapsed().as_secs_f64();
    let checked = crate::test::check_static_agent(arch)?;
    println!("{}: {checked}; built in {seconds:.0} s", path.display());
    Ok(path)
}

/// `cargo xtask test-init [--arch A]`: the test image's static init for
/// `arch` (`target/<arch>-unknown-linux-musl/agent/ingot-testimage-init`),
/// checked like the agent; the aarch64 one is the `--init` of the arm64
/// UEFI test image (docs/test-image.md).
pub fn run_test_init(args: &[String]) -> Result<()> {
    let arch = parse_arch(args)?;
    crate::deps::ensure_arch(arch)?;
    println!("\n==> building the test image's init for {}", arch.name());
    let t = Instant::now();
    let path = util::build_test_init_for(arch)?;
    let seconds = t.elapsed().as_secs_f64();
    let checked = crate::test::check_static_binary("ingot-testimage-init", &path, arch)?;
    println!("{}: {checked}; built in {seconds:.0} s", path.display());
    Ok(())
}

/// `cargo xtask agent [--arch A]`.
pub fn run_agent(args: &[String]) -> Result<()> {
    agent(parse_arch(args)?).map(drop)
}

/// `cargo xtask ramdisk [--arch A]`.
pub fn run_ramdisk(args: &[String]) -> Result<()> {
    let arch = parse_arch(args)?;
    let agent = agent(arch)?;
    let target = util::target_dir();
    let ramdisk = |sub: &[&str]| {
        let mut c = util::cargo();
        c.args([
            "run",
            "--quiet",
            "-p",
            "ingot-initramfs",
            "--bin",
            "ingot-ramdisk",
            "--",
        ])
        .args(sub);
        c
    };

    println!("\n==> Debian's {} kernel", arch.debian());
    let kernel_dir = target.join("kernel");
    let mut fetch = ramdisk(&["fetch-kernel", "--debian", "--arch", arch.debian()]);
    fetch.arg("--out").arg(&kernel_dir);
    let printed = util::output(&mut fetch)?;
    let fetched: serde_json::Value = serde_json::from_str(printed.trim())
        .with_context(|| format!("fetch-kernel printed {printed:?}"))?;
    let field = |k: &str| {
        fetched[k]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("fetch-kernel printed no {k}: {printed}"))
    };
    let (version, vmlinuz, modules) = (field("version")?, field("vmlinuz")?, field("modules")?);
    println!("kernel {version}: {vmlinuz}");

    println!("\n==> building the {} ramdisk", arch.name());
    let out = target.join(format!("ramdisk-{}", arch.name()));
    let mut build = ramdisk(&["build", "--arch", arch.debian()]);
    build
        .args(["--kernel", &vmlinuz, "--modules", &modules, "--agent"])
        .arg(&agent)
        .arg("--out")
        .arg(&out);
    let t = Instant::now();
    util::run(&mut build)?;
    let size = |name: &str| std::fs::metadata(out.join(name)).map(|m| m.len());
    let initramfs = size("initramfs.img")?;
    let vmlinuz_bytes = size("vmlinuz")?;
    println!(
        "{}: initramfs {} ({initramfs} bytes), kernel {} ({vmlinuz_bytes} bytes); built in {:.0} s",
        out.display(),
        util::human_bytes(initramfs),
        util::human_bytes(vmlinuz_bytes),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_architecture() {
        assert_eq!(parse_arch(&args(&[])).unwrap(), Arch::X86_64);
        assert_eq!(
            parse_arch(&args(&["--arch", "aarch64"])).unwrap(),
            Arch::Aarch64
        );
        assert_eq!(parse_arch(&args(&["--arch=arm64"])).unwrap(), Arch::Aarch64);
        assert_eq!(parse_arch(&args(&["--arch=amd64"])).unwrap(), Arch::X86_64);
        assert!(parse_arch(&args(&["--arch", "riscv64"])).is_err());
        assert!(parse_arch(&args(&["--arch"])).is_err());
        assert!(parse_arch(&args(&["--fast"])).is_err());
    }
}

//! `fetch-kernel --debian`: downloads the current Debian kernel package with
//! `apt-get download` and unpacks it with `dpkg-deb -x`, without installing it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the unpacked kernel is.
#[derive(Debug)]
pub struct FetchedKernel {
    /// The kernel image (`boot/vmlinuz-<version>`).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<version>`.
    pub modules: PathBuf,
    /// The kernel release.
    pub version: String,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned package `linux-image-amd64` (or `-arm64`) depends on.
fn current_package(meta: &str) -> Result<String, String> {
    let deps = run(Command::new("apt-cache").args(["depends", meta]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| {
            p.starts_with("linux-image-") && p.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
        .ok_or_else(|| {
            format!("apt-cache knows no kernel package behind {meta}; run apt-get update")
        })
}

/// Downloads and unpacks the kernel into `out` (reused if already there).
pub fn debian(out: &Path, arch: &str) -> Result<FetchedKernel, String> {
    let meta = format!("linux-image-{arch}");
    let pkg = current_package(&meta)?;
    let root = out.join(&pkg);
    if !root.join(".unpacked").exists() {
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        // _apt cannot write into root-only directories; that only costs a warning.
        run(Command::new("apt-get")
            .arg("download")
            .arg(&pkg)
            .current_dir(out))?;
        let deb = std::fs::read_dir(out)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
            })
            .ok_or_else(|| format!("apt-get download left no {pkg}_*.deb in {}", out.display()))?;
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        std::fs::write(root.join(".unpacked"), b"").map_err(|e| e.to_string())?;
    }
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&version))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("no lib/modules/{version} in {pkg}"))?;
    Ok(FetchedKernel {
        vmlinuz: root.join("boot").join(format!("vmlinuz-{version}")),
        modules,
        version,
    })
}

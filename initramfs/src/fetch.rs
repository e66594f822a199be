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
    versioned_dependency(&deps).ok_or_else(|| {
        format!(
            "apt-cache knows no kernel package behind {meta}; run apt-get update \
             (for another architecture than the host's, first dpkg --add-architecture)"
        )
    })
}

/// The `linux-image-<version>-<flavour>` line of `apt-cache depends`, without
/// the `:arm64` qualifier apt adds to a foreign architecture's packages.
fn versioned_dependency(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.split(':').next().unwrap_or(p))
        .find(|p| {
            p.starts_with("linux-image-") && p.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
}

/// Waits for an exclusive lock on `f` (released when it is closed).
fn lock_exclusive(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock(2) on a descriptor owned by `f` for the whole call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Downloads and unpacks the kernel of Debian architecture `arch` (`amd64`,
/// `arm64`) into `out` (reused if already there). Another architecture than
/// the host's needs `dpkg --add-architecture <arch>` and `apt-get update` first.
pub fn debian(out: &Path, arch: &str) -> Result<FetchedKernel, String> {
    let meta = format!("linux-image-{arch}:{arch}");
    let pkg = current_package(&meta)?;
    let root = out.join(&pkg);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // One fetch at a time per directory: tests in one binary run in parallel.
    let lock = std::fs::File::create(out.join(".fetch.lock"))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    lock_exclusive(&lock).map_err(|e| format!("locking {}: {e}", out.display()))?;
    if !root.join(".unpacked").exists() {
        // _apt cannot write into root-only directories; that only costs a warning.
        let download = || {
            // Qualified: apt resolves an unqualified name to the host's architecture.
            run(Command::new("apt-get")
                .arg("download")
                .arg(format!("{pkg}:{arch}"))
                .current_dir(out))
        };
        if let Err(first) = download() {
            // Stale package lists ("File has unexpected size", "Hash Sum
            // mismatch") after the mirror moved on: refresh them once.
            run(Command::new("apt-get").arg("update"))
                .map_err(|e| format!("{first}; then apt-get update: {e}"))?;
            download().map_err(|e| format!("{first}; after apt-get update: {e}"))?;
        }
        let deb = std::fs::read_dir(out)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb")
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_versioned_package_native_or_foreign() {
        let amd64 = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            versioned_dependency(amd64).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        // A foreign architecture's dependency carries its qualifier.
        let arm64 = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-57-arm64:arm64\n";
        assert_eq!(
            versioned_dependency(arm64).as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        assert_eq!(versioned_dependency("linux-image-arm64\n"), None);
    }
}

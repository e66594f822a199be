//! What the lab boots: the agent ramdisk (from the Debian kernel and the static
//! agent) and the test image (from the same kernel, by `ingot-test-image`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ingot_initramfs::modules::Class;
use ingot_initramfs::{BuildOptions, Compression};

use crate::machine::Arch;

/// The files the lab needs.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The agent kernel.
    pub kernel: PathBuf,
    /// The agent ramdisk.
    pub initramfs: PathBuf,
    /// The bootable test image (raw).
    pub image: PathBuf,
    /// Other architectures' kernel, ramdisk and test image, for servers of
    /// those architectures beside the first (`--arch x86_64,aarch64`).
    pub more: Vec<ArchArtifacts>,
}

/// One more architecture's files.
#[derive(Debug, Clone)]
pub struct ArchArtifacts {
    /// Its architecture.
    pub arch: Arch,
    /// The agent kernel.
    pub kernel: PathBuf,
    /// The agent ramdisk.
    pub initramfs: PathBuf,
    /// The bootable test image (raw, UEFI).
    pub image: PathBuf,
}

impl Artifacts {
    /// The test image for a server of `arch`: its own when [`Self::more`]
    /// has one, else the first.
    pub fn image_for(&self, arch: Arch) -> &Path {
        self.more
            .iter()
            .find(|a| a.arch == arch)
            .map_or(&self.image, |a| &a.image)
    }
}

/// Inputs of [`build`].
pub struct Inputs<'a> {
    /// Where the Debian kernel is fetched to (`target/kernel`).
    pub kernel_cache: &'a Path,
    /// The static agent.
    pub agent: &'a Path,
    /// The test image's static init.
    pub test_init: &'a Path,
    /// The `ingot-test-image` binary.
    pub test_image_builder: &'a Path,
    /// Output directory.
    pub out: &'a Path,
    /// The firmware the test image boots under: `test-image.raw` (BIOS) or
    /// `test-image-uefi.raw` (a UKI on an ESP).
    pub firmware: crate::Firmware,
    /// The architecture: Debian's kernel of that architecture, the ramdisk
    /// in `ramdisk` (x86_64) or `ramdisk-<arch>`, the test image
    /// `test-image-<arch>-uefi.raw` for others than x86_64 (always UEFI).
    pub arch: Arch,
}

/// True if `dir` holds a ramdisk built from this agent binary and this
/// kernel (the zstd -19 build takes about 35 s; a repeated demo skips it).
fn ramdisk_current(dir: &Path, agent: &Path, modules: &Path) -> bool {
    let Ok(text) = std::fs::read(dir.join("manifest.json")) else {
        return false;
    };
    let Ok(m) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return false;
    };
    let Ok(agent_sha) = crate::sha256_file(agent) else {
        return false;
    };
    let version = modules.file_name().and_then(|v| v.to_str()).unwrap_or("");
    let init_sha = m["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["path"] == "/init")
        .and_then(|f| f["sha256"].as_str());
    m["kernel_version"] == version
        && init_sha == Some(agent_sha.as_str())
        && dir.join("vmlinuz").is_file()
        && dir.join("initramfs.img").is_file()
}

fn build_ramdisk(
    kernel: &ingot_initramfs::fetch::FetchedKernel,
    agent: &Path,
    arch: Arch,
    out: &Path,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(out);
    ingot_initramfs::build(&BuildOptions {
        kernel: kernel.vmlinuz.clone(),
        modules: kernel.modules.clone(),
        firmware: None,
        agent: agent.to_path_buf(),
        arch: arch.initramfs(),
        compress: Compression::Zstd,
        level: 19,
        classes: Class::ALL.to_vec(),
        extra: vec![],
        mtime: 0,
        out: out.to_path_buf(),
    })
    .context("building the agent ramdisk")?;
    Ok(())
}

/// Builds the ramdisk and the test image.
pub fn build(inp: &Inputs<'_>) -> Result<Artifacts> {
    for (what, p) in [
        ("static agent", inp.agent),
        ("test image init", inp.test_init),
        ("ingot-test-image", inp.test_image_builder),
    ] {
        if !p.exists() {
            bail!("{what} not found at {}", p.display());
        }
    }
    let t = Instant::now();
    let kernel = ingot_initramfs::fetch::debian(inp.kernel_cache, inp.arch.debian())
        .map_err(|e| anyhow::anyhow!("fetching the Debian {} kernel: {e}", inp.arch.debian()))?;
    println!(
        "kernel: {} ({:.1} s)",
        kernel.vmlinuz.display(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let ramdisk = inp.out.join(match inp.arch {
        Arch::X86_64 => "ramdisk".to_owned(),
        other => format!("ramdisk-{}", other.name()),
    });
    if ramdisk_current(&ramdisk, inp.agent, &kernel.modules) {
        println!(
            "agent ramdisk: {} is current (same agent and kernel)",
            ramdisk.display()
        );
    } else {
        build_ramdisk(&kernel, inp.agent, inp.arch, &ramdisk)?;
        println!(
            "agent ramdisk: {} (zstd -19, {:.1} s)",
            ramdisk.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let firmware = if inp.arch.uefi_only() {
        crate::Firmware::Uefi
    } else {
        inp.firmware
    };
    let stem = match (inp.arch, firmware) {
        (Arch::X86_64, crate::Firmware::Bios) => "test-image".to_owned(),
        (Arch::X86_64, crate::Firmware::Uefi) => "test-image-uefi".to_owned(),
        (other, _) => format!("test-image-{}-uefi", other.name()),
    };
    let image = inp.out.join(format!("{stem}.raw"));
    let mut builder = Command::new(inp.test_image_builder);
    if inp.arch != Arch::X86_64 {
        builder.arg("--arch").arg(inp.arch.name());
    }
    let out = builder
        .arg("--firmware")
        .arg(firmware.name())
        .arg("--kernel")
        .arg(&kernel.vmlinuz)
        .arg("--modules")
        .arg(&kernel.modules)
        .arg("--init")
        .arg(inp.test_init)
        .arg("--output")
        .arg(&image)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running ingot-test-image")?;
    if !out.status.success() {
        bail!("ingot-test-image failed ({})", out.status);
    }
    // Its JSON report stays with the image; people get one line.
    std::fs::write(inp.out.join(format!("{stem}.json")), &out.stdout)?;
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    println!(
        "test image: {} ({} MiB disk, kernel {}, initrd {} KiB with {} modules; {:.1} s)",
        image.display(),
        r["disk_bytes"].as_u64().unwrap_or(0) >> 20,
        r["kernel_version"].as_str().unwrap_or("?"),
        r["initrd_bytes"].as_u64().unwrap_or(0) >> 10,
        r["modules"].as_array().map(Vec::len).unwrap_or(0),
        t.elapsed().as_secs_f64()
    );
    Ok(Artifacts {
        kernel: ramdisk.join("vmlinuz"),
        initramfs: ramdisk.join("initramfs.img"),
        image,
        more: vec![],
    })
}

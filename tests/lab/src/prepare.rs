//! What the lab boots: the agent ramdisk (from the Debian kernel and the static
//! agent) and the test image (from the same kernel, by `ingot-image test-image`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use ingot_initramfs::modules::Class;
use ingot_initramfs::{Arch, BuildOptions, Compression};

/// The files the lab needs.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The agent kernel.
    pub kernel: PathBuf,
    /// The agent ramdisk.
    pub initramfs: PathBuf,
    /// The bootable test image (raw).
    pub image: PathBuf,
}

/// Inputs of [`build`].
pub struct Inputs<'a> {
    /// Where the Debian kernel is fetched to (`target/kernel`).
    pub kernel_cache: &'a Path,
    /// The static agent.
    pub agent: &'a Path,
    /// The test image's static init.
    pub test_init: &'a Path,
    /// The `ingot-image` binary.
    pub ingot_image: &'a Path,
    /// Output directory.
    pub out: &'a Path,
}

/// Builds the ramdisk and the test image.
pub fn build(inp: &Inputs<'_>) -> Result<Artifacts> {
    for (what, p) in [
        ("static agent", inp.agent),
        ("test image init", inp.test_init),
        ("ingot-image", inp.ingot_image),
    ] {
        if !p.exists() {
            bail!("{what} not found at {}", p.display());
        }
    }
    let kernel = ingot_initramfs::fetch::debian(inp.kernel_cache, "amd64")
        .map_err(|e| anyhow::anyhow!("fetching the Debian kernel: {e}"))?;
    let ramdisk = inp.out.join("ramdisk");
    let _ = std::fs::remove_dir_all(&ramdisk);
    ingot_initramfs::build(&BuildOptions {
        kernel: kernel.vmlinuz.clone(),
        modules: kernel.modules.clone(),
        firmware: None,
        agent: inp.agent.to_path_buf(),
        arch: Arch::X86_64,
        compress: Compression::Zstd,
        level: 19,
        classes: Class::ALL.to_vec(),
        extra: vec![],
        mtime: 0,
        out: ramdisk.clone(),
    })
    .context("building the agent ramdisk")?;
    let image = inp.out.join("test-image.raw");
    let st = Command::new(inp.ingot_image)
        .arg("test-image")
        .arg("--kernel")
        .arg(&kernel.vmlinuz)
        .arg("--modules")
        .arg(&kernel.modules)
        .arg("--init")
        .arg(inp.test_init)
        .arg("--output")
        .arg(&image)
        .status()
        .context("running ingot-image test-image")?;
    if !st.success() {
        bail!("ingot-image test-image failed ({st})");
    }
    Ok(Artifacts {
        kernel: ramdisk.join("vmlinuz"),
        initramfs: ramdisk.join("initramfs.img"),
        image,
    })
}

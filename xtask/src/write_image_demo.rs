//! `cargo xtask write-image-demo`: write a real disk image to a loop device with the agent.
//!
//! Builds the static agent, makes a 512 MiB GPT disk image with an ext4 root,
//! serves its zstd copy from a private nginx on 127.0.0.1, runs
//! `ingot-agent write-image` onto a fresh loop device, and checks the device
//! byte for byte against the raw image. Loop device and nginx are cleaned up
//! on every exit path (they are drop guards).

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::disk_image::{self, Spec};
use crate::util::{self, LoopDevice, Nginx, human_bytes};

const IMAGE: Spec = Spec {
    stem: "disk",
    size: 512 << 20,
    esp: false,
    fill_from: &["/usr/bin"],
    qcow2: false,
};

/// Runs the task.
pub fn run() -> Result<()> {
    util::require_root("write-image-demo")?;
    crate::deps::ensure()?;
    println!("\n==> building the static agent");
    let agent = util::build_agent()?;
    let dir = util::target_dir().join("demo");
    let served = dir.join("www");
    std::fs::create_dir_all(&served)?;
    let img = disk_image::build_cached(&dir.join("image"), &IMAGE)?;
    // nginx serves a folder of links to the cached image.
    for (p, name) in [(&img.raw, "disk.img"), (&img.zst, "disk.img.zst")] {
        let link = served.join(name);
        std::fs::remove_file(&link).ok();
        std::os::unix::fs::symlink(p, &link).with_context(|| format!("link {}", link.display()))?;
    }

    println!("\n==> serving the image and attaching a loop device");
    let nginx = Nginx::start(&served, &dir.join("nginx"))?;
    let backing = dir.join("target-disk.img");
    util::sparse_file(&backing, img.raw_size)?;
    let result = write_and_check(&agent, &nginx, &img, &backing);
    std::fs::remove_file(&backing).ok();
    drop(nginx);
    result
}

fn write_and_check(
    agent: &std::path::Path,
    nginx: &Nginx,
    img: &disk_image::Image,
    backing: &std::path::Path,
) -> Result<()> {
    let dev = LoopDevice::attach(backing)?;
    println!("\n==> writing the image with ingot-agent");
    let mut cmd = Command::new(agent);
    cmd.args(["write-image", "--source"])
        .arg(nginx.url("disk.img.zst"))
        .arg("--device")
        .arg(&dev.path)
        .arg("--checksum")
        .arg(format!("sha256:{}", img.zst_sha256))
        .arg("--progress");
    util::announce(&cmd);
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("could not start ingot-agent")?;
    let wall = t.elapsed().as_secs_f64();
    let summary = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ingot-agent write-image failed ({}); stdout: {summary}",
            out.status
        );
    }
    println!("{}", summary.trim());

    println!("\n==> checking the device against the raw image");
    util::run(
        Command::new("cmp")
            .arg("-n")
            .arg(img.raw_size.to_string())
            .arg(&img.raw)
            .arg(&dev.path),
    )
    .context("the device does not match the image")?;
    let field = |k| util::json_number(&summary, k).unwrap_or(f64::NAN);
    println!(
        "\nOK: wrote {} ({} as data, {} as zero runs) from a {} zstd image in {:.2} s \
         ({:.0} MB/s, {:.2} s with start-up), sha256 verified; {} matches the image byte for byte.",
        human_bytes(field("image_bytes") as u64),
        human_bytes(field("bytes_written") as u64),
        human_bytes(field("zero_bytes") as u64),
        human_bytes(img.zst_size),
        field("seconds"),
        field("mb_per_s"),
        wall,
        dev.path.display()
    );
    Ok(())
}

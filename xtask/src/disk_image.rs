//! Real disk images for the demo and the benchmarks, built without root or
//! loop partitions: a GPT made by `sfdisk` on a sparse file, an ext4 root made
//! by `mkfs.ext4 -d` at the partition's offset (`-E offset=`), and optionally a
//! FAT32 ESP. Variants: `.raw.zst` and `.qcow2`. Built once and cached beside a
//! stamp file that is written last, so an interrupted build is redone.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{self, human_bytes};

const SECTOR: u64 = 512;
const ESP_START: u64 = 2048;
const ESP_SECTORS: u64 = (256 << 20) / SECTOR;
/// Granularity of the zero/non-zero scan: the writer's zero-block size.
const SCAN_BLOCK: usize = 64 << 10;

/// What image to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// File stem: `<stem>.raw`, `<stem>.raw.zst`, `<stem>.qcow2`.
    pub stem: &'static str,
    /// Size of the raw image in bytes.
    pub size: u64,
    /// Add a 256 MiB EFI system partition first (FAT32 if `mkfs.vfat` is installed).
    pub esp: bool,
    /// Folders copied into the ext4 root, in order; missing ones are skipped.
    pub fill_from: &'static [&'static str],
    /// Also make a `.qcow2`.
    pub qcow2: bool,
}

/// A built (or cached) image and its variants.
#[derive(Debug, Clone)]
pub struct Image {
    /// The raw image.
    pub raw: PathBuf,
    /// Its size in bytes.
    pub raw_size: u64,
    /// SHA-256 of the raw image.
    pub raw_sha256: String,
    /// The zstd (-3) copy.
    pub zst: PathBuf,
    /// Its size in bytes.
    pub zst_size: u64,
    /// SHA-256 of the zstd copy.
    pub zst_sha256: String,
    /// The qcow2 copy, its size and SHA-256, if asked for.
    pub qcow2: Option<(PathBuf, u64, String)>,
    /// Bytes in non-zero 64 KiB blocks.
    pub data_bytes: u64,
    /// Zero and non-zero runs of 64 KiB blocks.
    pub runs: u64,
    /// Whether the ESP was formatted FAT32.
    pub fat_esp: bool,
}

impl Image {
    /// One line for people and reports.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} raw GPT disk, {} of non-zero data in {} zero/non-zero runs; .zst {}",
            human_bytes(self.raw_size),
            human_bytes(self.data_bytes),
            self.runs,
            human_bytes(self.zst_size)
        );
        if let Some((_, size, _)) = &self.qcow2 {
            s.push_str(&format!(", .qcow2 {}", human_bytes(*size)));
        }
        s
    }
}

fn mkfs_vfat() -> Option<PathBuf> {
    ["/usr/sbin/mkfs.vfat", "/sbin/mkfs.vfat"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn fingerprint(spec: &Spec, fat: bool) -> String {
    format!(
        "v1 size={} esp={} fat={} qcow2={} fill={}",
        spec.size,
        spec.esp,
        fat,
        spec.qcow2,
        spec.fill_from.join(",")
    )
}

/// Returns the cached image in `dir`, or builds it.
pub fn build_cached(dir: &Path, spec: &Spec) -> Result<Image> {
    std::fs::create_dir_all(dir)?;
    let fat = spec.esp && mkfs_vfat().is_some();
    let stamp = dir.join(format!("{}.stamp", spec.stem));
    let fp = fingerprint(spec, fat);
    if let Some(img) = load_stamp(dir, spec, &stamp, &fp) {
        println!(
            "using cached image {}: {}",
            img.raw.display(),
            img.describe()
        );
        return Ok(img);
    }
    std::fs::remove_file(&stamp).ok();
    let img = build(dir, spec, fat)?;
    let mut text = format!("{fp}\n");
    text.push_str(&format!("raw {} {}\n", img.raw_size, img.raw_sha256));
    text.push_str(&format!("zst {} {}\n", img.zst_size, img.zst_sha256));
    if let Some((_, size, sha)) = &img.qcow2 {
        text.push_str(&format!("qcow2 {size} {sha}\n"));
    }
    text.push_str(&format!("data {} {}\n", img.data_bytes, img.runs));
    std::fs::write(&stamp, text)?;
    println!("built {}: {}", img.raw.display(), img.describe());
    Ok(img)
}

fn paths(dir: &Path, spec: &Spec) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{}.raw", spec.stem)),
        dir.join(format!("{}.raw.zst", spec.stem)),
        dir.join(format!("{}.qcow2", spec.stem)),
    )
}

fn load_stamp(dir: &Path, spec: &Spec, stamp: &Path, fp: &str) -> Option<Image> {
    let text = std::fs::read_to_string(stamp).ok()?;
    let mut lines = text.lines();
    if lines.next()? != fp {
        return None;
    }
    let (raw, zst, qcow2) = paths(dir, spec);
    let size_of = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let mut img = Image {
        raw: raw.clone(),
        raw_size: 0,
        raw_sha256: String::new(),
        zst: zst.clone(),
        zst_size: 0,
        zst_sha256: String::new(),
        qcow2: None,
        data_bytes: 0,
        runs: 0,
        fat_esp: spec.esp && mkfs_vfat().is_some(),
    };
    for line in lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [kind, a, b] = w.as_slice() else {
            return None;
        };
        let n: u64 = a.parse().ok()?;
        match *kind {
            "raw" if size_of(&raw)? == n => (img.raw_size, img.raw_sha256) = (n, b.to_string()),
            "zst" if size_of(&zst)? == n => (img.zst_size, img.zst_sha256) = (n, b.to_string()),
            "qcow2" if size_of(&qcow2)? == n => {
                img.qcow2 = Some((qcow2.clone(), n, b.to_string()));
            }
            "data" => (img.data_bytes, img.runs) = (n, b.parse().ok()?),
            _ => return None,
        }
    }
    let complete =
        img.raw_size == spec.size && img.zst_size > 0 && img.qcow2.is_some() == spec.qcow2;
    complete.then_some(img)
}

/// Runs a command with a file on its stdin.
fn run_with_stdin(cmd: &mut Command, input: &Path) -> Result<()> {
    util::announce(cmd);
    println!("  (stdin: {})", input.display());
    let status = cmd
        .stdin(Stdio::from(File::open(input)?))
        .status()
        .with_context(|| format!("could not start `{}`", util::display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", util::display(cmd));
    }
    Ok(())
}

/// `(start, size)` in sectors of the last partition listed by `sfdisk -d`.
fn last_partition(dump: &str) -> Result<(u64, u64)> {
    let field = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    dump.lines()
        .filter(|l| l.contains("start="))
        .filter_map(|l| Some((field(l, "start=")?, field(l, "size=")?)))
        .next_back()
        .context("sfdisk -d listed no partition")
}

fn build(dir: &Path, spec: &Spec, fat: bool) -> Result<Image> {
    println!(
        "==> building the {} test image in {}",
        human_bytes(spec.size),
        dir.display()
    );
    let (raw, zst, qcow2) = paths(dir, spec);
    for p in [&raw, &zst, &qcow2] {
        std::fs::remove_file(p).ok();
    }
    util::sparse_file(&raw, spec.size)?;

    // The partition table.
    let mut script = String::from("label: gpt\nunit: sectors\n");
    let root_start = if spec.esp {
        script.push_str(&format!(
            "start={ESP_START}, size={ESP_SECTORS}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System\"\n"
        ));
        ESP_START + ESP_SECTORS
    } else {
        ESP_START
    };
    script.push_str(&format!(
        "start={root_start}, type=0FC63DAF-8483-4772-8E3D-0DC3ACDC2A6B, name=\"root\"\n"
    ));
    let script_path = dir.join(format!("{}.sfdisk", spec.stem));
    std::fs::write(&script_path, script)?;
    run_with_stdin(
        Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&raw),
        &script_path,
    )?;
    let dump = util::output(Command::new("sfdisk").arg("-d").arg(&raw))?;
    let (start, sectors) = last_partition(&dump)?;

    // The root filesystem, filled from a hard-linked staging copy of the folders.
    let stage = dir.join(format!("{}.fill", spec.stem));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    std::fs::create_dir_all(&stage)?;
    for src in spec.fill_from {
        let src = Path::new(src);
        if !src.is_dir() {
            println!("skipping {} (not on this machine)", src.display());
            continue;
        }
        let dst = stage.join(src.strip_prefix("/").unwrap_or(src));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let linked = util::run(Command::new("cp").arg("-al").arg(src).arg(&dst));
        if linked.is_err() {
            println!("hard links failed; copying instead");
            std::fs::remove_dir_all(&dst).ok();
            util::run(Command::new("cp").arg("-a").arg(src).arg(&dst))?;
        }
    }
    let fs_kib = sectors * SECTOR / 1024;
    let built = util::run(
        Command::new("mkfs.ext4")
            .args(["-F", "-q", "-L", "root"])
            .arg("-E")
            .arg(format!("offset={},nodiscard", start * SECTOR))
            .arg("-d")
            .arg(&stage)
            .arg(&raw)
            .arg(format!("{fs_kib}k")),
    );
    std::fs::remove_dir_all(&stage).ok();
    built?;
    if fat && let Some(vfat) = mkfs_vfat() {
        util::run(
            Command::new(vfat)
                .args(["-F", "32", "-n", "ESP", "--offset"])
                .arg(ESP_START.to_string())
                .arg(&raw)
                .arg((ESP_SECTORS * SECTOR / 1024).to_string()),
        )?;
    }
    // The filesystems must not have overwritten the partition table.
    let after = util::output(Command::new("sfdisk").arg("-d").arg(&raw))?;
    if after != dump {
        bail!("the partition table changed while making filesystems:\n{after}");
    }
    std::fs::remove_file(&script_path).ok();

    util::run(
        Command::new("zstd")
            .args(["-3", "-T0", "-q", "-f"])
            .arg(&raw)
            .arg("-o")
            .arg(&zst),
    )?;
    let qcow2 = if spec.qcow2 {
        util::run(
            Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .arg(&raw)
                .arg(&qcow2),
        )?;
        let size = std::fs::metadata(&qcow2)?.len();
        let sha = util::sha256_file(&qcow2)?;
        Some((qcow2, size, sha))
    } else {
        None
    };
    println!("scanning {} for data and zero runs", raw.display());
    let (data_bytes, runs) = scan(&raw)?;
    Ok(Image {
        raw_size: std::fs::metadata(&raw)?.len(),
        raw_sha256: util::sha256_file(&raw)?,
        zst_size: std::fs::metadata(&zst)?.len(),
        zst_sha256: util::sha256_file(&zst)?,
        raw,
        zst,
        qcow2,
        data_bytes,
        runs,
        fat_esp: fat,
    })
}

/// Counts bytes in non-zero 64 KiB blocks and the number of zero/non-zero runs.
fn scan(path: &Path) -> Result<(u64, u64)> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let (mut data, mut runs, mut last) = (0u64, 0u64, None);
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        for block in buf[..n].chunks(SCAN_BLOCK) {
            let nonzero = block.iter().any(|&b| b != 0);
            if nonzero {
                data += block.len() as u64;
            }
            if last != Some(nonzero) {
                runs += 1;
                last = Some(nonzero);
            }
        }
    }
    Ok((data, runs))
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sfdisk_dump() {
        let dump = "label: gpt\nlabel-id: X\ndevice: a.raw\nunit: sectors\nfirst-lba: 2048\n\
                    last-lba: 8388574\nsector-size: 512\n\n\
                    a.raw1 : start=        2048, size=      524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=A, name=\"EFI System\"\n\
                    a.raw2 : start=      526336, size=     7862239, type=0FC63DAF-8483-4772-8E3D-0DC3ACDC2A6B, uuid=B, name=\"root\"\n";
        assert_eq!(last_partition(dump).unwrap(), (526336, 7862239));
        assert!(last_partition("label: gpt\n").is_err());
    }

    #[test]
    fn scans_runs() {
        let dir = std::env::temp_dir().join(format!("xtask-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("img");
        let mut data = vec![0u8; 5 * SCAN_BLOCK];
        data[SCAN_BLOCK + 7] = 1; // block 1
        data[3 * SCAN_BLOCK] = 1; // block 3
        std::fs::write(&p, &data).unwrap();
        assert_eq!(scan(&p).unwrap(), (2 * SCAN_BLOCK as u64, 5));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Helpers shared by the wipe integration tests: running the agent binary,
//! building disk images with real tools, and probing them with blkid/wipefs.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use ingot_proto::wipe::{DeviceReport, WipeReport};

/// Runs `ingot-agent wipe --json <args>`; returns the exit success and the report.
pub fn wipe(args: &[&str]) -> (bool, WipeReport, Output) {
    let out = Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .arg("wipe")
        .arg("--json")
        .args(args)
        .output()
        .expect("run ingot-agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: WipeReport = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report, out)
}

/// The single device of a report.
pub fn only(report: &WipeReport) -> &DeviceReport {
    assert_eq!(report.devices.len(), 1, "{report:#?}");
    &report.devices[0]
}

/// True if `tool` is on PATH (tests for optional filesystems skip without it).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a shell command line, panicking with its output if it fails.
pub fn sh(line: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(line).output().expect("sh");
    assert!(
        out.status.success(),
        "`{line}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `blkid -p` at a byte offset of an image: `Some(TYPE=..., PTTYPE=... line)` if
/// anything is recognised there, `None` if blkid finds nothing (exit 2).
pub fn blkid_at(image: &Path, offset: u64, size: u64) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-O", &offset.to_string(), "-S", &size.to_string()])
        .arg(image)
        .output()
        .expect("blkid");
    match out.status.code() {
        Some(0) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(2) => None,
        other => panic!(
            "blkid failed ({other:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Signatures `wipefs --no-act` lists on the whole image (one line each).
pub fn wipefs_list(image: &Path) -> Vec<String> {
    let out = sh(&format!(
        "wipefs --no-act --noheadings '{}'",
        image.display()
    ));
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Writes `data` at `offset` of `image` (no truncation).
pub fn write_at(image: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    f.write_all_at(data, offset).unwrap();
}

/// Reads `len` bytes at `offset` of `image`.
pub fn read_at(image: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(image).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Makes `image` a sparse file of `size` bytes.
pub fn sparse(image: &Path, size: u64) {
    std::fs::File::create(image).unwrap().set_len(size).unwrap();
}

/// Fills `image` with non-zero pseudo-random data (cheaply).
pub fn fill_random(image: &Path, size: u64) {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut chunk = vec![0u8; 1 << 20];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(image)
        .unwrap();
    let mut off = 0;
    while off < size {
        for c in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&(x | 1).to_le_bytes());
        }
        let n = (size - off).min(chunk.len() as u64) as usize;
        std::os::unix::fs::FileExt::write_all_at(&f, &chunk[..n], off).unwrap();
        off += n as u64;
    }
    f.sync_all().unwrap();
}

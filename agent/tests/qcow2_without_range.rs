//! qcow2 from a server that ignores `Range` (Python's `http.server`, which
//! answers every request with the whole file): the image is spooled on the
//! target past its virtual disk, verified, converted from there and the
//! spool wiped. The result is compared with `qemu-img convert`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{LoopDev, fixture, fixtures, privileged, sh, sha256_arg};

const MIB: u64 = 1 << 20;

/// `python3 -m http.server` on 127.0.0.1 serving `dir`; killed on drop.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 36807 (http://127.0.0.1:36807/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self { child, port }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn write_image(source: &str, device: &Path, checksum: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .args(["write-image", "--source", source, "--device"])
        .arg(device)
        .args(["--checksum", checksum])
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What `qemu-img convert` makes of a fixture.
fn converted(name: &str, dir: &Path) -> Vec<u8> {
    let out: PathBuf = dir.join(format!("{name}.raw"));
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(fixtures().join(name))
        .arg(&out));
    std::fs::read(out).unwrap()
}

/// Where the spool goes: the first MiB boundary past the virtual size.
fn spool_start(virtual_size: u64) -> u64 {
    virtual_size.max(MIB).next_multiple_of(MIB)
}

fn fill_old(path: &Path, len: u64) {
    let mut old = vec![0x5au8; len as usize];
    old[510] = 0x55;
    old[511] = 0xaa;
    std::fs::write(path, old).unwrap();
}

#[test]
fn qcow2_from_a_server_that_ignores_range_is_spooled_and_converted() {
    if !privileged("qcow2_from_a_server_that_ignores_range_is_spooled_and_converted") {
        return;
    }
    let srv = PythonServer::start(fixtures());
    let dir = tempfile::tempdir().unwrap();
    // Plain, compressed, and clusters stored out of guest order.
    for name in ["disk.qcow2", "disk-zlib.qcow2", "reverse.qcow2"] {
        let body = fixture(name);
        let want = converted(name, dir.path());
        let dev = LoopDev::new(dir.path(), name, 64 * MIB, false);
        fill_old(&dev.backing, 64 * MIB);
        let out = write_image(&srv.url(name), &dev.path, &sha256_arg(&body));
        let err = stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        assert!(
            err.contains("the server ignores Range requests"),
            "{name}: {err}"
        );
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["format"], "qcow2");
        assert_eq!(s["image_bytes"], want.len());
        assert_eq!(s["source_bytes"], body.len());
        assert_eq!(s["checksum"]["verified"], true);
        let got = dev.contents();
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            panic!("{name}: the device differs from qemu-img convert at byte {i}");
        }
        // The spool is wiped, nothing else past the image was touched but
        // the device's last MiB.
        let start = spool_start(want.len() as u64) as usize;
        let end = start + body.len();
        assert!(
            got[start..end].iter().all(|&b| b == 0),
            "{name}: the spooled qcow2 was left on the device"
        );
        let tail = got.len() - MIB as usize;
        assert!(
            got[end.next_multiple_of(512)..tail]
                .iter()
                .all(|&b| b == 0x5a)
        );
        assert!(got[tail..].iter().all(|&b| b == 0));
    }
}

/// A wrong checksum is found before anything is converted: the image's own
/// area still holds the old disk's bytes (nothing of the image reached it),
/// the spool is wiped, and the first and last MiB are zeroed so the old,
/// now partly overwritten disk cannot boot either.
#[test]
fn wrong_checksum_of_a_spooled_qcow2_converts_nothing() {
    if !privileged("wrong_checksum_of_a_spooled_qcow2_converts_nothing") {
        return;
    }
    let srv = PythonServer::start(fixtures());
    let dir = tempfile::tempdir().unwrap();
    let body = fixture("disk.qcow2");
    let dev = LoopDev::new(dir.path(), "disk", 64 * MIB, false);
    fill_old(&dev.backing, 64 * MIB);
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = write_image(&srv.url("disk.qcow2"), &dev.path, &wrong);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch")
            && err.contains(&wrong)
            && err.contains(&sha256_arg(&body)),
        "{err}"
    );
    assert!(err.contains("made unbootable"), "{err}");
    assert!(out.stdout.is_empty());
    let got = dev.contents();
    let virtual_size = converted("disk.qcow2", dir.path()).len() as u64;
    let start = spool_start(virtual_size) as usize;
    assert!(
        got[..MIB as usize].iter().all(|&b| b == 0),
        "first MiB zeroed"
    );
    assert!(
        got[MIB as usize..virtual_size as usize]
            .iter()
            .all(|&b| b == 0x5a),
        "nothing of the unverified image was converted"
    );
    assert!(
        got[start..start + body.len()].iter().all(|&b| b == 0),
        "spool wiped"
    );
    let tail = got.len() - MIB as usize;
    assert!(got[tail..].iter().all(|&b| b == 0), "last MiB zeroed");
}

/// Files: a growing target ends up exactly the converted image (the spool
/// past it is cut off), and a fixed-size one too small for the image plus
/// the spool is refused before anything is written.
#[test]
fn spooled_qcow2_to_files() {
    let srv = PythonServer::start(fixtures());
    let dir = tempfile::tempdir().unwrap();
    let body = fixture("disk.qcow2");
    let want = converted("disk.qcow2", dir.path());
    let target = dir.path().join("grown.img");
    let out = write_image(&srv.url("disk.qcow2"), &target, &sha256_arg(&body));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&target).unwrap() == want, "grown file");

    // Room for the image, not for the image and its spool.
    let small = dir.path().join("small.img");
    let len = spool_start(want.len() as u64) + body.len() as u64 - 4096;
    fill_old(&small, len);
    let out = write_image(&srv.url("disk.qcow2"), &small, &sha256_arg(&body));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the server ignores Range requests, so the qcow2 image is downloaded onto the target before it is converted")
            && err.contains(&format!("needs {} bytes", len + 4096))
            && err.contains("the target was not modified"),
        "{err}"
    );
    let after = std::fs::read(&small).unwrap();
    assert!(
        after
            .iter()
            .enumerate()
            .all(|(i, &b)| b == 0x5a || i == 510 || i == 511)
    );
}

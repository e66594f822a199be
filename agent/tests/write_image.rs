//! `ingot-agent write-image` end to end: a local HTTP server on 127.0.0.1 with
//! injected faults, writing to loop devices (root) and files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::http::{Faults, TestServer};
use common::{LoopDev, fixture, privileged, sh, sha256_arg};

const MIB: usize = 1 << 20;

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .arg("write-image")
        .args(args)
        .output()
        .unwrap()
}

fn serve(name: &str, faults: Faults) -> (TestServer, Arc<Vec<u8>>) {
    let body = fixture(name);
    let files = HashMap::from([(name.to_string(), body.clone())]);
    (TestServer::start(files, faults), body)
}

fn summary(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "write-image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary on stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fills a device's backing file with an old "bootable" image pattern.
fn fill_old(dev: &LoopDev) {
    let len = std::fs::metadata(&dev.backing).unwrap().len() as usize;
    let mut old = vec![0x5au8; len];
    old[510] = 0x55;
    old[511] = 0xaa;
    std::fs::write(&dev.backing, old).unwrap();
}

fn assert_prefix(got: &[u8], want: &[u8]) {
    assert!(got.len() >= want.len());
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("device differs from the image at byte {i}");
    }
}

#[test]
fn zstd_over_http_to_loop_device_resumes_after_a_drop() {
    if !privileged("zstd_over_http_to_loop_device_resumes_after_a_drop") {
        return;
    }
    let (srv, body) = serve(
        "disk.raw.zst",
        Faults {
            drop_after: Some(1_500_000),
            drops: 2,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dev = LoopDev::new(dir.path(), "disk", 32 * MIB as u64, false);
    fill_old(&dev);
    let out = agent(&[
        "--source",
        &srv.url("disk.raw.zst"),
        "--device",
        dev.path.to_str().unwrap(),
        "--checksum",
        &sha256_arg(&body),
        "--progress",
    ]);
    let s = summary(&out);
    assert_eq!(s["format"], "zstd");
    assert_eq!(s["resumes"], 2);
    assert_eq!(s["source_bytes"], body.len());
    assert_eq!(s["checksum"]["verified"], true);
    let raw = fixture("disk.raw");
    assert_eq!(s["image_bytes"], raw.len());
    let got = dev.contents();
    assert_prefix(&got, &raw);
    // Beyond the image, the old content is left alone, except the device's
    // last MiB (where an old backup GPT or md superblock would be).
    let tail = got.len() - MIB;
    assert!(got[raw.len() + 4096..tail].iter().all(|&b| b == 0x5a));
    assert!(got[tail..].iter().all(|&b| b == 0), "last MiB zeroed");
    // The download resumed from where it broke, never from zero.
    let ranges = srv.ranges.lock().unwrap().clone();
    assert_eq!(ranges[0], "-");
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    for r in &ranges[1..] {
        let start: u64 = r
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        assert!(start >= 1_000_000, "resumed from {start}: {ranges:?}");
    }
    // Progress went to stderr, not stdout.
    assert!(stderr(&out).contains("received"), "{}", stderr(&out));
}

#[test]
fn qcow2_over_http_uses_range_reads_and_survives_a_drop() {
    if !privileged("qcow2_over_http_uses_range_reads_and_survives_a_drop") {
        return;
    }
    let (srv, body) = serve(
        "disk-zlib.qcow2",
        Faults {
            drop_after: Some(3_000_000),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dev = LoopDev::new(dir.path(), "disk", 24 * MIB as u64, false);
    fill_old(&dev);
    let out = agent(&[
        "--source",
        &srv.url("disk-zlib.qcow2"),
        "--device",
        dev.path.to_str().unwrap(),
        "--checksum",
        &sha256_arg(&body),
    ]);
    let s = summary(&out);
    assert_eq!(s["format"], "qcow2");
    assert_eq!(s["resumes"], 1);
    assert_prefix(&dev.contents(), &fixture("disk.raw"));
    let ranges = srv.ranges.lock().unwrap().clone();
    assert!(
        ranges
            .iter()
            .any(|r| r.starts_with("bytes=") && !r.ends_with('-')),
        "metadata was read with bounded Range requests: {ranges:?}"
    );
}

#[test]
fn raw_over_http_to_file_recovers_from_a_stall() {
    let (srv, body) = serve(
        "disk.raw",
        Faults {
            stall_after: Some((4 * MIB as u64, Duration::from_secs(4))),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("disk.img");
    let out = agent(&[
        "--source",
        &srv.url("disk.raw"),
        "--device",
        target.to_str().unwrap(),
        "--checksum",
        &sha256_arg(&body),
        "--read-timeout",
        "1",
    ]);
    let s = summary(&out);
    // One stall is served; a busy machine may add a pause of its own that
    // the 1 s read timeout also takes for one.
    let resumes = s["resumes"].as_u64().unwrap_or(0);
    assert!(resumes >= 1, "{s}");
    assert!(stderr(&out).contains("stalled"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), *body);
}

#[test]
fn wrong_checksum_fails_and_leaves_the_device_unbootable() {
    if !privileged("wrong_checksum_fails_and_leaves_the_device_unbootable") {
        return;
    }
    let (srv, body) = serve("disk.qcow2", Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let dev = LoopDev::new(dir.path(), "disk", 32 * MIB as u64, false);
    fill_old(&dev);
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = agent(&[
        "--source",
        &srv.url("disk.qcow2"),
        "--device",
        dev.path.to_str().unwrap(),
        "--checksum",
        &wrong,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let actual = sha256_arg(&body);
    assert!(
        err.contains(&wrong) && err.contains(&actual),
        "names both digests: {err}"
    );
    assert!(out.stdout.is_empty(), "no summary on failure");
    let got = dev.contents();
    assert!(got[..MIB].iter().all(|&b| b == 0), "first MiB zeroed");
    assert!(
        got[got.len() - MIB..].iter().all(|&b| b == 0),
        "last MiB zeroed"
    );
}

#[test]
fn truncated_image_is_an_error() {
    // The server announces the full length but the file ends early, every time.
    let full = fixture("disk.raw.zst");
    let (srv, _) = serve(
        "truncated.raw.zst",
        Faults {
            announce_len: Some(full.len() as u64),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("disk.img");
    let out = agent(&[
        "--source",
        &srv.url("truncated.raw.zst"),
        "--device",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

/// Serves `image`, writes it to a loop device of `dev_mib` MiB holding an old
/// image, and checks that the write is refused with `expected` in the message
/// and the device left exactly as it was.
fn assert_refused_untouched(test: &str, image: &str, dev_mib: u64, expected: &[&str]) {
    if !privileged(test) {
        return;
    }
    let (srv, _) = serve(image, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let dev = LoopDev::new(dir.path(), "disk", dev_mib * MIB as u64, false);
    fill_old(&dev);
    let out = agent(&[
        "--source",
        &srv.url(image),
        "--device",
        dev.path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for e in expected {
        assert!(err.contains(e), "{e:?} not in: {err}");
    }
    assert!(
        dev.contents()
            .iter()
            .enumerate()
            .all(|(i, &b)| b == 0x5a || i == 510 || i == 511),
        "the device was modified"
    );
}

#[test]
fn corrupt_qcow2_header_is_refused_and_nothing_is_written() {
    assert_refused_untouched(
        "corrupt_qcow2_header_is_refused_and_nothing_is_written",
        "corrupt.qcow2",
        32,
        &["corrupt qcow2 header", "not modified"],
    );
}

#[test]
fn image_bigger_than_the_device_is_refused() {
    assert_refused_untouched(
        "image_bigger_than_the_device_is_refused",
        "disk.raw",
        8,
        &["larger than the target", "not modified"],
    );
}

#[test]
fn read_only_device_is_refused() {
    if !privileged("read_only_device_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = LoopDev::new(dir.path(), "ro", 8 * MIB as u64, true);
    let src = common::fixtures().join("disk.raw.zst");
    let out = agent(&[
        "--source",
        src.to_str().unwrap(),
        "--device",
        dev.path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
}

#[test]
fn mounted_device_is_refused() {
    if !privileged("mounted_device_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = LoopDev::new(dir.path(), "fs", 32 * MIB as u64, false);
    sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev.path));
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(Command::new("mount").arg(&dev.path).arg(&mnt));
    let src = common::fixtures().join("disk.raw");
    let out = agent(&[
        "--source",
        src.to_str().unwrap(),
        "--device",
        dev.path.to_str().unwrap(),
    ]);
    Command::new("umount").arg(&mnt).status().ok();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("in use") && err.contains("mounted at"),
        "{err}"
    );
}

#[test]
fn server_without_range_support_cannot_resume() {
    let (srv, _) = serve(
        "disk.raw",
        Faults {
            drop_after: Some(2_000_000),
            no_range: true,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("disk.img");
    let out = agent(&[
        "--source",
        &srv.url("disk.raw"),
        "--device",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot resume at byte"), "{err}");
}

/// The image is replaced on the server (new content, new ETag) while it
/// downloads. The resume must not splice the new version's bytes onto the old
/// one's, whether the server honours If-Range (a 200 with the new image) or
/// ignores it (a 206 of the new image). No checksum is given, so nothing else
/// would catch the splice.
#[test]
fn image_replaced_on_the_server_during_the_download_is_refused() {
    let old = fixture("disk.raw");
    let new: Vec<u8> = old.iter().map(|b| b ^ 0xff).collect();
    let new = Arc::new(new);
    for ignore_if_range in [true, false] {
        let files = HashMap::from([("disk.raw".to_string(), old.clone())]);
        let srv = TestServer::start(
            files,
            Faults {
                drop_after: Some(1_500_000),
                replace_after_first: Some(new.clone()),
                ignore_if_range,
                ..Default::default()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("disk.img");
        let mut previous = vec![0x5au8; 32 * MIB];
        previous[510] = 0x55;
        previous[511] = 0xaa;
        std::fs::write(&target, &previous).unwrap();
        let out = agent(&[
            "--source",
            &srv.url("disk.raw"),
            "--device",
            target.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "ignore_if_range {ignore_if_range}: a spliced image was written: {err}"
        );
        assert!(
            err.contains(
                "the image changed on the server during the download \
                 (ETag \"ingot-test-v1\" -> \"ingot-test-v2\") after 1500000 bytes"
            ),
            "ignore_if_range {ignore_if_range}: {err}"
        );
        // Only the held-back first MiB had arrived: nothing was written.
        assert!(err.contains("the target was not modified"), "{err}");
        assert!(std::fs::read(&target).unwrap() == previous);
        // One resume, from where the connection broke, guarded by If-Range.
        let ranges = srv.ranges.lock().unwrap().clone();
        assert_eq!(ranges, ["-", "bytes=1500000-"]);
        let if_ranges = srv.if_ranges.lock().unwrap().clone();
        assert_eq!(if_ranges, ["-", "\"ingot-test-v1\""]);
    }
}

#[test]
fn missing_image_and_bad_arguments_are_clear_errors() {
    let (srv, _) = serve("disk.raw", Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("disk.img");
    let out = agent(&[
        "--source",
        &srv.url("nope.raw"),
        "--device",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
    assert!(!target.exists(), "a failed download creates nothing");

    let out = agent(&["--source", "x", "--device", "y", "--checksum", "sha1:00"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unsupported checksum algorithm"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn writes_a_local_file_source_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let src = common::fixtures().join("disk.raw.xz");
    let out = agent(&[
        "--source",
        src.to_str().unwrap(),
        "--device",
        target.to_str().unwrap(),
        "--format",
        "xz",
    ]);
    let s = summary(&out);
    assert_eq!(s["format"], "xz");
    assert!(s["mb_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(std::fs::read(&target).unwrap(), *fixture("disk.raw"));
}

/// `--xz-memlimit` caps the xz decoder: the fixture (`xz -6`, an 8 MiB
/// dictionary) needs 9 MiB, so 4 MiB refuses it before anything is written
/// and 16 MiB writes it.
#[test]
fn xz_memlimit_flag_caps_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let src = common::fixtures().join("disk.raw.xz");
    let src = src.to_str().unwrap();
    let out = agent(&[
        "--source",
        src,
        "--device",
        target.to_str().unwrap(),
        "--xz-memlimit",
        "4M",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("xz stream needs 9 MiB of memory for its dictionary; the limit is 4 MiB"),
        "{err}"
    );
    assert!(err.contains("the target was not modified"), "{err}");
    let out = agent(&[
        "--source",
        src,
        "--device",
        target.to_str().unwrap(),
        "--xz-memlimit",
        "16",
    ]);
    summary(&out);
    assert_eq!(std::fs::read(&target).unwrap(), *fixture("disk.raw"));
    let out = agent(&["--source", src, "--device", "x", "--xz-memlimit", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("more than zero"), "{}", stderr(&out));
}

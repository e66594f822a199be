//! Secure mode end to end: the discard path on a loop device and the
//! overwrite fallback on a file, each verified by the tool and re-checked
//! here by reading the backing file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;
mod wipe_support;

use ingot_proto::wipe::{NistCategory, VerifyMode, WipeMethod, WipeStatus};
use wipe_support::*;

const MIB: u64 = 1 << 20;

fn all_zero(path: &std::path::Path) -> bool {
    std::fs::read(path).unwrap().iter().all(|&b| b == 0)
}

#[test]
fn secure_wipe_loop_device_uses_discard_and_verifies_zeros() {
    if !common::privileged("secure_wipe_loop_device_uses_discard_and_verifies_zeros") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "disk.img", 64 * MIB, false);
    fill_random(&lo.backing, 64 * MIB);
    let (ok, report, out) = wipe(&["--device", lo.path.to_str().unwrap(), "--verify", "full"]);
    let d = only(&report);
    assert!(ok, "{d:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.status, WipeStatus::Verified);
    assert_eq!(d.method, Some(WipeMethod::DiscardZeroOut));
    assert_eq!(d.nist_category, Some(NistCategory::Clear));
    assert_eq!(d.size_bytes, 64 * MIB);
    // Every stronger method is listed with a reason.
    let skipped: Vec<WipeMethod> = d.skipped.iter().map(|s| s.method).collect();
    assert_eq!(
        skipped,
        vec![
            WipeMethod::NvmeSanitizeCrypto,
            WipeMethod::NvmeSanitizeBlock,
            WipeMethod::NvmeFormatCrypto,
            WipeMethod::NvmeFormatUserData,
            WipeMethod::AtaSecurityEraseEnhanced,
            WipeMethod::AtaSecurityErase,
            WipeMethod::SecureDiscard,
        ]
    );
    assert!(d.skipped.iter().all(|s| !s.reason.is_empty()));
    let v = d.verification.as_ref().unwrap();
    assert_eq!(v.mode, VerifyMode::Full);
    assert!(v.passed && v.expect_zero && v.samples == 16 && v.samples_survived == 0);
    assert!(v.bytes_read >= 64 * MIB);
    assert!(d.started_at.ends_with('Z') && d.finished_at >= d.started_at);
    assert!(all_zero(&lo.backing), "backing file still has data");
}

#[test]
fn secure_wipe_file_overwrite_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    // Not a multiple of 4 KiB: the tail goes through the page cache.
    let size = 24 * MIB + 512 * 3;
    fill_random(&img, size);
    let (ok, report, out) = wipe(&[
        "--device",
        img.to_str().unwrap(),
        "--allow-overwrite-fallback",
        "--passes",
        "2",
        "--verify",
        "full",
    ]);
    let d = only(&report);
    assert!(ok, "{d:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.method, Some(WipeMethod::Overwrite));
    assert_eq!(d.passes, Some(2));
    assert_eq!(d.bytes, 3 * size);
    assert_eq!(d.kind, ingot_proto::wipe::DeviceKind::File);
    assert!(d.verification.as_ref().unwrap().passed);
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        size,
        "size unchanged"
    );
    assert!(all_zero(&img));
}

#[test]
fn secure_wipe_file_without_overwrite_flag_fails_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    fill_random(&img, 4 * MIB);
    let before = std::fs::read(&img).unwrap();
    let (ok, report, _) = wipe(&["--device", img.to_str().unwrap()]);
    let d = only(&report);
    assert!(!ok && !report.success);
    assert_eq!(d.status, WipeStatus::Failed);
    assert_eq!(d.method, None);
    let last = d.skipped.last().unwrap();
    assert_eq!(last.method, WipeMethod::Overwrite);
    assert!(
        last.reason.contains("--allow-overwrite-fallback"),
        "{last:?}"
    );
    assert!(
        d.error.as_deref().unwrap().contains("no erase method"),
        "{d:?}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn verify_none_is_never_reported_as_success() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    fill_random(&img, 4 * MIB);
    let (ok, report, _) = wipe(&[
        "--device",
        img.to_str().unwrap(),
        "--allow-overwrite-fallback",
        "--verify",
        "none",
    ]);
    let d = only(&report);
    assert!(!ok, "exit status must be non-zero without verification");
    assert_eq!(d.status, WipeStatus::Unverified);
    assert_eq!(d.method, Some(WipeMethod::Overwrite));
    assert!(d.verification.is_none());
    assert!(all_zero(&img));
}

#[test]
fn several_devices_in_parallel_one_failing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    fill_random(&a, 8 * MIB);
    fill_random(&b, 8 * MIB);
    let missing = dir.path().join("missing.img");
    let (ok, report, _) = wipe(&[
        "--allow-overwrite-fallback",
        "--device",
        a.to_str().unwrap(),
        "--device",
        missing.to_str().unwrap(),
        "--device",
        b.to_str().unwrap(),
    ]);
    assert!(!ok && !report.success);
    let status: Vec<WipeStatus> = report.devices.iter().map(|d| d.status).collect();
    assert_eq!(
        status,
        vec![
            WipeStatus::Verified,
            WipeStatus::Failed,
            WipeStatus::Verified
        ]
    );
    assert!(
        report.devices[1]
            .error
            .as_deref()
            .unwrap()
            .contains("no such device")
    );
    assert!(!missing.exists(), "wipe must never create a file");
    assert!(all_zero(&a) && all_zero(&b));
}

#[test]
fn method_selection_on_a_loop_device() {
    if !common::privileged("method_selection_on_a_loop_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lo = common::LoopDev::new(dir.path(), "disk.img", 32 * MIB, false);
    let dev = lo.path.to_str().unwrap();
    // Overwrite selected but not allowed: nothing runs, nothing is touched.
    fill_random(&lo.backing, 32 * MIB);
    let (ok, report, _) = wipe(&["--device", dev, "--method", "overwrite"]);
    let d = only(&report);
    assert!(!ok && d.method.is_none());
    let discard = d
        .skipped
        .iter()
        .find(|s| s.method == WipeMethod::DiscardZeroOut)
        .unwrap();
    assert!(discard.reason.contains("not selected"), "{discard:?}");
    assert!(!all_zero(&lo.backing));
    // Selected and allowed: a verified overwrite with its pass timings.
    let (ok, report, _) = wipe(&[
        "--device",
        dev,
        "--method",
        "overwrite",
        "--allow-overwrite-fallback",
        "--passes",
        "1",
    ]);
    let d = only(&report);
    assert!(ok, "{d:#?}");
    assert_eq!(d.method, Some(WipeMethod::Overwrite));
    assert_eq!(d.pass_seconds.len(), 2);
    assert_eq!(d.bytes, 64 * MIB);
    assert!(all_zero(&lo.backing));
    // An unknown method is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingot-agent"))
        .args(["wipe", "--device", dev, "--method", "shred"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown method"));
}

//! Config drives built from a dict, as Ironic builds them (issue 14 item
//! 6): the ISO is recognised by blkid as `iso9660` labelled `config-2`,
//! with a UUID of its own per drive; pycdlib (an independent, strict
//! parser) reads Rock Ridge names and modes (files 0444, directories 0555)
//! and the Joliet tree; the files are under `openstack/2012-08-10` and
//! `openstack/latest`, vendor data in `vendor_data2.json`, and empty
//! sections are left out. As root with iso9660 in the kernel, the kernel
//! mounts it and shows the same names and modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

/// Builds the drive of `dict` for the node `NODE` named `node-1`, and
/// writes the ISO (un-gzipped) to `dir/name`.
fn build_to(dict: &Value, dir: &Path, name: &str) -> PathBuf {
    common::drive::write_iso(dict, NODE, "node-1", &dir.join(name))
}

/// blkid's view of the image (`TYPE`, `LABEL`, `UUID`, …); `None` (skip)
/// without blkid.
fn blkid(file: &Path) -> Option<BTreeMap<String, String>> {
    match Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(file)
        .output()
    {
        Ok(out) => {
            assert!(out.status.success(), "blkid failed on {}", file.display());
            Some(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        }
        Err(e) if !common::must_not_skip() => {
            eprintln!("SKIPPED blkid check: {e}");
            None
        }
        Err(e) => panic!("blkid (util-linux) is required: {e}"),
    }
}

/// `tests/configdrive_read.py` on the image: pycdlib's reading of both
/// trees; `None` (skip) without the venv.
fn pycdlib(file: &Path) -> Option<Value> {
    let venv = common::venv::configdrive_venv()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configdrive_read.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pycdlib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

const DIR_MODE: u64 = 0o040_555;
const FILE_MODE: u64 = 0o100_444;

#[test]
fn config_drive_has_both_versions_rock_ridge_and_joliet() {
    let dict = json!({
        "meta_data": {"uuid": "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11", "hostname": "host-1", "public_keys": {"k": "ssh-ed25519 AAAA"}},
        "user_data": "#!/bin/sh\necho hello\n",
        "network_data": {"links": [], "networks": [], "services": [{"type": "dns", "address": "192.0.2.53"}]},
        "vendor_data": {"cloud": "ingot"}
    });
    let dir = tempfile::tempdir().unwrap();
    let file = build_to(&dict, dir.path(), "cd.iso");

    if let Some(b) = blkid(&file) {
        assert_eq!(b.get("TYPE").map(String::as_str), Some("iso9660"), "{b:?}");
        assert_eq!(
            b.get("LABEL").map(String::as_str),
            Some("config-2"),
            "{b:?}"
        );
    }

    if let Some(r) = pycdlib(&file) {
        assert_eq!(r["rock_ridge"], "1.09", "{r}");
        assert_eq!(r["joliet"], true);
        let rr = r["rr"].as_object().unwrap();
        let mut want = vec![
            "/".to_owned(),
            "/openstack".into(),
            "/openstack/2012-08-10".into(),
            "/openstack/latest".into(),
        ];
        for v in ["2012-08-10", "latest"] {
            for f in [
                "meta_data.json",
                "network_data.json",
                "user_data",
                "vendor_data2.json",
            ] {
                want.push(format!("/openstack/{v}/{f}"));
            }
        }
        want.sort();
        let got: Vec<String> = rr.keys().cloned().collect();
        assert_eq!(got, want, "the Rock Ridge names");
        for (path, e) in rr {
            let mode = if e["dir"] == true {
                DIR_MODE
            } else {
                FILE_MODE
            };
            assert_eq!(e["mode"].as_u64(), Some(mode), "mode of {path}: {e}");
        }
        for v in ["2012-08-10", "latest"] {
            let at = |f: &str| format!("/openstack/{v}/{f}");
            let text = |f: &str| rr[&at(f)]["data"].as_str().unwrap().to_owned();
            check_files(
                &text("meta_data.json"),
                &text("user_data"),
                &text("network_data.json"),
                &text("vendor_data2.json"),
            );
            // The Joliet tree holds the same files.
            for f in [
                "meta_data.json",
                "network_data.json",
                "user_data",
                "vendor_data2.json",
            ] {
                assert_eq!(r["joliet_files"][at(f)], rr[&at(f)]["data"], "{f}");
            }
        }
        assert_eq!(r["joliet_files"].as_object().unwrap().len(), 8);
    }
    check_with_the_kernel(&file, dir.path());
}

fn check_files(meta: &str, user: &str, net: &str, vendor: &str) {
    let meta: Value = serde_json::from_str(meta).unwrap();
    assert_eq!(meta["hostname"], "host-1");
    // Given by the caller: kept; the name defaults to the node's.
    assert_eq!(meta["uuid"], "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11");
    assert_eq!(meta["name"], "node-1");
    assert_eq!(user, "#!/bin/sh\necho hello\n");
    let net: Value = serde_json::from_str(net).unwrap();
    assert_eq!(net["services"][0]["address"], "192.0.2.53");
    let vendor: Value = serde_json::from_str(vendor).unwrap();
    assert_eq!(vendor, json!({"cloud": "ingot"}));
}

#[test]
fn empty_sections_are_left_out_and_meta_data_names_the_node() {
    let dict = json!({
        "meta_data": {"hostname": "host-2"},
        "user_data": "",
        "network_data": {},
        "vendor_data": {}
    });
    let dir = tempfile::tempdir().unwrap();
    let file = build_to(&dict, dir.path(), "cd.iso");
    let Some(r) = pycdlib(&file) else {
        return;
    };
    let files: Vec<&String> = r["rr"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, e)| e["dir"] == false)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        files,
        [
            "/openstack/2012-08-10/meta_data.json",
            "/openstack/latest/meta_data.json"
        ],
        "no network_data.json, vendor_data2.json or user_data"
    );
    let meta: Value = serde_json::from_str(
        r["rr"]["/openstack/latest/meta_data.json"]["data"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta,
        json!({"hostname": "host-2", "uuid": NODE, "name": "node-1"})
    );
}

#[test]
fn every_drive_has_its_own_volume_uuid() {
    let dict = json!({"meta_data": {"hostname": "h"}});
    let dir = tempfile::tempdir().unwrap();
    // Built back to back: usually within the same hundredth of a second.
    let a = build_to(&dict, dir.path(), "a.iso");
    let b = build_to(&dict, dir.path(), "b.iso");
    let (Some(a), Some(b)) = (blkid(&a), blkid(&b)) else {
        return;
    };
    let uuid = |m: &BTreeMap<String, String>| m.get("UUID").cloned().unwrap_or_default();
    // blkid's UUID of an ISO 9660: the volume's modification date,
    // YYYY-MM-DD-HH-MM-SS-CC.
    for m in [&a, &b] {
        let u = uuid(m);
        assert_eq!(u.len(), 22, "{m:?}");
        assert!(u.starts_with("20"), "{m:?}");
    }
    assert_ne!(uuid(&a), uuid(&b));
}

/// As root, with iso9660 in the kernel: mount it as cloud-init would, and
/// see Rock Ridge's names and modes.
fn check_with_the_kernel(file: &Path, dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !common::drive::is_root() || !fs.contains("iso9660") {
        eprintln!(
            "SKIPPED mount check: needs root and iso9660 in the kernel (pycdlib checked the image)"
        );
        return;
    }
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-o", "loop,ro", "-t", "iso9660"])
        .arg(file)
        .arg(&mnt)
        .status()
        .unwrap();
    if !st.success() {
        // Containers often have iso9660 but no loop devices.
        assert!(!common::must_not_skip(), "mounting the config drive failed");
        eprintln!("SKIPPED mount check: mount -o loop failed (pycdlib checked the image)");
        return;
    }
    let read = |p: &str| std::fs::read_to_string(mnt.join(p));
    let mode = |p: &str| {
        std::fs::metadata(mnt.join(p))
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    let files = (
        read("openstack/2012-08-10/meta_data.json"),
        read("openstack/latest/user_data"),
        read("openstack/latest/network_data.json"),
        read("openstack/latest/vendor_data2.json"),
    );
    let modes = (
        mode("openstack/latest/meta_data.json"),
        mode("openstack/latest"),
    );
    let _ = Command::new("umount").arg(&mnt).status();
    check_files(
        &files.0.unwrap(),
        &files.1.unwrap(),
        &files.2.unwrap(),
        &files.3.unwrap(),
    );
    assert_eq!(
        modes,
        (0o100_444, 0o040_555),
        "modes seen through the kernel"
    );
}

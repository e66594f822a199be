//! Config drives built from a dict: the ISO is recognised by blkid as
//! `iso9660` labelled `config-2`, and (as root) the kernel mounts it and
//! shows the files under their real names (Joliet).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::process::Command;

use base64::Engine;
use serde_json::{Map, Value, json};

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn config_drive_is_a_mountable_config_2_iso() {
    let dict: Map<String, Value> = json!({
        "meta_data": {"uuid": "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11", "hostname": "host-1", "public_keys": {"k": "ssh-ed25519 AAAA"}},
        "user_data": "#!/bin/sh\necho hello\n",
        "network_data": {"links": [], "networks": [], "services": []},
        "vendor_data": {}
    })
    .as_object()
    .cloned()
    .unwrap();
    let encoded = ingot_coordinator::configdrive::build_encoded(&dict, "node").unwrap();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let mut iso = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut iso)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cd.iso");
    std::fs::write(&file, &iso).unwrap();

    match Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(&file)
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("TYPE=iso9660"), "{text}");
            assert!(text.contains("LABEL=config-2"), "{text}");
        }
        Err(e) if !common::must_not_skip() => eprintln!("SKIPPED blkid check: {e}"),
        Err(e) => panic!("blkid is required: {e}"),
    }

    check_with_pycdlib(&file);
    check_with_the_kernel(&file, dir.path());
}

/// An independent reader: pycdlib (PyPI) parses the image strictly and reads
/// the files through the Joliet tree.
fn check_with_pycdlib(file: &std::path::Path) {
    let Some(venv) = common::venv::venv() else {
        return;
    };
    let python = venv.join("bin/python");
    let has = Command::new(&python)
        .args(["-c", "import pycdlib"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    if !has {
        let st = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pycdlib",
            ])
            .status()
            .unwrap();
        if !st.success() {
            assert!(!common::must_not_skip(), "pip install pycdlib failed");
            eprintln!("SKIPPED pycdlib check: pip install pycdlib failed");
            return;
        }
    }
    let script = r#"
import io, json, sys, pycdlib
iso = pycdlib.PyCdlib()
iso.open(sys.argv[1])
assert iso.has_joliet(), "no Joliet"
out = {}
for name in ["meta_data.json", "user_data", "network_data.json", "vendor_data.json"]:
    buf = io.BytesIO()
    iso.get_file_from_iso_fp(buf, joliet_path="/openstack/latest/" + name)
    out[name] = buf.getvalue().decode()
print(json.dumps(out))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pycdlib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_files(
        files["meta_data.json"].as_str().unwrap(),
        files["user_data"].as_str().unwrap(),
        files["network_data.json"].as_str().unwrap(),
        files["vendor_data.json"].as_str().unwrap(),
    );
}

fn check_files(meta: &str, user: &str, net: &str, vendor: &str) {
    let meta: Value = serde_json::from_str(meta).unwrap();
    assert_eq!(meta["hostname"], "host-1");
    assert_eq!(meta["uuid"], "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11");
    assert_eq!(user, "#!/bin/sh\necho hello\n");
    assert!(net.contains("\"links\""));
    assert_eq!(vendor, "{}");
}

/// As root, with iso9660 in the kernel: mount it as cloud-init would.
fn check_with_the_kernel(file: &std::path::Path, dir: &std::path::Path) {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !is_root() || !fs.contains("iso9660") {
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
    assert!(st.success(), "mounting the config drive failed");
    let read = |p: &str| std::fs::read_to_string(mnt.join(p));
    let files = (
        read("openstack/latest/meta_data.json"),
        read("openstack/latest/user_data"),
        read("openstack/latest/network_data.json"),
        read("openstack/latest/vendor_data.json"),
    );
    let _ = Command::new("umount").arg(&mnt).status();
    check_files(
        &files.0.unwrap(),
        &files.1.unwrap(),
        &files.2.unwrap(),
        &files.3.unwrap(),
    );
}

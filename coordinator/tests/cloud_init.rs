//! cloud-init reads Ingot's config drives as it reads Ironic's (issue 14
//! items 6 and 9): cloud-init from Debian's package (`apt-get download
//! cloud-init`, unpacked with `dpkg-deb -x` into `target/cloud-init-deb`)
//! runs its own config drive code (`tests/cloud_init_check.py`) on drives
//! built by `configdrive::build_encoded` and extracted by pycdlib through
//! their Rock Ridge names:
//!
//! - a drive with every section: `ConfigDriveReader.read_v2()` reads the
//!   `2012-08-10` directory, the instance ID is the node's UUID (Ironic's
//!   default for `meta_data.uuid`), the hostname, keys, user data and
//!   vendor data (`vendor_data2.json`) are what was given, and the network
//!   configuration applied is `convert_net_json` of the `network_data`;
//! - a drive whose `network_data`, `vendor_data` and `user_data` are empty:
//!   no `networkdata` in `read_v2()`, the datasource's `network_json` is
//!   `None` and its `network_config` too, so `Init` falls back to the
//!   distro's fallback configuration (DHCP on the first NIC);
//! - the control: the same drive with the `network_data.json` = `{}` that
//!   Ingot wrote before: cloud-init applies an empty network configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

/// cloud-init's `dist-packages` directory from Debian's package, unpacked
/// once into `target/cloud-init-deb` (or `$INGOT_CLOUD_INIT_DIR`); `None`
/// (skip) when it cannot be had and skipping is allowed.
fn cloud_init() -> Option<PathBuf> {
    let dir = std::env::var_os("INGOT_CLOUD_INIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cloud-init-deb"));
    let pkgs = dir.join("root/usr/lib/python3/dist-packages");
    if pkgs.join("cloudinit/sources/helpers/openstack.py").exists() {
        return Some(pkgs);
    }
    match fetch(&dir) {
        Ok(()) => Some(pkgs),
        Err(e) if common::must_not_skip() => panic!("cloud-init (Debian package) is required: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no cloud-init: {e}");
            None
        }
    }
}

/// `apt-get download cloud-init` into `dir` (after `apt-get update` when
/// there are no package lists yet and we are root), then `dpkg-deb -x`.
fn fetch(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", "cloud-init"])
            .current_dir(dir)
            .output()
            .map_err(|e| format!("running apt-get: {e}"))
    };
    let mut out = download()?;
    if !out.status.success() && common::drive::is_root() {
        let _ = Command::new("apt-get").args(["update", "-q"]).output();
        out = download()?;
    }
    if !out.status.success() {
        return Err(format!(
            "apt-get download cloud-init: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let deb = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cloud-init_") && n.ends_with(".deb"))
        })
        .max()
        .ok_or("apt-get download left no cloud-init_*.deb")?;
    let tmp = dir.join(format!("root.tmp.{}", std::process::id()));
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tmp)
        .status()
        .map_err(|e| format!("running dpkg-deb: {e}"))?;
    if !st.success() {
        return Err(format!("dpkg-deb -x {} failed", deb.display()));
    }
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root).map_err(|e| e.to_string())
}

/// Builds the drive of `dict` for the node `NODE` named `node-1` and
/// extracts its files to `dir/name` with pycdlib (Rock Ridge names).
fn drive_files(venv: &Path, dict: Value, dir: &Path, name: &str) -> PathBuf {
    let file = common::drive::write_iso(&dict, NODE, "node-1", &dir.join(format!("{name}.iso")));
    let out_dir = dir.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configdrive_read.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(&file)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pycdlib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn cloud_init_reads_the_drives_as_ironics() {
    let Some(pkgs) = cloud_init() else {
        return;
    };
    let Some(venv) = common::venv::configdrive_venv() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let network = json!({
        "links": [{"id": "l0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56", "mtu": 1500}],
        "networks": [{"id": "n0", "link": "l0", "type": "ipv4", "ip_address": "192.0.2.10",
                      "netmask": "255.255.255.0", "routes": []}],
        "services": [{"type": "dns", "address": "192.0.2.53"}]
    });
    let full = drive_files(
        &venv,
        json!({
            "meta_data": {"hostname": "host-1", "public_keys": {"k": "ssh-ed25519 AAAA k@h"}},
            "user_data": "#cloud-config\nhostname: host-1\n",
            "network_data": network,
            "vendor_data": {"cloud-init": "#cloud-config\nruncmd: [vendor]\n"}
        }),
        dir,
        "full",
    );
    let minimal = drive_files(
        &venv,
        json!({
            "meta_data": {"hostname": "host-2"},
            "user_data": "",
            "network_data": {},
            "vendor_data": {}
        }),
        dir,
        "minimal",
    );
    // The control: what Ingot wrote before, `network_data.json` = `{}`.
    let empty_net = dir.join("empty-net");
    copy_tree(&minimal, &empty_net);
    for v in ["2012-08-10", "latest"] {
        std::fs::write(
            empty_net.join(format!("openstack/{v}/network_data.json")),
            "{}",
        )
        .unwrap();
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloud_init_check.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .args([&full, &minimal, &empty_net])
        .env("PYTHONPATH", &pkgs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloud_init_check.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let [full, minimal, empty_net] = [&results[0], &results[1], &results[2]];

    // Every section, read as given.
    let r = &full["read_v2"];
    assert_eq!(r["version_dir"], "2012-08-10", "{r}");
    for k in ["metadata", "networkdata", "userdata", "vendordata2"] {
        assert!(
            r["keys"].as_array().unwrap().contains(&json!(k)),
            "{k}: {r}"
        );
    }
    assert_eq!(r["metadata"]["uuid"], NODE);
    assert_eq!(r["metadata"]["name"], "node-1");
    assert_eq!(r["networkdata"], network);
    let ds = &full["datasource"];
    assert_eq!(ds["get_data"], true, "{ds}");
    assert_eq!(ds["instance_id"], NODE);
    assert_eq!(ds["hostname"], "host-1");
    assert_eq!(ds["public_keys"], json!(["ssh-ed25519 AAAA k@h"]));
    assert_eq!(ds["userdata_raw"], "#cloud-config\nhostname: host-1\n");
    assert_eq!(ds["vendordata2_raw"], "#cloud-config\nruncmd: [vendor]\n");
    let want_net = json!({"version": 1, "config": [
        {"type": "physical", "mtu": 1500, "name": "eth0", "mac_address": "52:54:00:12:34:56",
         "subnets": [{"type": "static", "ipv4": true, "address": "192.0.2.10",
                      "netmask": "255.255.255.0", "routes": []}]},
        {"type": "nameserver", "address": "192.0.2.53"}
    ]});
    assert_eq!(full["net_json"], want_net);
    assert_eq!(ds["network_config"], want_net);
    assert_eq!(
        full["networking"],
        json!({"config": want_net, "source": "ds"})
    );

    // Empty sections: no network data, so the fallback (DHCP).
    let r = &minimal["read_v2"];
    assert_eq!(
        r["keys"],
        json!(["ec2-metadata", "files", "metadata", "userdata", "version"]),
        "{r}"
    );
    assert_eq!(r["userdata"], "");
    let ds = &minimal["datasource"];
    assert_eq!(ds["get_data"], true, "{ds}");
    assert_eq!(ds["instance_id"], NODE);
    assert_eq!(ds["hostname"], "host-2");
    assert!(ds["network_json"].is_null(), "{ds}");
    assert!(ds["network_config"].is_null(), "{ds}");
    assert!(ds["vendordata2_raw"].is_null(), "{ds}");
    assert_eq!(
        minimal["networking"],
        json!({"config": {"fallback": "dhcp on the first NIC"}, "source": "fallback"})
    );

    // The control shows what the fallback avoids: no network at all.
    assert_eq!(
        empty_net["networking"],
        json!({"config": {"version": 1, "config": []}, "source": "ds"})
    );
}

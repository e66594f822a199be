//! Replays the exact command sequences a real Ironic conductor sent to an
//! agent during a deploy and a cleaning (../shared/reference/
//! ironic-api-requests.md: §4.1, the real IPA 13 trace with
//! deploy_forces_oob_reboot; §4.2, manual cleaning then a UEFI deploy with
//! install_bootloader and power_off). Every command must succeed.
//!
//! The agent reads the QEMU fixture inventory; the root disk is chosen by
//! the node's root device hints (`serial: VIRTIO-SER-1` → `/dev/vda`) and
//! opened as `<tmp>/dev/vda` (`--dev-dir`, a test-only mapping), a 256 MiB
//! file. Power actions run in dry-run mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_support;
#[allow(dead_code, clippy::all)]
mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use agent_support::{Conductor, Coordinator, gpt_image, sha256, start_agent};
use base64::Engine as _;
use serde_json::{Value, json};

const MAC: &str = "52:54:00:12:34:56";
const DISK: u64 = 256 << 20;

/// Ironic's node dict (trimmed: 65 fields in reality, the agent reads these).
fn node(coord: &Coordinator) -> Value {
    coord.state.lock().unwrap().node.clone()
}

fn ports() -> Value {
    json!([{"uuid": "b0b1f3c3-7a4c-4b86-9d3c-7f6a1e2d3c4b", "address": MAC, "pxe_enabled": true,
            "local_link_connection": {}, "physical_network": null}])
}

struct Setup {
    coord: Coordinator,
    server: common::http::TestServer,
    image: Vec<u8>,
    dir: tempfile::TempDir,
    _agent: agent_support::AgentProc,
    c: Conductor,
}

fn setup() -> Setup {
    let coord = Coordinator::start(MAC, "1.115");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dev")).unwrap();
    let vda = std::fs::File::create(dir.path().join("dev/vda")).unwrap();
    vda.set_len(DISK).unwrap();
    // Old data on the disk that cleaning must remove: an ext4 superblock magic.
    vda.write_all_at(&[0x53, 0xef], 1024 + 0x38).unwrap();
    drop(vda);
    // The fixture's other disks, so erase steps find every disk they list.
    for other in ["nvme0n1", "sda"] {
        std::fs::File::create(dir.path().join("dev").join(other))
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
    }
    let image = uefi_image(dir.path());
    let files = [("gpt.raw".to_string(), Arc::new(image.clone()))]
        .into_iter()
        .collect();
    let server = common::http::TestServer::start(files, Default::default());
    let agent = start_agent(&coord.url(), dir.path(), &[]);
    let hb = coord.wait_heartbeat(0, Duration::from_secs(30));
    let c = Conductor::from_heartbeat(&hb);
    Setup {
        coord,
        server,
        image,
        dir,
        _agent: agent,
        c,
    }
}

/// The served image: `gpt_image`'s partition 1 made an EFI system partition
/// (type EF00, FAT with `EFI/BOOT/BOOTX64.EFI`), so that the UEFI
/// `install_bootloader` finds its loader, as on the real deploy replayed.
fn uefi_image(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("uefi-image.raw");
    std::fs::write(&path, gpt_image(16 << 20)).unwrap();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.env("MTOOLS_SKIP_CHECK", "1").output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    };
    run(std::process::Command::new("sgdisk")
        .args(["-t", "1:EF00"])
        .arg(&path));
    // Partition 1: sectors 2048..=14335, 6 MiB.
    run(std::process::Command::new("mkfs.vfat")
        .args(["--offset", "2048"])
        .arg(&path)
        .arg("6144"));
    let at = format!("{}@@1M", path.display());
    run(std::process::Command::new("mmd").args(["-i", &at, "::/EFI", "::/EFI/BOOT"]));
    let loader = dir.join("BOOTX64.EFI");
    std::fs::write(&loader, b"MZ test loader").unwrap();
    run(std::process::Command::new("mcopy")
        .args(["-i", &at])
        .arg(&loader)
        .arg("::/EFI/BOOT/BOOTX64.EFI"));
    let image = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    image
}

fn image_info(s: &Setup) -> Value {
    json!({"id": "gpt.raw", "urls": [s.server.url("gpt.raw")], "disk_format": "raw",
           "container_format": null, "stream_raw_images": true,
           "checksum": sha256(&s.image), "node_uuid": "73473829-cbcc-4f1c-a268-2fa0637acfcb"})
}

fn ok(r: &(u16, Value), name: &str, status: &str) -> Value {
    assert_eq!(r.0, 200, "{name}: {}", r.1);
    assert_eq!(r.1["command_name"], name, "{}", r.1);
    assert_eq!(r.1["command_status"], status, "{}", r.1);
    assert_eq!(r.1["command_error"], Value::Null, "{}", r.1);
    r.1.clone()
}

fn disk(s: &Setup) -> Vec<u8> {
    std::fs::read(s.dir.path().join("dev/vda")).unwrap()
}

/// §4.1: get_deploy_steps, GET commands, execute_deploy_step(write_image),
/// GET commands until SUCCEEDED, get_partition_uuids, sync.
#[test]
fn replay_real_ipa_deploy_with_oob_reboot() {
    let s = setup();
    let c = &s.c;
    let r = ok(
        &c.command(
            "deploy.get_deploy_steps",
            json!({"node": node(&s.coord), "ports": ports()}),
            true,
        ),
        "get_deploy_steps",
        "SUCCEEDED",
    );
    let steps = r["command_result"]["deploy_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "write_image" && s["interface"] == "deploy")
    );
    let versions = r["command_result"]["hardware_manager_version"].clone();
    assert_eq!(c.commands().len(), 1);

    let step = json!({"interface": "deploy", "step": "write_image",
                      "args": {"image_info": image_info(&s), "configdrive": null}});
    let r = c.command(
        "deploy.execute_deploy_step",
        json!({"step": step, "node": node(&s.coord), "ports": ports(), "deploy_version": versions}),
        false,
    );
    ok(&r, "execute_deploy_step", "RUNNING");
    let done = c.wait_last("execute_deploy_step", Duration::from_secs(60));
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    let msg = done["command_result"]["deploy_result"]["result"]
        .as_str()
        .unwrap();
    assert_eq!(
        msg,
        "prepare_image: image (gpt.raw) written to device /dev/vda root_uuid=0x00000000"
    );
    assert_eq!(done["command_result"]["deploy_step"], step);
    // The image arrived; its GPT was fitted to the 256 MiB disk, as IPA's
    // `sgdisk -e` does: the primary header names the disk's last sector as
    // the backup, which is there, and the protective MBR covers the disk.
    let d = disk(&s);
    let n = s.image.len();
    assert_eq!(&d[..446], &s.image[..446]);
    assert_eq!(&d[1024..n - 33 * 512], &s.image[1024..n - 33 * 512]);
    let gpt = &done["command_result"]["deploy_result"]["gpt"];
    assert_eq!(gpt["moved"], true, "{gpt}");
    assert_eq!(gpt["backup_lba_before"], n as u64 / 512 - 1);
    assert_eq!(gpt["backup_lba"], DISK / 512 - 1);
    assert_eq!(gpt["protective_mbr_fixed"], true);
    assert_eq!(&d[512 + 32..512 + 40], &(DISK / 512 - 1).to_le_bytes());
    assert_eq!(&d[DISK as usize - 512..DISK as usize - 504], b"EFI PART");
    assert_eq!(
        &d[446 + 12..446 + 16],
        &u32::try_from(DISK / 512 - 1).unwrap().to_le_bytes()
    );
    assert!(d[n - 512..n].iter().all(|&b| b == 0), "stale backup header");
    let verify = std::process::Command::new("sfdisk")
        .arg("--verify")
        .arg(s.dir.path().join("dev/vda"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout).to_string()
        + &String::from_utf8_lossy(&verify.stderr);
    assert!(
        text.contains("No errors detected") && !text.contains("mismatch"),
        "{text}"
    );

    let r = ok(
        &c.command("standby.get_partition_uuids", json!({}), true),
        "get_partition_uuids",
        "SUCCEEDED",
    );
    assert_eq!(r["command_result"], json!({"root uuid": "0x00000000"}));
    let r = ok(
        &c.command("standby.sync", json!({}), true),
        "sync",
        "SUCCEEDED",
    );
    assert_eq!(r["command_result"], Value::Null);
}

/// §4.2: manual cleaning (erase_devices_metadata), then a deploy with
/// install_bootloader (UEFI) and power_off; plus a config drive and logs.
#[test]
fn replay_cleaning_then_uefi_deploy() {
    let s = setup();
    let c = &s.c;
    assert_eq!(&disk(&s)[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
    let r = ok(
        &c.command(
            "clean.get_clean_steps",
            json!({"node": node(&s.coord), "ports": ports()}),
            true,
        ),
        "get_clean_steps",
        "SUCCEEDED",
    );
    let versions = r["command_result"]["hardware_manager_version"].clone();
    let step = json!({"interface": "deploy", "step": "erase_devices_metadata", "abortable": true, "priority": 99});
    ok(&c.command("clean.execute_clean_step", json!({"step": step, "node": node(&s.coord), "ports": ports(), "clean_version": versions}), false), "execute_clean_step", "RUNNING");
    let done = c.wait_last("execute_clean_step", Duration::from_secs(60));
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    assert_eq!(done["command_result"]["clean_step"], step);
    // The wipe report is the step result: every disk verified, the old
    // superblock found on vda.
    let report = &done["command_result"]["clean_result"];
    assert_eq!(report["success"], true, "{report}");
    let devs = report["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 3);
    assert!(devs.iter().all(|d| d["status"] == "verified"), "{report}");
    let dev = devs
        .iter()
        .find(|d| d["path"].as_str().unwrap().ends_with("/dev/vda"))
        .unwrap();
    assert!(
        dev["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "ext2"),
        "{dev}"
    );
    assert_eq!(&disk(&s)[1024 + 0x38..1024 + 0x3a], &[0, 0]);

    // Deploy with a config drive (gzip + base64, as Nova sends it).
    ok(
        &c.command(
            "deploy.get_deploy_steps",
            json!({"node": node(&s.coord), "ports": ports()}),
            true,
        ),
        "get_deploy_steps",
        "SUCCEEDED",
    );
    let drive: Vec<u8> = b"CONFIG-2 DRIVE "
        .iter()
        .cycle()
        .take(100_000)
        .copied()
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&drive).unwrap();
    let cd = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let step = json!({"interface": "deploy", "step": "write_image", "args": {"image_info": image_info(&s), "configdrive": cd}});
    ok(&c.command("deploy.execute_deploy_step", json!({"step": step, "node": node(&s.coord), "ports": ports(), "deploy_version": {"generic_hardware_manager": "1.2"}}), false), "execute_deploy_step", "RUNNING");
    let done = c.wait_last("execute_deploy_step", Duration::from_secs(60));
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    let placed = &done["command_result"]["deploy_result"]["configdrive"];
    assert_eq!(placed["table"], "gpt");
    assert_eq!(placed["partition"], 2);
    assert_eq!(placed["created"], true);
    let off = placed["offset"].as_u64().unwrap();
    assert_eq!(off, DISK - (64 << 20) - (1 << 20));
    let d = disk(&s);
    assert_eq!(&d[off as usize..off as usize + drive.len()], &drive[..]);
    // The image's partition data is intact, and the backup GPT moved to the end.
    assert_eq!(&d[1 << 20..7 << 20], &s.image[1 << 20..7 << 20]);
    assert_eq!(&d[DISK as usize - 512..DISK as usize - 504], b"EFI PART");

    let r = ok(
        &c.command("standby.get_partition_uuids", json!({}), true),
        "get_partition_uuids",
        "SUCCEEDED",
    );
    let root_uuid = r["command_result"]["root uuid"].clone();
    let p = json!({"root_uuid": root_uuid, "efi_system_part_uuid": null, "prep_boot_part_uuid": null, "target_boot_mode": "uefi"});
    ok(
        &c.command("image.install_bootloader", p, false),
        "install_bootloader",
        "RUNNING",
    );
    let done = c.wait_last("install_bootloader", Duration::from_secs(30));
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    // The image's fallback loader is found on its ESP; the fixture root has
    // /sys/firmware/efi but no efivars, so no boot entry is written.
    let uefi = &done["command_result"]["uefi"];
    assert_eq!(uefi["esp_partition"], 1, "{done}");
    assert_eq!(uefi["copied_from"], Value::Null, "{done}");
    assert_eq!(uefi["boot_entry"], Value::Null, "{done}");

    let r = ok(
        &c.command("log.collect_system_logs", json!({}), true),
        "collect_system_logs",
        "SUCCEEDED",
    );
    let gz = base64::engine::general_purpose::STANDARD
        .decode(r["command_result"]["system_logs"].as_str().unwrap())
        .unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
    let text = String::from_utf8_lossy(&tar);
    assert!(
        text.contains("ingot-agent.log") && text.contains("executing command"),
        "log bundle"
    );

    ok(
        &c.command("standby.power_off", json!({}), false),
        "power_off",
        "RUNNING",
    );
    let done = c.wait_last("power_off", Duration::from_secs(30));
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    // Every command of the sequence succeeded.
    for cmd in c.commands() {
        assert_eq!(cmd["command_status"], "SUCCEEDED", "{cmd}");
    }
}

//! The test image boots from disk in QEMU (TCG) and reads its config drive:
//! the `ingot-test-image` binary builds it from the Debian kernel and the
//! static `ingot-testimage-init` (its JSON report is checked, and a second
//! build through the library must be identical), the test appends a `config-2` ISO 9660 partition
//! at the end of the disk as the agent does (a new DOS partition in the last
//! 64 MiB), boots it through SeaBIOS and syslinux with the disk on
//! virtio-blk and on NVMe, and waits for the init's marker and the UUID on
//! the serial console; and once with a VFAT config drive instead.
//!
//! Skipped (with a message) without the unpacked Debian kernel, syslinux or
//! QEMU, unless `INGOT_REQUIRE_PRIVILEGED=1`, where the kernel is fetched and
//! anything else missing fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_test_image::{self as testimage, Arch, Firmware, ImageFormat, TestImageOptions};

const UUID: &str = "5b0b3c1e-7f2a-4c55-9e61-2d9f8a4b7c30";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn required() -> bool {
    std::env::var("INGOT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Says why the test is skipped, or fails it when it must run.
fn skip(test: &str, why: &str) {
    assert!(!required(), "{test}: {why} (INGOT_REQUIRE_PRIVILEGED=1)");
    eprintln!("SKIPPED {test}: {why}");
}

/// The unpacked Debian amd64 kernel under target/kernel (fetched when required).
fn kernel() -> Option<(PathBuf, PathBuf)> {
    debian_kernel("amd64")
}

/// The unpacked Debian kernel for `debian_arch` (`amd64`, `arm64`) under
/// target/kernel, `linux-image-<version>-<debian_arch>` (fetched when
/// required). Both architectures' kernels may be unpacked there.
fn debian_kernel(debian_arch: &str) -> Option<(PathBuf, PathBuf)> {
    let root = workspace().join("target/kernel");
    let suffix = format!("-{debian_arch}");
    let found = std::fs::read_dir(&root).ok().and_then(|rd| {
        let mut pkgs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(".unpacked").exists())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
            })
            .collect();
        pkgs.sort();
        pkgs.pop()
    });
    if let Some(pkg) = found {
        let version = pkg
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("linux-image-")
            .to_string();
        let vmlinuz = pkg.join(format!("boot/vmlinuz-{version}"));
        if vmlinuz.is_file() {
            return Some((vmlinuz, pkg));
        }
    }
    if required() {
        let k =
            ingot_initramfs::fetch::debian(&root, debian_arch).expect("fetch the Debian kernel");
        return Some((k.vmlinuz, k.modules));
    }
    None
}

/// Builds the static init into this build's target directory.
fn static_init() -> PathBuf {
    static_init_for("x86_64-unknown-linux-musl")
}

/// Builds the static init for the musl `target` into this build's target
/// directory: `<target dir>/<target>/agent/ingot-testimage-init`.
fn static_init_for(musl_target: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "--profile", "agent"])
        .args(["--target", musl_target])
        .args(["-p", "ingot-testimage-init", "--target-dir"])
        .arg(&target)
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(st.success(), "building ingot-testimage-init failed");
    target.join(format!("{musl_target}/agent/ingot-testimage-init"))
}

/// Whether `program` runs (`--version`).
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn qemu_found() -> bool {
    runs("qemu-system-x86_64")
}

fn both32(v: u32) -> [u8; 8] {
    let mut b = [0; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn record(name: &[u8], extent: u32, size: u32, dir: bool) -> Vec<u8> {
    let len = 33 + name.len() + (1 - name.len() % 2);
    let mut r = vec![0u8; len];
    r[0] = len as u8;
    r[2..10].copy_from_slice(&both32(extent));
    r[10..18].copy_from_slice(&both32(size));
    r[25] = if dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&[1, 0, 0, 1]);
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

/// A minimal config drive: ISO 9660 labelled `config-2` holding
/// `openstack/latest/meta_data.json` under level-1 names, as the
/// coordinator's writer names them in its primary tree.
fn config_drive(meta: &[u8]) -> Vec<u8> {
    const S: usize = 2048;
    let mut img = vec![0u8; 22 * S];
    let sz = S as u32;
    let dirs: [(u32, Vec<Vec<u8>>); 3] = [
        (
            18,
            vec![
                record(&[0], 18, sz, true),
                record(&[1], 18, sz, true),
                record(b"OPENSTAC", 19, sz, true),
            ],
        ),
        (
            19,
            vec![
                record(&[0], 19, sz, true),
                record(&[1], 18, sz, true),
                record(b"LATEST", 20, sz, true),
            ],
        ),
        (
            20,
            vec![
                record(&[0], 20, sz, true),
                record(&[1], 19, sz, true),
                record(b"META_DAT.JSO;1", 21, meta.len() as u32, false),
            ],
        ),
    ];
    for (extent, recs) in dirs {
        let mut off = extent as usize * S;
        for r in recs {
            img[off..off + r.len()].copy_from_slice(&r);
            off += r.len();
        }
    }
    img[21 * S..21 * S + meta.len()].copy_from_slice(meta);
    let vd = &mut img[16 * S..17 * S];
    vd[0] = 1;
    vd[1..6].copy_from_slice(b"CD001");
    vd[6] = 1;
    let mut id = [b' '; 32];
    id[..8].copy_from_slice(b"config-2");
    vd[40..72].copy_from_slice(&id);
    vd[80..88].copy_from_slice(&both32(22));
    vd[128..132].copy_from_slice(&[0, 8, 8, 0]);
    vd[156..190].copy_from_slice(&record(&[0], 18, sz, true));
    img[17 * S] = 255;
    img[17 * S + 1..17 * S + 6].copy_from_slice(b"CD001");
    img[17 * S + 6] = 1;
    img
}

/// A VFAT config drive (FAT16, label `CONFIG-2`) made with dosfstools and mtools.
fn vfat_config_drive(dir: &Path, meta: &[u8]) -> Vec<u8> {
    let img = dir.join("vfat-drive.img");
    std::fs::remove_file(&img).ok();
    let meta_path = dir.join("meta_data.json");
    std::fs::write(&meta_path, meta).unwrap();
    let mkfs = ["/usr/sbin/mkfs.vfat", "/sbin/mkfs.vfat"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    let run = |c: &mut Command| {
        let st = c.env("MTOOLS_SKIP_CHECK", "1").status().unwrap();
        assert!(st.success(), "{c:?}");
    };
    run(Command::new(mkfs)
        .args(["-F", "16", "-n", "CONFIG-2", "-C"])
        .arg(&img)
        .arg("32768"));
    run(Command::new("mmd")
        .arg("-i")
        .arg(&img)
        .args(["::/openstack", "::/openstack/latest"]));
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(&meta_path)
        .arg("::/openstack/latest/meta_data.json"));
    std::fs::read(&img).unwrap()
}

fn meta_data() -> String {
    format!(r#"{{"hostname": "lab-node", "name": "lab-node", "uuid": "{UUID}"}}"#)
}

/// The built image grown by 64 MiB, with the config drive written into a
/// new DOS partition 2 over the last 64 MiB (type 0x83), as the agent adds it.
fn disk_with_config_drive(image: &Path, disk: &Path, drive: &[u8]) {
    std::fs::copy(image, disk).unwrap();
    let f = std::fs::File::options().write(true).open(disk).unwrap();
    let start = f.metadata().unwrap().len();
    let size = 64u64 << 20;
    f.set_len(start + size).unwrap();
    let mut e = [0u8; 16];
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0x83;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&((start / 512) as u32).to_le_bytes());
    e[12..16].copy_from_slice(&((size / 512) as u32).to_le_bytes());
    f.write_all_at(&e, 446 + 16).unwrap();
    f.write_all_at(drive, start).unwrap();
}

struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Builds the image once per test binary run (tests share it).
fn image(test: &str) -> Option<PathBuf> {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return Some(p.clone());
    }
    let Some((vmlinuz, modules)) = kernel() else {
        skip(
            test,
            "no Debian kernel in target/kernel (cargo run -p ingot-initramfs -- fetch-kernel --debian --out target/kernel)",
        );
        return None;
    };
    if let Err(e) = testimage::check_tools(ImageFormat::Raw) {
        skip(test, &e.to_string());
        return None;
    }
    if !qemu_found() {
        skip(
            test,
            "qemu-system-x86_64 not installed (package qemu-system-x86)",
        );
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-image");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("test-image.raw");
    let opts = TestImageOptions::new(vmlinuz, modules, static_init(), output.clone());
    // The binary, as the lab runs it: arguments and JSON report.
    let out = Command::new(env!("CARGO_BIN_EXE_ingot-test-image"))
        .arg("--kernel")
        .arg(&opts.kernel)
        .arg("--modules")
        .arg(&opts.modules)
        .arg("--init")
        .arg(&opts.init)
        .arg("--output")
        .arg(&output)
        .env_remove("SOURCE_DATE_EPOCH")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ingot-test-image failed: {}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "test image: {} bytes, initrd {} bytes, modules {}",
        report["image_bytes"], report["initrd_bytes"], report["modules"]
    );
    assert_eq!(report["disk_bytes"], 64u64 << 20);
    assert_eq!(report["format"], "raw");
    assert_eq!(report["output"], output.display().to_string());
    assert!(
        report["kernel_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    // virtio_blk is carried, or built into the kernel.
    let names = |k: &str| report[k].as_array().cloned().unwrap_or_default();
    assert!(
        names("modules")
            .iter()
            .chain(names("builtin").iter())
            .any(|n| n == "virtio_blk"),
        "{report}"
    );
    assert_eq!(
        report["image_bytes"].as_u64(),
        Some(std::fs::metadata(&output).unwrap().len())
    );
    // The same inputs give the same image, through the library too.
    let again = dir.join("again.raw");
    testimage::build(&TestImageOptions {
        output: again.clone(),
        ..opts
    })
    .unwrap();
    assert!(
        std::fs::read(&output).unwrap() == std::fs::read(&again).unwrap(),
        "two builds differ"
    );
    *built = Some(output.clone());
    Some(output)
}

/// Boots the disk with `device` (a QEMU -device, `drive=d0`) and returns the
/// console once the init reported, and the seconds it took.
fn boot(test: &str, disk: &Path, device: &str) -> (String, f64) {
    boot_with(test, disk, device, &[])
}

/// [`boot`] with extra QEMU arguments (the UEFI firmware).
fn boot_with(test: &str, disk: &Path, device: &str, extra: &[String]) -> (String, f64) {
    let machine = ["-machine", "q35,graphics=off", "-m", "512"].map(String::from);
    boot_qemu(
        test,
        "qemu-system-x86_64",
        &machine,
        disk,
        device,
        extra,
        180,
    )
}

/// Boots `disk` on `device` in `qemu` with `machine` and `extra` arguments
/// until the init says it is up (at most `limit_s` seconds); returns the
/// console and the seconds it took.
fn boot_qemu(
    test: &str,
    qemu: &str,
    machine: &[String],
    disk: &Path,
    device: &str,
    extra: &[String],
    limit_s: u64,
) -> (String, f64) {
    let console = disk.with_extension("console.log");
    std::fs::remove_file(&console).ok();
    let started = Instant::now();
    let vm = Vm(Command::new(qemu)
        .args(extra)
        .args(machine)
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-drive")
        .arg(format!("file={},if=none,id=d0,format=raw", disk.display()))
        .args(["-device", device])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu"));
    // TCG on a loaded 2-core machine is slow: allow minutes, report seconds.
    let deadline = started + Duration::from_secs(limit_s);
    loop {
        let log = std::fs::read_to_string(&console).unwrap_or_default();
        // The init prints its outcome, then "up; idling".
        if log.contains("INGOT-TEST-IMAGE up; idling") {
            let secs = started.elapsed().as_secs_f64();
            drop(vm);
            eprintln!("{test}: console line after {secs:.1} s");
            return (log, secs);
        }
        if Instant::now() > deadline {
            drop(vm);
            panic!("{test}: no UUID line within {limit_s} s; console:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn boots_and_reads_config_drive(test: &str, device: &str, vfat: bool) {
    let Some(image) = image(test) else {
        return;
    };
    let disk = image.with_file_name(format!("{test}.raw"));
    let drive = if vfat {
        vfat_config_drive(image.parent().unwrap(), meta_data().as_bytes())
    } else {
        config_drive(meta_data().as_bytes())
    };
    disk_with_config_drive(&image, &disk, &drive);
    let (log, secs) = boot(test, &disk, device);
    assert!(
        log.contains("INGOT-TEST-IMAGE BOOTED FROM DISK"),
        "{test}: no marker:\n{log}"
    );
    // The serial console ends lines with \r\n.
    assert!(
        log.lines()
            .any(|l| l.trim_end() == format!("INGOT-TEST-IMAGE instance_uuid={UUID}")),
        "{test}: no UUID:\n{log}"
    );
    assert!(
        log.contains("SYSLINUX"),
        "{test}: not booted through syslinux:\n{log}"
    );
    assert!(
        !log.contains("INGOT-TEST-IMAGE module "),
        "{test}: a module failed to load:\n{log}"
    );
    std::fs::write(
        disk.with_extension("figures.json"),
        format!("{{\"seconds_qemu_start_to_uuid\": {secs:.1}}}\n"),
    )
    .unwrap();
    std::fs::remove_file(&disk).ok();
}

#[test]
fn boots_from_virtio_blk_and_prints_the_uuid() {
    boots_and_reads_config_drive(
        "virtio",
        "virtio-blk-pci,drive=d0,serial=INGOT-VIRTIO",
        false,
    );
}

#[test]
fn boots_from_nvme_and_prints_the_uuid() {
    boots_and_reads_config_drive("nvme", "nvme,drive=d0,serial=INGOT-NVME", false);
}

#[test]
fn reads_a_vfat_config_drive() {
    boots_and_reads_config_drive("vfat", "virtio-blk-pci,drive=d0,serial=INGOT-VFAT", true);
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Builds the UEFI variant (`--firmware uefi`) with the binary, checks a
/// second build through the library is identical, and returns it.
fn uefi_image(test: &str) -> Option<PathBuf> {
    let Some((vmlinuz, modules)) = kernel() else {
        skip(test, "no Debian kernel in target/kernel");
        return None;
    };
    if let Err(e) = testimage::check_tools_for(ImageFormat::Raw, Firmware::Uefi) {
        skip(test, &e.to_string());
        return None;
    }
    if !qemu_found() || !Path::new(OVMF_CODE).is_file() || !Path::new(OVMF_VARS).is_file() {
        skip(
            test,
            "qemu-system-x86_64 or OVMF not installed (packages qemu-system-x86, ovmf)",
        );
        return None;
    }
    Some(build_uefi(
        "test-image-uefi",
        vmlinuz,
        modules,
        static_init(),
        Arch::X86_64,
    ))
}

/// Builds a UEFI image for `arch` into `CARGO_TARGET_TMPDIR/<name>/<name>.raw`
/// with the binary, checks its report and layout (GPT, ESP, the
/// architecture's fallback loader only), checks a second build through the
/// library is identical, and returns it.
fn build_uefi(
    name: &str,
    vmlinuz: PathBuf,
    modules: PathBuf,
    init: PathBuf,
    arch: Arch,
) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join(format!("{name}.raw"));
    let mut opts = TestImageOptions::new(vmlinuz, modules, init, output.clone());
    opts.firmware = Firmware::Uefi;
    opts.arch = arch;
    let arch_name = testimage::arch_name(arch);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ingot-test-image"))
        .arg("--kernel")
        .arg(&opts.kernel)
        .arg("--modules")
        .arg(&opts.modules)
        .arg("--init")
        .arg(&opts.init)
        .arg("--output")
        .arg(&output)
        .args(["--firmware", "uefi", "--arch", arch_name])
        .env_remove("SOURCE_DATE_EPOCH")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ingot-test-image --firmware uefi --arch {arch_name} failed"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "{name}: built in {:.1} s: {} bytes, kernel {} bytes, initrd {} bytes, modules {}, builtin {}, cmdline {}",
        started.elapsed().as_secs_f64(),
        report["image_bytes"],
        report["kernel_bytes"],
        report["initrd_bytes"],
        report["modules"],
        report["builtin"],
        report["cmdline"]
    );
    assert_eq!(report["firmware"], "uefi");
    assert_eq!(report["arch"], arch_name);
    assert!(
        report["cmdline"]
            .as_str()
            .is_some_and(|c| c.starts_with(testimage::console(arch))),
        "{report}"
    );
    assert_eq!(report["disk_bytes"], 64u64 << 20);
    // A GPT whose one partition is the ESP, holding only the fallback loader.
    let gpt = Command::new("sgdisk")
        .arg("-p")
        .arg(&output)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&gpt.stdout);
    assert!(
        listing.contains(&testimage::UEFI_DISK_GUID.to_uppercase()),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l.contains("EF00")), "{listing}");
    let dirlist = Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@1M", output.display()))
        .args(["-b", "::/EFI/BOOT"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&dirlist.stdout);
    let boot_file = testimage::uefi_boot_file(arch);
    assert!(listed.contains(boot_file), "{listed}");
    assert_eq!(
        listed.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{listed}"
    );
    let again = dir.join("again.raw");
    testimage::build(&TestImageOptions {
        output: again.clone(),
        ..opts
    })
    .unwrap();
    assert!(
        std::fs::read(&output).unwrap() == std::fs::read(&again).unwrap(),
        "two UEFI builds differ"
    );
    std::fs::remove_file(&again).ok();
    output
}

/// The UEFI image grown by 64 MiB, with the config drive in a new GPT
/// partition 2 over the added space, as the agent adds it to a GPT disk.
fn gpt_disk_with_config_drive(image: &Path, disk: &Path, drive: &[u8]) {
    std::fs::copy(image, disk).unwrap();
    let f = std::fs::File::options().write(true).open(disk).unwrap();
    let start = f.metadata().unwrap().len();
    f.set_len(start + (64u64 << 20)).unwrap();
    drop(f);
    let st = Command::new("sgdisk")
        .arg("-e")
        .arg(format!("--new=2:{}:0", start / 512))
        .args(["--typecode=2:8300", "--change-name=2:config-2"])
        .arg(disk)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "sgdisk failed");
    let f = std::fs::File::options().write(true).open(disk).unwrap();
    f.write_all_at(drive, start).unwrap();
}

/// The UEFI variant boots under OVMF (TCG) from the disk alone (no network:
/// the firmware's fallback path `\EFI\BOOT\BOOTX64.EFI`, the unified kernel
/// image) and the init prints the instance UUID from the config drive.
/// Skipped without OVMF unless `INGOT_REQUIRE_PRIVILEGED=1` (CI).
#[test]
fn uefi_variant_boots_under_ovmf_and_prints_the_uuid() {
    let test = "uefi";
    let Some(image) = uefi_image(test) else {
        return;
    };
    let disk = image.with_file_name("uefi-boot.raw");
    gpt_disk_with_config_drive(&image, &disk, &config_drive(meta_data().as_bytes()));
    let vars = image.with_file_name("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let firmware = [
        "-drive".to_string(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        "-drive".to_string(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        // No network device: the disk is the only boot option.
        "-nic".to_string(),
        "none".to_string(),
    ];
    let (log, secs) = boot_with(
        test,
        &disk,
        "virtio-blk-pci,drive=d0,serial=INGOT-UEFI",
        &firmware,
    );
    assert!(
        log.contains("INGOT-TEST-IMAGE BOOTED FROM DISK"),
        "{test}: no marker:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.trim_end() == format!("INGOT-TEST-IMAGE instance_uuid={UUID}")),
        "{test}: no UUID:\n{log}"
    );
    assert!(
        !log.contains("SYSLINUX"),
        "{test}: booted through syslinux?\n{log}"
    );
    std::fs::write(
        disk.with_extension("figures.json"),
        format!("{{\"seconds_qemu_start_to_uuid\": {secs:.1}}}\n"),
    )
    .unwrap();
    std::fs::remove_file(&disk).ok();
}

const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// The aarch64 UEFI variant (`--arch aarch64 --firmware uefi`: systemd's
/// `linuxaa64.efi.stub`, `EFI/BOOT/BOOTAA64.EFI`, `console=ttyAMA0`), built
/// from Debian's arm64 kernel and the static aarch64 `ingot-testimage-init`,
/// boots under AAVMF on `qemu-system-aarch64 -M virt -cpu max` (TCG) from the
/// disk alone, on virtio-blk-pci and then on NVMe, and the init prints the
/// instance UUID from the config drive (GPT partition 2). Skipped without the arm64 kernel in
/// target/kernel, the aarch64 musl cross compiler, the stub,
/// qemu-system-aarch64 or AAVMF, unless `INGOT_REQUIRE_PRIVILEGED=1` (then
/// the kernel is fetched and anything else missing fails the test).
#[test]
fn aarch64_uefi_variant_boots_under_aavmf_and_prints_the_uuid() {
    let test = "uefi-aarch64";
    let Some((vmlinuz, modules)) = debian_kernel("arm64") else {
        skip(
            test,
            "no Debian arm64 kernel in target/kernel (cargo run -p ingot-initramfs --bin ingot-ramdisk -- fetch-kernel --debian --arch arm64 --out target/kernel)",
        );
        return;
    };
    if let Err(e) = testimage::check_tools_for_arch(ImageFormat::Raw, Firmware::Uefi, Arch::Aarch64)
    {
        skip(test, &e.to_string());
        return;
    }
    if !runs("qemu-system-aarch64")
        || !Path::new(AAVMF_CODE).is_file()
        || !Path::new(AAVMF_VARS).is_file()
    {
        skip(
            test,
            "qemu-system-aarch64 or AAVMF not installed (packages qemu-system-arm, qemu-efi-aarch64)",
        );
        return;
    }
    // The static aarch64 init needs the cross C toolchain that
    // .cargo/config.toml names (cargo xtask test-init --arch aarch64 installs it).
    if !runs("aarch64-linux-musl-gcc") {
        skip(
            test,
            "no aarch64 musl cross compiler for the aarch64 init (cargo xtask test-init --arch aarch64)",
        );
        return;
    }
    let init = static_init_for("aarch64-unknown-linux-musl");
    let image = build_uefi(
        "test-image-uefi-aarch64",
        vmlinuz,
        modules,
        init,
        Arch::Aarch64,
    );
    // AAVMF's images are 64 MiB, the size of virt's flash banks.
    let vars = image.with_file_name("AAVMF_VARS.fd");
    let machine = ["-M", "virt", "-cpu", "max,pauth-impdef=on", "-m", "1024"].map(String::from);
    // The aarch64 lab's two disks: its root disk on virtio-blk, and NVMe.
    let mut figures = Vec::new();
    for (bus, device) in [
        ("virtio", "virtio-blk-pci,drive=d0,serial=INGOT-UEFI-AA64"),
        ("nvme", "nvme,drive=d0,serial=INGOT-UEFI-AA64-NVME"),
    ] {
        let disk = image.with_file_name(format!("uefi-aarch64-{bus}.raw"));
        gpt_disk_with_config_drive(&image, &disk, &config_drive(meta_data().as_bytes()));
        std::fs::copy(AAVMF_VARS, &vars).unwrap();
        let firmware = [
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}"),
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            // No network device: the disk is the only boot option.
            "-nic".to_string(),
            "none".to_string(),
        ];
        // An emulated arm64 CPU under TCG on a shared 2-core machine: allow minutes.
        let name = format!("{test} ({bus})");
        let (log, secs) = boot_qemu(
            &name,
            "qemu-system-aarch64",
            &machine,
            &disk,
            device,
            &firmware,
            600,
        );
        assert!(
            log.contains("INGOT-TEST-IMAGE BOOTED FROM DISK"),
            "{name}: no marker:\n{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.trim_end() == format!("INGOT-TEST-IMAGE instance_uuid={UUID}")),
            "{name}: no UUID:\n{log}"
        );
        assert!(
            log.contains("Kernel command line: console=ttyAMA0"),
            "{name}: not the UKI's command line:\n{log}"
        );
        assert!(
            !log.contains("INGOT-TEST-IMAGE module "),
            "{name}: a module failed to load:\n{log}"
        );
        figures.push(format!("\"{bus}\": {secs:.1}"));
        std::fs::remove_file(&disk).ok();
    }
    std::fs::write(
        image.with_file_name("uefi-aarch64.figures.json"),
        format!(
            "{{\"seconds_qemu_start_to_uuid\": {{{}}}}}\n",
            figures.join(", ")
        ),
    )
    .unwrap();
    std::fs::remove_file(&vars).ok();
}

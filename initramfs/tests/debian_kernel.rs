//! Builds the ramdisk from the current Debian kernel package (fetched with
//! `apt-get download`, as `ingot-ramdisk fetch-kernel --debian` does) and
//! checks what is inside, and that two builds are byte-identical; for amd64,
//! and for arm64 when Debian's arm64 packages and an aarch64 static agent are
//! at hand (`cargo xtask agent --arch aarch64` makes both).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

use std::path::{Path, PathBuf};

use ingot_initramfs::modules::Class;
use ingot_initramfs::{Arch, BuildOptions, Compression, build};

/// A static stand-in for the agent: this test checks packing, not the agent.
/// It is a real static executable (the musl agent if it was built, in
/// `CARGO_TARGET_DIR` or the workspace's target, else `/bin/busybox` from
/// busybox-static).
fn static_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rel = "x86_64-unknown-linux-musl/agent/ingot-agent";
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join(rel))
        .into_iter()
        .chain([root.join("target").join(rel), PathBuf::from("/bin/busybox")])
        .find(|p| {
            p.is_file()
                && !String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default())
                    .contains("ld-linux")
        })
}

fn kernel() -> ingot_initramfs::fetch::FetchedKernel {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel");
    ingot_initramfs::fetch::debian(&dir, "amd64")
        .expect("fetch the Debian kernel (apt-get download)")
}

#[test]
fn builds_a_reproducible_ramdisk_with_the_needed_modules() {
    let Some(agent) = static_binary() else {
        panic!("no static binary to pack: build the musl agent or install busybox-static");
    };
    let k = kernel();
    let opts = |out: PathBuf| BuildOptions {
        kernel: k.vmlinuz.clone(),
        modules: k.modules.clone(),
        firmware: None,
        agent: agent.clone(),
        arch: Arch::X86_64,
        compress: Compression::Zstd,
        level: 3,
        classes: Class::ALL.to_vec(),
        extra: vec![],
        mtime: 1_700_000_000,
        out,
    };
    let tmp = tempfile::tempdir().unwrap();
    let m1 = build(&opts(tmp.path().join("a"))).unwrap();
    let m2 = build(&opts(tmp.path().join("b"))).unwrap();
    for f in ["initramfs.img", "manifest.json", "boot.ipxe", "vmlinuz"] {
        assert_eq!(
            std::fs::read(tmp.path().join("a").join(f)).unwrap(),
            std::fs::read(tmp.path().join("b").join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }
    assert_eq!(m1.totals.initramfs_bytes, m2.totals.initramfs_bytes);
    for needed in [
        "virtio_blk",
        "virtio_net",
        "virtio_pci",
        "nvme",
        "nvme_core",
        "ahci",
        "sd_mod",
        "e1000",
        "e1000e",
        "igb",
        "ixgbe",
        "mlx5_core",
        "ipmi_si",
        "ipmi_devintf",
        "dm_mod",
        "md_mod",
        "megaraid_sas",
        "crct10dif_generic",
    ] {
        assert!(m1.modules.iter().any(|m| m == needed), "{needed} missing");
    }
    assert!(m1.modules_left_out.is_empty(), "{:?}", m1.modules_left_out);
    assert!(m1.files.iter().any(|f| f.path == "/init"));
    let dep = m1
        .files
        .iter()
        .find(|f| f.path.ends_with("/modules.dep"))
        .unwrap();
    assert!(dep.size > 1000);
    let mib = m1.totals.initramfs_bytes as f64 / 1048576.0;
    eprintln!(
        "initramfs at zstd -3: {mib:.1} MiB, {} modules",
        m1.modules.len()
    );
    assert!(mib < 30.0, "{mib:.1} MiB");

    // The archive unpacks with GNU cpio, with /dev/console and the modules.
    let unpack = tmp.path().join("unpacked");
    std::fs::create_dir(&unpack).unwrap();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc {} | cpio -idm --quiet",
            tmp.path().join("a/initramfs.img").display()
        ))
        .current_dir(&unpack)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(unpack.join("dev/console").exists());
    let mdir = unpack.join("lib/modules").join(&k.version);
    let dep = std::fs::read_to_string(mdir.join("modules.dep")).unwrap();
    let line = dep
        .lines()
        .find(|l| l.starts_with("kernel/drivers/net/virtio_net.ko.zst:"))
        .unwrap();
    assert!(
        line.contains("net_failover.ko.zst") && line.contains("virtio_ring.ko.zst"),
        "{line}"
    );
    // Each module is stored zstd-compressed (the ramdisk is zstd) and
    // decompresses to the module itself, signature and all.
    let ko = std::fs::read(mdir.join("kernel/drivers/net/virtio_net.ko.zst")).unwrap();
    let ko = zstd::stream::decode_all(&ko[..]).unwrap();
    assert!(ko.starts_with(b"\x7fELF"));
    assert!(ko.ends_with(b"~Module signature appended~\n"));
    let alias = std::fs::read_to_string(mdir.join("modules.alias")).unwrap();
    assert!(
        alias.contains(" virtio_blk\n")
            && alias.contains("pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n")
    );
    let soft = std::fs::read_to_string(mdir.join("modules.softdep")).unwrap();
    assert!(
        soft.contains("softdep crc_t10dif pre: crct10dif_generic"),
        "{soft}"
    );
}

/// The aarch64 static agent, from `CARGO_TARGET_DIR` or the workspace's target.
fn aarch64_agent() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rel = "aarch64-unknown-linux-musl/agent/ingot-agent";
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join(rel))
        .into_iter()
        .chain([root.join("target").join(rel)])
        .find(|p| p.is_file())
}

/// True if apt knows arm64 packages (`dpkg --add-architecture arm64`).
fn arm64_packages_known() -> bool {
    std::process::Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "arm64")
        })
}

#[test]
fn builds_a_reproducible_arm64_ramdisk() {
    let Some(agent) = aarch64_agent() else {
        eprintln!("SKIPPED: no aarch64 agent (cargo xtask agent --arch aarch64)");
        return;
    };
    if !arm64_packages_known() {
        eprintln!("SKIPPED: dpkg has no arm64 architecture (cargo xtask agent --arch aarch64)");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel");
    let k = ingot_initramfs::fetch::debian(&dir, "arm64").expect("fetch Debian's arm64 kernel");
    assert!(k.version.ends_with("-arm64"), "{}", k.version);
    let opts = |out: PathBuf| BuildOptions {
        kernel: k.vmlinuz.clone(),
        modules: k.modules.clone(),
        firmware: None,
        agent: agent.clone(),
        arch: Arch::Aarch64,
        compress: Compression::Zstd,
        level: 3,
        classes: Class::ALL.to_vec(),
        extra: vec![],
        mtime: 1_700_000_000,
        out,
    };
    let tmp = tempfile::tempdir().unwrap();
    let m1 = build(&opts(tmp.path().join("a"))).unwrap();
    build(&opts(tmp.path().join("b"))).unwrap();
    for f in ["initramfs.img", "manifest.json", "boot.ipxe", "vmlinuz"] {
        assert_eq!(
            std::fs::read(tmp.path().join("a").join(f)).unwrap(),
            std::fs::read(tmp.path().join("b").join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }
    // Modules in Debian's arm64 kernel (virtio, NVMe, AHCI are not built in),
    // among them the NICs of common Arm servers.
    for needed in [
        "virtio_blk",
        "virtio_net",
        "virtio_pci",
        "virtio_mmio",
        "nvme",
        "nvme_core",
        "ahci",
        "ahci_platform",
        "sd_mod",
        "igb",
        "ixgbe",
        "mlx5_core",
        "hns3",
        "thunder_bgx",
        "ipmi_si",
        "ipmi_ssif",
        "ipmi_devintf",
        "dm_mod",
        "md_mod",
    ] {
        assert!(m1.modules.iter().any(|m| m == needed), "{needed} missing");
    }
    assert!(m1.modules_left_out.is_empty(), "{:?}", m1.modules_left_out);
    let ipxe = std::fs::read_to_string(tmp.path().join("a/boot.ipxe")).unwrap();
    assert!(ipxe.contains("console=ttyAMA0"), "{ipxe}");
    let mib = m1.totals.initramfs_bytes as f64 / 1048576.0;
    eprintln!(
        "arm64 initramfs at zstd -3: {mib:.1} MiB, {} modules, kernel {:.1} MiB",
        m1.modules.len(),
        m1.totals.kernel_bytes as f64 / 1048576.0
    );
    assert!(mib < 30.0, "{mib:.1} MiB");
}

#[test]
fn refuses_an_agent_for_another_machine() {
    let Some(agent) = aarch64_agent() else {
        eprintln!("SKIPPED: no aarch64 agent (cargo xtask agent --arch aarch64)");
        return;
    };
    let k = kernel();
    let tmp = tempfile::tempdir().unwrap();
    let err = build(&BuildOptions {
        kernel: k.vmlinuz,
        modules: k.modules,
        firmware: None,
        agent,
        arch: Arch::X86_64,
        compress: Compression::None,
        level: 0,
        classes: vec![Class::Bus],
        extra: vec![],
        mtime: 0,
        out: tmp.path().to_path_buf(),
    })
    .unwrap_err();
    assert!(err.to_string().contains("ELF machine"), "{err}");
}

#[test]
fn refuses_a_dynamic_agent() {
    let k = kernel();
    let tmp = tempfile::tempdir().unwrap();
    let err = build(&BuildOptions {
        kernel: k.vmlinuz,
        modules: k.modules,
        firmware: None,
        agent: PathBuf::from("/bin/ls"),
        arch: Arch::X86_64,
        compress: Compression::None,
        level: 0,
        classes: vec![Class::Bus],
        extra: vec![],
        mtime: 0,
        out: tmp.path().to_path_buf(),
    })
    .unwrap_err();
    assert!(err.to_string().contains("dynamically linked"), "{err}");
}

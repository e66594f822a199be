//! Installs what the tasks need on a fresh Debian 12 machine: apt packages and
//! the Rust target and components of `rust-toolchain.toml`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, Arch, MUSL_TARGET};

/// Debian packages the tasks need. Each entry lists alternatives: it counts as
/// present if any of them is installed, and the first is installed otherwise.
/// Add new needs here (one place for every task).
const APT_PACKAGES: &[&[&str]] = &[
    // musl-gcc: the C parts (zstd, liblzma, ring) of the static agent.
    &["musl-tools"],
    // qemu-img: qcow2 images and the qcow2 yardstick.
    &["qemu-utils"],
    &["zstd"],
    &["xz-utils"],
    &["gzip"],
    // losetup, blkdiscard.
    &["util-linux"],
    // mkfs.ext4 -d.
    &["e2fsprogs"],
    // sfdisk.
    &["fdisk"],
    // sgdisk -v cross-checks the agent's GPT fix-ups (agent/tests/partition_table.rs).
    &["gdisk"],
    &["curl"],
    &["openssl"],
    // Serves images over loopback HTTP.
    &["nginx-light", "nginx-core", "nginx-full", "nginx-extras"],
    // /usr/bin/time: CPU and peak RSS of benchmarked commands.
    &["time"],
    // Tests that INGOT_REQUIRE_PRIVILEGED=1 makes mandatory:
    // agent/tests/qemu_boot.rs boots the ramdisk under TCG.
    &["qemu-system-x86"],
    // agent/tests/net_dhcp.rs serves DHCP in a network namespace.
    &["dnsmasq-base"],
    &["iproute2"],
    // coordinator/tests: a private PostgreSQL cluster (initdb, pg_ctl) for the
    // tests that run on both databases, and Python venvs for the real
    // OpenStack clients (python-ironicclient, openstacksdk from PyPI).
    &["postgresql"],
    &["python3-venv"],
    // coordinator/tests/ipmi.rs: OpenIPMI's ipmi_sim as the BMC, ipmitool to
    // cross-check what the native client did.
    &["openipmi"],
    &["ipmitool"],
    // coordinator/tests/snmp.rs: net-snmp's snmpd with a pass_persist PDU, and
    // snmpget/snmpset to cross-check.
    &["snmpd"],
    &["snmp"],
    // Tests that cover more when present (they skip a case without the tool):
    // wipe_metadata.rs makes real vfat/xfs/btrfs/LUKS signatures; cpio.rs reads
    // the ramdisk back with GNU cpio.
    &["dosfstools"],
    &["xfsprogs"],
    &["btrfs-progs"],
    &["cryptsetup-bin"],
    &["lvm2"],
    &["cpio"],
    // The end-to-end lab (cargo xtask e2e / demo): QEMU's iPXE option ROMs
    // for network boot, SeaBIOS, and the test image's bootloader (syslinux
    // installed into a FAT file system with mtools, no mounts); blkid checks
    // the wiped disks.
    &["ipxe-qemu"],
    &["seabios"],
    &["syslinux"],
    &["syslinux-common"],
    &["mtools"],
    // The test image's UEFI variant (--firmware uefi): a unified kernel image
    // made from systemd's EFI stub with objcopy (binutils), on a GPT made
    // with sgdisk (gdisk, listed above).
    &["systemd-boot-efi"],
    &["binutils"],
    // coordinator/tests/tftp.rs: real TFTP clients against the coordinator's
    // TFTP server (atftp negotiates blksize/tsize/windowsize).
    &["atftp"],
    &["tftp-hpa"],
    // coordinator/tests/dhcp.rs: busybox udhcpc as the DHCP client.
    &["udhcpc"],
    // coordinator/tests/pxe_chain.rs: UEFI firmware with a PXE stack of its
    // own (OVMF), which loads iPXE's snponly.efi (Debian's ipxe, the TFTP
    // server's default root) from the coordinator.
    &["ovmf"],
    &["ipxe"],
    // coordinator/tests/ovsdb.rs: a private ovsdb-server (openvswitch-common)
    // with Open vSwitch's schema, and ovs-vsctl to set up and cross-check
    // (openvswitch-switch; its service is not used).
    &["openvswitch-switch"],
    // The isolation lab: checksum offload off on the veths and taps of
    // Open vSwitch's userspace datapath (`ethtool -K <dev> tx off`).
    &["ethtool"],
    // coordinator/tests/ssh_switch.rs: a private sshd (its own config, host
    // key and port; the system service is not used) in front of a shell
    // that mimics the switch OSes.
    &["openssh-server"],
];

/// Rust components `rust-toolchain.toml` asks for.
const RUST_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

/// Installs whatever is missing; prints what it checks and what it runs.
pub fn ensure() -> Result<()> {
    println!("==> checking prerequisites");
    ensure_apt()?;
    ensure_rust()?;
    Ok(())
}

/// Debian packages that build the static agent for `arch` on an x86_64
/// Debian host, and boot it: a C compiler and linker for musl (zstd,
/// liblzma, ring and mimalloc have C parts). For aarch64, Debian's cross gcc plus arm64 musl
/// give `aarch64-linux-musl-gcc`, which `.cargo/config.toml` names.
fn cross_packages(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["musl-tools"],
        // Also what runs aarch64 machines here: QEMU, its UEFI firmware
        // (AAVMF) and Debian's signed network GRUB that the coordinator
        // serves to arm64 UEFI PXE (coordinator/tests/pxe_chain_aarch64.rs,
        // the aarch64 lab).
        Arch::Aarch64 => &[
            "gcc-aarch64-linux-gnu",
            "musl-dev:arm64",
            "qemu-system-arm",
            "qemu-efi-aarch64",
            "grub-efi-arm64-signed:arm64",
            "grub-efi-arm64-bin:arm64",
            // The arm64 test image's unified kernel image is made from
            // systemd's aarch64 EFI stub (linuxaa64.efi.stub; Multi-Arch:
            // same, beside the amd64 one).
            "systemd-boot-efi:arm64",
        ],
    }
}

/// Installs what building the static agent (and fetching the kernel) for
/// `arch` needs, when missing: Debian's foreign architecture and package
/// lists, the cross C toolchain and the Rust musl target. Not part of
/// [`ensure`]: only `cargo xtask agent|ramdisk --arch aarch64` need aarch64.
pub fn ensure_arch(arch: Arch) -> Result<()> {
    println!("==> checking the {} toolchain", arch.name());
    let mut update = !apt_lists_present();
    if arch != Arch::X86_64 {
        let foreign = util::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
        if foreign.lines().any(|l| l.trim() == arch.debian()) {
            println!("dpkg architecture {}: present", arch.debian());
        } else {
            util::run(as_root("dpkg").args(["--add-architecture", arch.debian()]))
                .context("dpkg --add-architecture failed (run as root)")?;
            update = true;
        }
    }
    let mut missing = Vec::new();
    for pkg in cross_packages(arch) {
        if !dpkg_installed(pkg)? {
            missing.push(*pkg);
        }
    }
    if missing.is_empty() && !update {
        println!("apt packages: {} present", cross_packages(arch).join(" "));
    } else {
        util::run(&mut apt(&["update", "-q"])).context("apt-get update failed")?;
        if !missing.is_empty() {
            let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
            install.args(&missing);
            util::run(&mut install).context("apt-get install failed")?;
        }
    }
    ensure_rust_target(arch.musl_target())
}

/// `program`, through `sudo -n` unless this process is root.
fn as_root(program: &str) -> Command {
    if util::is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

/// `apt-get` with `args`, as root, non-interactive.
fn apt(args: &[&str]) -> Command {
    let mut cmd = as_root("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
    cmd
}

fn dpkg_installed(pkg: &str) -> Result<bool> {
    let query = |name: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}\n", name])
            .stdin(std::process::Stdio::null())
            .output()
            .context("could not run dpkg-query (this task expects Debian or Ubuntu)")
    };
    let mut out = query(pkg)?;
    // A Multi-Arch: same package installed for two architectures
    // (systemd-boot-efi for amd64 and arm64) shows one status each, or is
    // ambiguous to older dpkg: ask for the native architecture's.
    if !pkg.contains(':')
        && (!out.status.success() || out.stdout.iter().filter(|b| **b == b'\n').count() > 1)
    {
        let native = Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .context("could not run dpkg --print-architecture")?;
        let native = String::from_utf8_lossy(&native.stdout).trim().to_owned();
        if !native.is_empty() {
            out = query(&format!("{pkg}:{native}"))?;
        }
    }
    // Unknown packages make dpkg-query exit 1; that just means "not installed".
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

/// The first alternative of every entry none of whose alternatives is installed.
fn missing_apt() -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for alternatives in APT_PACKAGES {
        let mut present = false;
        for pkg in *alternatives {
            if dpkg_installed(pkg)? {
                present = true;
                break;
            }
        }
        if !present {
            missing.push(alternatives[0]);
        }
    }
    Ok(missing)
}

/// True if apt has package lists (a fresh image may ship without them, and
/// `ingot-ramdisk fetch-kernel --debian` needs them for `apt-get download`).
fn apt_lists_present() -> bool {
    std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

fn ensure_apt() -> Result<()> {
    let mut missing = missing_apt()?;
    if missing.is_empty() && apt_lists_present() {
        println!("apt packages: all {} present", APT_PACKAGES.len());
        return Ok(());
    }
    if missing.is_empty() {
        println!("apt has no package lists");
    } else {
        println!("apt packages missing: {}", missing.join(" "));
    }
    util::run(&mut apt(&["update", "-q"]))
        .context("apt-get update failed (run as root, or install the packages above)")?;
    if missing.is_empty() {
        return Ok(());
    }
    // A second pass catches a package that installing another one removed
    // (e.g. a backported qemu-utils that conflicts with Debian's qemu-system).
    for _ in 0..2 {
        let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
        install.args(&missing);
        util::run(&mut install).context("apt-get install failed")?;
        missing = missing_apt()?;
        if missing.is_empty() {
            return Ok(());
        }
        println!(
            "apt packages missing after the install: {}",
            missing.join(" ")
        );
    }
    bail!("apt-get could not install: {}", missing.join(" "))
}

/// `rustup` with `args`, run in the workspace (so it uses `rust-toolchain.toml`).
fn rustup(args: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(util::repo_root()).args(args);
    c
}

/// Adds a Rust target to the workspace's toolchain when missing.
fn ensure_rust_target(target: &str) -> Result<()> {
    let targets = match util::output(&mut rustup(&["target", "list", "--installed"])) {
        Ok(t) => t,
        Err(e) => {
            println!("warning: rustup is not usable ({e:#}); assuming the toolchain is complete");
            return Ok(());
        }
    };
    if targets.lines().any(|l| l.trim() == target) {
        println!("rust target {target}: present");
        Ok(())
    } else {
        util::run(&mut rustup(&["target", "add", target]))
    }
}

fn ensure_rust() -> Result<()> {
    if let Err(e) = util::output(&mut rustup(&["target", "list", "--installed"])) {
        println!("warning: rustup is not usable ({e:#}); assuming the toolchain is complete");
        return Ok(());
    }
    ensure_rust_target(MUSL_TARGET)?;
    let components = util::output(&mut rustup(&["component", "list", "--installed"]))?;
    for comp in RUST_COMPONENTS {
        // Installed components are listed with their host triple: `clippy-x86_64-...`.
        let present = components
            .lines()
            .any(|l| l.trim() == *comp || l.trim().starts_with(&format!("{comp}-")));
        if present {
            println!("rust component {comp}: present");
        } else {
            util::run(&mut rustup(&["component", "add", comp]))?;
        }
    }
    Ok(())
}

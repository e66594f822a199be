//! Which deploy kernel and ramdisk a machine network-boots, per CPU
//! architecture, and the boot loader configuration that loads them.
//!
//! - [`arch`]: architecture names (node, DHCP option 93, iPXE, GRUB) and the
//!   architectures firmware reported in DHCP.
//! - [`grub`]: the per-MAC `grub.cfg` for arm64 UEFI network boot through
//!   Debian's signed `grubnetaa64.efi` (Debian has no arm64 iPXE).
//! - [`tftp`]: the files the coordinator's TFTP server makes up: `grub.cfg`
//!   per MAC, the deploy kernel and ramdisk of each architecture, and GRUB.
//!
//! The architecture of a node is its `properties.cpu_arch`; before the
//! first inspection, what the boot loader says (iPXE's `${buildarch}`,
//! GRUB's `$grub_cpu`) or, failing that, what its firmware reported in DHCP
//! option 93. `[boot.by_arch.<arch>]` gives each architecture its kernel and
//! ramdisk (Ironic's `deploy_kernel_by_arch`/`deploy_ramdisk_by_arch`); the
//! top-level `[boot] kernel`/`initramfs` serve every other architecture; a
//! node's `driver_info.deploy_kernel`/`deploy_ramdisk` override both.

pub mod arch;
pub mod grub;
pub mod tftp;

use std::path::Path;

use serde_json::Value;

use crate::config::BootConfig;
use crate::model::Node;

/// One of the two deploy files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployFile {
    /// The agent kernel (`vmlinuz`).
    Kernel,
    /// The agent ramdisk (`initramfs.img`).
    Initramfs,
}

impl DeployFile {
    /// The file's name in `/boot/…` URLs and TFTP paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kernel => "vmlinuz",
            Self::Initramfs => "initramfs.img",
        }
    }

    /// The `driver_info` key that overrides it for one node.
    pub fn driver_info_key(self) -> &'static str {
        match self {
            Self::Kernel => "deploy_kernel",
            Self::Initramfs => "deploy_ramdisk",
        }
    }

    /// Parses [`DeployFile::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "vmlinuz" => Some(Self::Kernel),
            "initramfs.img" => Some(Self::Initramfs),
            _ => None,
        }
    }
}

/// The architecture a node boots as: its `properties.cpu_arch`, else
/// `reported` (the boot loader's or firmware's word), normalised.
pub fn node_arch(node: Option<&Node>, reported: Option<&str>) -> Option<String> {
    node.and_then(|n| n.properties.get("cpu_arch"))
        .and_then(Value::as_str)
        .and_then(arch::normalize)
        .or_else(|| reported.and_then(arch::normalize))
}

/// The file configured for `arch` in `[boot.by_arch]` (keys normalised, so
/// `arm64` and `aarch64` are one), if any.
pub fn by_arch<'a>(boot: &'a BootConfig, arch: &str, file: DeployFile) -> Option<&'a Path> {
    let arch = arch::normalize(arch)?;
    boot.by_arch
        .iter()
        .filter(|(k, _)| arch::normalize(k).as_deref() == Some(arch.as_str()))
        .find_map(|(_, f)| match file {
            DeployFile::Kernel => f.kernel.as_deref(),
            DeployFile::Initramfs => f.initramfs.as_deref(),
        })
}

/// Where `file` of `arch` is served, relative to `/boot/` over HTTP and to
/// `ingot/` over TFTP: `<arch>/<name>` when `[boot.by_arch]` has it, else
/// `<name>` (the top-level `[boot]` file).
pub fn served_path(boot: &BootConfig, arch: Option<&str>, file: DeployFile) -> String {
    match arch.filter(|a| by_arch(boot, a, file).is_some()) {
        Some(a) => match arch::normalize(a) {
            Some(a) => format!("{a}/{}", file.name()),
            None => file.name().to_owned(),
        },
        None => file.name().to_owned(),
    }
}

/// The file behind [`served_path`]: `<arch>/<name>` or `<name>`.
pub fn resolve_served<'a>(boot: &'a BootConfig, rel: &str) -> Option<&'a Path> {
    match rel.split_once('/') {
        None => match DeployFile::from_name(rel)? {
            DeployFile::Kernel => boot.kernel.as_deref(),
            DeployFile::Initramfs => boot.initramfs.as_deref(),
        },
        Some((a, name)) => by_arch(boot, a, DeployFile::from_name(name)?),
    }
}

/// A node's `driver_info.deploy_kernel`/`deploy_ramdisk`, when an http(s) URL.
pub fn url_override(node: &Node, file: DeployFile) -> Option<String> {
    node.driver_info
        .get(file.driver_info_key())
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(str::to_owned)
}

/// The extra kernel parameters of a node's ramdisk: `driver_info.kernel_append_params`
/// when set (Ironic's per-node override, where `%default%` stands for the
/// configured parameters), else `[boot] kernel_params`.
pub fn kernel_params(node: &Node, default: &str) -> String {
    match node
        .driver_info
        .get("kernel_append_params")
        .and_then(Value::as_str)
    {
        Some(own) => own.replace("%default%", default).trim().to_owned(),
        None => default.to_owned(),
    }
}

/// The configured kernel parameters of `arch`: `[boot.by_arch.<arch>]
/// kernel_params` when set (the serial console differs: `ttyS0`,
/// `ttyAMA0`), else `[boot] kernel_params`.
pub fn arch_kernel_params<'a>(boot: &'a BootConfig, arch: Option<&str>) -> &'a str {
    arch.and_then(arch::normalize)
        .and_then(|a| {
            boot.by_arch
                .iter()
                .filter(|(k, _)| arch::normalize(k).as_deref() == Some(a.as_str()))
                .find_map(|(_, f)| f.kernel_params.as_deref())
        })
        .unwrap_or(&boot.kernel_params)
}

/// The ramdisk's kernel command line after the kernel (the same for iPXE
/// and GRUB): `ingot.api=`, `BOOTIF=`, `ingot.ca_b64=` when set, then the
/// node's parameters ([`kernel_params`] over [`arch_kernel_params`]).
pub fn agent_cmdline(
    node: &Node,
    mac: &str,
    arch: Option<&str>,
    api: &str,
    ca_b64: Option<&str>,
    boot: &BootConfig,
) -> Vec<String> {
    let mut args = vec![
        format!("ingot.api={api}"),
        format!("BOOTIF=01-{}", mac.replace(':', "-")),
    ];
    if let Some(ca) = ca_b64 {
        args.push(format!("ingot.ca_b64={ca}"));
    }
    args.extend(
        kernel_params(node, arch_kernel_params(boot, arch))
            .split_whitespace()
            .map(str::to_owned),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ArchFiles;

    fn boot() -> BootConfig {
        let mut b = BootConfig {
            kernel: Some("/k/x86/vmlinuz".into()),
            initramfs: Some("/k/x86/initramfs.img".into()),
            ..BootConfig::default()
        };
        b.by_arch.insert(
            "arm64".into(),
            ArchFiles {
                kernel: Some("/k/arm/vmlinuz".into()),
                initramfs: Some("/k/arm/initramfs.img".into()),
                kernel_params: Some("console=ttyAMA0".into()),
            },
        );
        b.kernel_params = "console=ttyS0".into();
        b
    }

    #[test]
    fn kernel_parameters_by_architecture() {
        let b = boot();
        assert_eq!(arch_kernel_params(&b, Some("arm64")), "console=ttyAMA0");
        assert_eq!(arch_kernel_params(&b, Some("x86_64")), "console=ttyS0");
        assert_eq!(arch_kernel_params(&b, None), "console=ttyS0");
        let mut n = Node::default();
        n.driver_info
            .insert("kernel_append_params".into(), "%default% quiet".into());
        assert_eq!(
            agent_cmdline(
                &n,
                "52:54:00:00:00:01",
                Some("aarch64"),
                "http://a",
                None,
                &b
            ),
            [
                "ingot.api=http://a",
                "BOOTIF=01-52-54-00-00-00-01",
                "console=ttyAMA0",
                "quiet"
            ]
        );
    }

    #[test]
    fn files_by_architecture() {
        let b = boot();
        assert_eq!(
            by_arch(&b, "aarch64", DeployFile::Kernel),
            Some(Path::new("/k/arm/vmlinuz"))
        );
        assert_eq!(by_arch(&b, "x86_64", DeployFile::Kernel), None);
        assert_eq!(
            served_path(&b, Some("arm64"), DeployFile::Initramfs),
            "aarch64/initramfs.img"
        );
        assert_eq!(
            served_path(&b, Some("x86_64"), DeployFile::Kernel),
            "vmlinuz"
        );
        assert_eq!(served_path(&b, None, DeployFile::Kernel), "vmlinuz");
        assert_eq!(
            resolve_served(&b, "aarch64/vmlinuz"),
            Some(Path::new("/k/arm/vmlinuz"))
        );
        assert_eq!(
            resolve_served(&b, "initramfs.img"),
            Some(Path::new("/k/x86/initramfs.img"))
        );
        assert_eq!(resolve_served(&b, "x86_64/vmlinuz"), None);
        assert_eq!(resolve_served(&b, "aarch64/other"), None);
        assert_eq!(resolve_served(&b, "../vmlinuz"), None);
    }

    #[test]
    fn the_node_property_wins_over_what_was_reported() {
        let mut n = Node::default();
        assert_eq!(
            node_arch(Some(&n), Some("arm64")).as_deref(),
            Some("aarch64")
        );
        assert_eq!(node_arch(None, Some("i386")).as_deref(), Some("x86_64"));
        assert_eq!(node_arch(None, None), None);
        n.properties.insert("cpu_arch".into(), "x86_64".into());
        assert_eq!(
            node_arch(Some(&n), Some("arm64")).as_deref(),
            Some("x86_64")
        );
    }
}

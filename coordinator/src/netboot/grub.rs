//! The `grub.cfg` of arm64 UEFI network boot.
//!
//! Debian bookworm ships no arm64 iPXE; its signed GRUB network image
//! (`grubnetaa64.efi`, package `grub-efi-arm64-signed`) is the PXE boot file
//! for client architecture 11. Booted over TFTP, GRUB sets its prefix to
//! the TFTP server and looks there for `grub.cfg-01-<mac>` (and other names)
//! before `grub.cfg`; the coordinator's TFTP server answers both
//! ([`super::tftp`]). The per-MAC configuration does what the per-MAC iPXE
//! script does: the agent ramdisk with the same kernel parameters for a
//! node that needs it, `exit` (back to the firmware's next boot option, the
//! disk) for one that does not, a message for an unknown MAC.
//!
//! The kernel and ramdisk come over TFTP (`/ingot/<arch>/vmlinuz`): GRUB
//! 2.06's `http` module only reaches port 80. A node's
//! `driver_info.deploy_kernel`/`deploy_ramdisk` is used when it is an
//! `http://` URL on port 80 (`(http,<host>)/<path>`); other URLs are left
//! out for GRUB (a comment in the file says so) and the architecture's
//! files are loaded instead.

use crate::config::BootConfig;
use crate::model::Node;

use super::{DeployFile, agent_cmdline, served_path, url_override};

/// A word for a GRUB script: single-quoted (no expansion), with quotes and
/// control characters dropped.
fn quote(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| *c != '\'' && !c.is_control())
        .collect();
    format!("'{clean}'")
}

/// GRUB's `$grub_cpu` for an architecture name of [`super::arch::normalize`].
fn grub_cpu(arch: &str) -> &str {
    match arch {
        "aarch64" => "arm64",
        other => other,
    }
}

/// `(http,host)/path` for an `http://host[:80]/path` URL; `None` for any
/// other URL (GRUB 2.06's http module has no port and no TLS).
pub fn grub_http_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match hostport.rsplit_once(':') {
        Some((h, "80")) if !h.contains(':') => h,
        Some(_) if !hostport.ends_with(']') => return None,
        _ => hostport,
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~/%[]:".contains(c))
    };
    (ok(host) && (path.is_empty() || ok(path))).then(|| format!("(http,{host})/{path}"))
}

/// The load commands for `arch`'s files (`None`: the top-level ones).
fn load(
    node: &Node,
    mac: &str,
    arch: Option<&str>,
    api: &str,
    ca_b64: Option<&str>,
    boot: &BootConfig,
    out: &mut String,
) {
    let cmdline = agent_cmdline(node, mac, arch, api, ca_b64, boot)
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let path = |file: DeployFile, out: &mut String| -> String {
        let tftp = format!("/ingot/{}", served_path(boot, arch, file));
        match url_override(node, file) {
            Some(url) => match grub_http_path(&url) {
                Some(p) => p,
                None => {
                    out.push_str(&format!(
                        "# driver_info.{} is not an http:// URL on port 80, which GRUB 2.06 cannot fetch: {tftp} instead\n",
                        file.driver_info_key()
                    ));
                    tftp
                }
            },
            None => tftp,
        }
    };
    let kernel = path(DeployFile::Kernel, out);
    let initrd = path(DeployFile::Initramfs, out);
    out.push_str(&format!(
        "linux {} {cmdline}\ninitrd {}\n",
        quote(&kernel),
        quote(&initrd)
    ));
}

/// Renders the `grub.cfg` of `mac`. `arch` is the node's architecture as
/// far as the coordinator knows it ([`super::node_arch`]); when unknown, the
/// file branches on GRUB's own `$grub_cpu` over the architectures of
/// `[boot.by_arch]`. `api` is what agents call; `ca_b64` the CA they trust.
pub fn config(
    node: Option<&Node>,
    mac: &str,
    arch: Option<&str>,
    api: &str,
    ca_b64: Option<&str>,
    boot: &BootConfig,
) -> String {
    let mut out = String::from("# Ingot: generated for this MAC by the coordinator\n");
    let Some(node) = node else {
        out.push_str(&format!(
            "echo {}\nsleep 10\nexit\n",
            quote(&format!(
                "Ingot: no node has a port with MAC {mac}. Enroll it (baremetal port create {mac} --node <node>) and boot again."
            ))
        ));
        return out;
    };
    let label = node.name.clone().unwrap_or_else(|| node.uuid.clone());
    if !node.provision_state.boots_ramdisk() {
        out.push_str(&format!(
            "echo {}\nexit\n",
            quote(&format!(
                "Ingot: node {label} is {}: booting from the local disk",
                node.provision_state
            ))
        ));
        return out;
    }
    out.push_str(&format!(
        "echo {}\n",
        quote(&format!(
            "Ingot: node {label} is {}: booting the agent ramdisk",
            node.provision_state
        ))
    ));
    match arch {
        Some(a) => load(node, mac, Some(a), api, ca_b64, boot, &mut out),
        None => {
            let mut archs: Vec<String> = boot
                .by_arch
                .keys()
                .filter_map(|k| super::arch::normalize(k))
                .collect();
            archs.sort();
            archs.dedup();
            for (i, a) in archs.iter().enumerate() {
                let kw = if i == 0 { "if" } else { "elif" };
                out.push_str(&format!(
                    "{kw} [ \"$grub_cpu\" = {} ]; then\n",
                    quote(grub_cpu(a))
                ));
                load(node, mac, Some(a), api, ca_b64, boot, &mut out);
            }
            if !archs.is_empty() {
                out.push_str("else\n");
            }
            load(node, mac, None, api, ca_b64, boot, &mut out);
            if !archs.is_empty() {
                out.push_str("fi\n");
            }
        }
    }
    out.push_str("boot\n");
    out
}

/// The `grub.cfg` that GRUB reads when it finds no per-MAC one first: it
/// goes on to this machine's own file by the MAC GRUB booted from.
pub fn chain() -> String {
    "# Ingot: on to the file of the MAC this machine booted from\nconfigfile /ingot/grub/$net_default_mac\n".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ArchFiles;
    use crate::state::ProvisionState;

    fn boot() -> BootConfig {
        let mut b = BootConfig {
            kernel: Some("/k/x86/vmlinuz".into()),
            initramfs: Some("/k/x86/initramfs.img".into()),
            kernel_params: "console=ttyAMA0".into(),
            ..BootConfig::default()
        };
        b.by_arch.insert(
            "aarch64".into(),
            ArchFiles {
                kernel: Some("/k/arm/vmlinuz".into()),
                initramfs: Some("/k/arm/initramfs.img".into()),
                kernel_params: None,
            },
        );
        b
    }

    fn node(state: ProvisionState) -> Node {
        Node {
            name: Some("arm1".into()),
            provision_state: state,
            ..Node::default()
        }
    }

    #[test]
    fn a_node_booting_the_ramdisk_gets_its_architecture_files() {
        let n = node(ProvisionState::InspectWait);
        let c = config(
            Some(&n),
            "52:54:00:aa:bb:cc",
            Some("aarch64"),
            "http://10.0.0.1:6385",
            None,
            &boot(),
        );
        assert!(
            c.contains("echo 'Ingot: node arm1 is inspect wait: booting the agent ramdisk'"),
            "{c}"
        );
        assert!(
            c.contains("linux '/ingot/aarch64/vmlinuz' 'ingot.api=http://10.0.0.1:6385' 'BOOTIF=01-52-54-00-aa-bb-cc' 'console=ttyAMA0'\ninitrd '/ingot/aarch64/initramfs.img'\nboot\n"),
            "{c}"
        );
        let x = config(
            Some(&n),
            "52:54:00:aa:bb:cc",
            Some("x86_64"),
            "http://a",
            None,
            &boot(),
        );
        assert!(x.contains("linux '/ingot/vmlinuz'"), "{x}");
    }

    #[test]
    fn without_a_known_architecture_grub_chooses() {
        let n = node(ProvisionState::InspectWait);
        let c = config(
            Some(&n),
            "52:54:00:aa:bb:cc",
            None,
            "http://a",
            Some("Q0E="),
            &boot(),
        );
        assert!(
            c.contains("if [ \"$grub_cpu\" = 'arm64' ]; then\nlinux '/ingot/aarch64/vmlinuz'"),
            "{c}"
        );
        assert!(c.contains("else\nlinux '/ingot/vmlinuz'"), "{c}");
        assert!(c.contains("'ingot.ca_b64=Q0E='"), "{c}");
        assert!(c.ends_with("fi\nboot\n"), "{c}");
    }

    #[test]
    fn other_nodes_and_strangers_do_not_boot_the_ramdisk() {
        let n = node(ProvisionState::Active);
        let c = config(
            Some(&n),
            "52:54:00:aa:bb:cc",
            Some("aarch64"),
            "http://a",
            None,
            &boot(),
        );
        assert!(c.contains("booting from the local disk'\nexit\n"), "{c}");
        assert!(!c.contains("linux"));
        let mut evil = node(ProvisionState::InspectWait);
        evil.name = Some("x'\nlinux /evil".into());
        let c = config(
            Some(&evil),
            "52:54:00:aa:bb:cc",
            Some("aarch64"),
            "http://a",
            None,
            &boot(),
        );
        assert_eq!(
            c.matches("linux").count(),
            2,
            "the name stays inside its quotes: {c}"
        );
        let c = config(None, "52:54:00:aa:bb:cc", None, "http://a", None, &boot());
        assert!(
            c.contains("no node has a port with MAC 52:54:00:aa:bb:cc"),
            "{c}"
        );
    }

    #[test]
    fn overrides_only_on_port_80() {
        assert_eq!(
            grub_http_path("http://10.0.0.1/k/vmlinuz").as_deref(),
            Some("(http,10.0.0.1)/k/vmlinuz")
        );
        assert_eq!(
            grub_http_path("http://boot.example:80/a").as_deref(),
            Some("(http,boot.example)/a")
        );
        assert_eq!(grub_http_path("http://10.0.0.1:8080/k"), None);
        assert_eq!(grub_http_path("https://10.0.0.1/k"), None);
        assert_eq!(grub_http_path("http://h/a b"), None);
        let mut n = node(ProvisionState::CleanWait);
        n.driver_info
            .insert("deploy_kernel".into(), "http://10.0.0.9/arm/vmlinuz".into());
        n.driver_info.insert(
            "deploy_ramdisk".into(),
            "http://10.0.0.9:8080/arm/initrd".into(),
        );
        let c = config(
            Some(&n),
            "52:54:00:aa:bb:cc",
            Some("aarch64"),
            "http://a",
            None,
            &boot(),
        );
        assert!(c.contains("linux '(http,10.0.0.9)/arm/vmlinuz'"), "{c}");
        assert!(
            c.contains("# driver_info.deploy_ramdisk is not an http:// URL on port 80"),
            "{c}"
        );
        assert!(c.contains("initrd '/ingot/aarch64/initramfs.img'"), "{c}");
    }
}

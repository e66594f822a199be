//! The files the coordinator's TFTP server makes up, for GRUB network boot:
//!
//! - `grubnetaa64.efi`: `[tftp] grub_arm64` (default: Debian's signed
//!   `/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed` when installed),
//!   the boot file `[dhcp] arm64_loader` names by default.
//! - `…/grub.cfg-01-<mac>` (any directory: wherever GRUB's prefix points) and
//!   `ingot/grub/<mac>`: the machine's [`super::grub::config`].
//! - `…/grub.cfg`: [`super::grub::chain`], on to `ingot/grub/$net_default_mac`.
//!   Other `grub.cfg-…` names GRUB tries (by IP address) are not found.
//! - `ingot/<arch>/vmlinuz`, `ingot/<arch>/initramfs.img`, `ingot/vmlinuz`,
//!   `ingot/initramfs.img`: the deploy files of `[boot.by_arch]` and `[boot]`.
//!
//! Every other name goes to the TFTP root.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::conductor::Conductor;
use crate::model::port::normalize_mac;
use crate::tftp::{OpenFuture, VirtualFile, VirtualFiles};

/// Where Debian's `grub-efi-arm64-signed` puts the signed network GRUB.
pub const DEBIAN_GRUBNETAA64: &str = "/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed";
/// The TFTP name of the arm64 network GRUB.
pub const GRUBNETAA64: &str = "grubnetaa64.efi";

/// What a requested name is.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    GrubArm64,
    MacConfig(String),
    Chain,
    Deploy(String),
    Other,
}

fn classify(name: &str) -> Name {
    let rel = name.trim_start_matches('/');
    if rel == GRUBNETAA64 {
        return Name::GrubArm64;
    }
    if let Some(mac) = rel.strip_prefix("ingot/grub/") {
        return normalize_mac(mac).map_or(Name::Other, Name::MacConfig);
    }
    if let Some(file) = rel.strip_prefix("ingot/") {
        return Name::Deploy(file.to_owned());
    }
    let base = rel.rsplit('/').next().unwrap_or(rel);
    if base == "grub.cfg" {
        return Name::Chain;
    }
    if let Some(mac) = base.strip_prefix("grub.cfg-01-") {
        return normalize_mac(&mac.replace('-', ":")).map_or(Name::Other, Name::MacConfig);
    }
    Name::Other
}

/// The coordinator's [`VirtualFiles`].
#[derive(Debug)]
pub struct NetbootFiles {
    conductor: Conductor,
    grub_arm64: Option<PathBuf>,
}

impl NetbootFiles {
    /// Files for `conductor`'s nodes and configuration.
    pub fn new(conductor: Conductor) -> Self {
        let grub_arm64 = conductor.config().tftp.grub_arm64.clone().or_else(|| {
            let d = PathBuf::from(DEBIAN_GRUBNETAA64);
            d.is_file().then_some(d)
        });
        Self {
            conductor,
            grub_arm64,
        }
    }

    async fn mac_config(&self, mac: &str) -> Option<String> {
        let db = self.conductor.db();
        let node = match db.get_port_by_address(mac).await {
            Ok(Some(port)) => match db.get_node(&port.node_uuid).await {
                Ok(n) => n.map(|(n, _)| n),
                Err(e) => {
                    tracing::warn!(error = %e, %mac, "TFTP grub.cfg: database error");
                    return None;
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, %mac, "TFTP grub.cfg: database error");
                return None;
            }
        };
        let config = self.conductor.config();
        let hint = self.conductor.arch_hints().get(mac, crate::model::now_ms());
        let arch = super::node_arch(node.as_ref(), hint.as_deref());
        let base = crate::dhcp::policy::http_base(config);
        let first = crate::api::boot::agent_api_url(config, &base);
        let api = match &node {
            Some(n) => self
                .conductor
                .cluster()
                .agent_urls(&n.conductor_group, &first)
                .join(","),
            None => first,
        };
        let ca = match &config.boot.agent_ca_file {
            Some(path) => match crate::api::boot::ca_b64(path) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "boot.agent_ca_file");
                    return None;
                }
            },
            None => None,
        };
        match &node {
            Some(n) => {
                tracing::info!(node = %n.uuid, %mac, state = %n.provision_state, arch = ?arch, "grub.cfg over TFTP")
            }
            None => tracing::info!(%mac, "grub.cfg over TFTP for an unknown MAC"),
        }
        Some(super::grub::config(
            node.as_ref(),
            mac,
            arch.as_deref(),
            &api,
            ca.as_deref(),
            &config.boot,
        ))
    }
}

impl VirtualFiles for NetbootFiles {
    fn open<'a>(&'a self, name: &'a str, peer: SocketAddr) -> OpenFuture<'a> {
        Box::pin(async move {
            match classify(name) {
                Name::GrubArm64 => self.grub_arm64.clone().map(VirtualFile::Path),
                Name::MacConfig(mac) => self
                    .mac_config(&mac)
                    .await
                    .map(|c| VirtualFile::Bytes(c.into_bytes())),
                Name::Chain => {
                    tracing::debug!(%peer, name, "TFTP: grub.cfg (chain to the per-MAC file)");
                    Some(VirtualFile::Bytes(super::grub::chain().into_bytes()))
                }
                Name::Deploy(rel) => super::resolve_served(&self.conductor.config().boot, &rel)
                    .map(|p| VirtualFile::Path(p.to_path_buf())),
                Name::Other => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(classify("grubnetaa64.efi"), Name::GrubArm64);
        assert_eq!(classify("/grubnetaa64.efi"), Name::GrubArm64);
        assert_eq!(
            classify("/grub/grub.cfg-01-52-54-00-AA-bb-cc"),
            Name::MacConfig("52:54:00:aa:bb:cc".into())
        );
        assert_eq!(
            classify("ingot/grub/52:54:00:aa:bb:cc"),
            Name::MacConfig("52:54:00:aa:bb:cc".into())
        );
        assert_eq!(classify("/debian/grub/grub.cfg"), Name::Chain);
        assert_eq!(classify("grub.cfg"), Name::Chain);
        assert_eq!(classify("/grub/grub.cfg-0A00020F"), Name::Other);
        assert_eq!(classify("/grub/grub.cfg-01-nonsense"), Name::Other);
        assert_eq!(
            classify("/ingot/aarch64/vmlinuz"),
            Name::Deploy("aarch64/vmlinuz".into())
        );
        assert_eq!(classify("snponly.efi"), Name::Other);
    }
}

//! Builds Ingot's provisioning ramdisk: a distro kernel, and a reproducible
//! initramfs holding the static agent as `/init`, the storage, network and BMC
//! drivers with their dependencies and firmware, and depmod-style
//! `modules.dep`/`modules.alias` for the agent's module loader.

pub mod build;
pub mod cpio;
pub mod fetch;
pub mod ipxe;
pub mod modinfo;
pub mod modules;

pub use build::{Arch, BuildOptions, Compression, build};

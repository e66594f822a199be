//! Ingot's end-to-end lab.
//!
//! One QEMU (TCG) server with a virtio disk, an NVMe disk and two NICs; its
//! BMC is OpenIPMI's `ipmi_sim`, whose chassis_control program (this crate's
//! binary) starts and stops QEMU and applies the boot device. The server
//! network-boots on a bridge in a network namespace of the lab's own, from
//! the coordinator's DHCP server and HTTP (`--network slirp`: QEMU's
//! user-mode TFTP, whose `boot.ipxe` chains to the coordinator's HTTP on
//! 10.0.2.2, the host's loopback; see [`netns`]). The coordinator
//! runs with its default configuration plus the ramdisk paths and a free port
//! (`--tls` and `--glance` add a configuration file: HTTPS on every hop; a
//! real Glance that the image is deployed from by its UUID).
//! The scenario then drives the node through the Ironic API: enroll, manage,
//! inspect, provide (metadata wipe), deploy with a config drive, boot from
//! disk, undeploy with a secure wipe; and the host checks the disk files.
//!
//! `--isolation` runs two servers on a private Open vSwitch that the
//! coordinator programs, with namespace hosts standing in for other tenants
//! (module `isolation`).
//!
//! `--ha` runs three coordinators on a private PostgreSQL cluster instead and
//! kills two of them in the middle of the work (module `ha`).
//!
//! Everything it makes stays in the work directory (`target/e2e/`): console
//! log, disk files, BMC and coordinator logs, `report.json`.

pub mod api;
pub mod bmc;
pub mod chassis;
pub mod checks;
pub mod console;
pub mod fileserver;
pub mod glance;
pub mod ha;
pub mod history;
pub mod interrupt;
pub mod isolation;
pub mod journal;
pub mod machine;
pub mod members;
pub mod metrics;
pub mod netns;
pub mod ovs;
pub mod prepare;
pub mod proc;
pub mod report;
pub mod scenario;
pub mod serial;
pub mod uefi;

pub use machine::Arch;
pub use netns::Network;
pub use prepare::Artifacts;
pub use scenario::{Options, run};
pub use uefi::Firmware;

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

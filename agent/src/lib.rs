//! The Ingot agent: PID 1 of the provisioning ramdisk and a standalone CLI.
//!
//! Today it carries the logging setup and the image write command; the wipe
//! library, hardware inventory and the IPA-compatible API join it as their
//! issues land.

pub mod api;
pub mod ca;
pub mod cmdline;
pub mod configdrive;
pub mod coordinator;
pub mod init;
pub mod inventory;
pub mod ipa;
pub mod logging;
pub mod logring;
pub mod net;
pub mod ptable;
pub mod random;
pub mod state;
pub mod wipe;

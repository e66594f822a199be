//! The Ingot agent: PID 1 of the provisioning ramdisk and a standalone CLI.
//!
//! Today it carries the logging setup and the image write command; the wipe
//! library, hardware inventory and the IPA-compatible API join it as their
//! issues land.

pub mod inventory;
pub mod logging;
pub mod wipe;

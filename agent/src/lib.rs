//! The Ingot agent: PID 1 of the provisioning ramdisk and a standalone CLI.
//!
//! - [`init`]: bringing the machine up as PID 1 (mounts, modules);
//!   [`net`]: DHCP; [`cmdline`]: the kernel parameters; [`ca`]: the CA the
//!   coordinator's certificate is checked against.
//! - [`coordinator`]: lookup and heartbeat; [`api`]: ironic-python-agent's
//!   command API on :9999 (auto-TLS); [`ipa`]: its commands; [`state`]: the
//!   token and the command history.
//! - [`inventory`]: the hardware inventory; [`wipe`]: disk wipes with
//!   reports; [`ptable`]: MBR and GPT; [`configdrive`]: the config drive
//!   partition; [`uefi`]: the UEFI boot loader and boot entries.
//! - [`logging`], [`logring`], [`random`]: support.

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
pub mod uefi;
pub mod wipe;

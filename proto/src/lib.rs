//! Wire types shared by the Ingot agent and coordinator.
//!
//! This crate holds data and pure logic only: serde types for the
//! IPA-compatible agent protocol (lookup, heartbeat, `/v1/commands`), the
//! reports the agent sends back, and Ironic's root device hints (which the
//! agent uses to pick the disk to write and the coordinator to report
//! `local_gb` after inspection). It performs no I/O, so both sides (and tests)
//! can depend on it freely.

pub mod agent;
pub mod hints;
pub mod image;
pub mod inventory;
pub mod wipe;

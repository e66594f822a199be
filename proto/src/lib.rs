//! Wire types shared by the Ingot agent and coordinator.
//!
//! This crate holds data only: serde types for the IPA-compatible agent protocol
//! (lookup, heartbeat, `/v1/commands`) and for the reports the agent sends back.
//! It performs no I/O, so both sides (and tests) can depend on it freely.

pub mod agent;
pub mod image;
pub mod inventory;
pub mod wipe;

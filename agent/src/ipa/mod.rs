//! The IPA-compatible commands (`<extension>.<command>`) and their execution:
//! one command at a time, synchronous ones answered with their result,
//! asynchronous ones answered `RUNNING` and finished in the background (which
//! triggers a heartbeat so the coordinator reacts at once).

pub mod error;
pub mod executor;
mod image;
mod log;
pub mod power;
mod registry;
mod standby;
mod steps;
mod tar;
mod write;

pub use error::CmdError;
pub use executor::{Executor, Record};
pub use registry::{Spec, execute, find};

/// What a command returns: its `command_result`, or an error.
pub type CmdResult = Result<Option<serde_json::Value>, CmdError>;

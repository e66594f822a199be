//! The agent's CLI subcommands.

pub mod inventory;
pub mod net;
pub mod run;
pub mod wipe;
pub mod write_image;

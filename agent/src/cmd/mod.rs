//! The agent's CLI subcommands.

pub mod inventory;
pub mod wipe;
pub mod write_image;

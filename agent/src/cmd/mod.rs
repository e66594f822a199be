//! The agent's CLI subcommands.

pub mod wipe;
pub mod inventory;
pub mod write_image;

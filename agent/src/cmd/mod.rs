//! The agent's CLI subcommands.

pub mod wipe;
pub mod write_image;

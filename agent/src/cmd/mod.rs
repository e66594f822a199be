//! The agent's CLI subcommands.

pub mod write_image;

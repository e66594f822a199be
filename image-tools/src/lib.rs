//! Ingot's image library: formats, sources, and the streaming write pipeline.
//!
//! It lives here, in `ingot-image-tools`, because two programs need it: the
//! agent writes images onto disks with it, and the `ingot-image` tool inspects
//! and converts images with the same format readers. See `docs/architecture.md`.

pub mod blockdev;
pub mod buffer;
pub mod checksum;
pub mod convert;
pub mod decode;
pub mod format;
pub mod handoff;
pub mod progress;
pub mod qcow2;
pub mod source;
pub mod spool;
pub mod target;
pub mod write;

pub use write::{WriteError, WriteFailure, WriteOptions, write_image};

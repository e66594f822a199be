//! The verify stage: digests exactly the bytes downloaded, on its own
//! thread, and compares the digest with the expected checksum.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::handoff::Receiver;

use super::{Shared, WriteError};
use crate::buffer::Chunk;
use crate::checksum::{Checksum, Hasher};

/// Starts the hash thread: it digests every chunk from `rx` until the fetch
/// stage hangs up (or the pipeline is cancelled) and returns the hex digest.
pub(super) fn spawn(
    mut hasher: Hasher,
    rx: Receiver<Arc<Chunk>>,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<String>> {
    std::thread::Builder::new()
        .name("ingot-hash".into())
        .spawn(move || {
            for chunk in rx.iter() {
                if shared.cancelled() {
                    break;
                }
                hasher.update(chunk.data());
            }
            hasher.finish_hex()
        })
}

/// The verdict on a download: `Ok` when no checksum was asked for or the
/// digest matches it, else the mismatch naming both digests.
pub(super) fn check(expected: Option<&Checksum>, actual: Option<&str>) -> Result<(), WriteError> {
    match (expected, actual) {
        (Some(expected), Some(actual)) if actual != expected.hex => {
            Err(WriteError::ChecksumMismatch {
                algorithm: expected.algorithm.name(),
                expected: expected.hex.clone(),
                actual: actual.to_string(),
            })
        }
        _ => Ok(()),
    }
}

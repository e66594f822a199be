//! The source stage: reads the image into pool buffers and hands each to the
//! verify and decode stages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::handoff::Sender;

use super::{Shared, WriteError, send};
use crate::buffer::{BufferPool, Chunk};
use crate::progress::Progress;
use crate::source::Source;

/// The fetch stage: fills source buffers completely (so that every chunk but
/// the last is a whole, aligned buffer) and hands each to hash and decode.
pub(super) fn run(
    mut src: Box<dyn Source>,
    pool: &BufferPool,
    decode_tx: &Sender<Arc<Chunk>>,
    hash_tx: Option<&Sender<Arc<Chunk>>>,
    shared: &Shared,
    progress: &Progress,
) -> Result<(u64, u32), WriteError> {
    let mut total = 0u64;
    loop {
        let Some(mut buf) = pool.take(&shared.cancel) else {
            return Err(WriteError::Cancelled);
        };
        let mut filled = 0;
        while filled < buf.len() {
            let n = src.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
            progress.received.fetch_add(n as u64, Ordering::Relaxed);
            if shared.cancelled() {
                return Err(WriteError::Cancelled);
            }
        }
        total += filled as u64;
        let end = filled < buf.len();
        if filled > 0 {
            let chunk = pool.chunk(buf, filled);
            if let Some(h) = hash_tx {
                send(h, chunk.clone())?;
            }
            send(decode_tx, chunk)?;
        }
        if end {
            return Ok((total, src.resumes()));
        }
    }
}

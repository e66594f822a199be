//! Aligned, pooled buffers: the only memory the write pipeline moves data in.
//!
//! Every stage takes buffers from a fixed pool and they return to it when the last
//! reference drops, so peak memory is the pool size whatever the image size, and
//! pages are reused instead of being freed and faulted in again (which costs more
//! than the copy itself on this class of VM).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::handoff::{Receiver, RecvTimeoutError, Sender, bounded};

/// Alignment of every pipeline buffer: enough for O_DIRECT on 512- and 4096-byte
/// logical blocks.
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is aligned to [`ALIGN`] bytes.
#[derive(Debug)]
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to [`ALIGN`].
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Self {
            storage,
            start,
            len,
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// A fixed set of [`AlignedBuf`]s handed out and returned through a channel.
#[derive(Debug, Clone)]
pub struct BufferPool {
    free_tx: Sender<AlignedBuf>,
    free_rx: Receiver<AlignedBuf>,
    buf_len: usize,
}

impl BufferPool {
    /// Creates a pool of `count` buffers of `buf_len` bytes each.
    pub fn new(count: usize, buf_len: usize) -> Self {
        let (free_tx, free_rx) = bounded(count);
        for _ in 0..count {
            // The channel has room for exactly `count` buffers.
            free_tx.send(AlignedBuf::new(buf_len)).ok();
        }
        Self {
            free_tx,
            free_rx,
            buf_len,
        }
    }

    /// Size of each buffer.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// Takes a free buffer, waiting for one to come back. Returns `None` once
    /// `cancel` is set, so a stalled pipeline can always be torn down.
    pub fn take(&self, cancel: &AtomicBool) -> Option<AlignedBuf> {
        loop {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            match self.free_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(buf) => return Some(buf),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Wraps a filled buffer so that it returns to this pool when dropped.
    pub fn chunk(&self, buf: AlignedBuf, len: usize) -> Arc<Chunk> {
        Arc::new(Chunk {
            buf: Some(buf),
            len,
            home: self.free_tx.clone(),
        })
    }
}

/// A filled pool buffer, shared between stages with `Arc`; back to its pool on drop.
#[derive(Debug)]
pub struct Chunk {
    buf: Option<AlignedBuf>,
    len: usize,
    home: Sender<AlignedBuf>,
}

impl Chunk {
    /// The filled bytes.
    pub fn data(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[..self.len],
            None => &[],
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            // The pool may be gone already during teardown; then the memory is freed.
            self.home.send(buf).ok();
        }
    }
}

/// True when every byte of `data` is zero. Written so that it vectorises on
/// targets (musl) whose `memcmp` does not.
pub fn is_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_recycled() {
        let pool = BufferPool::new(2, 8192);
        let cancel = AtomicBool::new(false);
        let a = pool.take(&cancel).unwrap();
        assert_eq!(a.as_ptr() as usize % ALIGN, 0);
        let b = pool.take(&cancel).unwrap();
        let chunk = pool.chunk(a, 10);
        assert_eq!(chunk.data().len(), 10);
        drop(chunk);
        let again = pool.take(&cancel).unwrap();
        assert_eq!(again.len(), 8192);
        drop(b);
    }

    #[test]
    fn take_returns_none_when_cancelled() {
        let pool = BufferPool::new(1, 4096);
        let cancel = AtomicBool::new(false);
        let _held = pool.take(&cancel).unwrap();
        cancel.store(true, Ordering::Relaxed);
        assert!(pool.take(&cancel).is_none());
    }

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 4096 + 7];
        assert!(is_zero(&v));
        v[4096 + 3] = 1;
        assert!(!is_zero(&v));
        v[4096 + 3] = 0;
        v[100] = 0x80;
        assert!(!is_zero(&v));
        assert!(is_zero(&[]));
    }
}

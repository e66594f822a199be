//! Packing small pieces of guest data (qcow2 clusters) into whole buffers.

use crate::handoff::Sender;

use super::writer::WriteOp;
use super::{Shared, WriteError, send};
use crate::buffer::{AlignedBuf, BufferPool};

/// Packs guest data that arrives in small pieces (qcow2 clusters) into whole
/// output buffers, one buffer per contiguous guest range.
pub(super) struct Assembler<'a> {
    pool: &'a BufferPool,
    tx: &'a Sender<WriteOp>,
    shared: &'a Shared,
    buf: Option<AlignedBuf>,
    start: u64,
    filled: usize,
}

impl<'a> Assembler<'a> {
    pub(super) fn new(pool: &'a BufferPool, tx: &'a Sender<WriteOp>, shared: &'a Shared) -> Self {
        Self {
            pool,
            tx,
            shared,
            buf: None,
            start: 0,
            filled: 0,
        }
    }

    pub(super) fn push(&mut self, mut offset: u64, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            if let Some(b) = &self.buf {
                if offset != self.start + self.filled as u64 || self.filled == b.len() {
                    self.flush()?;
                }
            }
            if self.buf.is_none() {
                self.buf = Some(
                    self.pool
                        .take(&self.shared.cancel)
                        .ok_or(WriteError::Cancelled)?,
                );
                self.start = offset;
                self.filled = 0;
            }
            let Some(buf) = self.buf.as_mut() else {
                return Err(WriteError::Cancelled);
            };
            let n = data.len().min(buf.len() - self.filled);
            buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            offset += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), WriteError> {
        if let Some(buf) = self.buf.take() {
            let len = self.filled;
            let chunk = self.pool.chunk(buf, len);
            send(
                self.tx,
                WriteOp::Data {
                    offset: self.start,
                    chunk,
                    start: 0,
                    len,
                },
            )?;
        }
        Ok(())
    }
}

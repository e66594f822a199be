//! qcow2 in the decode stage: mapped from its tables (read by `Range`) and
//! converted while it streams, or, from a server that ignores `Range`,
//! spooled on the target and converted from there once verified.

use std::sync::Arc;

use crate::handoff::{RecvTimeoutError, bounded};

use super::HEAD_LEN;
use super::assemble::Assembler;
use super::decode::Decoder;
use super::writer::WriteOp;
use super::{WriteError, send};
use crate::buffer::Chunk;
use crate::qcow2::{self, Qcow2Error, StreamMapper};
use crate::source::{self, SourceError};
use crate::spool::{self, Spool};

impl Decoder<'_> {
    /// qcow2: tables by range reads, then clusters from the stream. A server
    /// that ignores Range gets the spooled path instead.
    pub(super) fn qcow2(
        &mut self,
        first: Arc<Chunk>,
        mut ranges: Box<dyn source::RangeRead>,
    ) -> Result<u64, WriteError> {
        let header = qcow2::parse_header(first.data())?;
        self.check_fits(header.size, false)?;
        if header.dirty {
            tracing::warn!(
                "qcow2 image was not closed cleanly; using its L1/L2 tables as they are"
            );
        }
        let layout = match qcow2::read_layout(header.clone(), ranges.as_mut(), self.len_hint) {
            Ok(layout) => layout,
            Err(Qcow2Error::Source(SourceError::RangeUnsupported { url })) => {
                drop(ranges);
                return self.qcow2_spooled(first, header, &url);
            }
            Err(e) => return Err(e.into()),
        };
        let rx = self.rx;
        let mut next = Some(first);
        self.convert(layout, &mut || next.take().or_else(|| rx.recv()))
    }

    /// Converts a mapped qcow2 image whose file arrives, from its first byte,
    /// in the chunks `next` yields.
    fn convert(
        &mut self,
        layout: qcow2::Layout,
        next: &mut dyn FnMut() -> Option<Arc<Chunk>>,
    ) -> Result<u64, WriteError> {
        let size = layout.header.size;
        tracing::info!(
            virtual_size = size,
            extents = layout.extents.len(),
            zero_runs = layout.zero_runs.len(),
            "qcow2 mapped"
        );
        for &(offset, len) in &layout.zero_runs {
            send(self.tx, WriteOp::Zero { offset, len })?;
        }
        let mut mapper = StreamMapper::new(layout);
        let mut out = Assembler::new(self.pool.get(), self.tx, self.shared);
        // The assembler fails only when the writer has stopped, and then the
        // writer's own error is the one reported.
        let mut emit = |g: qcow2::GuestData<'_>| {
            out.push(g.offset, g.data)
                .map_err(|e| Qcow2Error::Corrupt(format!("the writer stopped: {e}")))
        };
        let cancelled_or = |e: Qcow2Error| {
            if self.shared.cancelled() {
                WriteError::Cancelled
            } else {
                WriteError::Qcow2(e)
            }
        };
        let mut pos = 0u64;
        while let Some(chunk) = next() {
            mapper
                .feed(pos, chunk.data(), &mut emit)
                .map_err(cancelled_or)?;
            pos += chunk.data().len() as u64;
        }
        if self.shared.cancelled() {
            return Err(WriteError::Cancelled);
        }
        mapper.finish(pos, &mut emit).map_err(cancelled_or)?;
        out.flush()?;
        Ok(size)
    }

    /// qcow2 from a server that ignores Range: the file is written as it
    /// arrives onto the target past the image's virtual disk, and converted
    /// from there once the whole download is verified. Nothing reaches the
    /// image's own area before that; the spool is wiped at commit or clear.
    fn qcow2_spooled(
        &mut self,
        first: Arc<Chunk>,
        header: qcow2::Header,
        url: &str,
    ) -> Result<u64, WriteError> {
        let virtual_size = header.size;
        let too_large = |needed: u64, at_least: bool, capacity: u64| WriteError::SpoolTooLarge {
            virtual_size,
            needed,
            at_least,
            capacity,
        };
        let start = spool::spool_start(virtual_size, HEAD_LEN)
            .ok_or_else(|| too_large(u64::MAX, true, self.capacity.unwrap_or(0)))?;
        if let (Some(capacity), Some(len)) = (self.capacity, self.len_hint) {
            match start.checked_add(len) {
                Some(needed) if needed <= capacity => {}
                needed => return Err(too_large(needed.unwrap_or(u64::MAX), false, capacity)),
            }
        }
        tracing::warn!(
            url,
            virtual_size,
            spool_offset = start,
            file_bytes = ?self.len_hint,
            "the server ignores Range requests: spooling the qcow2 image on the target past its virtual disk, to convert it once verified"
        );
        let mut pos = 0u64;
        let mut next = Some(first);
        while let Some(chunk) = next {
            let len = chunk.data().len() as u64;
            let offset = start.checked_add(pos);
            let end = offset.and_then(|o| o.checked_add(len));
            match (end, self.capacity) {
                (Some(end), Some(capacity)) if end > capacity => {
                    return Err(too_large(end, true, capacity));
                }
                (None, capacity) => return Err(too_large(u64::MAX, true, capacity.unwrap_or(0))),
                _ => {}
            }
            let offset = offset.unwrap_or(u64::MAX);
            send(self.tx, WriteOp::Spool { offset, chunk })?;
            pos += len;
            next = self.rx.recv();
        }
        if self.shared.cancelled() {
            return Err(WriteError::Cancelled);
        }
        // Every spooled byte is on the target before it is read back.
        let (ack_tx, ack_rx) = bounded(1);
        send(self.tx, WriteOp::Barrier(ack_tx))?;
        // A writer that failed before it reached the barrier leaves it queued
        // (this stage still holds the channel), so wait on cancellation too.
        loop {
            match ack_rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(()) => break,
                Err(RecvTimeoutError::Timeout) if !self.shared.cancelled() => {}
                Err(_) => return Err(WriteError::Cancelled),
            }
        }
        // Converted only from a verified download: a wrong checksum (reported
        // by the caller) or any other failure leaves the image's area as it was.
        if !self.verified.recv().unwrap_or(false) {
            return Err(WriteError::Cancelled);
        }
        tracing::info!(
            spooled_bytes = pos,
            spool_offset = start,
            "spooled qcow2 verified; converting it"
        );
        let spool = Spool::open(&self.device, start, pos)?;
        let layout = qcow2::read_layout(header, &mut spool.ranges(), Some(spool.len()))?;
        let pool = self.spool_pool.clone();
        let shared = self.shared;
        let mut chunks = spool.chunks(&pool, &shared.cancel);
        let size = self.convert(layout, &mut || chunks.next_chunk());
        if let Some(e) = chunks.take_error() {
            return Err(e.into());
        }
        size
    }
}

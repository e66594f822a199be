//! The write stage: data with O_DIRECT, zero runs coalesced and zeroed, the
//! first MiB held back until the verdict, then committed or the target cleared.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::handoff::{Receiver, Sender};

use super::{HEAD_LEN, Shared, TargetState, WriteError};
use crate::buffer::{AlignedBuf, Chunk, is_zero};
use crate::progress::Progress;
use crate::target::{Target, TargetError, TargetKind};

/// Zero detection granularity: all-zero blocks of this size (aligned) become
/// zero runs; smaller zero gaps are written as data.
const ZERO_BLOCK: usize = 64 << 10;

/// An operation for the writer.
pub(super) enum WriteOp {
    /// Bytes `range` of `chunk` belong at `offset`.
    Data {
        offset: u64,
        chunk: Arc<Chunk>,
        start: usize,
        len: usize,
    },
    /// `[offset, offset + len)` reads as zeros.
    Zero { offset: u64, len: u64 },
    /// Downloaded bytes to spool at `offset`, exactly as they are (no zero
    /// detection, no held-back head): not image data.
    Spool { offset: u64, chunk: Arc<Chunk> },
    /// Answer once every earlier operation reached the target.
    Barrier(Sender<()>),
}

/// What the writer did.
pub(super) struct Written {
    pub(super) data_bytes: u64,
    pub(super) zero_bytes: u64,
    pub(super) state: TargetState,
    pub(super) result: Result<(), WriteError>,
}

/// The write stage.
pub(super) struct Writer {
    target: Target,
    skip_zeros: bool,
    progress: Arc<Progress>,
    /// The first MiB of the image, written last.
    head: AlignedBuf,
    /// Whether anything reached the target yet.
    touched: bool,
    /// `[start, end)` of the target holding a spooled qcow2 image, wiped
    /// before the head is committed or when the target is cleared.
    spool: Option<(u64, u64)>,
    pending_zero: Option<(u64, u64)>,
    data_bytes: u64,
    zero_bytes: u64,
}

impl Writer {
    pub(super) fn new(target: Target, skip_zeros: bool, progress: Arc<Progress>) -> Self {
        Self {
            target,
            skip_zeros,
            progress,
            head: AlignedBuf::new(HEAD_LEN as usize),
            touched: false,
            spool: None,
            pending_zero: None,
            data_bytes: 0,
            zero_bytes: 0,
        }
    }

    pub(super) fn run(
        &mut self,
        rx: &Receiver<WriteOp>,
        shared: &Shared,
    ) -> Result<(), WriteError> {
        for op in rx.iter() {
            if shared.cancelled() {
                return Err(WriteError::Cancelled);
            }
            match op {
                WriteOp::Data {
                    offset,
                    chunk,
                    start,
                    len,
                } => self.data(offset, &chunk.data()[start..start + len])?,
                WriteOp::Zero { offset, len } => self.zero(offset, len)?,
                WriteOp::Spool { offset, chunk } => self.spool(offset, chunk.data())?,
                WriteOp::Barrier(ack) => {
                    self.flush_zero()?;
                    ack.send(()).ok();
                }
            }
        }
        self.flush_zero()
    }

    /// Copies the part of `[offset, offset+len)` inside the held-back head into
    /// the head buffer; returns how many leading bytes that consumed.
    fn hold_head(&mut self, offset: u64, data: Option<&[u8]>, len: u64) -> u64 {
        if offset >= HEAD_LEN {
            return 0;
        }
        let n = len.min(HEAD_LEN - offset);
        let (o, k) = (offset as usize, n as usize);
        match data {
            Some(d) => self.head[o..o + k].copy_from_slice(&d[..k]),
            None => self.head[o..o + k].fill(0),
        }
        n
    }

    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let held = self.hold_head(offset, Some(data), data.len() as u64) as usize;
        self.data_bytes += held as u64;
        self.progress
            .written
            .fetch_add(held as u64, Ordering::Relaxed);
        let (mut offset, data) = (offset + held as u64, &data[held..]);
        if data.is_empty() {
            return Ok(());
        }
        let aligned = offset % ZERO_BLOCK as u64 == 0;
        // Split into runs of data and of all-zero blocks.
        let mut run_start = 0;
        let mut run_is_zero = None;
        let mut i = 0;
        while i < data.len() {
            let end = (i + ZERO_BLOCK).min(data.len());
            let zero = aligned && end - i == ZERO_BLOCK && is_zero(&data[i..end]);
            if run_is_zero.is_some_and(|z| z != zero) {
                self.emit(offset, &data[run_start..i], run_is_zero == Some(true))?;
                offset += (i - run_start) as u64;
                run_start = i;
            }
            run_is_zero = Some(zero);
            i = end;
        }
        self.emit(offset, &data[run_start..], run_is_zero == Some(true))
    }

    fn emit(&mut self, offset: u64, data: &[u8], zero: bool) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        if zero {
            return self.zero(offset, data.len() as u64);
        }
        self.flush_zero()?;
        self.touched = true;
        self.target.write_at(data, offset)?;
        self.data_bytes += data.len() as u64;
        self.progress
            .written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), WriteError> {
        let held = self.hold_head(offset, None, len);
        self.zero_bytes += held;
        self.progress.written.fetch_add(held, Ordering::Relaxed);
        let (offset, len) = (offset + held, len - held);
        if len == 0 {
            return Ok(());
        }
        self.zero_bytes += len;
        self.progress.written.fetch_add(len, Ordering::Relaxed);
        if self.skip_zeros {
            return Ok(());
        }
        match &mut self.pending_zero {
            Some((start, plen)) if *start + *plen == offset => *plen += len,
            _ => {
                self.flush_zero()?;
                self.pending_zero = Some((offset, len));
            }
        }
        Ok(())
    }

    /// Writes spooled bytes exactly where they go, and remembers the extent.
    fn spool(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        self.touched = true;
        self.target.write_at(data, offset)?;
        let end = offset.saturating_add(data.len() as u64);
        self.spool = Some(match self.spool {
            Some((s, e)) => (s.min(offset), e.max(end)),
            None => (offset, end),
        });
        Ok(())
    }

    /// Removes the spooled image: a growing file is cut to `keep` bytes
    /// (the spool lies past them), a disk or fixed-size file gets the spool's
    /// extent zeroed, whatever `skip_zeros` says, since the spool made it
    /// non-zero. Left behind, the qcow2 file's clusters would look like file
    /// systems to anything that later partitions that space.
    fn wipe_spool(&mut self, keep: u64) -> Result<(), TargetError> {
        let Some((start, end)) = self.spool else {
            return Ok(());
        };
        if self.target.kind() == TargetKind::File && self.target.capacity().is_none() {
            self.target.truncate(keep.min(start))?;
        } else {
            let (from, to) = (start / 512 * 512, end.next_multiple_of(512));
            let to = self.target.capacity().map_or(to, |cap| to.min(cap));
            self.target.zero_range(from, to.saturating_sub(from))?;
        }
        tracing::info!(
            offset = start,
            bytes = end - start,
            "spooled qcow2 image wiped"
        );
        self.spool = None;
        Ok(())
    }

    fn flush_zero(&mut self) -> Result<(), WriteError> {
        if let Some((offset, len)) = self.pending_zero.take() {
            self.touched = true;
            self.target.zero_range(offset, len)?;
        }
        Ok(())
    }

    /// Commits the held-back head (verdict `Some(image_size)`) or clears the target.
    pub(super) fn finish(mut self, verdict: Option<u64>) -> Written {
        let (state, result) = match verdict {
            Some(image_size) => match self.commit(image_size) {
                Ok(()) => (TargetState::Untouched, Ok(())),
                Err(e) => {
                    self.touched = true;
                    (self.clear(), Err(e))
                }
            },
            None if self.touched => (self.clear(), Ok(())),
            None => (TargetState::Untouched, Ok(())),
        };
        Written {
            data_bytes: self.data_bytes,
            zero_bytes: self.zero_bytes,
            state,
            result,
        }
    }

    fn commit(&mut self, image_size: u64) -> Result<(), WriteError> {
        self.flush_zero()?;
        // The spool is gone before the image can boot: a crash from here on
        // leaves either no bootable head, or the image without the spool.
        self.wipe_spool(image_size)?;
        let head_len = image_size.min(HEAD_LEN) as usize;
        if self.target.kind() == TargetKind::File {
            self.target.ensure_len(image_size)?;
        }
        // On a disk larger than the image, its last MiB is not part of the
        // image but may hold the previous layout's backup GPT or an md 0.90/1.0
        // superblock, which firmware or the kernel could still act on.
        if let Some(cap) = self.target.capacity() {
            let tail = cap
                .saturating_sub(HEAD_LEN)
                .max(image_size)
                .next_multiple_of(512);
            if tail < cap && !self.skip_zeros {
                self.target.zero_range(tail, cap - tail)?;
            }
        }
        // Everything else must be durable before the image becomes bootable.
        self.target.sync()?;
        let head = std::mem::replace(&mut self.head, AlignedBuf::new(0));
        let r = self.target.write_at(&head[..head_len], 0);
        self.head = head;
        r?;
        self.target.sync()?;
        self.target.reread_partitions();
        Ok(())
    }

    /// Zeroes the first and last MiB so that a partial image cannot boot.
    fn clear(&mut self) -> TargetState {
        // First, so that a growing file's length below is the image's.
        let mut result = self
            .spool
            .map_or(Ok(()), |(start, _)| self.wipe_spool(start));
        let len_now = match self.target.capacity() {
            Some(c) => c,
            None => self.target.file().metadata().map(|m| m.len()).unwrap_or(0),
        };
        let head = len_now.min(HEAD_LEN);
        if head > 0 {
            result = result.and(self.target.zero_range(0, head));
        }
        if len_now > HEAD_LEN {
            let tail_start = (len_now - HEAD_LEN).max(HEAD_LEN) / 512 * 512;
            result = result.and(self.target.zero_range(tail_start, len_now - tail_start));
        }
        match result.and_then(|()| self.target.sync()) {
            Ok(()) => TargetState::Cleared,
            Err(e) => TargetState::ClearFailed(e.to_string()),
        }
    }
}

//! The decode stage: recognises the format by its magic bytes and turns the
//! downloaded stream into writes. Raw chunks pass through, zstd/gzip/xz are
//! decompressed into a second pool; qcow2 is in `qcow2.rs`.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::handoff::{Receiver, Sender};

use super::writer::WriteOp;
use super::{Shared, WriteError, send};
use crate::buffer::{BufferPool, Chunk};
use crate::decode;
use crate::format::{self, Format, FormatChoice};
use crate::source;

/// What the decode stage found: the format and the image's size.
pub(super) struct Decoded {
    pub(super) format: Format,
    pub(super) image_size: u64,
}

/// A buffer pool allocated on first use.
pub(super) struct LazyPool {
    pub(super) count: usize,
    pub(super) buf_len: usize,
    pub(super) pool: Option<BufferPool>,
}

impl LazyPool {
    pub(super) fn get(&mut self) -> &BufferPool {
        self.pool
            .get_or_insert_with(|| BufferPool::new(self.count, self.buf_len))
    }
}

/// The decode stage.
pub(super) struct Decoder<'a> {
    pub(super) rx: &'a Receiver<Arc<Chunk>>,
    pub(super) tx: &'a Sender<WriteOp>,
    pub(super) pool: LazyPool,
    pub(super) shared: &'a Shared,
    pub(super) capacity: Option<u64>,
    pub(super) len_hint: Option<u64>,
    pub(super) xz_memlimit: u64,
    /// The target, read back when a qcow2 image was spooled on it.
    pub(super) device: PathBuf,
    /// Buffers to read a spooled image back into (the source pool, idle by then).
    pub(super) spool_pool: BufferPool,
    /// Whether the download was verified: `true` lets a spooled image be converted.
    pub(super) verified: Receiver<bool>,
}

impl Decoder<'_> {
    pub(super) fn run(
        &mut self,
        choice: FormatChoice,
        ranges: Box<dyn source::RangeRead>,
    ) -> Result<Decoded, WriteError> {
        let Some(first) = self.rx.recv() else {
            if self.shared.cancelled() {
                return Err(WriteError::Cancelled);
            }
            // An empty image: nothing to write, and a zero-byte image is refused.
            return Err(WriteError::Format("the image is empty (0 bytes)".into()));
        };
        let format = format::resolve(choice, first.data()).map_err(WriteError::Format)?;
        tracing::info!(%format, "image format");
        let image_size = match format {
            Format::Raw => self.raw(first)?,
            Format::Qcow2 => self.qcow2(first, ranges)?,
            Format::Zstd | Format::Gzip | Format::Xz => {
                if format == Format::Zstd
                    && let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(first.data())
                {
                    self.check_fits(size, false)?;
                }
                let r = ChunkReader::new(first, self.rx);
                let dec = decode::stream_decoder(format, r, self.xz_memlimit)
                    .map_err(|e| self.decompress_err(format, 0, e))?;
                self.stream(format, dec)?
            }
        };
        if image_size == 0 {
            return Err(WriteError::Format("the image is empty (0 bytes)".into()));
        }
        Ok(Decoded { format, image_size })
    }

    pub(super) fn check_fits(&self, size: u64, at_least: bool) -> Result<(), WriteError> {
        match self.capacity {
            Some(capacity) if size > capacity => Err(WriteError::TooLarge {
                image: size,
                at_least,
                capacity,
            }),
            _ => Ok(()),
        }
    }

    fn decompress_err(&self, format: Format, at: u64, e: std::io::Error) -> WriteError {
        if self.shared.cancelled() {
            return WriteError::Cancelled;
        }
        WriteError::Decode(decode::DecodeError::of(format, at, &e))
    }

    /// Raw: chunks go to the writer as they are.
    fn raw(&mut self, first: Arc<Chunk>) -> Result<u64, WriteError> {
        if let Some(len) = self.len_hint {
            self.check_fits(len, false)?;
        }
        let mut offset = 0u64;
        let mut next = Some(first);
        while let Some(chunk) = next {
            let len = chunk.data().len();
            self.check_fits(offset + len as u64, true)?;
            send(
                self.tx,
                WriteOp::Data {
                    offset,
                    chunk,
                    start: 0,
                    len,
                },
            )?;
            offset += len as u64;
            next = self.rx.recv();
        }
        Ok(offset)
    }

    /// zstd, gzip, xz: decompress into full output buffers.
    fn stream(&mut self, format: Format, mut dec: impl Read) -> Result<u64, WriteError> {
        let mut offset = 0u64;
        loop {
            let Some(mut buf) = self.pool.get().take(&self.shared.cancel) else {
                return Err(WriteError::Cancelled);
            };
            let mut filled = 0;
            while filled < buf.len() {
                match dec.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.decompress_err(format, offset + filled as u64, e)),
                }
            }
            if self.shared.cancelled() {
                return Err(WriteError::Cancelled);
            }
            let end = filled < buf.len();
            if filled > 0 {
                self.check_fits(offset + filled as u64, !end)?;
                let chunk = self.pool.get().chunk(buf, filled);
                send(
                    self.tx,
                    WriteOp::Data {
                        offset,
                        chunk,
                        start: 0,
                        len: filled,
                    },
                )?;
                offset += filled as u64;
            }
            if end {
                return Ok(offset);
            }
        }
    }
}

/// `BufRead` over the chunks of the stream, for the decompressors.
struct ChunkReader<'a> {
    rx: &'a Receiver<Arc<Chunk>>,
    cur: Option<Arc<Chunk>>,
    pos: usize,
}

impl<'a> ChunkReader<'a> {
    fn new(first: Arc<Chunk>, rx: &'a Receiver<Arc<Chunk>>) -> Self {
        Self {
            rx,
            cur: Some(first),
            pos: 0,
        }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        loop {
            let exhausted = match &self.cur {
                Some(c) => self.pos >= c.data().len(),
                None => return Ok(&[]),
            };
            if !exhausted {
                break;
            }
            self.cur = self.rx.recv();
            self.pos = 0;
        }
        Ok(self.cur.as_ref().map_or(&[][..], |c| &c.data()[self.pos..]))
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

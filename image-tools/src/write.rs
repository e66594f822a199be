//! The image write pipeline: source → (hash ‖ decode) → write.
//!
//! Four threads connected by bounded channels, moving pooled aligned buffers:
//!
//! - **fetch** reads the source into buffers from the source pool;
//! - **hash** digests every downloaded byte (skipped without a checksum);
//! - **decode** recognises the format by its magic bytes and turns the stream
//!   into guest writes: raw buffers pass through untouched, zstd/gzip/xz are
//!   decompressed into the output pool, qcow2 is mapped cluster by cluster;
//! - **write** splits data from zero runs, writes data with O_DIRECT and zero
//!   runs with BLKZEROOUT (or fallocate), and holds the first MiB back.
//!
//! Only when the stream ended cleanly and the checksum matched is the first MiB
//! written, then everything fsynced. On any failure after the target was
//! touched, its first and last MiB are zeroed instead, so it never boots a
//! half-written or unverified image. Memory is the two pools, whatever the size.
//!
//! A qcow2 image from a server that ignores `Range` is spooled on the target
//! past its virtual disk, verified, and converted from there (`spool.rs`); the
//! spool is wiped before the first MiB is committed.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use ingot_proto::image::{VerifiedChecksum, WriteSummary};

use crate::buffer::{AlignedBuf, BufferPool, Chunk, is_zero};
use crate::checksum::{Checksum, ChecksumError, Hasher};
use crate::decode;
use crate::format::{self, Format, FormatChoice};
use crate::progress::Progress;
use crate::qcow2::{self, Qcow2Error, StreamMapper};
use crate::source::{self, Source, SourceError, SourceOptions};
use crate::spool::{self, Spool};
use crate::target::{Target, TargetError, TargetKind};

/// The first MiB is held back until the image is verified, and zeroed (with
/// the last MiB) on failure: it holds the MBR, the primary GPT and most boot
/// loaders' first stage, the last MiB the backup GPT.
pub const HEAD_LEN: u64 = 1 << 20;
/// Zero detection granularity: all-zero blocks of this size (aligned) become
/// zero runs; smaller zero gaps are written as data.
const ZERO_BLOCK: usize = 64 << 10;

/// What to write, where, and how.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// URL or path of the image.
    pub source: String,
    /// Block device or file to write.
    pub device: PathBuf,
    /// Expected checksum of the downloaded bytes.
    pub checksum: Option<Checksum>,
    /// Accept an MD5 checksum.
    pub allow_md5: bool,
    /// Format detection or an expected format.
    pub format: FormatChoice,
    /// The target already reads as zeros: skip zero runs instead of zeroing.
    pub target_is_zeroed: bool,
    /// Network retry, timeout and TLS options.
    pub source_options: SourceOptions,
    /// Size of each pipeline buffer.
    pub buffer_size: usize,
    /// Buffers in each of the two pools.
    pub buffers: usize,
    /// Most memory the xz decoder may use, in bytes; `None` for
    /// [`default_xz_memlimit`] (a quarter of the machine's RAM). An xz stream
    /// whose dictionary needs more is refused before it is decoded.
    pub xz_memlimit: Option<u64>,
}

impl WriteOptions {
    /// Options with the defaults for everything but source and device.
    pub fn new(source: impl Into<String>, device: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            device: device.into(),
            checksum: None,
            allow_md5: false,
            format: FormatChoice::Auto,
            target_is_zeroed: false,
            source_options: SourceOptions::default(),
            buffer_size: 1 << 20,
            buffers: 8,
            xz_memlimit: None,
        }
    }
}

/// The smallest default xz memory limit. `xz -9` needs 65 MiB to decode, so
/// every standard preset decodes on any machine; the 1.5 GiB or 4 GiB
/// dictionaries an xz header may declare do not.
pub const XZ_MEMLIMIT_FLOOR: u64 = 128 << 20;

/// The xz memory limit when the caller sets none: a quarter of `MemTotal`
/// (`/proc/meminfo`), and at least [`XZ_MEMLIMIT_FLOOR`] (also when the RAM
/// cannot be read).
pub fn default_xz_memlimit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m));
    xz_memlimit_for(total)
}

/// A quarter of `total` bytes of RAM, at least [`XZ_MEMLIMIT_FLOOR`].
fn xz_memlimit_for(total: Option<u64>) -> u64 {
    total.map_or(0, |t| t / 4).max(XZ_MEMLIMIT_FLOOR)
}

/// `MemTotal` in bytes from the text of `/proc/meminfo`.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The checksum option was invalid.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The target could not be opened or written.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The format was refused.
    #[error("{0}")]
    Format(String),
    /// A qcow2 image was refused.
    #[error(transparent)]
    Qcow2(#[from] Qcow2Error),
    /// A compressed stream was corrupt or truncated, or an xz stream
    /// needs more memory than [`WriteOptions::xz_memlimit`].
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    /// The image does not fit.
    #[error("the image is {image} bytes{}, larger than the target's {capacity} bytes", if *.at_least { " or more" } else { "" })]
    TooLarge {
        /// Image size (or the size reached so far).
        image: u64,
        /// Whether `image` is only a lower bound.
        at_least: bool,
        /// Target capacity.
        capacity: u64,
    },
    /// The server ignores `Range`, so the qcow2 image is spooled on the target
    /// past its virtual disk before it is converted, and the target is too
    /// small for both.
    #[error(
        "the server ignores Range requests, so the qcow2 image is downloaded onto the target before it is converted, after the {virtual_size} bytes of the image: that needs {needed} bytes{}, but the target has {capacity}",
        if *.at_least { " or more" } else { "" }
    )]
    SpoolTooLarge {
        /// The image's virtual size.
        virtual_size: u64,
        /// Bytes of target needed (image, alignment and the qcow2 file).
        needed: u64,
        /// Whether `needed` is only a lower bound (the file's length was not
        /// announced).
        at_least: bool,
        /// Target capacity.
        capacity: u64,
    },
    /// The downloaded bytes do not match the checksum.
    #[error("checksum mismatch: expected {algorithm}:{expected}, got {algorithm}:{actual}")]
    ChecksumMismatch {
        /// Algorithm name.
        algorithm: &'static str,
        /// Expected digest.
        expected: String,
        /// Digest of what was downloaded.
        actual: String,
    },
    /// A pipeline thread died.
    #[error("internal error: {0}")]
    Internal(String),
    /// Another stage failed first (never reported on its own).
    #[error("cancelled")]
    Cancelled,
}

/// What happened to the target when a write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Nothing was written to it.
    Untouched,
    /// Its first and last MiB were zeroed, so it will not boot.
    Cleared,
    /// Clearing it failed too; it may hold a partial image.
    ClearFailed(String),
}

/// A failed write: the cause and what was done to the target.
#[derive(Debug, thiserror::Error)]
#[error("{error}{}", describe_state(.target))]
pub struct WriteFailure {
    /// The cause.
    pub error: WriteError,
    /// The target's state afterwards.
    pub target: TargetState,
}

fn describe_state(s: &TargetState) -> String {
    match s {
        TargetState::Untouched => " (the target was not modified)".into(),
        TargetState::Cleared => {
            " (the target was made unbootable: its first and last MiB were zeroed)".into()
        }
        TargetState::ClearFailed(e) => {
            format!(" (WARNING: clearing the partly written target failed too: {e})")
        }
    }
}

impl From<WriteError> for WriteFailure {
    fn from(error: WriteError) -> Self {
        Self {
            error,
            target: TargetState::Untouched,
        }
    }
}

/// An operation for the writer.
enum WriteOp {
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

/// The first error wins; later ones are consequences.
#[derive(Default)]
struct Shared {
    cancel: AtomicBool,
    error: Mutex<Option<WriteError>>,
}

impl Shared {
    fn fail(&self, e: WriteError) {
        if matches!(e, WriteError::Cancelled) {
            return;
        }
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                tracing::debug!(error = %e, "pipeline stage failed");
                *slot = Some(e);
            }
        }
        self.cancel.store(true, Ordering::SeqCst);
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    fn take_error(&self) -> Option<WriteError> {
        // `cancelled` is set exactly when an error was recorded.
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

fn send<T>(tx: &Sender<T>, v: T) -> Result<(), WriteError> {
    tx.send(v).map_err(|_| WriteError::Cancelled)
}

/// Writes an image as described by `opts`, reporting through `progress`.
pub fn write_image(
    opts: &WriteOptions,
    progress: &Arc<Progress>,
) -> Result<WriteSummary, WriteFailure> {
    let started = Instant::now();
    if let Some(c) = &opts.checksum {
        c.check_allowed(opts.allow_md5).map_err(WriteError::from)?;
    }
    // Open both ends before anything is written, so that a missing image, a
    // refused connection or an unusable target change nothing.
    let src = source::open(&opts.source, &opts.source_options).map_err(WriteError::from)?;
    let ranges = src.range_reader().map_err(WriteError::from)?;
    let target = Target::open(&opts.device).map_err(WriteError::from)?;
    let capacity = target.capacity();
    let block_size = target.block_size();
    // The size check against the target needs the format, so the decoder does it.
    if let Some(len) = src.len_hint() {
        progress.source_total.store(len, Ordering::Relaxed);
    }
    tracing::info!(source = %opts.source, device = %opts.device.display(), ?capacity, block_size, "writing image");

    let shared = Arc::new(Shared::default());
    let buf_len = opts
        .buffer_size
        .max(1 << 16)
        .next_multiple_of(crate::buffer::ALIGN);
    let src_pool = BufferPool::new(opts.buffers.max(2), buf_len);
    // The output pool is only filled by decoders that produce new bytes
    // (compressed streams, qcow2); raw chunks go to the writer as they are.
    let out_pool = LazyPool {
        count: opts.buffers.max(2),
        buf_len,
        pool: None,
    };
    let depth = opts.buffers.max(2);
    let (decode_tx, decode_rx) = bounded::<Arc<Chunk>>(depth);
    let (hash_tx, hash_rx) = bounded::<Arc<Chunk>>(depth);
    let (write_tx, write_rx) = bounded::<WriteOp>(depth);
    let (verdict_tx, verdict_rx) = bounded::<Option<u64>>(1);
    // Whether the download is verified (or needs no checksum): what a
    // spooled qcow2 waits for before it is converted.
    let (verified_tx, verified_rx) = bounded::<bool>(1);

    let hasher = opts.checksum.as_ref().map(|c| Hasher::new(c.algorithm));
    let hash_tx = hasher.as_ref().map(|_| hash_tx);

    let writer = {
        let shared = shared.clone();
        let progress = progress.clone();
        let skip_zeros = opts.target_is_zeroed;
        std::thread::Builder::new()
            .name("ingot-write".into())
            .spawn(move || {
                let mut w = Writer::new(target, skip_zeros, progress);
                let r = w.run(&write_rx, &shared);
                if let Err(e) = r {
                    shared.fail(e);
                }
                drop(write_rx);
                // The image is committed only on an explicit verdict.
                let verdict = verdict_rx.recv().ok().flatten();
                w.finish(verdict)
            })
            .map_err(|e| WriteError::Internal(e.to_string()))?
    };
    let hash = hasher.map(|mut h| {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("ingot-hash".into())
            .spawn(move || {
                for chunk in hash_rx.iter() {
                    if shared.cancelled() {
                        break;
                    }
                    h.update(chunk.data());
                }
                h.finish_hex()
            })
    });
    let hash = match hash {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => return Err(WriteError::Internal(e.to_string()).into()),
        None => None,
    };
    let xz_memlimit = opts.xz_memlimit.unwrap_or_else(default_xz_memlimit);
    let decoder = {
        let shared = shared.clone();
        let choice = opts.format;
        let len_hint = src.len_hint();
        let device = opts.device.clone();
        let spool_pool = src_pool.clone();
        std::thread::Builder::new()
            .name("ingot-decode".into())
            .spawn(move || {
                let mut d = Decoder {
                    rx: &decode_rx,
                    tx: &write_tx,
                    pool: out_pool,
                    shared: &shared,
                    capacity,
                    len_hint,
                    xz_memlimit,
                    device,
                    spool_pool,
                    verified: verified_rx,
                };
                match d.run(choice, ranges) {
                    Ok(decoded) => Some(decoded),
                    Err(e) => {
                        shared.fail(e);
                        None
                    }
                }
            })
            .map_err(|e| WriteError::Internal(e.to_string()))?
    };
    let fetched = fetch(
        src,
        &src_pool,
        &decode_tx,
        hash_tx.as_ref(),
        &shared,
        progress,
    );
    let resumes = match fetched {
        Ok((_, resumes)) => resumes,
        Err(e) => {
            shared.fail(e);
            0
        }
    };
    let source_bytes = progress.received.load(Ordering::Relaxed);
    drop(decode_tx);
    drop(hash_tx);

    // The hash ends with the download. A spooled qcow2 is converted only
    // once this says the download is verified.
    let digest = hash.map(|h| h.join().unwrap_or_default());
    let matches = match (&opts.checksum, &digest) {
        (Some(expected), Some(actual)) => *actual == expected.hex,
        _ => true,
    };
    verified_tx.send(matches && !shared.cancelled()).ok();
    let decoded = decoder.join().unwrap_or(None);

    // The verdict: commit only if every stage succeeded and the digest matched.
    if !shared.cancelled() {
        if let (Some(expected), Some(actual)) = (&opts.checksum, &digest) {
            if *actual != expected.hex {
                shared.fail(WriteError::ChecksumMismatch {
                    algorithm: expected.algorithm.name(),
                    expected: expected.hex.clone(),
                    actual: actual.clone(),
                });
            }
        }
    }
    let first_error = shared.take_error();
    let verdict = match (&first_error, &decoded) {
        (None, Some(d)) => Some(d.image_size),
        _ => None,
    };
    verdict_tx.send(verdict).ok();
    let written = writer
        .join()
        .map_err(|_| WriteError::Internal("the writer thread panicked".into()));
    progress.finished.store(true, Ordering::Relaxed);
    let written = written?;
    if let Some(error) = first_error {
        return Err(WriteFailure {
            error,
            target: written.state,
        });
    }
    let (Some(decoded), Ok(())) = (decoded, written.result) else {
        return Err(WriteFailure {
            error: WriteError::Internal("the pipeline ended without a result".into()),
            target: written.state,
        });
    };
    let seconds = started.elapsed().as_secs_f64();
    Ok(WriteSummary {
        source: opts.source.clone(),
        device: opts.device.display().to_string(),
        format: decoded.format.name().to_string(),
        source_bytes,
        image_bytes: decoded.image_size,
        bytes_written: written.data_bytes,
        zero_bytes: written.zero_bytes,
        zeros_skipped: opts.target_is_zeroed,
        seconds,
        mb_per_s: decoded.image_size as f64 / seconds.max(1e-9) / 1e6,
        resumes,
        checksum: opts.checksum.as_ref().map(|c| VerifiedChecksum {
            algorithm: c.algorithm.name().to_string(),
            value: c.hex.clone(),
            verified: true,
        }),
    })
}

/// The fetch stage: fills source buffers completely (so that every chunk but
/// the last is a whole, aligned buffer) and hands each to hash and decode.
fn fetch(
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

struct Decoded {
    format: Format,
    image_size: u64,
}

/// A buffer pool allocated on first use.
struct LazyPool {
    count: usize,
    buf_len: usize,
    pool: Option<BufferPool>,
}

impl LazyPool {
    fn get(&mut self) -> &BufferPool {
        self.pool
            .get_or_insert_with(|| BufferPool::new(self.count, self.buf_len))
    }
}

/// The decode stage.
struct Decoder<'a> {
    rx: &'a Receiver<Arc<Chunk>>,
    tx: &'a Sender<WriteOp>,
    pool: LazyPool,
    shared: &'a Shared,
    capacity: Option<u64>,
    len_hint: Option<u64>,
    xz_memlimit: u64,
    /// The target, read back when a qcow2 image was spooled on it.
    device: PathBuf,
    /// Buffers to read a spooled image back into (the source pool, idle by then).
    spool_pool: BufferPool,
    /// Whether the download was verified: `true` lets a spooled image be converted.
    verified: Receiver<bool>,
}

impl Decoder<'_> {
    fn run(
        &mut self,
        choice: FormatChoice,
        ranges: Box<dyn source::RangeRead>,
    ) -> Result<Decoded, WriteError> {
        let Ok(first) = self.rx.recv() else {
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

    fn check_fits(&self, size: u64, at_least: bool) -> Result<(), WriteError> {
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
            next = self.rx.recv().ok();
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

    /// qcow2: tables by range reads, then clusters from the stream. A server
    /// that ignores Range gets the spooled path instead.
    fn qcow2(
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
        self.convert(layout, &mut || next.take().or_else(|| rx.recv().ok()))
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
            next = self.rx.recv().ok();
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
                Err(crossbeam_channel::RecvTimeoutError::Timeout) if !self.shared.cancelled() => {}
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

/// Packs guest data that arrives in small pieces (qcow2 clusters) into whole
/// output buffers, one buffer per contiguous guest range.
struct Assembler<'a> {
    pool: &'a BufferPool,
    tx: &'a Sender<WriteOp>,
    shared: &'a Shared,
    buf: Option<AlignedBuf>,
    start: u64,
    filled: usize,
}

impl<'a> Assembler<'a> {
    fn new(pool: &'a BufferPool, tx: &'a Sender<WriteOp>, shared: &'a Shared) -> Self {
        Self {
            pool,
            tx,
            shared,
            buf: None,
            start: 0,
            filled: 0,
        }
    }

    fn push(&mut self, mut offset: u64, mut data: &[u8]) -> Result<(), WriteError> {
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

    fn flush(&mut self) -> Result<(), WriteError> {
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
            self.cur = self.rx.recv().ok();
            self.pos = 0;
        }
        Ok(self.cur.as_ref().map_or(&[][..], |c| &c.data()[self.pos..]))
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

/// What the writer did.
struct Written {
    data_bytes: u64,
    zero_bytes: u64,
    state: TargetState,
    result: Result<(), WriteError>,
}

/// The write stage.
struct Writer {
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
    fn new(target: Target, skip_zeros: bool, progress: Arc<Progress>) -> Self {
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

    fn run(&mut self, rx: &Receiver<WriteOp>, shared: &Shared) -> Result<(), WriteError> {
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
    fn finish(mut self, verdict: Option<u64>) -> Written {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_memlimit_is_a_quarter_of_the_ram_with_a_floor() {
        let meminfo = "MemTotal:       24568320 kB\nMemFree:        22000000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_568_320 * 1024));
        assert_eq!(xz_memlimit_for(Some(16 << 30)), 4 << 30);
        assert_eq!(xz_memlimit_for(Some(256 << 20)), XZ_MEMLIMIT_FLOOR);
        assert_eq!(xz_memlimit_for(None), XZ_MEMLIMIT_FLOOR);
        // Unreadable or absurd: the floor.
        assert_eq!(mem_total("MemTotal: 18446744073709551615 kB\n"), None);
        assert_eq!(mem_total("MemTotal: 1024 pages\n"), None);
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}

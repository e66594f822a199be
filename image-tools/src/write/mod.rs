//! The image write pipeline: source → verify ‖ decode → write.
//!
//! Four threads connected by bounded channels, moving pooled aligned buffers,
//! one module per stage:
//!
//! - **fetch** (`fetch.rs`) reads the source into buffers from the source pool;
//! - **verify** (`verify.rs`) digests every downloaded byte (skipped without a
//!   checksum), and the digest decides the verdict;
//! - **decode** (`decode.rs`, `qcow2.rs`) recognises the format by its magic
//!   bytes and turns the stream into guest writes: raw buffers pass through
//!   untouched, zstd/gzip/xz are decompressed into the output pool, qcow2 is
//!   mapped cluster by cluster and packed into whole buffers (`assemble.rs`);
//! - **write** (`writer.rs`) splits data from zero runs, writes data with
//!   O_DIRECT and zero runs with BLKZEROOUT (or fallocate), and holds the
//!   first MiB back.
//!
//! Only when the stream ended cleanly and the checksum matched is the first MiB
//! written, then everything fsynced. On any failure after the target was
//! touched, its first and last MiB are zeroed instead, so it never boots a
//! half-written or unverified image. Memory is the two pools, whatever the size.
//!
//! A qcow2 image from a server that ignores `Range` is spooled on the target
//! past its virtual disk, verified, and converted from there (`spool.rs`); the
//! spool is wiped before the first MiB is committed.

mod assemble;
mod decode;
mod error;
mod fetch;
mod options;
mod qcow2;
mod verify;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::handoff::{Sender, bounded};
use ingot_proto::image::{VerifiedChecksum, WriteSummary};

use crate::buffer::{BufferPool, Chunk};
use crate::checksum::Hasher;
use crate::progress::Progress;
use crate::source;
use crate::target::Target;
use decode::{Decoder, LazyPool};
use writer::{WriteOp, Writer};

pub use error::{TargetState, WriteError, WriteFailure};
pub use options::{WriteOptions, XZ_MEMLIMIT_FLOOR, default_xz_memlimit};

/// The first MiB is held back until the image is verified, and zeroed (with
/// the last MiB) on failure: it holds the MBR, the primary GPT and most boot
/// loaders' first stage, the last MiB the backup GPT.
pub const HEAD_LEN: u64 = 1 << 20;

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
                let verdict = verdict_rx.recv().flatten();
                w.finish(verdict)
            })
            .map_err(|e| WriteError::Internal(e.to_string()))?
    };
    let hash = match hasher.map(|h| verify::spawn(h, hash_rx, shared.clone())) {
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
    let fetched = fetch::run(
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
    let checked = verify::check(opts.checksum.as_ref(), digest.as_deref());
    verified_tx
        .send(checked.is_ok() && !shared.cancelled())
        .ok();
    let decoded = decoder.join().unwrap_or(None);

    // The verdict: commit only if every stage succeeded and the digest matched.
    if !shared.cancelled()
        && let Err(mismatch) = checked
    {
        shared.fail(mismatch);
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

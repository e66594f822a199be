//! The overwrite fallback: N passes of pseudo-random data, then one pass of
//! zeros, written with O_DIRECT from aligned buffers.
//!
//! Random data defeats compressing or deduplicating drives, which could
//! otherwise store a repeated pattern in a few blocks. It need not be
//! cryptographic, only fast: a four-lane wyrand produces several GB/s per
//! core, and a generator thread fills buffers while the writer writes, so
//! the random passes run at the disk's speed like the zero pass does.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use ingot_image_tools::buffer::AlignedBuf;
use ingot_image_tools::progress::Progress;

use super::device::Device;

/// Bytes per write: dd's `bs=4M` is the yardstick.
pub const CHUNK: usize = 4 << 20;
/// Buffers in flight between the generator and the writer.
const DEPTH: usize = 3;

/// A fast, non-cryptographic PRNG: four independent wyrand lanes, so the
/// multiplies of one 32-byte step overlap.
#[derive(Debug, Clone)]
pub struct Rng {
    lanes: [u64; 4],
}

const WY_ADD: u64 = 0xa076_1d64_78bd_642f;
const WY_XOR: u64 = 0xe703_7ed1_a0b4_28db;

#[inline(always)]
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(WY_ADD);
    let t = u128::from(*state) * u128::from(*state ^ WY_XOR);
    ((t >> 64) as u64) ^ (t as u64)
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
        let lanes = [
            wyrand(&mut s),
            wyrand(&mut s),
            wyrand(&mut s),
            wyrand(&mut s),
        ];
        Self { lanes }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        wyrand(&mut self.lanes[0])
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(32);
        let [a, b, c, d] = &mut self.lanes;
        for ch in &mut chunks {
            let (x, y, z, w) = (wyrand(a), wyrand(b), wyrand(c), wyrand(d));
            ch[0..8].copy_from_slice(&x.to_le_bytes());
            ch[8..16].copy_from_slice(&y.to_le_bytes());
            ch[16..24].copy_from_slice(&z.to_le_bytes());
            ch[24..32].copy_from_slice(&w.to_le_bytes());
        }
        for byte in chunks.into_remainder() {
            *byte = wyrand(a) as u8;
        }
    }
}

/// An overwrite that stopped on an I/O error.
#[derive(Debug, thiserror::Error)]
#[error("overwrite pass {pass} ({what}) failed at byte {offset}")]
pub struct OverwriteError {
    /// 1-based pass number (the zero pass is `passes + 1`).
    pub pass: u32,
    /// `random` or `zeros`.
    pub what: &'static str,
    /// Offset of the failed write.
    pub offset: u64,
    /// The OS error (ENOSPC, EIO, ...).
    #[source]
    pub source: io::Error,
}

/// What an overwrite did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverwriteStats {
    /// Bytes written over all passes.
    pub bytes: u64,
    /// Seconds spent in random passes.
    pub random_seconds: f64,
    /// Seconds of each pass, the zero pass last.
    pub pass_seconds: Vec<f64>,
    /// Seconds spent in the zero pass (including the final fsync).
    pub zero_seconds: f64,
}

/// Overwrites the whole device: `passes` random passes, then zeros, then
/// fsync; each chunk written counts in `progress`.
pub fn overwrite(
    dev: &mut Device,
    passes: u32,
    seed: u64,
    progress: Option<&super::WipeProgress>,
) -> Result<OverwriteStats, OverwriteError> {
    let progress = progress.map(|p| &*p.0);
    if let Some(p) = progress {
        let total = dev.size().saturating_mul(u64::from(passes) + 1);
        p.source_total.fetch_add(total, Ordering::Relaxed);
    }
    let mut stats = OverwriteStats::default();
    for pass in 1..=passes {
        let t = Instant::now();
        random_pass(dev, pass, seed.wrapping_add(u64::from(pass)), progress)?;
        stats.random_seconds += t.elapsed().as_secs_f64();
        stats.pass_seconds.push(t.elapsed().as_secs_f64());
        stats.bytes += dev.size();
    }
    let t = Instant::now();
    let zero_pass = passes + 1;
    let zeros = AlignedBuf::new(CHUNK);
    write_all(dev, zero_pass, "zeros", &Source::Zeros(&zeros), progress)?;
    dev.sync().map_err(|e| OverwriteError {
        pass: zero_pass,
        what: "zeros",
        offset: dev.size(),
        source: io::Error::other(e),
    })?;
    stats.zero_seconds = t.elapsed().as_secs_f64();
    stats.pass_seconds.push(stats.zero_seconds);
    stats.bytes += dev.size();
    Ok(stats)
}

/// Where each chunk's data comes from.
enum Source<'a> {
    /// The same zero buffer every time.
    Zeros(&'a [u8]),
    /// Buffers filled by the generator thread, returned after the write.
    Random {
        full: &'a Receiver<AlignedBuf>,
        free: &'a SyncSender<AlignedBuf>,
    },
}

fn random_pass(
    dev: &mut Device,
    pass: u32,
    seed: u64,
    progress: Option<&Progress>,
) -> Result<(), OverwriteError> {
    let (full_tx, full_rx): (SyncSender<AlignedBuf>, Receiver<AlignedBuf>) = sync_channel(DEPTH);
    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(DEPTH + 1);
    for _ in 0..DEPTH + 1 {
        free_tx.send(AlignedBuf::new(CHUNK)).ok();
    }
    let chunks = dev.size().div_ceil(CHUNK as u64);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut rng = Rng::new(seed);
            for _ in 0..chunks {
                let Ok(mut buf) = free_rx.recv() else { return };
                rng.fill(&mut buf);
                if full_tx.send(buf).is_err() {
                    return;
                }
            }
        });
        let res = write_all(
            dev,
            pass,
            "random",
            &Source::Random {
                full: &full_rx,
                free: &free_tx,
            },
            progress,
        );
        // Unblock the generator whatever happened.
        drop(full_rx);
        drop(free_tx);
        res
    })
}

/// Writes the device front to back, one chunk at a time, from `src`.
fn write_all(
    dev: &mut Device,
    pass: u32,
    what: &'static str,
    src: &Source<'_>,
    progress: Option<&Progress>,
) -> Result<(), OverwriteError> {
    let size = dev.size();
    let bs = dev.block_size();
    let mut offset = 0u64;
    let mut last_log = Instant::now();
    let started = Instant::now();
    while offset < size {
        let err = |source: io::Error| OverwriteError {
            pass,
            what,
            offset,
            source,
        };
        let mut owned: Option<AlignedBuf> = None;
        if let Source::Random { full, .. } = src {
            owned = full.recv().ok();
        }
        let data: &[u8] = match (src, &owned) {
            (Source::Zeros(z), _) => z,
            (_, Some(b)) => b,
            _ => return Err(err(io::Error::other("data generator stopped"))),
        };
        let n = (size - offset).min(data.len() as u64);
        let aligned = n - n % bs;
        if aligned > 0 {
            dev.file()
                .write_all_at(&data[..aligned as usize], offset)
                .map_err(err)?;
        }
        if aligned < n {
            // A file whose size is not a multiple of the block size: the tail
            // goes through the page cache (Target clears O_DIRECT for it).
            let tail = data[aligned as usize..n as usize].to_vec();
            dev.write_at(&tail, offset + aligned)
                .map_err(|e| err(io::Error::other(e)))?;
        }
        if let (Source::Random { free, .. }, Some(b)) = (src, owned) {
            free.send(b).ok();
        }
        offset += n;
        if let Some(p) = progress {
            p.received.fetch_add(n, Ordering::Relaxed);
            p.written.fetch_add(n, Ordering::Relaxed);
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            last_log = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                device = %dev.path().display(),
                pass,
                what,
                bytes = offset,
                total = size,
                mb_per_s = offset as f64 / secs / 1e6,
                "overwrite progress"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_not_constant() {
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 1000];
        Rng::new(7).fill(&mut a);
        Rng::new(7).fill(&mut b);
        assert_eq!(a, b);
        Rng::new(8).fill(&mut b);
        assert_ne!(a, b);
        // Roughly uniform: every byte value shows up in 64 KiB.
        let mut big = vec![0u8; 65536];
        Rng::new(1).fill(&mut big);
        let mut seen = [false; 256];
        for &x in &big {
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}

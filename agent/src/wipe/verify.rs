//! Verification of a secure erase, as MAAS does it but spread over the disk:
//! before erasing, a recognisable pattern is written at sample locations from
//! the first to the last block; afterwards they are read back with O_DIRECT
//! and the erase fails if any pattern sector survived.
//!
//! A pattern sector (512 bytes) is a 32-byte header — the marker
//! `INGOT-WIPE-PATRN`, this run's random id, the sample and sector numbers —
//! followed by 480 pseudo-random bytes derived from the same values. A sector
//! *survived* if its marker (marker + run id) is still there or its random
//! payload is. `--verify full` also reads the whole device: every byte must
//! be zero when the method guarantees zeros, and otherwise no sector anywhere
//! may carry this run's marker (so a crypto erase, which leaves noise, passes
//! only if no pattern moved or survived anywhere).

use std::io;

use ingot_image_tools::buffer::{AlignedBuf, is_zero};

use super::device::Device;
use super::overwrite::Rng;

const MARKER: &[u8; 16] = b"INGOT-WIPE-PATRN";
const SECTOR: usize = 512;
/// Most sample locations.
const MAX_SAMPLES: u64 = 16;
/// Largest sample.
const MAX_SAMPLE_LEN: u64 = 1 << 20;
/// Read size of a full verification.
const SCAN_CHUNK: usize = 4 << 20;

/// A verification read or write failed.
#[derive(Debug, thiserror::Error)]
#[error("verification {action} at byte {offset}")]
pub struct VerifyError {
    /// `write pattern`, `read back` or `fsync`.
    pub action: &'static str,
    /// Where.
    pub offset: u64,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Where the pattern goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples {
    run_id: u64,
    /// `(offset, len)` of each sample, block-aligned.
    pub locations: Vec<(u64, u64)>,
}

/// What a read-back found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// Samples with at least one surviving sector.
    pub samples_survived: u32,
    /// Sectors (512 B) anywhere that still carry this run's marker or payload.
    pub sectors_survived: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Non-zero bytes seen (only counted when zeros were expected).
    pub nonzero_bytes: u64,
}

impl Samples {
    /// Plans up to 16 samples over a device of `size` bytes with logical
    /// block size `bs`: the first and last blocks always, evenly spaced between.
    pub fn plan(size: u64, bs: u64, run_id: u64) -> Self {
        let bs = bs.max(SECTOR as u64);
        let mut len = (size / 64).min(MAX_SAMPLE_LEN);
        len -= len % bs;
        let len = len.max(bs).min(size - size % bs);
        let mut locations = Vec::new();
        if len == 0 {
            return Self { run_id, locations };
        }
        let count = (size / len).clamp(1, MAX_SAMPLES);
        let align = if size >= 4096 * MAX_SAMPLES * 4 {
            bs.max(4096)
        } else {
            bs
        };
        for i in 0..count {
            let off = if count == 1 {
                0
            } else {
                (size - len) / (count - 1) * i
            };
            let off = off - off % align;
            if locations.last().is_none_or(|&(o, l)| off >= o + l) {
                locations.push((off, len));
            }
        }
        Self { run_id, locations }
    }

    fn fill(&self, sample: usize, buf: &mut [u8]) {
        for (k, sector) in buf.chunks_exact_mut(SECTOR).enumerate() {
            sector[..16].copy_from_slice(MARKER);
            sector[16..24].copy_from_slice(&self.run_id.to_le_bytes());
            sector[24..28].copy_from_slice(&(sample as u32).to_le_bytes());
            sector[28..32].copy_from_slice(&(k as u32).to_le_bytes());
            Rng::new(self.payload_seed(sample, k)).fill(&mut sector[32..]);
        }
    }

    fn payload_seed(&self, sample: usize, sector: usize) -> u64 {
        self.run_id ^ ((sample as u64) << 40) ^ (sector as u64)
    }

    fn has_marker(&self, sector: &[u8]) -> bool {
        sector[..16] == *MARKER && sector[16..24] == self.run_id.to_le_bytes()
    }

    /// Writes the pattern at every sample location and syncs.
    pub fn write(&self, dev: &mut Device) -> Result<(), VerifyError> {
        for (i, &(off, len)) in self.locations.iter().enumerate() {
            let mut buf = AlignedBuf::new(len as usize);
            self.fill(i, &mut buf);
            dev.write_at(&buf, off).map_err(|e| VerifyError {
                action: "write pattern",
                offset: off,
                source: io::Error::other(e),
            })?;
        }
        dev.sync().map_err(|e| VerifyError {
            action: "fsync",
            offset: 0,
            source: io::Error::other(e),
        })
    }

    /// Reads the samples back. A sample survived if any of its sectors still
    /// has the marker or its payload. With `expect_zero`, non-zero bytes are
    /// counted too.
    pub fn check(&self, dev: &Device, expect_zero: bool) -> Result<CheckResult, VerifyError> {
        let mut r = CheckResult::default();
        let mut expected = vec![0u8; SECTOR];
        for (i, &(off, len)) in self.locations.iter().enumerate() {
            let mut buf = AlignedBuf::new(len as usize);
            let n = dev
                .read_aligned(&mut buf, off)
                .map_err(|source| VerifyError {
                    action: "read back",
                    offset: off,
                    source,
                })?;
            r.bytes_read += n as u64;
            let mut survived = false;
            for (k, sector) in buf[..n].chunks_exact(SECTOR).enumerate() {
                if expect_zero && !is_zero(sector) {
                    r.nonzero_bytes += sector.iter().filter(|&&b| b != 0).count() as u64;
                }
                let hit = self.has_marker(sector) || {
                    Rng::new(self.payload_seed(i, k)).fill(&mut expected[32..]);
                    sector[32..] == expected[32..]
                };
                if hit {
                    survived = true;
                    r.sectors_survived += 1;
                }
            }
            if survived {
                r.samples_survived += 1;
            }
        }
        Ok(r)
    }

    /// Reads the whole device: counts sectors carrying this run's marker and,
    /// with `expect_zero`, non-zero bytes.
    pub fn scan(&self, dev: &Device, expect_zero: bool) -> Result<CheckResult, VerifyError> {
        let mut r = CheckResult::default();
        let mut buf = AlignedBuf::new(SCAN_CHUNK);
        let size = dev.size();
        let mut off = 0u64;
        while off < size {
            let want = (size - off).min(SCAN_CHUNK as u64) as usize;
            let n = dev
                .read_aligned(&mut buf[..want], off)
                .map_err(|source| VerifyError {
                    action: "read back",
                    offset: off,
                    source,
                })?;
            if n == 0 {
                return Err(VerifyError {
                    action: "read back",
                    offset: off,
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "device ended early"),
                });
            }
            let data = &buf[..n];
            r.bytes_read += n as u64;
            if !is_zero(data) {
                if expect_zero {
                    r.nonzero_bytes += data.iter().filter(|&&b| b != 0).count() as u64;
                }
                r.sectors_survived += data
                    .chunks_exact(SECTOR)
                    .filter(|s| self.has_marker(s))
                    .count() as u64;
            }
            off += n as u64;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_first_and_last_block() {
        let size = 4u64 << 30;
        let s = Samples::plan(size, 512, 1);
        assert_eq!(s.locations.len(), 16);
        assert_eq!(s.locations[0], (0, 1 << 20));
        let (off, len) = *s.locations.last().unwrap();
        assert_eq!(off + len, size);
        for w in s.locations.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
            assert_eq!(w[1].0 % 4096, 0);
        }
    }

    #[test]
    fn plan_small_devices() {
        let s = Samples::plan(8 << 20, 512, 1);
        assert_eq!(s.locations.len(), 16);
        assert_eq!(s.locations[0].1, 128 << 10);
        let s = Samples::plan(4096, 4096, 1);
        assert_eq!(s.locations, vec![(0, 4096)]);
        let s = Samples::plan(1000, 512, 1);
        assert_eq!(s.locations, vec![(0, 512)]);
    }

    #[test]
    fn pattern_sectors_are_recognised() {
        let s = Samples::plan(1 << 20, 512, 42);
        let mut buf = vec![0u8; 1024];
        s.fill(3, &mut buf);
        assert!(s.has_marker(&buf[..512]));
        assert!(s.has_marker(&buf[512..]));
        let other = Samples::plan(1 << 20, 512, 43);
        assert!(!other.has_marker(&buf[..512]));
        assert_ne!(buf[32..512], buf[512 + 32..]);
    }
}

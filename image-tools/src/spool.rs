//! A qcow2 image spooled on the target, for servers that ignore `Range`.
//!
//! qcow2 is converted while it streams only when its tables can be read out
//! of band first. When the server answers a `Range` request with the whole
//! file, the image is instead written, byte for byte, onto the target just
//! past the end of its virtual disk (where the image will never write), its
//! checksum is verified, and then it is read back from there and converted
//! like a local file. This module places the spool and reads it back; the
//! pipeline (`write/`) writes and wipes it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::buffer::{BufferPool, Chunk};
use crate::source::{RangeRead, SourceError};

/// The spool starts on a boundary of this many bytes.
pub const SPOOL_ALIGN: u64 = 1 << 20;

/// Where the spool starts for an image of `virtual_size` bytes: the first
/// MiB boundary at or past the image's end, and never inside the held-back
/// first MiB. `None` if that does not fit a `u64`.
pub fn spool_start(virtual_size: u64, head_len: u64) -> Option<u64> {
    virtual_size
        .max(head_len)
        .checked_next_multiple_of(SPOOL_ALIGN)
}

/// The spooled image on the target, read back for conversion.
#[derive(Debug)]
pub struct Spool {
    file: File,
    what: String,
    start: u64,
    len: u64,
}

impl Spool {
    /// Opens `device` for reading the `len` bytes spooled at `start`. A second,
    /// buffered descriptor: the writer keeps its own (O_EXCL, O_DIRECT), and
    /// every spooled byte was written before this is opened.
    pub fn open(device: &Path, start: u64, len: u64) -> Result<Self, SourceError> {
        let what = format!("the image spooled on {} at byte {start}", device.display());
        let file = File::open(device).map_err(|source| SourceError::File {
            path: device.display().to_string(),
            source,
        })?;
        Ok(Self {
            file,
            what,
            start,
            len,
        })
    }

    /// Bytes spooled.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was spooled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn err(&self, offset: u64, len: u64, reason: &str) -> SourceError {
        SourceError::Range {
            what: self.what.clone(),
            offset,
            len,
            reason: reason.to_string(),
        }
    }

    /// Reads `buf.len()` bytes at image offset `offset`, within the spool.
    fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<(), SourceError> {
        let len = buf.len() as u64;
        let at = offset
            .checked_add(len)
            .filter(|&end| end <= self.len)
            .and_then(|_| self.start.checked_add(offset))
            .ok_or_else(|| self.err(offset, len, "beyond the end of the spooled image"))?;
        self.file
            .read_exact_at(buf, at)
            .map_err(|e| self.err(offset, len, &e.to_string()))?;
        // Read once: no need to keep it in the page cache of a small ramdisk.
        advise_dontneed(&self.file, at, len);
        Ok(())
    }

    /// A random-access reader of the spooled image, for the qcow2 tables.
    pub fn ranges(&self) -> SpoolRanges<'_> {
        SpoolRanges { spool: self }
    }

    /// A sequential reader of the spooled image in chunks of `pool`'s buffers.
    pub fn chunks<'a>(&'a self, pool: &'a BufferPool, cancel: &'a AtomicBool) -> SpoolChunks<'a> {
        SpoolChunks {
            spool: self,
            pool,
            cancel,
            pos: 0,
            error: None,
        }
    }
}

fn advise_dontneed(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is open.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// [`RangeRead`] over the spool.
#[derive(Debug)]
pub struct SpoolRanges<'a> {
    spool: &'a Spool,
}

impl RangeRead for SpoolRanges<'_> {
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError> {
        let n =
            usize::try_from(len).map_err(|_| self.spool.err(offset, len, "too long for memory"))?;
        let mut buf = vec![0u8; n];
        self.spool.read_exact(&mut buf, offset)?;
        Ok(buf)
    }
}

/// The spooled image, chunk by chunk, in pool buffers.
#[derive(Debug)]
pub struct SpoolChunks<'a> {
    spool: &'a Spool,
    pool: &'a BufferPool,
    cancel: &'a AtomicBool,
    pos: u64,
    error: Option<SourceError>,
}

impl SpoolChunks<'_> {
    /// The next chunk; `None` at the end, on cancellation, or after an error
    /// (then [`SpoolChunks::take_error`] has it).
    pub fn next_chunk(&mut self) -> Option<Arc<Chunk>> {
        if self.pos >= self.spool.len || self.error.is_some() {
            return None;
        }
        let mut buf = self.pool.take(self.cancel)?;
        let left = self.spool.len - self.pos;
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        if let Err(e) = self.spool.read_exact(&mut buf[..n], self.pos) {
            self.error = Some(e);
            return None;
        }
        self.pos += n as u64;
        Some(self.pool.chunk(buf, n))
    }

    /// The read error that ended the chunks, if any.
    pub fn take_error(&mut self) -> Option<SourceError> {
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_starts_past_the_image_and_the_head() {
        assert_eq!(spool_start(0, 1 << 20), Some(1 << 20));
        assert_eq!(spool_start(1, 1 << 20), Some(1 << 20));
        assert_eq!(spool_start((1 << 20) + 1, 1 << 20), Some(2 << 20));
        assert_eq!(spool_start(20 << 20, 1 << 20), Some(20 << 20));
        assert_eq!(spool_start(u64::MAX - 5, 1 << 20), None);
    }

    #[test]
    fn reads_stay_inside_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let mut data = vec![0u8; 3 << 20];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        std::fs::write(&path, &data).unwrap();
        let spool = Spool::open(&path, 1 << 20, 1_000_000).unwrap();
        let mut r = spool.ranges();
        assert_eq!(
            r.read_range(10, 5).unwrap(),
            data[(1 << 20) + 10..(1 << 20) + 15]
        );
        assert!(r.read_range(999_999, 2).is_err());
        assert!(r.read_range(u64::MAX, 2).is_err());
        let pool = BufferPool::new(2, 1 << 18);
        let cancel = AtomicBool::new(false);
        let mut chunks = spool.chunks(&pool, &cancel);
        let mut got = Vec::new();
        while let Some(c) = chunks.next_chunk() {
            got.extend_from_slice(c.data());
        }
        assert!(chunks.take_error().is_none());
        assert_eq!(got, data[1 << 20..(1 << 20) + 1_000_000]);
    }
}

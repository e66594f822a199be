//! A `Read + Write + Seek` window on a byte range of a disk: the FAT library
//! sees the partition as a file and cannot reach past its end.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// `len` bytes of `dev` starting at `start`, with a cursor.
#[derive(Debug)]
pub struct PartitionWindow<'a> {
    dev: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> PartitionWindow<'a> {
    /// The window; `None` if `start + len` overflows.
    pub fn new(dev: &'a File, start: u64, len: u64) -> Option<Self> {
        start.checked_add(len)?;
        Some(Self {
            dev,
            start,
            len,
            pos: 0,
        })
    }

    /// Bytes from the cursor to the end of the window, capped at `want`.
    fn span(&self, want: usize) -> usize {
        let left = self.len.saturating_sub(self.pos);
        usize::try_from(left).map_or(want, |l| l.min(want))
    }
}

impl Read for PartitionWindow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.span(buf.len());
        if n == 0 {
            return Ok(0);
        }
        // start + pos <= start + len, which does not overflow (new).
        let got = self.dev.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for PartitionWindow<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.span(buf.len());
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write beyond the end of the partition",
            ));
        }
        let put = self.dev.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PartitionWindow<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_bounded() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0u8; 64]).unwrap();
        let mut w = PartitionWindow::new(&f, 16, 8).unwrap();
        assert_eq!(w.write(&[1u8; 12]).unwrap(), 8);
        assert!(w.write(&[1u8]).is_err());
        assert!(w.seek(SeekFrom::Start(9)).is_err());
        assert!(w.seek(SeekFrom::Current(-9)).is_err());
        w.seek(SeekFrom::Start(0)).unwrap();
        let mut b = [0u8; 20];
        assert_eq!(w.read(&mut b).unwrap(), 8);
        assert_eq!(w.read(&mut b).unwrap(), 0);
        let mut all = vec![0u8; 64];
        f.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all[16..24], &[1u8; 8]);
        assert!(all[..16].iter().chain(&all[24..]).all(|b| *b == 0));
        assert!(PartitionWindow::new(&f, u64::MAX, 2).is_none());
    }
}

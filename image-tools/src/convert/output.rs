//! The output side of `convert`: a raw file (sparse), a zstd, gzip or xz
//! stream, or a qcow2 image ([`super::qcow2_writer`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ConvertError;
use super::qcow2_writer::Qcow2Writer;
use crate::buffer::is_zero;
use crate::format::Format;

/// Zero blocks of a raw output smaller than this are written, larger runs
/// left as holes: `qemu-img convert`'s default (`-S 4k`).
const SPARSE_BLOCK: usize = 4096;
/// Buffer of the compressed outputs' file writes.
const WRITE_BUF: usize = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// What the output holds once finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The disk's size in bytes.
    pub image_bytes: u64,
    /// The file's size in bytes.
    pub output_bytes: u64,
}

/// A writer of one output format, fed the disk in guest order.
pub trait Sink {
    /// The next bytes of the disk.
    fn data(&mut self, data: &[u8]) -> Result<(), ConvertError>;
    /// The next `len` bytes of the disk are zeros.
    fn zero(&mut self, len: u64) -> Result<(), ConvertError>;
    /// Completes the file. It is not fsynced (as `qemu-img convert` does not):
    /// the page cache writes it back.
    fn finish(self: Box<Self>) -> Result<Finished, ConvertError>;
}

/// The compression level for `format`: checked, or its default.
pub fn level(format: Format, level: Option<u32>) -> Result<u32, ConvertError> {
    let (range, default) = match format {
        Format::Zstd => (1..=19, 3),
        Format::Gzip => (1..=9, 6),
        Format::Xz => (0..=9, 6),
        Format::Raw | Format::Qcow2 => {
            return match level {
                None => Ok(0),
                Some(_) => Err(ConvertError::Invalid(format!(
                    "--level is for zstd, gzip and xz output, not {format}"
                ))),
            };
        }
    };
    match level {
        None => Ok(default),
        Some(l) if range.contains(&l) => Ok(l),
        Some(l) => Err(ConvertError::Invalid(format!(
            "{format} level {l} is outside {}..={}",
            range.start(),
            range.end()
        ))),
    }
}

/// A writer of `format` into `file` (at `path`, for errors).
pub fn open(
    format: Format,
    file: File,
    path: &Path,
    level: u32,
    qcow2_cluster_bits: u32,
) -> Result<Box<dyn Sink>, ConvertError> {
    let path = path.to_path_buf();
    Ok(match format {
        Format::Raw => Box::new(RawSink { file, path, pos: 0 }),
        Format::Qcow2 => Box::new(Qcow2Writer::new(file, path, qcow2_cluster_bits)?),
        Format::Zstd | Format::Gzip | Format::Xz => {
            let out = BufWriter::with_capacity(WRITE_BUF, file);
            let enc = match format {
                Format::Zstd => {
                    let level = i32::try_from(level).unwrap_or(3);
                    let mut e = zstd::stream::write::Encoder::new(out, level)
                        .map_err(|source| output_err(&path, source))?;
                    // As the zstd command writes it.
                    e.include_checksum(true)
                        .map_err(|source| output_err(&path, source))?;
                    Encoder::Zstd(e)
                }
                Format::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                    out,
                    flate2::Compression::new(level),
                )),
                _ => Encoder::Xz(liblzma::write::XzEncoder::new(out, level)),
            };
            Box::new(Compressed { enc, path, pos: 0 })
        }
    })
}

fn output_err(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// A raw file: non-zero 4 KiB blocks are written at their offset, the rest
/// stays a hole, and the length is set at the end.
struct RawSink {
    file: File,
    path: PathBuf,
    pos: u64,
}

impl Sink for RawSink {
    fn data(&mut self, data: &[u8]) -> Result<(), ConvertError> {
        // Runs of non-zero blocks, each one write.
        let mut run: Option<usize> = None;
        let mut at = 0;
        for block in data.chunks(SPARSE_BLOCK) {
            match (is_zero(block), run) {
                (false, None) => run = Some(at),
                (true, Some(start)) => {
                    self.write(&data[start..at], start)?;
                    run = None;
                }
                _ => {}
            }
            at += block.len();
        }
        if let Some(start) = run {
            self.write(&data[start..], start)?;
        }
        self.pos = advance(self.pos, data.len() as u64)?;
        Ok(())
    }

    fn zero(&mut self, len: u64) -> Result<(), ConvertError> {
        self.pos = advance(self.pos, len)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Finished, ConvertError> {
        let err = |e| output_err(&self.path, e);
        self.file.set_len(self.pos).map_err(err)?;
        Ok(Finished {
            image_bytes: self.pos,
            output_bytes: self.pos,
        })
    }
}

impl RawSink {
    /// Writes `bytes`, which sit `start` bytes into the current piece.
    fn write(&self, bytes: &[u8], start: usize) -> Result<(), ConvertError> {
        let offset = advance(self.pos, start as u64)?;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| output_err(&self.path, e))
    }
}

fn advance(pos: u64, len: u64) -> Result<u64, ConvertError> {
    pos.checked_add(len)
        .ok_or_else(|| ConvertError::Invalid("the image is larger than 2^64 bytes".into()))
}

enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Xz(liblzma::write::XzEncoder<BufWriter<File>>),
}

impl Encoder {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Zstd(e) => e,
            Encoder::Gzip(e) => e,
            Encoder::Xz(e) => e,
        }
    }

    fn finish(self) -> std::io::Result<BufWriter<File>> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
        }
    }
}

/// A zstd, gzip or xz stream of the whole disk, zeros included.
struct Compressed {
    enc: Encoder,
    path: PathBuf,
    pos: u64,
}

impl Sink for Compressed {
    fn data(&mut self, data: &[u8]) -> Result<(), ConvertError> {
        self.enc
            .writer()
            .write_all(data)
            .map_err(|e| output_err(&self.path, e))?;
        self.pos = advance(self.pos, data.len() as u64)?;
        Ok(())
    }

    fn zero(&mut self, len: u64) -> Result<(), ConvertError> {
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(ZEROS.len());
            self.enc
                .writer()
                .write_all(&ZEROS[..n])
                .map_err(|e| output_err(&self.path, e))?;
            left -= n as u64;
        }
        self.pos = advance(self.pos, len)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Finished, ConvertError> {
        let Compressed { enc, path, pos } = *self;
        let err = |e| output_err(&path, e);
        let file = enc
            .finish()
            .map_err(err)?
            .into_inner()
            .map_err(|e| err(e.into_error()))?;
        let output_bytes = file.metadata().map_err(err)?.len();
        Ok(Finished {
            image_bytes: pos,
            output_bytes,
        })
    }
}

//! The input side of `convert`: an image in any supported format, read in
//! guest order as data and zero runs.
//!
//! - zstd, gzip, xz, and raw from a URL: the sequential stream through the
//!   agent's decoders, in 1 MiB pieces.
//! - raw from a local file: holes (`SEEK_DATA`/`SEEK_HOLE`) come out as zero
//!   runs without being read.
//! - qcow2: the agent's header and table checks (`qcow2::read_layout`), then
//!   each cluster run read at its file offset in guest order, and each
//!   compressed cluster inflated; unallocated and zero clusters are zero runs.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use super::ConvertError;
use crate::decode;
use crate::format::{self, Format, FormatChoice};
use crate::qcow2::{self, Compression, Extent, ExtentKind};
use crate::source::{self, RangeRead, Source, SourceError, SourceOptions};

/// The length of the buffers [`GuestReader::next_into`] fills: the largest
/// qcow2 cluster (2 MiB), so that an inflated cluster fits in one.
pub const BUF_LEN: usize = 2 << 20;

/// The next stretch of the disk, in guest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// The first this many bytes of the buffer (which may be zeros: a stream
    /// is not scanned here).
    Data(usize),
    /// This many bytes that read as zeros (the buffer is not used).
    Zero(u64),
}

/// An input image, read in guest order.
pub(crate) struct GuestReader {
    format: Format,
    source_bytes: Option<u64>,
    /// Guest bytes returned so far.
    pos: u64,
    kind: Kind,
}

enum Kind {
    Stream(Stream),
    RawFile(RawFile),
    Qcow2(Box<Qcow2Reader>),
}

impl GuestReader {
    /// Opens `location` (a path or an http(s) URL) and recognises its format
    /// as the agent does.
    pub fn open(
        location: &str,
        choice: FormatChoice,
        opts: &SourceOptions,
        xz_memlimit: u64,
    ) -> Result<Self, ConvertError> {
        let mut src = source::open(location, opts)?;
        let source_bytes = src.len_hint();
        let head = read_head(src.as_mut())?;
        let format = format::resolve(choice, &head).map_err(ConvertError::Format)?;
        let raw_file = regular_file(location).filter(|_| format == Format::Raw);
        let kind = match (format, raw_file) {
            (Format::Raw, Some(path)) => Kind::RawFile(RawFile::open(path)?),
            (Format::Qcow2, _) => {
                let header = qcow2::parse_header(&head)?;
                let mut ranges = src.range_reader()?;
                drop(src);
                let layout = qcow2::read_layout(header, ranges.as_mut(), source_bytes)?;
                Kind::Qcow2(Box::new(Qcow2Reader::new(layout, ranges)))
            }
            (_, _) => {
                let input = BufReader::with_capacity(
                    BUF_LEN,
                    SourceReader {
                        head,
                        at: 0,
                        src: Some(src),
                    },
                );
                let reader = decode::stream_decoder(format, input, xz_memlimit)
                    .map_err(|e| stream_error(format, 0, e))?;
                Kind::Stream(Stream { reader })
            }
        };
        Ok(Self {
            format,
            source_bytes,
            pos: 0,
            kind,
        })
    }

    /// The input's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The input's size in bytes, when the source knew it.
    pub fn source_bytes(&self) -> Option<u64> {
        self.source_bytes
    }

    /// Guest bytes returned so far (the disk size, once at the end).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next piece of the disk, its data read into `buf` (at least
    /// [`BUF_LEN`] bytes), or `None` at its end.
    pub fn next_into(&mut self, buf: &mut [u8]) -> Result<Option<Piece>, ConvertError> {
        if buf.len() < BUF_LEN {
            return Err(ConvertError::Invalid(format!(
                "read buffers must hold {BUF_LEN} bytes"
            )));
        }
        let buf = &mut buf[..BUF_LEN];
        let pos = self.pos;
        let piece = match &mut self.kind {
            Kind::Stream(s) => s.next(self.format, pos, buf)?,
            Kind::RawFile(f) => f.next(pos, buf)?,
            Kind::Qcow2(q) => q.next(pos, buf)?,
        };
        if let Some(p) = piece {
            let len = match p {
                Piece::Data(n) => n as u64,
                Piece::Zero(n) => n,
            };
            self.pos = pos.checked_add(len).ok_or_else(|| {
                ConvertError::Invalid("the image is larger than 2^64 bytes".into())
            })?;
        }
        Ok(piece)
    }
}

/// The local path of `location` when it names a regular file.
fn regular_file(location: &str) -> Option<&str> {
    source::local_path(location).filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

/// The first MiB of the source (less for a smaller image): what the agent
/// detects the format from.
fn read_head(src: &mut dyn Source) -> Result<Vec<u8>, SourceError> {
    let mut head = vec![0u8; 1 << 20];
    let mut filled = 0;
    while filled < head.len() {
        let n = src.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    Ok(head)
}

/// The source as `Read`, its first bytes (already read) first.
struct SourceReader {
    head: Vec<u8>,
    at: usize,
    src: Option<Box<dyn Source>>,
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Ok(n);
        }
        match &mut self.src {
            Some(src) => src.read(buf).map_err(io::Error::other),
            None => Ok(0),
        }
    }
}

/// The error of a stream read: the source's own, the xz memory limit, or a
/// corrupt stream.
fn stream_error(format: Format, at: u64, e: io::Error) -> ConvertError {
    if decode::xz_memlimit_exceeded(&e).is_some() {
        return ConvertError::Decode(decode::DecodeError::of(format, at, &e));
    }
    if e.get_ref().is_some_and(|i| i.is::<SourceError>()) {
        if let Some(inner) = e.into_inner()
            && let Ok(source) = inner.downcast::<SourceError>()
        {
            return ConvertError::Source(*source);
        }
        return ConvertError::Invalid("the source failed".into());
    }
    if format == Format::Raw {
        return ConvertError::Invalid(format!("reading the image at byte {at}: {e}"));
    }
    ConvertError::Decode(decode::DecodeError::of(format, at, &e))
}

/// A sequential stream (compressed, or raw from a URL).
struct Stream {
    reader: Box<dyn Read + Send>,
}

impl Stream {
    fn next(
        &mut self,
        format: Format,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<Option<Piece>, ConvertError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(stream_error(format, pos.saturating_add(filled as u64), e));
                }
            }
        }
        Ok((filled > 0).then_some(Piece::Data(filled)))
    }
}

/// A raw image in a local file, its holes skipped.
struct RawFile {
    file: File,
    path: String,
    len: u64,
    /// Where the data region being read ends (a hole or the end of the file).
    data_end: u64,
    /// Whether the filesystem answers `SEEK_DATA`/`SEEK_HOLE`.
    seek_holes: bool,
}

impl RawFile {
    fn open(path: &str) -> Result<Self, ConvertError> {
        let err = |source| SourceError::File {
            path: path.to_string(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        Ok(Self {
            len: meta.len(),
            seek_holes: true,
            file,
            path: path.to_string(),
            data_end: 0,
        })
    }

    fn err(&self, e: io::Error) -> ConvertError {
        ConvertError::Source(SourceError::File {
            path: self.path.clone(),
            source: e,
        })
    }

    /// `lseek(fd, pos, whence)`; `None` past the last data (ENXIO).
    fn seek(&self, pos: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let off = libc::off_t::try_from(pos).map_err(io::Error::other)?;
        // SAFETY: lseek only reads the descriptor, which `self.file` keeps open.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(None);
            }
            return Err(e);
        }
        u64::try_from(r).map(Some).map_err(io::Error::other)
    }

    fn next(&mut self, pos: u64, buf: &mut [u8]) -> Result<Option<Piece>, ConvertError> {
        if pos >= self.len {
            return Ok(None);
        }
        if pos >= self.data_end {
            self.data_end = self.len;
            if self.seek_holes {
                match self.seek(pos, libc::SEEK_DATA) {
                    Ok(None) => return Ok(Some(Piece::Zero(self.len - pos))),
                    Ok(Some(data)) if data > pos => {
                        self.data_end = pos;
                        return Ok(Some(Piece::Zero(data.min(self.len) - pos)));
                    }
                    Ok(Some(_)) => {
                        if let Ok(Some(hole)) = self.seek(pos, libc::SEEK_HOLE) {
                            self.data_end = hole.clamp(pos + 1, self.len);
                        }
                    }
                    // Not supported here: everything is data.
                    Err(_) => self.seek_holes = false,
                }
            }
        }
        let n = usize::try_from(self.data_end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if let Err(e) = self.file.read_exact_at(&mut buf[..n], pos) {
            return Err(self.err(e));
        }
        Ok(Some(Piece::Data(n)))
    }
}

/// A qcow2 image, its cluster runs read in guest order.
struct Qcow2Reader {
    ranges: Box<dyn RangeRead>,
    /// Data and compressed extents, by guest offset.
    extents: Vec<Extent>,
    next: usize,
    size: u64,
    cluster_size: usize,
    compression: Compression,
    deflate: flate2::Decompress,
    compressed: Vec<u8>,
}

impl Qcow2Reader {
    fn new(layout: qcow2::Layout, ranges: Box<dyn RangeRead>) -> Self {
        let mut extents = layout.extents;
        extents.sort_by_key(|e| e.guest);
        Self {
            ranges,
            extents,
            next: 0,
            size: layout.header.size,
            // At most 2 MiB (`parse_header` checks the cluster bits): BUF_LEN.
            cluster_size: usize::try_from(layout.header.cluster_size()).unwrap_or(BUF_LEN),
            compression: layout.header.compression,
            deflate: flate2::Decompress::new(false),
            compressed: Vec::new(),
        }
    }

    fn next(&mut self, pos: u64, buf: &mut [u8]) -> Result<Option<Piece>, ConvertError> {
        if pos >= self.size {
            return Ok(None);
        }
        // Skip extents already passed (none, unless two mapped one cluster).
        while self
            .extents
            .get(self.next)
            .is_some_and(|e| e.guest + e.guest_len <= pos)
        {
            self.next += 1;
        }
        let Some(e) = self.extents.get(self.next).copied() else {
            return Ok(Some(Piece::Zero(self.size - pos)));
        };
        if e.guest > pos {
            return Ok(Some(Piece::Zero(e.guest.min(self.size) - pos)));
        }
        match e.kind {
            ExtentKind::Data => {
                let skip = pos - e.guest;
                let n = usize::try_from(e.guest_len - skip)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.ranges.read_range_into(e.host + skip, &mut buf[..n])?;
                if skip + n as u64 == e.guest_len {
                    self.next += 1;
                }
                Ok(Some(Piece::Data(n)))
            }
            ExtentKind::Compressed => {
                let corrupt = |why: String| {
                    qcow2::Qcow2Error::Corrupt(format!(
                        "compressed cluster for guest offset {:#x}: {why}",
                        e.guest
                    ))
                };
                // A compressed cluster is always returned whole: `pos` is its start.
                if pos != e.guest {
                    return Err(corrupt("two clusters map one guest offset".into()).into());
                }
                let cs = self.cluster_size.min(buf.len());
                // At most two clusters: the sector count is bounded by the entry's bits.
                let len = usize::try_from(e.host_len)
                    .ok()
                    .filter(|&l| l <= 2 * cs)
                    .ok_or_else(|| corrupt(format!("{} bytes long", e.host_len)))?;
                self.compressed.resize(len, 0);
                self.ranges.read_range_into(e.host, &mut self.compressed)?;
                qcow2::inflate_cluster(
                    self.compression,
                    &mut self.deflate,
                    &self.compressed,
                    &mut buf[..cs],
                )
                .map_err(corrupt)?;
                self.next += 1;
                let n = usize::try_from(e.guest_len).unwrap_or(cs).min(cs);
                Ok(Some(Piece::Data(n)))
            }
        }
    }
}

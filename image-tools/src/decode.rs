//! The stream decoders of the compressed formats (zstd, gzip, xz), shared by
//! the write pipeline (`write/decode.rs`) and `ingot-image convert`, so that the tool
//! and the agent read an image the same way.

use std::io::{self, BufRead, Read};

use crate::format::Format;

/// A decoder of `format` over `input`: zstd (one or more frames), gzip (one
/// or more members) or xz (concatenated streams, its memory capped at
/// `xz_memlimit` bytes). `Raw` and `Qcow2` are not streams to decode: they
/// are passed through as they are (qcow2 is mapped, see `qcow2.rs`).
pub fn stream_decoder<'a, R: BufRead + Send + 'a>(
    format: Format,
    input: R,
    xz_memlimit: u64,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match format {
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Format::Xz => Box::new(XzReader::new(input, xz_memlimit)?),
        Format::Raw | Format::Qcow2 => Box::new(input),
    })
}

/// The xz decoder refused a block whose dictionary needs more memory than the
/// limit; carried through `io::Error` (see [`xz_memlimit_exceeded`]).
#[derive(Debug, thiserror::Error)]
#[error("xz stream needs {needed} bytes of memory; the limit is {limit} bytes")]
pub struct XzMemLimitExceeded {
    /// Bytes the decoder would need (what liblzma computed for the block).
    pub needed: u64,
    /// The limit in bytes.
    pub limit: u64,
}

/// Why a compressed stream could not be decoded: the same for the write
/// pipeline and `ingot-image convert`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The stream was corrupt or ended early.
    #[error("corrupt or truncated {format} stream after {at} decoded bytes: {reason}")]
    Corrupt {
        /// zstd, gzip or xz.
        format: Format,
        /// Decoded bytes before the error.
        at: u64,
        /// The decoder's message.
        reason: String,
    },
    /// An xz stream declares a dictionary that needs more memory than the
    /// limit.
    #[error(
        "xz stream needs {} MiB of memory for its dictionary; the limit is {} MiB",
        .needed.div_ceil(1 << 20),
        .limit >> 20
    )]
    XzMemLimit {
        /// Bytes the decoder would need (what liblzma computed for the block).
        needed: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

impl DecodeError {
    /// The error of a decoder's read `e` in a `format` stream, `at` decoded
    /// bytes in.
    pub fn of(format: Format, at: u64, e: &io::Error) -> Self {
        match xz_memlimit_exceeded(e) {
            Some(m) => Self::XzMemLimit {
                needed: m.needed,
                limit: m.limit,
            },
            None => Self::Corrupt {
                format,
                at,
                reason: e.to_string(),
            },
        }
    }
}

/// The [`XzMemLimitExceeded`] an xz decoder's read error carries, if any.
pub fn xz_memlimit_exceeded(e: &io::Error) -> Option<&XzMemLimitExceeded> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<XzMemLimitExceeded>())
}

/// An xz decoder (concatenated streams) with a memory limit. liblzma checks
/// each block's filter chain against the limit before allocating anything, so
/// a header that declares a 4 GiB dictionary costs nothing. This is
/// `liblzma::bufread::XzDecoder`'s loop, kept here because that type does not
/// give its stream back, and the stream is what knows how much was needed.
struct XzReader<R> {
    input: R,
    stream: liblzma::stream::Stream,
    limit: u64,
}

impl<R: BufRead> XzReader<R> {
    fn new(input: R, limit: u64) -> io::Result<Self> {
        let stream =
            liblzma::stream::Stream::new_stream_decoder(limit, liblzma::stream::CONCATENATED)?;
        Ok(Self {
            input,
            stream,
            limit,
        })
    }

    /// What the refused block needs. liblzma records it, and its
    /// `lzma_memlimit_set` refuses any limit below it, so the smallest limit
    /// it accepts is the need (the crate does not bind `lzma_memusage`).
    fn needed(&mut self) -> u64 {
        // `lo` is refused (it is the limit that failed), `hi` is accepted.
        let (mut lo, mut hi) = (self.limit, u64::MAX);
        if self.stream.set_memlimit(hi).is_err() {
            return hi;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.stream.set_memlimit(mid).is_ok() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

impl<R: BufRead> Read for XzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use liblzma::stream::{Action, Error, Status};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let input = self.input.fill_buf()?;
            let eof = input.is_empty();
            let (in_before, out_before) = (self.stream.total_in(), self.stream.total_out());
            let action = if eof { Action::Finish } else { Action::Run };
            let ret = self.stream.process(input, buf, action);
            let read =
                usize::try_from(self.stream.total_out() - out_before).map_err(io::Error::other)?;
            let consumed =
                usize::try_from(self.stream.total_in() - in_before).map_err(io::Error::other)?;
            self.input.consume(consumed);
            let status = match ret {
                Ok(s) => s,
                Err(Error::MemLimit) => {
                    let needed = self.needed();
                    tracing::warn!(
                        needed,
                        limit = self.limit,
                        "xz stream refused: its dictionary needs more memory than the limit"
                    );
                    return Err(io::Error::other(XzMemLimitExceeded {
                        needed,
                        limit: self.limit,
                    }));
                }
                Err(e) => return Err(e.into()),
            };
            if read > 0 || eof || status == Status::StreamEnd {
                if read == 0 && status != Status::StreamEnd {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "premature eof",
                    ));
                }
                return Ok(read);
            }
            if consumed == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt xz stream",
                ));
            }
        }
    }
}

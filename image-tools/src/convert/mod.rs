//! `ingot-image convert`: any image format the agent reads into raw, qcow2,
//! zstd, gzip or xz, streamed.
//!
//! The input is opened and decoded by the agent's own readers: the same
//! sources (a path, or an http(s) URL), the same format detection by magic
//! bytes, the same zstd/gzip/xz decoders (`decode.rs`) and the same qcow2
//! header and table checks (`qcow2.rs`). It comes out in guest order as data
//! and zero runs ([`input`]), and one writer per output format consumes it
//! ([`output`], [`qcow2_writer`]).
//!
//! Memory does not depend on the image size: a 1 MiB read buffer, the
//! compressor's window (xz -9 is the largest: about 674 MiB; the default -6
//! about 94 MiB), and for a qcow2 input the table map the agent holds too (one
//! entry per run of contiguous clusters). A qcow2 output holds one cluster,
//! one L2 table and the L1 table (8 bytes per 512 MiB of disk with 64 KiB
//! clusters; 16 KiB per TiB): clusters arrive in guest order, so each L2
//! table is complete, and written, once the disk has moved past it.

mod input;
mod output;
mod qcow2_writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::format::{Format, FormatChoice};
use crate::qcow2::Qcow2Error;
use crate::source::{SourceError, SourceOptions};

use input::Piece;
pub use qcow2_writer::DEFAULT_CLUSTER_BITS;

/// What to convert, into what.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Path or http(s) URL of the input image.
    pub source: String,
    /// The file to write (created, or truncated).
    pub output: PathBuf,
    /// Detect the input format by magic bytes, or insist on one.
    pub input_format: FormatChoice,
    /// The output format.
    pub output_format: Format,
    /// Compression level for zstd (1–19, default 3), gzip (1–9, default 6)
    /// and xz (0–9, default 6); `None` for the default.
    pub level: Option<u32>,
    /// log2 of the qcow2 output's cluster size (9–21; default 16, 64 KiB).
    pub qcow2_cluster_bits: u32,
    /// Network retry, timeout and TLS options for an http(s) input.
    pub source_options: SourceOptions,
    /// Most memory the xz decoder may use; `None` for the agent's default
    /// (a quarter of the RAM, at least 128 MiB).
    pub xz_memlimit: Option<u64>,
}

impl ConvertOptions {
    /// Options with the defaults for everything but input, output and format.
    pub fn new(source: impl Into<String>, output: impl Into<PathBuf>, format: Format) -> Self {
        Self {
            source: source.into(),
            output: output.into(),
            input_format: FormatChoice::Auto,
            output_format: format,
            level: None,
            qcow2_cluster_bits: DEFAULT_CLUSTER_BITS,
            source_options: SourceOptions::default(),
            xz_memlimit: None,
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConvertReport {
    /// The input, as given.
    pub source: String,
    /// Its format, by magic bytes (or as forced).
    pub input_format: &'static str,
    /// The input's size in bytes, when known (file size, Content-Length).
    pub source_bytes: Option<u64>,
    /// The file written.
    pub output: String,
    /// Its format.
    pub output_format: &'static str,
    /// The disk's size in bytes (a qcow2 output rounds it up to 512).
    pub image_bytes: u64,
    /// The output file's size in bytes.
    pub output_bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Why a conversion failed. The partial output file is removed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The input format was refused (or did not match `--input-format`).
    #[error("{0}")]
    Format(String),
    /// A qcow2 input was refused.
    #[error(transparent)]
    Qcow2(#[from] Qcow2Error),
    /// A compressed input was corrupt or truncated, or an xz input needs
    /// more memory than the limit.
    #[error(transparent)]
    Decode(#[from] crate::decode::DecodeError),
    /// The output could not be written.
    #[error("{path}: {source}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The options or the image do not allow the conversion.
    #[error("{0}")]
    Invalid(String),
}

/// Converts `opts.source` into `opts.output`. On failure the output file is
/// removed.
pub fn convert(opts: &ConvertOptions) -> Result<ConvertReport, ConvertError> {
    let started = Instant::now();
    check_output(opts)?;
    let level = output::level(opts.output_format, opts.level)?;
    let xz_memlimit = opts
        .xz_memlimit
        .unwrap_or_else(crate::write::default_xz_memlimit);
    let reader = input::GuestReader::open(
        &opts.source,
        opts.input_format,
        &opts.source_options,
        xz_memlimit,
    )?;
    let file = std::fs::File::create(&opts.output).map_err(|source| ConvertError::Output {
        path: opts.output.clone(),
        source,
    })?;
    let done = output::open(
        opts.output_format,
        file,
        &opts.output,
        level,
        opts.qcow2_cluster_bits,
    )
    .and_then(|sink| pump(reader, sink));
    let (reader, written) = match done {
        Ok(done) => done,
        Err(e) => {
            std::fs::remove_file(&opts.output).ok();
            return Err(e);
        }
    };
    Ok(ConvertReport {
        source: opts.source.clone(),
        input_format: reader.format().name(),
        source_bytes: reader.source_bytes(),
        output: opts.output.display().to_string(),
        output_format: opts.output_format.name(),
        image_bytes: written.image_bytes,
        output_bytes: written.output_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Buffers between the reader and the writer thread.
const BUFFERS: usize = 4;

/// Moves the disk from `reader` to `sink`: reading on one thread, writing on
/// this one, [`BUFFERS`] buffers of [`input::BUF_LEN`] between them.
fn pump(
    mut reader: input::GuestReader,
    mut sink: Box<dyn output::Sink>,
) -> Result<(input::GuestReader, output::Finished), ConvertError> {
    use crate::handoff::bounded;
    let (full_tx, full_rx) = bounded::<(Vec<u8>, Piece)>(BUFFERS);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // The channel has room for exactly BUFFERS buffers.
        free_tx.send(vec![0; input::BUF_LEN]).ok();
    }
    std::thread::scope(|s| {
        let read = std::thread::Builder::new()
            .name("ingot-convert-read".into())
            .spawn_scoped(s, move || -> Result<input::GuestReader, ConvertError> {
                // A closed channel means the writer failed; it reports why.
                while let Some(mut buf) = free_rx.recv() {
                    let Some(piece) = reader.next_into(&mut buf)? else {
                        break;
                    };
                    if full_tx.send((buf, piece)).is_err() {
                        break;
                    }
                }
                Ok(reader)
            })
            .map_err(|e| ConvertError::Invalid(format!("starting the reader: {e}")))?;
        let written = (|| {
            for (buf, piece) in full_rx.iter() {
                match piece {
                    Piece::Data(n) => sink.data(&buf[..n])?,
                    Piece::Zero(n) => sink.zero(n)?,
                }
                // The reader may have finished: then the buffer is not needed.
                free_tx.send(buf).ok();
            }
            Ok::<_, ConvertError>(())
        })();
        // Dropping the channels stops a reader that is still going.
        drop(full_rx);
        drop(free_tx);
        let reader = read
            .join()
            .map_err(|_| ConvertError::Invalid("the reader thread panicked".into()))??;
        written?;
        if reader.position() == 0 {
            return Err(ConvertError::Format("the image is empty (0 bytes)".into()));
        }
        Ok((reader, sink.finish()?))
    })
}

/// Refuses to write over the input, or into anything but a regular file (a
/// disk is written with `ingot-agent write-image`, which zeroes what the
/// image does not cover; a converter skips it).
fn check_output(opts: &ConvertOptions) -> Result<(), ConvertError> {
    let Ok(meta) = std::fs::metadata(&opts.output) else {
        return Ok(());
    };
    if !meta.is_file() {
        return Err(ConvertError::Invalid(format!(
            "{} exists and is not a regular file: convert writes image files (write disks with ingot-agent write-image)",
            opts.output.display()
        )));
    }
    if let Some(input) = crate::source::local_path(&opts.source)
        && same_file(Path::new(input), &opts.output)
    {
        return Err(ConvertError::Invalid(format!(
            "{} is the input itself",
            opts.output.display()
        )));
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

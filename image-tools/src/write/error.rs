//! Why a write failed, and what became of the target.

use crate::checksum::ChecksumError;
use crate::decode;
use crate::qcow2::Qcow2Error;
use crate::source::SourceError;
use crate::target::TargetError;

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

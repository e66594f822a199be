//! A local file (or anything `open(2)` can read sequentially, such as a pipe).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use super::{RangeRead, Source, SourceError};

/// A local file source.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: String,
    len: Option<u64>,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &str) -> Result<Self, SourceError> {
        let err = |source| SourceError::File {
            path: path.to_string(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        if meta.is_dir() {
            return Err(SourceError::File {
                path: path.to_string(),
                source: std::io::Error::other("is a directory"),
            });
        }
        let len = meta.is_file().then_some(meta.len());
        Ok(Self {
            file,
            path: path.to_string(),
            len,
        })
    }
}

impl Source for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        loop {
            match self.file.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SourceError::File {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn len_hint(&self) -> Option<u64> {
        self.len
    }

    fn resumes(&self) -> u32 {
        0
    }

    fn range_reader(&self) -> Result<Box<dyn RangeRead>, SourceError> {
        let file = self.file.try_clone().map_err(|source| SourceError::File {
            path: self.path.clone(),
            source,
        })?;
        Ok(Box::new(FileRanges {
            file,
            path: self.path.clone(),
        }))
    }
}

struct FileRanges {
    file: File,
    path: String,
}

impl RangeRead for FileRanges {
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError> {
        let n = usize::try_from(len).map_err(|_| range_err(&self.path, offset, len, "too long"))?;
        let mut buf = vec![0u8; n];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| range_err(&self.path, offset, len, &e.to_string()))?;
        Ok(buf)
    }

    fn read_range_into(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| range_err(&self.path, offset, buf.len() as u64, &e.to_string()))
    }
}

fn range_err(path: &str, offset: u64, len: u64, reason: &str) -> SourceError {
    SourceError::Range {
        what: path.to_string(),
        offset,
        len,
        reason: reason.to_string(),
    }
}

//! A disk image described sparsely, so that a fuzz input of a few hundred
//! bytes can put a superblock at the end of a terabyte disk, and a seed made
//! from a real 300 MiB file system stays small.
//!
//! Format: the disk size (`u64`, little-endian), then extents, each an
//! offset (`u64` LE), a length (`u16` LE) and that many bytes (the last
//! extent may be cut short). Everything else reads as zeros; a later extent
//! overwrites an earlier one; bytes beyond the disk size are dropped.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use ingot_agent::wipe::device::ReadAt;

/// A decoded sparse disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseDisk {
    size: u64,
    extents: Vec<(u64, Vec<u8>)>,
}

impl SparseDisk {
    /// Decodes the format above; `None` for fewer than 8 bytes.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let (size, mut rest) = data.split_first_chunk::<8>()?;
        let size = u64::from_le_bytes(*size);
        let mut extents = Vec::new();
        while let Some((head, after)) = rest.split_first_chunk::<10>() {
            let offset = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
            let len = usize::from(u16::from_le_bytes([head[8], head[9]])).min(after.len());
            let (bytes, after) = after.split_at(len);
            if offset < size && !bytes.is_empty() {
                // Clipped to the disk: `offset + len` fits below `size`.
                let keep = usize::try_from(size - offset).map_or(len, |room| room.min(len));
                extents.push((offset, bytes[..keep].to_vec()));
            }
            rest = after;
        }
        Some(Self { size, extents })
    }

    /// The disk size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The disk in an anonymous memory file (sparse), if its size is at most
    /// `max_size`.
    pub fn to_memfd(&self, max_size: u64) -> Option<File> {
        if self.size > max_size {
            return None;
        }
        // SAFETY: a valid NUL-terminated name and flags; the result is
        // checked before it is used as a file descriptor.
        let fd = unsafe { libc::memfd_create(c"ingot-fuzz-disk".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(self.size).ok()?;
        for (offset, bytes) in &self.extents {
            file.write_all_at(bytes, *offset).ok()?;
        }
        Some(file)
    }
}

impl ReadAt for SparseDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let end = offset.saturating_add(len as u64);
        for (at, bytes) in &self.extents {
            let e_end = at + bytes.len() as u64;
            let (from, to) = (offset.max(*at), end.min(e_end));
            if from < to {
                let dst = usize::try_from(from - offset).unwrap_or(0);
                let src = usize::try_from(from - at).unwrap_or(0);
                let n = usize::try_from(to - from).unwrap_or(0);
                out[dst..dst + n].copy_from_slice(&bytes[src..src + n]);
            }
        }
        Ok(out)
    }
}

/// Encodes a disk image as a [`SparseDisk`]: its non-zero 512-byte blocks,
/// adjacent ones merged into extents of at most 64 KiB - 512.
pub fn sparse_encode(image: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    const MAX_EXTENT: usize = u16::MAX as usize / BLOCK * BLOCK;
    let mut out = (image.len() as u64).to_le_bytes().to_vec();
    let mut run: Option<(usize, usize)> = None;
    let flush = |out: &mut Vec<u8>, (start, end): (usize, usize)| {
        out.extend_from_slice(&(start as u64).to_le_bytes());
        out.extend_from_slice(&((end - start) as u16).to_le_bytes());
        out.extend_from_slice(&image[start..end]);
    };
    for (i, block) in image.chunks(BLOCK).enumerate() {
        let start = i * BLOCK;
        let end = start + block.len();
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        run = match run {
            Some((s, e)) if e == start && end - s <= MAX_EXTENT => Some((s, end)),
            Some(r) => {
                flush(&mut out, r);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut image = vec![0u8; 300_000];
        image[1000..1100].fill(7);
        image[200_000..270_000].fill(9);
        image[299_999] = 1;
        let disk = SparseDisk::decode(&sparse_encode(&image)).expect("decodes");
        assert_eq!(disk.size(), image.len() as u64);
        assert_eq!(
            disk.read_at(0, image.len()).expect("reads"),
            image,
            "every byte reads back"
        );
        assert_eq!(disk.read_at(299_990, 20).expect("reads")[9..11], [1, 0]);
    }

    #[test]
    fn extents_are_clipped_to_the_disk() {
        let mut data = 10u64.to_le_bytes().to_vec();
        data.extend_from_slice(&8u64.to_le_bytes());
        data.extend_from_slice(&5u16.to_le_bytes());
        data.extend_from_slice(b"abcde");
        data.extend_from_slice(&u64::MAX.to_le_bytes());
        data.extend_from_slice(&1u16.to_le_bytes());
        data.push(b'z');
        let disk = SparseDisk::decode(&data).expect("decodes");
        assert_eq!(disk.read_at(6, 6).expect("reads"), b"\0\0ab\0\0");
        let f = disk.to_memfd(1 << 20).expect("memfd");
        assert_eq!(f.metadata().expect("stat").len(), 10);
    }
}

//! A qcow2 (version 3) writer for a disk that arrives in guest order.
//!
//! No compression, no backing file, 16-bit refcounts, every cluster
//! referenced once. All-zero clusters are not allocated (they read as zeros:
//! there is no backing file), nor are L2 tables with no allocated cluster.
//!
//! The file is written front to back: cluster 0 is reserved for the header,
//! then data clusters follow in guest order, each L2 table after the clusters
//! it maps (written once the disk has moved past its range), then the L1
//! table, the refcount blocks and the refcount table. The header is written
//! last, into cluster 0, once the disk size and every offset are known; so
//! the size need not be known in advance (a zstd, gzip or xz input does not
//! say it). Every cluster from 0 to the end of the file is in use exactly
//! once, so the refcounts are all 1 and are generated, block by block, at the
//! end.
//!
//! Memory: one cluster, one L2 table, and the L1 table (8 bytes per L2
//! table, i.e. per `cluster_size² / 8` bytes of disk: 16 KiB per TiB with
//! 64 KiB clusters).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ConvertError;
use super::output::{Finished, Sink};
use crate::buffer::is_zero;

/// 64 KiB clusters, as `qemu-img create` makes them.
pub const DEFAULT_CLUSTER_BITS: u32 = 16;
/// The header's length: the version 3 fields, without the compression type.
const HEADER_LENGTH: u32 = 104;
/// 16-bit refcounts.
const REFCOUNT_ORDER: u32 = 4;
/// L1 and L2 entries: the cluster's refcount is exactly 1.
const COPIED: u64 = 1 << 63;
/// QEMU refuses larger L1 tables (and so does the reader, `qcow2.rs`).
const MAX_L1_BYTES: u64 = 32 << 20;
const WRITE_BUF: usize = 1 << 20;

/// Writes a qcow2 image from guest-ordered data.
#[derive(Debug)]
pub struct Qcow2Writer {
    out: BufWriter<File>,
    path: PathBuf,
    cluster_bits: u32,
    cluster_size: u64,
    /// `cluster_size` as a length.
    cluster_len: usize,
    /// Next free cluster of the file (cluster 0 is the header's).
    next_host: u64,
    /// Index of the guest cluster `cluster` is filling.
    guest_cluster: u64,
    /// Guest bytes received.
    pos: u64,
    cluster: Vec<u8>,
    filled: usize,
    /// The L2 table being filled, and its index in the L1 table.
    l2: Vec<u64>,
    l2_index: u64,
    l2_used: bool,
    l1: Vec<u64>,
    /// Scratch for a table's bytes.
    table: Vec<u8>,
}

impl Qcow2Writer {
    /// Starts an image in `file` (at `path`, for errors) with clusters of
    /// `2^cluster_bits` bytes (9–21).
    pub fn new(file: File, path: PathBuf, cluster_bits: u32) -> Result<Self, ConvertError> {
        if !(9..=21).contains(&cluster_bits) {
            return Err(ConvertError::Invalid(format!(
                "qcow2 cluster size 2^{cluster_bits} is outside 512 bytes..2 MiB"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;
        let cs = 1usize << cluster_bits;
        let mut w = Self {
            out: BufWriter::with_capacity(WRITE_BUF.max(cs), file),
            path,
            cluster_bits,
            cluster_size,
            cluster_len: cs,
            next_host: 0,
            guest_cluster: 0,
            pos: 0,
            cluster: vec![0; cs],
            filled: 0,
            l2: vec![0; cs / 8],
            l2_index: 0,
            l2_used: false,
            l1: Vec::new(),
            table: vec![0; cs],
        };
        // Cluster 0: the header, written last.
        w.append(&vec![0; cs])?;
        Ok(w)
    }

    fn err(&self, e: std::io::Error) -> ConvertError {
        output_err(&self.path, e)
    }

    fn l2_entries(&self) -> u64 {
        self.cluster_size / 8
    }

    /// Appends whole clusters at the end of the file; returns the offset of
    /// the first.
    fn append(&mut self, bytes: &[u8]) -> Result<u64, ConvertError> {
        let clusters = (bytes.len() as u64).div_ceil(self.cluster_size);
        let offset = self
            .next_host
            .checked_mul(self.cluster_size)
            .ok_or_else(too_large)?;
        self.out.write_all(bytes).map_err(|e| self.err(e))?;
        let pad = clusters * self.cluster_size - bytes.len() as u64;
        if pad > 0 {
            let zeros = vec![0u8; usize::try_from(pad).map_err(|_| too_large())?];
            self.out.write_all(&zeros).map_err(|e| self.err(e))?;
        }
        self.next_host = self.next_host.checked_add(clusters).ok_or_else(too_large)?;
        Ok(offset)
    }

    /// The guest clusters from `guest_cluster` on hold `bytes` (whole
    /// clusters). Zero clusters are skipped; each run of non-zero clusters
    /// within one L2 table's range is one write, straight from `bytes`.
    fn emit_run(&mut self, bytes: &[u8]) -> Result<(), ConvertError> {
        let cs = self.cluster_len;
        let per_table = self.l2_entries();
        let mut clusters = bytes.chunks_exact(cs).enumerate().peekable();
        while let Some((i, c)) = clusters.next() {
            let g = self.guest_cluster;
            self.guest_cluster = g.checked_add(1).ok_or_else(too_large)?;
            if is_zero(c) {
                continue;
            }
            let index = g / per_table;
            if index != self.l2_index {
                self.flush_l2()?;
                self.l2_index = index;
            }
            // Extend the run while the clusters are non-zero and in this table.
            let mut end = i + 1;
            let mut last = g;
            while let Some((j, next)) = clusters.peek() {
                if (last + 1) / per_table != index || is_zero(next) {
                    break;
                }
                end = j + 1;
                last += 1;
                clusters.next();
            }
            self.guest_cluster = last + 1;
            let host = self.append(&bytes[i * cs..end * cs])?;
            for (k, guest) in (g..=last).enumerate() {
                let slot = usize::try_from(guest % per_table).map_err(|_| too_large())?;
                self.l2[slot] = (host + k as u64 * self.cluster_size) | COPIED;
            }
            self.l2_used = true;
        }
        Ok(())
    }

    /// Emits the partly filled cluster, padded with zeros.
    fn emit_buffered(&mut self) -> Result<(), ConvertError> {
        self.cluster[self.filled..].fill(0);
        let cluster = std::mem::take(&mut self.cluster);
        let r = self.emit_run(&cluster);
        self.cluster = cluster;
        self.filled = 0;
        r
    }

    /// Writes the current L2 table if it maps anything, and points the L1
    /// table at it.
    fn flush_l2(&mut self) -> Result<(), ConvertError> {
        if !self.l2_used {
            return Ok(());
        }
        let mut table = std::mem::take(&mut self.table);
        for (b, e) in table.chunks_exact_mut(8).zip(&self.l2) {
            b.copy_from_slice(&e.to_be_bytes());
        }
        let host = self.append(&table);
        self.table = table;
        let host = host?;
        let index = usize::try_from(self.l2_index).map_err(|_| too_large())?;
        if (index as u64 + 1) * 8 > MAX_L1_BYTES {
            return Err(too_large());
        }
        if self.l1.len() <= index {
            self.l1.resize(index + 1, 0);
        }
        self.l1[index] = host | COPIED;
        self.l2.fill(0);
        self.l2_used = false;
        Ok(())
    }

    /// Writes `entries` as one table of 64-bit big-endian entries, padded to
    /// whole clusters; returns its offset.
    fn append_table(&mut self, entries: &[u64]) -> Result<u64, ConvertError> {
        let offset = self
            .next_host
            .checked_mul(self.cluster_size)
            .ok_or_else(too_large)?;
        let cs = self.cluster_len;
        let mut table = std::mem::take(&mut self.table);
        let mut r = Ok(0);
        for part in entries.chunks(cs / 8) {
            table.fill(0);
            for (b, e) in table.chunks_exact_mut(8).zip(part) {
                b.copy_from_slice(&e.to_be_bytes());
            }
            r = self.append(&table);
            if r.is_err() {
                break;
            }
        }
        self.table = table;
        r.map(|_| offset)
    }
}

/// `(refcount blocks, refcount table clusters)` for a file of `used`
/// clusters, counting the refcount structures themselves.
pub fn refcount_layout(used: u64, cluster_bits: u32) -> Option<(u64, u64)> {
    let cluster_size = 1u64 << cluster_bits;
    let per_block = cluster_size * 8 / (1 << REFCOUNT_ORDER);
    let (mut blocks, mut table) = (0u64, 0u64);
    loop {
        let total = used.checked_add(blocks)?.checked_add(table)?;
        let b = total.div_ceil(per_block);
        let t = b.checked_mul(8)?.div_ceil(cluster_size);
        if (b, t) == (blocks, table) {
            return Some((blocks, table));
        }
        (blocks, table) = (b, t);
    }
}

impl Sink for Qcow2Writer {
    fn data(&mut self, mut data: &[u8]) -> Result<(), ConvertError> {
        self.pos = self
            .pos
            .checked_add(data.len() as u64)
            .ok_or_else(too_large)?;
        let cs = self.cluster_len;
        while !data.is_empty() {
            if self.filled == 0 && data.len() >= cs {
                let (whole, rest) = data.split_at(data.len() / cs * cs);
                self.emit_run(whole)?;
                data = rest;
                continue;
            }
            let n = (cs - self.filled).min(data.len());
            self.cluster[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == cs {
                self.emit_buffered()?;
            }
        }
        Ok(())
    }

    fn zero(&mut self, mut len: u64) -> Result<(), ConvertError> {
        self.pos = self.pos.checked_add(len).ok_or_else(too_large)?;
        let cs = self.cluster_len;
        if self.filled > 0 {
            let n = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(cs - self.filled);
            self.cluster[self.filled..self.filled + n].fill(0);
            self.filled += n;
            len -= n as u64;
            if self.filled == cs {
                self.emit_buffered()?;
            }
        }
        if len == 0 {
            return Ok(());
        }
        // Whole clusters of zeros: nothing to allocate.
        self.guest_cluster = self
            .guest_cluster
            .checked_add(len / self.cluster_size)
            .ok_or_else(too_large)?;
        let rest = usize::try_from(len % self.cluster_size).map_err(|_| too_large())?;
        self.cluster[..rest].fill(0);
        self.filled = rest;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Finished, ConvertError> {
        if self.filled > 0 {
            self.emit_buffered()?;
        }
        self.flush_l2()?;
        // QEMU counts disks in 512-byte sectors.
        let size = self
            .pos
            .checked_next_multiple_of(512)
            .ok_or_else(too_large)?;
        let clusters = size.div_ceil(self.cluster_size);
        let l1_size = clusters.div_ceil(self.l2_entries());
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(too_large());
        }
        let l1_len = usize::try_from(l1_size).map_err(|_| too_large())?;
        let mut l1 = std::mem::take(&mut self.l1);
        l1.resize(l1_len, 0);
        let l1_offset = if l1.is_empty() {
            0
        } else {
            self.append_table(&l1)?
        };

        // Refcounts: every cluster so far, and the refcount blocks and table
        // themselves, are used once.
        let (blocks, table_clusters) =
            refcount_layout(self.next_host, self.cluster_bits).ok_or_else(too_large)?;
        let total = self.next_host + blocks + table_clusters;
        let first_block = self.next_host;
        let per_block = self.cluster_size / 2;
        let mut block = vec![0u8; self.cluster_len];
        for i in 0..blocks {
            block.fill(0);
            let start = i * per_block;
            let used = total.saturating_sub(start).min(per_block);
            for e in block.chunks_exact_mut(2).take(used as usize) {
                e.copy_from_slice(&1u16.to_be_bytes());
            }
            self.append(&block)?;
        }
        let block_offsets = (first_block..first_block + blocks)
            .map(|c| c.checked_mul(self.cluster_size).ok_or_else(too_large))
            .collect::<Result<Vec<u64>, _>>()?;
        let refcount_table_offset = self.append_table(&block_offsets)?;
        debug_assert_eq!(self.next_host, total);

        let header = header(HeaderFields {
            cluster_bits: self.cluster_bits,
            size,
            l1_size: u32::try_from(l1_size).map_err(|_| too_large())?,
            l1_table_offset: l1_offset,
            refcount_table_offset,
            refcount_table_clusters: u32::try_from(table_clusters).map_err(|_| too_large())?,
        });
        let Qcow2Writer { out, path, .. } = *self;
        let file = out
            .into_inner()
            .map_err(|e| output_err(&path, e.into_error()))?;
        file.write_all_at(&header, 0)
            .map_err(|e| output_err(&path, e))?;
        Ok(Finished {
            image_bytes: size,
            output_bytes: file_len(&file, &path)?,
        })
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64, ConvertError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| output_err(path, e))
}

/// The header fields that vary.
struct HeaderFields {
    cluster_bits: u32,
    size: u64,
    l1_size: u32,
    l1_table_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
}

/// The version 3 header (104 bytes; the header extensions that may follow
/// end at once: the next 8 bytes are zeros).
fn header(f: HeaderFields) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LENGTH as usize + 8];
    h[0..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    // 8..20: no backing file.
    h[20..24].copy_from_slice(&f.cluster_bits.to_be_bytes());
    h[24..32].copy_from_slice(&f.size.to_be_bytes());
    // 32..36: no encryption.
    h[36..40].copy_from_slice(&f.l1_size.to_be_bytes());
    h[40..48].copy_from_slice(&f.l1_table_offset.to_be_bytes());
    h[48..56].copy_from_slice(&f.refcount_table_offset.to_be_bytes());
    h[56..60].copy_from_slice(&f.refcount_table_clusters.to_be_bytes());
    // 60..72: no snapshots; 72..96: no incompatible, compatible or
    // autoclear features.
    h[96..100].copy_from_slice(&REFCOUNT_ORDER.to_be_bytes());
    h[100..104].copy_from_slice(&HEADER_LENGTH.to_be_bytes());
    h
}

fn output_err(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Output {
        path: path.to_path_buf(),
        source,
    }
}

fn too_large() -> ConvertError {
    ConvertError::Invalid("the disk is too large for a qcow2 image with this cluster size".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_cover_themselves() {
        // 64 KiB clusters: one block covers 32768 clusters.
        assert_eq!(refcount_layout(1, 16), Some((1, 1)));
        assert_eq!(refcount_layout(32766, 16), Some((1, 1)));
        // 32767 used + 1 block + 1 table = 32769: a second block.
        assert_eq!(refcount_layout(32767, 16), Some((2, 1)));
        // 512-byte clusters: 256 per block, 64 block offsets per table cluster.
        let (b, t) = refcount_layout(100_000, 9).unwrap();
        assert!(b * 256 >= 100_000 + b + t, "{b} {t}");
        assert!((b - 1) * 256 < 100_000 + b + t, "{b} {t}");
        assert_eq!(t, b.div_ceil(64));
        assert_eq!(refcount_layout(u64::MAX, 9), None);
    }

    #[test]
    fn header_fields() {
        let h = header(HeaderFields {
            cluster_bits: 16,
            size: 1 << 30,
            l1_size: 2,
            l1_table_offset: 0x30000,
            refcount_table_offset: 0x50000,
            refcount_table_clusters: 1,
        });
        let parsed = crate::qcow2::parse_header(&h).unwrap();
        assert_eq!(parsed.version, 3);
        assert_eq!(parsed.cluster_size(), 65536);
        assert_eq!(parsed.size, 1 << 30);
        assert_eq!(parsed.l1_size, 2);
        assert_eq!(parsed.l1_table_offset, 0x30000);
        assert_eq!(&h[104..], &[0; 8]);
    }
}

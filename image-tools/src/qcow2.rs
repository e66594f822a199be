//! qcow2 (versions 2 and 3), converted to a raw disk while it streams.
//!
//! The header arrives with the first chunk of the stream. The L1 and L2 tables
//! are fetched with random-access reads (HTTP `Range` requests, or `pread` for a
//! file) before the data clusters stream past, so clusters can come in any order
//! without being buffered: each one is written at its guest offset as its bytes
//! arrive. The tables read out of band are hashed, and the hashes are checked
//! when the sequential stream (the one the image checksum covers) passes them,
//! so nothing is written from metadata that was not part of the verified image.

use sha2::{Digest, Sha256};

use crate::source::{RangeRead, SourceError};

/// Why a qcow2 image was refused.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// Not a qcow2 header, or a malformed one.
    #[error("corrupt qcow2 header: {0}")]
    BadHeader(String),
    /// The image needs a backing file, which a disk write cannot provide.
    #[error(
        "the qcow2 image has a backing file{}; flatten it first (qemu-img convert -O qcow2 <image> <flat image>)",
        .0.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
    )]
    BackingFile(Option<String>),
    /// Encrypted images are not supported.
    #[error("the qcow2 image is encrypted, which is not supported")]
    Encrypted,
    /// A feature Ingot does not implement.
    #[error("the qcow2 image uses {0}, which is not supported")]
    Unsupported(String),
    /// Inconsistent tables or clusters.
    #[error("corrupt qcow2 image: {0}")]
    Corrupt(String),
    /// A cluster lies beyond the end of the file.
    #[error("truncated qcow2 image: {0}")]
    Truncated(String),
    /// Reading the tables failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// How compressed clusters are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw deflate (zlib without header), the default.
    Deflate,
    /// zstd frames (qcow2 v3 compression type 1).
    Zstd,
}

/// The fields of a qcow2 header that matter for conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Number of L1 entries.
    pub l1_size: u32,
    /// File offset of the L1 table.
    pub l1_table_offset: u64,
    /// Compression of compressed clusters.
    pub compression: Compression,
    /// Whether the image was not closed cleanly (refcounts may be stale; the
    /// L1/L2 mapping is still valid).
    pub dirty: bool,
}

impl Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }
}

fn be32(b: &[u8], off: usize) -> Result<u32, Qcow2Error> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| Qcow2Error::BadHeader(format!("header too short (need byte {})", off + 4)))
}

fn be64(b: &[u8], off: usize) -> Result<u64, Qcow2Error> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Qcow2Error::BadHeader(format!("header too short (need byte {})", off + 8)))
}

/// Largest L1 table accepted (the same limit as QEMU).
const MAX_L1_BYTES: u64 = 32 << 20;
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// The largest file offset (`off_t` is signed).
const MAX_FILE_OFFSET: u64 = i64::MAX as u64;
const COMPRESSED_FLAG: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;

/// Parses the header at the start of `head`.
pub fn parse_header(head: &[u8]) -> Result<Header, Qcow2Error> {
    if !head.starts_with(b"QFI\xfb") {
        return Err(Qcow2Error::BadHeader("no QFI magic".into()));
    }
    let version = be32(head, 4)?;
    if version != 2 && version != 3 {
        return Err(Qcow2Error::Unsupported(format!("qcow2 version {version}")));
    }
    let backing_offset = be64(head, 8)?;
    let backing_len = be32(head, 16)?;
    if backing_offset != 0 && backing_len != 0 {
        let name = usize::try_from(backing_offset).ok().and_then(|o| {
            let end = o.checked_add(usize::try_from(backing_len).ok()?)?;
            head.get(o..end)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        });
        return Err(Qcow2Error::BackingFile(name));
    }
    let cluster_bits = be32(head, 20)?;
    if !(9..=21).contains(&cluster_bits) {
        return Err(Qcow2Error::BadHeader(format!(
            "cluster_bits {cluster_bits} outside 9..=21"
        )));
    }
    let size = be64(head, 24)?;
    if be32(head, 32)? != 0 {
        return Err(Qcow2Error::Encrypted);
    }
    let l1_size = be32(head, 36)?;
    let l1_table_offset = be64(head, 40)?;
    let mut compression = Compression::Deflate;
    let mut dirty = false;
    if version == 3 {
        let incompatible = be64(head, 72)?;
        let header_length = be32(head, 100)?;
        dirty = incompatible & 1 != 0;
        if incompatible & 2 != 0 {
            return Err(Qcow2Error::Corrupt(
                "the image is marked corrupt by QEMU".into(),
            ));
        }
        if incompatible & 4 != 0 {
            return Err(Qcow2Error::Unsupported("an external data file".into()));
        }
        if incompatible & 16 != 0 {
            return Err(Qcow2Error::Unsupported(
                "extended L2 entries (subclusters)".into(),
            ));
        }
        let unknown = incompatible & !0b1_1111;
        if unknown != 0 {
            return Err(Qcow2Error::Unsupported(format!(
                "unknown incompatible features {unknown:#x}"
            )));
        }
        if incompatible & 8 != 0 {
            if header_length < 105 {
                return Err(Qcow2Error::BadHeader(
                    "compression type bit set but header too short".into(),
                ));
            }
            compression = match head.get(104) {
                Some(0) => Compression::Deflate,
                Some(1) => Compression::Zstd,
                Some(t) => {
                    return Err(Qcow2Error::Unsupported(format!("compression type {t}")));
                }
                None => return Err(Qcow2Error::BadHeader("header too short".into())),
            };
        }
    }
    let h = Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_table_offset,
        compression,
        dirty,
    };
    let needed = size.div_ceil(h.cluster_size() * h.l2_entries());
    if u64::from(l1_size) < needed {
        return Err(Qcow2Error::BadHeader(format!(
            "L1 table has {l1_size} entries but the disk size needs {needed}"
        )));
    }
    if u64::from(l1_size) * 8 > MAX_L1_BYTES {
        return Err(Qcow2Error::BadHeader(format!(
            "L1 table too large ({l1_size} entries)"
        )));
    }
    if l1_size > 0 && (l1_table_offset == 0 || l1_table_offset % h.cluster_size() != 0) {
        return Err(Qcow2Error::BadHeader(format!(
            "L1 table offset {l1_table_offset:#x} is not cluster aligned"
        )));
    }
    // File offsets are off_t: a table must end at or before 2^63 - 1, so that
    // every `offset + len` computed from it later fits too.
    let l1_len = u64::from(l1_size) * 8;
    if l1_table_offset
        .checked_add(l1_len)
        .is_none_or(|end| end > MAX_FILE_OFFSET)
    {
        return Err(Qcow2Error::BadHeader(format!(
            "L1 table offset {l1_table_offset:#x} (+{l1_len} bytes) lies beyond the largest possible file offset"
        )));
    }
    Ok(h)
}

/// How the bytes of an extent become guest data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Stored as is.
    Data,
    /// One compressed cluster.
    Compressed,
}

/// A run of the file that holds guest data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// File offset.
    pub host: u64,
    /// Bytes in the file (for compressed clusters, an upper bound).
    pub host_len: u64,
    /// Guest (disk) offset it maps to.
    pub guest: u64,
    /// Bytes of guest data it yields (`host_len` for data extents).
    pub guest_len: u64,
    /// Stored or compressed.
    pub kind: ExtentKind,
}

/// A metadata region read out of band, to be checked against the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRegion {
    /// File offset.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// SHA-256 of the bytes read out of band.
    pub sha256: [u8; 32],
}

/// The complete mapping of a qcow2 image, ready to stream.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The header.
    pub header: Header,
    /// Extents sorted by host offset, disjoint.
    pub extents: Vec<Extent>,
    /// Guest ranges (offset, len) that read as zeros.
    pub zero_runs: Vec<(u64, u64)>,
    /// Tables to check against the stream, sorted and disjoint.
    pub metadata: Vec<MetadataRegion>,
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Reads the L1 and L2 tables through `ranges` and builds the layout.
/// `file_len` (when known) is used to report truncation before anything is written.
pub fn read_layout(
    header: Header,
    ranges: &mut dyn RangeRead,
    file_len: Option<u64>,
) -> Result<Layout, Qcow2Error> {
    let cs = header.cluster_size();
    let l2_entries = header.l2_entries();
    let guest_clusters = header.size.div_ceil(cs);
    let l1_used = guest_clusters.div_ceil(l2_entries);
    let mut metadata = Vec::new();
    let mut l2_offsets = Vec::new();
    if l1_used > 0 {
        let l1_len = u64::from(header.l1_size) * 8;
        check_in_file(header.l1_table_offset, l1_len, file_len, "the L1 table")?;
        let l1 = ranges.read_range(header.l1_table_offset, l1_len)?;
        metadata.push(MetadataRegion {
            offset: header.l1_table_offset,
            len: l1_len,
            sha256: sha(&l1),
        });
        for (i, e) in l1.chunks_exact(8).take(l1_used as usize).enumerate() {
            let entry = u64::from_be_bytes(e.try_into().unwrap_or_default());
            let off = entry & OFFSET_MASK;
            if off != 0 {
                if off % cs != 0 {
                    return Err(Qcow2Error::Corrupt(format!(
                        "L2 table offset {off:#x} is not cluster aligned"
                    )));
                }
                l2_offsets.push((i as u64, off));
            }
        }
    }
    let mut extents = Vec::new();
    // Fetch tables in file order; adjacent ones in one request.
    let mut by_host = l2_offsets.clone();
    by_host.sort_by_key(|&(_, off)| off);
    let mut i = 0;
    while i < by_host.len() {
        let mut j = i + 1;
        while j < by_host.len() && by_host[j].1 == by_host[j - 1].1 + cs && j - i < 64 {
            j += 1;
        }
        let start = by_host[i].1;
        let len = (j - i) as u64 * cs;
        check_in_file(start, len, file_len, "an L2 table")?;
        let tables = ranges.read_range(start, len)?;
        for (k, &(l1_index, off)) in by_host[i..j].iter().enumerate() {
            let table = &tables[k * cs as usize..(k + 1) * cs as usize];
            metadata.push(MetadataRegion {
                offset: off,
                len: cs,
                sha256: sha(table),
            });
            map_l2(&header, l1_index, table, guest_clusters, &mut extents)?;
        }
        i = j;
    }
    finish_layout(header, extents, metadata, file_len)
}

fn check_in_file(off: u64, len: u64, file_len: Option<u64>, what: &str) -> Result<(), Qcow2Error> {
    match file_len {
        Some(fl) if off.saturating_add(len) > fl => Err(Qcow2Error::Truncated(format!(
            "{what} at {off:#x} (+{len}) lies beyond the end of the file ({fl} bytes)"
        ))),
        _ => Ok(()),
    }
}

fn map_l2(
    h: &Header,
    l1_index: u64,
    table: &[u8],
    guest_clusters: u64,
    out: &mut Vec<Extent>,
) -> Result<(), Qcow2Error> {
    let cs = h.cluster_size();
    let first = l1_index * h.l2_entries();
    for (j, e) in table.chunks_exact(8).enumerate() {
        let cluster = first + j as u64;
        if cluster >= guest_clusters {
            break;
        }
        let entry = u64::from_be_bytes(e.try_into().unwrap_or_default());
        let guest = cluster * cs;
        let guest_len = cs.min(h.size - guest);
        if entry & COMPRESSED_FLAG != 0 {
            let x = 62 - (h.cluster_bits - 8);
            let host = entry & ((1u64 << x) - 1);
            let extra_sectors = (entry >> x) & ((1u64 << (h.cluster_bits - 8)) - 1);
            let host_len = (extra_sectors + 1) * 512 - (host & 511);
            out.push(Extent {
                host,
                host_len,
                guest,
                guest_len,
                kind: ExtentKind::Compressed,
            });
            continue;
        }
        if h.version >= 3 && entry & ZERO_FLAG != 0 {
            continue; // reads as zeros
        }
        let host = entry & OFFSET_MASK;
        if host == 0 {
            continue; // unallocated: zeros (no backing file)
        }
        if host % cs != 0 {
            return Err(Qcow2Error::Corrupt(format!(
                "data cluster offset {host:#x} is not cluster aligned"
            )));
        }
        // Merge with the previous extent when both file and disk are contiguous.
        if let Some(last) = out.last_mut() {
            if last.kind == ExtentKind::Data
                && last.host + last.host_len == host
                && last.guest + last.guest_len == guest
                && last.guest_len == last.host_len
            {
                last.host_len += guest_len;
                last.guest_len += guest_len;
                continue;
            }
        }
        out.push(Extent {
            host,
            host_len: guest_len,
            guest,
            guest_len,
            kind: ExtentKind::Data,
        });
    }
    Ok(())
}

fn finish_layout(
    header: Header,
    mut extents: Vec<Extent>,
    mut metadata: Vec<MetadataRegion>,
    file_len: Option<u64>,
) -> Result<Layout, Qcow2Error> {
    let cs = header.cluster_size();
    // Zero runs: guest space not covered by any extent.
    extents.sort_by_key(|e| e.guest);
    let mut zero_runs = Vec::new();
    let mut pos = 0;
    for e in &extents {
        if e.guest > pos {
            zero_runs.push((pos, e.guest - pos));
        }
        pos = e.guest + e.guest_len;
    }
    if header.size > pos {
        zero_runs.push((pos, header.size - pos));
    }
    // File order, with sanity checks.
    extents.sort_by_key(|e| e.host);
    metadata.sort_by_key(|m| m.offset);
    for w in metadata.windows(2) {
        if w[0].offset + w[0].len > w[1].offset {
            return Err(Qcow2Error::Corrupt(format!(
                "tables overlap at {:#x}",
                w[1].offset
            )));
        }
    }
    for i in 0..extents.len() {
        let next_host = extents.get(i + 1).map(|n| n.host);
        let e = &mut extents[i];
        if e.host < cs {
            return Err(Qcow2Error::Corrupt(format!(
                "cluster for guest offset {:#x} points into the header",
                e.guest
            )));
        }
        if let Some(n) = next_host {
            if e.host + e.host_len > n {
                if e.kind == ExtentKind::Compressed && e.host < n {
                    // The sector count is an upper bound; the data ends before
                    // the next cluster's data begins.
                    e.host_len = n - e.host;
                } else {
                    return Err(Qcow2Error::Corrupt(format!(
                        "clusters overlap at file offset {n:#x}"
                    )));
                }
            }
        }
        if let Some(fl) = file_len {
            if e.host >= fl || (e.kind == ExtentKind::Data && e.host + e.host_len > fl) {
                return Err(Qcow2Error::Truncated(format!(
                    "the cluster for guest offset {:#x} lies beyond the end of the file ({fl} bytes)",
                    e.guest
                )));
            }
            if e.kind == ExtentKind::Compressed {
                // The last compressed cluster's sector count may run past EOF.
                e.host_len = e.host_len.min(fl - e.host);
            }
        }
        let (start, end) = (e.host, e.host + e.host_len);
        if let Some(m) = first_overlap(&metadata, start, end) {
            return Err(Qcow2Error::Corrupt(format!(
                "data at file offset {start:#x} overlaps the table at {:#x}",
                m.offset
            )));
        }
    }
    Ok(Layout {
        header,
        extents,
        zero_runs,
        metadata,
    })
}

/// The first (lowest) table of `metadata` that overlaps `[start, end)`.
/// `metadata` is sorted by offset and disjoint, so the tables' ends are sorted
/// too: a binary search finds the first table that ends after `start`, and
/// only that one can be the first to overlap. O(log n) per extent, where a
/// scan of every table made a million-extent image take seconds to map.
fn first_overlap(metadata: &[MetadataRegion], start: u64, end: u64) -> Option<&MetadataRegion> {
    let i = metadata.partition_point(|m| m.offset + m.len <= start);
    metadata.get(i).filter(|m| m.offset < end)
}

/// Turns the sequential byte stream of a qcow2 file into guest writes.
#[derive(Debug)]
pub struct StreamMapper {
    layout: Layout,
    /// Next extent to fill.
    next_extent: usize,
    /// Next metadata region to check.
    next_meta: usize,
    meta_hash: Sha256,
    /// Compressed bytes of the current compressed extent.
    compressed: Vec<u8>,
    cluster: Vec<u8>,
    deflate: flate2::Decompress,
}

/// A piece of guest data produced by [`StreamMapper::feed`].
#[derive(Debug)]
pub struct GuestData<'a> {
    /// Guest offset.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

impl StreamMapper {
    /// Prepares to map the stream of an image with this layout.
    pub fn new(layout: Layout) -> Self {
        let cs = layout.header.cluster_size() as usize;
        Self {
            layout,
            next_extent: 0,
            next_meta: 0,
            meta_hash: Sha256::new(),
            compressed: Vec::new(),
            cluster: vec![0; cs],
            deflate: flate2::Decompress::new(false),
        }
    }

    /// The layout being streamed.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Feeds the stream bytes `data`, which start at file offset `pos`, calling
    /// `emit` for every piece of guest data they complete.
    pub fn feed(
        &mut self,
        pos: u64,
        data: &[u8],
        emit: &mut dyn FnMut(GuestData<'_>) -> Result<(), Qcow2Error>,
    ) -> Result<(), Qcow2Error> {
        let end = pos + data.len() as u64;
        self.check_metadata(pos, data)?;
        while let Some(e) = self.layout.extents.get(self.next_extent).copied() {
            if e.host >= end {
                break;
            }
            let e_end = e.host + e.host_len;
            let from = e.host.max(pos);
            let to = e_end.min(end);
            let bytes = &data[(from - pos) as usize..(to - pos) as usize];
            match e.kind {
                ExtentKind::Data => emit(GuestData {
                    offset: e.guest + (from - e.host),
                    data: bytes,
                })?,
                ExtentKind::Compressed => self.compressed.extend_from_slice(bytes),
            }
            if to < e_end {
                break; // the extent continues in the next chunk
            }
            if e.kind == ExtentKind::Compressed {
                self.decompress(&e)?;
                let cluster = &self.cluster[..e.guest_len as usize];
                emit(GuestData {
                    offset: e.guest,
                    data: cluster,
                })?;
                self.compressed.clear();
            }
            self.next_extent += 1;
        }
        Ok(())
    }

    fn check_metadata(&mut self, pos: u64, data: &[u8]) -> Result<(), Qcow2Error> {
        let end = pos + data.len() as u64;
        while let Some(m) = self.layout.metadata.get(self.next_meta) {
            if m.offset >= end {
                return Ok(());
            }
            let m_end = m.offset + m.len;
            let from = m.offset.max(pos);
            let to = m_end.min(end);
            self.meta_hash
                .update(&data[(from - pos) as usize..(to - pos) as usize]);
            if to < m_end {
                return Ok(());
            }
            let got: [u8; 32] = std::mem::take(&mut self.meta_hash).finalize().into();
            if got != m.sha256 {
                return Err(Qcow2Error::Corrupt(format!(
                    "the table at {:#x} differs between the stream and the range read (the image changed on the server?)",
                    m.offset
                )));
            }
            self.next_meta += 1;
        }
        Ok(())
    }

    fn decompress(&mut self, e: &Extent) -> Result<(), Qcow2Error> {
        inflate_cluster(
            self.layout.header.compression,
            &mut self.deflate,
            &self.compressed,
            &mut self.cluster,
        )
        .map_err(|why| {
            Qcow2Error::Corrupt(format!(
                "compressed cluster for guest offset {:#x}: {why}",
                e.guest
            ))
        })
    }

    /// Ends the stream at `stream_len` bytes. A compressed last cluster whose
    /// sector count ran past the end (possible when the file length was not
    /// known up front) is completed; anything else still missing means the
    /// file was truncated.
    pub fn finish(
        &mut self,
        stream_len: u64,
        emit: &mut dyn FnMut(GuestData<'_>) -> Result<(), Qcow2Error>,
    ) -> Result<(), Qcow2Error> {
        if let Some(e) = self.layout.extents.get(self.next_extent).copied() {
            let last = self.next_extent + 1 == self.layout.extents.len();
            if last && e.kind == ExtentKind::Compressed && e.host < stream_len {
                self.decompress(&e)?;
                emit(GuestData {
                    offset: e.guest,
                    data: &self.cluster[..e.guest_len as usize],
                })?;
                self.next_extent += 1;
            } else {
                return Err(Qcow2Error::Truncated(format!(
                    "the stream ended at {stream_len} bytes, before the cluster at {:#x}",
                    e.host
                )));
            }
        }
        if let Some(m) = self.layout.metadata.get(self.next_meta) {
            return Err(Qcow2Error::Truncated(format!(
                "the stream ended at {stream_len} bytes, before the table at {:#x}",
                m.offset
            )));
        }
        Ok(())
    }
}

/// Decompresses one compressed cluster (`input`, its bytes in the file) into
/// `out`, which must come out full (one cluster). `deflate` is reused between
/// clusters. Shared by [`StreamMapper`] and `ingot-image convert`'s reader.
pub fn inflate_cluster(
    compression: Compression,
    deflate: &mut flate2::Decompress,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let want = out.len();
    match compression {
        Compression::Deflate => {
            deflate.reset(false);
            deflate
                .decompress(input, out, flate2::FlushDecompress::Finish)
                .map_err(|err| err.to_string())?;
            let got = usize::try_from(deflate.total_out()).unwrap_or(usize::MAX);
            if got < want {
                return Err(format!("inflated to {got} of {want} bytes"));
            }
        }
        Compression::Zstd => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut dec = Decoder::new().map_err(|err| err.to_string())?;
            let mut input = InBuffer::around(input);
            let mut output = OutBuffer::around(out);
            while output.pos() < want && input.pos() < input.src.len() {
                let before = (input.pos(), output.pos());
                dec.run(&mut input, &mut output)
                    .map_err(|err| err.to_string())?;
                if (input.pos(), output.pos()) == before {
                    break;
                }
            }
            if output.pos() < want {
                return Err(format!("decompressed to {} of {want} bytes", output.pos()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cluster_bits: u32, size: u64) -> Header {
        let cs = 1u64 << cluster_bits;
        let per_l1 = cs * (cs / 8);
        Header {
            version: 3,
            cluster_bits,
            size,
            l1_size: u32::try_from(size.div_ceil(per_l1)).unwrap(),
            l1_table_offset: cs,
            compression: Compression::Deflate,
            dirty: false,
        }
    }

    fn region(offset: u64, len: u64) -> MetadataRegion {
        MetadataRegion {
            offset,
            len,
            sha256: [0; 32],
        }
    }

    /// The mapping as it was before the binary search: every extent compared
    /// with every table. Kept to check that the fast one decides the same.
    fn finish_layout_quadratic(
        header: Header,
        mut extents: Vec<Extent>,
        mut metadata: Vec<MetadataRegion>,
        file_len: Option<u64>,
    ) -> Result<Layout, Qcow2Error> {
        let cs = header.cluster_size();
        extents.sort_by_key(|e| e.guest);
        let mut zero_runs = Vec::new();
        let mut pos = 0;
        for e in &extents {
            if e.guest > pos {
                zero_runs.push((pos, e.guest - pos));
            }
            pos = e.guest + e.guest_len;
        }
        if header.size > pos {
            zero_runs.push((pos, header.size - pos));
        }
        extents.sort_by_key(|e| e.host);
        metadata.sort_by_key(|m| m.offset);
        for w in metadata.windows(2) {
            if w[0].offset + w[0].len > w[1].offset {
                return Err(Qcow2Error::Corrupt(format!(
                    "tables overlap at {:#x}",
                    w[1].offset
                )));
            }
        }
        for i in 0..extents.len() {
            let next_host = extents.get(i + 1).map(|n| n.host);
            let e = &mut extents[i];
            if e.host < cs {
                return Err(Qcow2Error::Corrupt(format!(
                    "cluster for guest offset {:#x} points into the header",
                    e.guest
                )));
            }
            if let Some(n) = next_host {
                if e.host + e.host_len > n {
                    if e.kind == ExtentKind::Compressed && e.host < n {
                        e.host_len = n - e.host;
                    } else {
                        return Err(Qcow2Error::Corrupt(format!(
                            "clusters overlap at file offset {n:#x}"
                        )));
                    }
                }
            }
            if let Some(fl) = file_len {
                if e.host >= fl || (e.kind == ExtentKind::Data && e.host + e.host_len > fl) {
                    return Err(Qcow2Error::Truncated(format!(
                        "the cluster for guest offset {:#x} lies beyond the end of the file ({fl} bytes)",
                        e.guest
                    )));
                }
                if e.kind == ExtentKind::Compressed {
                    e.host_len = e.host_len.min(fl - e.host);
                }
            }
            let (start, end) = (e.host, e.host + e.host_len);
            if let Some(m) = metadata
                .iter()
                .find(|m| start < m.offset + m.len && m.offset < end)
            {
                return Err(Qcow2Error::Corrupt(format!(
                    "data at file offset {start:#x} overlaps the table at {:#x}",
                    m.offset
                )));
            }
        }
        Ok(Layout {
            header,
            extents,
            zero_runs,
            metadata,
        })
    }

    type Outcome = Result<(Vec<Extent>, Vec<(u64, u64)>, Vec<MetadataRegion>), String>;

    fn outcome(r: Result<Layout, Qcow2Error>) -> Outcome {
        r.map(|l| (l.extents, l.zero_runs, l.metadata))
            .map_err(|e| e.to_string())
    }

    /// A million 512-byte clusters in 16384 L2 tables of 64 entries (the
    /// smallest clusters): the old mapping compared each cluster with every
    /// table, 17 billion comparisons. Not timed by an assert (the machine is
    /// shared), but the time is printed for comparison.
    #[test]
    fn finish_layout_with_a_million_extents() {
        let cs = 512u64;
        let tables = 16_384u64;
        let per_table = cs / 8;
        let clusters = tables * per_table;
        let h = header(9, clusters * 2 * cs);
        let l1_len = u64::from(h.l1_size) * 8;
        let mut metadata = vec![region(cs, l1_len)];
        let mut extents = Vec::with_capacity(clusters as usize);
        let mut host = (cs + l1_len).next_multiple_of(cs);
        for t in 0..tables {
            metadata.push(region(host, cs));
            host += cs;
            for j in 0..per_table {
                let k = t * per_table + j;
                // Every other guest cluster, in reverse: nothing merges.
                extents.push(Extent {
                    host,
                    host_len: cs,
                    guest: (clusters - 1 - k) * 2 * cs,
                    guest_len: cs,
                    kind: ExtentKind::Data,
                });
                host += cs;
            }
        }
        let file_len = host;
        let started = std::time::Instant::now();
        let layout = finish_layout(h, extents, metadata, Some(file_len)).unwrap();
        let took = started.elapsed();
        println!(
            "finish_layout: {} extents, {} tables in {took:?}",
            layout.extents.len(),
            layout.metadata.len()
        );
        assert_eq!(layout.extents.len() as u64, clusters);
        assert_eq!(layout.metadata.len() as u64, tables + 1);
        assert_eq!(layout.zero_runs.len() as u64, clusters);
        assert!(layout.extents.windows(2).all(|w| w[0].host < w[1].host));

        // One cluster moved onto a table in the middle is still caught.
        let mut extents = layout.extents.clone();
        let victim = layout.metadata[tables as usize / 2].offset;
        extents[clusters as usize / 2].host = victim;
        extents[clusters as usize / 2].host_len = cs;
        let err = finish_layout(
            layout.header.clone(),
            extents,
            layout.metadata.clone(),
            Some(file_len),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("overlaps the table at {victim:#x}")),
            "{err}"
        );
    }

    /// Random small layouts, with overlaps of every kind: the binary search
    /// reaches the same layout or the same first error as the old scan.
    #[test]
    fn finish_layout_decides_as_the_quadratic_scan() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let cs = 512u64;
        let (mut ok, mut errors) = (0, 0);
        for _ in 0..20_000 {
            let h = header(9, 64 * cs);
            let mut metadata = Vec::new();
            for _ in 0..rnd(6) {
                metadata.push(region(rnd(80) * cs + rnd(2) * 256, cs * (1 + rnd(2))));
            }
            let mut extents = Vec::new();
            for g in 0..rnd(12) {
                let compressed = rnd(3) == 0;
                extents.push(Extent {
                    host: rnd(80) * cs + if compressed { rnd(512) } else { 0 },
                    host_len: if compressed { 1 + rnd(2 * cs) } else { cs },
                    guest: g * 5 * cs,
                    guest_len: cs,
                    kind: if compressed {
                        ExtentKind::Compressed
                    } else {
                        ExtentKind::Data
                    },
                });
            }
            let file_len = (rnd(2) == 0).then(|| rnd(90) * cs);
            let fast = outcome(finish_layout(
                h.clone(),
                extents.clone(),
                metadata.clone(),
                file_len,
            ));
            let slow = outcome(finish_layout_quadratic(h, extents, metadata, file_len));
            assert_eq!(fast, slow);
            if fast.is_ok() {
                ok += 1;
            } else {
                errors += 1;
            }
        }
        // Both outcomes were exercised.
        assert!(ok > 100 && errors > 100, "{ok} ok, {errors} errors");
    }

    fn raw_header(l1_table_offset: u64, l1_size: u32, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&size.to_be_bytes());
        h[36..40].copy_from_slice(&l1_size.to_be_bytes());
        h[40..48].copy_from_slice(&l1_table_offset.to_be_bytes());
        h[100..104].copy_from_slice(&104u32.to_be_bytes());
        h
    }

    /// An L1 table offset whose end does not fit a file offset is refused
    /// with the field and its value; before, `offset + len` overflowed later
    /// (a panic in debug builds, a wrapped range check in release builds).
    #[test]
    fn l1_table_beyond_any_file_is_refused() {
        let ok = raw_header(0x30000, 1, 1 << 28);
        parse_header(&ok).unwrap();
        // The last one's table (8193 entries) ends just past 2^63 - 1.
        for (offset, l1_size) in [
            (!0xffff_u64, 1),
            (1u64 << 63, 1),
            ((1u64 << 63) - 0x10000, 8193),
        ] {
            let err = parse_header(&raw_header(offset, l1_size, 1 << 28)).unwrap_err();
            assert!(matches!(err, Qcow2Error::BadHeader(_)), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("L1 table offset {offset:#x}")),
                "{msg}"
            );
        }
    }
}

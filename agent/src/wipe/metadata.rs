//! Metadata mode (Ironic's `erase_devices_metadata`, `wipefs -a` and more):
//! read the partition tables, probe the disk and every partition for
//! signatures, zero what was found plus every table sector and the first and
//! last MiB, then check by reading the tables and probing again.

use ingot_proto::wipe::{FoundSignature, PartitionInfo, Verification, VerifyMode};

use super::WipeError;
use super::device::{Device, ReadAt};
use super::partitions::{self, Layout};
use super::signatures::{self, Hit};

/// Zeroed at both ends of the disk whatever was found.
pub const EDGE: u64 = 1 << 20;

/// What metadata mode found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataOutcome {
    /// Partitions read from the tables before the wipe.
    pub partitions: Vec<PartitionInfo>,
    /// Tables and signatures found and erased.
    pub signatures: Vec<FoundSignature>,
    /// Bytes zeroed.
    pub bytes: u64,
    /// The re-probe (None with `--verify none`).
    pub verification: Option<Verification>,
}

/// Containers to probe: the disk, then each partition.
fn containers(size: u64, layout: &Layout) -> Vec<(u64, u64, bool)> {
    let mut c = vec![(0, size, true)];
    c.extend(layout.partitions.iter().map(|p| (p.offset, p.size, false)));
    c
}

fn probe_all(dev: &Device, containers: &[(u64, u64, bool)]) -> Result<Vec<Hit>, WipeError> {
    let mut hits = Vec::new();
    for &(off, size, whole) in containers {
        hits.extend(
            signatures::probe(dev, off, size, whole)
                .map_err(WipeError::read("probe signatures"))?,
        );
    }
    Ok(hits)
}

/// Rounds ranges out to `align`, clamps them to `size`, sorts and merges them.
pub fn merge_ranges(mut ranges: Vec<(u64, u64)>, align: u64, size: u64) -> Vec<(u64, u64)> {
    for r in &mut ranges {
        let start = r.0 - r.0 % align;
        let end =
            r.0.saturating_add(r.1)
                .div_ceil(align)
                .saturating_mul(align)
                .min(size);
        *r = (start, end.saturating_sub(start));
    }
    ranges.retain(|r| r.1 > 0);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (off, len) in ranges {
        match out.last_mut() {
            Some(last) if off <= last.0 + last.1 => {
                last.1 = last.1.max(off + len - last.0);
            }
            _ => out.push((off, len)),
        }
    }
    out
}

/// Runs metadata mode on an open device.
pub fn wipe_metadata(dev: &mut Device, verify: VerifyMode) -> Result<MetadataOutcome, WipeError> {
    let size = dev.size();
    let layout = partitions::read_layout(dev, dev.block_size())
        .map_err(WipeError::read("read partition tables"))?;
    let conts = containers(size, &layout);
    let hits = probe_all(dev, &conts)?;
    let mut signatures: Vec<FoundSignature> = layout
        .tables
        .iter()
        .map(|t| FoundSignature {
            name: t.name.to_string(),
            offset: t.magic_offset,
            container_offset: 0,
        })
        .collect();
    signatures.extend(hits.iter().map(|h| FoundSignature {
        name: h.name.to_string(),
        offset: h.magic_offset,
        container_offset: h.container_offset,
    }));
    for s in &signatures {
        tracing::info!(device = %dev.path().display(), signature = %s.name, offset = s.offset, "erasing signature");
    }
    let mut ranges: Vec<(u64, u64)> = hits.iter().flat_map(|h| h.erase.iter().copied()).collect();
    ranges.extend(layout.regions.iter().copied());
    ranges.push((0, EDGE));
    ranges.push((size.saturating_sub(EDGE), EDGE));
    let align = dev.block_size().max(4096);
    let ranges = merge_ranges(ranges, align, size);
    let mut bytes = 0;
    for &(off, len) in &ranges {
        dev.zero(off, len).map_err(WipeError::target("zero"))?;
        bytes += len;
    }
    dev.sync().map_err(WipeError::target("fsync"))?;
    let partitions = layout
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            table: p.table.to_string(),
            number: p.number,
            offset: p.offset,
            size: p.size,
        })
        .collect();
    let verification = match verify {
        VerifyMode::None => None,
        mode => Some(check(dev, &conts, mode)?),
    };
    Ok(MetadataOutcome {
        partitions,
        signatures,
        bytes,
        verification,
    })
}

/// Re-reads the tables, re-probes every container and checks that the first
/// and last MiB read as zeros.
fn check(
    dev: &Device,
    conts: &[(u64, u64, bool)],
    mode: VerifyMode,
) -> Result<Verification, WipeError> {
    let size = dev.size();
    let layout = partitions::read_layout(dev, dev.block_size())
        .map_err(WipeError::read("re-read partition tables"))?;
    let mut left: Vec<String> = layout
        .tables
        .iter()
        .map(|t| format!("{} at {}", t.name, t.magic_offset))
        .collect();
    left.extend(
        probe_all(dev, conts)?
            .iter()
            .map(|h| format!("{} at {}", h.name, h.magic_offset)),
    );
    let mut nonzero = 0u64;
    let mut bytes_read = 0u64;
    let edge = EDGE.min(size);
    for off in [0, size - edge] {
        let data = dev
            .read_at(off, usize::try_from(edge).unwrap_or(0))
            .map_err(WipeError::read("read back"))?;
        bytes_read += data.len() as u64;
        nonzero += data.iter().filter(|&&b| b != 0).count() as u64;
    }
    let passed = left.is_empty() && nonzero == 0;
    let detail = (!passed).then(|| {
        let mut d = String::new();
        if !left.is_empty() {
            d.push_str(&format!("still found: {}", left.join(", ")));
        }
        if nonzero > 0 {
            if !d.is_empty() {
                d.push_str("; ");
            }
            d.push_str(&format!("{nonzero} non-zero bytes in the first/last MiB"));
        }
        d
    });
    Ok(Verification {
        mode,
        passed,
        samples: 0,
        samples_survived: 0,
        expect_zero: false,
        bytes_read,
        nonzero_bytes: nonzero,
        signatures_left: left,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_aligned_merged_and_clamped() {
        let r = merge_ranges(
            vec![(0x438, 2), (100, 10), (8192, 10), (12000, 100_000)],
            4096,
            20_000,
        );
        assert_eq!(r, vec![(0, 4096), (8192, 20_000 - 8192)]);
        let r = merge_ranges(vec![(0, 0), (30_000, 10)], 4096, 20_000);
        assert!(r.is_empty());
    }
}

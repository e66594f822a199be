//! Every format reader, end to end through the write pipeline into a file,
//! with fixtures made by `fixtures/gen.sh` (qemu-img, qemu-io, zstd, gzip, xz).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;

use std::path::{Path, PathBuf};

use common::fx;

use ingot_image_tools::checksum::{Algorithm, Checksum, Hasher};
use ingot_image_tools::decode::DecodeError;
use ingot_image_tools::progress::Progress;
use ingot_image_tools::qcow2::Qcow2Error;
use ingot_image_tools::write::{TargetState, WriteError, WriteFailure};
use ingot_image_tools::{WriteOptions, write_image};

fn sha256_of(path: &str) -> Checksum {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(&std::fs::read(path).unwrap());
    Checksum::new(Algorithm::Sha256, &h.finish_hex()).unwrap()
}

fn write(
    source: &str,
    target: &Path,
    tweak: impl FnOnce(&mut WriteOptions),
) -> Result<ingot_proto::image::WriteSummary, WriteFailure> {
    let mut opts = WriteOptions::new(source, target);
    // Small buffers so that clusters and frames straddle chunk boundaries.
    opts.buffer_size = 256 << 10;
    opts.buffers = 3;
    tweak(&mut opts);
    write_image(&opts, &Progress::new())
}

fn assert_same(target: &Path, expected: &str) {
    let got = std::fs::read(target).unwrap();
    let want = std::fs::read(fx(expected)).unwrap();
    assert_eq!(got.len(), want.len(), "length of {}", target.display());
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("{} differs from {expected} at byte {i}", target.display());
    }
}

fn check_format(name: &str, expected_format: &str, expected_raw: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let src = fx(name);
    let sum = write(&src, &target, |o| o.checksum = Some(sha256_of(&src)))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(sum.format, expected_format);
    assert_eq!(
        sum.image_bytes,
        std::fs::metadata(fx(expected_raw)).unwrap().len()
    );
    assert_eq!(
        sum.bytes_written + sum.zero_bytes,
        sum.image_bytes,
        "{name}: every byte written or zeroed"
    );
    assert!(sum.zero_bytes > 0, "{name}: zero runs were detected");
    assert!(sum.checksum.unwrap().verified);
    assert_same(&target, expected_raw);
}

#[test]
fn raw() {
    check_format("disk.raw", "raw", "disk.raw");
}

#[test]
fn zstd() {
    check_format("disk.raw.zst", "zstd", "disk.raw");
}

#[test]
fn zstd_multiple_frames() {
    check_format("multi.raw.zst", "zstd", "disk.raw");
}

#[test]
fn gzip() {
    check_format("disk.raw.gz", "gzip", "disk.raw");
}

#[test]
fn gzip_multiple_members() {
    check_format("multi.raw.gz", "gzip", "disk.raw");
}

#[test]
fn xz() {
    check_format("disk.raw.xz", "xz", "disk.raw");
}

#[test]
fn qcow2_v3() {
    check_format("disk.qcow2", "qcow2", "disk.raw");
}

#[test]
fn qcow2_v2() {
    check_format("disk-v2.qcow2", "qcow2", "disk.raw");
}

#[test]
fn qcow2_zlib_clusters() {
    check_format("disk-zlib.qcow2", "qcow2", "disk.raw");
}

#[test]
fn qcow2_zstd_clusters() {
    check_format("disk-zstd.qcow2", "qcow2", "disk.raw");
}

#[test]
fn qcow2_small_clusters() {
    check_format("disk-4k.qcow2", "qcow2", "disk.raw");
}

#[test]
fn qcow2_large_clusters() {
    check_format("disk-2m.qcow2", "qcow2", "disk.raw");
}

#[test]
fn qcow2_clusters_out_of_guest_order() {
    check_format("reverse.qcow2", "qcow2", "reverse.raw");
}

/// A target that holds an old "bootable" image: random first and last MiB.
fn old_disk(dir: &Path, len: usize) -> PathBuf {
    let p = dir.join("old.img");
    let mut v = vec![0x5au8; len];
    v[510] = 0x55;
    v[511] = 0xaa;
    std::fs::write(&p, v).unwrap();
    p
}

fn assert_cleared(target: &Path) {
    let got = std::fs::read(target).unwrap();
    let mib = 1 << 20;
    assert!(got[..mib].iter().all(|&b| b == 0), "first MiB not zeroed");
    assert!(
        got[got.len() - mib..].iter().all(|&b| b == 0),
        "last MiB not zeroed"
    );
}

fn assert_untouched(target: &Path, len: usize) {
    let got = std::fs::read(target).unwrap();
    assert_eq!(got.len(), len);
    assert_eq!(&got[510..512], &[0x55, 0xaa]);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, &b)| b == 0x5a || i == 510 || i == 511)
    );
}

#[test]
fn wrong_checksum_leaves_target_unbootable() {
    for name in ["disk.raw", "disk.raw.zst", "disk.qcow2"] {
        let dir = tempfile::tempdir().unwrap();
        let target = old_disk(dir.path(), 32 << 20);
        let wrong = Checksum::new(Algorithm::Sha256, &"0".repeat(64)).unwrap();
        let err = write(&fx(name), &target, |o| o.checksum = Some(wrong)).unwrap_err();
        let actual = sha256_of(&fx(name)).hex;
        match &err.error {
            WriteError::ChecksumMismatch {
                expected,
                actual: got,
                ..
            } => {
                assert_eq!(expected, &"0".repeat(64));
                assert_eq!(got, &actual);
            }
            other => panic!("{name}: expected a checksum mismatch, got {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&actual) && msg.contains("unbootable"), "{msg}");
        assert_eq!(err.target, TargetState::Cleared);
        assert_cleared(&target);
    }
}

#[test]
fn sha512_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let src = fx("disk.raw.zst");
    let mut h = Hasher::new(Algorithm::Sha512);
    h.update(&std::fs::read(&src).unwrap());
    let sum = Checksum::new(Algorithm::Sha512, &h.finish_hex()).unwrap();
    let s = write(&src, &target, |o| o.checksum = Some(sum)).unwrap();
    assert_eq!(s.checksum.unwrap().algorithm, "sha512");
    assert_same(&target, "disk.raw");
}

#[test]
fn md5_needs_explicit_permission() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let src = fx("disk.raw.gz");
    let mut h = Hasher::new(Algorithm::Md5);
    h.update(&std::fs::read(&src).unwrap());
    let md5 = Checksum::new(Algorithm::Md5, &h.finish_hex()).unwrap();
    let err = write(&src, &target, |o| o.checksum = Some(md5.clone())).unwrap_err();
    assert!(err.to_string().contains("md5"), "{err}");
    assert!(!target.exists(), "refused before the target was created");
    write(&src, &target, |o| {
        o.checksum = Some(md5);
        o.allow_md5 = true;
    })
    .unwrap();
    assert_same(&target, "disk.raw");
}

#[test]
fn truncated_streams_fail_and_clear_the_target() {
    for name in ["truncated.raw.zst", "truncated.raw.gz", "truncated.raw.xz"] {
        let dir = tempfile::tempdir().unwrap();
        let target = old_disk(dir.path(), 32 << 20);
        let err = write(&fx(name), &target, |_| {}).unwrap_err();
        assert!(
            matches!(err.error, WriteError::Decode(DecodeError::Corrupt { .. })),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
        assert_eq!(err.target, TargetState::Cleared, "{name}");
        assert_cleared(&target);
    }
}

#[test]
fn truncated_qcow2_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_disk(dir.path(), 32 << 20);
    let err = write(&fx("truncated.qcow2"), &target, |_| {}).unwrap_err();
    assert!(
        matches!(err.error, WriteError::Qcow2(Qcow2Error::Truncated(_))),
        "{err}"
    );
    assert_eq!(err.target, TargetState::Untouched);
    assert_untouched(&target, 32 << 20);
}

#[test]
fn corrupt_qcow2_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_disk(dir.path(), 32 << 20);
    let err = write(&fx("corrupt.qcow2"), &target, |_| {}).unwrap_err();
    assert!(
        matches!(err.error, WriteError::Qcow2(Qcow2Error::BadHeader(_))),
        "{err}"
    );
    assert!(err.to_string().contains("cluster_bits"), "{err}");
    assert_untouched(&target, 32 << 20);
}

#[test]
fn qcow2_with_backing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_disk(dir.path(), 32 << 20);
    let err = write(&fx("overlay.qcow2"), &target, |_| {}).unwrap_err();
    assert!(
        matches!(
            err.error,
            WriteError::Qcow2(Qcow2Error::BackingFile(Some(_)))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("disk.qcow2"), "{err}");
    assert_untouched(&target, 32 << 20);
}

#[test]
fn image_larger_than_target_is_refused_before_writing() {
    for name in ["disk.raw", "disk.raw.zst", "disk.qcow2", "disk.raw.xz"] {
        let dir = tempfile::tempdir().unwrap();
        let target = old_disk(dir.path(), 8 << 20);
        let err = write(&fx(name), &target, |_| {}).unwrap_err();
        assert!(
            matches!(err.error, WriteError::TooLarge { .. }),
            "{name}: {err}"
        );
        // Sizes known up front (raw, zstd with content size, qcow2) are refused
        // before anything is written; xz's size shows only while decoding, and
        // then the partial write is cleared.
        if name == "disk.raw.xz" {
            assert_eq!(err.target, TargetState::Cleared);
        } else {
            assert_eq!(err.target, TargetState::Untouched, "{name}");
            assert_untouched(&target, 8 << 20);
        }
    }
}

#[test]
fn forced_format_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let err = write(&fx("disk.raw.zst"), &target, |o| {
        o.format = "qcow2".parse().unwrap()
    })
    .unwrap_err();
    assert!(err.to_string().contains("is zstd"), "{err}");
    // Forcing raw writes the compressed bytes as they are.
    let s = write(&fx("disk.raw.zst"), &target, |o| {
        o.format = "raw".parse().unwrap()
    })
    .unwrap();
    assert_eq!(s.format, "raw");
    assert_same(&target, "disk.raw.zst");
}

#[test]
fn tiny_and_empty_images() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tiny.raw");
    std::fs::write(&src, b"hello, disk").unwrap();
    let target = dir.path().join("out.img");
    let s = write(src.to_str().unwrap(), &target, |_| {}).unwrap();
    assert_eq!(s.image_bytes, 11);
    assert_eq!(std::fs::read(&target).unwrap(), b"hello, disk");

    let empty = dir.path().join("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    let err = write(
        empty.to_str().unwrap(),
        &dir.path().join("out2.img"),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn target_is_zeroed_skips_zero_runs() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    let s = write(&fx("disk.qcow2"), &target, |o| o.target_is_zeroed = true).unwrap();
    assert!(s.zeros_skipped);
    assert_same(&target, "disk.raw");
}

#[test]
fn missing_source_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_disk(dir.path(), 4 << 20);
    let err = write("/nonexistent/image.raw", &target, |_| {}).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/image.raw"), "{err}");
    assert_untouched(&target, 4 << 20);
}

/// The qcow2 mapper on its own, with the file length unknown up front (as with
/// a chunked HTTP answer), fed in odd-sized pieces.
#[test]
fn qcow2_mapper_without_known_length() {
    use ingot_image_tools::qcow2::{StreamMapper, parse_header, read_layout};
    use ingot_image_tools::source::{FileSource, Source};
    for (name, raw) in [
        ("disk-zlib.qcow2", "disk.raw"),
        ("disk-zstd.qcow2", "disk.raw"),
        ("reverse.qcow2", "reverse.raw"),
    ] {
        let file = std::fs::read(fx(name)).unwrap();
        let src = FileSource::open(&fx(name)).unwrap();
        let mut ranges = src.range_reader().unwrap();
        let header = parse_header(&file[..512]).unwrap();
        let layout = read_layout(header, ranges.as_mut(), None).unwrap();
        let mut disk = vec![0u8; layout.header.size as usize];
        let mut mapper = StreamMapper::new(layout);
        let mut put = |g: ingot_image_tools::qcow2::GuestData<'_>| {
            disk[g.offset as usize..g.offset as usize + g.data.len()].copy_from_slice(g.data);
            Ok(())
        };
        let mut pos = 0;
        for piece in file.chunks(77_777) {
            mapper.feed(pos, piece, &mut put).unwrap();
            pos += piece.len() as u64;
        }
        mapper.finish(pos, &mut put).unwrap();
        assert!(disk == std::fs::read(fx(raw)).unwrap(), "{name}");
    }
}

/// A table that changed between the range read and the stream is caught.
#[test]
fn qcow2_table_mismatch_is_detected() {
    use ingot_image_tools::qcow2::{StreamMapper, parse_header, read_layout};
    use ingot_image_tools::source::{FileSource, Source};
    let mut file = std::fs::read(fx("disk.qcow2")).unwrap();
    let src = FileSource::open(&fx("disk.qcow2")).unwrap();
    let mut ranges = src.range_reader().unwrap();
    let header = parse_header(&file[..512]).unwrap();
    let layout = read_layout(header, ranges.as_mut(), Some(file.len() as u64)).unwrap();
    // Flip a byte of the first L2 table in the "stream" copy.
    let l2 = layout
        .metadata
        .iter()
        .find(|m| m.offset != layout.header.l1_table_offset)
        .unwrap()
        .offset;
    file[l2 as usize + 3] ^= 0xff;
    let mut mapper = StreamMapper::new(layout);
    let err = mapper.feed(0, &file, &mut |_| Ok(())).unwrap_err();
    assert!(
        err.to_string()
            .contains("differs between the stream and the range read"),
        "{err}"
    );
}

/// An xz stream of `data` (preset 0: a 256 KiB dictionary) whose block header
/// then declares a `dict`-byte LZMA2 dictionary instead (props byte and
/// header CRC32 rewritten). The data decodes the same with any larger
/// dictionary, but the decoder must allocate the declared one.
fn xz_declaring_dictionary(data: &[u8], dict: u64) -> Vec<u8> {
    use std::io::Read;
    let mut xz = Vec::new();
    liblzma::bufread::XzEncoder::new(data, 0)
        .read_to_end(&mut xz)
        .unwrap();
    // LZMA2 props: dict = (2 | (p & 1)) << (p / 2 + 11).
    let props = (0u8..40)
        .find(|&p| (2u64 | u64::from(p & 1)) << (p / 2 + 11) == dict)
        .expect("a dictionary size LZMA2 can encode");
    // The block header follows the 12-byte stream header: its size byte,
    // flags, optional sizes (VLIs), then the filter flags.
    let start = 12;
    let header_len = (usize::from(xz[start]) + 1) * 4;
    let flags = xz[start + 1];
    assert_eq!(flags & 0x03, 0, "one filter");
    let mut i = start + 2;
    for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
        if present {
            while xz[i] & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    assert_eq!(&xz[i..i + 2], &[0x21, 0x01], "LZMA2 with one props byte");
    xz[i + 2] = props;
    let crc_at = start + header_len - 4;
    let mut crc = flate2::Crc::new();
    crc.update(&xz[start..crc_at]);
    xz[crc_at..crc_at + 4].copy_from_slice(&crc.sum().to_le_bytes());
    xz
}

fn xz_write(source: &[u8], target: &Path, limit: Option<u64>) -> Result<(), WriteFailure> {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("image.xz");
    std::fs::write(&src, source).unwrap();
    write(src.to_str().unwrap(), target, |o| o.xz_memlimit = limit).map(|_| ())
}

/// An xz header that declares a 1.5 GiB dictionary is refused against a
/// 64 MiB limit before anything is allocated or written, with both sizes in
/// the error. Before the limit the decoder allocated what the header asked
/// (1.08 GB resident for a 4 GiB dictionary).
#[test]
fn xz_dictionary_beyond_the_memory_limit_is_refused() {
    let data = b"a tiny image with a huge declared dictionary\n".repeat(100);
    let xz = xz_declaring_dictionary(&data, 3 << 29);
    let dir = tempfile::tempdir().unwrap();
    // The crafted stream itself is valid: without a limit in the way it decodes.
    let target = dir.path().join("ok.img");
    xz_write(&xz, &target, Some(2 << 30)).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), data);

    let target = old_disk(dir.path(), 8 << 20);
    let err = xz_write(&xz, &target, Some(64 << 20)).unwrap_err();
    match err.error {
        WriteError::Decode(DecodeError::XzMemLimit { needed, limit }) => {
            assert!(needed > 3 << 29, "needed {needed}");
            assert_eq!(limit, 64 << 20);
        }
        ref other => panic!("expected XzMemLimit, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("xz stream needs 1537 MiB of memory for its dictionary; the limit is 64 MiB"),
        "{msg}"
    );
    assert_eq!(err.target, TargetState::Untouched, "{msg}");
    assert_untouched(&target, 8 << 20);
}

/// The second stream of a concatenated xz file declares the huge dictionary,
/// after the first stream's data was written: the error path clears the
/// target, so the part written never boots.
#[test]
fn xz_dictionary_beyond_the_limit_in_a_later_stream_clears_the_target() {
    let first: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8 | 1).collect();
    let mut xz = Vec::new();
    {
        use std::io::Read;
        liblzma::bufread::XzEncoder::new(&first[..], 0)
            .read_to_end(&mut xz)
            .unwrap();
    }
    xz.extend(xz_declaring_dictionary(b"second stream", 3 << 29));
    let dir = tempfile::tempdir().unwrap();
    let target = old_disk(dir.path(), 32 << 20);
    let err = xz_write(&xz, &target, Some(64 << 20)).unwrap_err();
    assert!(
        matches!(
            err.error,
            WriteError::Decode(DecodeError::XzMemLimit { .. })
        ),
        "{err}"
    );
    assert_eq!(err.target, TargetState::Cleared, "{err}");
    assert!(err.to_string().contains("unbootable"), "{err}");
    assert_cleared(&target);
}

/// Ordinary images decode under the smallest default limit (`xz -6` needs
/// 9 MiB), and the default is at least that floor.
#[test]
fn xz_fixture_decodes_under_the_default_floor() {
    use ingot_image_tools::write::{XZ_MEMLIMIT_FLOOR, default_xz_memlimit};
    assert!(default_xz_memlimit() >= XZ_MEMLIMIT_FLOOR);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.img");
    write(&fx("disk.raw.xz"), &target, |o| {
        o.xz_memlimit = Some(XZ_MEMLIMIT_FLOOR)
    })
    .unwrap();
    assert_same(&target, "disk.raw");
    // 9 MiB is needed: a 4 MiB limit refuses it, naming both.
    let err = write(&fx("disk.raw.xz"), &target, |o| {
        o.xz_memlimit = Some(4 << 20)
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("xz stream needs 9 MiB of memory for its dictionary; the limit is 4 MiB"),
        "{err}"
    );
}

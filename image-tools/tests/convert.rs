//! `ingot-image convert` and `ingot-image checksum`, checked against the real
//! tools: qemu-img (`check`, `compare`, `convert`), zstd, gzip, xz, and
//! coreutils' sha256sum, sha512sum and md5sum. Fixtures: `fixtures/gen.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;
// The agent's fault-injecting HTTP test server, shared rather than copied.
#[path = "../../agent/tests/common/http.rs"]
mod http;

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::fx;
use ingot_image_tools::checksum::{Algorithm, digest_source};
use ingot_image_tools::convert::{self, ConvertError, ConvertOptions, ConvertReport};
use ingot_image_tools::format::{Format, FormatChoice};
use ingot_image_tools::progress::Progress;
use ingot_image_tools::source::SourceOptions;
use ingot_image_tools::{WriteOptions, write_image};

/// The qcow2 fixtures qemu-img made, and the raw image each holds.
const QEMU_QCOW2: &[(&str, &str)] = &[
    ("disk.qcow2", "disk.raw"),
    ("disk-v2.qcow2", "disk.raw"),
    ("disk-zlib.qcow2", "disk.raw"),
    ("disk-zstd.qcow2", "disk.raw"),
    ("disk-4k.qcow2", "disk.raw"),
    ("disk-2m.qcow2", "disk.raw"),
    ("reverse.qcow2", "reverse.raw"),
];

fn convert_to(
    source: &str,
    output: &Path,
    format: Format,
    tweak: impl FnOnce(&mut ConvertOptions),
) -> Result<ConvertReport, ConvertError> {
    let mut opts = ConvertOptions::new(source, output, format);
    tweak(&mut opts);
    convert::convert(&opts)
}

fn convert_ok(source: &str, output: &Path, format: Format) -> ConvertReport {
    convert_to(source, output, format, |_| {})
        .unwrap_or_else(|e| panic!("{source} -> {format}: {e}"))
}

fn assert_same_file(got: &Path, want: &Path) {
    let a = std::fs::read(got).unwrap();
    let b = std::fs::read(want).unwrap();
    assert_eq!(a.len(), b.len(), "length of {}", got.display());
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!(
            "{} differs from {} at byte {i}",
            got.display(),
            want.display()
        );
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img check` finds nothing wrong (no corruption, no leaks).
fn qemu_check(image: &Path) {
    let out = run(Command::new("qemu-img").arg("check").arg(image));
    assert!(out.contains("No errors were found"), "{out}");
}

/// `qemu-img compare` says the qcow2 image holds the raw image.
fn qemu_compare(raw: &Path, qcow2: &Path) {
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(raw)
        .arg(qcow2));
    assert!(out.contains("Images are identical"), "{out}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ingot-image"))
}

#[test]
fn raw_to_qcow2_and_back_with_every_cluster_size() {
    let dir = tempfile::tempdir().unwrap();
    let raw = PathBuf::from(fx("disk.raw"));
    // 512 bytes: 64-entry L2 tables and 256-cluster refcount blocks, so
    // tables and refcount blocks are many.
    for bits in [9, 12, 16, 21] {
        let qcow2 = dir.path().join(format!("disk-{bits}.qcow2"));
        let r = convert_to(&fx("disk.raw"), &qcow2, Format::Qcow2, |o| {
            o.qcow2_cluster_bits = bits;
        })
        .unwrap();
        assert_eq!(r.input_format, "raw");
        assert_eq!(r.output_format, "qcow2");
        assert_eq!(r.image_bytes, std::fs::metadata(&raw).unwrap().len());
        assert_eq!(r.output_bytes, std::fs::metadata(&qcow2).unwrap().len());
        qemu_check(&qcow2);
        qemu_compare(&raw, &qcow2);
        let info = run(Command::new("qemu-img").arg("info").arg(&qcow2));
        assert!(
            info.contains(&format!("cluster_size: {}", 1u64 << bits)),
            "{info}"
        );
        let back = dir.path().join(format!("back-{bits}.raw"));
        let r = convert_ok(&qcow2.display().to_string(), &back, Format::Raw);
        assert_eq!(r.input_format, "qcow2");
        assert_same_file(&back, &raw);
    }
}

#[test]
fn qcow2_output_is_as_sparse_as_qemu_img_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.qcow2");
    convert_ok(&fx("disk.raw"), &ours, Format::Qcow2);
    // qemu-img allocates the same clusters: every non-zero one, no zero one.
    let theirs = std::fs::metadata(fx("disk.qcow2")).unwrap().len();
    assert_eq!(std::fs::metadata(&ours).unwrap().len(), theirs);
    let map = run(Command::new("qemu-img")
        .args(["map", "--output=json"])
        .arg(&ours));
    let theirs_map = run(Command::new("qemu-img")
        .args(["map", "--output=json"])
        .arg(fx("disk.qcow2")));
    let data = |m: &str| m.matches("\"data\": true").count();
    assert_eq!(data(&map), data(&theirs_map), "{map}");
}

#[test]
fn compressed_outputs_round_trip_and_decode_with_the_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let raw = PathBuf::from(fx("disk.raw"));
    for (format, tool) in [
        (Format::Zstd, "zstd"),
        (Format::Gzip, "gzip"),
        (Format::Xz, "xz"),
    ] {
        let packed = dir.path().join(format!("disk.{format}"));
        let r = convert_ok(&fx("disk.raw"), &packed, format);
        assert_eq!(r.output_format, format.name());
        assert!(r.output_bytes < r.image_bytes / 2, "{r:?}");
        // The real tool decodes it.
        let decoded = dir.path().join(format!("by-{tool}.raw"));
        let out = Command::new(tool)
            .arg("-dc")
            .arg(&packed)
            .stdout(std::fs::File::create(&decoded).unwrap())
            .status()
            .unwrap();
        assert!(out.success(), "{tool} -dc {}", packed.display());
        assert_same_file(&decoded, &raw);
        // And so does convert.
        let back = dir.path().join(format!("back-{format}.raw"));
        let r = convert_ok(&packed.display().to_string(), &back, Format::Raw);
        assert_eq!(r.input_format, format.name());
        assert_same_file(&back, &raw);
    }
}

#[test]
fn qcow2_from_qemu_img_to_raw_equals_qemu_img_convert() {
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in QEMU_QCOW2 {
        let ours = dir.path().join(format!("{name}.ours.raw"));
        let theirs = dir.path().join(format!("{name}.qemu.raw"));
        convert_ok(&fx(name), &ours, Format::Raw);
        run(Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(fx(name))
            .arg(&theirs));
        assert_same_file(&ours, &theirs);
    }
}

#[test]
fn every_input_format_to_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    // Streams whose size is known only at their end, and qcow2 (also with
    // compressed clusters and clusters out of guest order).
    let inputs = [
        "disk.raw.zst",
        "multi.raw.zst",
        "disk.raw.gz",
        "multi.raw.gz",
        "disk.raw.xz",
    ]
    .iter()
    .map(|n| (*n, "disk.raw"))
    .chain(QEMU_QCOW2.iter().copied());
    for (name, raw) in inputs {
        let out = dir.path().join(format!("{name}.qcow2"));
        convert_ok(&fx(name), &out, Format::Qcow2);
        qemu_check(&out);
        qemu_compare(Path::new(&fx(raw)), &out);
    }
}

#[test]
fn raw_output_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("disk.raw");
    convert_ok(&fx("disk.qcow2"), &out, Format::Raw);
    let meta = std::fs::metadata(&out).unwrap();
    // disk.raw holds about 5.3 MiB of data in 20 MiB.
    assert!(meta.blocks() * 512 < 8 << 20, "{} blocks", meta.blocks());
    assert_same_file(&out, Path::new(&fx("disk.raw")));
}

#[test]
fn the_agent_writes_our_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = dir.path().join("ours.qcow2");
    convert_to(&fx("disk.raw.xz"), &qcow2, Format::Qcow2, |o| {
        o.qcow2_cluster_bits = 12;
    })
    .unwrap();
    let target = dir.path().join("target.img");
    let summary = write_image(
        &WriteOptions::new(qcow2.display().to_string(), &target),
        &Progress::new(),
    )
    .unwrap();
    assert_eq!(summary.format, "qcow2");
    assert_same_file(&target, Path::new(&fx("disk.raw")));
}

#[test]
fn a_one_tib_sparse_disk_converts_without_reading_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    let size = 1u64 << 40;
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(size).unwrap();
    for (i, at) in [0, 513 << 20, 700 << 30, size - 512]
        .into_iter()
        .enumerate()
    {
        f.write_all_at(&[0xa0 + i as u8; 512], at).unwrap();
    }
    drop(f);
    let qcow2 = dir.path().join("big.qcow2");
    let r = convert_ok(&raw.display().to_string(), &qcow2, Format::Qcow2);
    assert_eq!(r.image_bytes, size);
    // Four data clusters, four L2 tables, the L1 table (2048 entries), the
    // header and the refcounts: a few hundred KiB.
    assert!(r.output_bytes < 1 << 20, "{r:?}");
    qemu_check(&qcow2);
    qemu_compare(&raw, &qcow2);
    let back = dir.path().join("back.raw");
    let r = convert_ok(&qcow2.display().to_string(), &back, Format::Raw);
    assert_eq!(r.output_bytes, size);
    let f = std::fs::File::open(&back).unwrap();
    assert!(f.metadata().unwrap().blocks() * 512 < 1 << 20);
    let mut sector = [0u8; 512];
    f.read_exact_at(&mut sector, 700 << 30).unwrap();
    assert_eq!(sector, [0xa2; 512]);
    f.read_exact_at(&mut sector, size - 512).unwrap();
    assert_eq!(sector, [0xa3; 512]);
}

#[test]
fn a_size_that_is_not_a_sector_multiple_rounds_up_in_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("odd.raw");
    std::fs::write(&raw, [0x5a; 1000]).unwrap();
    let qcow2 = dir.path().join("odd.qcow2");
    let r = convert_ok(&raw.display().to_string(), &qcow2, Format::Qcow2);
    assert_eq!(r.image_bytes, 1024);
    qemu_check(&qcow2);
    let back = dir.path().join("back.raw");
    convert_ok(&qcow2.display().to_string(), &back, Format::Raw);
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), 1024);
    assert!(got[..1000].iter().all(|&b| b == 0x5a));
    assert!(got[1000..].iter().all(|&b| b == 0));
}

#[test]
fn a_forced_raw_input_copies_the_file_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");
    let r = convert_to(&fx("disk.qcow2"), &out, Format::Raw, |o| {
        o.input_format = FormatChoice::Forced(Format::Raw);
    })
    .unwrap();
    assert_eq!(r.input_format, "raw");
    assert_same_file(&out, Path::new(&fx("disk.qcow2")));
}

#[test]
fn refused_inputs_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    for (name, format, wants) in [
        ("overlay.qcow2", Format::Raw, "backing file"),
        ("corrupt.qcow2", Format::Raw, "corrupt qcow2 header"),
        ("truncated.raw.xz", Format::Qcow2, "corrupt or truncated xz"),
        (
            "truncated.raw.zst",
            Format::Raw,
            "corrupt or truncated zstd",
        ),
        ("truncated.raw.gz", Format::Xz, "corrupt or truncated gzip"),
        ("truncated.qcow2", Format::Raw, "truncated qcow2"),
    ] {
        let err = convert_to(&fx(name), &out, format, |_| {}).unwrap_err();
        assert!(err.to_string().contains(wants), "{name}: {err}");
        assert!(!out.exists(), "{name}: the partial output was left");
    }
    let err = convert_to(&fx("disk.raw"), &out, Format::Raw, |o| {
        o.input_format = FormatChoice::Forced(Format::Qcow2);
    })
    .unwrap_err();
    assert!(err.to_string().contains("qcow2 magic"), "{err}");
    let empty = dir.path().join("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    let err = convert_ok_err(&empty, &out);
    assert!(err.contains("empty"), "{err}");
    assert!(!out.exists());
}

fn convert_ok_err(source: &Path, out: &Path) -> String {
    convert_to(&source.display().to_string(), out, Format::Qcow2, |_| {})
        .unwrap_err()
        .to_string()
}

#[test]
fn refused_outputs_and_levels() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("disk.raw");
    std::fs::copy(fx("disk.raw"), &copy).unwrap();
    let src = copy.display().to_string();
    let err = convert_to(&src, &copy, Format::Raw, |_| {}).unwrap_err();
    assert!(err.to_string().contains("is the input itself"), "{err}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(fx("disk.raw")).unwrap()
    );
    let err = convert_to(&src, Path::new("/dev/null"), Format::Raw, |_| {}).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let out = dir.path().join("out");
    for (format, level) in [(Format::Xz, 10), (Format::Zstd, 0), (Format::Qcow2, 3)] {
        let err = convert_to(&src, &out, format, |o| o.level = Some(level)).unwrap_err();
        assert!(matches!(err, ConvertError::Invalid(_)), "{err}");
    }
    let r = convert_to(&src, &out, Format::Zstd, |o| o.level = Some(19)).unwrap();
    assert_eq!(r.output_format, "zstd");
}

#[test]
fn the_cli_converts_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("disk.qcow2");
    let json = run(bin()
        .args(["convert", "-O", "qcow2"])
        .arg(fx("disk.raw.gz"))
        .arg(&out));
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["input_format"], "gzip");
    assert_eq!(r["output_format"], "qcow2");
    assert_eq!(
        r["image_bytes"],
        std::fs::metadata(fx("disk.raw")).unwrap().len()
    );
    assert_eq!(r["output_bytes"], std::fs::metadata(&out).unwrap().len());
    qemu_compare(Path::new(&fx("disk.raw")), &out);
    // -f insists on a format; gz is gzip; a failure says why, on stderr.
    let o = bin()
        .args(["convert", "-f", "qcow2", "-O", "gz"])
        .arg(fx("disk.raw"))
        .arg(dir.path().join("x.gz"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("ingot-image: ") && err.contains("qcow2"),
        "{err}"
    );
}

#[test]
fn checksum_is_of_the_file_and_matches_coreutils() {
    // The file as stored (a qcow2 here), not the disk it decodes to.
    let image = fx("disk.qcow2");
    for (algo, tool) in [
        ("sha256", "sha256sum"),
        ("sha512", "sha512sum"),
        ("md5", "md5sum"),
    ] {
        let ours = run(bin().args(["checksum", "--algo", algo]).arg(&image));
        let theirs = run(Command::new(tool).arg(&image));
        let hex = theirs.split_whitespace().next().unwrap();
        assert_eq!(ours.trim(), format!("{algo}:{hex}"));
        let json = run(bin()
            .args(["checksum", "--json", "--algo", algo])
            .arg(&image));
        let j: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(j["digest"], hex);
        assert_eq!(j["bytes"], std::fs::metadata(&image).unwrap().len());
        assert_eq!(j["instance_info"]["image_os_hash_algo"], algo);
        assert_eq!(j["instance_info"]["image_os_hash_value"], hex);
        assert_eq!(j["instance_info"]["image_checksum"], hex);
    }
    // The default is sha256.
    let ours = run(bin().arg("checksum").arg(fx("disk.raw")));
    assert!(
        ours.starts_with("sha256:") && ours.trim().len() == 7 + 64,
        "{ours}"
    );
    let o = bin()
        .args(["checksum", "--algo", "crc32"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn urls_are_read_as_the_agent_reads_them() {
    let files: HashMap<String, Arc<Vec<u8>>> = ["disk.qcow2", "disk.raw.zst", "disk.raw"]
        .iter()
        .map(|n| (n.to_string(), Arc::new(std::fs::read(fx(n)).unwrap())))
        .collect();
    let server = http::TestServer::start(files.clone(), http::Faults::default());
    let dir = tempfile::tempdir().unwrap();
    // qcow2 through Range reads, zstd and raw as streams.
    for name in ["disk.qcow2", "disk.raw.zst", "disk.raw"] {
        let out = dir.path().join(format!("{name}.raw"));
        let r = convert_ok(&server.url(name), &out, Format::Raw);
        assert_eq!(r.source_bytes, Some(files[name].len() as u64));
        assert_same_file(&out, Path::new(&fx("disk.raw")));
    }
    // The checksum of a URL is that of the file it serves.
    let d = digest_source(
        &server.url("disk.qcow2"),
        Algorithm::Sha256,
        &SourceOptions::default(),
    )
    .unwrap();
    let theirs = run(Command::new("sha256sum").arg(fx("disk.qcow2")));
    assert_eq!(
        Some(d.checksum.hex.as_str()),
        theirs.split_whitespace().next()
    );
    assert_eq!(d.bytes, files["disk.qcow2"].len() as u64);
    // A qcow2 needs Range reads: a server without them is refused by name.
    let no_range = http::TestServer::start(
        files,
        http::Faults {
            no_range: true,
            ..Default::default()
        },
    );
    let out = dir.path().join("no-range.raw");
    let err = convert_to(&no_range.url("disk.qcow2"), &out, Format::Raw, |_| {}).unwrap_err();
    assert!(err.to_string().contains("ignores Range"), "{err}");
    assert!(!out.exists());
}

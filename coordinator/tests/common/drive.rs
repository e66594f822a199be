//! Config drives for the tests that read them back (configdrive.rs,
//! cloud_init.rs): built by the coordinator's builder, written un-gzipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value};

/// True when the test runs as root (mounting needs it).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Builds the drive of `dict` for the node `node` named `name`, and writes
/// the ISO (un-gzipped) to `file`.
pub fn write_iso(dict: &Value, node: &str, name: &str, file: &Path) -> PathBuf {
    let dict: Map<String, Value> = dict.as_object().cloned().unwrap();
    let encoded = ingot_coordinator::configdrive::build_encoded(&dict, node, Some(name)).unwrap();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let mut iso = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut iso)
        .unwrap();
    std::fs::write(file, &iso).unwrap();
    file.to_owned()
}

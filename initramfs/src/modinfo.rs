//! Kernel module metadata read from a module file's `.modinfo` ELF section
//! (what `modinfo` prints): name, depends, alias, firmware, softdep.

use std::path::Path;

use object::{Object, ObjectSection};

/// Why a module could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    /// Reading or decompressing the file failed.
    #[error("{path}: {reason}")]
    Read {
        /// The module file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The metadata of one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// Module name (`name=` field, or the file stem), with `-` as `_`.
    pub name: String,
    /// Modules it needs loaded first.
    pub depends: Vec<String>,
    /// Device aliases it binds to (modalias patterns).
    pub aliases: Vec<String>,
    /// Firmware files it may request, relative to /lib/firmware.
    pub firmware: Vec<String>,
    /// Soft dependencies (`pre:`/`post:` modules).
    pub softdeps: Vec<String>,
}

/// Normalizes a module name the way the kernel does (`-` and `_` are equal).
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file path: `nvme-core.ko.xz` → `nvme_core`.
pub fn name_from_path(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let stem = file.split(".ko").next().unwrap_or(&file);
    normalize(stem)
}

/// Reads a module file, decompressing `.ko.xz`, `.ko.zst` and `.ko.gz`.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ModinfoError> {
    use std::io::Read;
    let err = |reason: String| ModinfoError::Read {
        path: path.display().to_string(),
        reason,
    };
    let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".ko.xz") {
        liblzma::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| err(format!("xz: {e}")))?;
    } else if name.ends_with(".ko.zst") {
        out = zstd::decode_all(&raw[..]).map_err(|e| err(format!("zstd: {e}")))?;
    } else if name.ends_with(".ko.gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| err(format!("gzip: {e}")))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// Parses the `.modinfo` section of an (uncompressed) module image.
pub fn parse(path: &Path, elf: &[u8]) -> Result<ModInfo, ModinfoError> {
    let err = |reason: String| ModinfoError::Read {
        path: path.display().to_string(),
        reason,
    };
    let file = object::File::parse(elf).map_err(|e| err(format!("not an ELF module: {e}")))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| err("no .modinfo section".into()))?;
    let data = section.data().map_err(|e| err(e.to_string()))?;
    let mut info = ModInfo {
        name: name_from_path(path),
        ..Default::default()
    };
    for field in data.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let field = String::from_utf8_lossy(field);
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = normalize(value),
            "depends" => info
                .depends
                .extend(value.split(',').filter(|d| !d.is_empty()).map(normalize)),
            "alias" => info.aliases.push(value.to_string()),
            "firmware" => info.firmware.push(value.to_string()),
            "softdep" => info.softdeps.extend(
                value
                    .split_whitespace()
                    .filter(|w| !w.ends_with(':'))
                    .map(normalize),
            ),
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path(Path::new("a/nvme-core.ko")), "nvme_core");
        assert_eq!(name_from_path(Path::new("virtio_net.ko.xz")), "virtio_net");
    }
}

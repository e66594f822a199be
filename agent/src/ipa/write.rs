//! The whole-disk image deploy shared by `standby.prepare_image` and the
//! `write_image` deploy step: pick the root disk by hints, resolve the
//! checksum, stream the image with `ingot_image_tools::write_image`, add the
//! config drive partition, and record the disk identifier as root UUID.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ingot_image_tools::WriteError;
use ingot_image_tools::checksum::{Algorithm, Checksum};
use ingot_image_tools::progress::Progress;
use ingot_image_tools::source::{RetryPolicy, SourceOptions, TlsOptions};
use ingot_image_tools::write::TargetState;
use ingot_proto::agent::ImageInfo;
use serde_json::{Map, Value, json};

use super::CmdError;
use super::executor::Record;
use crate::configdrive;
use crate::state::AgentState;

/// Parses and checks `image_info` (IPA `_validate_image_info`).
pub fn parse_image_info(v: Option<&Value>) -> Result<ImageInfo, CmdError> {
    let v = v.ok_or_else(|| CmdError::invalid_params("image_info is required"))?;
    let info: ImageInfo = serde_json::from_value(v.clone())
        .map_err(|e| CmdError::invalid_params(format!("image_info: {e}")))?;
    if info.id.is_empty() {
        return Err(CmdError::invalid_params("image_info.id is required"));
    }
    if info.urls.is_empty() {
        return Err(CmdError::invalid_params(
            "image_info.urls must list at least one URL",
        ));
    }
    let has_hash = info.os_hash_algo.is_some() && info.os_hash_value.is_some();
    if !has_hash && info.checksum.as_deref().is_none_or(str::is_empty) {
        return Err(CmdError::invalid_params(
            "image_info needs checksum, or os_hash_algo and os_hash_value",
        ));
    }
    if info.image_type.as_deref() == Some("partition") {
        return Err(CmdError::invalid_params(
            "partition images are not supported; use a whole-disk image",
        ));
    }
    Ok(info)
}

fn http_client(state: &AgentState) -> Result<reqwest::Client, CmdError> {
    let mut b = state.config.ca.apply(
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300)),
    );
    if state.config.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| CmdError::execution(e.to_string()))
}

/// Picks the digest out of a checksums file: a lone hash, `HASH  name`,
/// `HASH *name`, or `ALGO (name) = HASH`, matched by the image's file name.
pub fn hash_from_checksums_file(text: &str, image_name: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let [only] = lines[..] {
        if !only.contains(char::is_whitespace) {
            return Some(only.to_string());
        }
    }
    for l in lines {
        if let Some((left, hash)) = l.split_once(") = ") {
            if left.split_once(" (").is_some_and(|(_, n)| n == image_name) {
                return Some(hash.trim().to_string());
            }
            continue;
        }
        let mut parts = l.split_whitespace();
        let (Some(hash), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        if name.trim_start_matches('*') == image_name {
            return Some(hash.to_string());
        }
    }
    None
}

/// Resolves the expected checksum from `os_hash_*` or `checksum`.
async fn resolve_checksum(state: &AgentState, info: &ImageInfo) -> Result<Checksum, CmdError> {
    if let (Some(algo), Some(value)) = (&info.os_hash_algo, &info.os_hash_value) {
        let a = Algorithm::from_name(algo).map_err(|e| CmdError::invalid_params(e.to_string()))?;
        return Checksum::new(a, value).map_err(|e| CmdError::invalid_params(e.to_string()));
    }
    let mut hex = info.checksum.clone().unwrap_or_default();
    if configdrive::is_url(&hex) {
        let url = hex.clone();
        let client = http_client(state)?;
        let text = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| CmdError::download(format!("checksum file {url}: {e}")))?
            .text()
            .await
            .map_err(|e| CmdError::download(format!("checksum file {url}: {e}")))?;
        let name = info.urls[0]
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default();
        hex = hash_from_checksums_file(&text, name)
            .ok_or_else(|| CmdError::checksum(format!("no checksum for {name} in {url}")))?;
    }
    let algo = match hex.trim().len() {
        32 => Algorithm::Md5,
        64 => Algorithm::Sha256,
        128 => Algorithm::Sha512,
        n => {
            return Err(CmdError::invalid_params(format!(
                "checksum of {n} characters is neither md5, sha256 nor sha512"
            )));
        }
    };
    Checksum::new(algo, &hex).map_err(|e| CmdError::invalid_params(e.to_string()))
}

/// Root device hints from a node dict: `instance_info.root_device`, else
/// `properties.root_device`.
pub fn root_hints(node: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    let node = node?;
    ["instance_info", "properties"]
        .iter()
        .filter_map(|k| node.get(*k)?.get("root_device")?.as_object().cloned())
        .find(|h| !h.is_empty())
}

/// The node dict to use: the command's `node` parameter, else lookup's.
pub fn node_dict(state: &AgentState, params: &Map<String, Value>) -> Option<Map<String, Value>> {
    if let Some(Value::Object(n)) = params.get("node") {
        return Some(n.clone());
    }
    let n = state.node()?;
    serde_json::to_value(n).ok()?.as_object().cloned()
}

/// Chooses the root disk and returns its inventory name and the path to open.
pub async fn root_disk(
    state: &Arc<AgentState>,
    node: Option<&Map<String, Value>>,
) -> Result<(String, PathBuf), CmdError> {
    let root = state.config.root.clone();
    let disks = tokio::task::spawn_blocking(move || crate::inventory::list_disks(&root))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?;
    let hints = root_hints(node);
    let disk = ingot_proto::hints::choose(&disks, hints.as_ref())
        .map_err(|e| CmdError::device_not_found(e.to_string()))?;
    Ok((disk.name.clone(), state.device_path(&disk.name)))
}

fn map_write_error(e: &ingot_image_tools::WriteFailure, info: &ImageInfo, path: &str) -> CmdError {
    match &e.error {
        WriteError::ChecksumMismatch {
            expected, actual, ..
        } => CmdError::checksum(format!(
            "Image failed to verify against checksum. location: {path}; image ID: {}; image checksum: {expected}; verification checksum: {actual}",
            info.id
        )),
        WriteError::Source(_) => CmdError::download(e.to_string()),
        _ => CmdError::write(e.to_string()),
    }
}

/// Writes the image (and config drive) and returns IPA's result object.
pub async fn deploy_whole_disk(
    state: &Arc<AgentState>,
    record: &Arc<Record>,
    info: ImageInfo,
    configdrive_param: Option<String>,
    node: Option<&Map<String, Value>>,
) -> Result<Value, CmdError> {
    let checksum = resolve_checksum(state, &info).await?;
    let allow_md5 = state.md5_allowed();
    if checksum.algorithm == Algorithm::Md5 && !allow_md5 {
        return Err(CmdError::invalid_params(
            "md5 checksums are disabled (agent_md5_checksum_enable is false)",
        ));
    }
    let (disk_name, path) = root_disk(state, node).await?;
    tracing::info!(image = %info.id, disk = %disk_name, target = %path.display(), "writing the image");
    let mut summary = None;
    let mut last_err = None;
    for url in &info.urls {
        let mut opts = ingot_image_tools::WriteOptions::new(url.clone(), path.clone());
        opts.checksum = Some(checksum.clone());
        opts.allow_md5 = allow_md5;
        opts.source_options = SourceOptions {
            retry: RetryPolicy::default(),
            tls: TlsOptions {
                // The same validated certificates, as the PEM the image
                // tools take.
                ca_pem: state.config.ca.pem(),
                insecure: state.config.insecure,
            },
        };
        let progress = Progress::new();
        record.set_progress(progress.clone());
        let res =
            tokio::task::spawn_blocking(move || ingot_image_tools::write_image(&opts, &progress))
                .await
                .map_err(|e| CmdError::execution(e.to_string()))?;
        match res {
            Ok(s) => {
                summary = Some(s);
                break;
            }
            Err(f) => {
                tracing::warn!(url = %url, error = %f, "image write failed");
                let untouched = f.target == TargetState::Untouched;
                last_err = Some(map_write_error(&f, &info, &path.display().to_string()));
                if !untouched {
                    break;
                }
            }
        }
    }
    let Some(summary) = summary else {
        return Err(last_err.unwrap_or_else(|| CmdError::write("no URL could be written")));
    };
    // A GPT image smaller than the disk: its backup table to the disk's end
    // (IPA runs `sgdisk -e` after every whole-disk write).
    let p = path.clone();
    let gpt = tokio::task::spawn_blocking(move || crate::ptable::fit::fit_gpt_to_disk(&p))
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?
        .map_err(|e| CmdError::write(format!("fitting the partition table to the disk: {e}")))?;
    let configdrive_param = configdrive_param
        .or_else(|| info.configdrive.clone())
        .filter(|c| !c.is_empty());
    let mut placement = None;
    if let Some(cd) = configdrive_param {
        let raw = if configdrive::is_url(&cd) {
            configdrive::download(&http_client(state)?, &cd)
                .await
                .map_err(|e| CmdError::execution(e.to_string()))?
        } else {
            cd.into_bytes()
        };
        let p = path.clone();
        let placed = tokio::task::spawn_blocking(move || {
            let drive = configdrive::decode(&raw)?;
            configdrive::write_partition(&p, &drive)
        })
        .await
        .map_err(|e| CmdError::execution(e.to_string()))?
        .map_err(|e| CmdError::execution(format!("config drive: {e}")))?;
        tracing::info!(disk = %disk_name, partition = placed.partition, offset = placed.offset, "config drive written");
        placement = Some(placed);
    }
    let p = path.clone();
    let root_uuid = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let f = std::fs::File::open(&p)?;
        Ok(configdrive::mbr::read(&f)?
            .map(|s| configdrive::mbr::disk_identifier(&s))
            .unwrap_or_else(|| "0x00000000".into()))
    })
    .await
    .map_err(|e| CmdError::execution(e.to_string()))?
    .map_err(|e| CmdError::execution(format!("reading the disk identifier: {e}")))?;
    let mut uuids = Map::new();
    uuids.insert("root uuid".into(), Value::String(root_uuid.clone()));
    state.set_partition_uuids(uuids);
    Ok(json!({
        "result": format!("prepare_image: image ({}) written to device {} root_uuid={}", info.id, disk_name, root_uuid),
        "image_write": summary,
        "gpt": gpt,
        "configdrive": placement,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files() {
        let h = "a".repeat(64);
        assert_eq!(
            hash_from_checksums_file(&format!("{h}\n"), "x.raw"),
            Some(h.clone())
        );
        let text = format!("{}  other.raw\n{h} *img.raw\n", "b".repeat(64));
        assert_eq!(hash_from_checksums_file(&text, "img.raw"), Some(h.clone()));
        let centos = format!("SHA256 (img.raw) = {h}\n");
        assert_eq!(hash_from_checksums_file(&centos, "img.raw"), Some(h));
        assert_eq!(hash_from_checksums_file("x  y\n", "img.raw"), None);
    }

    #[test]
    fn image_info_validation() {
        let ok = json!({"id": "a", "urls": ["http://x/a"], "checksum": "c".repeat(64)});
        assert!(parse_image_info(Some(&ok)).is_ok());
        let no_sum = json!({"id": "a", "urls": ["http://x/a"]});
        assert_eq!(
            parse_image_info(Some(&no_sum)).unwrap_err().kind,
            "InvalidCommandParamsError"
        );
        let no_urls = json!({"id": "a", "urls": [], "checksum": "x"});
        assert!(parse_image_info(Some(&no_urls)).is_err());
    }
}

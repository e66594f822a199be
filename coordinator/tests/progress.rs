//! Live progress (issue 21 item 2) with the real agent: the coordinator
//! deploys a 256 MiB image through `ingot-agent` (its library, run
//! in-process against the coordinator over real HTTP, writing to a sparse
//! file that stands for the disk), served by a throttled HTTP server so the
//! write lasts several heartbeats. While it runs, the node shows
//! `ingot_progress` in `driver_internal_info` and in `deploy_step`; the
//! bytes done increase monotonically through at least three values, with
//! the total, a rate and an ETA, and the step's start stays the same. The
//! history then holds the step with its duration and result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Backend, start_with, test_config, test_db};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAC: &str = "52:54:00:aa:bb:07";
const IMAGE_MIB: usize = 256;
/// About eight seconds of writing: several heartbeats at the interval
/// agents take from a 3 s `heartbeat_timeout` (about 1 s).
const BYTES_PER_SECOND: usize = 32 << 20;

/// Serves `image` at any path over HTTP/1.1 at [`BYTES_PER_SECOND`].
async fn throttled_server(image: std::sync::Arc<Vec<u8>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let image = image.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let is_head = head.starts_with(b"HEAD");
                let hdr = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    image.len()
                );
                if s.write_all(hdr.as_bytes()).await.is_err() || is_head {
                    return;
                }
                const CHUNK: usize = 1 << 20;
                let pause = Duration::from_secs_f64(CHUNK as f64 / BYTES_PER_SECOND as f64);
                for c in image.chunks(CHUNK) {
                    if s.write_all(c).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            });
        }
    });
    format!("http://{addr}/image.raw")
}

/// The real agent in-process, against `api_url`, with its disks in
/// `dir/dev`.
fn start_agent(api_url: &str, dir: &std::path::Path) -> tokio::task::JoinHandle<()> {
    use ingot_agent::coordinator::runtime::{RunOptions, TlsMode, run};
    use ingot_agent::state::{AgentConfig, AgentState};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent/tests/fixtures/qemu-q35-uefi");
    let config = AgentConfig {
        root,
        dev_dir: Some(dir.join("dev")),
        state_dir: Some(dir.join("state")),
        ..AgentConfig::default()
    };
    let state = AgentState::new(config, ingot_agent::logring::LogRing::new());
    let mut opts = RunOptions::new(api_url);
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts.advertise_host = Some("127.0.0.1".into());
    opts.tls = TlsMode::Off;
    opts.lookup_interval = Duration::from_millis(100);
    opts.lookup_max_interval = Duration::from_millis(500);
    opts.macs = vec![MAC.into()];
    tokio::spawn(async move {
        if let Err(e) = run(state, opts).await {
            eprintln!("agent stopped: {e}");
        }
    })
}

/// A node for the real agent, with its disk `dir/dev/vda` of `mib` MiB.
async fn agent_node(api: &common::Api, dir: &std::path::Path, mib: u64) -> String {
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    std::fs::File::create(dir.join("dev/vda"))
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": "p-1",
            "deploy_interface": "direct", "boot_interface": "ipxe",
            // The fixture's disks are 64 MiB: below the default's 4 GiB.
            // Only vda has a file; wipes leave the others alone.
            "properties": {
                "root_device": {"name": "/dev/vda"},
                "skip_block_devices": [{"name": "/dev/sda"}, {"name": "/dev/nvme0n1"}],
            },
        }))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"address": MAC, "node_uuid": uuid}))
        .await;
    assert_eq!(st, 201, "{v}");
    api.provision("p-1", json!({"target": "manage"})).await;
    api.wait_state("p-1", "manageable", Duration::from_secs(20))
        .await;
    uuid
}

/// The progress values the node shows under `step_key` until it leaves
/// `states`; checks the document on the way. Returns them and the node.
async fn watch(
    api: &common::Api,
    step_key: &str,
    step: &str,
    states: [&str; 2],
) -> (Vec<u64>, Value) {
    let mut seen: Vec<u64> = Vec::new();
    let mut started_at: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "{states:?} did not end");
        let n = api.node("p-1").await;
        if !states.iter().any(|s| n["provision_state"] == *s) {
            return (seen, n);
        }
        let p = &n["driver_internal_info"]["ingot_progress"];
        if let Some(done) = p["bytes_done"].as_u64() {
            if p["step"] == step {
                assert_eq!(n[step_key]["ingot_progress"], *p, "{n}");
                let start = p["started_at"].as_str().unwrap().to_owned();
                assert_eq!(
                    started_at.get_or_insert_with(|| start.clone()),
                    &start,
                    "the step's start stays"
                );
                if done > 0 {
                    let total = p["bytes_total"].as_u64().unwrap();
                    assert!(done <= total, "{p}");
                    assert!(p["rate_bytes_per_second"].as_u64().unwrap() > 0, "{p}");
                    assert!(p["eta_seconds"].is_u64(), "{p}");
                }
                if seen.last() != Some(&done) {
                    seen.push(done);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A secure erase of a 768 MiB file (which falls back to overwriting it:
/// a random and a zero pass) shows its progress in `clean_step`, never
/// going down. A file is written fast; at least one value is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_progress_increases_monotonically() {
    let Some(db) = test_db(Backend::Sqlite, "wipe_progress").await else {
        return;
    };
    let mut cfg = test_config(&db.url);
    cfg.heartbeat_timeout = 3;
    let (running, api) = start_with(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    agent_node(&api, dir.path(), 768).await;
    let agent = start_agent(&api.base, dir.path());
    api.provision(
        "p-1",
        json!({"target": "clean", "clean_steps": [{"interface": "deploy", "step": "erase_devices"}]}),
    )
    .await;
    let (seen, n) = watch(
        &api,
        "clean_step",
        "deploy.erase_devices",
        ["cleaning", "clean wait"],
    )
    .await;
    assert_eq!(n["provision_state"], "manageable", "{n}");
    eprintln!("bytes wiped as the node showed them: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress went down: {seen:?}"
    );
    assert!(
        seen.iter().any(|b| *b > 0),
        "no wipe progress shown: {seen:?}"
    );
    agent.abort();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_write_progress_increases_monotonically() {
    let Some(db) = test_db(Backend::Sqlite, "progress").await else {
        return;
    };
    let mut cfg = test_config(&db.url);
    cfg.automated_clean = false;
    cfg.heartbeat_timeout = 3;
    let (running, api) = start_with(cfg).await;

    // A pseudo-random image (nothing for the writer to skip as zeros).
    let mut image = vec![0_u8; IMAGE_MIB << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in image.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let checksum = hex::encode(sha2::Sha256::digest(&image));
    let url = throttled_server(std::sync::Arc::new(image)).await;

    let dir = tempfile::tempdir().unwrap();
    let uuid = agent_node(&api, dir.path(), (IMAGE_MIB + 64) as u64).await;
    api.provision("p-1", json!({"target": "provide"})).await;
    api.wait_state("p-1", "available", Duration::from_secs(20))
        .await;
    let (st, v) = api
        .patch(
            "/v1/nodes/p-1",
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": url},
                {"op": "add", "path": "/instance_info/image_checksum", "value": checksum},
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let agent = start_agent(&api.base, dir.path());
    api.provision("p-1", json!({"target": "active"})).await;

    // Watch the node while the image is written.
    let (seen, last) = watch(
        &api,
        "deploy_step",
        "deploy.write_image",
        ["deploying", "wait call-back"],
    )
    .await;
    assert_eq!(last["provision_state"], "active", "{last}");
    assert!(
        last["driver_internal_info"].get("ingot_progress").is_none(),
        "no progress once deployed: {last}"
    );
    eprintln!("bytes done as the node showed them: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress went down: {seen:?}"
    );
    let distinct: BTreeSet<u64> = seen.iter().copied().filter(|b| *b > 0).collect();
    assert!(distinct.len() >= 3, "too few progress values: {seen:?}");

    // The history has the step with its duration and result.
    let (st, h) = api
        .get(&format!("/v1/nodes/{uuid}/history?detail=True"))
        .await;
    assert_eq!(st, 200);
    let step = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["event_type"] == "deploy_step" && e["event"].as_str().unwrap().contains("write_image")
        })
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        step["event"], "Deploy step deploy.write_image succeeded",
        "{h}"
    );
    assert!(step["duration_seconds"].as_i64().unwrap() >= 3, "{step}");
    agent.abort();
    running.shutdown().await;
}

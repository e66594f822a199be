//! Nova's ironic driver, replayed through openstacksdk
//! (`tests/nova_replay.py`), against a coordinator with a real Glance 33
//! (`tests/glance/glance-lab.sh`) and the simulated agent: three successive
//! instances on one node with one NIC, each reserved by `instance_uuid`,
//! given Nova's 15 `instance_info` keys with a Glance image UUID, a VIF,
//! validated and deployed with a gzip+base64 config drive, polled by
//! instance with Nova's 11 fields; the first powered off, on and rebooted,
//! the second failing its deploy (a queued image) and cleaned up as Nova
//! does after a failed spawn, each destroyed; no manual cleanup between them
//! (issue 15).
//!
//! Without python3-venv or PyPI the test skips, unless `CI=true` or
//! `INGOT_REQUIRE_PRIVILEGED=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::agent_sim::SimAgent;
use common::glance::Glance;
use common::venv::{run_python, venv};
use common::{Backend, start_with, test_config, test_db};
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const MAC: &str = "52:54:00:15:00:05";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_spawns_three_instances_on_one_node() {
    let Some(venv) = venv() else { return };
    let Some(glance) = Glance::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("disk.raw");
    std::fs::write(&raw, vec![0x5a_u8; 1_500_000]).unwrap();
    let good = glance.upload(&raw, "raw");
    let bad = glance.queued("never-uploaded").await;

    let db = test_db(Backend::Sqlite, "nova_replay").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.images.cache_dir = Some(work.path().join("cache"));
    cfg.glance.endpoint = Some(glance.url());
    let (running, api) = start_with(cfg).await;
    let node = api
        .create_node(json!({
            "driver": "fake-hardware", "name": "nova-1", "automated_clean": false,
            "deploy_interface": "direct", "boot_interface": "ipxe",
            "resource_class": "baremetal",
        }))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"address": MAC, "node_uuid": node}))
        .await;
    assert_eq!(st, 201, "{v}");
    api.provision(&node, json!({"target": "manage"})).await;
    api.wait_state(&node, "manageable", T).await;
    api.provision(&node, json!({"target": "provide"})).await;
    api.wait_state(&node, "available", T).await;
    api.set_power(&node, "power off").await;
    // The ramdisk, whenever the node boots it.
    let _agent = SimAgent::start(&api.base, MAC).await;

    let args = vec![api.base.clone(), node.clone(), good.clone(), bad];
    run_python(&venv, "nova_replay.py", args, "nova replay ok").await;
    // Two deploys of the good image, one download from Glance.
    assert_eq!(glance.downloads(&good), 1);
    let n = api.node(&node).await;
    assert_eq!(n["provision_state"], "available", "{n}");
    assert!(n["instance_uuid"].is_null(), "{n}");
    running.shutdown().await;
}

//! The lifecycle scenario with the real `baremetal` CLI (python-ironicclient
//! from PyPI): create a fake-hardware node and a port, manage, provide,
//! deploy with instance_info and a config drive, power off and on, restart
//! the coordinator (the state must survive), undeploy, delete. On SQLite and
//! on PostgreSQL.
//!
//! The venv is `<workspace>/target/venv-ironicclient` (or
//! `$INGOT_IRONICCLIENT_VENV`), created by `tests/python-venv.sh` when
//! missing. Without python3-venv or PyPI the test skips, unless `CI=true` or
//! `INGOT_REQUIRE_PRIVILEGED=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::venv::{baremetal, baremetal_json, venv};
use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

async fn json_of(venv: &Path, api: &Api, args: &[&str]) -> Value {
    baremetal_json(venv, &api.base, args).await
}

async fn scenario(backend: Backend) {
    let Some(venv) = venv() else { return };
    let Some(db) = test_db(backend, "baremetal_cli").await else {
        return;
    };
    let cfg = test_config(&db.url);
    let (running, api) = start_with(cfg.clone()).await;

    let node = json_of(
        &venv,
        &api,
        &[
            "node",
            "create",
            "--driver",
            "fake-hardware",
            "--name",
            "fake-1",
            "--property",
            "cpus=2",
            "--property",
            "memory_mb=4096",
            "--property",
            "local_gb=10",
            "--property",
            "cpu_arch=x86_64",
            "--boot-interface",
            "fake",
            "--deploy-interface",
            "fake",
            "--management-interface",
            "fake",
            "--network-interface",
            "noop",
            "--power-interface",
            "fake",
            "--resource-class",
            "baremetal",
            "-f",
            "json",
        ],
    )
    .await;
    let uuid = node["uuid"].as_str().unwrap().to_owned();
    assert_eq!(node["provision_state"], "enroll");
    let port = json_of(
        &venv,
        &api,
        &[
            "port",
            "create",
            "52:54:00:12:34:56",
            "--node",
            &uuid,
            "-f",
            "json",
        ],
    )
    .await;
    assert_eq!(port["address"], "52:54:00:12:34:56");
    let validate = json_of(&venv, &api, &["node", "validate", "fake-1", "-f", "json"]).await;
    let power = validate
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Interface"] == "power")
        .unwrap();
    assert_eq!(power["Result"], true, "{validate}");

    baremetal(&venv, &api.base, &["node", "manage", "fake-1"]).await;
    api.wait_state(&uuid, "manageable", T).await;
    baremetal(&venv, &api.base, &["node", "provide", "fake-1"]).await;
    api.wait_state(&uuid, "available", T).await;
    baremetal(
        &venv,
        &api.base,
        &[
            "node",
            "set",
            "fake-1",
            "--instance-info",
            "image_source=http://127.0.0.1:8088/img.raw",
            "--instance-info",
            "image_checksum=8a5cbde26b52efe94b95bc77565a7fa84039a39401a7b5dd127497ee17d361bb",
            "--instance-info",
            "root_gb=1",
        ],
    )
    .await;
    baremetal(
        &venv,
        &api.base,
        &[
            "node",
            "deploy",
            "fake-1",
            "--config-drive",
            r#"{"meta_data": {"hostname": "fake-1"}}"#,
        ],
    )
    .await;
    api.wait_state(&uuid, "active", T).await;
    baremetal(
        &venv,
        &api.base,
        &["node", "power", "off", "fake-1", "--power-timeout", "30"],
    )
    .await;
    baremetal(&venv, &api.base, &["node", "power", "on", "fake-1"]).await;
    let shown = json_of(&venv, &api, &["node", "show", "fake-1", "-f", "json"]).await;
    assert_eq!(shown["provision_state"], "active");
    let listed = json_of(
        &venv,
        &api,
        &["node", "list", "--provision-state", "active", "-f", "json"],
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let drivers = json_of(&venv, &api, &["driver", "list", "-f", "json"]).await;
    assert!(drivers.to_string().contains("fake-hardware"), "{drivers}");

    // Restart: the state survives.
    running.shutdown().await;
    let (running, api) = start_with(cfg).await;
    let shown = json_of(&venv, &api, &["node", "show", "fake-1", "-f", "json"]).await;
    assert_eq!(shown["provision_state"], "active", "{shown}");
    assert_eq!(
        shown["instance_info"]["image_source"],
        "http://127.0.0.1:8088/img.raw"
    );
    let ports = json_of(
        &venv,
        &api,
        &["port", "list", "--node", &uuid, "-f", "json"],
    )
    .await;
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");

    baremetal(&venv, &api.base, &["node", "undeploy", "fake-1"]).await;
    api.wait_state(&uuid, "available", T).await;
    baremetal(&venv, &api.base, &["node", "delete", "fake-1"]).await;
    let listed = json_of(&venv, &api, &["node", "list", "-f", "json"]).await;
    assert_eq!(listed, serde_json::json!([]));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_postgres() {
    scenario(Backend::Postgres).await;
}

/// Node history (issue 21 item 1) through `baremetal node history list`
/// and `get`: the requests with their user, the state changes with the
/// time spent in the previous state, the power actions with their result;
/// retention bounded by `[conductor] node_history_max_entries`; 404 below
/// 1.78; deleting the node deletes its history.
async fn history(backend: Backend) {
    let Some(venv) = venv() else { return };
    let Some(db) = test_db(backend, "baremetal_cli_history").await else {
        return;
    };
    let mut cfg = test_config(&db.url);
    cfg.conductor.node_history_max_entries = 12;
    let (running, api) = start_with(cfg).await;
    let node = json_of(
        &venv,
        &api,
        &[
            "node",
            "create",
            "--driver",
            "fake-hardware",
            "--name",
            "h-1",
            "-f",
            "json",
        ],
    )
    .await;
    let uuid = node["uuid"].as_str().unwrap().to_owned();
    let empty = json_of(
        &venv,
        &api,
        &["node", "history", "list", "h-1", "-f", "json"],
    )
    .await;
    assert_eq!(empty, serde_json::json!([]));
    baremetal(&venv, &api.base, &["node", "manage", "h-1"]).await;
    api.wait_state(&uuid, "manageable", T).await;
    baremetal(&venv, &api.base, &["node", "provide", "h-1"]).await;
    api.wait_state(&uuid, "available", T).await;
    baremetal(&venv, &api.base, &["node", "power", "on", "h-1"]).await;
    api.wait_power_state(&uuid, "power on", T).await;

    let list = json_of(
        &venv,
        &api,
        &["node", "history", "list", "h-1", "-f", "json"],
    )
    .await;
    let list = list.as_array().unwrap();
    for row in list {
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "uuid, created_at, severity, event: {row}");
    }
    let events: Vec<&str> = list.iter().map(|r| r["event"].as_str().unwrap()).collect();
    let has = |s: &str| events.iter().any(|e| e.contains(s));
    assert!(has("Provision action manage requested"), "{events:?}");
    assert!(
        has("Provision state changed from verifying to manageable"),
        "{events:?}"
    );
    assert!(has("Provision action provide requested"), "{events:?}");
    assert!(has("Power action power on requested"), "{events:?}");
    assert!(has("Power action power on"), "{events:?}");

    let long = json_of(
        &venv,
        &api,
        &["node", "history", "list", "h-1", "--long", "-f", "json"],
    )
    .await;
    let long = long.as_array().unwrap();
    assert_eq!(long.len(), list.len());
    let request = long
        .iter()
        .find(|r| r["event"].as_str().unwrap().contains("manage requested"))
        .unwrap();
    assert_eq!(request["user"], "noauth", "{request}");
    assert_eq!(request["event_type"], "request", "{request}");
    assert_eq!(request["state"], "verifying", "{request}");
    let power = long.iter().find(|r| r["event_type"] == "power").unwrap();
    assert_eq!(power["severity"], "INFO", "{power}");
    assert!(power["duration_seconds"].is_number(), "{power}");
    assert_eq!(power["conductor"], "ingot", "{power}");
    let changed = long
        .iter()
        .find(|r| r["event_type"] == "provisioning")
        .unwrap();
    assert!(changed["duration_seconds"].is_number(), "{changed}");

    let id = power["uuid"].as_str().unwrap();
    let one = json_of(
        &venv,
        &api,
        &["node", "history", "get", "h-1", id, "-f", "json"],
    )
    .await;
    assert_eq!(one["uuid"], id, "{one}");
    assert_eq!(one["event_type"], "power", "{one}");
    assert_eq!(
        one["target_provision_state"],
        serde_json::Value::Null,
        "{one}"
    );
    for key in [
        "created_at",
        "severity",
        "event",
        "conductor",
        "user",
        "project",
        "state",
        "duration_seconds",
    ] {
        assert!(one.get(key).is_some(), "{key} missing: {one}");
    }
    // The API as Ironic serves it: 404 below 1.78 and for unknown entries,
    // no 1.115 fields at 1.78.
    let path = format!("/v1/nodes/{uuid}/history/{id}");
    let (st, _) = api.with_version(Some("1.77")).get(&path).await;
    assert_eq!(st, 404);
    let (st, old) = api.with_version(Some("1.78")).get(&path).await;
    assert_eq!(st, 200, "{old}");
    assert!(
        old.get("state").is_none() && old.get("project").is_none(),
        "{old}"
    );
    assert!(
        old["links"][0]["href"].as_str().unwrap().ends_with(&path),
        "{old}"
    );
    let (st, _) = api.get(&format!("/v1/nodes/{uuid}/history/{}", uuid)).await;
    assert_eq!(st, 404);
    let (st, page) = api.get(&format!("/v1/nodes/{uuid}/history?limit=2")).await;
    assert_eq!(st, 200);
    assert_eq!(page["history"].as_array().unwrap().len(), 2, "{page}");
    assert!(page["next"].as_str().unwrap().contains("marker="), "{page}");

    // Retention: more actions than node_history_max_entries keep 12.
    for _ in 0..4 {
        baremetal(&venv, &api.base, &["node", "power", "off", "h-1"]).await;
        api.wait_power_state(&uuid, "power off", T).await;
        baremetal(&venv, &api.base, &["node", "power", "on", "h-1"]).await;
        api.wait_power_state(&uuid, "power on", T).await;
    }
    let store = ingot_coordinator::db::Db::connect(&db.url).await.unwrap();
    let kept = store.node_history(&uuid).await.unwrap();
    assert_eq!(kept.len(), 12, "{kept:?}");
    assert!(
        kept.last().unwrap().event.contains("Power action power on"),
        "{kept:?}"
    );

    baremetal(&venv, &api.base, &["node", "delete", "h-1"]).await;
    assert!(store.node_history(&uuid).await.unwrap().is_empty());
    store.close().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_history_sqlite() {
    history(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_history_postgres() {
    history(Backend::Postgres).await;
}

/// Issue 14's findings through the CLI's own requests: version-correct
/// documents, fake interfaces that validate, Ironic's driver properties,
/// null fake power after `manage`, and deleting an associated node in
/// maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_compat() {
    let Some(venv) = venv() else { return };
    let Some(db) = test_db(Backend::Sqlite, "baremetal_cli_compat").await else {
        return;
    };
    let (running, api) = start_with(test_config(&db.url)).await;
    let node = json_of(
        &venv,
        &api,
        &[
            "node",
            "create",
            "--driver",
            "fake-hardware",
            "--name",
            "c-1",
            "--resource-class",
            "rc",
            "-f",
            "json",
        ],
    )
    .await;
    let uuid = node["uuid"].as_str().unwrap().to_owned();
    // Every fake interface validates, with no reason.
    let validate = json_of(&venv, &api, &["node", "validate", "c-1", "-f", "json"]).await;
    for row in validate.as_array().unwrap() {
        assert_eq!(row["Result"], true, "{validate}");
        assert_eq!(row["Reason"], "", "{validate}");
    }
    let props = json_of(
        &venv,
        &api,
        &["driver", "property", "list", "fake-hardware", "-f", "json"],
    )
    .await;
    let names: Vec<&str> = props
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["property"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["B1", "B2"]);
    // At 1.1 the CLI prints the 20 fields Ironic 39 gives it there.
    let old = json_of(
        &venv,
        &api,
        &[
            "--os-baremetal-api-version",
            "1.1",
            "node",
            "show",
            &uuid,
            "-f",
            "json",
        ],
    )
    .await;
    assert_eq!(old.as_object().unwrap().len(), 20, "{old}");
    let shown = json_of(&venv, &api, &["node", "show", "c-1", "-f", "json"]).await;
    for key in ["health", "instance_name", "service_step"] {
        assert!(shown.get(key).is_some(), "{key} missing: {shown}");
    }
    baremetal(&venv, &api.base, &["node", "manage", "c-1"]).await;
    let n = api.wait_state(&uuid, "manageable", T).await;
    assert!(n["power_state"].is_null(), "{n}");
    baremetal(&venv, &api.base, &["node", "provide", "c-1"]).await;
    api.wait_state(&uuid, "available", T).await;
    // Allocations need a known power state (Ironic's rule too).
    let alloc = json_of(
        &venv,
        &api,
        &[
            "allocation",
            "create",
            "--resource-class",
            "rc",
            "-f",
            "json",
        ],
    )
    .await;
    assert_eq!(alloc["state"], "error", "{alloc}");
    let failed = alloc["uuid"].as_str().unwrap().to_owned();
    baremetal(&venv, &api.base, &["allocation", "delete", &failed]).await;
    baremetal(&venv, &api.base, &["node", "power", "off", "c-1"]).await;
    api.wait_power_state(&uuid, "power off", T).await;
    let alloc = json_of(
        &venv,
        &api,
        &[
            "allocation",
            "create",
            "--resource-class",
            "rc",
            "-f",
            "json",
        ],
    )
    .await;
    assert_eq!(alloc["state"], "active", "{alloc}");
    baremetal(&venv, &api.base, &["node", "maintenance", "set", "c-1"]).await;
    baremetal(&venv, &api.base, &["node", "delete", "c-1"]).await;
    let allocs = json_of(&venv, &api, &["allocation", "list", "-f", "json"]).await;
    assert_eq!(allocs, serde_json::json!([]));
    running.shutdown().await;
}

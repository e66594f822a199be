//! PostgreSQL going away under a running coordinator and coming back: while
//! the server is stopped, API writes and reads, agent lookups and heartbeats
//! get 503 with Ironic's error body ("The database is unavailable: …; retry
//! later.") and `Retry-After`, within seconds (the pool's acquire timeout),
//! not 500 after 30 s; once it is started again the same write succeeds,
//! nothing written before is lost, and the background work (the
//! coordinator's heartbeat in the database, node workers) resumes by itself.
//! The database is the test process's private PostgreSQL cluster
//! (`common/pg.rs`), stopped with `pg_ctl stop -m fast` and started again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Api, Backend, faultstring, pg, start_with, test_config, test_db};
use serde_json::{Value, json};

const MAC: &str = "52:54:00:0d:b0:01";

/// Sends `method path body` and expects the outage's 503; returns how long
/// the answer took.
async fn expect_unavailable(api: &Api, method: &str, path: &str, body: Option<&str>) -> Duration {
    let started = Instant::now();
    let (status, v, headers) = api.raw(method, path, body).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{method} {path}: {v}");
    let m = faultstring(&v);
    assert!(
        m.starts_with("The database is unavailable: ") && m.ends_with("; retry later."),
        "{method} {path}: {m}"
    );
    let inner: Value = serde_json::from_str(v["error_message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["faultcode"], "Server");
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some("5"),
        "{method} {path}: {headers:?}"
    );
    eprintln!("{method} {path}: 503 after {took:?}: {m}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_503_and_work_resumes_after() {
    let Some(db) = test_db(Backend::Postgres, "db_outage").await else {
        return;
    };
    let mut config = test_config(&db.url);
    config.conductor.heartbeat_interval = 1;
    config.conductor.heartbeat_timeout = 3;
    let (_running, api) = start_with(config).await;

    // Written before the outage.
    let uuid = api
        .create_node(json!({"driver": "fake-hardware", "name": "before"}))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"node_uuid": uuid, "address": MAC}))
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "add", "path": "/extra/written", "value": "before"}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    pg::stop();

    let create = r#"{"driver": "fake-hardware", "name": "during"}"#;
    let patch = r#"[{"op": "add", "path": "/extra/during", "value": "yes"}]"#;
    let node_path = format!("/v1/nodes/{uuid}");
    let lookup = format!("/v1/lookup?addresses={MAC}");
    let heartbeat = format!("/v1/heartbeat/{uuid}");
    let hb_body = r#"{"callback_url": "http://127.0.0.1:9999", "agent_token": "not-the-token"}"#;
    let took = [
        expect_unavailable(&api, "POST", "/v1/nodes", Some(create)).await,
        expect_unavailable(&api, "PATCH", &node_path, Some(patch)).await,
        expect_unavailable(&api, "GET", &node_path, None).await,
        expect_unavailable(&api, "GET", &lookup, None).await,
        expect_unavailable(&api, "POST", &heartbeat, Some(hb_body)).await,
    ];
    // The acquire timeout is 5 s; a generous margin for a loaded machine,
    // still far below the 30 s the requests used to hang before a 500.
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(15)),
        "{took:?}"
    );

    pg::start();

    // The same write succeeds now, without restarting the coordinator.
    let (st, v) = api
        .post("/v1/nodes", serde_json::from_str(create).unwrap())
        .await;
    assert_eq!(st, 201, "after the outage: {v}");
    let (st, v) = api
        .patch(&node_path, serde_json::from_str(patch).unwrap())
        .await;
    assert_eq!(st, 200, "after the outage: {v}");

    // Nothing written before the outage was lost, and nothing was written
    // twice.
    let node = api.node(&uuid).await;
    assert_eq!(node["extra"]["written"], "before", "{node}");
    assert_eq!(node["extra"]["during"], "yes", "{node}");
    let (st, v) = api.get(&format!("/v1/ports?address={MAC}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ports"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = api.get("/v1/nodes").await;
    let mut names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["before", "during"]);

    // The ramdisk endpoints answer again (the database decides: this node
    // has no agent token, and no lookup is allowed in enroll).
    let (st, v, _) = api.raw("POST", &heartbeat, Some(hb_body)).await;
    assert_eq!(st, 400, "{v}");
    let (st, v, _) = api.raw("GET", &lookup, None).await;
    assert_eq!(st, 404, "{v}");

    // The coordinator's periodic heartbeat in the database survived the
    // outage: it is alive again (its heartbeat is older than the 3 s
    // timeout after the outage, so this needs a new one).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = api.get("/v1/conductors").await;
        assert_eq!(st, 200, "{v}");
        if v["conductors"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["alive"] == true))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no alive conductor: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // And node workers run: manage → verifying → manageable.
    api.provision(&uuid, json!({"target": "manage"})).await;
    api.wait_state(&uuid, "manageable", Duration::from_secs(30))
        .await;
}

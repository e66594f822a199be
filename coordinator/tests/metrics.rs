//! `GET /metrics` over real HTTP on its own listener: a coordinator on
//! SQLite drives a node through inspection and cleaning with the simulated
//! agent (real lookups, heartbeats and `/v1/commands/`), answers a few API
//! requests (some refused), and the scrape is parsed and checked.
//! One test in this binary: the metrics are process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::agent_sim::SimAgent;
use common::{Backend, start_with, test_config, test_db};
use ingot_coordinator::metrics::text::{self, Sample};
use serde_json::json;

const T: Duration = Duration::from_secs(30);
const MAC: &str = "52:54:00:aa:bb:21";

fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    text::sum(samples, name, with)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_listener() {
    let db = test_db(Backend::Sqlite, "metrics").await.unwrap();
    let mut config = test_config(&db.url);
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let (running, api) = start_with(config).await;
    let metrics = running.metrics_addr.expect("the metrics listener is bound");

    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": "metrics-1",
            "deploy_interface": "direct", "boot_interface": "ipxe", "inspect_interface": "agent",
        }))
        .await;
    let (st, _) = api
        .post("/v1/ports", json!({"address": MAC, "node_uuid": uuid}))
        .await;
    assert_eq!(st, 201);
    let agent = SimAgent::start(&api.base, MAC).await;
    api.provision("metrics-1", json!({"target": "manage"}))
        .await;
    api.wait_state("metrics-1", "manageable", T).await;
    api.provision("metrics-1", json!({"target": "inspect"}))
        .await;
    agent.reboot();
    api.wait_state("metrics-1", "manageable", T).await;
    api.provision("metrics-1", json!({"target": "provide"}))
        .await;
    agent.reboot();
    api.wait_state("metrics-1", "available", T).await;

    // Refused agent calls: an unknown MAC, a heartbeat without a token.
    let (st, _) = api.get("/v1/lookup?addresses=52:54:00:00:00:99").await;
    assert_eq!(st, 404);
    let (st, _) = api
        .post(
            &format!("/v1/heartbeat/{uuid}"),
            json!({"callback_url": "http://127.0.0.1:9", "agent_token": "wrong"}),
        )
        .await;
    assert!(st >= 400, "{st}");
    // API requests: found, not found, no route at all.
    assert_eq!(api.get(&format!("/v1/nodes/{uuid}")).await.0, 200);
    assert_eq!(api.get("/v1/nodes/no-such-node").await.0, 404);
    assert_eq!(api.get("/v2/nothing/here").await.0, 404);
    // One power sync pass (its interval is long by default).
    running.conductor.sync_power_states().await.unwrap();

    let resp = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"));
    for family in [
        "ingot_phase_duration_seconds histogram",
        "ingot_step_duration_seconds histogram",
        "ingot_nodes gauge",
        "ingot_power_sync_pass_duration_seconds histogram",
        "ingot_power_sync_out_of_band_changes counter",
        "ingot_agent_command_duration_seconds histogram",
        "ingot_agent_lookups counter",
        "ingot_agent_heartbeats counter",
        "ingot_api_requests counter",
        "ingot_api_request_duration_seconds histogram",
        "ingot_db_pool_connections gauge",
        "ingot_db_pool_max_connections gauge",
        "ingot_image_cache_requests counter",
        "ingot_image_cache_served_bytes counter",
        "ingot_image_cache_downloaded_bytes counter",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family}\n")),
            "{family}:\n{body}"
        );
    }
    // Label sets appear with their first sample: no BMC error here.
    assert!(!body.contains("ingot_bmc_errors"), "{body}");
    let s = text::parse(&body);
    let misses = [("result", "miss")];
    assert_eq!(value(&s, "ingot_image_cache_requests_total", &misses), 0.0);
    assert!(body.contains("ingot_image_cache_requests_total{result=\"hit\"} 0\n"));

    let nodes = [
        ("provision_state", "available"),
        ("power_state", "power off"),
    ];
    assert_eq!(value(&s, "ingot_nodes", &nodes), 1.0, "{body}");
    assert_eq!(value(&s, "ingot_nodes", &[]), 1.0);
    for phase in ["inspect", "clean"] {
        let l = [("phase", phase), ("result", "success")];
        assert_eq!(
            value(&s, "ingot_phase_duration_seconds_count", &l),
            1.0,
            "{phase}"
        );
        let took = value(&s, "ingot_phase_duration_seconds_sum", &l);
        assert!(took > 0.0 && took < T.as_secs_f64(), "{phase}: {took}");
    }
    assert!(
        value(
            &s,
            "ingot_step_duration_seconds_count",
            &[("phase", "clean"), ("result", "success")]
        ) >= 1.0,
        "{body}"
    );
    let sent = [("command", "clean.execute_clean_step"), ("result", "ok")];
    assert!(value(&s, "ingot_agent_command_duration_seconds_count", &sent) >= 1.0);
    let listed = [("command", "list_commands"), ("result", "ok")];
    assert!(value(&s, "ingot_agent_command_duration_seconds_count", &listed) >= 1.0);
    let accepted = [("result", "accepted")];
    let rejected = [("result", "rejected")];
    assert!(value(&s, "ingot_agent_lookups_total", &accepted) >= 2.0);
    // The agent looked itself up before the node waited for it, too.
    assert!(value(&s, "ingot_agent_lookups_total", &rejected) >= 1.0);
    assert!(value(&s, "ingot_agent_heartbeats_total", &accepted) >= 2.0);
    // The wrong token above; the simulated agent may also have been refused
    // once after the node left the states it heartbeats in.
    assert!(value(&s, "ingot_agent_heartbeats_total", &rejected) >= 1.0);

    let route = |r: &'static str, status: &'static str| {
        value(
            &s,
            "ingot_api_requests_total",
            &[("method", "GET"), ("route", r), ("status", status)],
        )
    };
    assert!(route("/v1/nodes/{ident}", "200") >= 1.0, "{body}");
    assert_eq!(route("/v1/nodes/{ident}", "404"), 1.0);
    assert_eq!(route("unmatched", "404"), 1.0);
    // Route patterns, never raw paths: no label holds the node's UUID.
    assert!(
        s.iter()
            .all(|x| x.labels.iter().all(|(_, v)| !v.contains(&uuid))),
        "{body}"
    );
    assert!(
        value(
            &s,
            "ingot_api_request_duration_seconds_count",
            &[("route", "/v1/nodes/{ident}")]
        ) >= 2.0
    );

    assert!(value(&s, "ingot_power_sync_pass_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(value(&s, "ingot_db_pool_max_connections", &[]), 4.0);
    assert!(value(&s, "ingot_db_pool_connections", &[]) >= 1.0);

    // The listener serves /metrics only, and the API does not serve it.
    let (st, _) = common::Api::new(&format!("http://{metrics}"))
        .get("/v1/nodes")
        .await;
    assert_eq!(st, 404);
    assert_eq!(api.get("/metrics").await.0, 404);
    running.shutdown().await;
}

/// `ingot_nodes` comes from one `GROUP BY` whose power-state expression
/// differs per database: both are checked (this test records no metric).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_counted_by_state_on_both_databases() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = test_db(backend, "metrics_counts").await else {
            continue;
        };
        let (running, api) = start_with(test_config(&db.url)).await;
        for name in ["count-1", "count-2", "count-3"] {
            api.create_node(json!({"driver": "fake-hardware", "name": name}))
                .await;
        }
        api.set_power("count-1", "power on").await;
        api.wait_power_state("count-1", "power on", T).await;
        let mut counts = running
            .conductor
            .db()
            .count_nodes_by_state()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.provision_state, c.power_state, c.nodes))
            .collect::<Vec<_>>();
        counts.sort();
        assert_eq!(
            counts,
            [
                ("enroll".to_owned(), None, 2),
                ("enroll".to_owned(), Some("power on".to_owned()), 1),
            ],
            "{backend:?}"
        );
        let pool = running.conductor.db().pool_stats();
        assert!(pool.open >= 1 && pool.idle <= pool.open, "{pool:?}");
        running.shutdown().await;
    }
}

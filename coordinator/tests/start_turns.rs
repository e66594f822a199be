//! `[conductor] max_concurrent_starts`: operations start in turns, and an
//! agent that heartbeats is driven at once however many nodes wait for a
//! turn.
//!
//! The power driver is the `fake` driver with hooks that take
//! `driver_info.test_power_ms` per power action and count how many run at
//! once: this tests the conductor's scheduling, which no BMC can show
//! deterministically (the fleet benchmark drives real IPMI at scale).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::agent_sim::SimAgent;
use common::hooked_power::{HookedPower, Hooks};
use common::{Api, Backend, test_config, test_db};
use ingot_coordinator::power::{BoxFuture, PowerAction, PowerDrivers, PowerTarget};
use ingot_coordinator::server::start;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const MAC: &str = "52:54:00:77:00:01";

/// Power actions take `driver_info.test_power_ms`; counts how many run at once.
#[derive(Default)]
struct Slow {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Hooks for Slow {
    fn power<'a>(&'a self, target: &'a PowerTarget, _action: PowerAction) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(running, Ordering::SeqCst);
            let ms = target
                .driver_info
                .get("test_power_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
        })
    }
}

/// A coordinator on SQLite with `max_concurrent_starts = limit` and the
/// slow driver as `fake` power.
async fn coordinator(
    limit: usize,
) -> (
    ingot_coordinator::server::Running,
    Api,
    Arc<HookedPower<Slow>>,
    common::TestDb,
) {
    let db = test_db(Backend::Sqlite, "start_turns").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.conductor.max_concurrent_starts = limit;
    let slow = Arc::new(HookedPower::<Slow>::default());
    let mut drivers = PowerDrivers::default();
    drivers.register("fake", slow.clone());
    let running = start(cfg, drivers).await.unwrap();
    let api = Api::new(&format!("http://{}", running.addr));
    (running, api, slow, db)
}

async fn slow_node(api: &Api, name: &str, power_ms: u64) -> String {
    api.create_node(json!({
        "driver": "fake-hardware", "name": name,
        "driver_info": {"test_power_ms": power_ms},
    }))
    .await
}

/// Asks for power on of every node in `uuids`, without waiting.
async fn ask_power_on(api: &Api, uuids: &[String]) {
    for u in uuids {
        let (st, v) = api
            .put(
                &format!("/v1/nodes/{u}/states/power"),
                json!({"target": "power on"}),
            )
            .await;
        assert_eq!(st, 202, "{v}");
    }
}

/// Power requests on four nodes at once: one at a time with a limit of 1,
/// several together with a limit of 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_requests_take_turns() {
    for limit in [1, 4] {
        let (running, api, slow, _db) = coordinator(limit).await;
        let mut uuids = Vec::new();
        for i in 0..4 {
            uuids.push(slow_node(&api, &format!("n{i}"), 1000).await);
        }
        let started = Instant::now();
        ask_power_on(&api, &uuids).await;
        for u in &uuids {
            api.wait_power_state(u, "power on", T).await;
        }
        let took = started.elapsed();
        let peak = slow.peak.load(Ordering::SeqCst);
        if limit == 1 {
            assert_eq!(peak, 1, "limit 1: power actions running at once");
        } else {
            assert!(
                peak > 1,
                "limit {limit}: only {peak} power action at a time"
            );
        }
        if limit == 1 {
            assert!(
                took >= Duration::from_millis(4000),
                "four 1 s actions one at a time took {took:?}"
            );
        }
        running.shutdown().await;
    }
}

/// With one turn, held for seconds by slow power requests queued on other
/// nodes, a node whose agent heartbeats is still cleaned at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_do_not_wait_for_turns() {
    let (running, api, _slow, _db) = coordinator(1).await;
    let a = api
        .create_node(json!({
            "driver": "fake-hardware", "name": "agent-node",
            "deploy_interface": "direct", "boot_interface": "ipxe",
        }))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"address": MAC, "node_uuid": a}))
        .await;
    assert_eq!(st, 201, "{v}");
    let mut queued = Vec::new();
    for i in 0..4 {
        queued.push(slow_node(&api, &format!("slow{i}"), 2000).await);
    }
    api.provision(&a, json!({"target": "manage"})).await;
    api.wait_state(&a, "manageable", T).await;
    api.provision(&a, json!({"target": "provide"})).await;
    api.wait_state(&a, "clean wait", T).await;
    // Four power requests of 2 s each: 8 s of turns, one at a time.
    let queued_at = Instant::now();
    ask_power_on(&api, &queued).await;
    // The ramdisk comes up now.
    let agent = SimAgent::start(&api.base, MAC).await;
    api.wait_state(&a, "available", T).await;
    let cleaned = queued_at.elapsed();
    let mut on = 0;
    for u in &queued {
        if api.node(u).await["power_state"] == "power on" {
            on += 1;
        }
    }
    assert!(
        on < queued.len(),
        "cleaning ended after every queued power request ({cleaned:?}): it waited for a turn"
    );
    assert!(
        cleaned < Duration::from_secs(6),
        "cleaning took {cleaned:?}"
    );
    let names = agent.received_names();
    assert!(
        names.iter().any(|n| n == "clean.execute_clean_step"),
        "{names:?}"
    );
    for u in &queued {
        api.wait_power_state(u, "power on", T).await;
    }
    running.shutdown().await;
}

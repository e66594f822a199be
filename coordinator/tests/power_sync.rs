//! The periodic power-state sync: out-of-band changes recorded, failures
//! counted, maintenance after `max_retries` consecutive failures, reserved and
//! maintenance nodes skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ingot_coordinator::config::Config;
use ingot_coordinator::power::fake::FakePower;
use ingot_coordinator::power::ipmi::{IpmiPower, Timing};
use ingot_coordinator::power::{
    BootDeviceState, BoxFuture, PowerAction, PowerDriver, PowerDrivers, PowerError, PowerState,
    PowerTarget,
};
use ingot_coordinator::server::{Running, start};
use ingot_coordinator::state::ProvisionState;
use serde_json::{Map, Value, json};

const T: Duration = Duration::from_secs(20);

/// A driver whose reads fail while `fail` is set (with `wrong_password`,
/// as an authentication failure), and that counts reads.
#[derive(Default)]
struct Flaky {
    fail: AtomicBool,
    wrong_password: AtomicBool,
    reads: AtomicUsize,
}

impl PowerDriver for Flaky {
    fn validate(&self, _: &Map<String, Value>) -> Result<(), PowerError> {
        Ok(())
    }
    fn get_power_state<'a>(
        &'a self,
        _: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.wrong_password.load(Ordering::SeqCst) {
                Err(PowerError::Auth("RAKP 2 mismatch (test)".into()))
            } else if self.fail.load(Ordering::SeqCst) {
                Err(PowerError::Failed("BMC unreachable (test)".into()))
            } else {
                Ok(PowerState::On)
            }
        })
    }
    fn set_power_state<'a>(
        &'a self,
        _: &'a PowerTarget,
        _: PowerAction,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async { Ok(()) })
    }
    fn set_boot_device<'a>(
        &'a self,
        _: &'a PowerTarget,
        _: &'a str,
        _: bool,
    ) -> BoxFuture<'a, Result<(), PowerError>> {
        Box::pin(async { Ok(()) })
    }
    fn get_boot_device<'a>(
        &'a self,
        _: &'a PowerTarget,
    ) -> BoxFuture<'a, Result<BootDeviceState, PowerError>> {
        Box::pin(async { Ok((None, None)) })
    }
}

fn fake_node(name: &str, power: &str) -> Value {
    json!({
        "driver": "fake-hardware", "name": name,
        "boot_interface": "fake", "deploy_interface": "fake", "management_interface": "fake",
        "network_interface": "noop", "power_interface": power
    })
}

async fn coordinator(db: &str, interval_ms: u64, drivers: PowerDrivers) -> (Running, common::Api) {
    coordinator_with(db, interval_ms, 300_000, drivers).await
}

async fn coordinator_with(
    db: &str,
    interval_ms: u64,
    recovery_interval_ms: u64,
    drivers: PowerDrivers,
) -> (Running, common::Api) {
    let mut config: Config = common::test_config(db);
    config.power_sync.interval_ms = interval_ms;
    config.power_sync.recovery_interval_ms = recovery_interval_ms;
    config.power_sync.max_retries = 3;
    let running = start(config, drivers).await.unwrap();
    let api = common::Api::new(&format!("http://{}", running.addr));
    (running, api)
}

/// Moves a node to `manageable` without verifying it (its BMC worked once).
async fn make_manageable(running: &Running, uuid: &str) {
    running
        .conductor
        .db()
        .update_node::<(), _>(uuid, |n| {
            n.provision_state = ProvisionState::Manageable;
            n.power_state = Some(PowerState::On);
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn out_of_band_change_on_fake_power_is_recorded() {
    let db = common::test_db(common::Backend::Sqlite, "sync_fake")
        .await
        .unwrap();
    let fake = Arc::new(FakePower::default());
    let mut drivers = PowerDrivers::default();
    drivers.register("fake", fake.clone());
    let (running, api) = coordinator(&db.url, 100, drivers).await;

    let uuid = api.create_node(fake_node("oob", "fake")).await;
    api.provision("oob", json!({"target": "manage"})).await;
    let n = api.wait_state("oob", "manageable", T).await;
    // Fake power knows no state until one is set, as Ironic's.
    assert!(n["power_state"].is_null(), "{n}");

    // Behind the coordinator's back: the node is switched on at the BMC.
    let target = PowerTarget {
        node_uuid: uuid.clone(),
        driver_info: Map::new(),
        recorded: None,
        boot_mode: None,
    };
    fake.set_power_state(&target, PowerAction::On)
        .await
        .unwrap();

    let start = Instant::now();
    loop {
        let n = api.node("oob").await;
        if n["power_state"] == "power on" {
            assert_eq!(n["maintenance"], false, "{n}");
            break;
        }
        assert!(
            start.elapsed() < T,
            "out-of-band power on not recorded: {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running.conductor.power_sync_passes() >= 1);
    running.shutdown().await;
}

#[tokio::test]
async fn failures_are_counted_cleared_on_success_and_lead_to_maintenance() {
    let db = common::test_db(common::Backend::Sqlite, "sync_flaky")
        .await
        .unwrap();
    let flaky = Arc::new(Flaky::default());
    let mut drivers = PowerDrivers::default();
    drivers.register("fake", flaky.clone());
    let (running, api) = coordinator(&db.url, 0, drivers).await;
    let c = running.conductor.clone();

    let uuid = api.create_node(fake_node("flaky", "fake")).await;
    make_manageable(&running, &uuid).await;
    // Skipped: a reserved node and a node in maintenance.
    let locked = api.create_node(fake_node("locked", "fake")).await;
    make_manageable(&running, &locked).await;
    c.db()
        .update_node::<(), _>(&locked, |n| {
            n.reservation = Some("someone-else".into());
            Ok(())
        })
        .await
        .unwrap();
    let maint = api.create_node(fake_node("maint", "fake")).await;
    make_manageable(&running, &maint).await;
    let (st, v) = api
        .put("/v1/nodes/maint/maintenance", json!({"reason": "by hand"}))
        .await;
    assert!(st == 202 || st == 204 || st == 200, "{st} {v}");

    flaky.fail.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let r = c.sync_power_states().await.unwrap();
        assert_eq!((r.checked, r.skipped, r.failed), (1, 2, 1), "{r:?}");
    }
    flaky.fail.store(false, Ordering::SeqCst);
    let r = c.sync_power_states().await.unwrap();
    assert_eq!((r.checked, r.failed), (1, 0), "{r:?}");
    flaky.fail.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let r = c.sync_power_states().await.unwrap();
        assert_eq!(r.to_maintenance, 0, "the count was not cleared: {r:?}");
    }
    assert_eq!(api.node("flaky").await["maintenance"], false);
    let r = c.sync_power_states().await.unwrap();
    assert_eq!(r.to_maintenance, 1, "{r:?}");
    assert_eq!(flaky.reads.load(Ordering::SeqCst), 6);

    let n = api.node("flaky").await;
    assert_eq!(n["maintenance"], true, "{n}");
    assert_eq!(n["fault"], "power failure", "{n}");
    let reason = n["maintenance_reason"].as_str().unwrap();
    assert!(reason.contains("max retries exceeded"), "{reason}");
    assert!(reason.contains("BMC unreachable (test)"), "{reason}");
    assert!(reason.contains("3 times in a row (failed)"), "{reason}");
    // In maintenance, the node is no longer read.
    let r = c.sync_power_states().await.unwrap();
    assert_eq!((r.checked, r.skipped), (0, 3), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn an_authentication_failure_is_not_retried() {
    let db = common::test_db(common::Backend::Sqlite, "sync_auth")
        .await
        .unwrap();
    let flaky = Arc::new(Flaky::default());
    flaky.wrong_password.store(true, Ordering::SeqCst);
    let mut drivers = PowerDrivers::default();
    drivers.register("fake", flaky.clone());
    let (running, api) = coordinator(&db.url, 0, drivers).await;
    let c = running.conductor.clone();
    let uuid = api.create_node(fake_node("wrong-pw", "fake")).await;
    make_manageable(&running, &uuid).await;

    // The next pass would fail the same way: maintenance at once.
    let r = c.sync_power_states().await.unwrap();
    assert_eq!((r.failed, r.to_maintenance), (1, 1), "{r:?}");
    let n = api.node("wrong-pw").await;
    assert_eq!(n["maintenance"], true, "{n}");
    assert_eq!(n["fault"], "power failure", "{n}");
    let reason = n["maintenance_reason"].as_str().unwrap();
    assert!(
        reason.contains("(authentication failed; retrying would not help)")
            && reason.contains("RAKP 2 mismatch (test)")
            && reason.contains(&uuid),
        "{reason}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn ipmi_node_with_a_dead_bmc_goes_to_maintenance_after_three_passes() {
    let db = common::test_db(common::Backend::Sqlite, "sync_ipmi")
        .await
        .unwrap();
    // A closed port on loopback: nothing answers.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let timing = Timing {
        timeout: Duration::from_millis(100),
        retries: 1,
        backoff: Duration::from_millis(10),
        min_interval: Duration::from_millis(5),
        ..Timing::default()
    };
    let mut drivers = PowerDrivers::default();
    drivers.register(
        "ipmitool",
        Arc::new(IpmiPower::new(
            timing,
            Duration::from_secs(2),
            Duration::from_millis(100),
        )),
    );
    let (running, api) = coordinator(&db.url, 150, drivers).await;
    let uuid = api
        .create_node(
            json!({"driver": "ipmi", "name": "dead-bmc", "driver_info": {
                "ipmi_address": "127.0.0.1", "ipmi_port": port,
                "ipmi_username": "admin", "ipmi_password": "secret",
            }}),
        )
        .await;
    let passes_before = running.conductor.power_sync_passes();
    make_manageable(&running, &uuid).await;

    let start = Instant::now();
    let n = loop {
        let n = api.node("dead-bmc").await;
        if n["maintenance"] == true {
            break n;
        }
        assert!(start.elapsed() < T, "not in maintenance: {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(running.conductor.power_sync_passes() >= passes_before + 3);
    assert_eq!(n["fault"], "power failure", "{n}");
    assert_eq!(n["power_state"], Value::Null, "{n}");
    let reason = n["maintenance_reason"].as_str().unwrap();
    assert!(
        reason.contains("max retries exceeded")
            && reason.contains(&uuid)
            && reason.contains("(unreachable)")
            && reason.contains("IPMI call failed: the BMC is unreachable"),
        "{reason}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_power_failure_node_leaves_maintenance_when_its_bmc_answers_again() {
    let db = common::test_db(common::Backend::Sqlite, "sync_recover")
        .await
        .unwrap();
    let flaky = Arc::new(Flaky::default());
    let mut drivers = PowerDrivers::default();
    drivers.register("fake", flaky.clone());
    // Recovery tried on every pass.
    let (running, api) = coordinator_with(&db.url, 0, 1, drivers).await;
    let c = running.conductor.clone();
    let uuid = api.create_node(fake_node("back", "fake")).await;
    make_manageable(&running, &uuid).await;
    // Put in maintenance by hand: not the sync's to clear.
    let by_hand = api.create_node(fake_node("by-hand", "fake")).await;
    make_manageable(&running, &by_hand).await;
    let (st, v) = api
        .put(
            "/v1/nodes/by-hand/maintenance",
            json!({"reason": "by hand"}),
        )
        .await;
    assert!(st == 202 || st == 204 || st == 200, "{st} {v}");

    flaky.fail.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        c.sync_power_states().await.unwrap();
    }
    assert_eq!(api.node("back").await["fault"], "power failure");
    // Still failing: tried, stays in maintenance.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let r = c.sync_power_states().await.unwrap();
    assert_eq!((r.checked, r.failed, r.recovered), (1, 1, 0), "{r:?}");
    assert_eq!(api.node("back").await["maintenance"], true);

    flaky.fail.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2)).await;
    let r = c.sync_power_states().await.unwrap();
    assert_eq!(r.recovered, 1, "{r:?}");
    let n = api.node("back").await;
    assert_eq!(n["maintenance"], false, "{n}");
    assert_eq!(n["fault"], Value::Null, "{n}");
    assert_eq!(n["maintenance_reason"], Value::Null, "{n}");
    assert_eq!(n["power_state"], "power on", "{n}");
    let n = api.node("by-hand").await;
    assert_eq!(n["maintenance"], true, "{n}");
    assert_eq!(n["maintenance_reason"], "by hand", "{n}");
    running.shutdown().await;
}

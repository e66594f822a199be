//! The state machine through the API with `fake-hardware`, restart recovery,
//! concurrent operations on one node, and wait-state timeouts; each on
//! SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, faultstring, start_with, test_config, test_db};
use ingot_coordinator::db::Db;
use ingot_coordinator::model::Intent;
use ingot_coordinator::state::ProvisionState;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both!(
    fake_lifecycle,
    restart_recovery,
    concurrent_operations,
    wait_state_timeout
);

fn fake_node(name: &str) -> serde_json::Value {
    json!({
        "driver": "fake-hardware", "name": name, "resource_class": "baremetal",
        "properties": {"cpus": 2, "memory_mb": 4096, "local_gb": 10, "cpu_arch": "x86_64"},
        "boot_interface": "fake", "deploy_interface": "fake", "management_interface": "fake",
        "network_interface": "noop", "power_interface": "fake"
    })
}

async fn fake_lifecycle(backend: Backend) {
    let Some(db) = test_db(backend, "fake_lifecycle").await else {
        return;
    };
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = api.create_node(fake_node("fake-1")).await;
    let n = api.node("fake-1").await;
    assert_eq!(n["provision_state"], "enroll");
    assert_eq!(n["uuid"], uuid.as_str());
    let (st, p) = api
        .post(
            "/v1/ports",
            json!({"address": "52:54:00:12:34:56", "node_uuid": uuid}),
        )
        .await;
    assert_eq!(st, 201, "{p}");

    api.provision("fake-1", json!({"target": "manage"})).await;
    let n = api.wait_state("fake-1", "manageable", T).await;
    // Fake power knows no state until one is set (Ironic's fake power).
    assert_eq!(n["power_state"], Value::Null);
    api.provision("fake-1", json!({"target": "provide"})).await;
    api.wait_state("fake-1", "available", T).await;

    let instance = "8f9a2c3e-6a51-4a47-9b8c-0b3f1f3e7a10";
    let (st, v) = api
        .patch(
            "/v1/nodes/fake-1",
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": "http://127.0.0.1:8088/img.raw"},
                {"op": "add", "path": "/instance_info/image_checksum", "value": "abc"},
                {"op": "add", "path": "/instance_info/root_gb", "value": "1"},
                {"op": "replace", "path": "/instance_uuid", "value": instance}
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["instance_uuid"], instance);
    api.provision(
        "fake-1",
        json!({"target": "active", "configdrive": "H4sIAAAAAAAA"}),
    )
    .await;
    let n = api.wait_state("fake-1", "active", T).await;
    // The fake deploy interface touches no power.
    assert_eq!(n["power_state"], Value::Null);
    assert_eq!(n["instance_info"]["configdrive"], "******");
    assert_eq!(
        n["instance_info"]["image_source"],
        "http://127.0.0.1:8088/img.raw"
    );
    // Nova finds the node by instance.
    let (_, l) = api
        .get(&format!(
            "/v1/nodes?instance_uuid={instance}&fields=uuid,provision_state"
        ))
        .await;
    assert_eq!(l["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(l["nodes"][0]["provision_state"], "active");

    for (target, state) in [
        ("power off", "power off"),
        ("power on", "power on"),
        ("rebooting", "power on"),
    ] {
        let (st, v) = api
            .put("/v1/nodes/fake-1/states/power", json!({"target": target}))
            .await;
        assert_eq!(st, 202, "{v}");
        let deadline = std::time::Instant::now() + T;
        loop {
            let n = api.node("fake-1").await;
            if n["target_power_state"].is_null() && n["power_state"] == state {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "power {target}: {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    api.provision("fake-1", json!({"target": "deleted"})).await;
    let n = api.wait_state("fake-1", "available", T).await;
    assert!(n["instance_uuid"].is_null());
    assert_eq!(n["instance_info"], json!({}));
    // Nor does its tear-down: the node stays as the client left it.
    assert_eq!(n["power_state"], "power on");

    let (st, _) = api.delete("/v1/nodes/fake-1").await;
    assert_eq!(st, 204);
    let (st, v) = api.get("/v1/nodes/fake-1").await;
    assert_eq!(st, 404);
    assert_eq!(faultstring(&v), "Node fake-1 could not be found.");
    let (_, ports) = api.get("/v1/ports").await;
    assert_eq!(ports["ports"], json!([]), "ports go with their node");
    running.shutdown().await;
}

async fn restart_recovery(backend: Backend) {
    let Some(db) = test_db(backend, "restart_recovery").await else {
        return;
    };
    let cfg = test_config(&db.url);
    let (running, api) = start_with(cfg.clone()).await;
    let deploying = api.create_node(fake_node("n-deploying")).await;
    let cleaning = api.create_node(fake_node("n-cleaning")).await;
    let waiting = api.create_node(fake_node("n-waiting")).await;
    let locked = api.create_node(fake_node("n-locked")).await;
    running.shutdown().await;

    // What a crash leaves behind: transient states, a held reservation.
    let store = Db::connect(&db.url).await.unwrap();
    let set = |state: ProvisionState, intent: Option<Intent>, reserve: bool| {
        move |n: &mut ingot_coordinator::model::Node| -> Result<(), ()> {
            n.set_provision_state(state, Some(ProvisionState::Active));
            n.intent = intent.clone();
            if reserve {
                n.reservation = Some("ingot".into());
            }
            Ok(())
        }
    };
    store
        .update_node(
            &deploying,
            set(ProvisionState::Deploying, Some(Intent::Deploy), true),
        )
        .await
        .unwrap();
    store
        .update_node(
            &cleaning,
            set(
                ProvisionState::Cleaning,
                Some(Intent::Clean { steps: None }),
                false,
            ),
        )
        .await
        .unwrap();
    store
        .update_node(&waiting, set(ProvisionState::WaitCallBack, None, false))
        .await
        .unwrap();
    store
        .update_node(&locked, |n| -> Result<(), ()> {
            n.reservation = Some("ingot".into());
            Ok(())
        })
        .await
        .unwrap();
    store.close().await;

    let (running, api) = start_with(cfg).await;
    // Operations cut short resume from their recorded intent (the handlers
    // are idempotent): nothing fails.
    let n = api.wait_state(&deploying, "active", T).await;
    assert!(n["reservation"].is_null());
    assert!(n["last_error"].is_null(), "{n}");
    let n = api.wait_state(&cleaning, "available", T).await;
    assert!(n["last_error"].is_null(), "{n}");
    // Wait states survive: the agent is still there and its timeout still runs.
    let n = api.node(&waiting).await;
    assert_eq!(n["provision_state"], "wait call-back");
    let n = api.node(&locked).await;
    assert!(
        n["reservation"].is_null(),
        "stale reservation released: {n}"
    );
    assert_eq!(n["provision_state"], "enroll");
    running.shutdown().await;
}

async fn concurrent_operations(backend: Backend) {
    let Some(db) = test_db(backend, "concurrent_operations").await else {
        return;
    };
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = api.create_node(fake_node("race")).await;

    // Ten clients send `manage` at once: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let api = api.clone();
        let uuid = uuid.clone();
        tasks.push(tokio::spawn(async move {
            api.put(
                &format!("/v1/nodes/{uuid}/states/provision"),
                json!({"target": "manage"}),
            )
            .await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            202 => accepted += 1,
            400 | 409 => {
                faultstring(&v);
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(accepted, 1, "exactly one manage accepted");
    api.wait_state(&uuid, "manageable", T).await;
    api.provision(&uuid, json!({"target": "provide"})).await;
    api.wait_state(&uuid, "available", T).await;

    // Ten instances claim the node at once: one reservation, nine 409s.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let api = api.clone();
        let uuid = uuid.clone();
        let instance = format!("00000000-0000-4000-8000-{i:012}");
        tasks.push(tokio::spawn(async move {
            let r = api
                .patch(
                    &format!("/v1/nodes/{uuid}"),
                    json!([{"op": "add", "path": "/instance_uuid", "value": instance}]),
                )
                .await;
            (instance, r)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (instance, (st, v)) = t.await.unwrap();
        match st {
            200 => winners.push(instance),
            409 => assert!(faultstring(&v).contains("associated with instance"), "{v}"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(api.node(&uuid).await["instance_uuid"], winners[0].as_str());

    // Deploy and delete racing: the state machine admits one of them.
    let a = api.clone();
    let b = api.clone();
    let (u1, u2) = (uuid.clone(), uuid.clone());
    let (r1, r2) = tokio::join!(
        async move {
            a.put(
                &format!("/v1/nodes/{u1}/states/provision"),
                json!({"target": "active"}),
            )
            .await
        },
        async move { b.delete(&format!("/v1/nodes/{u2}")).await },
    );
    assert_eq!(r1.0, 202, "{}", r1.1);
    assert_eq!(r2.0, 409, "an associated node cannot be deleted: {}", r2.1);
    api.wait_state(&uuid, "active", T).await;
    running.shutdown().await;
}

async fn wait_state_timeout(backend: Backend) {
    let Some(db) = test_db(backend, "wait_state_timeout").await else {
        return;
    };
    let mut cfg = test_config(&db.url);
    // Long enough for the test to see `wait call-back` on a busy machine.
    cfg.deploy_callback_timeout = 4;
    let (running, api) = start_with(cfg).await;
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "deploy_interface": "direct", "automated_clean": false,
            "instance_info": {"image_source": "http://127.0.0.1:1/img.raw", "image_checksum": "0123456789abcdef0123456789abcdef"}
        }))
        .await;
    api.provision(&uuid, json!({"target": "manage"})).await;
    api.wait_state(&uuid, "manageable", T).await;
    api.provision(&uuid, json!({"target": "provide"})).await;
    api.wait_state(&uuid, "available", T).await;
    api.provision(&uuid, json!({"target": "active"})).await;
    let n = api.wait_state(&uuid, "wait call-back", T).await;
    assert_eq!(n["power_state"], "power on");
    let (_, bd) = api
        .get(&format!("/v1/nodes/{uuid}/management/boot_device"))
        .await;
    assert_eq!(bd["boot_device"], "pxe");
    // Nobody heartbeats: the timeout fails the deploy with a clear reason.
    let n = api.wait_state(&uuid, "deploy failed", T).await;
    let err = n["last_error"].as_str().unwrap();
    assert!(
        err.contains("Timeout reached while waiting for callback")
            && err.contains("deploy_callback_timeout"),
        "{err}"
    );
    // As in Ironic, the node is failed first and powered off after.
    api.wait_power_state(&uuid, "power off", T).await;
    running.shutdown().await;
}

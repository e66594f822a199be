//! What Nova's ironic driver relies on between instances (issue 15): the
//! instance's VIFs are detached on tear-down, after a failed deploy and when
//! the instance fields are removed, so three instances in a row on one node
//! each find a free NIC; and a new power action clears a stale `last_error`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

async fn vifs(api: &Api, node: &str) -> Value {
    let (st, v) = api.get(&format!("/v1/nodes/{node}/vifs")).await;
    assert_eq!(st, 200, "{v}");
    v["vifs"].clone()
}

async fn attach(api: &Api, node: &str, vif: &str) {
    let (st, v) = api
        .post(&format!("/v1/nodes/{node}/vifs"), json!({"id": vif}))
        .await;
    assert_eq!(st, 204, "attach {vif}: {v}");
}

/// Nova's spawn: reserve the node for `instance`, attach its VIF, deploy.
async fn spawn(api: &Api, node: &str, instance: &str, vif: &str) {
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{node}"),
            json!([{"op": "add", "path": "/instance_uuid", "value": instance}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    attach(api, node, vif).await;
    assert_eq!(vifs(api, node).await, json!([{"id": vif}]));
}

#[tokio::test]
async fn vifs_go_with_the_instance() {
    let db = test_db(Backend::Sqlite, "nova_cleanup").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    // One node with one NIC: every instance needs that NIC free.
    let node = api
        .create_node(json!({"driver": "fake-hardware", "name": "n1"}))
        .await;
    let (st, p) = api
        .post(
            "/v1/ports",
            json!({"node_uuid": node, "address": "52:54:00:15:00:01"}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    api.provision(&node, json!({"target": "manage"})).await;
    api.wait_state(&node, "manageable", T).await;
    api.provision(&node, json!({"target": "provide"})).await;
    api.wait_state(&node, "available", T).await;

    // 1: deployed and torn down.
    spawn(&api, &node, "11111111-1111-4111-8111-111111111111", "vif-1").await;
    api.provision(&node, json!({"target": "active"})).await;
    api.wait_state(&node, "active", T).await;
    api.provision(&node, json!({"target": "deleted"})).await;
    api.wait_state(&node, "available", T).await;
    assert_eq!(vifs(&api, &node).await, json!([]), "after tear-down");

    // 2: the deploy fails (the direct deploy cannot power the node on),
    // then Nova removes the instance fields and undeploys.
    spawn(&api, &node, "22222222-2222-4222-8222-222222222222", "vif-2").await;
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{node}"),
            json!([
                {"op": "replace", "path": "/deploy_interface", "value": "direct"},
                {"op": "add", "path": "/driver_info/fake_power_fail", "value": true},
                {"op": "add", "path": "/instance_info/image_source", "value": "http://127.0.0.1:9/img.raw"},
                {"op": "add", "path": "/instance_info/image_checksum", "value": "0123456789abcdef0123456789abcdef01234567890abcdef0123456789abcde"}
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    api.provision(&node, json!({"target": "active"})).await;
    let deadline = std::time::Instant::now() + T;
    loop {
        let n = api.node(&node).await;
        if n["provision_state"] == "deploy failed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vifs(&api, &node).await, json!([]), "after a failed deploy");
    let (st, _) = api
        .patch(
            &format!("/v1/nodes/{node}"),
            json!([
                {"op": "replace", "path": "/deploy_interface", "value": "fake"},
                {"op": "remove", "path": "/driver_info/fake_power_fail"},
                {"op": "remove", "path": "/instance_uuid"}
            ]),
        )
        .await;
    assert_eq!(st, 200);
    api.provision(&node, json!({"target": "deleted"})).await;
    api.wait_state(&node, "available", T).await;

    // 3: the spawn fails before the deploy; Nova's cleanup removes the
    // instance fields, and with them the VIF.
    spawn(&api, &node, "33333333-3333-4333-8333-333333333333", "vif-3").await;
    let (st, _) = api
        .patch(
            &format!("/v1/nodes/{node}"),
            json!([{"op": "remove", "path": "/instance_uuid"}]),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        vifs(&api, &node).await,
        json!([]),
        "after the instance fields go"
    );

    // 4: and the NIC is free for the next one.
    spawn(&api, &node, "44444444-4444-4444-8444-444444444444", "vif-4").await;
    running.shutdown().await;
}

#[tokio::test]
async fn a_new_power_action_clears_the_last_error() {
    let db = test_db(Backend::Sqlite, "nova_last_error").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let node = api
        .create_node(json!({"driver": "fake-hardware", "driver_info": {"fake_power_fail": true}}))
        .await;
    let (st, _) = api
        .put(
            &format!("/v1/nodes/{node}/states/power"),
            json!({"target": "power on"}),
        )
        .await;
    assert_eq!(st, 202);
    let deadline = std::time::Instant::now() + T;
    loop {
        let n = api.node(&node).await;
        if n["target_power_state"].is_null() && !n["last_error"].is_null() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, _) = api
        .patch(
            &format!("/v1/nodes/{node}"),
            json!([{"op": "remove", "path": "/driver_info/fake_power_fail"}]),
        )
        .await;
    assert_eq!(st, 200);
    api.set_power(&node, "power on").await;
    let n = api.node(&node).await;
    assert!(n["last_error"].is_null(), "stale error kept: {n}");
    running.shutdown().await;
}

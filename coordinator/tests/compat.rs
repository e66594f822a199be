//! Ironic compatibility found by real clients (issue 14): collections Ingot
//! does not model answer an empty list where Ironic does, from the
//! microversion Ironic added them, since clients read them on their normal
//! paths (Nova's ironic driver lists volume targets while it cleans up a
//! failed spawn, and a 404 stopped that cleanup); `/v1/` lists Ironic's
//! resources with `media_types` as an object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, start_with, test_config, test_db};
use serde_json::json;

#[tokio::test]
async fn empty_collections_and_the_v1_document() {
    let db = test_db(Backend::Sqlite, "compat").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "n1"}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    let uuid = n["uuid"].as_str().unwrap();
    // Nova's own request.
    let (st, v) = api
        .with_version(Some("1.46"))
        .get(&format!("/v1/volume/targets?node={uuid}&detail=True"))
        .await;
    assert_eq!((st, v), (200, json!({"targets": []})));
    for (path, key) in [
        ("/v1/volume/connectors".to_owned(), "connectors"),
        ("/v1/deploy_templates".to_owned(), "deploy_templates"),
        ("/v1/shards".to_owned(), "shards"),
        ("/v1/runbooks".to_owned(), "runbooks"),
        (format!("/v1/nodes/{uuid}/bios"), "bios"),
        (format!("/v1/nodes/{uuid}/firmware"), "firmware"),
        (format!("/v1/nodes/{uuid}/children"), "children"),
        (format!("/v1/nodes/{uuid}/history"), "history"),
        ("/v1/nodes/n1/history".to_owned(), "history"),
    ] {
        let (st, v) = api.get(&path).await;
        assert_eq!((st, &v), (200, &json!({ key: [] })), "{path}");
        // Before the version that added it: 404, as from Ironic.
        let (st, _) = api.with_version(Some("1.31")).get(&path).await;
        assert_eq!(st, 404, "{path} at 1.31");
    }
    let (st, _) = api.get("/v1/nodes/nope/bios").await;
    assert_eq!(st, 404);
    let (st, v) = api.get("/v1/volume").await;
    assert_eq!(st, 200);
    assert!(
        v["targets"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/v1/volume/targets"),
        "{v}"
    );

    let (_, v1) = api.get("/v1/").await;
    assert_eq!(
        v1["media_types"]["type"],
        "application/vnd.openstack.ironic.v1+json"
    );
    for r in [
        "runbooks",
        "shards",
        "volume",
        "events",
        "deploy_templates",
        "inspection_rules",
        "continue_inspection",
    ] {
        assert!(v1[r].is_array(), "{r} missing from /v1/: {v1}");
    }
    running.shutdown().await;
}

/// Brings a fake-hardware node to `available`.
async fn available(api: &common::Api, name: &str, traits: &[&str]) -> String {
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": name, "resource_class": "baremetal",
                   "automated_clean": false}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    for t in traits {
        let (st, v) = api
            .put(&format!("/v1/nodes/{name}/traits/{t}"), json!({}))
            .await;
        assert!(st < 300, "{v}");
    }
    api.provision(name, json!({"target": "manage"})).await;
    api.wait_state(name, "manageable", std::time::Duration::from_secs(30))
        .await;
    api.provision(name, json!({"target": "provide"})).await;
    api.wait_state(name, "available", std::time::Duration::from_secs(30))
        .await;
    api.set_power(name, "power off").await;
    n["uuid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn allocations_accept_what_metalsmith_sends() {
    let db = test_db(Backend::Sqlite, "compat_alloc").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    available(&api, "m1", &["CUSTOM_GOLD"]).await;
    let m2 = available(&api, "m2", &["CUSTOM_GOLD"]).await;
    // metalsmith's body, nulls and all.
    let (st, a) = api
        .post(
            "/v1/allocations",
            json!({"candidate_nodes": null, "traits": ["CUSTOM_GOLD"], "extra": null, "uuid": null,
                   "name": null, "owner": null, "resource_class": "baremetal"}),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["state"], "active", "{a}");
    let picked = a["node_uuid"].as_str().unwrap();
    // The allocation's traits are in the node's instance_info.
    let n = api.node(picked).await;
    assert_eq!(n["instance_info"]["traits"], json!(["CUSTOM_GOLD"]), "{n}");
    // Candidates by name are stored as UUIDs.
    let other = if picked == m2 { "m1" } else { "m2" };
    let (st, b) = api
        .post(
            "/v1/allocations",
            json!({"candidate_nodes": [other], "resource_class": "baremetal", "traits": null}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let other_uuid = api.node(other).await["uuid"].as_str().unwrap().to_owned();
    assert_eq!(b["candidate_nodes"], json!([other_uuid]));
    assert_eq!(b["node_uuid"], other_uuid.as_str());
    // Nulls in node and port creates are "absent" too.
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "nulls", "extra": null, "driver_info": null,
                   "properties": null, "uuid": null}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    let (st, p) = api
        .post(
            "/v1/ports",
            json!({"address": "52:54:00:00:77:01", "node_uuid": n["uuid"], "extra": null}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    running.shutdown().await;
}

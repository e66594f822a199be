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

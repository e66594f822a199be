//! The node list in the database (issue 21 item 5): for many combinations of
//! filters, sort keys, directions and page sizes, walking the pages the
//! database cuts (following `next`) gives exactly the nodes, in the order,
//! that the in-memory path gives (the same request with a
//! `description_contains` filter that every node passes, which keeps the
//! list in memory). On SQLite,
//! and on PostgreSQL when a server is available.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::{Value, json};

/// The UUIDs of a list walked page by page from `path`.
async fn walk(api: &Api, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Some(path.to_owned());
    let mut pages = 0;
    while let Some(p) = next.take() {
        let (st, doc) = api.get(&p).await;
        assert_eq!(st, 200, "GET {p}: {doc}");
        for n in doc["nodes"].as_array().unwrap() {
            out.push(n["uuid"].as_str().unwrap().to_owned());
        }
        next = doc["next"]
            .as_str()
            .map(|n| n.strip_prefix(&api.base).unwrap().to_owned());
        pages += 1;
        assert!(pages < 100, "{path}: no end");
    }
    out
}

async fn sql_and_memory_agree(backend: Backend) {
    let Some(db) = test_db(backend, "node_list").await else {
        return;
    };
    let (_running, api) = start_with(test_config(&db.url)).await;
    for i in 0..23 {
        let class = ["small", "large", "gpu"][i % 3];
        let mut body = json!({
            "driver": "fake-hardware",
            "name": format!("n{:02}", 22 - i),
            "resource_class": class,
            "conductor_group": if i % 4 == 0 { "Rack1" } else { "" },
            "description": "a node",
        });
        if i % 5 == 0 {
            body["owner"] = json!("p1");
        }
        if i % 7 == 0 {
            body["lessee"] = json!("p1");
        }
        let uuid = api.create_node(body).await;
        if i % 3 == 1 {
            let (st, v) = api
                .put(
                    &format!("/v1/nodes/{uuid}/maintenance"),
                    json!({"reason": "x"}),
                )
                .await;
            assert!(st == 202 || st == 200 || st == 204, "{st} {v}");
        }
        if i % 6 == 2 {
            let (st, v) = api
                .put(
                    &format!("/v1/nodes/{uuid}/states/provision"),
                    json!({"target": "manage"}),
                )
                .await;
            assert_eq!(st, 202, "{v}");
        }
    }
    // Let the manage transitions settle (fake-hardware verifies at once).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let all = walk(&api, "/v1/nodes").await;
    assert_eq!(all.len(), 23);
    let queries = [
        "",
        "resource_class=gpu",
        "owner=p1",
        "lessee=p1",
        "maintenance=true",
        "maintenance=false&resource_class=small",
        "conductor_group=RACK1",
        "associated=false&driver=fake-hardware",
        "provision_state=manageable",
        "sort_key=uuid&sort_dir=desc",
        "sort_key=provision_state",
        "sort_key=provision_state&sort_dir=desc",
        "sort_key=maintenance&sort_dir=desc&resource_class=large",
        "sort_key=driver",
        "sort_key=created_at&sort_dir=desc",
        "sort_dir=desc",
    ];
    for q in queries {
        let memory = walk(&api, &format!("/v1/nodes?{q}&description_contains=node")).await;
        for limit in [1, 4, 7, 1000] {
            let sql = walk(&api, &format!("/v1/nodes?{q}&limit={limit}")).await;
            assert_eq!(sql, memory, "{q} limit={limit}");
        }
        let detail = walk(&api, &format!("/v1/nodes/detail?{q}&limit=5")).await;
        assert_eq!(detail, memory, "detail {q}");
    }
    // Nova's field list: only what it asks for, every node.
    let (_, doc) = api
        .get("/v1/nodes?fields=uuid,power_state,provision_state,maintenance,properties,instance_uuid,traits,resource_class&limit=50")
        .await;
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 23);
    for n in nodes {
        assert_eq!(n.as_object().unwrap().len(), 8, "{n}");
        assert!(n["properties"].is_object());
    }
    // An unknown marker is still 404.
    let (st, _) = api
        .get("/v1/nodes?limit=2&marker=6b0a5a06-0000-4000-8000-000000000000")
        .await;
    assert_eq!(st, 404);
    // A port found by MAC, and not by another.
    let (st, v) = api
        .post(
            "/v1/ports",
            json!({"node_uuid": all[3], "address": "52:54:00:12:34:56"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (_, doc) = api.get("/v1/ports?address=52:54:00:12:34:56").await;
    assert_eq!(doc["ports"].as_array().unwrap().len(), 1);
    let (_, doc) = api.get("/v1/ports?address=52:54:00:12:34:57").await;
    assert_eq!(doc["ports"], Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_memory_agree_sqlite() {
    sql_and_memory_agree(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_memory_agree_postgres() {
    sql_and_memory_agree(Backend::Postgres).await;
}

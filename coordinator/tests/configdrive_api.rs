//! Config drives at `PUT /v1/nodes/{id}/states/provision` (issue 14 item
//! 6): checked at request time as Ironic's `check_allow_configdrive` and
//! `_CONFIG_DRIVE_SCHEMA` do — unknown keys, a `meta_data`,
//! `network_data` or `vendor_data` that is not an object, a `user_data`
//! that is not a string, object, array or null, a dict below 1.56,
//! `vendor_data` below 1.59, a rebuild with a config drive below 1.35 and a
//! string that is neither a URL nor base64 all get 400, and the node is
//! unchanged; an empty dict is no config drive at all. Then a dict deploy
//! through the simulated agent: the drive the agent receives names the
//! node (its UUID and name), not the instance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::time::Duration;

use common::agent_sim::SimAgent;
use common::{Api, Backend, faultstring, start_with, test_config, test_db};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);
const MAC: &str = "52:54:00:aa:cd:01";
const INSTANCE: &str = "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11";

/// PUT the provision body at `version`; expects 400 with `want` in the
/// faultstring, and the node unchanged.
async fn refused(api: &Api, node: &str, version: &str, body: Value, want: &str) {
    let before = api.node(node).await;
    // By UUID: names identify nodes only from 1.5.
    let uuid = before["uuid"].as_str().unwrap();
    let (st, v) = api
        .with_version(Some(version))
        .put(&format!("/v1/nodes/{uuid}/states/provision"), body.clone())
        .await;
    assert_eq!(st, 400, "{body} at {version}: {v}");
    let m = faultstring(&v);
    assert!(m.contains(want), "{body} at {version}: {m}");
    let after = api.node(node).await;
    assert_eq!(before, after, "{body} at {version} changed the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configdrive_checked_at_request_time_and_built_for_the_node() {
    let db = test_db(Backend::Sqlite, "configdrive_api").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": "cd-agent",
            "deploy_interface": "direct", "boot_interface": "ipxe",
        }))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"address": MAC, "node_uuid": uuid}))
        .await;
    assert_eq!(st, 201, "{v}");
    let agent = SimAgent::start(&api.base, MAC).await;
    api.provision("cd-agent", json!({"target": "manage"})).await;
    api.wait_state("cd-agent", "manageable", T).await;
    api.provision("cd-agent", json!({"target": "provide"}))
        .await;
    agent.reboot();
    api.wait_state("cd-agent", "available", T).await;
    let (st, v) = api
        .patch(
            "/v1/nodes/cd-agent",
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": "http://127.0.0.1:8088/images/img.raw"},
                {"op": "add", "path": "/instance_info/image_checksum", "value": "8a5cbde26b52efe94b95bc77565a7fa84039a39401a7b5dd127497ee17d361bb"},
                {"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
                {"op": "add", "path": "/instance_uuid", "value": INSTANCE}
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    let active = |cd: Value| json!({"target": "active", "configdrive": cd});
    let n = "cd-agent";
    // Ironic's schema: no other keys, objects where it wants objects.
    refused(
        &api,
        n,
        "1.59",
        active(json!({"meta_data": {}, "bogus": 1})),
        "bogus",
    )
    .await;
    refused(
        &api,
        n,
        "latest",
        active(json!({"metadata": {}})),
        "metadata",
    )
    .await;
    for (key, value) in [
        ("meta_data", json!("hostname: h")),
        ("meta_data", json!(null)),
        ("meta_data", json!([])),
        ("network_data", json!("x")),
        ("network_data", json!(null)),
        ("network_data", json!([{"links": []}])),
        ("vendor_data", json!(1)),
        ("vendor_data", json!(null)),
        ("user_data", json!(1)),
        ("user_data", json!(false)),
    ] {
        refused(&api, n, "latest", active(json!({ key: value })), key).await;
    }
    // A dict below 1.56 is a 400 (not a 406), as in Ironic; so is
    // vendor_data below 1.59.
    refused(&api, n, "1.55", active(json!({"meta_data": {}})), "1.56").await;
    refused(&api, n, "1.1", active(json!({"user_data": "x"})), "1.56").await;
    refused(
        &api,
        n,
        "1.58",
        active(json!({"vendor_data": {"a": 1}})),
        "1.59",
    )
    .await;
    // Strings: a URL or base64.
    refused(
        &api,
        n,
        "latest",
        active(json!("{not: base64}")),
        "neither a JSON, nor a URL, nor a base64 string",
    )
    .await;
    refused(
        &api,
        n,
        "latest",
        active(json!(7)),
        "Invalid configdrive format",
    )
    .await;
    // Only with active and (from 1.35) rebuild.
    refused(
        &api,
        n,
        "latest",
        json!({"target": "manage", "configdrive": {"meta_data": {}}}),
        "only supported when setting provision state to active, rebuild",
    )
    .await;

    // What Ironic's schema allows is accepted: user_data as an object, an
    // array or null; vendor_data from 1.59; an empty dict is no drive.
    let (st, v) = api
        .with_version(Some("1.56"))
        .put(
            &format!("/v1/nodes/{n}/states/provision"),
            active(json!({"meta_data": {"hostname": "h"}, "user_data": null, "network_data": {}})),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    agent.reboot();
    api.wait_state(n, "active", T).await;
    let step = last_deploy_step(&agent);
    let iso = iso_of(&step);
    // meta_data.uuid is the node's (Ironic's default), the name the node's,
    // the instance UUID appears nowhere; no network_data.json was written
    // for the empty network_data.
    let meta = format!(r#"{{"hostname":"h","name":"cd-agent","uuid":"{uuid}"}}"#);
    assert!(
        find(&iso, meta.as_bytes()),
        "meta_data.json {meta} in the drive"
    );
    assert!(!find(&iso, INSTANCE.as_bytes()));
    assert!(!find(&iso, b"network_data.json"));
    assert!(find(&iso, b"meta_data.json"));

    // Rebuild: an empty dict is no config drive (the agent gets none).
    api.provision(n, json!({"target": "rebuild", "configdrive": {}}))
        .await;
    agent.reboot();
    api.wait_state(n, "active", T).await;
    assert!(last_deploy_step(&agent)["args"]["configdrive"].is_null());

    // Rebuild with a config drive needs 1.35.
    refused(
        &api,
        n,
        "1.34",
        json!({"target": "rebuild", "configdrive": "H4sI"}),
        "only supported when setting provision state to active",
    )
    .await;
    let (st, v) = api
        .with_version(Some("1.59"))
        .put(
            &format!("/v1/nodes/{n}/states/provision"),
            json!({"target": "rebuild", "configdrive": {"user_data": ["a"], "vendor_data": {"v": 2}}}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    agent.reboot();
    api.wait_state(n, "active", T).await;
    let iso = iso_of(&last_deploy_step(&agent));
    assert!(find(&iso, br#"{"v":2}"#));
    assert!(find(&iso, b"vendor_data2.json"));
    assert!(find(&iso, br#"["a"]"#));
    running.shutdown().await;
}

fn last_deploy_step(agent: &SimAgent) -> Value {
    let received = agent.state.lock().unwrap().received.clone();
    let (_, params) = received
        .iter()
        .rev()
        .find(|(n, _)| n == "deploy.execute_deploy_step")
        .expect("a deploy step");
    params["step"].clone()
}

/// The ISO of the step's config drive (base64 of gzip).
fn iso_of(step: &Value) -> Vec<u8> {
    let encoded = step["args"]["configdrive"]
        .as_str()
        .expect("a config drive");
    let gz = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    let mut iso = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut iso)
        .unwrap();
    assert_eq!(&iso[32769..32774], b"CD001");
    iso
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

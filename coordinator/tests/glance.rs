//! Glance image sources (issue 15 item 1) against a real Glance 33 from PyPI
//! (`tests/glance/glance-lab.sh`: SQLite, file store, on loopback): two
//! nodes deploy the same Glance image (by UUID and by `glance://`) at once
//! through the simulated agent; the record's checksum, hash, formats and
//! properties land in `instance_info`; the coordinator downloads the image
//! once and the agent's signed URL serves exactly Glance's bytes. Then the
//! failures, each failing the deploy before the agent writes anything: an
//! unknown image, an image that is not active, a hash that does not match
//! (the stored file changed behind Glance's back), and Glance down.
//!
//! Without python3-venv or PyPI the test skips, unless `CI=true` or
//! `INGOT_REQUIRE_PRIVILEGED=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::agent_sim::SimAgent;
use common::glance::Glance;
use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// An agent-deployed node in `available`, its agent running.
async fn node(api: &Api, name: &str, mac: &str) -> (String, SimAgent) {
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": name, "automated_clean": false,
            "deploy_interface": "direct", "boot_interface": "ipxe",
        }))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"address": mac, "node_uuid": uuid}))
        .await;
    assert_eq!(st, 201, "{v}");
    api.provision(&uuid, json!({"target": "manage"})).await;
    api.wait_state(&uuid, "manageable", T).await;
    api.provision(&uuid, json!({"target": "provide"})).await;
    api.wait_state(&uuid, "available", T).await;
    let agent = SimAgent::start(&api.base, mac).await;
    (uuid, agent)
}

/// Nova's request: the instance and the Glance image, then deploy.
async fn deploy(api: &Api, uuid: &str, image_source: &str, agent: Option<&SimAgent>) {
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([
                {"op": "add", "path": "/instance_uuid", "value": uuid::Uuid::new_v4().to_string()},
                {"op": "add", "path": "/instance_info", "value": {"image_source": image_source, "root_gb": 1}}
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, val) = api.get(&format!("/v1/nodes/{uuid}/validate")).await;
    assert_eq!(val["deploy"]["result"], true, "{val}");
    api.provision(uuid, json!({"target": "active"})).await;
    if let Some(a) = agent {
        a.reboot();
    }
}

/// Waits for `deploy failed`; returns `last_error`.
async fn failed(api: &Api, uuid: &str) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        let n = api.node(uuid).await;
        if n["provision_state"] == "deploy failed" {
            return n["last_error"].as_str().unwrap_or_default().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Back to `available` for the next case.
async fn reset(api: &Api, uuid: &str) {
    api.provision(uuid, json!({"target": "deleted"})).await;
    api.wait_state(uuid, "available", T).await;
}

fn image_url_of(agent: &SimAgent) -> String {
    let st = agent.state.lock().unwrap();
    let (_, params) = st
        .received
        .iter()
        .find(|(n, _)| n == "deploy.execute_deploy_step")
        .expect("write_image received");
    params["step"]["args"]["image_info"]["urls"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_from_glance() {
    let Some(glance) = Glance::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // A raw image of random bytes, and a second one to corrupt later.
    let raw = work.path().join("disk.raw");
    let data: Vec<u8> = (0..3_000_000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&raw, &data).unwrap();
    let image = glance.upload(&raw, "raw");
    let raw2 = work.path().join("disk2.raw");
    std::fs::write(&raw2, &data[..1_000_000]).unwrap();
    let image2 = glance.upload(&raw2, "raw");

    let db = test_db(Backend::Sqlite, "glance").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.images.cache_dir = Some(work.path().join("cache"));
    cfg.glance.endpoint = Some(glance.url());
    let (running, api) = start_with(cfg).await;

    // Two deploys of one image at once: one by UUID, one by glance://.
    let (a, agent_a) = node(&api, "g-a", "52:54:00:61:00:01").await;
    let (b, agent_b) = node(&api, "g-b", "52:54:00:61:00:02").await;
    deploy(&api, &a, &image, Some(&agent_a)).await;
    deploy(&api, &b, &format!("glance://{image}"), Some(&agent_b)).await;
    let na = api.wait_state(&a, "active", T).await;
    api.wait_state(&b, "active", T).await;
    let ii = &na["instance_info"];
    let record: Value = serde_json::from_slice(
        &reqwest::get(format!("{}/v2/images/{image}", glance.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ii["image_checksum"], record["checksum"], "{ii}");
    assert_eq!(ii["image_os_hash_algo"], "sha512");
    assert_eq!(ii["image_os_hash_value"], record["os_hash_value"]);
    assert_eq!(ii["image_disk_format"], "raw");
    assert_eq!(ii["image_container_format"], "bare");
    assert_eq!(ii["image_size"], data.len());
    assert!(ii["image_properties"].is_object(), "{ii}");
    // Each agent got a signed URL of the coordinator's cache, with Glance's bytes.
    for agent in [&agent_a, &agent_b] {
        let url = image_url_of(agent);
        assert!(
            url.starts_with(&api.base) && url.contains("/images/"),
            "{url}"
        );
        let got = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
        assert!(
            got[..] == data[..],
            "the cached image differs from Glance's"
        );
    }
    assert_eq!(glance.downloads(&image), 1, "one download for two deploys");
    reset(&api, &a).await;
    reset(&api, &b).await;

    // An unknown image.
    let missing = uuid::Uuid::new_v4().to_string();
    deploy(&api, &a, &missing, None).await;
    let e = failed(&api, &a).await;
    assert!(
        e.contains(&format!("Image {missing} could not be found.")),
        "{e}"
    );
    reset(&api, &a).await;

    // An image that is not active (created, no data).
    let queued = glance.queued("empty").await;
    deploy(&api, &a, &queued, None).await;
    let e = failed(&api, &a).await;
    assert!(
        e.contains(&format!(
            "Image {queued} is unacceptable: The image is required to be in an active state."
        )),
        "{e}"
    );
    reset(&api, &a).await;

    // The stored data changed behind Glance's back: the hash does not
    // match, and the agent is never asked to write.
    let stored = glance.stored(&image2);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    agent_a.state.lock().unwrap().received.clear();
    deploy(&api, &a, &image2, Some(&agent_a)).await;
    let e = failed(&api, &a).await;
    assert!(
        e.contains(&format!("Failed to download image {image2}, reason: The supplied image checksum is invalid or does not match.")),
        "{e}"
    );
    assert!(
        !agent_a
            .received_names()
            .iter()
            .any(|n| n == "deploy.execute_deploy_step"),
        "write_image sent despite the bad hash"
    );
    let cached: Vec<_> = std::fs::read_dir(work.path().join("cache"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cached.len(), 1, "only the good image is cached: {cached:?}");
    reset(&api, &a).await;

    // Glance down.
    glance.stop();
    deploy(&api, &a, &image, None).await;
    let e = failed(&api, &a).await;
    assert!(
        e.contains(&format!(
            "Connection to glance endpoint {} failed",
            glance.url()
        )),
        "{e}"
    );
    running.shutdown().await;
}

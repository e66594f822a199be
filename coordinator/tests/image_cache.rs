//! The image cache: two agent deploys of one image with
//! `image_download_source = local` download it from its source once, the
//! agents get the coordinator's `/images/<key>` URL, which serves it with
//! Range; a wrong checksum fails the deploy with a clear `last_error`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::agent_sim::SimAgent;
use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::{Value, json};
use sha2::Digest;

const T: Duration = Duration::from_secs(20);

async fn image_server(image: Vec<u8>, hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route(
        "/img.raw",
        get(move || {
            let image = image.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                image
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn node(api: &Api, name: &str, mac: &str, source: &str, checksum: &str) -> String {
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": name, "deploy_interface": "direct", "automated_clean": false,
            "instance_info": {"image_source": source, "image_checksum": checksum, "image_download_source": "local"}
        }))
        .await;
    assert_eq!(
        api.post("/v1/ports", json!({"address": mac, "node_uuid": uuid}))
            .await
            .0,
        201
    );
    api.provision(name, json!({"target": "manage"})).await;
    api.wait_state(name, "manageable", T).await;
    api.provision(name, json!({"target": "provide"})).await;
    api.wait_state(name, "available", T).await;
    uuid
}

fn sent_urls(agent: &SimAgent) -> Value {
    let st = agent.state.lock().unwrap();
    let (_, p) = st
        .received
        .iter()
        .find(|(n, _)| n == "deploy.execute_deploy_step")
        .unwrap();
    p["step"]["args"]["image_info"]["urls"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_download_many_agents() {
    let db = test_db(Backend::Sqlite, "cache").await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sum = hex::encode(sha2::Sha256::digest(&image));
    let hits = Arc::new(AtomicUsize::new(0));
    let source = format!(
        "{}/img.raw",
        image_server(image.clone(), hits.clone()).await
    );
    let mut cfg = test_config(&db.url);
    cfg.images.cache_dir = Some(cache.path().to_owned());
    let (running, api) = start_with(cfg).await;

    node(&api, "c-1", "52:54:00:00:0c:01", &source, &sum).await;
    node(&api, "c-2", "52:54:00:00:0c:02", &source, &sum).await;
    let a1 = SimAgent::start(&api.base, "52:54:00:00:0c:01").await;
    let a2 = SimAgent::start(&api.base, "52:54:00:00:0c:02").await;
    // Each "machine" boots right after its own deploy call: a lookup of the
    // other's in between would hand it a token that reboot() then forgets.
    api.provision("c-1", json!({"target": "active"})).await;
    a1.reboot();
    api.provision("c-2", json!({"target": "active"})).await;
    a2.reboot();
    api.wait_state("c-1", "active", T).await;
    api.wait_state("c-2", "active", T).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "downloaded once");
    let urls = sent_urls(&a1);
    let url = urls[0].as_str().unwrap().to_owned();
    // One cached image, a URL of its own for each node.
    let url2 = sent_urls(&a2)[0].as_str().unwrap().to_owned();
    assert_eq!(url.split('?').next(), url2.split('?').next());
    assert_ne!(url, url2);
    assert!(url.starts_with(&format!("{}/images/", api.base)), "{url}");

    let c = reqwest::Client::new();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), image);
    let r = c
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), &image[1000..2000]);
    // Only the signed, per-node URL is served: not the bare path, not
    // another node's, not a later expiry.
    let (st, _) = api
        .get("/images/0000000000000000000000000000000000000000000000000000000000000000")
        .await;
    assert_eq!(st, 403);
    let bare = url.split('?').next().unwrap();
    assert_eq!(c.get(bare).send().await.unwrap().status().as_u16(), 403);
    let n1 = api.node("c-1").await["uuid"].as_str().unwrap().to_owned();
    let n2 = api.node("c-2").await["uuid"].as_str().unwrap().to_owned();
    let other = if url.contains(&n1) {
        url.replace(&n1, &n2)
    } else {
        url.replace(&n2, &n1)
    };
    assert_eq!(c.get(&other).send().await.unwrap().status().as_u16(), 403);
    let (head, exp) = url.split_once("expires=").unwrap();
    let later = format!("{head}expires=9{exp}");
    assert_eq!(c.get(&later).send().await.unwrap().status().as_u16(), 403);

    // A wrong checksum: the download is refused and the deploy fails.
    let bad = "0".repeat(64);
    node(&api, "c-3", "52:54:00:00:0c:03", &source, &bad).await;
    let a3 = SimAgent::start(&api.base, "52:54:00:00:0c:03").await;
    api.provision("c-3", json!({"target": "active"})).await;
    a3.reboot();
    let n = api.wait_state("c-3", "deploy failed", T).await;
    let err = n["last_error"].as_str().unwrap();
    assert!(
        err.contains("image cache") && err.contains("checksum mismatch"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(cache.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".part"))
    );
    running.shutdown().await;
}

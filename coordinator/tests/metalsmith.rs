//! The real `metalsmith` CLI (metalsmith 2.5.0 from PyPI, with the
//! openstacksdk it brings) against a coordinator: two fake-hardware nodes
//! with a resource class, one with a trait; a deploy whose allocation finds
//! no node (metalsmith deletes it again), a deploy without candidates
//! (scheduled by resource class and trait), a deploy with `--candidate`,
//! a hostname and a cloud-init user (a config drive with user data),
//! `show`, `list`, `undeploy` with and without waiting. After each step the
//! node, its `instance_info` and the allocation are checked through the API.
//!
//! How metalsmith is configured: `OS_AUTH_TYPE=none`,
//! `OS_BAREMETAL_ENDPOINT_OVERRIDE` (the coordinator) and
//! `OS_NETWORK_ENDPOINT_OVERRIDE` (a stand-in Neutron in this test), every
//! other `OS_*` variable removed (openstacksdk's `envvars` cloud, no
//! clouds.yaml). The image is an HTTP URL with `--image-checksum` (SHA-256),
//! so no Glance is needed; no `--network`/`--port`, so no Neutron port is
//! created or attached. Neutron is needed all the same: metalsmith prints an
//! instance's IP addresses whenever the instance is deployed, by listing the
//! Neutron ports bound to the node (`GET /v2.0/ports?binding:host_id=<node>`,
//! `Instance.ip_addresses()`; no option turns it off, and `-q` breaks
//! `show`). The stand-in answers that with no ports. With a single
//! `OS_ENDPOINT` instead, keystoneauth's `none` plugin sends that Neutron
//! request to the Ironic endpoint, where Ironic answers 400 and metalsmith
//! fails (checked below as an API answer).
//!
//! The venv is `<workspace>/target/venv-metalsmith` (or
//! `$INGOT_METALSMITH_VENV`), created by `tests/python-venv.sh` when missing.
//! Without python3-venv or PyPI the test skips, unless `CI=true` or
//! `INGOT_REQUIRE_PRIVILEGED=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderName;
use axum::http::Uri;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use common::venv::metalsmith_venv;
use common::{Api, Backend, faultstring, start_with, test_config, test_db};
use serde_json::{Value, json};
use sha2::Digest;

const T: Duration = Duration::from_secs(60);

/// The image metalsmith is given (served, though the fake deploy interface
/// does not download it).
const IMAGE: &[u8] = b"not really a disk image, the fake deploy interface does not write it\n";

/// A stand-in Neutron: the version document and an empty port list (the
/// requests are recorded), and the image at `/img.raw`.
async fn neutron() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let versions = json!({"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"href": format!("{url}/v2.0/"), "rel": "self"}]
    }]});
    let log = seen.clone();
    let app = Router::new()
        .route("/", get(move || async move { json_body(&versions) }))
        .route(
            "/v2.0/ports",
            get(move |uri: Uri| async move {
                log.lock().unwrap().push(uri.to_string());
                json_body(&json!({"ports": []}))
            }),
        )
        .route("/img.raw", get(|| async { IMAGE }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A JSON answer (axum is built without its `json` feature).
fn json_body(v: &Value) -> ([(HeaderName, &'static str); 1], String) {
    ([(CONTENT_TYPE, "application/json")], v.to_string())
}

/// Borrows the arguments.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// What one metalsmith run printed.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// The metalsmith CLI pointed at the coordinator and the stand-in Neutron.
struct Metalsmith {
    bin: PathBuf,
    ironic: String,
    neutron: String,
}

impl Metalsmith {
    /// Runs `metalsmith --timeout 30 <args>`.
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--timeout").arg("30").args(args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("OS_AUTH_TYPE", "none")
            .env("OS_BAREMETAL_ENDPOINT_OVERRIDE", &self.ironic)
            .env("OS_NETWORK_ENDPOINT_OVERRIDE", &self.neutron);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs it, expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "metalsmith {args:?} failed:\n{}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Runs `metalsmith -f json <args>`, expects success; returns the JSON.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-f", "json"];
        all.extend_from_slice(args);
        let out = self.ok(&all).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("metalsmith {args:?}: {e}: {out}"))
    }
}

/// A fake-hardware node in `available` and powered off, as metalsmith wants them.
async fn node(api: &Api, name: &str, mac: &str, traits: &[&str]) -> String {
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": name, "resource_class": "baremetal",
            "properties": {"cpus": 2, "memory_mb": 4096, "local_gb": 10, "cpu_arch": "x86_64"},
            "boot_interface": "fake", "deploy_interface": "fake", "management_interface": "fake",
            "network_interface": "noop", "power_interface": "fake",
        }))
        .await;
    let (st, v) = api
        .post("/v1/ports", json!({"address": mac, "node_uuid": uuid}))
        .await;
    assert_eq!(st, 201, "{v}");
    for t in traits {
        let (st, v, _) = api
            .raw("PUT", &format!("/v1/nodes/{uuid}/traits/{t}"), None)
            .await;
        assert_eq!(st, 204, "{v}");
    }
    api.provision(&uuid, json!({"target": "manage"})).await;
    api.wait_state(&uuid, "manageable", T).await;
    api.provision(&uuid, json!({"target": "provide"})).await;
    api.wait_state(&uuid, "available", T).await;
    // Fake power knows no state until one is set, and allocations (Ironic's
    // and Ingot's) only pick nodes with a known power state.
    let (st, v) = api
        .put(
            &format!("/v1/nodes/{uuid}/states/power"),
            json!({"target": "power off"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    api.wait_power_state(&uuid, "power off", T).await;
    uuid
}

/// The allocation `ident` (name or UUID).
async fn allocation(api: &Api, ident: &str) -> Value {
    let (st, v) = api.get(&format!("/v1/allocations/{ident}")).await;
    assert_eq!(st, 200, "GET allocation {ident}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metalsmith_cli() {
    let Some(venv) = metalsmith_venv() else {
        return;
    };
    let db = test_db(Backend::Sqlite, "metalsmith").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let (neutron_url, neutron_seen) = neutron().await;
    let ms = Metalsmith {
        bin: venv.join("bin/metalsmith"),
        ironic: api.base.clone(),
        neutron: neutron_url.clone(),
    };
    let image = format!("{neutron_url}/img.raw");
    let checksum = hex::encode(sha2::Sha256::digest(IMAGE));
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("id.pub");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGzFakv9Sc99XqdD5McSxWle5Yv6kyimzSg8zAGB3B0f test@ingot";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let key_file = key_file.to_str().unwrap().to_owned();

    let gold = node(&api, "gold-1", "52:54:00:6d:00:01", &["CUSTOM_GOLD"]).await;
    let plain = node(&api, "plain-1", "52:54:00:6d:00:02", &[]).await;
    let deploy = |extra: &[&str]| {
        let mut a = vec![
            "deploy",
            "--image",
            image.as_str(),
            "--image-checksum",
            checksum.as_str(),
            "--resource-class",
            "baremetal",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    // 1. No node has the trait: the allocation fails with Ironic's message
    // (nodes of the resource class exist, so it names the traits, not the
    // resource class), metalsmith deletes it, both nodes stay free.
    let args = deploy(&["--trait", "CUSTOM_MISSING", "--wait", "60"]);
    let out = ms.run(&strs(&args)).await;
    assert!(
        !out.ok,
        "deploy with a missing trait succeeded: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("no suitable nodes have the requested traits CUSTOM_MISSING"),
        "{}",
        out.stderr
    );
    let (st, v) = api.get("/v1/allocations").await;
    assert_eq!((st, v.clone()), (200, json!({"allocations": []})), "{v}");
    for n in [&gold, &plain] {
        let n = api.node(n).await;
        assert_eq!(n["provision_state"], "available", "{n}");
        assert!(n["instance_uuid"].is_null(), "{n}");
        assert!(n["allocation_uuid"].is_null(), "{n}");
    }

    // 2. Without candidates: scheduled by resource class and trait, waited
    // for. metalsmith names the allocation after the node.
    let args = deploy(&["--trait", "CUSTOM_GOLD", "--wait", "60"]);
    let deployed = ms.json(&strs(&args)).await;
    assert_eq!(deployed["uuid"], gold.as_str(), "{deployed}");
    assert_eq!(deployed["state"], "active", "{deployed}");
    assert_eq!(deployed["hostname"], "gold-1", "{deployed}");
    let n = api.node(&gold).await;
    assert_eq!(n["provision_state"], "active", "{n}");
    assert!(n["target_provision_state"].is_null(), "{n}");
    let alloc_uuid = n["allocation_uuid"].as_str().unwrap().to_owned();
    assert_eq!(n["instance_uuid"], alloc_uuid.as_str(), "{n}");
    assert_eq!(deployed["allocation"]["id"], alloc_uuid.as_str());
    let ii = &n["instance_info"];
    assert_eq!(ii["image_source"], image.as_str(), "{n}");
    assert_eq!(ii["image_checksum"], checksum.as_str(), "{n}");
    assert_eq!(ii["image_disk_format"], "raw", "{n}");
    assert_eq!(ii["root_gb"], 9, "local_gb - 1: {n}");
    assert_eq!(ii["capabilities"], json!({"boot_option": "local"}), "{n}");
    assert_eq!(
        ii["traits"],
        json!(["CUSTOM_GOLD"]),
        "from the allocation: {n}"
    );
    assert_eq!(ii["configdrive"], "******", "{n}");
    assert_eq!(
        n["extra"],
        json!({"metalsmith_attached_ports": [], "metalsmith_created_ports": []}),
        "{n}"
    );
    let a = allocation(&api, &alloc_uuid).await;
    assert_eq!(a["state"], "active", "{a}");
    assert_eq!(a["node_uuid"], gold.as_str(), "{a}");
    assert_eq!(a["name"], "gold-1", "{a}");
    assert_eq!(a["resource_class"], "baremetal", "{a}");
    assert_eq!(a["traits"], json!(["CUSTOM_GOLD"]), "{a}");
    assert_eq!(a["candidate_nodes"], json!([]), "{a}");
    assert_eq!(
        allocation(&api, "gold-1").await["uuid"],
        alloc_uuid.as_str()
    );

    // 3. With a candidate (by name), a hostname and a cloud-init user, not
    // waited for.
    let args = deploy(&[
        "--candidate",
        "plain-1",
        "--hostname",
        "web-2",
        "--user-name",
        "admin",
        "--passwordless-sudo",
        "--ssh-public-key",
        &key_file,
        "--no-wait",
    ]);
    let deployed = ms.json(&strs(&args)).await;
    assert_eq!(deployed["uuid"], plain.as_str(), "{deployed}");
    assert_eq!(deployed["hostname"], "web-2", "{deployed}");
    let n = api.wait_state(&plain, "active", T).await;
    let web_uuid = n["allocation_uuid"].as_str().unwrap().to_owned();
    assert_eq!(n["instance_uuid"], web_uuid.as_str(), "{n}");
    let ii = &n["instance_info"];
    assert_eq!(ii["image_source"], image.as_str(), "{n}");
    assert_eq!(ii["capabilities"], json!({"boot_option": "local"}), "{n}");
    // Ironic copies the allocation's traits, even none, into instance_info.
    assert_eq!(ii["traits"], json!([]), "from the allocation: {n}");
    assert_eq!(ii["configdrive"], "******", "{n}");
    let a = allocation(&api, "web-2").await;
    assert_eq!(a["uuid"], web_uuid.as_str(), "{a}");
    assert_eq!(a["state"], "active", "{a}");
    assert_eq!(a["node_uuid"], plain.as_str(), "{a}");
    assert_eq!(a["candidate_nodes"], json!([plain]), "{a}");
    assert_eq!(a["traits"], json!([]), "{a}");

    // 4. show and list.
    let shown = ms.json(&["show", "gold-1", "web-2"]).await;
    for (host, uuid, alloc) in [("gold-1", &gold, &alloc_uuid), ("web-2", &plain, &web_uuid)] {
        let i = &shown[host];
        assert_eq!(i["uuid"], uuid.as_str(), "{shown}");
        assert_eq!(i["state"], "active", "{shown}");
        assert_eq!(i["hostname"], host, "{shown}");
        assert_eq!(i["allocation"]["id"], alloc.as_str(), "{shown}");
        assert_eq!(i["ip_addresses"], json!({}), "{shown}");
        assert_eq!(
            i["node"]["instance_info"]["image_source"],
            image.as_str(),
            "{shown}"
        );
    }
    let table = ms.ok(&["show", "web-2"]).await;
    assert!(
        table.contains(&plain) && table.contains("web-2") && table.contains("ACTIVE"),
        "{table}"
    );
    let listed = ms.json(&["list"]).await;
    let mut hosts: Vec<&String> = listed.as_object().unwrap().keys().collect();
    hosts.sort();
    assert_eq!(hosts, ["gold-1", "web-2"], "{listed}");
    let seen = neutron_seen.lock().unwrap().clone();
    for uuid in [&gold, &plain] {
        let q = format!("/v2.0/ports?binding%3Ahost_id={uuid}");
        assert!(seen.contains(&q), "no {q} in {seen:?}");
    }

    // The node as metalsmith reads it (openstacksdk 4.22 negotiates 1.109)
    // has the fields Ironic has at that version.
    let (st, n) = api
        .with_version(Some("1.109"))
        .get(&format!("/v1/nodes/{gold}"))
        .await;
    assert_eq!(st, 200, "{n}");
    for field in ["service_step", "instance_name", "health"] {
        assert!(n.get(field).is_some(), "no {field} at 1.109: {n}");
    }

    // metalsmith configured with OS_ENDPOINT alone sends its Neutron request
    // to the Ironic endpoint; Ironic refuses the unknown argument (and so
    // does every Ironic collection and resource).
    let (st, v) = api
        .with_version(None)
        .get(&format!("/v1/ports?binding%3Ahost_id={gold}"))
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(faultstring(&v), "Unexpected arguments: binding:host_id");

    // 5. undeploy, waited for and not.
    let out = ms.ok(&["undeploy", "gold-1", "--wait", "60"]).await;
    assert!(
        out.contains(&format!(
            "Successfully unprovisioned node gold-1 (UUID {gold})"
        )),
        "{out}"
    );
    ms.ok(&["undeploy", "web-2"]).await;
    for uuid in [&gold, &plain] {
        let n = api.wait_state(uuid, "available", T).await;
        assert!(n["instance_uuid"].is_null(), "{n}");
        assert!(n["allocation_uuid"].is_null(), "{n}");
        assert_eq!(n["instance_info"], json!({}), "{n}");
        assert_eq!(n["extra"], json!({}), "metalsmith's keys removed: {n}");
    }
    for ident in [alloc_uuid.as_str(), web_uuid.as_str(), "gold-1", "web-2"] {
        let (st, v) = api.get(&format!("/v1/allocations/{ident}")).await;
        assert_eq!(st, 404, "allocation {ident} after undeploy: {v}");
    }
    let (st, v) = api.get("/v1/allocations").await;
    assert_eq!((st, v.clone()), (200, json!({"allocations": []})), "{v}");
    assert_eq!(ms.json(&["list"]).await, json!({}));
    let out = ms.run(&["show", "web-2"]).await;
    assert!(!out.ok, "show after undeploy: {}", out.stdout);

    running.shutdown().await;
}

//! Regression tests of the hostile-input campaign (issue 13): each class of
//! bad input that once got through, or hurt the coordinator, and the cases
//! that were already handled and must stay so. All against a real
//! coordinator over real HTTP and a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `{"a": {"a": … 1 …}}` nested `depth` levels.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

async fn fake_node(api: &Api, name: &str) -> String {
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": name}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    n["uuid"].as_str().unwrap().to_owned()
}

/// The faultstring of Ironic's error document (panics if the body is not one).
fn faultstring(v: &Value) -> String {
    let inner: Value = serde_json::from_str(v["error_message"].as_str().unwrap_or_else(|| {
        panic!("not Ironic's error document: {v}");
    }))
    .unwrap();
    inner["faultstring"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn deep_nesting_is_refused_everywhere_and_never_stored() {
    let db = test_db(Backend::Sqlite, "nesting").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = fake_node(&api, "n1").await;
    for depth in [33, 127, 130, 200] {
        let (st, v) = api
            .patch(
                &format!("/v1/nodes/{uuid}"),
                json!([{"op": "add", "path": "/extra/deep", "value": nested(depth)}]),
            )
            .await;
        assert_eq!(st, 400, "depth {depth}: {v}");
        assert!(faultstring(&v).contains("nested deeper"), "{v}");
        let (st, v) = api
            .post(
                "/v1/nodes",
                json!({"driver": "fake-hardware", "extra": nested(depth)}),
            )
            .await;
        assert_eq!(st, 400, "create, depth {depth}: {v}");
    }
    // Within the bound it is stored and read back.
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "add", "path": "/extra/deep", "value": nested(20)}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, port) = api
        .post(
            "/v1/ports",
            json!({"address": "52:54:00:00:00:01", "node_uuid": uuid}),
        )
        .await;
    assert_eq!(st, 201, "{port}");
    let (st, v) = api
        .patch(
            &format!("/v1/ports/{}", port["uuid"].as_str().unwrap()),
            json!([{"op": "add", "path": "/extra/deep", "value": nested(130)}]),
        )
        .await;
    assert_eq!(st, 400, "port: {v}");
    // A heartbeat's agent_version is refused before the token is looked at.
    let (st, v) = api
        .post(
            &format!("/v1/heartbeat/{uuid}"),
            json!({"callback_url": "http://127.0.0.1:9999", "agent_token": "x", "agent_version": nested(130)}),
        )
        .await;
    assert_eq!(st, 400, "heartbeat: {v}");
    let (st, v) = api.get("/v1/nodes?detail=True").await;
    assert_eq!(st, 200, "{v}");
    running.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_document_spoils_neither_the_fleet_nor_the_start() {
    let db = test_db(Backend::Sqlite, "corrupt").await.unwrap();
    let cfg = test_config(&db.url);
    let (running, api) = start_with(cfg.clone()).await;
    let good = fake_node(&api, "good").await;
    let bad = fake_node(&api, "bad").await;
    running.shutdown().await;

    // What an older coordinator could store: nesting past serde_json's
    // recursion limit (here written directly into the database).
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let deep = format!(
        "{{\"uuid\":\"{bad}\",\"driver\":\"fake-hardware\",\"extra\":{}{}}}",
        "{\"a\":".repeat(200) + "1",
        "}".repeat(200)
    );
    sqlx::query("UPDATE nodes SET data = $1 WHERE uuid = $2")
        .bind(&deep)
        .bind(&bad)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (running, api) = start_with(cfg).await;
    let (st, v) = api.get("/v1/nodes").await;
    assert_eq!(st, 200, "{v}");
    let uuids: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["uuid"].as_str())
        .collect();
    assert_eq!(uuids, [good.as_str()]);
    assert_eq!(api.get(&format!("/v1/nodes/{good}")).await.0, 200);
    let (st, v) = api.get(&format!("/v1/nodes/{bad}")).await;
    assert_eq!(st, 500, "{v}");
    assert!(faultstring(&v).contains("corrupt node document"), "{v}");
    running.shutdown().await;
}

#[tokio::test]
async fn json_patch_cannot_copy_move_or_test_secrets() {
    let db = test_db(Backend::Sqlite, "patch").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = fake_node(&api, "n1").await;
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([
                {"op": "add", "path": "/driver_info/ipmi_password", "value": "hunter2"},
                {"op": "add", "path": "/instance_info/configdrive", "value": "user-data-secret"},
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    for ops in [
        json!([{"op": "copy", "from": "/driver_info/ipmi_password", "path": "/extra/p"}]),
        json!([{"op": "move", "from": "/instance_info/configdrive", "path": "/extra/c"}]),
        json!([{"op": "test", "path": "/driver_info/ipmi_password", "value": "hunter2"}]),
    ] {
        let (st, v) = api.patch(&format!("/v1/nodes/{uuid}"), ops.clone()).await;
        assert_eq!(st, 400, "{ops}: {v}");
    }
    let body = reqwest::get(format!("{}/v1/nodes/{uuid}", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("hunter2") && !body.contains("user-data-secret"));
    running.shutdown().await;
}

#[tokio::test]
async fn secrets_are_masked_at_every_depth() {
    let db = test_db(Backend::Sqlite, "mask").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({
                "driver": "fake-hardware",
                "name": "masked",
                "driver_info": {
                    "redfish": {"password": "s3cret-1", "address": "https://bmc.example"},
                    "snmp_community": "s3cret-2",
                    "snmp_auth_key": "s3cret-3",
                    "snmp_priv_key": "s3cret-4",
                    "deploy_kernel": "http://user:s3cret-5@images.example/k",
                },
                "instance_info": {"image_source": "https://glance:s3cret-6@img.example/x.qcow2"},
                "extra": {"notes": [{"bmc_password": "s3cret-7"}]},
            }),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    for path in [
        "/v1/nodes/masked",
        "/v1/nodes?detail=True",
        "/v1/nodes/detail",
    ] {
        let body = common::get_text(&format!("{}{path}", api.base)).await;
        assert!(!body.contains("s3cret"), "{path}: {body}");
    }
    let n = api.node("masked").await;
    assert_eq!(n["driver_info"]["redfish"]["password"], "******");
    assert_eq!(
        n["driver_info"]["redfish"]["address"],
        "https://bmc.example"
    );
    assert_eq!(
        n["driver_info"]["deploy_kernel"],
        "http://user:***@images.example/k"
    );
    running.shutdown().await;
}

/// The resident set of this process, in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_files_and_images_are_streamed_not_held_in_memory() {
    const SIZE: u64 = 512 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    // Sparse: costs no disk, reads as zeros.
    std::fs::File::create(&kernel)
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let db = test_db(Backend::Sqlite, "stream").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.boot.kernel = Some(kernel);
    let (running, api) = start_with(cfg).await;
    let before = rss();
    // Three parallel downloads, each read 4 MiB into and then held open:
    // the old code read each whole range into memory before answering.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut resp = reqwest::get(format!("{}/boot/vmlinuz", api.base))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), Some(SIZE));
        let mut got = 0;
        while got < 4 * 1024 * 1024 {
            got += resp.chunk().await.unwrap().unwrap().len();
        }
        streams.push(resp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss().saturating_sub(before);
    println!(
        "RSS grew by {} MiB with 3 downloads of {} MiB open",
        grown >> 20,
        SIZE >> 20
    );
    assert!(grown < 128 << 20, "RSS grew by {} MiB", grown >> 20);
    // A range is served from the file too, with its length.
    let resp = reqwest::Client::new()
        .get(format!("{}/boot/vmlinuz", api.base))
        .header("Range", format!("bytes={}-", SIZE - 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().len(), 10);
    drop(streams);
    running.shutdown().await;
}

/// A connection from `source` (another loopback address: another neighbour).
async fn connect_from(source: &str, to: std::net::SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{source}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Reads until EOF or `limit`; true if the peer closed within it.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn idle_and_slow_clients_cannot_lock_others_out() {
    let db = test_db(Backend::Sqlite, "limits").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.api.header_timeout_ms = 6000;
    cfg.api.body_timeout_ms = 1500;
    cfg.api.max_connections_per_ip = 50;
    cfg.api.max_connections = 400;
    cfg.api.max_requests_per_connection = 3;
    cfg.api.max_body_bytes = 64 * 1024;
    let (running, api) = start_with(cfg).await;
    let addr = running.addr;

    // 300 idle sockets from one neighbour (127.0.0.2): 50 are held until
    // the header timeout, the rest are closed at once (long before it); a
    // client elsewhere is still answered.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from("127.0.0.2", addr).await);
    }
    let (refused, _) = closed_within(&mut idle[299], Duration::from_secs(3)).await;
    assert!(refused, "a connection past max_connections_per_ip was kept");
    let (early, _) = closed_within(&mut idle[0], Duration::from_millis(500)).await;
    assert!(
        !early,
        "an admitted connection was closed before the header timeout"
    );
    let t = Instant::now();
    let (st, v) = api.get("/v1/nodes").await;
    assert_eq!(st, 200, "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Idle ones are closed after the header timeout.
    let (closed, _) = closed_within(&mut idle[0], Duration::from_secs(15)).await;
    assert!(
        closed,
        "an idle connection stayed open past the header timeout"
    );
    drop(idle);

    // Headers sent byte by byte and never finished: closed too.
    let mut slow = connect_from("127.0.0.3", addr).await;
    slow.write_all(b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (closed, _) = closed_within(&mut slow, Duration::from_secs(15)).await;
    assert!(closed, "a request whose headers never ended was kept");

    // A body announced and not sent: 408 in Ironic's error document.
    let mut stalled = connect_from("127.0.0.3", addr).await;
    stalled
        .write_all(
            b"PATCH /v1/nodes/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"op\"",
        )
        .await
        .unwrap();
    let (_, answer) = closed_within(&mut stalled, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("error_message"), "{answer}");

    // Too large: 413, Ironic's document.
    let big = format!(
        "[{{\"op\":\"add\",\"path\":\"/extra/x\",\"value\":\"{}\"}}]",
        "x".repeat(100_000)
    );
    let (st, v, _) = api.raw("PATCH", "/v1/nodes/x", Some(&big)).await;
    assert_eq!(st, 413, "{v}");
    assert!(faultstring(&v).contains("max_body_bytes"), "{v}");

    // Kept-alive connections are closed after max_requests_per_connection.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut closes = 0;
    for _ in 0..3 {
        conn.write_all(b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let n = conn.read(&mut buf).await.unwrap();
        if String::from_utf8_lossy(&buf[..n])
            .to_ascii_lowercase()
            .contains("connection: close")
        {
            closes += 1;
        }
    }
    assert_eq!(closes, 1, "only the third answer closes");
    running.shutdown().await;
}

#[tokio::test]
async fn weaker_checks_are_tightened() {
    let db = test_db(Backend::Sqlite, "checks").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = fake_node(&api, "n1").await;
    // A node named like a path of the API could never be reached by name.
    for name in ["detail", "DETAIL"] {
        let (st, v) = api
            .post(
                "/v1/nodes",
                json!({"driver": "fake-hardware", "name": name}),
            )
            .await;
        assert_eq!(st, 400, "{v}");
        let (st, v) = api
            .patch(
                &format!("/v1/nodes/{uuid}"),
                json!([{"op": "replace", "path": "/name", "value": name}]),
            )
            .await;
        assert_eq!(st, 400, "{v}");
    }
    // Unbounded sizes and invalid conductor groups.
    for (field, value) in [
        ("resource_class", json!("x".repeat(100_000))),
        ("description", json!("x".repeat(5000))),
        ("conductor_group", json!("bad group!")),
        ("conductor_group", json!("g\n#!ipxe")),
        ("owner", json!("o".repeat(256))),
    ] {
        let (st, v) = api
            .patch(
                &format!("/v1/nodes/{uuid}"),
                json!([{"op": "add", "path": format!("/{field}"), "value": value}]),
            )
            .await;
        assert_eq!(st, 400, "{field}: {v}");
    }
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "add", "path": "/conductor_group", "value": "rack-1.a_b"}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // A MAC that is not one is never echoed into an iPXE script.
    let body = reqwest::get(format!(
        "{}/boot/ipxe/zz%0Achain%20http%3A%2F%2Fevil%2Fx",
        api.base
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(body.starts_with("#!ipxe\n"), "{body}");
    assert!(!body.contains("evil") && !body.contains("chain"), "{body}");
    // A path that is not UTF-8: Ironic's error document, not plain text.
    let (st, v, headers) = api.raw("GET", "/v1/nodes/%FF%FE", None).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(headers["content-type"], "application/json");
    faultstring(&v);
    running.shutdown().await;
}

/// Starts a coordinator that must fail; returns its error text.
async fn start_fails(cfg: ingot_coordinator::config::Config) -> String {
    let t = Instant::now();
    let r =
        ingot_coordinator::server::start(cfg, ingot_coordinator::power::PowerDrivers::default())
            .await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a refused database took {:?}",
        t.elapsed()
    );
    match r {
        Ok(running) => {
            running.shutdown().await;
            panic!("the coordinator started");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn the_database_file_is_private_and_damage_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let url = format!("sqlite://{}", path.display());
    let (running, api) = start_with(test_config(&url)).await;
    for i in 0..50 {
        fake_node(&api, &format!("n{i}")).await;
    }
    running.shutdown().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    // Everything into the main file (the WAL is not always checkpointed at
    // close), so that the copies below are whole databases.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", path.display()));
    }
    let good = std::fs::read(&path).unwrap();
    assert!(good.len() > 3 * 4096, "{} bytes", good.len());

    // An empty file is not a fleet.
    std::fs::write(&path, b"").unwrap();
    let e = start_fails(test_config(&url)).await;
    assert!(e.contains("empty"), "{e}");
    // Nor is a foreign one.
    std::fs::write(&path, b"not a database at all, just text\n").unwrap();
    let e = start_fails(test_config(&url)).await;
    assert!(e.contains("not a SQLite"), "{e}");
    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let e = start_fails(test_config(&url)).await;
    assert!(e.contains("cannot be used"), "{e}");
    // A damaged page in the middle.
    let mut bad = good.clone();
    let page = 4096 * 2;
    bad[page..page + 4096].fill(0xA5);
    std::fs::write(&path, &bad).unwrap();
    let e = start_fails(test_config(&url)).await;
    assert!(e.contains("cannot be used"), "{e}");
    // The good file still starts.
    std::fs::write(&path, &good).unwrap();
    let (running, api) = start_with(test_config(&url)).await;
    assert_eq!(api.get("/v1/nodes").await.0, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn reservations_of_coordinators_that_are_not_alive_are_released() {
    let db = test_db(Backend::Sqlite, "reservations").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.conductor_name = "old-name".into();
    let (running, api) = start_with(cfg.clone()).await;
    let ghost = fake_node(&api, "ghost").await;
    let stale = fake_node(&api, "stale").await;
    running.shutdown().await;

    // A reservation under a name that never registered, and one under a
    // coordinator that registered and then went silent without a clean stop.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO conductors (hostname, conductor_group, api_url, online, heartbeat_ms) \
         VALUES ('crashed', '', 'http://x', 1, CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT))",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let handle = ingot_coordinator::db::Db::connect(&db.url).await.unwrap();
    for (uuid, holder) in [(&ghost, "never-registered"), (&stale, "crashed")] {
        handle
            .update_node::<(), _>(uuid, |n| {
                n.reservation = Some(holder.to_owned());
                Ok(())
            })
            .await
            .unwrap();
    }
    handle.close().await;

    cfg.conductor_name = "new-name".into();
    cfg.conductor.heartbeat_interval = 1;
    cfg.conductor.heartbeat_timeout = 2;
    let (running, api) = start_with(cfg).await;
    // The unknown name is released at start.
    assert!(api.node(&ghost).await["reservation"].is_null());
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{ghost}"),
            json!([{"op": "add", "path": "/extra/x", "value": 1}]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // The crashed one once its heartbeat is older than the timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !api.node(&stale).await["reservation"].is_null() {
        assert!(Instant::now() < deadline, "{}", api.node(&stale).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, v) = api.get("/v1/conductors").await;
    assert_eq!(st, 200);
    let alive: Vec<(String, bool)> = v["conductors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hostname"].as_str().unwrap().to_owned(),
                c["alive"] == true,
            )
        })
        .collect();
    assert!(alive.contains(&("new-name".into(), true)), "{v}");
    assert!(alive.contains(&("crashed".into(), false)), "{v}");
    assert!(alive.contains(&("old-name".into(), false)), "{v}");
    running.shutdown().await;
}

/// Cases the campaign found handled, kept so they stay so.
#[tokio::test]
async fn already_handled_cases_stay_handled() {
    let db = test_db(Backend::Sqlite, "handled").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&db.url);
    cfg.images.cache_dir = Some(dir.path().join("cache"));
    let (running, api) = start_with(cfg).await;
    let uuid = fake_node(&api, "n1").await;
    // Traversal through the image and boot paths.
    for path in [
        "/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/../../etc/passwd",
        "/images/%2e%2e",
        "/boot/ipxe/..%2F..%2Fetc%2Fpasswd",
    ] {
        let body = common::get_text(&format!("{}{path}", api.base)).await;
        assert!(!body.contains("root:"), "{path}: {body}");
    }
    // SQL-ish filters match nothing and change nothing.
    for q in [
        "name=%27%20OR%201%3D1--",
        "provision_state=enroll%27%3B%20DROP%20TABLE%20nodes%3B--",
        "owner=%25",
        "conductor_group=%27%20OR%20%271%27%3D%271",
    ] {
        let (st, v) = api.get(&format!("/v1/nodes?{q}")).await;
        assert!(st == 200 || st == 400, "{q}: {st} {v}");
        if st == 200 {
            assert!(v["nodes"].as_array().unwrap().len() <= 1, "{q}: {v}");
        }
    }
    assert_eq!(api.node(&uuid).await["name"], "n1");
    // Wrong agent tokens and file:// callbacks are refused.
    for body in [
        json!({"callback_url": "http://127.0.0.1:9999", "agent_token": "wrong", "agent_version": "1"}),
        json!({"callback_url": "file:///etc/passwd", "agent_token": "wrong"}),
        json!({"callback_url": "gopher://x", "agent_token": "x"}),
        json!({"callback_url": "http://127.0.0.1:9999"}),
    ] {
        let (st, v) = api
            .post(&format!("/v1/heartbeat/{uuid}"), body.clone())
            .await;
        assert_eq!(st, 400, "{body}: {v}");
    }
    // A body that is a JSON bomb of keys within the size limit is only data.
    let wide: serde_json::Map<String, Value> =
        (0..50_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let (st, _) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "add", "path": "/extra/wide", "value": wide}]),
        )
        .await;
    assert!(st == 200 || st == 413, "{st}");
    assert_eq!(api.get("/v1/nodes").await.0, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn driver_info_secrets_are_encrypted_at_rest() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secrets.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = test_db(Backend::Sqlite, "at_rest").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.secrets_key_file = Some(key_file.clone());
    let (running, api) = start_with(cfg.clone()).await;
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "enc", "driver_info": {
                "ipmi_password": "pw-at-rest-1",
                "ipmi_address": "192.0.2.1",
                "redfish": {"password": "pw-at-rest-2"},
            }}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    let uuid = n["uuid"].as_str().unwrap().to_owned();
    running.shutdown().await;

    // On disk: ciphertext only.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let (data,): (String,) = sqlx::query_as("SELECT data FROM nodes WHERE uuid = $1")
        .bind(&uuid)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(!data.contains("pw-at-rest"), "{data}");
    assert!(
        data.contains("ingot-aead-v1:") && data.contains("192.0.2.1"),
        "{data}"
    );
    // The coordinator reads them back in clear (for its power drivers).
    let key = ingot_coordinator::db::secrets::SecretBox::from_file(&key_file).unwrap();
    let handle = ingot_coordinator::db::Db::connect(&db.url)
        .await
        .unwrap()
        .with_secrets(Some(key))
        .await
        .unwrap();
    let (node, _) = handle.get_node(&uuid).await.unwrap().unwrap();
    assert_eq!(node.driver_info["ipmi_password"], "pw-at-rest-1");
    assert_eq!(node.driver_info["redfish"]["password"], "pw-at-rest-2");
    handle.close().await;

    // Without the key, with another key, or with a key others can read: refused.
    let mut no_key = cfg.clone();
    no_key.secrets_key_file = None;
    let e = start_fails(no_key).await;
    assert!(e.contains("secrets_key_file"), "{e}");
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "cd".repeat(32)).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut wrong_key = cfg.clone();
    wrong_key.secrets_key_file = Some(wrong.clone());
    let e = start_fails(wrong_key).await;
    assert!(e.contains("does not decrypt"), "{e}");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut open_key = cfg.clone();
    open_key.secrets_key_file = Some(wrong);
    let e = start_fails(open_key).await;
    assert!(e.contains("chmod 600"), "{e}");
    // With the right key all is as before; the API still masks.
    let (running, api) = start_with(cfg).await;
    let n = api.node("enc").await;
    assert_eq!(n["driver_info"]["ipmi_password"], "******");
    running.shutdown().await;
}

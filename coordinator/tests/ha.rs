//! A group of three `ingot-coordinator` processes on one PostgreSQL
//! database (issue 17, docs/ha.md): membership with `alive`, ownership by
//! the hash ring, any member answers, a SIGKILLed member's nodes taken
//! over under a new fencing token within `heartbeat_timeout`, a SIGTERMed
//! member's handed over at once, and the journal's proof that no two
//! coordinators acted on one node at the same time; an enabled console
//! (IPMI Serial-over-LAN on `ipmi_sim`) comes back on the new owner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ipmi_sim;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Api, Backend, free_port, test_db};
use ingot_coordinator::db::{Db, NodeEvent};
use serde_json::{Value, json};

const HEARTBEAT_TIMEOUT_S: u64 = 3;

/// One member, killed on drop.
struct Member {
    name: String,
    child: Child,
    api: Api,
    dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    fn start(name: &str, db: &str) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase = \"{db}\"\nconductor_name = \"{name}\"\n\
             check_interval_ms = 200\n\n[conductor]\nheartbeat_interval = 1\n\
             heartbeat_timeout = {HEARTBEAT_TIMEOUT_S}\nhash_ring_reset_interval = 1\n\n\
             [power_sync]\ninterval_ms = 0\n"
        );
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ingot-coordinator"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Member {
            name: name.to_owned(),
            child,
            api: Api::new(&format!("http://127.0.0.1:{port}")),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    async fn up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/v1", self.api.base)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

fn fake_node(name: &str) -> Value {
    json!({
        "driver": "fake-hardware", "name": name,
        "boot_interface": "fake", "deploy_interface": "fake", "management_interface": "fake",
        "network_interface": "noop", "power_interface": "fake"
    })
}

/// `uuid → conductor` as `api` sees it.
async fn owners(api: &Api) -> BTreeMap<String, String> {
    let (st, v) = api.get("/v1/nodes?fields=uuid,conductor").await;
    assert_eq!(st, 200, "{v}");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["uuid"].as_str().unwrap().to_owned(),
                n["conductor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn alive(api: &Api) -> BTreeMap<String, bool> {
    let (st, v) = api.get("/v1/conductors").await;
    assert_eq!(st, 200, "{v}");
    v["conductors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hostname"].as_str().unwrap().to_owned(),
                c["alive"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Starts members `names` on `db` and waits until the last one lists them
/// all as alive.
async fn start_group(names: &[&str], db: &str) -> Vec<Member> {
    let members: Vec<Member> = names.iter().map(|n| Member::start(n, db)).collect();
    for m in &members {
        m.up().await;
    }
    let last = &members[members.len() - 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = alive(&last.api).await;
        if a.len() == names.len() && a.values().all(|v| *v) {
            return members;
        }
        assert!(Instant::now() < deadline, "the group did not form: {a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails when two coordinators' actions on one node overlap in time, or
/// the fencing token goes down. An action never finished ends at `killed`
/// (the ms at which its coordinator was killed), when given.
fn check_no_double_ownership(uuid: &str, events: &[NodeEvent], killed: &BTreeMap<String, i64>) {
    let mut spans: Vec<(i64, i64, &str, i64)> = events
        .iter()
        .map(|e| {
            let end = e
                .finished_ms
                .or_else(|| killed.get(&e.conductor).copied())
                .unwrap_or(i64::MAX);
            (e.started_ms, end, e.conductor.as_str(), e.fence)
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            b.3 >= a.3,
            "node {uuid}: the fencing token went down: {a:?} then {b:?}"
        );
        if a.2 != b.2 {
            assert!(
                b.0 >= a.1,
                "node {uuid}: {} acted from {} while {} acted until {}: {events:?}",
                b.2,
                b.0,
                a.2,
                a.1
            );
            assert!(
                b.3 > a.3,
                "node {uuid}: {} acted under {}'s token {}",
                b.2,
                a.2,
                a.3
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_share_the_fleet_and_survive_a_kill_and_a_stop() {
    let Some(db) = test_db(Backend::Postgres, "ha_group").await else {
        return;
    };
    // Membership: every member lists the group, all alive, with drivers.
    let mut members = start_group(&["c1", "c2", "c3"], &db.url).await;
    let (st, c) = members[1].api.get("/v1/conductors/c3").await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["alive"], true);
    assert!(
        c["drivers"]
            .as_array()
            .unwrap()
            .contains(&json!("fake-hardware"))
    );
    let (st, _) = members[1].api.get("/v1/conductors/nobody").await;
    assert_eq!(st, 404);

    // Ownership: 60 nodes over three members, every member agreeing.
    let mut uuids = Vec::new();
    for i in 0..60 {
        uuids.push(
            members[i % 3]
                .api
                .create_node(fake_node(&format!("n{i:02}")))
                .await,
        );
    }
    let seen = owners(&members[0].api).await;
    assert_eq!(seen, owners(&members[1].api).await);
    assert_eq!(seen, owners(&members[2].api).await);
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for o in seen.values() {
        *per.entry(o.as_str()).or_default() += 1;
    }
    assert_eq!(per.len(), 3, "every member owns nodes: {per:?}");
    assert!(per.values().all(|n| *n >= 8), "spread: {per:?}");

    // Any member answers: a non-owner records the intent, the owner acts
    // (on every node: then every owner has acted on its nodes once).
    for (uuid, owner) in seen.iter() {
        let other = members.iter().find(|m| &m.name != owner).unwrap();
        other.api.set_power(uuid, "power on").await;
    }
    for uuid in seen.keys() {
        members[0]
            .api
            .wait_power_state(uuid, "power on", Duration::from_secs(20))
            .await;
    }
    let store = Db::connect(&db.url).await.unwrap();
    for (uuid, owner) in seen.iter() {
        let ev = store.node_events(uuid).await.unwrap();
        let power: Vec<&NodeEvent> = ev.iter().filter(|e| e.kind == "power").collect();
        assert_eq!(power.len(), 1, "{ev:?}");
        assert_eq!(&power[0].conductor, owner, "the owner acted: {ev:?}");
    }

    // SIGKILL c2: its nodes get new owners within heartbeat_timeout plus a
    // refresh, and a power change asked of a survivor meanwhile is made.
    let victim_nodes: Vec<String> = seen
        .iter()
        .filter(|(_, o)| o.as_str() == "c2")
        .map(|(u, _)| u.clone())
        .collect();
    let killed_at = store.now_ms().await.unwrap();
    let t0 = Instant::now();
    members[1].child.kill().unwrap();
    members[1].child.wait().unwrap();
    for uuid in &victim_nodes {
        members[0].api.set_power(uuid, "power off").await;
    }
    let limit = Duration::from_secs(HEARTBEAT_TIMEOUT_S + 10);
    let detected = loop {
        if alive(&members[0].api).await.get("c2") == Some(&false) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "c2 still counts as alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reowned = loop {
        let o = owners(&members[2].api).await;
        if victim_nodes
            .iter()
            .all(|u| o.get(u).is_some_and(|c| c == "c1" || c == "c3"))
        {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "c2's nodes not re-owned: {o:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for uuid in &victim_nodes {
        members[2]
            .api
            .wait_power_state(uuid, "power off", limit)
            .await;
    }
    let done = t0.elapsed();
    eprintln!(
        "SIGKILL c2: dead after {detected:?}, its {} nodes re-owned after {reowned:?}, their power requests done after {done:?}",
        victim_nodes.len()
    );
    assert!(detected >= Duration::from_secs(HEARTBEAT_TIMEOUT_S - 1));
    let mut takeovers = 0;
    for uuid in &victim_nodes {
        let ev = store.node_events(uuid).await.unwrap();
        assert!(
            ev.iter()
                .any(|e| e.kind == "power" && e.detail == "power off" && e.conductor != "c2"),
            "a survivor made the power change: {ev:?}"
        );
        // Where c2 had acted, a survivor took the node over under a new token.
        if let Some(last) = ev.iter().rfind(|e| e.conductor == "c2") {
            assert!(
                ev.iter()
                    .any(|e| e.kind == "takeover" && e.conductor != "c2" && e.fence > last.fence),
                "the takeover is journalled: {ev:?}"
            );
            takeovers += 1;
        }
    }
    assert_eq!(
        takeovers,
        victim_nodes.len(),
        "c2 had acted on each of its nodes"
    );

    // SIGSTOP c3 (a stalled process: no heartbeat, no I/O) past the
    // timeout: c1 takes its nodes and makes the power changes asked
    // meanwhile. After SIGCONT, c3's lease has lapsed: it acts on nothing
    // until it heartbeats again, then takes back its share under new tokens.
    let stalled: Vec<String> = owners(&members[0].api)
        .await
        .into_iter()
        .filter(|(_, o)| o == "c3")
        .map(|(u, _)| u)
        .collect();
    members[2].signal("STOP");
    let t2 = Instant::now();
    for uuid in &stalled {
        members[0].api.set_power(uuid, "power off").await;
    }
    for uuid in &stalled {
        members[0]
            .api
            .wait_power_state(uuid, "power off", limit)
            .await;
    }
    eprintln!(
        "SIGSTOP c3: its {} nodes' power changes made by c1 after {:?}",
        stalled.len(),
        t2.elapsed()
    );
    members[2].signal("CONT");
    let deadline = Instant::now() + limit;
    while alive(&members[0].api).await.get("c3") != Some(&true) {
        assert!(Instant::now() < deadline, "c3 did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for uuid in &stalled {
        members[0].api.set_power(uuid, "power on").await;
    }
    for uuid in &stalled {
        members[0]
            .api
            .wait_power_state(uuid, "power on", limit)
            .await;
    }

    // SIGTERM c3: it goes offline at once and c1 takes every node.
    let t1 = Instant::now();
    members[2].signal("TERM");
    let status = members[2].child.wait().unwrap();
    assert!(status.success(), "c3 stopped cleanly: {}", members[2].log());
    let a = alive(&members[0].api).await;
    assert_eq!(a.get("c3"), Some(&false), "offline at once: {a:?}");
    loop {
        let o = owners(&members[0].api).await;
        if o.values().all(|c| c == "c1") {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(HEARTBEAT_TIMEOUT_S),
            "a stopped member's nodes go over before its heartbeat times out: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("SIGTERM c3: every node with c1 after {:?}", t1.elapsed());
    for uuid in uuids.iter().take(10) {
        members[0].api.set_power(uuid, "power on").await;
        members[0]
            .api
            .wait_power_state(uuid, "power on", Duration::from_secs(20))
            .await;
    }

    // The journal: never two coordinators on one node at once.
    let killed: BTreeMap<String, i64> = [("c2".to_owned(), killed_at + 1000)].into();
    let mut acted: BTreeSet<String> = BTreeSet::new();
    for uuid in &uuids {
        let ev = store.node_events(uuid).await.unwrap();
        acted.extend(ev.iter().map(|e| e.conductor.clone()));
        check_no_double_ownership(uuid, &ev, &killed);
    }
    assert_eq!(acted.len(), 3, "all three acted at some point: {acted:?}");
    members.truncate(1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enabled_console_comes_back_on_the_new_owner() {
    let Some(db) = test_db(Backend::Postgres, "ha_console").await else {
        return;
    };
    let serial_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serial_port = serial_listener.local_addr().unwrap().port();
    let Some(sim) =
        ipmi_sim::IpmiSim::start_with(&format!("  sol \"tcp:127.0.0.1:{serial_port}\" 115200"))
    else {
        assert!(!common::must_not_skip(), "ipmi_sim is missing");
        return;
    };
    let mut members = start_group(&["c1", "c2"], &db.url).await;
    let api = &members[0].api;
    api.create_node(json!({
        "driver": "ipmi", "name": "n", "console_interface": "ipmitool-socat",
        "driver_info": sim.driver_info(),
    }))
    .await;
    let (st, v) = api
        .put("/v1/nodes/n/states/console", json!({"enabled": true}))
        .await;
    assert_eq!(st, 202, "{v}");
    let console = |api: Api| async move {
        let (st, v) = api.get("/v1/nodes/n/states/console").await;
        assert_eq!(st, 200, "{v}");
        v["console_info"].clone()
    };
    let first = console(members[0].api.clone()).await;
    // Every member answers with the same console_info.
    assert_eq!(first, console(members[1].api.clone()).await);
    let mut serial = common::sol::Serial::accept(&serial_listener).await;
    let mut client = common::sol::attach(&first, &mut serial).await;
    drop(client);

    // c1 runs the console; SIGKILL it.
    members[0].child.kill().unwrap();
    members[0].child.wait().unwrap();
    let t0 = Instant::now();
    let second = loop {
        let info = console(members[1].api.clone()).await;
        if info != first && !info.is_null() {
            break info;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(HEARTBEAT_TIMEOUT_S + 15),
            "the console did not come back on c2: {info}; c2's log: {}",
            members[1].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let restarted = t0.elapsed();
    assert_ne!(first["token"], second["token"], "a new token");
    assert_ne!(first["url"], second["url"], "a new URL");
    // ipmi_sim keeps its serial line; the new SOL session carries it.
    client = common::sol::attach(&second, &mut serial).await;
    common::sol::output_arrives(&mut serial, &mut client, "after-takeover", 30).await;
    eprintln!(
        "SIGKILL c1: its console listened on c2 after {restarted:?}, carried output after {:?}",
        t0.elapsed()
    );
    members.truncate(0);
}

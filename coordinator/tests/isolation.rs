//! Tenant network isolation (issue 19 items 1, 2, 4) against a real,
//! private `ovsdb-server` (common/ovs.rs; no ovs-vswitchd is needed to
//! change and read the database): a node with `network_interface =
//! neutron` and ports with `local_link_connection` is driven with
//! fake-hardware power and the simulated agent (common/agent_sim.rs)
//! through inspection, cleaning, deploy and undeploy, and after each phase
//! the OVS port's `tag` is read with `ovs-vsctl`. The power driver is the
//! `fake` one wrapped to read the tag at every power on, which shows the
//! port moved BEFORE the node was powered on for the phase. Drift made with
//! `ovs-vsctl set port` is corrected by the network sync and recorded; a
//! killed ovsdb-server fails the deploy closed. Each test runs on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent_sim::SimAgent;
use common::hooked_power::{HookedPower, Hooks};
use common::ovs::{Ovsdb, have_ovs};
use common::{Api, Backend, test_config, test_db};
use ingot_coordinator::config::Config;
use ingot_coordinator::power::{BoxFuture, PowerAction, PowerDrivers, PowerTarget};
use ingot_coordinator::server::{Running, start};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const MAC: &str = "52:54:00:aa:bb:01";
const SYNC_MS: u64 = 300;

/// `ovs-vsctl get port <port> tag` without failing the test (the server
/// may be down).
fn tag(sock: &std::path::Path, port: &str) -> String {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{}", sock.display()))
        .args(["--no-wait", "--timeout=2", "get", "port", port, "tag"])
        .output()
        .unwrap();
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        "unreadable".into()
    }
}

/// The `fake` power driver; at every power on (or reboot) it reads port
/// p1's tag from the switch: where the node's NIC is when it boots.
struct TagAtPowerOn {
    sock: PathBuf,
    log: Mutex<Vec<(String, String)>>,
}

impl TagAtPowerOn {
    fn log(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }
}

impl Hooks for TagAtPowerOn {
    fn power<'a>(&'a self, _target: &'a PowerTarget, action: PowerAction) -> BoxFuture<'a, ()> {
        let tag = match action {
            PowerAction::On | PowerAction::Reboot => tag(&self.sock, "p1"),
            _ => String::new(),
        };
        self.log.lock().unwrap().push((format!("{action:?}"), tag));
        Box::pin(async {})
    }
}

/// The coordinator's switch and networks: tor1 is the private server.
fn config(db: &str, ovs: &Ovsdb) -> Config {
    let net: Config = toml::from_str(&format!(
        r#"
        [switches.tor1]
        driver = "ovsdb"
        address = "unix:{}"
        timeout_ms = 2000

        [networks.prov]
        vlan = 100
        [networks.clean]
        vlan = 101
        [networks.insp]
        vlan = 102
        [networks.quarantine]
        vlan = 4000
        [networks.tenant-a]
        vlan = 201
        uuid = "6f1c2a10-7a55-4b8e-9e0c-3b1d2c4e5f60"
        [networks.tenant-b]
        vlan = 202

        [network_roles]
        provisioning = "prov"
        cleaning = "clean"
        inspection = "insp"
        quarantine = "quarantine"

        [network_sync]
        interval_ms = {SYNC_MS}
        attempts = 2
        "#,
        ovs.sock.display()
    ))
    .unwrap();
    Config {
        switches: net.switches,
        networks: net.networks,
        network_roles: net.network_roles,
        network_sync: net.network_sync,
        ..test_config(db)
    }
}

async fn start_coordinator(
    config: Config,
    ovs: &Ovsdb,
) -> (Running, Api, Arc<HookedPower<TagAtPowerOn>>) {
    let power = Arc::new(HookedPower::new(TagAtPowerOn {
        sock: ovs.sock.clone(),
        log: Mutex::new(Vec::new()),
    }));
    let mut drivers = PowerDrivers::default();
    drivers.register("fake", power.clone());
    let running = start(config, drivers).await.unwrap();
    let api = Api::new(&format!("http://{}", running.addr));
    (running, api, power)
}

/// A `neutron` node whose boot NIC is on tor1's p1.
async fn neutron_node(api: &Api, name: &str) -> (String, String) {
    let uuid = api
        .create_node(json!({
            "driver": "fake-hardware", "name": name,
            "deploy_interface": "direct", "boot_interface": "ipxe", "inspect_interface": "agent",
            "network_interface": "neutron",
        }))
        .await;
    let (st, port) = api
        .post(
            "/v1/ports",
            json!({"address": MAC, "node_uuid": uuid,
                   "local_link_connection": {"switch_id": "52:54:00:00:be:ef", "port_id": "p1", "switch_info": "tor1"}}),
        )
        .await;
    assert_eq!(st, 201, "{port}");
    (uuid, port["uuid"].as_str().unwrap().to_owned())
}

/// The node's isolation record.
async fn record(api: &Api, name: &str) -> Vec<Value> {
    api.node(name).await["driver_internal_info"]["isolation_report"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `f` holds (polling every 50 ms).
async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set_image(api: &Api, name: &str) {
    let (st, v) = api
        .patch(
            &format!("/v1/nodes/{name}"),
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": "http://127.0.0.1:8088/img.raw"},
                {"op": "add", "path": "/instance_info/image_checksum", "value": "8a5cbde26b52efe94b95bc77565a7fa84039a39401a7b5dd127497ee17d361bb"},
                {"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"}
            ]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both!(
    ports_follow_the_phases_the_tenant_and_the_sync,
    a_dead_switch_fails_the_deploy_closed
);

async fn ports_follow_the_phases_the_tenant_and_the_sync(backend: Backend) {
    if !have_ovs() {
        return;
    }
    let Some(db) = test_db(backend, "isolation_flow").await else {
        return;
    };
    let ovs = Ovsdb::start();
    let (running, api, power) = start_coordinator(config(&db.url, &ovs), &ovs).await;
    let (uuid, port_uuid) = neutron_node(&api, "iso-1").await;
    let agent = SimAgent::start(&api.base, MAC).await;
    api.provision("iso-1", json!({"target": "manage"})).await;
    api.wait_state("iso-1", "manageable", T).await;
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "[]", "untouched");

    // Inspection: on the inspection network before the power on.
    api.provision("iso-1", json!({"target": "inspect"})).await;
    agent.reboot();
    api.wait_state("iso-1", "manageable", T).await;
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "102");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "vlan_mode"]), "access");
    assert_eq!(
        power.log()[0],
        ("On".into(), "102".into()),
        "{:?}",
        power.log()
    );
    let r = record(&api, "iso-1").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["reason"], "inspection");
    assert_eq!(r[0]["switch"], "tor1");
    assert_eq!(r[0]["switch_port"], "p1");
    assert_eq!(r[0]["port_uuid"], port_uuid.as_str());
    assert_eq!(r[0]["before"], "every VLAN (unrestricted)");
    assert_eq!(r[0]["vlan_before"], Value::Null);
    assert_eq!(r[0]["vlan_after"], 102);
    assert_eq!(r[0]["read_back"], true);
    assert!(r[0]["at"].as_str().is_some());

    // Inspection rewrote local_link_connection from the agent's LLDP
    // (switch-1, which is not configured): the operator sets it back, and
    // puts the second NIC it found on p2.
    let (_, val) = api.get("/v1/nodes/iso-1/validate").await;
    assert_eq!(val["network"]["result"], false, "{val}");
    assert!(
        val["network"]["reason"]
            .as_str()
            .unwrap()
            .contains("switch-1"),
        "{val}"
    );
    let (_, ports) = api.get(&format!("/v1/ports/detail?node={uuid}")).await;
    for p in ports["ports"].as_array().unwrap() {
        let sw_port = if p["address"] == MAC { "p1" } else { "p2" };
        let (st, v) = api
            .patch(
                &format!("/v1/ports/{}", p["uuid"].as_str().unwrap()),
                json!([{"op": "replace", "path": "/local_link_connection",
                        "value": {"port_id": sw_port, "switch_info": "tor1"}}]),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }

    let (_, val) = api.get("/v1/nodes/iso-1/validate").await;
    assert_eq!(val["network"], json!({"result": true}), "{val}");

    // Cleaning: the boot NIC on the cleaning network, the other one
    // quarantined.
    let from = power.log().len();
    api.provision("iso-1", json!({"target": "provide"})).await;
    agent.reboot();
    api.wait_state("iso-1", "available", T).await;
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "101");
    assert_eq!(ovs.vsctl(&["get", "port", "p2", "tag"]), "4000");
    assert_eq!(power.log()[from], ("On".into(), "101".into()));

    // VIFs: tenant networks only, by name or uuid.
    for (vif, needle) in [
        ("nope", "is no configured network"),
        ("prov", "no tenant network"),
        ("quarantine", "no tenant network"),
    ] {
        let (st, v) = api.post("/v1/nodes/iso-1/vifs", json!({"id": vif})).await;
        assert_eq!(st, 400, "{vif}: {v}");
        assert!(common::faultstring(&v).contains(needle), "{vif}: {v}");
    }
    // No VIF: the deploy is refused before anything boots.
    set_image(&api, "iso-1").await;
    let from = power.log().len();
    api.provision("iso-1", json!({"target": "active"})).await;
    let n = api.wait_state("iso-1", "deploy failed", T).await;
    assert!(
        n["last_error"]
            .as_str()
            .unwrap()
            .contains("No VIFs are attached to node"),
        "{n}"
    );
    assert_eq!(power.log().len(), from, "nothing was powered on");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "101");
    api.provision("iso-1", json!({"target": "deleted"})).await;
    agent.reboot();
    api.wait_state("iso-1", "available", T).await;

    let (st, v) = api
        .post(
            "/v1/nodes/iso-1/vifs",
            json!({"id": "6f1c2a10-7a55-4b8e-9e0c-3b1d2c4e5f60"}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let (_, vifs) = api.get("/v1/nodes/iso-1/vifs").await;
    assert_eq!(
        vifs,
        json!({"vifs": [{"id": "6f1c2a10-7a55-4b8e-9e0c-3b1d2c4e5f60"}]})
    );

    // Deploy: provisioning network while the agent writes, the tenant
    // network before the node boots the instance.
    set_image(&api, "iso-1").await;
    let from = power.log().len();
    api.provision("iso-1", json!({"target": "active"})).await;
    agent.reboot();
    api.wait_state("iso-1", "active", T).await;
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "201");
    assert_eq!(ovs.vsctl(&["get", "port", "p2", "tag"]), "4000");
    let log = power.log()[from..].to_vec();
    let ons: Vec<&str> = log
        .iter()
        .filter(|(a, _)| a == "On" || a == "Reboot")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(ons, ["100", "201"], "{log:?}");
    assert_eq!(log.last().unwrap().0, "On", "{log:?}");
    let r = record(&api, "iso-1").await;
    let tenant = r.iter().rev().find(|e| e["reason"] == "tenant").unwrap();
    assert_eq!(tenant["vlan_before"], 100);
    assert_eq!(tenant["vlan_after"], 201);
    assert_eq!(tenant["network"], "tenant-a");
    assert_eq!(tenant["read_back"], true);

    // Drift behind the coordinator's back: corrected by the periodic sync
    // (nothing else runs on this node now) and recorded. How fast is not
    // asserted (a loaded machine stretched it past 2.9 s once); the lab
    // reports the correction time.
    // The switch shows the correction a moment before the node records it:
    // wait for the record.
    ovs.vsctl(&["set", "port", "p1", "tag=202"]);
    let deadline = Instant::now() + T;
    let drift = loop {
        let r = record(&api, "iso-1").await;
        if let Some(last) = r.last().filter(|e| e["reason"] == "drift") {
            break last.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the drift was not corrected and recorded: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(tag(&ovs.sock, "p1"), "201");
    assert_eq!(drift["vlan_before"], 202);
    assert_eq!(drift["vlan_after"], 201);
    assert_eq!(drift["read_back"], true);

    // Undeploy: VIFs detached, back on the cleaning network.
    api.provision("iso-1", json!({"target": "deleted"})).await;
    agent.reboot();
    api.wait_state("iso-1", "available", T).await;
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "101");
    let (_, vifs) = api.get("/v1/nodes/iso-1/vifs").await;
    assert_eq!(vifs, json!({"vifs": []}));
    let r = record(&api, "iso-1").await;
    let back = r.iter().rev().find(|e| e["vlan_before"] == 201).unwrap();
    assert_eq!(back["reason"], "cleaning");
    assert_eq!(back["vlan_after"], 101);

    // Maintenance: quarantined by the sync, put back when it ends.
    let (st, v) = api
        .put("/v1/nodes/iso-1/maintenance", json!({"reason": "cabling"}))
        .await;
    assert_eq!(st, 202, "{v}");
    until("maintenance to quarantine the port", T, || {
        tag(&ovs.sock, "p1") == "4000"
    })
    .await;
    let (st, v) = api.delete("/v1/nodes/iso-1/maintenance").await;
    assert_eq!(st, 202, "{v}");
    until("the port to return to cleaning", T, || {
        tag(&ovs.sock, "p1") == "101"
    })
    .await;
    let r = record(&api, "iso-1").await;
    assert!(
        r.iter()
            .any(|e| e["reason"] == "maintenance" && e["vlan_after"] == 4000)
    );

    // A deleted port is quarantined: a third NIC on p3, never placed by
    // a phase (so the sync leaves it alone), on VLAN 201 by hand.
    ovs.vsctl(&[
        "add-port", "br0", "p3", "--", "set", "port", "p3", "tag=201",
    ]);
    let (st, p3) = api
        .post(
            "/v1/ports",
            json!({"address": "52:54:00:aa:bb:03", "node_uuid": uuid, "pxe_enabled": false,
                   "local_link_connection": {"port_id": "p3", "switch_info": "tor1"}}),
        )
        .await;
    assert_eq!(st, 201, "{p3}");
    tokio::time::sleep(Duration::from_millis(SYNC_MS * 2)).await;
    assert_eq!(tag(&ovs.sock, "p3"), "201", "the sync has no say on it");
    let (st, v) = api
        .delete(&format!("/v1/ports/{}", p3["uuid"].as_str().unwrap()))
        .await;
    assert_eq!(st, 204, "{v}");
    until("the deleted port to be quarantined", T, || {
        tag(&ovs.sock, "p3") == "4000"
    })
    .await;

    // A deleted node's ports are quarantined.
    let (st, v) = api.delete("/v1/nodes/iso-1").await;
    assert_eq!(st, 204, "{v}");
    until("the deleted node's port to be quarantined", T, || {
        tag(&ovs.sock, "p1") == "4000"
    })
    .await;
    running.shutdown().await;
}

async fn a_dead_switch_fails_the_deploy_closed(backend: Backend) {
    if !have_ovs() {
        return;
    }
    let Some(db) = test_db(backend, "isolation_dead").await else {
        return;
    };
    let mut ovs = Ovsdb::start();
    let (running, api, _power) = start_coordinator(config(&db.url, &ovs), &ovs).await;
    neutron_node(&api, "iso-2").await;
    let agent = SimAgent::start(&api.base, MAC).await;
    api.provision("iso-2", json!({"target": "manage"})).await;
    api.wait_state("iso-2", "manageable", T).await;
    api.provision("iso-2", json!({"target": "provide"})).await;
    agent.reboot();
    api.wait_state("iso-2", "available", T).await;
    let (st, v) = api
        .post("/v1/nodes/iso-2/vifs", json!({"id": "tenant-b"}))
        .await;
    assert_eq!(st, 204, "{v}");
    set_image(&api, "iso-2").await;

    // The agent holds back until the switch is dead: the deploy starts
    // (ports on provisioning), then ovsdb-server is killed before the
    // image is written and the ports would move to the tenant.
    agent.state.lock().unwrap().paused = true;
    api.provision("iso-2", json!({"target": "active"})).await;
    api.wait_state("iso-2", "wait call-back", T).await;
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "100");
    ovs.kill();
    agent.reboot();
    agent.state.lock().unwrap().paused = false;
    let n = api.wait_state("iso-2", "deploy failed", T).await;
    let e = n["last_error"].as_str().unwrap();
    assert!(
        e.starts_with("Deploy failed: switch tor1, port p1: "),
        "{e}"
    );
    assert!(e.contains("unreachable"), "{e}");
    assert_eq!(n["power_state"], "power off");
    let r = &n["driver_internal_info"]["isolation_report"];
    let failed = r
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["reason"] == "tenant")
        .unwrap();
    assert_eq!(failed["read_back"], false);
    assert_eq!(failed["vlan_after"], 202);
    assert!(failed["error"].as_str().unwrap().contains("tor1"));

    // The switch is back: the port never reached the tenant VLAN, and the
    // sync finishes the quarantine the failure asked for.
    ovs.restart();
    assert_ne!(tag(&ovs.sock, "p1"), "202");
    until("the failed node's port to be quarantined", T, || {
        tag(&ovs.sock, "p1") == "4000"
    })
    .await;
    running.shutdown().await;
}

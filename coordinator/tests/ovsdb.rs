//! The Open vSwitch switch driver against a real `ovsdb-server`: each test
//! starts its own server on a fresh database in a temporary directory (not
//! the system's), creates a bridge and ports with `ovs-vsctl --no-wait`
//! (no ovs-vswitchd is needed to change and read the database), and checks
//! what the driver did with `ovs-vsctl` too.
//!
//! The one mock is the hostile server in `a_hostile_server_is_cut_off_*`:
//! a tiny fake that sends an endless or oversized answer, which a real
//! ovsdb-server never does; it tests our bound on a broken or malicious
//! peer, so it has to be a fake.
//!
//! Without Open vSwitch the tests are skipped (they fail under CI or
//! INGOT_REQUIRE_PRIVILEGED=1; `cargo xtask deps` installs
//! openvswitch-switch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ovs::{Ovsdb, have_ovs};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ingot_coordinator::network::switch::ovsdb::{OvsdbAddress, OvsdbSwitch};
use ingot_coordinator::network::switch::{
    PortState, SwitchDriver, SwitchErrorKind, VlanId, set_port_verified,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUARANTINE: u16 = 4000;

fn v(n: u16) -> VlanId {
    VlanId::new(n).unwrap()
}

fn driver(address: OvsdbAddress, timeout: Duration) -> OvsdbSwitch {
    OvsdbSwitch::new("tor1", address, timeout, v(QUARANTINE))
}

#[tokio::test]
async fn access_trunk_and_quarantine_are_set_and_read_back() {
    if !have_ovs() {
        return;
    }
    let ovs = Ovsdb::start();
    let sw = driver(ovs.unix(), Duration::from_secs(5));

    // A fresh port carries every VLAN: the state a node's port must leave.
    assert_eq!(sw.read_port("p1").await.unwrap(), PortState::AllVlans);

    let access = PortState::access(v(100));
    set_port_verified(&sw, "p1", &access, 1).await.unwrap();
    assert_eq!(sw.read_port("p1").await.unwrap(), access);
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "100");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "vlan_mode"]), "access");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "trunks"]), "[]");
    // The other port is untouched.
    assert_eq!(ovs.vsctl(&["get", "port", "p2", "tag"]), "[]");

    let trunk = PortState::Trunk {
        native: Some(v(10)),
        allowed: [v(30), v(20)].into_iter().collect(),
    };
    set_port_verified(&sw, "p1", &trunk, 1).await.unwrap();
    assert_eq!(sw.read_port("p1").await.unwrap(), trunk);
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "10");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "trunks"]), "[20, 30]");
    assert_eq!(
        ovs.vsctl(&["get", "port", "p1", "vlan_mode"]),
        "native-untagged"
    );

    // One allowed VLAN, no native: the server answers a one-element set
    // as a bare integer, and the empty tag as ["set", []].
    let tagged_only = PortState::Trunk {
        native: None,
        allowed: BTreeSet::from([v(20)]),
    };
    set_port_verified(&sw, "p1", &tagged_only, 1).await.unwrap();
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "[]");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "trunks"]), "[20]");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "vlan_mode"]), "trunk");

    sw.quarantine_port("p1").await.unwrap();
    assert_eq!(sw.read_port("p1").await.unwrap(), PortState::Quarantined);
    assert_eq!(
        ovs.vsctl(&["get", "port", "p1", "tag"]),
        QUARANTINE.to_string()
    );
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "trunks"]), "[]");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "vlan_mode"]), "access");

    // Each change carries a comment, kept in the database's log.
    let log = Command::new("ovsdb-tool")
        .arg("show-log")
        .arg(ovs.dir.path().join("conf.db"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("ingot: port p1 to access VLAN 100"), "{log}");
    assert!(log.contains("ingot: port p1 to quarantined"), "{log}");

    // The same over TCP.
    let tcp = driver(
        OvsdbAddress::parse(&format!("tcp:127.0.0.1:{}", ovs.tcp_port)).unwrap(),
        Duration::from_secs(5),
    );
    assert_eq!(tcp.read_port("p1").await.unwrap(), PortState::Quarantined);
    set_port_verified(&tcp, "p2", &access, 1).await.unwrap();
    assert_eq!(ovs.vsctl(&["get", "port", "p2", "tag"]), "100");
}

#[tokio::test]
async fn a_change_behind_our_back_is_seen_by_the_read_back() {
    if !have_ovs() {
        return;
    }
    let ovs = Ovsdb::start();
    let sw = driver(ovs.unix(), Duration::from_secs(5));
    let intended = PortState::access(v(100));
    set_port_verified(&sw, "p1", &intended, 1).await.unwrap();

    ovs.vsctl(&["set", "port", "p1", "tag=99"]);
    let observed = sw.read_port("p1").await.unwrap();
    assert_eq!(observed, PortState::access(v(99)));
    assert_ne!(observed, intended);

    // Trunks added to an access port: ignored by ovs-vswitchd, but not what
    // was set, so not equal either.
    ovs.vsctl(&["set", "port", "p1", "trunks=5"]);
    let observed = sw.read_port("p1").await.unwrap();
    assert!(
        matches!(&observed, PortState::Other { description } if description.contains("access with trunks")),
        "{observed:?}"
    );

    ovs.vsctl(&["set", "port", "p1", "vlan_mode=native-tagged", "trunks=5,6"]);
    let observed = sw.read_port("p1").await.unwrap();
    assert!(
        matches!(&observed, PortState::Other { description } if description.contains("native-tagged")),
        "{observed:?}"
    );

    ovs.vsctl(&["clear", "port", "p1", "tag", "trunks", "vlan_mode"]);
    assert_eq!(sw.read_port("p1").await.unwrap(), PortState::AllVlans);

    // Setting it again corrects the drift.
    set_port_verified(&sw, "p1", &intended, 1).await.unwrap();
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "tag"]), "100");
}

#[tokio::test]
async fn a_nonexistent_port_is_a_clear_error() {
    if !have_ovs() {
        return;
    }
    let ovs = Ovsdb::start();
    let sw = driver(ovs.unix(), Duration::from_secs(5));
    let e = sw.read_port("nope").await.unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::NoSuchPort), "{e}");
    assert_eq!(e.to_string(), "switch tor1, port nope: no such port");
    let e = sw
        .set_port("nope", &PortState::access(v(100)))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::NoSuchPort), "{e}");
    // Unsafe requests never reach the switch.
    let e = sw
        .set_port(
            "p1",
            &PortState::Trunk {
                native: None,
                allowed: BTreeSet::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::Invalid(_)), "{e}");
    assert_eq!(ovs.vsctl(&["get", "port", "p1", "trunks"]), "[]");
}

#[tokio::test]
async fn a_dead_switch_gives_a_clear_error_within_the_timeout() {
    if !have_ovs() {
        return;
    }
    let mut ovs = Ovsdb::start();
    let timeout = Duration::from_millis(500);
    let sw = driver(ovs.unix(), timeout);
    sw.read_port("p1").await.unwrap();

    // Hung: the kernel still accepts connections, nothing answers.
    ovs.signal("-STOP");
    let t = Instant::now();
    let e = sw
        .set_port("p1", &PortState::access(v(100)))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(e.kind, SwitchErrorKind::Timeout { ms: 500 }),
        "{e}"
    );
    assert!(e.is_transient());
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        e.to_string(),
        "switch tor1, port p1: no answer within 500 ms"
    );
    ovs.signal("-CONT");

    // Killed: the socket file is left behind, connections are refused.
    ovs.kill();
    let t = Instant::now();
    let e = sw.read_port("p1").await.unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::Unreachable { .. }), "{e}");
    assert!(t.elapsed() < timeout, "{:?}", t.elapsed());
    let text = e.to_string();
    assert!(
        text.starts_with("switch tor1, port p1: unreachable at unix:") && text.contains("db.sock"),
        "{text}"
    );

    // Nothing listening on TCP either.
    let tcp = driver(
        OvsdbAddress::parse(&format!("tcp:127.0.0.1:{}", ovs.tcp_port)).unwrap(),
        timeout,
    );
    let e = tcp.read_port("p1").await.unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::Unreachable { .. }), "{e}");
}

/// What the fake server sends after reading the request.
enum Hostility {
    /// `{"id":1,"result":"xxxxx…` forever.
    EndlessString,
    /// One complete answer of `bytes` bytes.
    Huge(usize),
    /// Not JSON at all.
    Garbage,
}

/// A fake OVSDB server on a unix socket (a mock: a real ovsdb-server does
/// not misbehave like this). Returns the socket path and how many bytes it
/// managed to send before the client went away.
async fn hostile_server(
    dir: &Path,
    hostility: Hostility,
) -> (PathBuf, tokio::task::JoinHandle<usize>) {
    let path = dir.join("hostile.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 4096];
        let _ = conn.read(&mut request).await.unwrap();
        let mut sent = 0usize;
        let mut send = async |bytes: &[u8]| -> bool {
            match conn.write_all(bytes).await {
                Ok(()) => {
                    sent += bytes.len();
                    true
                }
                Err(_) => false,
            }
        };
        match hostility {
            Hostility::EndlessString => {
                if send(br#"{"id":1,"error":null,"result":""#).await {
                    let chunk = vec![b'x'; 64 * 1024];
                    // Bounded, as every loop in a test: 64 MiB at most.
                    for _ in 0..1024 {
                        if !send(&chunk).await {
                            break;
                        }
                    }
                }
            }
            Hostility::Huge(bytes) => {
                let mut answer = br#"{"id":1,"error":null,"result":[{"rows":[]}],"pad":""#.to_vec();
                answer.resize(bytes - 2, b'y');
                answer.extend_from_slice(b"\"}");
                send(&answer).await;
            }
            Hostility::Garbage => {
                send(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        }
        sent
    });
    (path, task)
}

#[tokio::test]
async fn a_hostile_server_is_cut_off_at_the_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let limit = ingot_coordinator::network::switch::ovsdb::DEFAULT_MAX_MESSAGE;

    // An endless string: refused once it passes the bound, long before the
    // timeout, and the client stops reading (the fake cannot send it all).
    let (path, server) = hostile_server(dir.path(), Hostility::EndlessString).await;
    let sw = driver(OvsdbAddress::Unix(path.clone()), Duration::from_secs(20));
    let t = Instant::now();
    let e = sw.read_port("p1").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        matches!(&e.kind, SwitchErrorKind::Protocol(why) if why.contains(&format!("exceeds {limit} bytes"))),
        "{e}"
    );
    let sent = server.await.unwrap();
    assert!(sent < 64 * 1024 * 1024, "the fake sent everything: {sent}");
    std::fs::remove_file(&path).unwrap();

    // A complete answer one byte over the bound, and one just under it.
    for (bytes, refused) in [(limit + 1, true), (limit, false)] {
        let (path, server) = hostile_server(dir.path(), Hostility::Huge(bytes)).await;
        let sw = driver(OvsdbAddress::Unix(path.clone()), Duration::from_secs(20));
        let r = sw.read_port("p1").await;
        if refused {
            let e = r.unwrap_err();
            assert!(
                matches!(&e.kind, SwitchErrorKind::Protocol(why) if why.contains("exceeds")),
                "{e}"
            );
        } else {
            // Within the bound it is parsed: an empty select means no port.
            let e = r.unwrap_err();
            assert!(matches!(e.kind, SwitchErrorKind::NoSuchPort), "{e}");
        }
        server.await.unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    // Not OVSDB at all.
    let (path, server) = hostile_server(dir.path(), Hostility::Garbage).await;
    let sw = driver(OvsdbAddress::Unix(path), Duration::from_secs(20));
    let e = sw.read_port("p1").await.unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::Protocol(_)), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn the_coordinator_checks_switches_and_networks_at_start() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", db_dir.path().display());
    let text = r#"
        [switches.tor1]
        driver = "ovsdb"
        address = "tcp:127.0.0.1:6640"
        [networks.prov]
        vlan = 100
        [networks.quarantine]
        vlan = 4000
        [network_roles]
        provisioning = "prov"
        cleaning = "cleaning"
        quarantine = "quarantine"
    "#;
    let mut config: ingot_coordinator::config::Config = toml::from_str(text).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database = db;
    let e = ingot_coordinator::server::start(
        config.clone(),
        ingot_coordinator::power::PowerDrivers::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "[network_roles] cleaning: no [networks.cleaning]"
    );

    // Fixed, it starts (the switch is not contacted at start).
    config.network_roles.cleaning = None;
    let running =
        ingot_coordinator::server::start(config, ingot_coordinator::power::PowerDrivers::default())
            .await
            .unwrap();
    running.shutdown().await;
}

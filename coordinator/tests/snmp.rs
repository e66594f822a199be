//! The SNMP client and the `snmp` power interface against net-snmp's
//! `snmpd` on loopback with a `pass_persist` APC rack PDU
//! (tests/snmp/apc_rpdu.py), cross-checked with `snmpget`/`snmpset`, and an
//! `snmp` node's outlet switched through the coordinator's API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "snmp/snmpd.rs"]
mod snmpd;

use std::time::{Duration, Instant};

use ingot_coordinator::power::snmp::{
    Agent, Settings, SnmpClient, SnmpError, SnmpPower, Timing, Version, ber,
};
use ingot_coordinator::power::{PowerAction, PowerDriver, PowerError, PowerState, PowerTarget};
use serde_json::{Value, json};
use snmpd::{Snmpd, outlet_oid};

/// Timing for tests where every request should be answered: a timeout long
/// enough that a slow answer on a busy machine is not mistaken for a lost
/// one (a retransmitted SET would be recorded twice in `sets()`).
fn fast() -> Timing {
    Timing {
        timeout: Duration::from_secs(2),
        retries: 2,
    }
}

/// Timing for requests that are meant to go unanswered: 300 ms per try.
fn quick_timeouts() -> Timing {
    Timing {
        timeout: Duration::from_millis(300),
        retries: 2,
    }
}

fn agent(pdu: &Snmpd, version: Version, read: &str, write: &str) -> Agent {
    Agent {
        host: "127.0.0.1".into(),
        port: pdu.port,
        version,
        read_community: read.into(),
        write_community: write.into(),
        usm: None,
    }
}

fn oid(outlet: u32) -> Vec<u32> {
    ber::parse_oid(&outlet_oid(outlet)).unwrap()
}

#[tokio::test]
async fn client_get_and_set_against_snmpd_match_snmpget() {
    let Some(pdu) = Snmpd::start() else { return };
    let client = SnmpClient::new(fast());
    for version in [Version::V1, Version::V2c] {
        let a = agent(&pdu, version, "public", "private");
        // snmpset's change is seen by our GET.
        pdu.snmpset(1, 2);
        assert_eq!(
            client.get_integer(&a, &oid(1)).await.unwrap(),
            2,
            "{version:?}"
        );
        pdu.snmpset(1, 1);
        assert_eq!(
            client.get_integer(&a, &oid(1)).await.unwrap(),
            1,
            "{version:?}"
        );
        // Our SET is seen by snmpget.
        client.set_integer(&a, &oid(3), 2).await.unwrap();
        assert_eq!(pdu.snmpget(3), 2, "{version:?}");
        client.set_integer(&a, &oid(3), 1).await.unwrap();
        assert_eq!(pdu.snmpget(3), 1, "{version:?}");
    }
    assert_eq!(
        pdu.sets(),
        [
            (1, 2),
            (1, 1),
            (3, 2),
            (3, 1),
            (1, 2),
            (1, 1),
            (3, 2),
            (3, 1)
        ]
    );

    // The read-only community cannot set (v2c: noAccess; v1: noSuchName).
    let ro = agent(&pdu, Version::V2c, "public", "public");
    match client.set_integer(&ro, &oid(2), 2).await {
        Err(SnmpError::Status {
            status: 6, name, ..
        }) => assert_eq!(name, "noAccess"),
        other => panic!("{other:?}"),
    }
    let ro1 = agent(&pdu, Version::V1, "public", "public");
    assert!(matches!(
        client.set_integer(&ro1, &oid(2), 2).await,
        Err(SnmpError::Status { status: 2, .. })
    ));
    // A value the PDU refuses.
    let rw = agent(&pdu, Version::V2c, "public", "private");
    match client.set_integer(&rw, &oid(2), 9).await {
        Err(SnmpError::Status { name, .. }) => assert_eq!(name, "wrongValue"),
        other => panic!("{other:?}"),
    }
    // An outlet the PDU does not have, in both versions.
    for version in [Version::V1, Version::V2c] {
        let a = agent(&pdu, version, "public", "private");
        assert!(
            matches!(
                client.get_integer(&a, &oid(9)).await,
                Err(SnmpError::NoSuchObject(_))
            ),
            "{version:?}"
        );
    }
    assert_eq!(pdu.sets().len(), 8, "refused sets are not recorded");

    // A wrong community gets no answer at all: a timeout after the retries.
    let bad = agent(&pdu, Version::V2c, "wrong", "wrong");
    let t = Instant::now();
    assert!(matches!(
        SnmpClient::new(quick_timeouts())
            .get_integer(&bad, &oid(1))
            .await,
        Err(SnmpError::Timeout(_))
    ));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_secs(10),
        "3 tries of 300 ms: {took:?}"
    );
}

fn target(pdu: &Snmpd, outlet: u32, extra: Value) -> PowerTarget {
    let mut info = pdu.driver_info(outlet, "2c");
    if let (Value::Object(a), Value::Object(b)) = (&mut info, extra) {
        a.extend(b);
    }
    PowerTarget {
        node_uuid: "node-snmp".into(),
        driver_info: info.as_object().unwrap().clone(),
        recorded: None,
        boot_mode: None,
    }
}

#[tokio::test]
async fn snmp_power_driver_switches_and_reboots_an_apc_outlet() {
    let Some(pdu) = Snmpd::start() else { return };
    let driver = SnmpPower::new(
        fast(),
        Settings {
            power_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            reboot_delay: Duration::from_millis(300),
        },
    );
    let t = target(&pdu, 5, json!({}));
    driver.validate(&t.driver_info).unwrap();
    assert_eq!(driver.get_power_state(&t).await.unwrap(), PowerState::On);

    driver.set_power_state(&t, PowerAction::Off).await.unwrap();
    assert_eq!(pdu.snmpget(5), 2);
    assert_eq!(driver.get_power_state(&t).await.unwrap(), PowerState::Off);
    driver.set_power_state(&t, PowerAction::On).await.unwrap();
    assert_eq!(pdu.snmpget(5), 1);

    // Reboot: off, the delay, on.
    let start = Instant::now();
    driver
        .set_power_state(&t, PowerAction::Reboot)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(driver.get_power_state(&t).await.unwrap(), PowerState::On);
    assert_eq!(pdu.sets(), [(5, 2), (5, 1), (5, 2), (5, 1)]);

    // snmp_reboot_delay in driver_info overrides the default, and v1 works.
    let mut t1 = target(&pdu, 6, json!({"snmp_reboot_delay": "0.6"}));
    t1.driver_info.insert("snmp_version".into(), json!("1"));
    let start = Instant::now();
    driver
        .set_power_state(&t1, PowerAction::Reboot)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );

    // snmp_community is the fallback of _read/_write: a wrong default and
    // the right specific ones work; a wrong write community fails the set.
    let mut tc = target(&pdu, 7, json!({"snmp_community": "nope"}));
    driver.set_power_state(&tc, PowerAction::Off).await.unwrap();
    tc.driver_info
        .insert("snmp_community_write".into(), json!("public"));
    let e = driver
        .set_power_state(&tc, PowerAction::On)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("noAccess"), "{e}");
    assert_eq!(pdu.snmpget(7), 2);

    // No boot device and no soft power actions on a PDU.
    assert!(driver.supported_boot_devices().is_empty());
    assert!(matches!(
        driver.set_boot_device(&t, "pxe", false).await,
        Err(PowerError::Unsupported(_))
    ));
    assert!(matches!(
        driver.get_boot_device(&t).await,
        Err(PowerError::Unsupported(_))
    ));
    assert!(matches!(
        driver.set_power_state(&t, PowerAction::SoftOff).await,
        Err(PowerError::Unsupported(_))
    ));

    // A PDU that is not there fails, not hangs, and says it is unreachable.
    let mut gone = target(&pdu, 5, json!({}));
    gone.driver_info.insert("snmp_port".into(), json!(9));
    let start = Instant::now();
    assert!(matches!(
        driver.get_power_state(&gone).await,
        Err(PowerError::Unreachable(_))
    ));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn snmpv3_users_switch_outlets_with_md5_sha_and_aes() {
    let Some(pdu) = Snmpd::start() else { return };
    let driver = SnmpPower::new(
        fast(),
        Settings {
            power_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            reboot_delay: Duration::ZERO,
        },
    );
    let v3 = |outlet: u32, extra: Value| {
        let mut t = target(&pdu, outlet, extra);
        for k in ["snmp_community_read", "snmp_community_write"] {
            t.driver_info.remove(k);
        }
        t.driver_info.insert("snmp_version".into(), json!("3"));
        t
    };
    // authNoPriv with HMAC-MD5-96.
    let md5 = v3(
        6,
        json!({"snmp_user": "ingot-md5", "snmp_auth_protocol": "md5", "snmp_auth_key": snmpd::MD5_KEY}),
    );
    driver.validate(&md5.driver_info).unwrap();
    driver
        .set_power_state(&md5, PowerAction::Off)
        .await
        .unwrap();
    assert_eq!(pdu.snmpget(6), 2);
    assert_eq!(driver.get_power_state(&md5).await.unwrap(), PowerState::Off);
    // authPriv with HMAC-SHA-96 and AES-128.
    let sha = v3(
        6,
        json!({"snmp_user": "ingot-sha", "snmp_auth_protocol": "sha", "snmp_auth_key": snmpd::SHA_KEY,
               "snmp_priv_protocol": "aes", "snmp_priv_key": snmpd::AES_KEY}),
    );
    driver
        .set_power_state(&sha, PowerAction::Reboot)
        .await
        .unwrap();
    assert_eq!(pdu.snmpget(6), 1);
    assert_eq!(pdu.sets(), [(6, 2), (6, 2), (6, 1)]);
    // The RFC 7860 SHA-2 HMACs: SHA-256 (authNoPriv), SHA-512 with AES.
    for (user, proto, privacy) in [
        ("ingot-sha256", "sha256", false),
        ("ingot-sha512", "sha512", true),
    ] {
        let mut extra = json!({"snmp_user": user, "snmp_auth_protocol": proto, "snmp_auth_key": snmpd::SHA_KEY});
        if privacy {
            extra["snmp_priv_protocol"] = json!("aes");
            extra["snmp_priv_key"] = json!(snmpd::AES_KEY);
        }
        let t = v3(4, extra);
        driver.set_power_state(&t, PowerAction::Off).await.unwrap();
        assert_eq!(pdu.snmpget(4), 2, "{user}");
        driver.set_power_state(&t, PowerAction::On).await.unwrap();
        assert_eq!(pdu.snmpget(4), 1, "{user}");
    }
    assert_eq!(pdu.sets().len(), 7);
    // AES-192 and AES-256 with the Blumenthal key extension (net-snmp's).
    for (user, auth, key, privacy) in [
        ("ingot-aes192", "md5", snmpd::MD5_KEY, "aes192blmt"),
        ("ingot-aes256", "sha", snmpd::SHA_KEY, "aes256blmt"),
    ] {
        let t = v3(
            3,
            json!({"snmp_user": user, "snmp_auth_protocol": auth, "snmp_auth_key": key,
                   "snmp_priv_protocol": privacy, "snmp_priv_key": snmpd::AES_KEY}),
        );
        driver.set_power_state(&t, PowerAction::Off).await.unwrap();
        assert_eq!(pdu.snmpget(3), 2, "{user}");
        driver.set_power_state(&t, PowerAction::On).await.unwrap();
        assert_eq!(
            driver.get_power_state(&t).await.unwrap(),
            PowerState::On,
            "{user}"
        );
    }
    assert_eq!(pdu.sets().len(), 11);
    // noAuthNoPriv, read-only: reads work, the set is refused.
    let none = v3(6, json!({"snmp_user": "ingot-none"}));
    assert_eq!(driver.get_power_state(&none).await.unwrap(), PowerState::On);
    let e = driver
        .set_power_state(&none, PowerAction::Off)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("noAccess"), "{e}");
    // A wrong key or user is a USM report, not a timeout.
    for (extra, want) in [
        (
            json!({"snmp_user": "ingot-md5", "snmp_auth_key": "not-the-key"}),
            "wrong digest",
        ),
        (json!({"snmp_user": "nobody"}), "unknown user name"),
    ] {
        let t = v3(6, extra.clone());
        let e = driver.get_power_state(&t).await.unwrap_err();
        assert!(e.to_string().contains(want), "{extra}: {e}");
    }
    // Ironic's other protocols are refused at validation.
    let des = v3(
        6,
        json!({"snmp_user": "ingot-sha", "snmp_auth_key": snmpd::SHA_KEY, "snmp_priv_protocol": "des", "snmp_priv_key": snmpd::AES_KEY}),
    );
    let e = driver.validate(&des.driver_info).unwrap_err();
    assert!(e.to_string().contains("'des' is not supported"), "{e}");
}

async fn wait_power(api: &common::Api, node: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = api.node(node).await;
        if n["target_power_state"].is_null() && n["power_state"] == state {
            return n;
        }
        assert!(n["last_error"].is_null(), "{n}");
        assert!(Instant::now() < deadline, "power {state}: {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn api_switches_an_snmp_node_outlet() {
    let Some(pdu) = Snmpd::start() else { return };
    let db = common::test_db(common::Backend::Sqlite, "snmp_api")
        .await
        .unwrap();
    let (_running, api) = common::start_with(common::test_config(&db.url)).await;
    api.create_node(
        json!({"driver": "snmp", "name": "pdu-node", "driver_info": pdu.driver_info(2, "2c")}),
    )
    .await;
    let n = api.node("pdu-node").await;
    assert_eq!(n["power_interface"], "snmp", "{n}");
    assert_eq!(n["management_interface"], "noop", "{n}");
    let (_, val) = api.get("/v1/nodes/pdu-node/validate").await;
    assert_eq!(val["power"]["result"], true, "{val}");

    for (target, state, value) in [("power off", "power off", 2), ("power on", "power on", 1)] {
        let (st, v) = api
            .put("/v1/nodes/pdu-node/states/power", json!({"target": target}))
            .await;
        assert_eq!(st, 202, "{v}");
        wait_power(&api, "pdu-node", state).await;
        assert_eq!(pdu.snmpget(2), value, "{target}");
    }
    assert_eq!(pdu.sets(), [(2, 2), (2, 1)]);

    let (_, bd) = api
        .get("/v1/nodes/pdu-node/management/boot_device/supported")
        .await;
    assert_eq!(bd["supported_boot_devices"], json!([]), "{bd}");

    // A node on an outlet the PDU does not have: the PDU's refusal ends up
    // in last_error.
    api.create_node(
        json!({"driver": "snmp", "name": "no-outlet", "driver_info": pdu.driver_info(9, "2c")}),
    )
    .await;
    let (st, _) = api
        .put(
            "/v1/nodes/no-outlet/states/power",
            json!({"target": "power on"}),
        )
        .await;
    assert_eq!(st, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = api.node("no-outlet").await;
        if let Some(e) = n["last_error"].as_str() {
            assert!(e.contains("notWritable") && e.contains(".4.9"), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "{n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

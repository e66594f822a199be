//! The native IPMI client and the `ipmitool` power interface against
//! OpenIPMI's `ipmi_sim` on loopback, cross-checked with `ipmitool -C 3`,
//! and an `ipmi` node driven through the coordinator's API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ipmi_sim;

use std::time::{Duration, Instant};

use ingot_coordinator::power::ipmi::{
    BmcConfig, BootDevice, ChassisControl, CipherSuite, IpmiClient, IpmiError, IpmiPower,
    IpmiVersion, Timing, privilege,
};
use ingot_coordinator::power::{PowerAction, PowerDriver, PowerState, PowerTarget};
use ipmi_sim::IpmiSim;
use serde_json::{Value, json};

fn cfg(sim: &IpmiSim) -> BmcConfig {
    BmcConfig {
        host: "127.0.0.1".into(),
        port: sim.port,
        username: ipmi_sim::USER.into(),
        password: ipmi_sim::PASSWORD.into(),
        kg: None,
        suite: CipherSuite::Suite3,
        privilege: privilege::ADMINISTRATOR,
        version: IpmiVersion::V20,
    }
}

/// Timing for tests where every request should be answered: a short
/// spacing, and a timeout long enough that a slow answer on a busy machine
/// is not mistaken for a lost one. A retransmission would run a chassis
/// control twice and break the exact `requests()` lists.
fn fast() -> Timing {
    Timing {
        timeout: Duration::from_secs(2),
        ..quick_timeouts()
    }
}

/// Timing for tests where requests are meant to go unanswered (a restarted
/// or vanished BMC, a dropped activation): a 300 ms timeout keeps them short.
fn quick_timeouts() -> Timing {
    Timing {
        timeout: Duration::from_millis(300),
        retries: 2,
        backoff: Duration::from_millis(50),
        min_interval: Duration::from_millis(20),
        ..Timing::default()
    }
}

/// A per-request timeout long enough that finishing within it proves no
/// request timed out, however busy the machine.
const NO_TIMEOUT_WITHIN: Duration = Duration::from_secs(5);

fn need_ipmitool() -> bool {
    if ipmi_sim::have("ipmitool") {
        return true;
    }
    assert!(
        !common::must_not_skip(),
        "ipmitool is required (apt-get install ipmitool)"
    );
    eprintln!("SKIPPED: ipmitool not installed");
    false
}

#[tokio::test]
async fn client_commands_against_ipmi_sim_match_ipmitool() {
    let Some(sim) = IpmiSim::start() else { return };
    if !need_ipmitool() {
        return;
    }
    let client = IpmiClient::new(fast());
    let c = cfg(&sim);

    let id = client.device_id(&c).await.unwrap();
    assert_eq!(id.manufacturer, 0x1291, "{id:?}");
    assert_eq!(id.product, 0x0f02, "{id:?}");
    assert_eq!(id.firmware.0, 9, "{id:?}");
    assert_eq!(id.ipmi_version, 0x02, "{id:?}");

    assert!(!client.power_is_on(&c).await.unwrap());
    client
        .chassis_control(&c, ChassisControl::On)
        .await
        .unwrap();
    assert!(client.power_is_on(&c).await.unwrap());
    assert!(
        sim.ipmitool(&["chassis", "power", "status"])
            .contains("Chassis Power is on")
    );
    sim.ipmitool(&["chassis", "power", "off"]);
    assert!(
        !client.power_is_on(&c).await.unwrap(),
        "ipmitool's off seen by us"
    );
    client
        .chassis_control(&c, ChassisControl::On)
        .await
        .unwrap();
    client
        .chassis_control(&c, ChassisControl::Soft)
        .await
        .unwrap();
    client
        .chassis_control(&c, ChassisControl::Reset)
        .await
        .unwrap();

    client
        .set_boot_device(&c, BootDevice::Pxe, true, false)
        .await
        .unwrap();
    let got = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(got.contains("Force PXE"), "{got}");
    client
        .set_boot_device(&c, BootDevice::Disk, false, true)
        .await
        .unwrap();
    let got = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(got.contains("Force Boot from default Hard-Drive"), "{got}");
    client
        .set_boot_device(&c, BootDevice::Bios, false, false)
        .await
        .unwrap();
    sim.ipmitool(&["chassis", "bootdev", "pxe"]);
    let (dev, _, _) = client.boot_device(&c).await.unwrap();
    assert_eq!(dev, Some(BootDevice::Pxe));

    let reqs = sim.requests();
    let want = [
        "set power 1",
        "set power 0",
        "set power 1",
        "set shutdown 1",
        "set reset 1",
        "set boot pxe",
        "set boot default",
        "set boot bios",
        "set boot pxe",
    ];
    assert_eq!(reqs, want, "chassis_control requests");
    assert_eq!(
        client.sessions_opened(),
        1,
        "one session reused for every command"
    );
}

#[tokio::test]
async fn requests_to_one_bmc_are_spaced_by_the_rate_limit() {
    let Some(sim) = IpmiSim::start() else { return };
    let client = IpmiClient::new(Timing {
        min_interval: Duration::from_millis(150),
        ..fast()
    });
    let c = cfg(&sim);
    client.power_is_on(&c).await.unwrap();
    let t = Instant::now();
    let (a, b, d) = tokio::join!(
        client.power_is_on(&c),
        client.power_is_on(&c),
        client.device_id(&c)
    );
    a.unwrap();
    b.unwrap();
    d.unwrap();
    // Three requests, each at least 150 ms after the one before: the last
    // goes at least 300 ms after the first, which goes after `t` (the
    // first may go at once: the warm-up's request went out before `t`,
    // by as long as its answer took; a 400 ms bound failed on a busy machine).
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(client.sessions_opened(), 1);
}

#[tokio::test]
async fn wrong_password_fails_authentication_quickly() {
    let Some(sim) = IpmiSim::start() else { return };
    // A long per-request timeout: failing within it means the refusal was
    // read from the BMC's answer, not inferred from silence (and a busy
    // machine has seconds of slack).
    let client = IpmiClient::new(Timing {
        timeout: NO_TIMEOUT_WITHIN,
        ..fast()
    });
    let mut c = cfg(&sim);
    c.password = "not-the-password".into();
    let t = Instant::now();
    let e = client.power_is_on(&c).await.unwrap_err();
    assert!(
        matches!(e, IpmiError::Auth(_) | IpmiError::Rakp { .. }),
        "{e:?}"
    );
    assert!(t.elapsed() < NO_TIMEOUT_WITHIN, "{:?}", t.elapsed());
}

#[tokio::test]
async fn session_is_reopened_after_the_bmc_restarts() {
    let Some(mut sim) = IpmiSim::start() else {
        return;
    };
    let client = IpmiClient::new(quick_timeouts());
    let c = cfg(&sim);
    client
        .chassis_control(&c, ChassisControl::On)
        .await
        .unwrap();
    // The restarted BMC does not know the session: the request times out
    // in it, and is sent again in a new session.
    sim.restart();
    assert!(client.power_is_on(&c).await.unwrap());
    assert_eq!(client.sessions_opened(), 2);
    // A BMC that is gone fails after the retries rather than hanging.
    drop(sim);
    let t = Instant::now();
    assert!(client.power_is_on(&c).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

fn target(sim: &IpmiSim, extra: Value) -> PowerTarget {
    let mut info = sim.driver_info();
    if let (Value::Object(a), Value::Object(b)) = (&mut info, extra) {
        a.extend(b);
    }
    PowerTarget {
        node_uuid: "node-ipmi".into(),
        driver_info: info.as_object().unwrap().clone(),
        recorded: None,
        boot_mode: Some("uefi".into()),
    }
}

#[tokio::test]
async fn ipmi_power_driver_without_cipher_suite_is_fast() {
    let Some(sim) = IpmiSim::start() else { return };
    // No request may time out (no probing of cipher suites the BMC lacks):
    // the timeout is long, so finishing within it shows that.
    let driver = IpmiPower::new(
        Timing {
            timeout: NO_TIMEOUT_WITHIN,
            ..fast()
        },
        Duration::from_secs(5),
        Duration::from_millis(100),
    );
    let t = target(&sim, json!({}));
    driver.validate(&t.driver_info).unwrap();
    let start = Instant::now();
    assert_eq!(driver.get_power_state(&t).await.unwrap(), PowerState::Off);
    assert!(start.elapsed() < NO_TIMEOUT_WITHIN, "{:?}", start.elapsed());

    driver.set_power_state(&t, PowerAction::On).await.unwrap();
    assert_eq!(driver.get_power_state(&t).await.unwrap(), PowerState::On);
    driver
        .set_power_state(&t, PowerAction::Reboot)
        .await
        .unwrap();
    driver
        .set_power_state(&t, PowerAction::SoftOff)
        .await
        .unwrap();
    assert_eq!(driver.get_power_state(&t).await.unwrap(), PowerState::Off);
    driver.set_boot_device(&t, "pxe", true).await.unwrap();
    let (dev, _) = driver.get_boot_device(&t).await.unwrap();
    assert_eq!(dev.as_deref(), Some("pxe"));
    assert!(driver.set_boot_device(&t, "wanboot", false).await.is_err());
    assert_eq!(
        sim.requests(),
        [
            "set power 1",
            "set power 0",
            "set power 1",
            "set shutdown 1",
            "set boot pxe"
        ]
    );

    let t17 = target(&sim, json!({"ipmi_cipher_suite": "17"}));
    let e = driver.get_power_state(&t17).await.unwrap_err();
    assert!(
        e.to_string().contains("IPMI"),
        "ipmi_sim has no suite 17: {e}"
    );
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

/// Powers `node` on, then off, through the API; after each, `status` (an
/// ipmitool call against the BMC) must agree.
async fn power_on_then_off(api: &common::Api, node: &str, status: impl Fn() -> String) {
    for (target, state, cross) in [
        ("power on", "power on", "Chassis Power is on"),
        ("power off", "power off", "Chassis Power is off"),
    ] {
        let (st, v) = api
            .put(
                &format!("/v1/nodes/{node}/states/power"),
                json!({"target": target}),
            )
            .await;
        assert_eq!(st, 202, "{v}");
        wait_power(api, node, state).await;
        let seen = status();
        assert!(seen.contains(cross), "{seen}");
    }
}

#[tokio::test]
async fn api_powers_an_ipmi_node_and_sets_pxe() {
    let Some(sim) = IpmiSim::start() else { return };
    if !need_ipmitool() {
        return;
    }
    let db = common::test_db(common::Backend::Sqlite, "ipmi_api")
        .await
        .unwrap();
    let (_running, api) = common::start_with(common::test_config(&db.url)).await;
    api.create_node(json!({"driver": "ipmi", "name": "bmc-sim", "driver_info": sim.driver_info()}))
        .await;
    let (_, val) = api.get("/v1/nodes/bmc-sim/validate").await;
    assert_eq!(val["power"]["result"], true, "{val}");

    power_on_then_off(&api, "bmc-sim", || {
        sim.ipmitool(&["chassis", "power", "status"])
    })
    .await;

    let (st, v) = api
        .put(
            "/v1/nodes/bmc-sim/management/boot_device",
            json!({"boot_device": "pxe", "persistent": true}),
        )
        .await;
    assert!(st == 204 || st == 200 || st == 202, "{st} {v}");
    let got = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(got.contains("Force PXE"), "{got}");
    let (_, bd) = api.get("/v1/nodes/bmc-sim/management/boot_device").await;
    assert_eq!(bd["boot_device"], "pxe", "{bd}");

    let reqs = sim.requests();
    assert!(
        reqs.starts_with(&["set power 1".into(), "set power 0".into()]),
        "{reqs:?}"
    );
    assert_eq!(
        reqs.last().map(String::as_str),
        Some("set boot pxe"),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn ipmi_15_sessions_match_ipmitool_lan() {
    let Some(sim) = IpmiSim::start() else { return };
    if !need_ipmitool() {
        return;
    }
    let client = IpmiClient::new(fast());
    let c = BmcConfig {
        version: IpmiVersion::V15,
        ..cfg(&sim)
    };
    let id = client.device_id(&c).await.unwrap();
    assert_eq!(id.manufacturer, 0x1291, "{id:?}");
    assert!(!client.power_is_on(&c).await.unwrap());
    client
        .chassis_control(&c, ChassisControl::On)
        .await
        .unwrap();
    assert!(
        sim.ipmitool_lan(&["chassis", "power", "status"])
            .contains("Chassis Power is on")
    );
    sim.ipmitool_lan(&["chassis", "power", "off"]);
    assert!(
        !client.power_is_on(&c).await.unwrap(),
        "ipmitool -I lan's off seen by us"
    );
    client
        .set_boot_device(&c, BootDevice::Pxe, false, false)
        .await
        .unwrap();
    let got = sim.ipmitool_lan(&["chassis", "bootparam", "get", "5"]);
    assert!(got.contains("Force PXE"), "{got}");
    assert_eq!(client.sessions_opened(), 1, "one 1.5 session reused");

    // A wrong password is refused (the BMC drops the activation).
    let bad = BmcConfig {
        password: "not-the-password".into(),
        ..c.clone()
    };
    let e = IpmiClient::new(quick_timeouts())
        .power_is_on(&bad)
        .await
        .unwrap_err();
    assert!(matches!(e, IpmiError::Auth(_)), "{e:?}");
    assert_eq!(
        sim.requests(),
        ["set power 1", "set power 0", "set boot pxe"]
    );
}

#[tokio::test]
async fn api_powers_an_ipmi_15_node() {
    let Some(sim) = IpmiSim::start() else { return };
    if !need_ipmitool() {
        return;
    }
    let db = common::test_db(common::Backend::Sqlite, "ipmi15_api")
        .await
        .unwrap();
    let (_running, api) = common::start_with(common::test_config(&db.url)).await;
    let mut info = sim.driver_info();
    info["ipmi_protocol_version"] = json!("1.5");
    api.create_node(json!({"driver": "ipmi", "name": "old-bmc", "driver_info": info}))
        .await;
    let (_, val) = api.get("/v1/nodes/old-bmc/validate").await;
    assert_eq!(val["power"]["result"], true, "{val}");
    power_on_then_off(&api, "old-bmc", || {
        sim.ipmitool_lan(&["chassis", "power", "status"])
    })
    .await;
    assert_eq!(sim.requests(), ["set power 1", "set power 0"]);
    let (_, v) = api
        .patch(
            "/v1/nodes/old-bmc",
            json!([{"op": "replace", "path": "/driver_info/ipmi_protocol_version", "value": "1.0"}]),
        )
        .await;
    let (_, val) = api.get("/v1/nodes/old-bmc/validate").await;
    assert_eq!(val["power"]["result"], false, "{v} {val}");
}

/// IPMI 1.5 with the other auth types: a BMC allowing only straight
/// passwords, and one allowing only none (MD2-only would be refused).
#[tokio::test]
async fn ipmi_15_straight_password_and_none() {
    for (auths, ipmitool_auth) in [("straight", "PASSWORD"), ("none", "NONE")] {
        let Some(sim) = IpmiSim::start_configured("", auths) else {
            return;
        };
        if !need_ipmitool() {
            return;
        }
        let client = IpmiClient::new(fast());
        let c = BmcConfig {
            version: IpmiVersion::V15,
            ..cfg(&sim)
        };
        client
            .chassis_control(&c, ChassisControl::On)
            .await
            .unwrap_or_else(|e| panic!("{auths}: {e}"));
        let st = sim.ipmitool_over(
            &["-I", "lan", "-A", ipmitool_auth],
            &["chassis", "power", "status"],
        );
        assert!(st.contains("Chassis Power is on"), "{auths}: {st}");
        assert!(client.power_is_on(&c).await.unwrap());
    }
    let Some(sim) = IpmiSim::start_configured("", "md2") else {
        return;
    };
    let c = BmcConfig {
        version: IpmiVersion::V15,
        ..cfg(&sim)
    };
    let e = IpmiClient::new(fast()).power_is_on(&c).await.unwrap_err();
    assert!(e.to_string().contains("MD2"), "{e}");
}

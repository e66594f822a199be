//! The simulated fleet answers the coordinator's IPMI client and ipmitool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use ingot_ipmi::{
    BmcConfig, ChassisControl, CipherSuite, IpmiClient, IpmiVersion, Timing, privilege,
};

fn cfg(port: u16, password: &str) -> BmcConfig {
    BmcConfig {
        host: "127.0.0.1".into(),
        port,
        username: "admin".into(),
        password: password.into(),
        kg: None,
        suite: CipherSuite::Suite3,
        privilege: privilege::ADMINISTRATOR,
        version: IpmiVersion::V20,
    }
}

fn fast() -> Timing {
    Timing {
        timeout: Duration::from_millis(300),
        retries: 1,
        backoff: Duration::from_millis(20),
        min_interval: Duration::from_millis(1),
        ..Timing::default()
    }
}

#[tokio::test]
async fn coordinator_client_talks_to_every_bmc_of_the_fleet() {
    let fleet = ingot_bmc_fleet::start(20, 0, "admin", "secret")
        .await
        .unwrap();
    let client = IpmiClient::new(fast());
    for (i, port) in fleet.ports.iter().enumerate() {
        let c = cfg(*port, "secret");
        assert!(!client.power_is_on(&c).await.unwrap(), "bmc {i}");
        if i % 2 == 0 {
            client
                .chassis_control(&c, ChassisControl::On)
                .await
                .unwrap();
        }
    }
    for (i, port) in fleet.ports.iter().enumerate() {
        let on = client.power_is_on(&cfg(*port, "secret")).await.unwrap();
        assert_eq!(on, i % 2 == 0, "bmc {i}");
    }
    // One session per BMC, reused.
    assert_eq!(client.sessions_opened(), 20);
    let id = client
        .device_id(&cfg(fleet.ports[0], "secret"))
        .await
        .unwrap();
    assert_eq!(id.ipmi_version, 0x02, "{id:?}");
    let e = IpmiClient::new(fast())
        .power_is_on(&cfg(fleet.ports[1], "wrong"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("authentication"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_lanplus_suite_3_reads_and_switches_power() {
    if Command::new("ipmitool").arg("-V").output().is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "ipmitool is required (apt-get install ipmitool)"
        );
        eprintln!("SKIPPED: ipmitool not installed");
        return;
    }
    let fleet = ingot_bmc_fleet::start(2, 0, "admin", "secret")
        .await
        .unwrap();
    let port = fleet.ports[1].to_string();
    let ipmitool = |args: &[&str]| {
        let port = port.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = Command::new("ipmitool")
                    .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &port])
                    .args(["-U", "admin", "-P", "secret"])
                    .args(&args)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .await
            .unwrap()
        }
    };
    assert!(
        ipmitool(&["chassis", "power", "status"])
            .await
            .contains("is off")
    );
    ipmitool(&["chassis", "power", "on"]).await;
    assert!(
        ipmitool(&["chassis", "power", "status"])
            .await
            .contains("is on")
    );
    let client = IpmiClient::new(fast());
    assert!(
        client
            .power_is_on(&cfg(fleet.ports[1], "secret"))
            .await
            .unwrap()
    );
    assert!(
        !client
            .power_is_on(&cfg(fleet.ports[0], "secret"))
            .await
            .unwrap()
    );
}

/// The session state machine needs no socket: its datagrams go straight
/// into a simulated BMC and the answers straight back.
#[test]
fn sans_io_session_against_one_bmc_without_sockets() {
    use ingot_ipmi::chassis;
    use ingot_ipmi::message::netfn;
    use ingot_ipmi::session::{Handshake, Progress};

    let mut bmc = ingot_bmc_fleet::Bmc::new(7, "admin", "secret");
    let mut hs = Handshake::new(&cfg(623, "secret")).unwrap();
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 10, "handshake does not end");
        let request = hs.datagram().unwrap();
        let answer = bmc.handle(&request).expect("the BMC answers");
        // A stray datagram changes nothing.
        assert_eq!(hs.receive(b"not ipmi").unwrap(), Progress::Ignored);
        match hs.receive(&answer).unwrap() {
            Progress::Next => continue,
            Progress::Established => break,
            Progress::Ignored => panic!("answer ignored at step {steps}"),
        }
    }
    // Capabilities, Open Session, RAKP 1/2, RAKP 3/4, Set Session Privilege Level.
    assert_eq!(steps, 5);
    let mut session = hs.into_session().unwrap();
    let req = session.request(netfn::CHASSIS, chassis::GET_CHASSIS_STATUS, &[]);
    // A retransmission is a new datagram (new sequence number and IV); both are answered.
    let first = session.datagram(&req).unwrap();
    let again = session.datagram(&req).unwrap();
    assert_ne!(first, again);
    let answer = bmc.handle(&again).expect("answered");
    let r = session
        .response(&req, &answer)
        .expect("the answer to the request");
    assert!(!chassis::parse_power_on(&r.completed("status").unwrap().data).unwrap());

    // A wrong password fails at RAKP 2, in the state machine.
    let mut hs = Handshake::new(&cfg(623, "wrong")).unwrap();
    let err = loop {
        let answer = bmc.handle(&hs.datagram().unwrap()).expect("answered");
        match hs.receive(&answer) {
            Ok(Progress::Next) => continue,
            Ok(p) => panic!("unexpected {p:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ingot_ipmi::IpmiError::Auth(_)), "{err:?}");
}

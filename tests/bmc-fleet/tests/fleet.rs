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

/// Each BMC counts the Get Chassis Status queries it answers, with the
/// session they came in; the control endpoint reports them per BMC.
#[tokio::test]
async fn status_queries_are_counted_per_bmc_and_session_and_reported() {
    use std::io::{Read, Write};
    use std::time::{SystemTime, UNIX_EPOCH};

    let fleet = ingot_bmc_fleet::start(3, 0, "admin", "secret")
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let control = listener.local_addr().unwrap();
    ingot_bmc_fleet::control::serve(listener, fleet.bmcs()).unwrap();
    let start_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    // Two consoles (two clients, two sessions) on BMC 0, one twice on BMC 1,
    // nobody on BMC 2; a power switch is not a status query.
    let (a, b) = (IpmiClient::new(fast()), IpmiClient::new(fast()));
    a.power_is_on(&cfg(fleet.ports[0], "secret")).await.unwrap();
    b.power_is_on(&cfg(fleet.ports[0], "secret")).await.unwrap();
    a.power_is_on(&cfg(fleet.ports[1], "secret")).await.unwrap();
    a.chassis_control(&cfg(fleet.ports[1], "secret"), ChassisControl::On)
        .await
        .unwrap();
    a.power_is_on(&cfg(fleet.ports[1], "secret")).await.unwrap();

    let report = fleet.status_report(start_ms);
    let counts: Vec<usize> = report.iter().map(Vec::len).collect();
    assert_eq!(counts, [2, 2, 0]);
    assert_ne!(report[0][0].session, report[0][1].session, "two consoles");
    assert_eq!(report[1][0].session, report[1][1].session, "one console");
    assert!(report[1][0].at_ms >= start_ms && report[1][0].at_ms <= report[1][1].at_ms);
    assert!(fleet.status_report(u64::MAX).iter().all(Vec::is_empty));

    let ask = |line: String| {
        let mut conn = std::net::TcpStream::connect(control).unwrap();
        conn.write_all(line.as_bytes()).unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text
    };
    let text = ask(format!("status-queries {start_ms}\n"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[3], "end");
    let q = report[0][0];
    assert!(
        lines[0].starts_with(&format!("0 {}/{} ", q.at_ms, q.session)),
        "{text}"
    );
    assert_eq!(lines[1].split(' ').count(), 3, "{text}");
    assert_eq!(lines[2], "2");
    assert!(ask("what\n".into()).starts_with("error "));
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
    assert!(bmc.handle(&first).is_some(), "the original is answered too");
    // The retransmission and the original count as one status query.
    assert_eq!(bmc.status_queries(0).count(), 1);
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

/// Each start of the machine counts, so a watcher that looks now and then
/// still sees an off-and-on between two looks (the fleet benchmark boots an
/// agent on each).
#[tokio::test]
async fn machine_starts_are_counted() {
    let fleet = ingot_bmc_fleet::start(1, 0, "admin", "secret")
        .await
        .unwrap();
    let bmcs = fleet.bmcs();
    let client = IpmiClient::new(fast());
    let c = cfg(fleet.ports[0], "secret");
    assert_eq!(ingot_bmc_fleet::lock(&bmcs[0]).boots(), 0);
    // (control, starts counted after it): a reset of a machine that is off
    // starts nothing, nor does power on while on.
    for (control, boots) in [
        (ChassisControl::Reset, 0),
        (ChassisControl::On, 1),
        (ChassisControl::On, 1),
        (ChassisControl::Off, 1),
        (ChassisControl::On, 2),
        (ChassisControl::Cycle, 3),
        (ChassisControl::Reset, 4),
    ] {
        client.chassis_control(&c, control).await.unwrap();
        assert_eq!(
            ingot_bmc_fleet::lock(&bmcs[0]).boots(),
            boots,
            "after {control:?}"
        );
    }
    assert!(client.power_is_on(&c).await.unwrap());
}

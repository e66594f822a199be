//! The DHCP client against dnsmasq, in network namespaces the test creates:
//! `srv` runs dnsmasq on one end of a veth pair, `cli` runs
//! `ingot-agent net` with the other end, plus an uncabled veth (its peer is
//! down, so it has no carrier) that must cost no DHCP wait; and
//! `ingot-agent net --keep` renewing, rebinding and, after a NAK, replacing a
//! short lease.
//! Needs root, iproute2 and dnsmasq (package dnsmasq-base); skipped otherwise
//! unless INGOT_REQUIRE_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "dnsmasq"].iter().all(|t| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(t).exists())
    });
    let required = std::env::var_os("INGOT_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1");
    if !(root && tools) {
        assert!(
            !required,
            "{test}: needs root, iproute2 and dnsmasq (INGOT_REQUIRE_PRIVILEGED=1)"
        );
        eprintln!("SKIPPED {test}: needs root, iproute2 and dnsmasq");
        return false;
    }
    true
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two network namespaces joined by a veth pair: `srv` has `ingot-vs`
/// (10.77.0.1/24) and runs dnsmasq, `cli` has `vc0` and runs the agent.
/// Drop kills both processes and removes the namespaces.
struct Lab {
    srv: String,
    cli: String,
    dnsmasq: Option<Child>,
    agent: Option<Child>,
}

impl Lab {
    /// `tag` keeps the namespaces of tests running in parallel apart.
    fn new(tag: &str) -> Lab {
        let id = std::process::id();
        let lab = Lab {
            srv: format!("ingot-{tag}srv-{id}"),
            cli: format!("ingot-{tag}cli-{id}"),
            dnsmasq: None,
            agent: None,
        };
        sh(&["ip", "netns", "add", &lab.srv]);
        sh(&["ip", "netns", "add", &lab.cli]);
        sh(&[
            "ip", "link", "add", "ingot-vs", "netns", &lab.srv, "type", "veth", "peer", "name",
            "vc0", "netns", &lab.cli,
        ]);
        sh(&[
            "ip",
            "-n",
            &lab.srv,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "ingot-vs",
        ]);
        sh(&["ip", "-n", &lab.srv, "link", "set", "ingot-vs", "up"]);
        lab
    }

    /// Starts dnsmasq in `srv` with `extra` arguments after the common ones,
    /// its lease and pid files named after `name` in `dir`.
    fn start_dnsmasq(&mut self, dir: &Path, name: &str, extra: &[String]) {
        self.dnsmasq = Some(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.srv,
                    "dnsmasq",
                    "--no-daemon",
                    "--conf-file=/dev/null",
                    "--port=0",
                    "--interface=ingot-vs",
                    "--bind-interfaces",
                    "--no-ping",
                    "--dhcp-option=option:router,10.77.0.1",
                    "--dhcp-option=option:dns-server,10.77.0.53",
                    "--dhcp-option=option:domain-name,lab.test",
                ])
                .arg(format!(
                    "--dhcp-leasefile={}",
                    dir.join(format!("{name}.leases")).display()
                ))
                .arg(format!(
                    "--pid-file={}",
                    dir.join(format!("{name}.pid")).display()
                ))
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    fn stop_dnsmasq(&mut self) {
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        self.stop_dnsmasq();
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The last octet of a 10.77.0.x address.
/// `ingot-agent net` in the client namespace (DHCP timeout 20 s, carrier
/// wait 2 s, no host name), with `extra` flags.
fn agent_net(lab: &Lab, extra: &[&str], resolv: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &lab.cli,
        env!("CARGO_BIN_EXE_ingot-agent"),
        "net",
    ])
    .args(extra)
    .args([
        "--no-hostname",
        "--dhcp-timeout",
        "20",
        "--carrier-wait",
        "2",
    ])
    .arg("--resolv-conf")
    .arg(resolv);
    cmd
}

fn host_part(addr: &str) -> u32 {
    addr.strip_prefix("10.77.0.").unwrap().parse().unwrap()
}

#[test]
fn dhcp_on_the_cabled_interface_only() {
    if !can_run("dhcp_on_the_cabled_interface_only") {
        return;
    }
    let mut lab = Lab::new("");
    let dir = tempfile::tempdir().unwrap();
    // An uncabled NIC: its peer sits down in the other namespace, so it
    // never gets carrier (the agent sets every link of its own namespace up).
    sh(&[
        "ip",
        "-n",
        &lab.cli,
        "link",
        "add",
        "dead0",
        "type",
        "veth",
        "peer",
        "name",
        "ingot-dead1",
        "netns",
        &lab.srv,
    ]);
    lab.start_dnsmasq(
        dir.path(),
        "dnsmasq",
        &["--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h".to_string()],
    );
    let resolv = dir.path().join("resolv.conf");
    let started = Instant::now();
    let out = agent_net(&lab, &[], &resolv).output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leases = got.as_array().unwrap();
    assert_eq!(leases.len(), 1, "{got}");
    let l = &leases[0];
    assert_eq!(l["interface"], "vc0");
    let addr = l["address"].as_str().unwrap().to_string();
    assert!((50..=60).contains(&host_part(&addr)), "{addr}");
    assert_eq!(l["prefix"], 24);
    assert_eq!(l["routers"], serde_json::json!(["10.77.0.1"]));
    assert_eq!(l["dns"], serde_json::json!(["10.77.0.53"]));
    assert_eq!(l["server"], "10.77.0.1");
    // The uncabled NIC was not waited on for a lease (that would take the
    // 20 s DHCP timeout): only its 2 s carrier wait, in parallel with the
    // DHCP exchange. Half the timeout leaves a busy machine room.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    // The kernel state: address, default route, resolv.conf.
    let a = sh(&["ip", "-n", &lab.cli, "-4", "addr", "show", "dev", "vc0"]);
    assert!(a.contains(&format!("{addr}/24")), "{a}");
    let r = sh(&["ip", "-n", &lab.cli, "route", "show", "default"]);
    assert!(r.contains("default via 10.77.0.1 dev vc0"), "{r}");
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "search lab.test\nnameserver 10.77.0.53\n"
    );
    let d = sh(&["ip", "-n", &lab.cli, "-4", "addr", "show", "dev", "dead0"]);
    assert!(!d.contains("inet "), "{d}");
}

/// The JSON lines `net --keep` prints, read on a thread.
struct Events {
    rx: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    agent_log: PathBuf,
}

impl Events {
    fn new(stdout: std::process::ChildStdout, agent_log: PathBuf) -> Events {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Events {
            rx,
            seen: Vec::new(),
            agent_log,
        }
    }

    /// The next event of kind `kind` (earlier ones of other kinds are kept
    /// in `seen`); panics with what was seen and the agent's log after
    /// `timeout`.
    fn next(&mut self, kind: &str, timeout: Duration) -> serde_json::Value {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == kind {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no {kind:?} event within {timeout:?}; events: {:#?}\nagent log:\n{}",
                    self.seen,
                    std::fs::read_to_string(&self.agent_log).unwrap_or_default()
                ),
            }
        }
    }
}

/// Waits up to 3 s for dnsmasq's log to satisfy `ok`; returns it.
fn dnsmasq_log(path: &Path, ok: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if ok(&log) || Instant::now() > end {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// dnsmasq arguments for a 2-minute lease (dnsmasq's minimum) in `range`,
/// T1 3 s and T2 6 s, authoritative, logging the DHCP exchanges to `log`.
fn short_lease_server(range: &str, log: &Path) -> Vec<String> {
    vec![
        format!("--dhcp-range={range},255.255.255.0,2m"),
        "--dhcp-option=option:T1,3".into(),
        "--dhcp-option=option:T2,6".into(),
        "--dhcp-authoritative".into(),
        "--log-dhcp".into(),
        format!("--log-facility={}", log.display()),
    ]
}

#[test]
fn dhcp_lease_is_renewed_and_rebound() {
    if !can_run("dhcp_lease_is_renewed_and_rebound") {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new("r");
    let dir = tempfile::tempdir().unwrap();
    let log_a = dir.path().join("dnsmasq-a.log");
    lab.start_dnsmasq(
        dir.path(),
        "a",
        &short_lease_server("10.77.0.50,10.77.0.60", &log_a),
    );
    let agent_log = dir.path().join("agent.log");
    let mut agent = agent_net(&lab, &["--keep"], &dir.path().join("resolv.conf"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();
    let stdout = agent.stdout.take().unwrap();
    lab.agent = Some(agent);
    let mut events = Events::new(stdout, agent_log);

    let bound = events.next("bound", Duration::from_secs(10));
    let lease = &bound["lease"];
    let addr = lease["address"].as_str().unwrap().to_string();
    assert!((50..=60).contains(&host_part(&addr)), "{bound}");
    assert_eq!(
        (
            &lease["lease_secs"],
            &lease["renew_secs"],
            &lease["rebind_secs"]
        ),
        (
            &serde_json::json!(120),
            &serde_json::json!(3),
            &serde_json::json!(6)
        ),
        "{bound}"
    );

    // 1. At T1 (3 s) the agent renews: DHCPREQUEST with ciaddr, ACKed.
    let renewed = events.next("renewed", Duration::from_secs(8));
    assert_eq!(renewed["lease"]["address"], addr.as_str(), "{renewed}");
    assert_eq!(renewed["rebinding"], false, "{renewed}");
    let request = format!("DHCPREQUEST(ingot-vs) {addr} ");
    let ack = format!("DHCPACK(ingot-vs) {addr} ");
    let log = dnsmasq_log(&log_a, |l| {
        l.matches(&request).count() >= 2 && l.matches(&ack).count() >= 2
    });
    assert!(
        log.matches(&request).count() >= 2 && log.matches(&ack).count() >= 2,
        "{log}"
    );

    // 2. The server's MAC changes: RENEWING requests, sent to the MAC the
    //    last ACK came from, no longer reach it; at T2 the broadcast
    //    REBINDING request does, and the same server extends the lease.
    sh(&[
        "ip",
        "-n",
        &lab.srv,
        "link",
        "set",
        "ingot-vs",
        "address",
        "02:00:00:77:00:02",
    ]);
    events.next("renewing", Duration::from_secs(6));
    events.next("rebinding", Duration::from_secs(6));
    let rebound = events.next("renewed", Duration::from_secs(3));
    assert_eq!(rebound["lease"]["address"], addr.as_str(), "{rebound}");
    assert_eq!(rebound["rebinding"], true, "{rebound}");

    // 3. A new authoritative server whose range excludes the address: the
    //    next renewal is NAKed, the agent drops the address and obtains one
    //    in the new range.
    lab.stop_dnsmasq();
    let log_b = dir.path().join("dnsmasq-b.log");
    lab.start_dnsmasq(
        dir.path(),
        "b",
        &short_lease_server("10.77.0.100,10.77.0.110", &log_b),
    );
    let lost = events.next("lost", Duration::from_secs(8));
    assert_eq!(lost["address"], addr.as_str(), "{lost}");
    assert_eq!(lost["reason"], "nak", "{lost}");
    let bound = events.next("bound", Duration::from_secs(10));
    let new_addr = bound["lease"]["address"].as_str().unwrap().to_string();
    assert!((100..=110).contains(&host_part(&new_addr)), "{bound}");
    let a = sh(&["ip", "-n", &lab.cli, "-4", "addr", "show", "dev", "vc0"]);
    assert!(a.contains(&format!("inet {new_addr}/24")), "{a}");
    assert!(!a.contains(&format!("inet {addr}/")), "{a}");
    let r = sh(&["ip", "-n", &lab.cli, "route", "show", "default"]);
    assert!(r.contains("default via 10.77.0.1 dev vc0"), "{r}");
    let log = dnsmasq_log(&log_b, |l| {
        l.contains(&format!("DHCPNAK(ingot-vs) {addr} "))
    });
    assert!(log.contains(&format!("DHCPNAK(ingot-vs) {addr} ")), "{log}");
    eprintln!("dhcp_lease_is_renewed_and_rebound: {:?}", started.elapsed());
}

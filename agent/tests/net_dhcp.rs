//! The DHCP client against dnsmasq, in network namespaces the test creates:
//! `srv` runs dnsmasq on one end of a veth pair, `cli` runs
//! `ingot-agent net` with the other end, plus an uncabled veth (its peer is
//! down, so it has no carrier) that must cost no DHCP wait.
//! Needs root, iproute2 and dnsmasq (package dnsmasq-base); skipped otherwise
//! unless INGOT_REQUIRE_PRIVILEGED=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
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

struct Lab {
    srv: String,
    cli: String,
    dnsmasq: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn dhcp_on_the_cabled_interface_only() {
    if !can_run("dhcp_on_the_cabled_interface_only") {
        return;
    }
    let id = std::process::id();
    let mut lab = Lab {
        srv: format!("ingot-srv-{id}"),
        cli: format!("ingot-cli-{id}"),
        dnsmasq: None,
    };
    let dir = tempfile::tempdir().unwrap();
    sh(&["ip", "netns", "add", &lab.srv]);
    sh(&["ip", "netns", "add", &lab.cli]);
    sh(&[
        "ip", "link", "add", "ingot-vs", "netns", &lab.srv, "type", "veth", "peer", "name", "vc0",
        "netns", &lab.cli,
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
    let leases = dir.path().join("leases");
    lab.dnsmasq = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.srv,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=ingot-vs",
                "--bind-interfaces",
                "--no-ping",
                "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.53",
                "--dhcp-option=option:domain-name,lab.test",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let resolv = dir.path().join("resolv.conf");
    let started = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli,
            env!("CARGO_BIN_EXE_ingot-agent"),
            "net",
            "--no-hostname",
            "--dhcp-timeout",
            "20",
            "--carrier-wait",
            "2",
            "--resolv-conf",
        ])
        .arg(&resolv)
        .output()
        .unwrap();
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
    assert!(
        addr.starts_with("10.77.0.") && (50..=60).contains(&addr[8..].parse::<u32>().unwrap()),
        "{addr}"
    );
    assert_eq!(l["prefix"], 24);
    assert_eq!(l["routers"], serde_json::json!(["10.77.0.1"]));
    assert_eq!(l["dns"], serde_json::json!(["10.77.0.53"]));
    assert_eq!(l["server"], "10.77.0.1");
    // The uncabled NIC cost nothing beyond its own 2 s carrier wait, which
    // runs in parallel with the DHCP exchange.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
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

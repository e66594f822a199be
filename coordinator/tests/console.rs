//! The serial console (`ipmitool-socat` console interface) end to end:
//! an `ipmi` node on OpenIPMI's `ipmi_sim`, whose lan.conf has
//! `sol "tcp:127.0.0.1:<port>" 115200`. The "server's serial line" is a TCP
//! listener this test runs on that port (ipmi_sim connects to it as a
//! client, as it would to QEMU's `-serial tcp:…,server,nowait`); no VM.
//! The console is enabled through the API, a client connects to the
//! console URL with the token, and bytes flow both ways through the
//! coordinator's SOL session; wrong tokens are refused; disabling, deleting
//! the node, and a coordinator restart are checked. A second test
//! cross-checks with `ipmitool -I lanplus sol activate` (run under `script`
//! for a pseudo-terminal): taking the payload over from another session,
//! and deactivating it on disable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ipmi_sim;

use std::time::{Duration, Instant};

use common::sol::{Serial, addr_of, attach, output_arrives, read_until};
use common::venv::{baremetal, baremetal_json};
use ipmi_sim::IpmiSim;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads until EOF (or a reset); panics if the connection stays open.
async fn expect_closed(s: &mut TcpStream, secs: u64) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {secs} s; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

async fn console(api: &common::Api, node: &str) -> Value {
    let (st, v) = api.get(&format!("/v1/nodes/{node}/states/console")).await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn set_console(api: &common::Api, node: &str, enabled: bool) {
    let (st, v) = api
        .put(
            &format!("/v1/nodes/{node}/states/console"),
            json!({"enabled": enabled}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
}

/// An ipmi_sim whose SOL serial line is a TCP listener the test holds (the
/// server side of the serial cable); `None` when ipmi_sim is missing.
async fn sol_bmc() -> Option<(TcpListener, IpmiSim)> {
    let serial_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serial_port = serial_listener.local_addr().unwrap().port();
    let sim = IpmiSim::start_with(&format!("  sol \"tcp:127.0.0.1:{serial_port}\" 115200"))?;
    Some((serial_listener, sim))
}

/// A coordinator (SQLite `db_name`) with an `ipmitool-socat` node `n` on
/// `sim` whose console is enabled; returns the database, the coordinator,
/// its API and the node's `console_info`.
async fn console_node(
    sim: &IpmiSim,
    db_name: &str,
) -> (
    common::TestDb,
    ingot_coordinator::server::Running,
    common::Api,
    Value,
) {
    let db = common::test_db(common::Backend::Sqlite, db_name)
        .await
        .unwrap();
    let (running, api) = common::start_with(common::test_config(&db.url)).await;
    api.create_node(json!({
        "driver": "ipmi", "name": "n", "console_interface": "ipmitool-socat",
        "driver_info": sim.driver_info(),
    }))
    .await;
    set_console(&api, "n", true).await;
    let info = console(&api, "n").await["console_info"].clone();
    (db, running, api, info)
}

#[tokio::test]
async fn serial_console_through_the_api_against_ipmi_sim() {
    let Some((serial_listener, sim)) = sol_bmc().await else {
        return;
    };
    let db = common::test_db(common::Backend::Sqlite, "console")
        .await
        .unwrap();
    let (running, api) = common::start_with(common::test_config(&db.url)).await;

    // A node without SOL support: no-console, refused.
    let plain = api
        .create_node(json!({"driver": "ipmi", "name": "no-sol", "driver_info": sim.driver_info()}))
        .await;
    let (st, v) = api
        .put(
            &format!("/v1/nodes/{plain}/states/console"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(common::faultstring(&v).contains("console"), "{v}");

    // An IPMI 1.5 node: SOL is an RMCP+ payload, so no console either
    // (refused at once, not a console that never comes up).
    let mut info15 = sim.driver_info();
    info15["ipmi_protocol_version"] = json!("1.5");
    api.create_node(json!({
        "driver": "ipmi", "name": "v15", "console_interface": "ipmitool-socat",
        "driver_info": info15,
    }))
    .await;
    let (_, val) = api.get("/v1/nodes/v15/validate").await;
    assert_eq!(val["console"]["result"], false, "{val}");
    assert!(
        val["console"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("IPMI 2.0"),
        "{val}"
    );
    let (st, v) = api
        .put("/v1/nodes/v15/states/console", json!({"enabled": true}))
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(common::faultstring(&v).contains("IPMI 2.0"), "{v}");
    assert_eq!(console(&api, "v15").await["console_enabled"], false);

    api.create_node(json!({
        "driver": "ipmi", "name": "sol-node", "console_interface": "ipmitool-socat",
        "driver_info": sim.driver_info(),
    }))
    .await;
    let (_, val) = api.get("/v1/nodes/sol-node/validate").await;
    assert_eq!(val["console"]["result"], true, "{val}");
    let c = console(&api, "sol-node").await;
    assert_eq!(c, json!({"console_enabled": false, "console_info": null}));
    let (st, v) = api
        .put(
            "/v1/nodes/sol-node/states/console",
            json!({"enabled": "maybe"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");

    set_console(&api, "sol-node", true).await;
    let c = console(&api, "sol-node").await;
    assert_eq!(c["console_enabled"], true, "{c}");
    let info = c["console_info"].clone();
    assert_eq!(info["type"], "socat", "{c}");
    assert!(
        info["url"]
            .as_str()
            .unwrap()
            .starts_with("tcp://127.0.0.1:"),
        "{c}"
    );
    let token = info["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32, "{c}");
    let node = api.node("sol-node").await;
    assert_eq!(node["console_enabled"], true);
    let (_, listing) = api.get("/v1/nodes/detail").await;
    assert!(
        !node.to_string().contains(&token) && !listing.to_string().contains(&token),
        "the token is only in states/console"
    );

    let mut serial = Serial::accept(&serial_listener).await;

    // Wrong and missing tokens are refused and see no serial data.
    let mut bad = TcpStream::connect(addr_of(&info)).await.unwrap();
    bad.write_all(b"not-the-token\n").await.unwrap();
    let said = expect_closed(&mut bad, 5).await;
    assert!(said.contains("invalid console token"), "{said:?}");
    let mut empty = TcpStream::connect(addr_of(&info)).await.unwrap();
    empty.write_all(b"\r\n").await.unwrap();
    let said = expect_closed(&mut empty, 5).await;
    assert!(said.contains("invalid console token"), "{said:?}");
    let mut prefix = TcpStream::connect(addr_of(&info)).await.unwrap();
    prefix
        .write_all(format!("{}\n", &token[..token.len() - 1]).as_bytes())
        .await
        .unwrap();
    assert!(expect_closed(&mut prefix, 5).await.contains("invalid"));

    // The right token: server output reaches the client, typing reaches the server.
    let mut client = attach(&info, &mut serial).await;
    serial
        .write(b"Debian GNU/Linux 12 ingot ttyS0\r\nlogin: ")
        .await;
    read_until(&mut client, "login: ", 10).await;
    client.write_all(b"root\r").await.unwrap();
    serial.expect("root\r", 10).await;
    let long: String = (0..600)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    client.write_all(long.as_bytes()).await.unwrap();
    serial.expect(&long, 15).await;

    // One client at a time.
    let mut second = TcpStream::connect(addr_of(&info)).await.unwrap();
    second
        .write_all(format!("{token}\n").as_bytes())
        .await
        .unwrap();
    let said = expect_closed(&mut second, 5).await;
    assert!(said.contains("in use"), "{said:?}");

    // Disable: the client is closed, the listener is gone, the info is null.
    set_console(&api, "sol-node", false).await;
    expect_closed(&mut client, 10).await;
    assert_eq!(
        console(&api, "sol-node").await,
        json!({"console_enabled": false, "console_info": null})
    );
    assert!(TcpStream::connect(addr_of(&info)).await.is_err());
    assert_eq!(api.node("sol-node").await["console_enabled"], false);

    // Enabled again: a new token; the old one is refused.
    set_console(&api, "sol-node", true).await;
    let info2 = console(&api, "sol-node").await["console_info"].clone();
    assert_ne!(info2["token"], info["token"]);
    let mut old = TcpStream::connect(addr_of(&info2)).await.unwrap();
    old.write_all(format!("{token}\n").as_bytes())
        .await
        .unwrap();
    assert!(expect_closed(&mut old, 5).await.contains("invalid"));
    let mut client = attach(&info2, &mut serial).await;
    client.write_all(b"again\r").await.unwrap();
    serial.expect("again\r", 10).await;
    drop(client);

    // Restart: console_enabled is stored; the new coordinator starts the
    // console again, on a new port with a new token.
    running.shutdown().await;
    let (running, api) = common::start_with(common::test_config(&db.url)).await;
    let c = console(&api, "sol-node").await;
    assert_eq!(c["console_enabled"], true, "{c}");
    let info3 = c["console_info"].clone();
    assert!(info3.is_object(), "{c}");
    assert_ne!(info3["token"], info2["token"]);
    let mut client = attach(&info3, &mut serial).await;
    serial.write(b"after restart\r\n").await;
    read_until(&mut client, "after restart", 10).await;

    // Deleting the node closes the console.
    let (st, v) = api.delete("/v1/nodes/sol-node").await;
    assert_eq!(st, 204, "{v}");
    expect_closed(&mut client, 10).await;
    assert!(TcpStream::connect(addr_of(&info3)).await.is_err());
    running.shutdown().await;
    drop(sim);
}

/// `ipmitool sol activate` in a pseudo-terminal (it needs one), its
/// output collected in the background.
struct IpmitoolSol {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl IpmitoolSol {
    fn start(sim: &IpmiSim) -> Self {
        use std::io::Read as _;
        let cmd = format!(
            "ipmitool -I lanplus -C 3 -H 127.0.0.1 -p {} -U {} -P {} sol activate",
            sim.port,
            ipmi_sim::USER,
            ipmi_sim::PASSWORD
        );
        let mut child = std::process::Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { child, out }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    async fn wait_output(&self, want: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.output().contains(want) {
            assert!(
                Instant::now() < deadline,
                "ipmitool sol: no {want:?} in {:?}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every process below `pid`, breadth first (the deepest come last), from
/// the parent pids in `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for IpmitoolSol {
    /// Kills ipmitool itself with SIGKILL before `script`. Killing only
    /// `script` closes the pseudo-terminal, and ipmitool may then read EOF
    /// before the kernel's SIGHUP reaches it: it leaves its loop the
    /// graceful way and sends Deactivate Payload for SOL instance 1, which
    /// ipmi_sim honours from any session, so it would deactivate the
    /// payload our console had taken over. (The console notices that and
    /// takes SOL back, as the cross-check tests with `ipmitool sol
    /// deactivate`, but what is typed in between is lost.)
    fn drop(&mut self) {
        for pid in descendants(self.child.id()).into_iter().rev() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Cross-check with ipmitool: ipmi_sim's SOL works with the reference
/// client; enabling our console takes the payload over from a session that
/// holds it (Activate Payload answers 0x80; we deactivate and activate
/// again, as after a coordinator crash); after disabling, ipmitool can
/// activate SOL again, so our session deactivated the payload.
#[tokio::test]
async fn ipmitool_sol_cross_check_and_takeover() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,ingot_coordinator=debug")
        .with_test_writer()
        .try_init();
    let Some((serial_listener, sim)) = sol_bmc().await else {
        return;
    };
    if !ipmi_sim::have("ipmitool") || !ipmi_sim::have("script") {
        assert!(
            !common::must_not_skip(),
            "ipmitool and script (util-linux) are required"
        );
        eprintln!("SKIPPED: ipmitool or script not installed");
        return;
    }
    let mut serial = Serial::accept(&serial_listener).await;
    let theirs = IpmitoolSol::start(&sim);
    theirs.wait_output("SOL Session operational", 15).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !theirs.output().contains("to-ipmitool") {
        serial.write(b"to-ipmitool\r\n").await;
        assert!(Instant::now() < deadline, "{:?}", theirs.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (_db, running, api, info) = console_node(&sim, "console_takeover").await;
    let mut client = attach(&info, &mut serial).await;
    // The serial output now comes to us only: ipmitool's session lost the
    // payload (ipmi_sim does not tell it, so ipmitool itself keeps running).
    serial.write(b"after-takeover\r\n").await;
    read_until(&mut client, "after-takeover", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !theirs.output().contains("after-takeover"),
        "{:?}",
        theirs.output()
    );
    drop(theirs);
    client.write_all(b"ours\r").await.unwrap();
    serial.expect("ours\r", 10).await;

    // Another session deactivates the payload, and ipmi_sim tells us
    // nothing: with nobody typing, the keepalive (Get Payload Instance
    // Info) notices and the console takes SOL back.
    sim.ipmitool(&["sol", "deactivate"]);
    let took = output_arrives(&mut serial, &mut client, "taken-back", 30).await;
    eprintln!("SOL taken back {took:?} after another session deactivated it");
    client.write_all(b"ours-again\r").await.unwrap();
    serial.expect("ours-again\r", 10).await;

    set_console(&api, "n", false).await;
    expect_closed(&mut client, 10).await;
    let again = IpmitoolSol::start(&sim);
    again.wait_output("SOL Session operational", 15).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !again.output().contains("after-disable") {
        serial.write(b"after-disable\r\n").await;
        assert!(Instant::now() < deadline, "{:?}", again.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !again.output().contains("already active"),
        "{:?}",
        again.output()
    );
    drop(again);
    running.shutdown().await;
}

/// A BMC restart loses the SOL session; the console notices (no answer to
/// its keepalives) and activates SOL again while the client stays connected.
#[tokio::test]
async fn console_comes_back_after_the_bmc_restarts() {
    let Some((serial_listener, mut sim)) = sol_bmc().await else {
        return;
    };
    let (_db, running, _api, info) = console_node(&sim, "console_bmc_restart").await;
    let mut serial = Serial::accept(&serial_listener).await;
    let mut client = attach(&info, &mut serial).await;

    sim.restart();
    let mut serial = Serial::accept(&serial_listener).await;
    let took = output_arrives(&mut serial, &mut client, "back", 60).await;
    eprintln!("SOL back {took:?} after the BMC restart");
    client.write_all(b"typed-after\r").await.unwrap();
    serial.expect("typed-after\r", 10).await;
    running.shutdown().await;
}

/// SOL packets do not count as session activity for ipmi_sim: only IPMI
/// messages refresh its 30 s session timeout, and when it expires the
/// session is closed and SOL deactivated without a word. Under steady
/// serial output (a booting server) for longer than that, the console's
/// keepalives keep the session: every line arrives, none is lost to a
/// re-activation. (The lab's SOL copy stopped 30 s after activation, in
/// the third boot, before keepalives were sent regardless of traffic.)
#[tokio::test]
async fn sol_outlives_the_bmc_session_timeout_under_steady_output() {
    let Some((serial_listener, sim)) = sol_bmc().await else {
        return;
    };
    let (_db, running, _api, info) = console_node(&sim, "console_steady").await;
    let mut serial = Serial::accept(&serial_listener).await;
    let mut client = attach(&info, &mut serial).await;

    // A line every 200 ms for 40 s: never 5 s without SOL traffic.
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut lines = 0u32;
    while start.elapsed() < Duration::from_secs(40) {
        serial
            .write(format!("line {lines:04}\r\n").as_bytes())
            .await;
        lines += 1;
        let pace = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(pace);
        loop {
            tokio::select! {
                _ = &mut pace => break,
                r = client.read(&mut buf) => {
                    let n = r.unwrap();
                    assert!(n > 0, "the console closed the client");
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    let last = format!("line {:04}\r\n", lines - 1);
    if !String::from_utf8_lossy(&got).contains(&last) {
        got.extend_from_slice(read_until(&mut client, &last, 10).await.as_bytes());
    }
    let text = String::from_utf8_lossy(&got);
    let missing: Vec<u32> = (0..lines)
        .filter(|i| !text.contains(&format!("line {i:04}\r\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {lines} lines lost over SOL (first {:?}), {:?} after the start",
        missing.len(),
        missing.first(),
        start.elapsed()
    );
    running.shutdown().await;
    drop(sim);
}

/// The real `baremetal` CLI: set the console interface, `node console
/// enable`, `show`, use the URL and token it prints, `disable`.
#[tokio::test]
async fn baremetal_cli_console_commands() {
    let Some(venv) = common::venv::venv() else {
        return;
    };
    let Some((serial_listener, sim)) = sol_bmc().await else {
        return;
    };
    let db = common::test_db(common::Backend::Sqlite, "console_cli")
        .await
        .unwrap();
    let (running, api) = common::start_with(common::test_config(&db.url)).await;
    api.create_node(json!({"driver": "ipmi", "name": "cli", "driver_info": sim.driver_info()}))
        .await;
    baremetal(
        &venv,
        &api.base,
        &[
            "node",
            "set",
            "cli",
            "--console-interface",
            "ipmitool-socat",
        ],
    )
    .await;
    baremetal(&venv, &api.base, &["node", "console", "enable", "cli"]).await;
    let shown = baremetal_json(
        &venv,
        &api.base,
        &["node", "console", "show", "cli", "-f", "json"],
    )
    .await;
    assert_eq!(shown["console_enabled"], true, "{shown}");
    let info = shown["console_info"].clone();
    assert_eq!(info["type"], "socat", "{shown}");
    let mut serial = Serial::accept(&serial_listener).await;
    let mut client = attach(&info, &mut serial).await;
    client.write_all(b"via-cli\r").await.unwrap();
    serial.expect("via-cli\r", 10).await;
    baremetal(&venv, &api.base, &["node", "console", "disable", "cli"]).await;
    expect_closed(&mut client, 10).await;
    let shown = baremetal_json(
        &venv,
        &api.base,
        &["node", "console", "show", "cli", "-f", "json"],
    )
    .await;
    assert_eq!(shown["console_enabled"], false, "{shown}");
    assert!(shown["console_info"].is_null(), "{shown}");
    running.shutdown().await;
}

//! The coordinator's DHCP server (full mode) against a real client, busybox
//! `udhcpc`, across a veth pair: the server end in this process's network
//! namespace, the client end in a namespace the test creates (and always
//! deletes). Needs root (namespaces, SO_BINDTODEVICE); without root, `ip` or
//! `udhcpc` the test is skipped (it fails under CI or
//! INGOT_REQUIRE_PRIVILEGED=1).
//!
//! Node states are set directly in the database: the conductor's verbs would
//! power the node on and start timers that have nothing to do with DHCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::link::{Link, ok, sh};
use std::net::Ipv4Addr;

use std::process::Command;

use ingot_coordinator::config::{Config, DhcpConfig};
use ingot_coordinator::state::ProvisionState;
use serde_json::json;

fn usable() -> bool {
    let root = sh(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "udhcpc"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !(root && tools) {
        assert!(
            !common::must_not_skip(),
            "needs root, ip and udhcpc (apt-get install udhcpc iproute2)"
        );
        eprintln!("SKIPPED: needs root, ip and udhcpc");
    }
    root && tools
}

impl Udhcpc for Link {
    /// Runs udhcpc with `mac` and extra arguments; the lease's `ip`,
    /// `boot_file` and `siaddr`, or `None` when no lease came.
    fn udhcpc(&self, mac: &str, extra: &[&str]) -> Option<(String, String, String)> {
        let ns = &self.ns;
        let c = &self.client_if;
        ok(&["ip", "netns", "exec", ns, "ip", "link", "set", c, "down"]);
        ok(&[
            "ip", "netns", "exec", ns, "ip", "link", "set", c, "address", mac,
        ]);
        ok(&["ip", "netns", "exec", ns, "ip", "link", "set", c, "up"]);
        let out = self.dir.path().join("lease");
        let _ = std::fs::remove_file(&out);
        let script = self.dir.path().join("script.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip|$boot_file|$siaddr\" > {}\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        ok(&["chmod", "+x", script.to_str().unwrap()]);
        let mut args = vec![
            "ip", "netns", "exec", ns, "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", c,
            "-s",
        ];
        args.push(script.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = sh(&args);
        let text = std::fs::read_to_string(&out).ok()?;
        assert!(o.status.success(), "lease written but udhcpc failed: {o:?}");
        let mut parts = text.trim().split('|').map(str::to_owned);
        Some((parts.next()?, parts.next()?, parts.next()?))
    }
}

/// busybox udhcpc on the client end.
trait Udhcpc {
    fn udhcpc(&self, mac: &str, extra: &[&str]) -> Option<(String, String, String)>;
}

fn config(link: &Link, db: &str) -> Config {
    let mut cfg = common::test_config(db);
    cfg.dhcp = DhcpConfig {
        enabled: true,
        interface: link.server_if.clone(),
        server_ip: Some(link.server_ip),
        range_start: Some(link.ip(100)),
        range_end: Some(link.ip(110)),
        router: Some(link.server_ip),
        dns: vec![link.server_ip],
        lease_time: 600,
        http_url: Some(format!("http://{}:6385", link.server_ip)),
        ..DhcpConfig::default()
    };
    cfg
}

async fn set_state(running: &ingot_coordinator::server::Running, uuid: &str, s: ProvisionState) {
    running
        .conductor
        .db()
        .update_node::<(), _>(uuid, |n| {
            n.provision_state = s;
            Ok(())
        })
        .await
        .unwrap();
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

const MAC_A: &str = "52:54:00:d1:00:0a";
const MAC_B: &str = "52:54:00:d1:00:0b";
const MAC_C: &str = "52:54:00:d1:00:0c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_with_udhcpc() {
    if !usable() {
        return;
    }
    let link = std::sync::Arc::new(Link::new(0));
    let dbdir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", dbdir.path().display());
    let (running, api) = common::start_with(config(&link, &db)).await;

    let a = api
        .create_node(json!({"driver": "fake-hardware", "name": "dhcp-a"}))
        .await;
    let (st, _) = api
        .post("/v1/ports", json!({"address": MAC_A, "node_uuid": a}))
        .await;
    assert_eq!(st, 201);
    let c = api
        .create_node(json!({"driver": "fake-hardware", "name": "dhcp-c"}))
        .await;
    let (st, _) = api
        .post("/v1/ports", json!({"address": MAC_C, "node_uuid": c}))
        .await;
    assert_eq!(st, 201);

    // Enrolled but not booting the ramdisk: no answer.
    let l = link.clone();
    assert_eq!(blocking(move || l.udhcpc(MAC_A, &[])).await, None);

    // inspect wait: a lease from the range; as x86-64 UEFI PXE firmware it
    // also gets the UEFI loader from us.
    set_state(&running, &a, ProvisionState::InspectWait).await;
    let l = link.clone();
    let got = blocking(move || {
        l.udhcpc(
            MAC_A,
            &["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"],
        )
    })
    .await;
    let (ip, boot_file, siaddr) = got.expect("a lease for the inspected node");
    assert_eq!(ip, link.ip(100).to_string());
    assert_eq!(boot_file, "snponly.efi");
    assert_eq!(siaddr, link.server_ip.to_string());
    // As arm64 UEFI PXE firmware (architecture 11): Debian's network GRUB,
    // and the architecture is remembered for the node's boot files
    // (issue 20 item 3; coordinator/tests/boot_arch.rs uses the record).
    let l = link.clone();
    let (_, boot_file, _) = blocking(move || {
        l.udhcpc(
            MAC_A,
            &["-V", "PXEClient:Arch:00011:UNDI:003016", "-x", "0x5d:000b"],
        )
    })
    .await
    .expect("a lease as arm64 firmware");
    assert_eq!(boot_file, "grubnetaa64.efi");
    assert_eq!(
        running
            .conductor
            .arch_hints()
            .get(MAC_A, ingot_coordinator::model::now_ms())
            .as_deref(),
        Some("aarch64")
    );
    // As iPXE: the boot script's URL.
    let l = link.clone();
    let (ip, boot_file, _) = blocking(move || l.udhcpc(MAC_A, &["-x", "0x4d:69505845"]))
        .await
        .unwrap();
    assert_eq!(ip, link.ip(100).to_string(), "same address on renewal");
    assert_eq!(
        boot_file,
        format!("http://{}:6385/boot/boot.ipxe", link.server_ip)
    );

    // An unknown MAC: ignored.
    let l = link.clone();
    assert_eq!(blocking(move || l.udhcpc(MAC_B, &[])).await, None);

    // Leaving the boot states: no more answers.
    set_state(&running, &a, ProvisionState::Manageable).await;
    let l = link.clone();
    assert_eq!(blocking(move || l.udhcpc(MAC_A, &[])).await, None);

    // Leases survive a restart: node C gets the next address, A keeps its own.
    set_state(&running, &a, ProvisionState::CleanWait).await;
    set_state(&running, &c, ProvisionState::WaitCallBack).await;
    running.shutdown().await;
    let (running, _api) = common::start_with(config(&link, &db)).await;
    let l = link.clone();
    let (ip_c, _, _) = blocking(move || l.udhcpc(MAC_C, &[]))
        .await
        .expect("lease for C");
    assert_eq!(ip_c, link.ip(101).to_string());
    let l = link.clone();
    let (ip_a, boot_file, _) = blocking(move || l.udhcpc(MAC_A, &[]))
        .await
        .expect("lease for A");
    assert_eq!(ip_a, link.ip(100).to_string());
    assert_eq!(boot_file, "", "a plain client gets no boot file");
    let leases = running.conductor.db().list_dhcp_leases().await.unwrap();
    assert_eq!(leases.len(), 2, "{leases:?}");
    running.shutdown().await;
}

/// The lease queries on both databases (the migration is one portable file).
#[tokio::test]
async fn lease_queries_on_both_databases() {
    use common::Backend;
    use ingot_coordinator::db::Db;
    use ingot_coordinator::db::leases::Lease;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(t) = common::test_db(backend, "dhcp_leases").await else {
            continue;
        };
        let db = Db::connect(&t.url).await.unwrap();
        let ip = |n| Ipv4Addr::new(10, 0, 0, n);
        let l = |n, mac: &str, exp| Lease {
            ip: ip(n),
            mac: mac.into(),
            expires_ms: exp,
            hostname: Some("h".into()),
        };
        db.put_dhcp_lease(&l(5, MAC_A, 1000)).await.unwrap();
        db.put_dhcp_lease(&l(6, MAC_B, 2000)).await.unwrap();
        // A MAC moving to another address leaves one row; taking over an
        // expired address replaces its old holder.
        db.put_dhcp_lease(&l(7, MAC_A, 3000)).await.unwrap();
        db.put_dhcp_lease(&l(6, MAC_C, 4000)).await.unwrap();
        let all = db.list_dhcp_leases().await.unwrap();
        assert_eq!(
            all,
            vec![l(6, MAC_C, 4000), l(7, MAC_A, 3000)],
            "{backend:?}"
        );
        db.expire_dhcp_lease(MAC_A, 10).await.unwrap();
        assert_eq!(
            db.dhcp_lease_for_mac(MAC_A)
                .await
                .unwrap()
                .unwrap()
                .expires_ms,
            10
        );
        assert_eq!(db.dhcp_lease_for_mac(MAC_B).await.unwrap(), None);
        db.close().await;
    }
}

/// dnsmasq on the same link, killed on drop.
struct Dnsmasq(std::process::Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Proxy mode beside dnsmasq, which hands out the addresses on the same
/// interface: a PXE client (a small script, `dhcp/pxe_client.py`, standing in
/// for firmware: no real PXE ROM runs outside QEMU) gets our offer with the
/// boot file and no address, and the boot file again from our port 4011,
/// while dnsmasq offers it an address. An unknown MAC gets nothing from us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_beside_dnsmasq() {
    if !usable() {
        return;
    }
    let link = std::sync::Arc::new(Link::new(1));
    let dbdir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", dbdir.path().display());
    let mut cfg = config(&link, &db);
    cfg.dhcp.mode = ingot_coordinator::config::DhcpMode::Proxy;
    let (running, api) = common::start_with(cfg).await;
    let a = api
        .create_node(json!({"driver": "fake-hardware", "name": "proxy-a"}))
        .await;
    let (st, _) = api
        .post("/v1/ports", json!({"address": MAC_A, "node_uuid": a}))
        .await;
    assert_eq!(st, 201);
    set_state(&running, &a, ProvisionState::CleanWait).await;

    let range = format!("{},{},1h", link.ip(150), link.ip(160));
    let _dnsmasq = Dnsmasq(
        Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--port=0",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--leasefile-ro",
            ])
            .arg(format!("--interface={}", link.server_if))
            .arg(format!("--dhcp-range={range}"))
            .arg(format!(
                "--pid-file={}/dnsmasq.pid",
                link.dir.path().display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(link.dir.path().join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("dnsmasq (dnsmasq-base)"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    ok(&[
        "ip",
        "netns",
        "exec",
        &link.ns,
        "ip",
        "addr",
        "add",
        &format!("{}/24", link.ip(50)),
        "dev",
        &link.client_if,
    ]);
    ok(&[
        "ip",
        "netns",
        "exec",
        &link.ns,
        "ip",
        "link",
        "set",
        &link.client_if,
        "up",
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dhcp/pxe_client.py");
    let run = |mac: &'static str| {
        let l = link.clone();
        blocking(move || {
            ok(&[
                "ip",
                "netns",
                "exec",
                &l.ns,
                "ip",
                "link",
                "set",
                &l.client_if,
                "address",
                mac,
            ]);
            let o = sh(&[
                "ip",
                "netns",
                "exec",
                &l.ns,
                "python3",
                script,
                &l.client_if,
                mac,
                "7",
                &l.server_ip.to_string(),
            ]);
            assert!(o.status.success(), "{o:?}");
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    };
    let out = run(MAC_A).await;
    assert!(
        out.contains("offer 0.0.0.0 snponly.efi PXEClient"),
        "no proxy offer: {out}"
    );
    // dnsmasq answered the same DISCOVER with an address (its log says so).
    // The script does not see that offer: dnsmasq sends it to the offered
    // address, which the client end does not have (receiving it takes a raw
    // socket, as firmware has); so this checks that both servers share one
    // interface and answer, not the client's view of dnsmasq's offer.
    let log = std::fs::read_to_string(link.dir.path().join("dnsmasq.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("DHCPOFFER({}) {}", link.server_if, link.ip(15))),
        "dnsmasq made no offer beside the proxy: {log}"
    );
    assert!(
        out.contains("ack snponly.efi"),
        "no ACK on port 4011: {out}"
    );
    let out = run(MAC_B).await;
    assert!(
        !out.contains("snponly.efi"),
        "an unknown MAC was answered: {out}"
    );
    running.shutdown().await;
}

/// A router solicitation from the client's side of the link, sent every
/// 0.5 s for up to 10 s (the veths' link-local addresses need a moment);
/// prints the first router advertisement's router lifetime, its flags and
/// its length, as `RA <lifetime> <flags> <len>`.
const SOLICIT: &str = r#"
import socket, struct, sys, time
ifname = sys.argv[1]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.settimeout(0.5)
idx = socket.if_nametoindex(ifname)
end = time.time() + 10
while time.time() < end:
    try:
        s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, idx))
    except OSError:
        pass
    try:
        while True:
            data, _ = s.recvfrom(1500)
            if data[0] == 134:
                print("RA", struct.unpack("!H", data[6:8])[0], data[5], len(data))
                sys.exit(0)
    except socket.timeout:
        pass
print("none")
"#;

/// `advertise_no_ipv6_router`: a solicitation on the link is answered by an
/// advertisement with router lifetime 0, no flags and no options (no
/// prefix), which ends iPXE's wait for IPv6 autoconfiguration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ipv6_router_advertisements() {
    if !usable() {
        return;
    }
    let link = std::sync::Arc::new(Link::new(2));
    let dbdir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", dbdir.path().display());
    let mut cfg = config(&link, &db);
    cfg.dhcp.advertise_no_ipv6_router = true;
    let (running, _api) = common::start_with(cfg).await;
    ok(&[
        "ip",
        "netns",
        "exec",
        &link.ns,
        "ip",
        "link",
        "set",
        &link.client_if,
        "up",
    ]);
    let l = link.clone();
    let out = blocking(move || {
        sh(&[
            "ip",
            "netns",
            "exec",
            &l.ns,
            "python3",
            "-c",
            SOLICIT,
            &l.client_if,
        ])
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "RA 0 0 16",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    running.shutdown().await;
}

/// `unknown_macs = "inspect"` with `unknown_macs_limit = 1`: the first
/// unknown MAC gets an address (and keeps it on renewal), a second one gets
/// nothing, and enrolled machines are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_macs_are_bounded() {
    if !usable() {
        return;
    }
    let link = std::sync::Arc::new(Link::new(3));
    let dbdir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingot.db", dbdir.path().display());
    let mut cfg = config(&link, &db);
    cfg.dhcp.unknown_macs = ingot_coordinator::config::UnknownMacs::Inspect;
    cfg.dhcp.unknown_macs_limit = 1;
    let (running, api) = common::start_with(cfg).await;
    let a = api
        .create_node(json!({"driver": "fake-hardware", "name": "bounded-a"}))
        .await;
    let (st, _) = api
        .post("/v1/ports", json!({"address": MAC_A, "node_uuid": a}))
        .await;
    assert_eq!(st, 201);
    set_state(&running, &a, ProvisionState::InspectWait).await;

    let l = link.clone();
    let (ip_b, _, _) = blocking(move || l.udhcpc(MAC_B, &[]))
        .await
        .expect("the first unknown MAC is answered");
    let l = link.clone();
    assert_eq!(
        blocking(move || l.udhcpc(MAC_C, &[])).await,
        None,
        "a second unknown MAC is refused"
    );
    let l = link.clone();
    let again = blocking(move || l.udhcpc(MAC_B, &[])).await;
    assert_eq!(again.map(|(ip, _, _)| ip), Some(ip_b), "the holder renews");
    let l = link.clone();
    assert!(
        blocking(move || l.udhcpc(MAC_A, &[])).await.is_some(),
        "enrolled machines are not counted"
    );
    running.shutdown().await;
}

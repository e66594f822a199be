//! The isolation lab (`ingot-lab run --isolation`, issue 19 item 5): two
//! QEMU servers whose provisioning NICs are ports of a private Open vSwitch
//! (module `ovs`) that the coordinator programs through its `ovsdb` switch
//! driver (`network_interface = "neutron"`), and network-namespace hosts
//! on the tenant VLANs standing in for other tenants' machines. Every probe
//! and check lands in `isolation.json` with from, to, expected and observed;
//! the run fails if any observed differs from its expected.
//!
//! The scenario (fast track on both nodes, no inspection, metadata wipes):
//!
//! 1. node B: provide, deploy into tenant B (VIF `tenant-b`); its test image
//!    takes 10.77.0.12 and probes the tenant hosts;
//! 2. node A: provide; during cleaning a stand-in ("twin") put on the VLAN
//!    of node A's port asks the coordinator for DHCP, TFTP and HTTP; the
//!    node's own DHCP lease and heartbeats are read from the coordinator;
//! 3. node A: deploy into tenant A; its port is read back on the
//!    provisioning VLAN while the agent writes the image, the agent's image
//!    download is in the image store's log; once active its test image
//!    (10.77.0.11, the provisioning subnet, so only the VLAN separates it)
//!    probes the coordinator's API, TFTP and image store, the tenant hosts
//!    and node B; the twin on node A's VLAN asks for DHCP; the tenant hosts
//!    and the coordinator's leg arping both nodes;
//! 4. drift: `ovs-vsctl set port tapA tag=202` behind the coordinator's
//!    back; the tag must be back within one sync interval, and the
//!    correction recorded in the node's `isolation_report`;
//! 5. undeploy: node A's port back on the cleaning network, cleaning
//!    succeeds;
//! 6. dead switch: node A deployed again, ovsdb-server stopped (SIGSTOP)
//!    while the agent writes the image: the move to the tenant network
//!    times out, the deploy fails naming the switch and port, the node is
//!    powered off; then ovsdb-server is restarted (killed and started on
//!    its database, as a switch reboots), the port is read off the tenant
//!    VLAN, and the sync quarantines it. Stopped, not killed: a killed
//!    ovsdb-server also stops the userspace datapath from forwarding (seen
//!    here: the agent's download stalled at once), so the deploy would fail
//!    at the agent, not at the switch change this check is about.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::bmc::{self, BmcPorts};
use crate::chassis::{NodeDir, NodeSpec};
use crate::netns::{BRIDGE_IP, RANGE};
use crate::ovs::{self, Host, Switch};
use crate::proc::{self, Guard};
use crate::report::{Phase, Report};
use crate::scenario::{Options, Progress};
use crate::{fileserver, sha256_file};

/// The VLANs.
const VLAN_PROVISIONING: u16 = 100;
const VLAN_QUARANTINE: u16 = 4000;
const VLAN_TENANT_A: u16 = 201;
const VLAN_TENANT_B: u16 = 202;
/// The switch's name in the coordinator's configuration.
const SWITCH: &str = "fabric";
/// `[network_sync] interval_ms`.
pub const SYNC_MS: u64 = 2000;
/// How long a correction may take after the interval (the sync pass
/// itself: a reservation, a set, a read back).
const SYNC_SLACK: Duration = Duration::from_millis(1500);
/// The tenant hosts' and the nodes' addresses: all in the provisioning
/// subnet, so that only the VLANs keep them apart.
const HOST_A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 21);
const HOST_B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 22);
const TWIN_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 30);
/// The root disk of each server (one disk: a metadata wipe, the image).
const VDA_BYTES: u64 = 1 << 30;
/// Its serial, the root device hint.
const VDA_SERIAL: &str = "INGOT-ISO-VDA";
/// The file the TFTP probes ask for.
const TFTP_FILE: &str = "probe.txt";

/// One entry of `isolation.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Where in the scenario.
    pub step: String,
    pub from: String,
    pub to: String,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
    /// How it was observed.
    pub detail: String,
    /// Seconds since the run started.
    pub at: f64,
}

/// `isolation.json`.
#[derive(Debug, Default, Serialize)]
pub struct Evidence {
    pub passed: bool,
    pub seconds: f64,
    pub sync_interval_ms: u64,
    pub vlans: Value,
    pub entries: Vec<Entry>,
    /// The nodes' `isolation_report`s at the end.
    pub isolation_reports: Value,
    pub error: Option<String>,
}

/// One QEMU server.
struct Server {
    label: &'static str,
    name: &'static str,
    mac: &'static str,
    tap: &'static str,
    tenant: &'static str,
    ip: Ipv4Addr,
    node: NodeDir,
    console: PathBuf,
    bmc_port: u16,
    _bmc: Guard,
    uuid: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.node.power_off();
    }
}

struct IsoLab {
    sw: Switch,
    host_a: Host,
    host_b: Host,
    twin: Host,
    api: Api,
    api_port: u16,
    store_port: u16,
    image_url: String,
    image_sha256: String,
    images_log: PathBuf,
    coordinator_log: PathBuf,
    _coordinator: Guard,
}

struct Run<'a> {
    opts: &'a Options,
    progress: &'a Progress,
    started: Instant,
    ev: Evidence,
    report: Report,
}

impl Run<'_> {
    fn say(&self, m: &str) {
        self.progress.say(m);
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        step: &str,
        from: &str,
        to: &str,
        expected: &str,
        observed: &str,
        detail: &str,
    ) {
        let passed = expected == observed;
        self.say(&format!(
            "  {} {from} → {to}: expected {expected}, observed {observed} ({detail})",
            if passed { "ok  " } else { "FAIL" }
        ));
        self.ev.entries.push(Entry {
            step: step.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            expected: expected.to_owned(),
            observed: observed.to_owned(),
            passed,
            detail: detail.to_owned(),
            at: self.started.elapsed().as_secs_f64(),
        });
    }

    fn phase(&mut self, name: &str, t: Instant, states: Vec<String>) {
        let seconds = t.elapsed().as_secs_f64();
        self.say(&format!("{name} done in {seconds:.1} s"));
        self.report.phases.push(Phase {
            name: name.to_owned(),
            seconds,
            states,
            power_on_to_heartbeat: None,
            progress: vec![],
        });
    }
}

fn reached(ok: bool) -> &'static str {
    if ok { "reached" } else { "unreached" }
}

fn qemu_argv(s: &ServerPlan, ports: &(u16, u16), pxe: bool) -> Vec<String> {
    let (nic_idx, disk_idx) = if pxe { (1, 2) } else { (2, 1) };
    let mut a: Vec<String> = [
        "qemu-system-x86_64",
        "-name",
        s.qemu_name,
        "-machine",
        "q35,accel=tcg,graphics=off",
        "-m",
        "1024",
        "-smp",
        "1",
        "-display",
        "none",
        "-nodefaults",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut push = |k: &str, v: String| {
        a.push(k.to_owned());
        a.push(v);
    };
    push(
        "-chardev",
        format!(
            "socket,id=ser0,host=127.0.0.1,port={},reconnect=1,logfile={},logappend=on",
            ports.1,
            s.console.display()
        ),
    );
    push("-serial", "chardev:ser0".into());
    push(
        "-qmp",
        format!("unix:{},server=on,wait=off", s.node.qmp().display()),
    );
    push(
        "-chardev",
        format!(
            "socket,id=ipmi0,host=127.0.0.1,port={},reconnect=10",
            ports.0
        ),
    );
    push("-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0".into());
    push("-device", "isa-ipmi-kcs,bmc=bmc0".into());
    // The tap is an Open vSwitch port; without vnet_hdr the guest
    // computes its own checksums (the userspace datapath would forward
    // partial ones).
    push(
        "-netdev",
        format!(
            "tap,id=n0,ifname={},script=no,downscript=no,vnet_hdr=off",
            s.tap
        ),
    );
    push(
        "-device",
        format!("virtio-net-pci,netdev=n0,mac={},bootindex={nic_idx}", s.mac),
    );
    push(
        "-drive",
        format!(
            "file={},if=none,id=d0,format=raw,discard=unmap,detect-zeroes=unmap",
            s.disk.display()
        ),
    );
    push(
        "-device",
        format!("virtio-blk-pci,drive=d0,serial={VDA_SERIAL},bootindex={disk_idx}"),
    );
    a
}

struct ServerPlan<'a> {
    qemu_name: &'a str,
    mac: &'a str,
    tap: &'a str,
    node: &'a NodeDir,
    console: &'a Path,
    disk: &'a Path,
}

#[allow(clippy::too_many_arguments)]
fn server(
    w: &Path,
    opts: &Options,
    sw: &Switch,
    label: &'static str,
    dir: &str,
    name: &'static str,
    mac: &'static str,
    tap: &'static str,
    tenant: &'static str,
    ip: Ipv4Addr,
) -> Result<Server> {
    let node = NodeDir(w.join(dir));
    std::fs::create_dir_all(&node.0)?;
    let console = w.join(format!("{dir}-console.log"));
    let disk = w.join(format!("{dir}-disk-vda.raw"));
    std::fs::File::create(&disk)?.set_len(VDA_BYTES)?;
    // The operator leaves a free port in quarantine; the coordinator moves it.
    sw.add_tap(tap, VLAN_QUARANTINE)?;
    let relay = crate::serial::start()?;
    let ports = BmcPorts {
        lan: proc::free_udp_port()?,
        vm: proc::free_tcp_port()?,
        serial: relay.bmc_port,
    };
    let plan = ServerPlan {
        qemu_name: name,
        mac,
        tap,
        node: &node,
        console: &console,
        disk: &disk,
    };
    let q = (ports.vm, relay.server_port);
    let spec = NodeSpec {
        argv_pxe: qemu_argv(&plan, &q, true),
        argv_disk: qemu_argv(&plan, &q, false),
    };
    std::fs::write(node.spec(), serde_json::to_vec_pretty(&spec)?)?;
    std::fs::write(node.bootdev(), "default")?;
    crate::console::timestamp_lines(&console, &w.join(format!("{dir}-console.timed.log")));
    let bmc = bmc::start(&node.0, &opts.lab_bin, &ports)?;
    Ok(Server {
        label,
        name,
        mac,
        tap,
        tenant,
        ip,
        node,
        console,
        bmc_port: ports.lan,
        _bmc: bmc,
        uuid: String::new(),
    })
}

fn coordinator_config(w: &Path, sock: &Path) -> String {
    format!(
        "[auth]\nallow_noauth_on_network = true\n\n\
         [dhcp]\nenabled = true\ninterface = \"{prov}\"\nserver_ip = \"{BRIDGE_IP}\"\n\
         mode = \"full\"\nrange_start = \"{r0}\"\nrange_end = \"{r1}\"\n\
         advertise_no_ipv6_router = true\n\
         # the twin (a stand-in on a node's VLAN) is no enrolled port\n\
         unknown_macs = \"inspect\"\n\n\
         [tftp]\nenabled = true\nlisten = \"{BRIDGE_IP}:69\"\nroot = {tftp:?}\n\n\
         [switches.{SWITCH}]\ndriver = \"ovsdb\"\naddress = \"unix:{sock}\"\ntimeout_ms = 2000\n\n\
         [networks.provisioning]\nvlan = {VLAN_PROVISIONING}\n\
         [networks.quarantine]\nvlan = {VLAN_QUARANTINE}\n\
         [networks.tenant-a]\nvlan = {VLAN_TENANT_A}\n\
         [networks.tenant-b]\nvlan = {VLAN_TENANT_B}\n\n\
         [network_roles]\nprovisioning = \"provisioning\"\nquarantine = \"quarantine\"\n\n\
         [network_sync]\ninterval_ms = {SYNC_MS}\nattempts = 2\n",
        prov = ovs::PROV,
        r0 = RANGE.0,
        r1 = RANGE.1,
        tftp = w.join("tftp-root"),
        sock = sock.display(),
    )
}

fn setup(
    opts: &Options,
    progress: &Progress,
    rt: &tokio::runtime::Runtime,
) -> Result<(IsoLab, Server, Server)> {
    let w = &opts.workdir;
    let sw = Switch::start(&w.join("ovs"), VLAN_PROVISIONING)?;
    let host_a = sw.add_host("host-a", HOST_A_IP, VLAN_TENANT_A)?;
    let host_b = sw.add_host("host-b", HOST_B_IP, VLAN_TENANT_B)?;
    let twin = sw.add_host("twin", TWIN_IP, VLAN_QUARANTINE)?;
    progress.say(&format!(
        "Open vSwitch (userspace datapath) in {}: bridge {}, coordinator on {} (VLAN {VLAN_PROVISIONING}), \
         host-a {HOST_A_IP} (VLAN {VLAN_TENANT_A}), host-b {HOST_B_IP} (VLAN {VLAN_TENANT_B}), twin {TWIN_IP}",
        sw.dir.display(),
        ovs::BRIDGE,
        ovs::PROV
    ));
    std::fs::create_dir_all(w.join("tftp-root"))?;
    std::fs::write(w.join("tftp-root").join(TFTP_FILE), "ingot isolation lab\n")?;
    let images = w.join("images");
    std::fs::create_dir_all(&images)?;
    let served = images.join("test-image.raw");
    std::fs::copy(&opts.artifacts.image, &served).context("copying the test image")?;
    let image_sha256 = sha256_file(&served)?;
    let images_log = w.join("image-server.log");
    let store = fileserver::start(&images, &images_log, Ipv4Addr::UNSPECIFIED, None)?;

    let api_port = proc::free_tcp_port()?;
    let config = w.join("coordinator.toml");
    std::fs::write(&config, coordinator_config(w, &sw.sock()))?;
    let coordinator_log = w.join("coordinator.log");
    let log = std::fs::File::create(&coordinator_log)?;
    let child = Command::new(&opts.coordinator)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("{BRIDGE_IP}:{api_port}"))
        .arg("--database")
        .arg(format!("sqlite://{}", w.join("coordinator.db").display()))
        .arg("--boot-kernel")
        .arg(&opts.artifacts.kernel)
        .arg("--boot-initramfs")
        .arg(&opts.artifacts.initramfs)
        .env("RUST_LOG", "info,ingot_coordinator::dhcp=debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting ingot-coordinator")?;
    let mut coordinator = Guard::new("ingot-coordinator", child);
    let base = format!("http://{BRIDGE_IP}:{api_port}");
    let api = Api::new(&base, None)?;

    let a = server(
        w,
        opts,
        &sw,
        "A",
        "node1",
        "iso-node-a",
        "52:54:00:e2:e1:0a",
        "tapA",
        "tenant-a",
        Ipv4Addr::new(10, 77, 0, 11),
    )?;
    let b = server(
        w,
        opts,
        &sw,
        "B",
        "node2",
        "iso-node-b",
        "52:54:00:e2:e1:0b",
        "tapB",
        "tenant-b",
        Ipv4Addr::new(10, 77, 0, 12),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = coordinator.exited() {
            bail!(
                "ingot-coordinator exited ({st}): {}",
                std::fs::read_to_string(&coordinator_log).unwrap_or_default()
            );
        }
        if rt.block_on(api.up()) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the coordinator did not answer on {base} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.say(&format!(
        "coordinator: {base} (SQLite; DHCP and TFTP on {}; switch {SWITCH} over OVSDB, sync every {SYNC_MS} ms); \
         BMCs on udp {} (A) and {} (B)",
        ovs::PROV,
        a.bmc_port,
        b.bmc_port
    ));
    let lab = IsoLab {
        sw,
        host_a,
        host_b,
        twin,
        api,
        api_port,
        store_port: store.port(),
        image_url: format!("http://{BRIDGE_IP}:{}/test-image.raw", store.port()),
        image_sha256,
        images_log,
        coordinator_log,
        _coordinator: coordinator,
    };
    Ok((lab, a, b))
}

/// Polls the node until `want` (no target pending); `tick` sees every body.
/// A `* failed` state or maintenance fails, unless it is `want`.
async fn wait(
    api: &Api,
    uuid: &str,
    want: &str,
    timeout: Duration,
    states: &mut Vec<String>,
    mut tick: impl FnMut(&Value),
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = api.node(uuid).await?;
        let state = n["provision_state"].as_str().unwrap_or("").to_owned();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        tick(&n);
        // A `wait` state has a target while the agent works: it counts.
        if state == want && (n["target_provision_state"].is_null() || want.ends_with("wait")) {
            return Ok(n);
        }
        if state.ends_with("failed") || n["maintenance"].as_bool() == Some(true) {
            bail!(
                "node {uuid} went to {state} (maintenance {}): {}",
                n["maintenance"],
                n["last_error"].as_str().unwrap_or("no last_error")
            );
        }
        ensure!(
            Instant::now() < deadline,
            "node {uuid} still {state} after {} s waiting for {want}; last_error: {}",
            timeout.as_secs(),
            n["last_error"]
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The probe lines the node's test image printed, parsed.
fn probe_lines(console: &Path) -> (bool, Vec<Value>) {
    let text = crate::console::strip_ansi(&std::fs::read_to_string(console).unwrap_or_default());
    let done = text.contains("INGOT-TEST-IMAGE probes done");
    let probes = text
        .lines()
        .filter_map(|l| l.split("INGOT-TEST-IMAGE probe {").nth(1))
        .filter_map(|r| serde_json::from_str(&format!("{{{}", r.trim())).ok())
        .collect();
    (done, probes)
}

async fn wait_probes(console: &Path, timeout: Duration) -> Result<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, probes) = probe_lines(console);
        if done {
            return Ok(probes);
        }
        ensure!(
            Instant::now() < deadline,
            "{}: no \"probes done\" within {} s",
            console.display(),
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// From a stand-in host: DHCP (busybox udhcpc, no configuration applied),
/// TFTP read, HTTP GET; each (reached, detail).
fn twin_dhcp(twin: &Host) -> (bool, String) {
    let (ok, out) = twin.try_sh(&format!(
        "busybox udhcpc -i {} -n -q -f -t 2 -T 1 -s /bin/true 2>&1",
        twin.name
    ));
    let line = out
        .lines()
        .filter(|l| l.contains("lease") || l.contains("offer") || l.contains("No lease"))
        .collect::<Vec<_>>()
        .join("; ");
    (
        ok,
        format!(
            "busybox udhcpc: {}",
            if line.is_empty() { &out } else { &line }
        ),
    )
}

fn twin_tftp(twin: &Host) -> (bool, String) {
    let (ok, out) = twin.try_sh(&format!(
        "busybox timeout 4 busybox tftp -g -r {TFTP_FILE} -l /dev/null {BRIDGE_IP} 2>&1"
    ));
    (
        ok,
        format!(
            "busybox tftp -g {TFTP_FILE}: {}",
            if ok { "received" } else { out.trim() }
        ),
    )
}

fn twin_http(twin: &Host, port: u16) -> (bool, String) {
    let (ok, out) = twin.try_sh(&format!(
        "busybox timeout 4 busybox wget -q -O /dev/null http://{BRIDGE_IP}:{port}/v1 2>&1"
    ));
    (
        ok,
        format!(
            "busybox wget GET /v1: {}",
            if ok { "200" } else { out.trim() }
        ),
    )
}

/// arping from a host (its namespace) or from the lab's namespace (the
/// coordinator's leg).
fn arping(host: Option<&Host>, target: Ipv4Addr) -> (bool, String) {
    let (ok, out) = match host {
        Some(h) => h.try_sh(&format!("busybox arping -c 2 -w 3 -I {} {target}", h.name)),
        None => {
            let o = Command::new("busybox")
                .args([
                    "arping",
                    "-c",
                    "2",
                    "-w",
                    "3",
                    "-I",
                    ovs::PROV,
                    &target.to_string(),
                ])
                .output();
            match o {
                Ok(o) => (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                ),
                Err(e) => (false, e.to_string()),
            }
        }
    };
    let line = out
        .lines()
        .find(|l| l.starts_with("Received"))
        .unwrap_or(out.as_str())
        .to_owned();
    (ok, format!("arping: {line}"))
}

fn probe_spec(s: &Server, probes: Value) -> Value {
    json!({"mac": s.mac, "address": format!("{}/24", s.ip), "timeout_ms": 4000, "probes": probes})
}

async fn enroll(lab: &IsoLab, s: &mut Server, opts: &Options) -> Result<()> {
    let n = lab
        .api
        .post(
            "/v1/nodes",
            json!({
                "name": s.name,
                "driver": "ipmi",
                "network_interface": "neutron",
                // The only disk is under 4 GiB: named by its serial.
                "properties": {"root_device": {"serial": VDA_SERIAL}},
                "driver_info": {
                    "ipmi_address": "127.0.0.1",
                    "ipmi_port": s.bmc_port,
                    "ipmi_username": bmc::USER,
                    "ipmi_password": bmc::PASSWORD,
                    "kernel_append_params": opts.network.kernel_append_params(0, crate::machine::Arch::X86_64.console()),
                    "fast_track": true,
                },
            }),
        )
        .await?;
    s.uuid = n["uuid"].as_str().context("node uuid")?.to_owned();
    lab.api
        .post(
            "/v1/ports",
            json!({"address": s.mac, "node_uuid": s.uuid, "pxe_enabled": true,
                   "local_link_connection": {"switch_id": "52:54:00:00:00:fe",
                                             "port_id": s.tap, "switch_info": SWITCH}}),
        )
        .await?;
    lab.api.provision(&s.uuid, "manage", json!({})).await?;
    Ok(())
}

async fn deploy_request(lab: &IsoLab, s: &Server, instance: &str, probe: Value) -> Result<()> {
    lab.api
        .post(
            &format!("/v1/nodes/{}/vifs", s.uuid),
            json!({"id": s.tenant}),
        )
        .await?;
    lab.api
        .patch(
            &format!("/v1/nodes/{}", s.uuid),
            json!([
                {"op": "add", "path": "/instance_uuid", "value": instance},
                {"op": "add", "path": "/instance_info", "value": {
                    "image_source": lab.image_url,
                    "image_os_hash_algo": "sha256",
                    "image_os_hash_value": lab.image_sha256,
                    "image_disk_format": "raw",
                }},
            ]),
        )
        .await?;
    lab.api
        .provision(
            &s.uuid,
            "active",
            json!({"configdrive": {
                "meta_data": {"uuid": instance, "hostname": s.name, "name": s.name,
                              "meta": {"ingot_probe": probe}},
            }}),
        )
        .await
}

fn image_gets(lab: &IsoLab) -> usize {
    std::fs::read_to_string(&lab.images_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" GET "))
        .count()
}

fn dhcp_answers(lab: &IsoLab, mac: &str) -> usize {
    std::fs::read_to_string(&lab.coordinator_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("DHCP: answered") && l.contains(mac))
        .count()
}

fn isolation_report(n: &Value) -> Vec<Value> {
    n["driver_internal_info"]["isolation_report"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn tag_str(sw: &Switch, port: &str) -> String {
    sw.tag(port).unwrap_or_else(|e| format!("unreadable ({e})"))
}

/// Records the probes a node's test image printed; `expect` maps a probe's
/// name to its expected outcome.
fn record_probes(
    r: &mut Run<'_>,
    step: &str,
    s: &Server,
    probes: &[Value],
    expect: &[(&str, bool)],
) {
    let from = format!("node {} ({}, {})", s.label, s.tenant, s.ip);
    for (name, want) in expect {
        match probes.iter().find(|p| p["name"] == *name) {
            Some(p) => {
                let to = format!("{name} ({})", p["to"].as_str().unwrap_or("?"));
                let observed = p["observed"].as_str().unwrap_or("?").to_owned();
                let detail = format!(
                    "test image probe ({}): {}",
                    p["kind"].as_str().unwrap_or("?"),
                    p["detail"].as_str().unwrap_or("")
                );
                r.entry(step, &from, &to, reached(*want), &observed, &detail);
            }
            None => r.entry(
                step,
                &from,
                name,
                reached(*want),
                "no probe line",
                "the test image printed no line for it",
            ),
        }
    }
}

/// The twin on `vlan` (a node's VLAN): DHCP, TFTP and HTTP to the
/// coordinator, each recorded against `want`.
fn twin_checks(
    r: &mut Run<'_>,
    lab: &IsoLab,
    step: &str,
    whose: &str,
    vlan: &str,
    want: bool,
) -> Result<()> {
    lab.sw
        .vsctl(&["set", "port", &lab.twin.port(), &format!("tag={vlan}")])?;
    let from = format!("twin on {whose}'s VLAN {vlan} ({TWIN_IP})");
    // The three at once (each waits up to 4 s when nothing answers).
    let (twin, port) = (&lab.twin, lab.api_port);
    let [dhcp, tftp, http] = std::thread::scope(|sc| {
        let d = sc.spawn(|| twin_dhcp(twin));
        let t = sc.spawn(|| twin_tftp(twin));
        let h = sc.spawn(|| twin_http(twin, port));
        [d, t, h].map(|j| j.join().unwrap_or((false, "probe panicked".into())))
    });
    let (ok, d) = dhcp;
    r.entry(
        step,
        &from,
        "coordinator DHCP",
        reached(want),
        reached(ok),
        &d,
    );
    let (ok, d) = tftp;
    r.entry(
        step,
        &from,
        &format!("coordinator TFTP ({BRIDGE_IP}:69)"),
        reached(want),
        reached(ok),
        &d,
    );
    let (ok, d) = http;
    r.entry(
        step,
        &from,
        &format!("coordinator API ({BRIDGE_IP}:{})", lab.api_port),
        reached(want),
        reached(ok),
        &d,
    );
    lab.sw.vsctl(&[
        "set",
        "port",
        &lab.twin.port(),
        &format!("tag={VLAN_QUARANTINE}"),
    ])?;
    Ok(())
}

async fn scenario(r: &mut Run<'_>, lab: &mut IsoLab, a: &mut Server, b: &mut Server) -> Result<()> {
    let timeout = r.opts.phase_timeout;
    let api = &lab.api;

    // Enroll and manage both.
    let t = Instant::now();
    r.say("── enroll A and B (network_interface neutron, fast track, port on the switch)");
    enroll(lab, a, r.opts).await?;
    enroll(lab, b, r.opts).await?;
    let mut states = vec![];
    wait(api, &a.uuid, "manageable", timeout, &mut states, |_| {}).await?;
    wait(api, &b.uuid, "manageable", timeout, &mut states, |_| {}).await?;
    r.phase("enroll", t, states);

    // Node B: provide, deploy into tenant B.
    let t = Instant::now();
    r.say("── node B: provide (cleaning), deploy into tenant B");
    let mut states = vec![];
    api.provision(&b.uuid, "provide", json!({})).await?;
    wait(api, &b.uuid, "available", timeout, &mut states, |_| {}).await?;
    let b_probe = probe_spec(
        b,
        json!([
            {"name": "tenant-b host", "kind": "tcp", "to": format!("{HOST_B_IP}:7")},
            {"name": "tenant-a host", "kind": "tcp", "to": format!("{HOST_A_IP}:7")},
        ]),
    );
    deploy_request(lab, b, &uuid::Uuid::new_v4().to_string(), b_probe).await?;
    wait(api, &b.uuid, "active", timeout, &mut states, |_| {}).await?;
    let tag = tag_str(&lab.sw, b.tap);
    r.entry(
        "B active",
        "switch",
        &format!("port {} (node B)", b.tap),
        &VLAN_TENANT_B.to_string(),
        &tag,
        "ovs-vsctl get port tag, after active",
    );
    r.phase("node B: provide, deploy", t, states);

    // Node A: provide; the coordinator is reachable from its VLAN.
    let t = Instant::now();
    r.say("── node A: provide (cleaning)");
    let mut states = vec![];
    let dhcp_before = dhcp_answers(lab, a.mac);
    api.provision(&a.uuid, "provide", json!({})).await?;
    let n = wait(api, &a.uuid, "clean wait", timeout, &mut states, |_| {}).await;
    // `clean wait` may pass quickly; what matters is the port's VLAN now.
    if let Err(e) = &n {
        r.say(&format!("  (clean wait not seen: {e:#})"));
    }
    let vlan = lab
        .sw
        .vlan(a.tap)
        .map(|v| v.to_string())
        .unwrap_or_else(|| tag_str(&lab.sw, a.tap));
    r.entry(
        "A cleaning",
        "switch",
        &format!("port {} (node A)", a.tap),
        &VLAN_PROVISIONING.to_string(),
        &vlan,
        "ovs-vsctl get port tag, in clean wait (cleaning network = provisioning)",
    );
    twin_checks(r, lab, "A cleaning", "node A", &vlan, true)?;
    let n = wait(api, &a.uuid, "available", timeout, &mut states, |_| {}).await?;
    let dhcp = dhcp_answers(lab, a.mac) - dhcp_before.min(dhcp_answers(lab, a.mac));
    r.entry(
        "A cleaning",
        "node A (agent ramdisk)",
        "coordinator DHCP",
        "reached",
        reached(dhcp > 0),
        &format!(
            "{dhcp} \"DHCP: answered\" lines for {} in coordinator.log",
            a.mac
        ),
    );
    let hb = n["driver_internal_info"]["agent_last_heartbeat"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    r.entry(
        "A cleaning",
        "node A (agent ramdisk)",
        "coordinator API (heartbeats)",
        "reached",
        reached(!hb.is_empty()),
        &format!("agent_last_heartbeat {hb}"),
    );
    r.phase("node A: provide", t, states);

    // Node A: deploy into tenant A.
    let t = Instant::now();
    r.say("── node A: deploy into tenant A");
    let mut states = vec![];
    let gets_before = image_gets(lab);
    let a_probe = probe_spec(
        a,
        json!([
            {"name": "coordinator API", "kind": "http", "to": format!("{BRIDGE_IP}:{}", lab.api_port)},
            {"name": "coordinator TFTP", "kind": "tftp", "to": format!("{BRIDGE_IP}:69"), "file": TFTP_FILE},
            {"name": "image store", "kind": "http", "to": format!("{BRIDGE_IP}:{}", lab.store_port)},
            {"name": "tenant-a host", "kind": "tcp", "to": format!("{HOST_A_IP}:7")},
            {"name": "tenant-b host", "kind": "tcp", "to": format!("{HOST_B_IP}:7")},
            {"name": "node B", "kind": "tcp", "to": format!("{}:7", b.ip)},
        ]),
    );
    deploy_request(lab, a, &uuid::Uuid::new_v4().to_string(), a_probe).await?;
    let mut during: Option<String> = None;
    let sw = &lab.sw;
    wait(api, &a.uuid, "active", timeout, &mut states, |n| {
        if during.is_none() && n["deploy_step"]["step"] == "write_image" {
            during = Some(tag_str(sw, a.tap));
        }
    })
    .await?;
    r.entry(
        "A deploy",
        "switch",
        &format!("port {} (node A)", a.tap),
        &VLAN_PROVISIONING.to_string(),
        during.as_deref().unwrap_or("not seen"),
        "ovs-vsctl get port tag while deploy_step was write_image",
    );
    let gets = image_gets(lab) - gets_before;
    r.entry(
        "A deploy",
        "node A (agent ramdisk)",
        &format!("image store HTTP ({BRIDGE_IP}:{})", lab.store_port),
        "reached",
        reached(gets > 0),
        &format!("{gets} GET lines in image-server.log during the deploy"),
    );
    let tag = tag_str(&lab.sw, a.tap);
    r.entry(
        "A active",
        "switch",
        &format!("port {} (node A)", a.tap),
        &VLAN_TENANT_A.to_string(),
        &tag,
        "ovs-vsctl get port tag, after active",
    );
    r.phase("node A: deploy", t, states);

    // Both instances' probes, and the host side.
    let t = Instant::now();
    r.say("── probes: node B's and node A's test images, the twin, arping");
    let pb = wait_probes(&b.console, timeout).await?;
    record_probes(
        r,
        "B active",
        b,
        &pb,
        &[("tenant-b host", true), ("tenant-a host", false)],
    );
    let pa = wait_probes(&a.console, timeout).await?;
    record_probes(
        r,
        "A active",
        a,
        &pa,
        &[
            ("coordinator API", false),
            ("coordinator TFTP", false),
            ("image store", false),
            ("tenant-a host", true),
            ("tenant-b host", false),
            ("node B", false),
        ],
    );
    let vlan_a = lab
        .sw
        .vlan(a.tap)
        .map(|v| v.to_string())
        .unwrap_or_else(|| tag_str(&lab.sw, a.tap));
    twin_checks(r, lab, "A active", "node A", &vlan_a, false)?;
    let pings = [
        (Some(&lab.host_a), "host-a (tenant-a)", a.ip, "node A", true),
        (
            Some(&lab.host_b),
            "host-b (tenant-b)",
            a.ip,
            "node A",
            false,
        ),
        (
            None,
            "coordinator (prov0, provisioning)",
            a.ip,
            "node A",
            false,
        ),
        (Some(&lab.host_b), "host-b (tenant-b)", b.ip, "node B", true),
        (
            Some(&lab.host_a),
            "host-a (tenant-a)",
            b.ip,
            "node B",
            false,
        ),
    ];
    // At once: each waits up to 3 s when nothing answers.
    let results: Vec<(bool, String)> = std::thread::scope(|sc| {
        let js: Vec<_> = pings
            .iter()
            .map(|(host, _, target, _, _)| sc.spawn(move || arping(*host, *target)))
            .collect();
        js.into_iter()
            .map(|j| j.join().unwrap_or((false, "arping panicked".into())))
            .collect()
    });
    for ((_, hname, target, tname, want), (ok, d)) in pings.into_iter().zip(results) {
        r.entry(
            "A active",
            hname,
            &format!("{tname} ({target})"),
            reached(want),
            reached(ok),
            &d,
        );
    }
    r.phase("probes", t, vec![]);

    // Drift: the tag changed behind the coordinator's back.
    let t = Instant::now();
    r.say("── drift: ovs-vsctl set port tapA tag=202");
    let before = isolation_report(&api.node(&a.uuid).await?).len();
    lab.sw
        .vsctl(&["set", "port", a.tap, &format!("tag={VLAN_TENANT_B}")])?;
    let changed = Instant::now();
    let limit = Duration::from_millis(SYNC_MS) + SYNC_SLACK;
    let mut back = None;
    while changed.elapsed() < limit * 3 {
        if lab.sw.vlan(a.tap) == Some(VLAN_TENANT_A) {
            back = Some(changed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let observed = match back {
        Some(d) if d <= limit => "corrected within one sync interval".to_owned(),
        Some(d) => format!("corrected after {} ms", d.as_millis()),
        None => format!("not corrected within {} ms", (limit * 3).as_millis()),
    };
    r.entry(
        "drift",
        "ovs-vsctl (behind the coordinator's back)",
        &format!("port {} tag {VLAN_TENANT_A} → {VLAN_TENANT_B}", a.tap),
        "corrected within one sync interval",
        &observed,
        &format!(
            "back on VLAN {VLAN_TENANT_A} after {} ms (interval {SYNC_MS} ms + {} ms for the pass)",
            back.map(|d| d.as_millis()).unwrap_or(0),
            SYNC_SLACK.as_millis()
        ),
    );
    let mut recorded = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorded.is_none() && Instant::now() < deadline {
        let rep = isolation_report(&api.node(&a.uuid).await?);
        recorded = rep
            .iter()
            .skip(before)
            .find(|e| e["reason"] == "drift")
            .cloned();
        if recorded.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let ok = recorded.as_ref().is_some_and(|e| {
        e["vlan_before"] == VLAN_TENANT_B
            && e["vlan_after"] == VLAN_TENANT_A
            && e["read_back"] == true
    });
    r.entry(
        "drift",
        "coordinator",
        "node A's isolation_report",
        "drift recorded (202 → 201, read back)",
        if ok {
            "drift recorded (202 → 201, read back)"
        } else {
            "not recorded"
        },
        &recorded.map(|e| e.to_string()).unwrap_or_default(),
    );
    r.phase("drift", t, vec![]);

    // Undeploy: back to the cleaning network; cleaning succeeds.
    let t = Instant::now();
    r.say("── node A: undeploy (cleaning)");
    let mut states = vec![];
    let before = isolation_report(&api.node(&a.uuid).await?).len();
    api.provision(&a.uuid, "deleted", json!({})).await?;
    let mut during: Option<String> = None;
    let n = wait(api, &a.uuid, "available", timeout, &mut states, |n| {
        if during.is_none()
            && (n["provision_state"] == "clean wait" || n["provision_state"] == "cleaning")
        {
            during = Some(tag_str(sw, a.tap));
        }
    })
    .await;
    r.entry(
        "A undeploy",
        "switch",
        &format!("port {} (node A)", a.tap),
        &VLAN_PROVISIONING.to_string(),
        during.as_deref().unwrap_or("not seen"),
        "ovs-vsctl get port tag while cleaning (cleaning network = provisioning)",
    );
    let ok = n.is_ok();
    r.entry(
        "A undeploy",
        "node A",
        "cleaning after undeploy",
        "available",
        if ok { "available" } else { "failed" },
        &n.as_ref()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_else(|| format!("states {}", states.join(" → "))),
    );
    let n = n?;
    let rep = isolation_report(&n);
    let e = rep.iter().skip(before).find(|e| e["reason"] == "cleaning");
    r.entry(
        "A undeploy",
        "coordinator",
        "node A's isolation_report",
        "cleaning recorded (201 → 100)",
        if e.is_some_and(|e| {
            e["vlan_before"] == VLAN_TENANT_A && e["vlan_after"] == VLAN_PROVISIONING
        }) {
            "cleaning recorded (201 → 100)"
        } else {
            "not recorded"
        },
        &e.map(Value::to_string).unwrap_or_default(),
    );
    r.phase("node A: undeploy", t, states);

    // Dead switch during deploy.
    let t = Instant::now();
    r.say("── node A: deploy with ovsdb-server stopped while the agent writes the image");
    let mut states = vec![];
    if !api.node(&a.uuid).await?["instance_uuid"].is_null() {
        api.patch(
            &format!("/v1/nodes/{}", a.uuid),
            json!([{"op": "remove", "path": "/instance_uuid"}]),
        )
        .await?;
    }
    deploy_request(
        lab,
        a,
        &uuid::Uuid::new_v4().to_string(),
        probe_spec(a, json!([])),
    )
    .await?;
    let mut killed = false;
    let deadline = Instant::now() + timeout;
    let n = loop {
        let n = api.node(&a.uuid).await?;
        let st = n["provision_state"].as_str().unwrap_or("").to_owned();
        if states.last() != Some(&st) {
            states.push(st.clone());
        }
        if !killed && n["deploy_step"]["step"] == "write_image" {
            lab.sw.stop_ovsdb();
            killed = true;
            r.say("  ovsdb-server stopped (SIGSTOP)");
        }
        if st == "deploy failed" || st == "active" {
            break n;
        }
        ensure!(
            Instant::now() < deadline,
            "node A still {st} after the switch died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let st = n["provision_state"].as_str().unwrap_or("").to_owned();
    let err = n["last_error"].as_str().unwrap_or("").to_owned();
    r.entry(
        "dead switch",
        "coordinator",
        "node A's deploy",
        "deploy failed",
        &st,
        &format!("ovsdb-server stopped at write_image: {killed}; last_error: {err}"),
    );
    let names = err.contains(SWITCH) && err.contains(a.tap);
    r.entry(
        "dead switch",
        "coordinator",
        "node A's last_error",
        "names the switch and port",
        if names {
            "names the switch and port"
        } else {
            "does not"
        },
        &err,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.node.powered() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    r.entry(
        "dead switch",
        "coordinator",
        "node A's power",
        "off",
        if a.node.powered() { "on" } else { "off" },
        "the BMC's QEMU process",
    );
    let rep = isolation_report(&api.node(&a.uuid).await?);
    let fc = rep
        .iter()
        .rev()
        .find(|e| e["reason"] == "fail-closed")
        .cloned();
    r.entry(
        "dead switch",
        "coordinator",
        "node A's isolation_report",
        "fail-closed recorded (not read back)",
        if fc
            .as_ref()
            .is_some_and(|e| e["read_back"] == false && e["switch_port"] == a.tap)
        {
            "fail-closed recorded (not read back)"
        } else {
            "not recorded"
        },
        &fc.map(|e| e.to_string()).unwrap_or_default(),
    );
    // The switch reboots: its pending requests die with it.
    lab.sw.kill_ovsdb();
    lab.sw.restart_ovsdb()?;
    let tag = tag_str(&lab.sw, a.tap);
    r.entry(
        "dead switch",
        "switch (ovsdb-server restarted)",
        &format!("port {} (node A)", a.tap),
        &format!("not {VLAN_TENANT_A}"),
        &if tag == VLAN_TENANT_A.to_string() {
            tag.clone()
        } else {
            format!("not {VLAN_TENANT_A}")
        },
        &format!("tag {tag} right after the restart"),
    );
    let limit = Instant::now() + Duration::from_millis(SYNC_MS * 3) + SYNC_SLACK;
    let mut q = lab.sw.vlan(a.tap);
    while q != Some(VLAN_QUARANTINE) && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        q = lab.sw.vlan(a.tap);
    }
    r.entry(
        "dead switch",
        "network sync",
        &format!("port {} (node A)", a.tap),
        &VLAN_QUARANTINE.to_string(),
        &q.map(|v| v.to_string())
            .unwrap_or_else(|| tag_str(&lab.sw, a.tap)),
        "quarantine VLAN once the switch is back",
    );
    r.phase("dead switch", t, states);
    Ok(())
}

/// Runs the isolation lab; writes `isolation.json` and `report.json`.
pub(crate) fn run(
    opts: &Options,
    progress: &Progress,
    rt: &tokio::runtime::Runtime,
) -> Result<Report> {
    let (mut lab, mut a, mut b) = setup(opts, progress, rt)?;
    let mut r = Run {
        opts,
        progress,
        started: Instant::now(),
        ev: Evidence {
            sync_interval_ms: SYNC_MS,
            vlans: json!({"provisioning (and cleaning)": VLAN_PROVISIONING, "quarantine": VLAN_QUARANTINE,
                          "tenant-a": VLAN_TENANT_A, "tenant-b": VLAN_TENANT_B}),
            ..Evidence::default()
        },
        report: Report::default(),
    };
    r.report.network = "l2 (Open vSwitch)".into();
    r.report.fast_track = true;
    let result = rt.block_on(scenario(&mut r, &mut lab, &mut a, &mut b));
    let mut reports = serde_json::Map::new();
    for s in [&a, &b] {
        if !s.uuid.is_empty() {
            if let Ok(n) = rt.block_on(lab.api.node(&s.uuid)) {
                reports.insert(s.label.to_owned(), Value::Array(isolation_report(&n)));
            }
        }
    }
    r.report.node_uuid = a.uuid.clone();
    drop(a);
    drop(b);
    let failed: Vec<String> =
        r.ev.entries
            .iter()
            .filter(|e| !e.passed)
            .map(|e| {
                format!(
                    "{}: {} → {}: expected {}, observed {}",
                    e.step, e.from, e.to, e.expected, e.observed
                )
            })
            .collect();
    r.ev.isolation_reports = Value::Object(reports);
    r.ev.seconds = r.started.elapsed().as_secs_f64();
    r.report.lifecycle_seconds = r.ev.seconds;
    let result = result.and_then(|()| {
        ensure!(
            failed.is_empty(),
            "{} isolation check(s) failed: {}",
            failed.len(),
            failed.join("; ")
        );
        Ok(())
    });
    r.ev.passed = result.is_ok();
    r.ev.error = result.as_ref().err().map(|e| format!("{e:#}"));
    r.report.passed = r.ev.passed;
    let w = &opts.workdir;
    std::fs::write(w.join("isolation.json"), serde_json::to_vec_pretty(&r.ev)?)?;
    std::fs::write(w.join("report.json"), serde_json::to_vec_pretty(&r.report)?)?;
    let summary = format!(
        "{} of {} isolation checks passed in {:.0} s",
        r.ev.entries.iter().filter(|e| e.passed).count(),
        r.ev.entries.len(),
        r.ev.seconds
    );
    std::fs::write(w.join("isolation-summary.txt"), format!("{summary}\n"))?;
    progress.say(&summary);
    drop(lab);
    result.map(|()| r.report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn reads_the_probe_lines_of_a_console_log() {
        let dir = std::env::temp_dir().join(format!("iso-probes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("console.log");
        std::fs::write(
            &log,
            "noise\r\n\x1b[0mINGOT-TEST-IMAGE probe {\"name\":\"tenant-a host\",\"observed\":\"reached\"}\r\n\
             INGOT-TEST-IMAGE probe {\"name\":\"node B\",\"observed\":\"unreached\"}\n",
        )
        .unwrap();
        let (done, p) = probe_lines(&log);
        assert!(!done);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1]["name"], "node B");
        std::fs::write(&log, "INGOT-TEST-IMAGE probes done\n").unwrap();
        assert!(probe_lines(&log).0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_coordinator_gets_the_switch_and_every_network() {
        let c = coordinator_config(Path::new("/w"), Path::new("/w/ovs/db.sock"));
        for want in [
            "interface = \"prov0\"",
            "unknown_macs = \"inspect\"",
            "address = \"unix:/w/ovs/db.sock\"",
            "[networks.tenant-a]\nvlan = 201",
            "[networks.tenant-b]\nvlan = 202",
            "quarantine = \"quarantine\"",
            "interval_ms = 2000",
        ] {
            assert!(c.contains(want), "{want} missing from:\n{c}");
        }
        let t: toml::Value = toml::from_str(&c).unwrap();
        assert_eq!(t["switches"]["fabric"]["driver"].as_str(), Some("ovsdb"));
    }
}

//! The lab's run: start everything, drive one node through its lifecycle via
//! the Ironic API, check the evidence, and write `report.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::api::Api;
use crate::bmc::{self, BmcPorts};
use crate::chassis::{NodeDir, NodeSpec};
use crate::checks;
use crate::console::Tail;
use crate::glance::{GlanceEvidence, GlanceServer};
use crate::machine::Arch;
use crate::proc::{self, Guard};
use crate::report::{Phase, ProgressSample, Report};
use crate::uefi::{self, Firmware};
use crate::{Artifacts, Network, fileserver};

/// The first server's PXE NIC's MAC (enrolled as the node's port).
pub const PXE_MAC: &str = "52:54:00:e2:e0:01";
/// The first server's second NIC's MAC (found by inspection).
pub const SECOND_MAC: &str = "52:54:00:e2:e0:02";

/// Server `index`'s (1, 2, …) PXE and second NIC's MACs: [`PXE_MAC`] and
/// [`SECOND_MAC`] for the first.
fn server_macs(index: u8) -> (String, String) {
    let base = index.saturating_sub(1).saturating_mul(0x10);
    (
        format!("52:54:00:e2:e0:{:02x}", base.saturating_add(1)),
        format!("52:54:00:e2:e0:{:02x}", base.saturating_add(2)),
    )
}
/// How long after the console log shows the boot marker its copy through the
/// coordinator's SOL console may lag (a later copy fails the run).
const SOL_GRACE: Duration = Duration::from_secs(20);
/// Disk sizes. The virtio disk is the root disk, chosen by a root device hint
/// (its serial): without the hint the NVMe disk would be chosen, as the only
/// one of at least 4 GiB. It is small because its secure wipe (discard, then
/// BLKZEROOUT, which the guest sends without "may unmap") makes QEMU allocate
/// every block of its file: the run needs that much free space on the host.
const VDA_BYTES: u64 = 2 << 30;
pub(crate) const VDA_SERIAL: &str = "INGOT-E2E-VDA";
/// The NVMe disk's Format punches holes, so its file stays sparse.
const NVME_BYTES: u64 = 6 << 30;
/// How fast the lab's image store serves a download when the run watches
/// the deploy's progress ([`watches_progress`]): a 64 MiB test image then
/// takes about 6 s to write, several agent heartbeats.
const IMAGE_RATE: u64 = 10 << 20;
/// The coordinator's `heartbeat_timeout` then: agents heartbeat every
/// 0.3–0.6 × this (1.5–3 s), and the node's `ingot_progress` moves with each.
const WATCHED_HEARTBEAT_TIMEOUT: u64 = 5;

/// True when the run checks that the node's `ingot_progress` moves during
/// the deploy: the image comes from the lab's store (not through the
/// coordinator's cache with TLS or Glance), with one coordinator.
fn watches_progress(opts: &Options) -> bool {
    !(opts.tls || opts.glance || opts.ha || opts.isolation)
}

/// Free space the run needs beside the root disk's file: the served image, the
/// console logs, the coordinator's database, with room to spare.
const SPACE_MARGIN: u64 = 1 << 30;

/// How a run is set up.
pub struct Options {
    /// Work directory (emptied first): `target/e2e`.
    pub workdir: PathBuf,
    /// The `ingot-coordinator` binary.
    pub coordinator: PathBuf,
    /// The `ingot-lab` binary (the BMC's chassis_control program).
    pub lab_bin: PathBuf,
    /// Ramdisk and image.
    pub artifacts: Artifacts,
    /// Print progress for a person (state changes, agent log lines).
    pub verbose: bool,
    /// Time allowed for each phase.
    pub phase_timeout: Duration,
    /// Enroll the node with `driver_info.fast_track`: the agent stays up
    /// after inspection and cleaning, and provide and deploy drive it without
    /// booting the ramdisk again (Ironic's fast track).
    pub fast_track: bool,
    /// TLS on every hop: the API serves HTTPS with a certificate of a lab
    /// CA, which the lab's client and the agent (`ingot.ca_b64=` from the
    /// iPXE script) verify; the agent serves its API with auto-TLS; the
    /// image comes from the coordinator's cache over HTTPS with a signed,
    /// per-node URL. Only iPXE's boot files stay plain HTTP, on the boot
    /// listener.
    pub tls: bool,
    /// The image from a real Glance (`coordinator/tests/glance/glance-lab.sh`):
    /// the test image is uploaded to it as `raw`, the coordinator is given
    /// its endpoint, and the deploy names the image by its UUID only, as
    /// Nova's Ironic driver does.
    pub glance: bool,
    /// The HA lab (issue 17): three coordinators on a private PostgreSQL
    /// cluster; the deploy's owner is killed (SIGKILL) while the agent writes
    /// the image, a second member during the cleaning after undeploy, and
    /// the per-node journal is checked for double ownership.
    pub ha: bool,
    /// A single-coordinator run's `report.json` whose deploy time is the
    /// HA run's baseline for the deploy with a kill.
    pub baseline: Option<PathBuf>,
    /// The isolation lab (issue 19): two servers whose provisioning NICs
    /// are ports of a private Open vSwitch the coordinator programs, tenant
    /// hosts in network namespaces, `isolation.json` (module `isolation`).
    pub isolation: bool,
    /// The provisioning network: a bridge in the lab's own network
    /// namespace with the coordinator's DHCP server, or QEMU's user network
    /// (the HA lab's three coordinators always use QEMU's user network).
    pub network: Network,
    /// The server's firmware: SeaBIOS, or OVMF with a variable store of
    /// its own (`--firmware uefi`: inspection must report `uefi`, the
    /// agent's NVRAM boot entry is read from the store, and cleaning must
    /// remove it).
    pub firmware: Firmware,
    /// The servers' architectures, one server each, driven one after the
    /// other by the same coordinator (empty: one x86_64 server). aarch64
    /// servers are always UEFI and need the L2 network.
    pub arches: Vec<Arch>,
}

/// What the TLS run proves about each hop, from the coordinator's own log
/// and cache (in `report.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TlsEvidence {
    /// The API listened with HTTPS only (the lab's client verified it
    /// with the lab CA).
    pub api: String,
    /// The agent looked up and heartbeated over HTTPS: it verified the
    /// coordinator's certificate with the CA from `ingot.ca_b64=`.
    pub agent_to_coordinator: String,
    /// The coordinator called the agent at an https:// URL (auto-TLS,
    /// pinned to the certificate the heartbeat sent).
    pub coordinator_to_agent: String,
    /// The image came from the coordinator's cache over HTTPS.
    pub image: String,
    /// The serial console (IPMI SOL behind the coordinator) spoke TLS.
    pub console: String,
}

/// Reads the evidence of the TLS run after its deploy.
fn tls_evidence(w: &Path) -> Result<TlsEvidence> {
    let log = std::fs::read_to_string(w.join("coordinator.log")).unwrap_or_default();
    let agent_url = log
        .lines()
        .filter_map(|l| l.split("agent_url=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .next_back()
        .map(|u| u.trim_matches('"').to_owned());
    let cached: Vec<String> = std::fs::read_dir(w.join("image-cache"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        !cached.is_empty(),
        "TLS run: the image cache is empty, so the agent did not download through the coordinator"
    );
    ensure!(
        !log.contains("TLS handshake failed"),
        "TLS run: the coordinator logged failed handshakes"
    );
    ensure!(
        log.contains("signed image download"),
        "TLS run: the coordinator served no signed image download"
    );
    ensure!(
        log.contains("console listening") && !log.contains("tls=false"),
        "TLS run: the console endpoint did not speak TLS"
    );
    let agent = agent_url.unwrap_or_default();
    ensure!(
        agent.starts_with("https://"),
        "TLS run: the agent's URL is {agent:?}, not https://"
    );
    Ok(TlsEvidence {
        api: "https only (plain HTTP only for /boot/* on the boot listener)".into(),
        agent_to_coordinator: "https, verified with the lab CA from ingot.ca_b64=".into(),
        coordinator_to_agent: agent,
        image: format!(
            "https, signed per-node URL to the cache ({})",
            cached.join(", ")
        ),
        console: "ssl://, verified with the lab CA, then the token".into(),
    })
}

/// The lab CA and the API's certificate (SANs 127.0.0.1, the guest's view
/// of the host 10.0.2.2 on slirp, the bridge's 10.77.0.1, localhost), as
/// PEM files in `dir`: (ca, cert, key).
fn lab_pki(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Ingot lab CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "10.0.2.2".to_owned(),
        crate::netns::BRIDGE_IP.to_string(),
        "localhost".to_owned(),
    ])?;
    let cert = params.signed_by(&key, &Issuer::new(ca, ca_key))?;
    let paths = (dir.join("ca.pem"), dir.join("api.crt"), dir.join("api.key"));
    std::fs::write(&paths.0, ca_cert.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// Prints progress lines with the time since the start.
pub(crate) struct Progress {
    start: Instant,
    verbose: bool,
    log: PathBuf,
}

impl Progress {
    pub(crate) fn say(&self, msg: &str) {
        let line = format!("[{:>6.1}s] {msg}", self.start.elapsed().as_secs_f64());
        proc::append_line(&self.log, &line);
        if self.verbose {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// Agent console lines worth showing a person.
fn interesting(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "image",
        "wipe",
        "erase",
        "written",
        "dhcp",
        "lookup",
        "config drive",
        "INGOT-TEST-IMAGE",
    ]
    .iter()
    .any(|k| l.contains(&k.to_ascii_lowercase()))
}

/// Glance in a `--glance` run: the server, the uploaded test image, and the
/// evidence gathered so far.
struct LabGlance {
    server: GlanceServer,
    evidence: GlanceEvidence,
}

/// Starts Glance in `<workdir>/glance` on a free port (its venv made first
/// when missing), uploads the test image as `raw` and checks Glance's record
/// of it.
fn start_glance(
    w: &Path,
    image: &Path,
    progress: &Progress,
    rt: &tokio::runtime::Runtime,
) -> Result<LabGlance> {
    let log = w.join("glance-lab.log");
    progress.say("Glance: making its venv when missing (about 45 s the first time)");
    let venv_seconds = GlanceServer::venv(&log)?;
    let t = Instant::now();
    let server = GlanceServer::start(&w.join("glance"), proc::free_tcp_port()?, &log)?;
    let start_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let image_id = server.upload(image, "ingot-e2e-test-image")?;
    let upload_seconds = t.elapsed().as_secs_f64();
    let sha512 = crate::glance::sha512_file(image)?;
    let url = format!("{}/v2/images/{image_id}", server.endpoint());
    let full: Value = rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
        Ok(serde_json::from_slice(&resp.bytes().await?)?)
    })?;
    let record: serde_json::Map<String, Value> = [
        "status",
        "disk_format",
        "container_format",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
    ]
    .iter()
    .filter_map(|k| full.get(*k).map(|v| ((*k).to_owned(), v.clone())))
    .collect();
    ensure!(
        full["status"] == "active"
            && full["os_hash_algo"] == "sha512"
            && full["os_hash_value"] == sha512.as_str(),
        "Glance's record of the test image is not active with its SHA-512 ({sha512}): {full}"
    );
    progress.say(&format!(
        "Glance: {} (pid {}; venv {venv_seconds:.1} s, start {start_seconds:.1} s); \
         test image uploaded as {image_id} (raw, {upload_seconds:.1} s)",
        server.endpoint(),
        server.pid
    ));
    let evidence = GlanceEvidence {
        endpoint: server.endpoint(),
        image_id,
        venv_seconds,
        start_seconds,
        upload_seconds,
        record: Value::Object(record),
        sha512,
        ..GlanceEvidence::default()
    };
    Ok(LabGlance { server, evidence })
}

/// Reads the evidence of the Glance run after its deploy into `e`: the
/// node's image keys, Glance's access log, the coordinator's log, the lab's
/// image store's log.
async fn glance_evidence(w: &Path, lab: &Lab, g: &LabGlance, uuid: &str, e: &mut GlanceEvidence) {
    if let Ok(n) = lab.api.get(&format!("/v1/nodes/{uuid}")).await {
        let ii = &n["instance_info"];
        let keys = [
            "image_source",
            "image_checksum",
            "image_os_hash_algo",
            "image_os_hash_value",
            "image_disk_format",
            "image_container_format",
            "image_size",
            "image_url",
        ];
        e.instance_info_after = Value::Object(
            keys.iter()
                .filter_map(|k| ii.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect(),
        );
    }
    e.glance_file_downloads = crate::glance::file_downloads(&g.server.glance_log(), &e.image_id);
    let log = std::fs::read_to_string(w.join("coordinator.log")).unwrap_or_default();
    let file = format!("/v2/images/{}/file", e.image_id);
    e.coordinator_cached = log
        .lines()
        .filter(|l| l.contains("image cached") && l.contains(&file))
        .map(|l| l.trim().to_owned())
        .collect();
    e.agent_downloads = log
        .lines()
        .filter(|l| l.contains("signed image download"))
        .count();
    e.image_store_requests = std::fs::read_to_string(w.join("image-server.log"))
        .unwrap_or_default()
        .lines()
        .count();
}

/// Checks the Glance evidence: the node's hash came from Glance (SHA-512),
/// Glance served the file exactly once, to the coordinator, which cached it
/// once; the agent got it from the coordinator, and the lab's own image
/// store served nothing.
fn check_glance(e: &GlanceEvidence) -> Result<()> {
    let ii = &e.instance_info_after;
    ensure!(
        ii["image_source"] == e.image_id.as_str(),
        "Glance run: instance_info.image_source is {}, not the image id {}",
        ii["image_source"],
        e.image_id
    );
    ensure!(
        ii["image_os_hash_algo"] == "sha512"
            && ii["image_os_hash_value"] == e.sha512.as_str()
            && ii["image_checksum"] == e.record["checksum"]
            && ii["image_disk_format"] == "raw",
        "Glance run: the node's instance_info does not carry Glance's sha512, checksum and raw format: {ii}"
    );
    ensure!(
        e.glance_file_downloads.len() == 1,
        "Glance run: Glance's log shows {} downloads of the image's file, want exactly one: {:?}",
        e.glance_file_downloads.len(),
        e.glance_file_downloads
    );
    ensure!(
        e.coordinator_cached.len() == 1,
        "Glance run: the coordinator's log shows {} cachings of the Glance image, want one: {:?}",
        e.coordinator_cached.len(),
        e.coordinator_cached
    );
    ensure!(
        e.agent_downloads >= 1,
        "Glance run: the agent did not download the image from the coordinator's signed URL"
    );
    ensure!(
        e.image_store_requests == 0,
        "Glance run: the lab's own image store got {} requests; the image should come from Glance",
        e.image_store_requests
    );
    Ok(())
}

/// The running lab: processes are stopped when it is dropped (the servers
/// first: their QEMU is not our child, so it is powered off by hand).
pub(crate) struct Lab {
    /// The server being driven.
    pub(crate) srv: Server,
    /// Servers driven before it, kept powered off with their BMCs up (the
    /// coordinator still manages their nodes).
    retired: Vec<Server>,
    /// The coordinator (None in the HA lab, whose members are in `ha`).
    _coordinator: Option<Guard>,
    pub(crate) api: Api,
    /// The lab CA of a TLS run (the console speaks TLS too).
    ca_pem: Option<Vec<u8>>,
    /// Glance, in a `--glance` run (stopped after the coordinator).
    glance: Option<LabGlance>,
    /// The HA lab's members and database.
    pub(crate) ha: Option<crate::ha::HaLab>,
    /// The coordinator's `GET /metrics` (not in the HA lab).
    metrics_url: Option<String>,
    /// The image store's directory and port, and its host as the guest
    /// sees it.
    images: PathBuf,
    store_port: u16,
    image_host: std::net::Ipv4Addr,
    /// iPXE's first script on slirp.
    tftp: PathBuf,
}

/// One server: its QEMU command lines, BMC, console and disks.
pub(crate) struct Server {
    /// Its directory (`node1`, …): QEMU's command lines, pid, boot device.
    pub(crate) node: NodeDir,
    _bmc: Guard,
    /// `node1`, `node2`: the directory's and the files' names.
    pub(crate) name: String,
    pub(crate) arch: Arch,
    /// SeaBIOS or OVMF for x86_64; aarch64 is always UEFI.
    pub(crate) firmware: Firmware,
    pub(crate) pxe_mac: String,
    pub(crate) second_mac: String,
    pub(crate) console: PathBuf,
    sol_console: PathBuf,
    disks: Vec<PathBuf>,
    pub(crate) image_url: String,
    pub(crate) image_sha256: String,
    /// The BMC's IPMI LAN port (UDP, 127.0.0.1).
    pub(crate) bmc_port: u16,
    /// The host port forwarded to the agent's :9999.
    pub(crate) agent_forward: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The BMC's QEMU is not our child: power it off by hand.
        self.node.power_off();
    }
}

/// Fails early, with the numbers, when the work directory's file system has
/// less free space than a run needs (it would fail in the middle otherwise).
fn check_free_space(opts: &Options) -> Result<()> {
    let dir = &opts.workdir;
    let need = VDA_BYTES * (u64::try_from(arches(opts).len())?) + SPACE_MARGIN;
    let free = proc::free_bytes(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    ensure!(
        free >= need,
        "the lab needs {} MiB free in {} (the root disk's file fills up when it is wiped), only {} MiB are",
        need >> 20,
        dir.display(),
        free >> 20
    );
    Ok(())
}

fn sparse_file(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::File::create(path)?;
    f.set_len(len)?;
    Ok(())
}

/// Host ports one QEMU process uses.
struct QemuPorts {
    /// ipmi_sim's system-interface channel.
    vm: u16,
    /// The serial relay's server side.
    serial: u16,
    /// The forward to the agent's :9999.
    agent_forward: u16,
}

/// What makes one server's QEMU command line.
struct QemuServer<'a> {
    node: &'a NodeDir,
    arch: Arch,
    firmware: Firmware,
    pxe_mac: &'a str,
    second_mac: &'a str,
    /// Its tap on the L2 bridge.
    tap: &'a str,
    console: &'a Path,
    disks: &'a [PathBuf],
}

fn qemu_argv(
    srv: &QemuServer<'_>,
    tftp: &Path,
    ports: &QemuPorts,
    pxe: bool,
    opts: &Options,
) -> Vec<String> {
    let (node, console, disks) = (srv.node, srv.console, srv.disks);
    let (pxe_mac, second_mac) = (srv.pxe_mac, srv.second_mac);
    let network = opts.network;
    let (nic_idx, disk_idx) = if pxe { (1, 2) } else { (2, 1) };
    let mut a: Vec<String> = [srv.arch.qemu(), "-name", "ingot-e2e-node"]
        .iter()
        .chain(srv.arch.machine_args())
        .chain(&["-m", "1024", "-smp", "1", "-display", "none", "-nodefaults"])
        .map(|s| (*s).to_owned())
        .collect();
    // OVMF or AAVMF: its code read-only, the node's own variable store
    // writable (it outlives this QEMU, as NVRAM does). On x86_64 the
    // provisioning NIC keeps QEMU's default ROM, efi-virtio.rom, whose EFI
    // iPXE driver OVMF loads; AAVMF's own PXE boots the arm64 server.
    if srv.firmware == Firmware::Uefi {
        a.extend(uefi::qemu_args(&node.0, srv.arch));
    }
    let mut push = |k: &str, v: String| {
        a.push(k.to_owned());
        a.push(v);
    };
    // The serial line goes to the lab's relay (and so to the BMC's SOL);
    // the log file keeps everything QEMU writes, connected or not.
    push(
        "-chardev",
        format!(
            "socket,id=ser0,host=127.0.0.1,port={},reconnect=1,logfile={},logappend=on",
            ports.serial,
            console.display()
        ),
    );
    push("-serial", "chardev:ser0".into());
    push(
        "-qmp",
        format!("unix:{},server=on,wait=off", node.qmp().display()),
    );
    // The BMC as the server sees it: a KCS interface wired to ipmi_sim
    // (x86_64 only: KCS sits on the ISA bus).
    if srv.arch.has_kcs() {
        push(
            "-chardev",
            format!(
                "socket,id=ipmi0,host=127.0.0.1,port={},reconnect=10",
                ports.vm
            ),
        );
        push("-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0".into());
        push("-device", "isa-ipmi-kcs,bmc=bmc0".into());
    }
    // Provisioning NIC: the tap on the lab's bridge; or slirp with its TFTP
    // server, the agent's API port forwarded to 127.0.0.1:<fwd>, which the
    // agent advertises.
    push(
        "-netdev",
        network.provisioning_netdev(srv.tap, tftp, ports.agent_forward),
    );
    push(
        "-device",
        format!(
            "virtio-net-pci,netdev=n0,mac={pxe_mac},bootindex={nic_idx}{}",
            // AAVMF's own virtio driver and PXE: no (x86) iPXE ROM.
            if srv.arch == Arch::X86_64 {
                ""
            } else {
                ",romfile="
            }
        ),
    );
    // A second NIC on its own isolated network, for inspection to find.
    push("-netdev", "user,id=n1,net=10.0.3.0/24,restrict=on".into());
    push(
        "-device",
        format!("virtio-net-pci,netdev=n1,mac={second_mac},romfile="),
    );
    if let [vda, nvme, ..] = disks {
        push(
            "-drive",
            format!(
                "file={},if=none,id=d0,format=raw,discard=unmap,detect-zeroes=unmap",
                vda.display()
            ),
        );
        push(
            "-device",
            format!("virtio-blk-pci,drive=d0,serial={VDA_SERIAL},bootindex={disk_idx}"),
        );
        push(
            "-drive",
            format!(
                "file={},if=none,id=d1,format=raw,discard=unmap,detect-zeroes=unmap",
                nvme.display()
            ),
        );
        push("-device", "nvme,drive=d1,serial=INGOTE2ENVME".into());
    }
    a
}

/// The servers' architectures in order (one x86_64 server by default).
pub(crate) fn arches(opts: &Options) -> Vec<Arch> {
    if opts.arches.is_empty() {
        vec![Arch::X86_64]
    } else {
        opts.arches.clone()
    }
}

fn setup(opts: &Options, progress: &Progress, rt: &tokio::runtime::Runtime) -> Result<Lab> {
    let w = &opts.workdir;
    let tftp = w.join("tftp");
    std::fs::create_dir_all(&tftp)?;
    let images = w.join("images");
    std::fs::create_dir_all(&images)?;

    // The image store.
    let served = images.join("test-image.raw");
    std::fs::copy(&opts.artifacts.image, &served).context("copying the test image")?;
    let image_sha256 = crate::sha256_file(&served)?;
    let store = fileserver::start(
        &images,
        &w.join("image-server.log"),
        opts.network.store_bind_ip(),
        watches_progress(opts).then_some(IMAGE_RATE),
    )?;
    let first_arch = arches(opts)[0];

    // Glance, with the test image in it (the lab's store then serves nothing).
    let glance = if opts.glance {
        Some(start_glance(w, &served, progress, rt)?)
    } else {
        None
    };

    // The coordinator: default configuration, a free port, the ramdisk;
    // with TLS, a configuration file for HTTPS, the boot listener, the CA
    // agents trust and the image cache; with Glance, its endpoint and the
    // image cache (Glance images are always cached and served to the agent).
    let mut coordinator = None;
    let mut ha = None;
    let mut metrics_url = None;
    let (api, ca_pem, base) = if opts.ha {
        let lab = crate::ha::HaLab::start(opts, progress)?;
        // iPXE's first script: each member in turn (a dead one is skipped).
        std::fs::write(tftp.join("boot.ipxe"), lab.chain_script())?;
        let api = Api::members(&lab.bases(), None)?;
        let base = lab.bases().join(", ");
        ha = Some(lab);
        (api, None, base)
    } else {
        let api_port = proc::free_tcp_port()?;
        let boot_port = if opts.tls {
            proc::free_tcp_port()?
        } else {
            api_port
        };
        let log = std::fs::File::create(w.join("coordinator.log"))?;
        let mut cmd = Command::new(&opts.coordinator);
        cmd.arg("serve");
        let mut ca_pem = None;
        // Top-level keys first (TOML), then the sections.
        let mut config = if watches_progress(opts) {
            format!("heartbeat_timeout = {WATCHED_HEARTBEAT_TIMEOUT}\n\n")
        } else {
            String::new()
        };
        config.push_str(&opts.network.coordinator_config());
        // Prometheus metrics, scraped once at the end.
        let metrics = format!("127.0.0.1:{}", proc::free_tcp_port()?);
        config.push_str(&format!("[metrics]\nlisten = \"{metrics}\"\n\n"));
        metrics_url = Some(format!("http://{metrics}/metrics"));
        let listen_ip = opts.network.listen_ip();
        let guest_host = opts.network.guest_host_ip();
        if opts.tls {
            let (ca, cert, key) = lab_pki(w)?;
            config.push_str(&format!(
            "[api]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\nboot_listen = \"{listen_ip}:{boot_port}\"\n\n\
             [boot]\nagent_ca_file = {ca:?}\n\n"
        ));
            ca_pem = Some(std::fs::read(&ca)?);
        }
        let scheme = if opts.tls { "https" } else { "http" };
        if opts.tls || glance.is_some() {
            // The coordinator as the agent reaches it (on slirp, 10.0.2.2 is
            // the host's loopback).
            config.push_str(&format!(
            "[images]\ncache_dir = {cache:?}\nurl = \"{scheme}://{guest_host}:{api_port}\"\nalways = {always}\n\n",
            cache = w.join("image-cache"),
            always = opts.tls,
        ));
        }
        if let Some(g) = &glance {
            config.push_str(&format!(
                "[glance]\nendpoint = \"{}\"\nauth_type = \"none\"\n\n",
                g.server.endpoint()
            ));
        }
        // More architectures: their ramdisks per `cpu_arch` (the first
        // server's are `[boot] kernel`/`initramfs`), and TFTP on the bridge
        // for firmware without iPXE (arm64 UEFI PXE fetches Debian's signed
        // network GRUB, then the kernel and ramdisk its `grub.cfg` names).
        for more in &opts.artifacts.more {
            config.push_str(&format!(
                "[boot.by_arch.{}]\nkernel = {:?}\ninitramfs = {:?}\nkernel_params = \"console={}\"\n\n",
                more.arch.name(),
                more.kernel,
                more.initramfs,
                more.arch.console()
            ));
        }
        if opts.network == Network::L2 && arches(opts).iter().any(|a| *a != Arch::X86_64) {
            config.push_str(&format!(
                "[tftp]\nenabled = true\nlisten = \"{listen_ip}:69\"\nroot = {:?}\n\n",
                tftp
            ));
        }
        if !config.is_empty() {
            let file = w.join("coordinator.toml");
            std::fs::write(&file, config)?;
            cmd.arg("--config").arg(&file);
        }
        let child = cmd
            .arg("--listen")
            .arg(format!("{listen_ip}:{api_port}"))
            .arg("--database")
            .arg(format!("sqlite://{}", w.join("coordinator.db").display()))
            .arg("--boot-kernel")
            .arg(&opts.artifacts.kernel)
            .arg("--boot-initramfs")
            .arg(&opts.artifacts.initramfs)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ingot-coordinator")?;
        coordinator = Some(Guard::new("ingot-coordinator", child));
        let base = format!("{scheme}://{listen_ip}:{api_port}");
        let api = Api::new(&base, ca_pem.as_deref())?;
        let ca_pem: Option<Vec<u8>> = ca_pem;

        // On slirp, iPXE's first script, served by QEMU's TFTP: ask the
        // coordinator (its boot listener, in plain HTTP, with TLS). On the
        // bridge the coordinator's DHCP server gives iPXE that URL itself.
        if opts.network == Network::Slirp {
            std::fs::write(
                tftp.join("boot.ipxe"),
                format!("#!ipxe\nchain http://{guest_host}:{boot_port}/boot/boot.ipxe\n"),
            )?;
        }
        (api, ca_pem, base)
    };

    // The first server.
    let image_host = if opts.tls {
        std::net::Ipv4Addr::LOCALHOST
    } else {
        opts.network.guest_host_ip()
    };
    let srv = start_server(
        opts,
        progress,
        &ServerPlace {
            tftp: &tftp,
            images: &images,
            store_port: store.port(),
            image_host,
        },
        1,
        first_arch,
        Some((served.clone(), image_sha256)),
    )?;

    if let Some(h) = &ha {
        h.wait_up(rt)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let rt_ok = loop {
        let Some(coordinator) = coordinator.as_mut() else {
            break true;
        };
        if let Some(st) = coordinator.exited() {
            bail!(
                "ingot-coordinator exited ({st}): {}",
                std::fs::read_to_string(w.join("coordinator.log")).unwrap_or_default()
            );
        }
        if rt.block_on(api.up()) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        rt_ok,
        "the coordinator did not answer on {base} within 30 s"
    );
    let mut features = vec![];
    if opts.tls {
        features.push("HTTPS with the lab CA, boot listener, image cache");
    }
    if glance.is_some() {
        features.push(if opts.tls {
            "Glance"
        } else {
            "Glance, image cache"
        });
    }
    if opts.network == Network::L2 {
        features.push("DHCP on the lab's bridge");
    }
    if features.is_empty() {
        features.push("default configuration");
    }
    if let Some(h) = &ha {
        progress.say(&format!(
            "coordinators: {} on PostgreSQL {} (heartbeat {} s, timeout {} s, ring refresh {} s)",
            base,
            h.database_url(),
            h.timing.heartbeat_interval,
            h.timing.heartbeat_timeout,
            h.timing.hash_ring_reset_interval
        ));
    } else {
        progress.say(&format!(
            "coordinator: {base} (SQLite, {})",
            features.join("; ")
        ));
    }
    Ok(Lab {
        srv,
        retired: vec![],
        _coordinator: coordinator,
        api,
        ca_pem,
        glance,
        ha,
        metrics_url,
        images,
        store_port: store.port(),
        image_host,
        tftp,
    })
}

/// Where a server's files come from.
struct ServerPlace<'a> {
    /// iPXE's first script on slirp.
    tftp: &'a Path,
    /// The image store's directory.
    images: &'a Path,
    store_port: u16,
    /// The image store's (or the coordinator's cache's) host as the guest
    /// sees it.
    image_host: std::net::Ipv4Addr,
}

impl Lab {
    /// Retires the server driven so far (powered off, its BMC kept up) and
    /// starts server `index` of `arch` on the same coordinator.
    pub(crate) fn next_server(
        &mut self,
        opts: &Options,
        progress: &Progress,
        index: u8,
        arch: Arch,
    ) -> Result<()> {
        let place = ServerPlace {
            tftp: &self.tftp,
            images: &self.images,
            store_port: self.store_port,
            image_host: self.image_host,
        };
        let next = start_server(opts, progress, &place, index, arch, None)?;
        let done = std::mem::replace(&mut self.srv, next);
        done.node.power_off();
        self.retired.push(done);
        Ok(())
    }
}

/// Starts server `index` (1, 2, …; `node<index>`): disks, console, boot
/// orders, its BMC. `served` is its test image already in the store with
/// its SHA-256, else its architecture's image is copied there.
fn start_server(
    opts: &Options,
    progress: &Progress,
    place: &ServerPlace<'_>,
    index: u8,
    arch: Arch,
    served: Option<(PathBuf, String)>,
) -> Result<Server> {
    let w = &opts.workdir;
    let name = format!("node{index}");
    let node = NodeDir(w.join(&name));
    std::fs::create_dir_all(&node.0)?;
    let (served, image_sha256) = match served {
        Some(s) => s,
        None => {
            let file = place
                .images
                .join(format!("test-image-{}-{name}.raw", arch.name()));
            std::fs::copy(opts.artifacts.image_for(arch), &file)
                .with_context(|| format!("copying the {} test image", arch.name()))?;
            let sha = crate::sha256_file(&file)?;
            (file, sha)
        }
    };
    let firmware = if arch.uefi_only() {
        Firmware::Uefi
    } else {
        opts.firmware
    };
    ensure!(
        !(arch.uefi_only() && opts.network != Network::L2),
        "an {} server needs the L2 network (the coordinator's DHCP and TFTP)",
        arch.name()
    );
    let tap = if index <= 1 {
        crate::netns::TAP.to_owned()
    } else {
        format!("tap{}", index - 1)
    };
    if index > 1 && opts.network == Network::L2 {
        crate::netns::add_tap(&tap)?;
    }
    let (pxe_mac, second_mac) = server_macs(index);
    // The server: disks, console, boot orders.
    let console = w.join(format!("{name}-console.log"));
    let disks = vec![
        w.join(format!("{name}-disk-vda.raw")),
        w.join(format!("{name}-disk-nvme.raw")),
    ];
    sparse_file(&disks[0], VDA_BYTES)?;
    sparse_file(&disks[1], NVME_BYTES)?;
    let relay = crate::serial::start()?;
    let ports = BmcPorts {
        lan: proc::free_udp_port()?,
        vm: proc::free_tcp_port()?,
        serial: relay.bmc_port,
    };
    let fwd = proc::free_tcp_port()?;
    let qp = QemuPorts {
        vm: ports.vm,
        serial: relay.server_port,
        agent_forward: fwd,
    };
    let q = QemuServer {
        node: &node,
        arch,
        firmware,
        pxe_mac: &pxe_mac,
        second_mac: &second_mac,
        tap: &tap,
        console: &console,
        disks: &disks,
    };
    let spec = NodeSpec {
        argv_pxe: qemu_argv(&q, place.tftp, &qp, true, opts),
        argv_disk: qemu_argv(&q, place.tftp, &qp, false, opts),
    };
    if firmware == Firmware::Uefi {
        let vars = uefi::make_vars(&node.0, arch)?;
        progress.say(&format!(
            "{name}: {} firmware {}, variable store {}",
            arch.name(),
            uefi::firmware_files(arch).0,
            vars.display()
        ));
    }

    std::fs::write(node.spec(), serde_json::to_vec_pretty(&spec)?)?;
    std::fs::write(node.bootdev(), "default")?;
    crate::console::timestamp_lines(&console, &w.join(format!("{name}-console.timed.log")));
    let bmc = bmc::start(&node.0, &opts.lab_bin, &ports)?;
    progress.say(&format!(
        "{name}: BMC ipmi_sim on udp 127.0.0.1:{} (chassis_control: ingot-lab)",
        ports.lan
    ));
    let file = served
        .file_name()
        .and_then(|f| f.to_str())
        .context("image file name")?;
    Ok(Server {
        node,
        _bmc: bmc,
        sol_console: w.join(format!("{name}-sol-console.log")),
        name,
        arch,
        firmware,
        pxe_mac,
        second_mac,
        console,
        disks,
        image_url: format!("http://{}:{}/{file}", place.image_host, place.store_port),
        image_sha256,
        bmc_port: ports.lan,
        agent_forward: fwd,
    })
}

/// The one runtime of a run: the API client's pooled connections belong to
/// the runtime that opened them, so set-up and lifecycle share it.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Checks the wipe report the coordinator stored on the node: a secure
/// cleaning whose every device ended verified.
fn secure_wipe_reported(r: &Value) -> Result<()> {
    ensure!(
        r["mode"] == "secure",
        "the stored clean_report is not from a secure wipe: {r}"
    );
    let devices: Vec<&Value> = r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["result"]["devices"].as_array())
        .flatten()
        .collect();
    ensure!(
        devices.len() >= 2,
        "the wipe report lists {} devices, want both disks: {r}",
        devices.len()
    );
    for d in devices {
        ensure!(
            d["status"] == "verified",
            "{} was not wiped and verified: status {}, error {}",
            d["path"],
            d["status"],
            d["error"]
        );
    }
    Ok(())
}

/// The deploy's `ingot_progress` as the node showed it: at least two
/// values of the image write, never going down, within the image's size.
fn check_progress(samples: &[ProgressSample]) -> Result<()> {
    let writes: Vec<&ProgressSample> = samples
        .iter()
        .filter(|s| s.step.ends_with("write_image"))
        .collect();
    ensure!(
        writes.len() >= 2,
        "the node showed {} ingot_progress value(s) of the image write, want at least 2 (a moving progress): {samples:?}",
        writes.len()
    );
    for w in writes.windows(2) {
        ensure!(
            w[1].bytes_done > w[0].bytes_done,
            "ingot_progress went from {} to {} bytes",
            w[0].bytes_done,
            w[1].bytes_done
        );
    }
    for s in &writes {
        if let (Some(total), Some(pct)) = (s.bytes_total, s.percent) {
            ensure!(
                s.bytes_done <= total && (0.0..=100.0).contains(&pct),
                "ingot_progress out of range: {s:?}"
            );
        }
    }
    Ok(())
}

/// The BMC's power-ons (chassis_control starting QEMU), in order: Unix time
/// and whether the server started from the network (the agent ramdisk).
fn power_ons(node: &NodeDir) -> Vec<(f64, bool)> {
    std::fs::read_to_string(node.events())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" power on: "))
        .filter_map(|l| {
            let t = l.split_whitespace().next()?.parse().ok()?;
            Some((t, l.ends_with(" boot pxe")))
        })
        .collect()
}

/// The Unix times at which the BMC powered the server on.
pub(crate) fn power_on_times(node: &NodeDir) -> Vec<f64> {
    power_ons(node).into_iter().map(|(t, _)| t).collect()
}

/// With fast track, a phase after inspection must not boot the ramdisk again.
fn ensure_fast_track(opts: &Options, lab: &Lab, since: f64, phase: &str) -> Result<()> {
    if !opts.fast_track {
        return Ok(());
    }
    let boots = power_ons(&lab.srv.node)
        .into_iter()
        .filter(|(t, pxe)| *pxe && *t >= since)
        .count();
    ensure!(
        boots == 0,
        "fast track: {phase} booted the agent ramdisk {boots} time(s) instead of driving the running agent"
    );
    Ok(())
}

/// Where `ingot-lab demo` builds the ramdisk and the test image, inside the
/// work directory; kept when a run empties the rest.
pub const BUILD_DIR: &str = "build";

/// Empties the work directory of a previous run (all but [`BUILD_DIR`]),
/// first powering off a server that run left on (QEMU runs in its own
/// process group, so a Ctrl-C that stopped the lab did not stop it).
fn empty_workdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // node2: the isolation lab's second server.
    for n in (1..10).map(|i| format!("node{i}")) {
        NodeDir(dir.join(n)).power_off();
    }
    // A Glance that run started runs in a session of its own.
    crate::glance::stop_left_over(&dir.join("glance"), &dir.join("glance-lab.log"));
    // So does the HA lab's PostgreSQL server (its directory is elsewhere).
    crate::ha::stop_left_over(dir);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() == BUILD_DIR {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("emptying {}", p.display()))?;
    }
    Ok(())
}

/// Runs the lab and returns its reports, one per server (also written to
/// `report.json`, then `report-node2.json`, …).
pub fn run(opts: &Options) -> Result<Vec<Report>> {
    ensure!(
        !(opts.ha && (opts.tls || opts.glance || opts.fast_track)),
        "the HA lab runs alone: no --tls, --glance or --fast-track with --ha"
    );
    ensure!(
        !(opts.isolation && (opts.ha || opts.tls || opts.glance || opts.network != Network::L2)),
        "the isolation lab runs alone, on the L2 network: no --ha, --tls, --glance or --network slirp with --isolation"
    );
    empty_workdir(&opts.workdir)?;
    check_free_space(opts)?;
    crate::interrupt::install(opts.workdir.clone());
    let progress = Progress {
        start: Instant::now(),
        verbose: opts.verbose,
        log: opts.workdir.join("progress.log"),
    };
    let rt = runtime()?;
    if opts.isolation {
        return crate::isolation::run(opts, &progress, &rt).map(|r| vec![r]).map_err(|e| {
            e.context(format!(
                "the isolation lab failed; evidence in {} (isolation.json, node1-console.log, node2-console.log, coordinator.log, ovs/)",
                opts.workdir.display()
            ))
        });
    }
    let arches = arches(opts);
    ensure!(
        arches == [Arch::X86_64] || !(opts.ha || opts.tls || opts.glance),
        "aarch64 or several servers (--arch) run without --ha, --tls or --glance"
    );
    ensure!(
        arches.len() < 10,
        "at most 9 servers (--arch), {} given",
        arches.len()
    );
    let mut lab = setup(opts, &progress, &rt)?;
    let mut reports: Vec<Report> = vec![];
    for (i, arch) in arches.iter().copied().enumerate() {
        let index = u8::try_from(i + 1)?;
        if index > 1 {
            progress.say(&format!(
                "══ server {index}: {} on the same coordinator",
                arch.name()
            ));
            lab.next_server(opts, &progress, index, arch)?;
        }
        let mut report = Report::default();
        let result = if opts.ha {
            rt.block_on(crate::ha::lifecycle(opts, &lab, &progress, &mut report))
        } else {
            rt.block_on(lifecycle(opts, &lab, &progress, &mut report, &reports))
        };
        report.passed = result.is_ok();
        // report.json for the first server, report-node2.json, … after it.
        let report_file = opts.workdir.join(if index == 1 {
            "report.json".to_owned()
        } else {
            format!("report-{}.json", lab.srv.name)
        });
        let written = serde_json::to_vec_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|json| Ok(std::fs::write(&report_file, json)?))
            .with_context(|| format!("writing {}", report_file.display()));
        // The lifecycle's own error comes first; then a report that was not written.
        if let Err(e) = result.and(written) {
            let name = lab.srv.name.clone();
            drop(lab);
            return Err(e.context(format!(
                "the lab failed on {name} ({}); evidence in {} ({name}-console.log, coordinator.log, {name}/)",
                arch.name(),
                opts.workdir.display()
            )));
        }
        reports.push(report);
    }
    drop(lab);
    Ok(reports)
}

/// One phase: runs `body`, timing it and recording the node's states and the
/// power-on → first-heartbeat time when the agent booted in it.
pub(crate) struct PhaseRun<'a> {
    lab: &'a Lab,
    progress: &'a Progress,
    tail: Tail,
    pub(crate) phase: Phase,
    pub(crate) started: Instant,
    pub(crate) started_unix: f64,
    last_heartbeat: String,
}

impl<'a> PhaseRun<'a> {
    pub(crate) fn new(lab: &'a Lab, progress: &'a Progress, name: &str) -> Self {
        progress.say(&format!("── {name}"));
        Self {
            lab,
            progress,
            tail: Tail::from_end(&lab.srv.console),
            phase: Phase {
                name: name.to_owned(),
                seconds: 0.0,
                states: vec![],
                power_on_to_heartbeat: None,
                progress: vec![],
            },
            started: Instant::now(),
            started_unix: proc::unix_now(),
            last_heartbeat: String::new(),
        }
    }

    /// Reports a node body seen while waiting.
    pub(crate) fn observe(&mut self, n: &Value) {
        let state = n["provision_state"].as_str().unwrap_or("?").to_owned();
        let power = n["power_state"].as_str().unwrap_or("?");
        if self.phase.states.last() != Some(&state) {
            self.progress.say(&format!("node: {state} (power {power})"));
            self.phase.states.push(state);
        }
        let at = self.started.elapsed().as_secs_f64();
        if let Some(p) = ProgressSample::from_node(n, at)
            && self.phase.progress.last().map(|l| l.bytes_done) != Some(p.bytes_done)
        {
            self.progress
                .say(&format!("node: ingot_progress {} {}", p.step, p.line()));
            self.phase.progress.push(p);
        }
        let hb = n["driver_internal_info"]["agent_last_heartbeat"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if !hb.is_empty() && hb != self.last_heartbeat {
            if !self.last_heartbeat.is_empty() || self.phase.power_on_to_heartbeat.is_none() {
                let now = proc::unix_now();
                let on = power_on_times(&self.lab.srv.node)
                    .into_iter()
                    .rfind(|t| *t >= self.started_unix && *t <= now);
                if let (Some(on), None) = (on, self.phase.power_on_to_heartbeat) {
                    let s = now - on;
                    self.phase.power_on_to_heartbeat = Some(s);
                    self.progress
                        .say(&format!("agent heartbeat, {s:.1} s after power on"));
                }
            }
            self.last_heartbeat = hb;
        }
        self.pump_console();
    }

    /// A progress line.
    pub(crate) fn say(&self, msg: &str) {
        self.progress.say(msg);
    }

    pub(crate) fn pump_console(&mut self) {
        for line in self.tail.lines() {
            if interesting(&line) {
                self.progress.say(&format!("  console: {}", line.trim()));
            }
        }
    }

    pub(crate) async fn wait(
        &mut self,
        node: &str,
        want: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let lab = self.lab;
        lab.api
            .wait_state(node, want, timeout, |n| self.observe(n))
            .await
    }

    pub(crate) fn finish(mut self, report: &mut Report) {
        self.pump_console();
        self.phase.seconds = self.started.elapsed().as_secs_f64();
        self.progress.say(&format!(
            "{} done in {:.1} s",
            self.phase.name, self.phase.seconds
        ));
        report.phases.push(self.phase);
    }
}

/// One server's lifecycle; `earlier` are the reports of the servers the
/// same coordinator drove before it (the `/metrics` check counts them too).
async fn lifecycle(
    opts: &Options,
    lab: &Lab,
    progress: &Progress,
    report: &mut Report,
    earlier: &[Report],
) -> Result<()> {
    let api = &lab.api;
    let t = opts.phase_timeout;
    let (bmc_port, fwd) = (lab.srv.bmc_port, lab.srv.agent_forward);

    // Enroll and manage.
    let mut ph = PhaseRun::new(lab, progress, "enroll");
    let node = api
        .post(
            "/v1/nodes",
            json!({
                "name": format!("e2e-{}", lab.srv.name.replace("node", "node-")),
                "driver": "ipmi",
                // The serial console over IPMI Serial-over-LAN.
                "console_interface": "ipmitool-socat",
                // Deploy to the virtio disk although it is under 4 GiB; the
                // inspection's local_gb follows the hint too.
                "properties": {"root_device": {"serial": VDA_SERIAL}},
                "driver_info": {
                    "ipmi_address": "127.0.0.1",
                    "ipmi_port": bmc_port,
                    "ipmi_username": bmc::USER,
                    "ipmi_password": bmc::PASSWORD,
                    // On slirp the agent sits behind QEMU's port forward.
                    "kernel_append_params": opts.network.kernel_append_params(fwd, lab.srv.arch.console()),
                    "fast_track": opts.fast_track,
                },
            }),
        )
        .await?;
    report.fast_track = opts.fast_track;
    report.network = opts.network.name().to_owned();
    report.firmware = lab.srv.firmware.name().to_owned();
    report.arch = lab.srv.arch;
    report.node_name = lab.srv.name.clone();
    let uuid = node["uuid"].as_str().context("node uuid")?.to_owned();
    report.node_uuid = uuid.clone();
    api.post(
        "/v1/ports",
        json!({"address": lab.srv.pxe_mac, "node_uuid": uuid, "pxe_enabled": true}),
    )
    .await?;
    api.provision(&uuid, "manage", json!({})).await?;
    ph.wait(&uuid, "manageable", t).await?;
    // The console through Ironic's console API: the lab stays attached for
    // the whole lifecycle and keeps what the server printed over SOL.
    api.put(
        &format!("/v1/nodes/{uuid}/states/console"),
        json!({"enabled": true}),
    )
    .await?;
    let c = api.get(&format!("/v1/nodes/{uuid}/states/console")).await?;
    let url = c["console_info"]["url"].as_str().context("console url")?;
    let token = c["console_info"]["token"]
        .as_str()
        .context("console token")?;
    crate::serial::console_client(url, token, &lab.srv.sol_console, lab.ca_pem.as_deref())?;
    progress.say(&format!(
        "console: {url} (IPMI Serial-over-LAN), kept in {}",
        lab.srv
            .sol_console
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("?")
    ));
    ph.finish(report);

    // Inspect.
    let mut ph = PhaseRun::new(lab, progress, "inspect");
    api.provision(&uuid, "inspect", json!({})).await?;
    let n = ph.wait(&uuid, "manageable", t).await?;
    report.properties = n["properties"].clone();
    let ports = api
        .get(&format!("/v1/ports?node={uuid}&fields=address"))
        .await?;
    report.ports = ports["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    progress.say(&format!(
        "inspected: cpus {} memory_mb {} local_gb {} cpu_arch {}; ports {:?}",
        n["properties"]["cpus"],
        n["properties"]["memory_mb"],
        n["properties"]["local_gb"],
        n["properties"]["cpu_arch"],
        report.ports
    ));
    let boot_mode = n["boot_mode"].as_str().unwrap_or("").to_owned();
    progress.say(&format!("inspected: boot_mode {boot_mode:?}"));
    let want_arch = lab.srv.arch.name();
    ensure!(
        n["properties"]["cpu_arch"] == want_arch,
        "inspection reported cpu_arch {}, the server is {want_arch}",
        n["properties"]["cpu_arch"]
    );
    if lab.srv.firmware == Firmware::Uefi {
        ensure!(
            boot_mode == "uefi",
            "inspection under OVMF reported boot_mode {:?}, not \"uefi\"",
            n["boot_mode"]
        );
        report.uefi = Some(crate::uefi::Evidence {
            inspected_boot_mode: boot_mode,
            ..Default::default()
        });
    }
    ensure!(
        report.ports.contains(&lab.srv.second_mac),
        "inspection did not create a port for the second NIC {}: {:?}",
        lab.srv.second_mac,
        report.ports
    );
    ensure!(
        n["properties"]["memory_mb"].as_u64().unwrap_or(0) > 0
            && n["properties"]["local_gb"].as_u64() == Some((VDA_BYTES >> 30) - 1),
        "inspection left properties incomplete: {}",
        n["properties"]
    );
    ph.finish(report);

    // Provide: automated cleaning with a metadata wipe.
    let mut ph = PhaseRun::new(lab, progress, "provide (clean)");
    api.provision(&uuid, "provide", json!({})).await?;
    ph.wait(&uuid, "available", t).await?;
    ensure_fast_track(opts, lab, ph.started_unix, "provide")?;
    ph.finish(report);

    // Deploy with a config drive.
    let instance = uuid::Uuid::new_v4().to_string();
    report.instance_uuid = instance.clone();
    let mut ph = PhaseRun::new(lab, progress, "deploy");
    let instance_info = match &lab.glance {
        // As Nova's Ironic driver: the image's UUID, nothing else; the
        // coordinator reads checksum, hash and formats from Glance.
        Some(g) => json!({"image_source": g.evidence.image_id}),
        None => json!({
            "image_source": lab.srv.image_url,
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": lab.srv.image_sha256,
            "image_disk_format": "raw",
        }),
    };
    if let Some(g) = &lab.glance {
        let mut e = g.evidence.clone();
        e.instance_info_given = instance_info.clone();
        report.glance = Some(e);
    }
    api.patch(
        &format!("/v1/nodes/{uuid}"),
        json!([
            {"op": "add", "path": "/instance_uuid", "value": instance},
            {"op": "add", "path": "/instance_info", "value": instance_info},
        ]),
    )
    .await?;
    api.provision(
        &uuid,
        "active",
        // meta_data.uuid is the instance's, as Nova sends it (Ironic and
        // Ingot default it to the node's UUID).
        json!({"configdrive": {
            "meta_data": {"uuid": instance, "hostname": "e2e-instance", "name": "e2e-instance"},
            "user_data": "#cloud-config\n",
        }}),
    )
    .await?;
    let waited = ph.wait(&uuid, "active", t).await;
    // The Glance evidence also when the deploy failed (it tells why).
    if let (Some(g), Some(e)) = (&lab.glance, report.glance.as_mut()) {
        glance_evidence(&opts.workdir, lab, g, &uuid, e).await;
    }
    waited?;
    ensure_fast_track(opts, lab, ph.started_unix, "deploy")?;
    if watches_progress(opts) {
        check_progress(&ph.phase.progress)?;
    }
    if let Some(u) = report.uefi.as_mut() {
        u.install_bootloader = uefi::installed_line(&opts.workdir.join("coordinator.log"))?;
        progress.say(&format!("UEFI: {}", u.install_bootloader));
    }
    if opts.tls {
        report.tls = Some(tls_evidence(&opts.workdir)?);
    }
    if let Some(e) = &report.glance {
        check_glance(e)?;
        progress.say(&format!(
            "Glance: image {} deployed by UUID; instance_info {} {} from Glance; \
             Glance served its file once: {}",
            e.image_id,
            e.instance_info_after["image_os_hash_algo"],
            e.instance_info_after["image_os_hash_value"]
                .as_str()
                .map(|v| format!("{}…", &v[..v.len().min(16)]))
                .unwrap_or_default(),
            e.glance_file_downloads.join(" | ")
        ));
    }
    ph.finish(report);

    // The server boots its new disk and prints the instance UUID.
    let mut ph = PhaseRun::new(lab, progress, "boot from disk");
    let want = format!("instance_uuid={instance}");
    let deadline = Instant::now() + t;
    let mut tail = Tail::from_end(&lab.srv.console);
    let mut all = String::new();
    // Lines printed before this phase started (fast guests) count too.
    if let Ok(text) = std::fs::read_to_string(&lab.srv.console) {
        all.push_str(&crate::console::strip_ansi(&text));
    }
    let mut on_file = false;
    let mut sol_grace: Option<Instant> = None;
    loop {
        for l in tail.lines() {
            all.push_str(&l);
            all.push('\n');
        }
        if !on_file {
            if let Some(line) = all
                .lines()
                .rev()
                .find(|l| l.contains("INGOT-TEST-IMAGE") && l.contains(&want))
            {
                report.boot_marker = line.trim().to_owned();
                progress.say(&format!("  console: {}", line.trim()));
                on_file = true;
            }
        }
        let sol = std::fs::read(&lab.srv.sol_console).unwrap_or_default();
        if on_file && String::from_utf8_lossy(&sol).contains(&want) {
            report.sol_console = true;
            progress.say("  the same line came through the SOL console");
            break;
        }
        // The SOL copy may lag the console log by SOL_GRACE.
        ensure!(
            !(on_file && sol_grace.get_or_insert_with(Instant::now).elapsed() > SOL_GRACE),
            "the deployed image printed {want} on the console log, but it did not come through the SOL console within {} s",
            SOL_GRACE.as_secs()
        );
        ensure!(
            Instant::now() < deadline,
            "the deployed image did not print {want} within {} s (console log: {on_file}; SOL console: false)",
            t.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let on = power_on_times(&lab.srv.node).last().copied();
    if let Some(on) = on {
        progress.say(&format!(
            "booted from disk {:.1} s after the BMC powered it on",
            proc::unix_now() - on
        ));
    }
    if let Some(u) = report.uefi.as_mut() {
        uefi::check_booted(u, &lab.srv.node.0, &all)?;
        for l in u.after_deploy.iter().chain(&u.firmware_boot_log) {
            progress.say(&format!("  UEFI: {l}"));
        }
    }
    ph.pump_console();
    ph.finish(report);

    // Undeploy with a secure wipe.
    let mut ph = PhaseRun::new(lab, progress, "undeploy (secure wipe)");
    api.patch(
        &format!("/v1/nodes/{uuid}"),
        json!([{"op": "add", "path": "/driver_info/ingot_secure_erase", "value": true}]),
    )
    .await?;
    api.provision(&uuid, "deleted", json!({})).await?;
    let n = ph.wait(&uuid, "available", t).await?;
    report.clean_report = n["driver_internal_info"]["clean_report"].clone();
    api.put(
        &format!("/v1/nodes/{uuid}/states/console"),
        json!({"enabled": false}),
    )
    .await?;
    ph.finish(report);

    // The host's checks.
    let ph = PhaseRun::new(lab, progress, "verify disks");
    if opts.fast_track {
        // Cleaning left the agent running for the next deploy: power off
        // through the API, as an operator would, so the disks are at rest.
        api.put(
            &format!("/v1/nodes/{uuid}/states/power"),
            json!({"target": "power off"}),
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.srv.node.powered() {
        ensure!(
            Instant::now() < deadline,
            "the server is still powered on 60 s after cleaning"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut bad = vec![];
    for d in &lab.srv.disks {
        let c = checks::check_disk(d)?;
        progress.say(&format!(
            "{}: {} GiB, {} MiB allocated, {} non-zero bytes, MBR {} GPT {}, blkid: {}",
            d.file_name().and_then(|f| f.to_str()).unwrap_or("?"),
            c.size >> 30,
            c.allocated >> 20,
            c.nonzero_bytes,
            c.mbr_signature,
            c.gpt_header,
            if c.blkid.is_empty() {
                "nothing"
            } else {
                &c.blkid
            }
        ));
        if !c.clean() {
            bad.push(c.path.clone());
        }
        report.disks.push(c);
    }
    ensure!(
        bad.is_empty(),
        "disks not clean after the secure wipe: {bad:?}"
    );
    if let Some(u) = report.uefi.as_mut() {
        uefi::check_cleaned(u, &lab.srv.node.0, &report.clean_report)?;
        progress.say(&format!(
            "UEFI: clean_uefi_nvram removed {}; the variable store now holds {}",
            u.removed_by_cleaning.join(", "),
            if u.after_cleaning.is_empty() {
                "no boot entries".to_owned()
            } else {
                u.after_cleaning.join(", ")
            }
        ));
    }
    secure_wipe_reported(&report.clean_report)?;
    ph.finish(report);
    report.lifecycle_seconds = report
        .phases
        .iter()
        .filter(|p| p.name != "verify disks")
        .map(|p| p.seconds)
        .sum();
    if let Some(url) = &lab.metrics_url {
        let m = crate::metrics::check(url, report, earlier).await?;
        progress.say(&format!(
            "/metrics agrees with the phase table: {}; {} heartbeats, {} lookups, {} API requests",
            m.phases
                .iter()
                .map(|(p, n, s)| format!("{p} {n}x {s:.1} s"))
                .collect::<Vec<_>>()
                .join(", "),
            m.heartbeats,
            m.lookups,
            m.api_requests
        ));
        report.metrics = Some(m);
    }
    let h = crate::history::check(&lab.api, &report.node_uuid).await?;
    progress.say(&format!(
        "node history: {} entries, states {}; {}",
        h.entries,
        h.states.join(" → "),
        h.write_image
    ));
    report.history = Some(h);
    Ok(())
}

//! `cargo xtask bench api --ironic`: the real OpenStack Ironic (PyPI
//! `ironic`, API and conductor in one `ironic` process, noauth, no message
//! bus, SQLite) on the same 10,000 nodes and 20,000 ports, for the same
//! calls (issue 21 item 5).
//!
//! The venv is `$INGOT_IRONIC_VENV`, else `target/venv-ironic`, made with
//! `pip install ironic==39.0.0` and the pins of `ironic-constraints.txt`
//! when missing. The schema is made by `ironic-dbsync create_schema`; the
//! rows are written with `sqlite3` in one transaction, in Ironic's own
//! columns (nodes, ports, node_traits, with the object versions Ironic 39
//! writes), because 30,000 `POST`s through its API would take longer than
//! the benchmark. Ironic's power sync is off, as the coordinator's is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::api::{Client, fake_node, local_link, mac, port_uuid};
use crate::util;

/// The pins that install Ironic 39.0.0 on Python 3.11 without a compiler.
const CONSTRAINTS: &str = include_str!("ironic-constraints.txt");

/// The Ironic release measured.
const IRONIC: &str = "ironic==39.0.0";

/// Object versions of Ironic 39 (`ironic/objects/{node,port,trait}.py`).
const NODE_VERSION: &str = "1.44";
const PORT_VERSION: &str = "1.16";
const TRAIT_VERSION: &str = "1.1";

/// The venv holding Ironic; made when missing.
pub(super) fn venv() -> Result<PathBuf> {
    if let Some(v) = std::env::var_os("INGOT_IRONIC_VENV") {
        let v = PathBuf::from(v);
        if !v.join("bin/ironic").exists() {
            bail!("INGOT_IRONIC_VENV={} has no bin/ironic", v.display());
        }
        return Ok(v);
    }
    let v = util::target_dir().join("venv-ironic");
    if v.join("bin/ironic").exists() {
        return Ok(v);
    }
    println!("\n==> making {} ({IRONIC} from PyPI)", v.display());
    util::run(Command::new("python3").args(["-m", "venv"]).arg(&v))?;
    let pins = util::target_dir().join("ironic-constraints.txt");
    std::fs::write(&pins, CONSTRAINTS)?;
    util::run(
        Command::new(v.join("bin/pip"))
            .args(["install", "-q", "-c"])
            .arg(&pins)
            .arg(IRONIC),
    )?;
    Ok(v)
}

/// The standalone configuration (the shared reference's, with the port,
/// the state directory and the periodic tasks of this benchmark).
fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]\nhost = ironic-bench\nauth_strategy = noauth\nrpc_transport = none\n\
         debug = false\nlog_file = {d}/ironic.log\nuse_stderr = false\nstate_path = {d}/state\n\
         tempdir = {d}/state/tmp\nenabled_hardware_types = fake-hardware\n\
         enabled_boot_interfaces = fake\nenabled_deploy_interfaces = fake,noop\n\
         enabled_power_interfaces = fake\nenabled_management_interfaces = fake,noop\n\
         enabled_inspect_interfaces = fake,no-inspect\nenabled_network_interfaces = noop\n\
         enabled_console_interfaces = fake,no-console\nenabled_raid_interfaces = fake,no-raid\n\
         enabled_rescue_interfaces = fake,no-rescue\nenabled_storage_interfaces = fake,noop\n\
         enabled_vendor_interfaces = fake,no-vendor\nenabled_bios_interfaces = fake,no-bios\n\
         enabled_firmware_interfaces = fake,no-firmware\ndefault_network_interface = noop\n\n\
         [api]\nhost_ip = 127.0.0.1\nport = {port}\npublic_endpoint = http://127.0.0.1:{port}\n\
         api_workers = 1\n\n\
         [conductor]\nautomated_clean = false\nsync_power_state_interval = -1\n\
         check_provision_state_interval = 600\n\n\
         [database]\nconnection = sqlite:///{d}/state/ironic.sqlite\n\n\
         [dhcp]\ndhcp_provider = none\n\n[oslo_concurrency]\nlock_path = {d}/state/locks\n\n\
         [deploy]\nhttp_root = {d}/state/httpboot\nhttp_url = http://127.0.0.1:1\n\n\
         [pxe]\ntftp_root = {d}/state/tftpboot\n"
    )
}

/// Ironic's `DATETIME` text for the benchmark's `created` time.
fn datetime(created: &str) -> String {
    created.trim_end_matches("+00:00").replacen('T', " ", 1)
}

fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The rows of node `i` (id `i + 1`), its trait and its two ports.
fn node_rows(i: usize, out: &mut String) {
    let f = fake_node(i);
    let id = i + 1;
    let created = text(&datetime(&f.created));
    let instance = f
        .instance_uuid
        .as_deref()
        .map_or_else(|| "NULL".to_owned(), text);
    let _ = writeln!(
        out,
        "INSERT INTO nodes (id, uuid, name, instance_uuid, driver, provision_state, power_state, \
         resource_class, conductor_group, properties, driver_info, driver_internal_info, \
         instance_info, extra, clean_step, deploy_step, service_step, raid_config, \
         target_raid_config, network_data, maintenance, console_enabled, protected, retired, \
         disable_power_off, boot_interface, console_interface, deploy_interface, \
         inspect_interface, management_interface, network_interface, power_interface, \
         raid_interface, rescue_interface, storage_interface, vendor_interface, bios_interface, \
         firmware_interface, version, created_at, provision_updated_at) VALUES \
         ({id}, {}, {}, {instance}, 'fake-hardware', {}, {}, {}, '', {}, {}, {}, {}, {}, '{{}}', \
         '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', 0, 0, 0, 0, 0, 'fake', 'fake', 'fake', 'fake', \
         'fake', 'noop', 'fake', 'fake', 'fake', 'fake', 'fake', 'fake', 'fake', \
         '{NODE_VERSION}', {created}, {created});",
        text(&f.uuid),
        text(&f.name),
        text(f.state),
        text(f.power),
        text(f.resource_class),
        text(&f.properties),
        text(&f.driver_info),
        text(&f.driver_internal_info),
        text(&f.instance_info),
        text(&f.extra),
    );
    for t in &f.traits {
        let _ = writeln!(
            out,
            "INSERT INTO node_traits (node_id, trait, version, created_at) VALUES \
             ({id}, {}, '{TRAIT_VERSION}', {created});",
            text(t)
        );
    }
    for k in 0..2 {
        let _ = writeln!(
            out,
            "INSERT INTO ports (id, uuid, address, node_id, extra, local_link_connection, \
             pxe_enabled, internal_info, is_smartnic, available_for_dynamic_portgroup, version, \
             created_at) VALUES ({}, {}, {}, {id}, '{{}}', {}, {}, '{{}}', 0, 1, \
             '{PORT_VERSION}', {created});",
            i * 2 + k + 1,
            text(&port_uuid(i, k)),
            text(&mac(i, k)),
            text(&local_link(i, k)),
            u8::from(k == 0),
        );
    }
}

/// The `ironic` process group; killed on drop (the all-in-one process
/// forks a worker).
pub(super) struct Ironic {
    pub child: Child,
    /// The API's port.
    pub port: u16,
    /// Its log.
    pub log: PathBuf,
}

impl Drop for Ironic {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.wait();
    }
}

/// Makes the schema, loads `nodes` nodes (and two ports each), starts
/// Ironic and waits until its API answers and its conductor has registered.
pub(super) fn start(venv: &Path, dir: &Path, nodes: usize) -> Result<Ironic> {
    for sub in [
        "state/tmp",
        "state/locks",
        "state/httpboot",
        "state/tftpboot",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let port = util::free_port()?;
    let conf = dir.join("ironic.conf");
    std::fs::write(&conf, config(dir, port))?;
    let t = Instant::now();
    util::output(
        Command::new(venv.join("bin/ironic-dbsync"))
            .arg("--config-file")
            .arg(&conf)
            .arg("create_schema"),
    )?;
    println!("Ironic's schema made in {:.1} s", t.elapsed().as_secs_f64());
    let mut sql = String::from("BEGIN;\n");
    for i in 0..nodes {
        node_rows(i, &mut sql);
    }
    sql.push_str("COMMIT;\n");
    let file = dir.join("load.sql");
    std::fs::write(&file, sql)?;
    let t = Instant::now();
    util::output(
        Command::new("sqlite3")
            .arg(dir.join("state/ironic.sqlite"))
            .arg(format!(".read {}", file.display())),
    )?;
    println!(
        "inserted {nodes} nodes and {} ports into Ironic's database in {:.1} s",
        nodes * 2,
        t.elapsed().as_secs_f64()
    );
    let log = dir.join("ironic.stdout");
    let mut cmd = Command::new(venv.join("bin/ironic"));
    cmd.arg("--config-file").arg(&conf);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    util::announce(&cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::from(std::fs::File::create(
            dir.join("ironic.stderr"),
        )?))
        .spawn()
        .context("starting ironic")?;
    let mut ironic = Ironic {
        child,
        port,
        log: dir.join("ironic.log"),
    };
    let t = Instant::now();
    let deadline = t + Duration::from_secs(180);
    loop {
        if let Some(st) = ironic.child.try_wait()? {
            bail!("ironic exited: {st}; see {}", ironic.log.display());
        }
        if Instant::now() > deadline {
            bail!(
                "Ironic did not list fake-hardware within 180 s; see {}",
                ironic.log.display()
            );
        }
        let ready = Client::connect(port)
            .and_then(|mut c| c.get("/v1/drivers"))
            .is_ok_and(|(status, body)| {
                status == 200 && String::from_utf8_lossy(&body).contains("fake-hardware")
            });
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "Ironic answers {:.1} s after start",
        t.elapsed().as_secs_f64()
    );
    Ok(ironic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quote_and_date_like_ironic() {
        let mut s = String::new();
        node_rows(5, &mut s);
        assert_eq!(s.lines().count(), 4);
        assert!(s.contains("'2026-01-01 00:00:00.000005'"));
        assert!(s.contains("'CUSTOM_RACK_5'"));
        assert_eq!(text("a'b"), "'a''b'");
    }
}

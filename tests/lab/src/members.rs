//! The HA lab's coordinators: members of one group on one PostgreSQL
//! database, each with its own configuration file, port and log, started,
//! and killed with SIGKILL by the scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proc::{self, Guard};

/// How the members are configured: fast liveness, so a kill is noticed in
/// seconds (Ironic's `[conductor]` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Timing {
    /// Seconds between a member's heartbeats in the database.
    pub heartbeat_interval: u64,
    /// Seconds without a heartbeat after which a member counts as dead.
    pub heartbeat_timeout: u64,
    /// Seconds between hash ring refreshes.
    pub hash_ring_reset_interval: u64,
}

/// The lab's timing (issue 17: heartbeat 1 s, timeout 5 s, ring 2 s).
pub const LAB_TIMING: Timing = Timing {
    heartbeat_interval: 1,
    heartbeat_timeout: 5,
    hash_ring_reset_interval: 2,
};

/// One member as the lab sees it.
pub struct Member {
    /// Its `conductor_name` (the hostname in `GET /v1/conductors`).
    pub name: String,
    /// Its API port on 127.0.0.1 (10.0.2.2 from the guest).
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    /// The process (None once killed).
    guard: Option<Guard>,
    /// When it was killed (Unix seconds).
    pub killed_at: Option<f64>,
}

impl Member {
    /// `http://127.0.0.1:<port>`, the lab's view.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether its process still runs.
    pub fn running(&mut self) -> bool {
        match &mut self.guard {
            Some(g) => g.exited().is_none(),
            None => false,
        }
    }

    /// SIGKILL, as a crash or a pulled plug would: no handover. Returns
    /// the Unix time taken just before the signal.
    pub fn kill(&mut self) -> Result<f64> {
        let g = self
            .guard
            .as_mut()
            .with_context(|| format!("{} is not running", self.name))?;
        let pid = g.id().context("no pid")?;
        let pid = i32::try_from(pid)?;
        let at = proc::unix_now();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            bail!(
                "kill -9 {pid} ({}): {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        // Reaped by the guard.
        self.guard = None;
        self.killed_at = Some(at);
        Ok(at)
    }
}

/// The configuration file of member `name`.
pub fn config_toml(
    name: &str,
    port: u16,
    database: &str,
    timing: Timing,
    kernel: &Path,
    initramfs: &Path,
) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\n\
         database = \"{database}\"\n\
         conductor_name = \"{name}\"\n\
         conductor_group = \"\"\n\
         \n\
         [conductor]\n\
         heartbeat_interval = {hb}\n\
         heartbeat_timeout = {to}\n\
         hash_ring_reset_interval = {ring}\n\
         \n\
         [boot]\n\
         # What agents call on this member (10.0.2.2: the host as the guest sees it).\n\
         api_url = \"http://10.0.2.2:{port}\"\n\
         kernel = {kernel:?}\n\
         initramfs = {initramfs:?}\n\
         \n\
         [power_sync]\n\
         interval_ms = 10000\n",
        hb = timing.heartbeat_interval,
        to = timing.heartbeat_timeout,
        ring = timing.hash_ring_reset_interval,
    )
}

/// iPXE's first script (QEMU's TFTP): chain to each member's boot script in
/// turn, so a dead member is skipped.
pub fn chain_script(ports: &[u16]) -> String {
    let chains: Vec<String> = ports
        .iter()
        .map(|p| format!("chain http://10.0.2.2:{p}/boot/boot.ipxe"))
        .collect();
    format!("#!ipxe\n{}\n", chains.join(" || "))
}

/// Starts members `c1`..`cN` on free ports, configured in `workdir`
/// (`coordinator-cN.toml`, log `coordinator-cN.log`), all on `database`.
pub fn start(
    n: usize,
    workdir: &Path,
    coordinator: &Path,
    database: &str,
    timing: Timing,
    kernel: &Path,
    initramfs: &Path,
) -> Result<Vec<Member>> {
    let mut members = Vec::with_capacity(n);
    for i in 1..=n {
        let name = format!("c{i}");
        let port = proc::free_tcp_port()?;
        let config = workdir.join(format!("coordinator-{name}.toml"));
        std::fs::write(
            &config,
            config_toml(&name, port, database, timing, kernel, initramfs),
        )?;
        let log_path = workdir.join(format!("coordinator-{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(coordinator)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting ingot-coordinator {name}"))?;
        members.push(Member {
            name: name.clone(),
            port,
            log: log_path,
            guard: Some(Guard::new(&format!("ingot-coordinator {name}"), child)),
            killed_at: None,
        });
    }
    Ok(members)
}

/// Waits until every member answers `GET /v1` (fails at once if one exits).
pub fn wait_up(
    members: &mut [Member],
    rt: &tokio::runtime::Runtime,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    for m in members.iter_mut() {
        let api = crate::api::Api::new(&m.base(), None)?;
        loop {
            if !m.running() {
                bail!(
                    "ingot-coordinator {} exited: {}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                );
            }
            if rt.block_on(api.up()) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "ingot-coordinator {} did not answer on {} within {} s",
                    m.name,
                    m.base(),
                    within.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_to_every_member_in_turn() {
        assert_eq!(
            chain_script(&[6385, 6386, 6387]),
            "#!ipxe\nchain http://10.0.2.2:6385/boot/boot.ipxe || \
             chain http://10.0.2.2:6386/boot/boot.ipxe || \
             chain http://10.0.2.2:6387/boot/boot.ipxe\n"
        );
        assert_eq!(
            chain_script(&[1]),
            "#!ipxe\nchain http://10.0.2.2:1/boot/boot.ipxe\n"
        );
    }

    #[test]
    fn member_configuration() {
        let t = config_toml(
            "c2",
            4242,
            "postgres://postgres@127.0.0.1:5555/ingot",
            LAB_TIMING,
            Path::new("/b/vmlinuz"),
            Path::new("/b/initramfs.img"),
        );
        let v: toml::Value = toml::from_str(&t).expect("valid TOML");
        assert_eq!(v["listen"].as_str(), Some("127.0.0.1:4242"));
        assert_eq!(
            v["database"].as_str(),
            Some("postgres://postgres@127.0.0.1:5555/ingot")
        );
        assert_eq!(v["conductor_name"].as_str(), Some("c2"));
        assert_eq!(v["conductor"]["heartbeat_interval"].as_integer(), Some(1));
        assert_eq!(v["conductor"]["heartbeat_timeout"].as_integer(), Some(5));
        assert_eq!(
            v["conductor"]["hash_ring_reset_interval"].as_integer(),
            Some(2)
        );
        assert_eq!(v["boot"]["api_url"].as_str(), Some("http://10.0.2.2:4242"));
        assert_eq!(v["boot"]["kernel"].as_str(), Some("/b/vmlinuz"));
        assert_eq!(v["boot"]["initramfs"].as_str(), Some("/b/initramfs.img"));
    }
}

//! A private PostgreSQL cluster for the test process: Debian's server
//! binaries (`/usr/lib/postgresql/<v>/bin`), `initdb` into a temporary
//! directory (as the `postgres` user when running as root), `pg_ctl start`
//! on a free loopback port with trust authentication. One cluster per test
//! binary; one database per test. A watchdog shell stops the cluster and
//! removes its directory once the test process has exited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sqlx::Connection;

struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn cmd(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        let mut c = self.cmd("pg_ctl");
        c.arg("-D").arg(self.dir.join("data")).args(args);
        c.output()
    }

    /// `pg_ctl start` on `self.port`, waiting until it accepts connections.
    fn start_server(&self) -> std::io::Result<std::process::Output> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.pg_ctl(&[
            "-o",
            &opts,
            "-l",
            &self.dir.join("log").display().to_string(),
            "-w",
            "start",
        ])
    }
}

fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn start_cluster() -> Result<Cluster, String> {
    let bin = find_bin().ok_or("PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package postgresql)")?;
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    };
    let dir = std::env::temp_dir().join(format!("ingot-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if root {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("chown to postgres failed (is there a postgres user?)".into());
        }
    }
    let port = super::free_port();
    let mut cluster = Cluster {
        dir: dir.clone(),
        bin,
        port,
        as_postgres: root,
    };
    let out = cluster
        .cmd("initdb")
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--no-sync",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The port was free when picked but the cluster binds it only after
    // initdb; another test may take it in between, so a failed start is
    // tried again on a new port.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = cluster.start_server().map_err(|e| e.to_string())?;
        if out.status.success() {
            break;
        }
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        if attempt >= 3 || !log.contains("could not bind") {
            return Err(format!(
                "pg_ctl start failed: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cluster.port = super::free_port();
    }
    // Statics are never dropped: a watchdog stops the cluster and removes it
    // when this test process is gone, however it ends.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas}{bin} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        runas = if root { "runuser -u postgres -- " } else { "" },
        bin = cluster.bin.join("pg_ctl").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the cluster watchdog: {e}"))?;
    Ok(cluster)
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A new empty database in the process's cluster; `None` (skip) when
/// PostgreSQL is not installed and skipping is allowed.
pub async fn database(name: &str) -> Option<String> {
    let cluster = CLUSTER.get_or_init(start_cluster);
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            if super::must_not_skip() {
                panic!("PostgreSQL is required (CI=true or INGOT_REQUIRE_PRIVILEGED=1): {e}");
            }
            eprintln!("SKIPPED: PostgreSQL not available: {e}");
            return None;
        }
    };
    sqlx::any::install_default_drivers();
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    let db = format!("{}_{}", name.replace('-', "_"), std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    Some(format!(
        "postgres://postgres@127.0.0.1:{}/{db}",
        cluster.port
    ))
}

fn running_cluster() -> &'static Cluster {
    match CLUSTER.get() {
        Some(Ok(c)) => c,
        _ => panic!("no PostgreSQL cluster running in this test process"),
    }
}

/// Stops the process's cluster as an outage would (`pg_ctl stop -m fast`:
/// sessions are ended with SQLSTATE 57P01, new connections are refused).
/// Every database of the test process goes with it.
pub fn stop() {
    let out = running_cluster()
        .pg_ctl(&["-m", "fast", "-w", "stop"])
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the process's cluster again after [`stop`], on the same port,
/// and waits until it accepts connections.
pub fn start() {
    let c = running_cluster();
    let out = c.start_server().unwrap();
    assert!(
        out.status.success(),
        "pg_ctl start: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
    );
}

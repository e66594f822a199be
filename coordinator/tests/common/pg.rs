//! A private PostgreSQL cluster for the test process (`ingot-pg-cluster`:
//! Debian's server binaries, trust authentication, a free loopback port).
//! One cluster per test binary, in the temporary directory; one database
//! per test. A watchdog shell stops the cluster and removes its directory
//! once the test process has exited (statics are never dropped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use ingot_pg_cluster::Cluster;

fn start_cluster() -> Result<Cluster, String> {
    let dir = std::env::temp_dir().join(format!("ingot-pg-{}", std::process::id()));
    let mut cluster = Cluster::start(&dir).map_err(|e| e.to_string())?;
    cluster
        .stop_when_process_exits()
        .map_err(|e| e.to_string())?;
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
    let db = format!(
        "{}_{}",
        name.replace('-', "_").to_ascii_lowercase(),
        std::process::id()
    );
    Some(cluster.create_db(&db).unwrap())
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
    running_cluster().stop().unwrap();
}

/// Starts the process's cluster again after [`stop`], on the same port,
/// and waits until it accepts connections.
pub fn start() {
    running_cluster().start_again().unwrap();
}

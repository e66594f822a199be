//! The real thing: a cluster from Debian's binaries (skipped when PostgreSQL
//! is not installed, unless CI=true or INGOT_REQUIRE_PRIVILEGED=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ingot_pg_cluster::{Cluster, Error};

fn must_not_skip() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("INGOT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// A directory the postgres user can reach (tempdir makes 0700 ones).
fn workdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn create_query_stop_start_drop() {
    if ingot_pg_cluster::find_bin().is_none() && !must_not_skip() {
        eprintln!("SKIPPED: PostgreSQL server binaries not installed");
        return;
    }
    let tmp = workdir();
    let dir = tmp.path().join("pg");
    let cluster = Cluster::start(&dir).unwrap();
    let url = cluster.create_db("lab_one").unwrap();
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/lab_one", cluster.port())
    );
    assert_eq!(cluster.url("lab_one"), url);
    cluster
        .psql(
            "lab_one",
            "CREATE TABLE t (a INT, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y')",
        )
        .unwrap();
    assert_eq!(
        cluster
            .psql("lab_one", "SELECT a, b FROM t ORDER BY a")
            .unwrap(),
        "1|x\n2|y\n"
    );
    // SQL errors are errors, with psql's message.
    match cluster.psql("lab_one", "SELECT * FROM missing") {
        Err(Error::Failed { detail, .. }) => assert!(detail.contains("missing"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cluster.create_db("Bad-Name"),
        Err(Error::BadName(_))
    ));

    // An outage: the server is gone, then back on the same port with its data.
    let port = cluster.port();
    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.psql("lab_one", "SELECT 1").is_err());
    cluster.start_again().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(
        cluster.psql("lab_one", "SELECT count(*) FROM t").unwrap(),
        "2\n"
    );
    cluster.crash().unwrap();
    cluster.start_again().unwrap();
    assert_eq!(
        cluster.psql("lab_one", "SELECT count(*) FROM t").unwrap(),
        "2\n"
    );

    // Creating it again drops the old one.
    cluster.create_db("lab_one").unwrap();
    assert_eq!(
        cluster
            .psql(
                "lab_one",
                "SELECT count(*) FROM pg_tables WHERE tablename = 't'"
            )
            .unwrap(),
        "0\n"
    );

    drop(cluster);
    assert!(!dir.exists(), "the directory is removed on drop");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server is stopped on drop"
    );
}

#[test]
fn replaces_a_cluster_left_by_a_killed_run() {
    if ingot_pg_cluster::find_bin().is_none() && !must_not_skip() {
        eprintln!("SKIPPED: PostgreSQL server binaries not installed");
        return;
    }
    let tmp = workdir();
    let dir = tmp.path().join("pg");
    let first = Cluster::start(&dir).unwrap();
    let old_port = first.port();
    // A killed run never drops its cluster.
    std::mem::forget(first);
    let second = Cluster::start(&dir).unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", old_port)).is_err() || second.port() == old_port,
        "the earlier server was stopped"
    );
    second.create_db("again").unwrap();

    // A directory with other content is refused, not removed.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep"), "x").unwrap();
    assert!(matches!(Cluster::start(&other), Err(Error::DirNotEmpty(_))));
    assert!(other.join("keep").exists());
}

#[test]
fn stops_a_left_over_server() {
    if ingot_pg_cluster::find_bin().is_none() && !must_not_skip() {
        eprintln!("SKIPPED: PostgreSQL server binaries not installed");
        return;
    }
    let tmp = workdir();
    let dir = tmp.path().join("pg");
    let c = Cluster::start(&dir).unwrap();
    let port = c.port();
    std::mem::forget(c);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    ingot_pg_cluster::stop_left_over(&dir);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(dir.join("data").exists(), "nothing is removed");
    // Nothing there: nothing to do.
    ingot_pg_cluster::stop_left_over(&tmp.path().join("none"));
}

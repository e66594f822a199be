//! Authentication and Ironic's default roles (issue 13): `http_basic` users
//! from a real htpasswd file (bcrypt), each given a role and a scope, run
//! the role matrix against a real coordinator: list, show, patch, provision,
//! power, console, drivers, delete, allocations and ports, for system
//! admin/member/reader, owner and lessee projects, an unrelated project and
//! a service user. Every answer is also checked for the BMC password.
//! The same matrix runs against a real Keystone in `keystone.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::roles::{PERSONAS, ProjectIds, SECRET, run_matrix, seed};
use common::{Backend, start_with, test_config, test_db};
use ingot_coordinator::config::{AuthStrategy, Config, UserScope};
use serde_json::{Value, json};

fn htpasswd(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("# ingot test users\n");
    for (user, _, _) in PERSONAS {
        let hash = bcrypt::hash(format!("pw-{user}"), 4).unwrap();
        // Apache's htpasswd -B writes $2y$; accept both spellings.
        let hash = if user == "sys-admin" {
            hash.replacen("$2b$", "$2y$", 1)
        } else {
            hash
        };
        text.push_str(&format!("{user}:{hash}\n"));
    }
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).unwrap();
    path
}

fn basic_config(db: &str, dir: &Path) -> Config {
    let mut cfg = test_config(db);
    cfg.auth.strategy = AuthStrategy::HttpBasic;
    cfg.auth.htpasswd_file = Some(htpasswd(dir));
    for (user, role, project) in PERSONAS {
        // sys-admin stays unlisted: http_basic users are admins, as in Ironic.
        if user == "sys-admin" {
            continue;
        }
        cfg.auth.users.insert(
            user.to_owned(),
            UserScope {
                roles: vec![role.to_owned()],
                project: project.map(str::to_owned),
                project_name: project.map(str::to_owned),
            },
        );
    }
    cfg
}

#[tokio::test]
async fn http_basic_role_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(Backend::Sqlite, "rbac").await.unwrap();
    let (running, anon) = start_with(basic_config(&db.url, dir.path())).await;

    // Without or with wrong credentials: 401 with a Basic challenge.
    let (st, v, h) = anon.raw("GET", "/v1/nodes", None).await;
    assert_eq!(st, 401, "{v}");
    assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let (st, _, _) = anon
        .with_basic("sys-admin", "wrong")
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(st, 401);
    let (st, _, _) = anon
        .with_basic("nobody", "pw-nobody")
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(st, 401);
    // The version documents and the ramdisk's endpoints stay public.
    assert_eq!(anon.raw("GET", "/v1", None).await.0, 200);
    assert_eq!(anon.raw("GET", "/", None).await.0, 200);
    let (st, _, _) = anon
        .raw("GET", "/v1/lookup?addresses=52:54:00:00:00:99", None)
        .await;
    assert_eq!(st, 404);

    let admin = anon.with_basic("sys-admin", "pw-sys-admin");
    let ids = ProjectIds::new();
    seed(&admin, &ids).await;
    run_matrix(&admin, &ids, |user| {
        let a = anon.with_basic(user, &format!("pw-{user}"));
        async move { a }
    })
    .await;

    // A project admin creates nodes owned by its project, never another's.
    let a_admin = anon.with_basic("a-admin", "pw-a-admin");
    let (st, v) = a_admin
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "mine"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["owner"], "tenant-a");
    let (st, v) = a_admin
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "theirs", "owner": "tenant-b"}),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    // A project member's allocation is its project's.
    let a_member = anon.with_basic("a-member", "pw-a-member");
    let (st, v) = a_member.get("/v1/allocations").await;
    assert_eq!(st, 200);
    let owners: Vec<&Value> = v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["owner"])
        .collect();
    assert!(owners.iter().all(|o| *o == "tenant-a"), "{v}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baremetal_cli_authenticates_with_http_basic() {
    let Some(venv) = common::venv::venv() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(Backend::Sqlite, "rbac_cli").await.unwrap();
    let (running, anon) = start_with(basic_config(&db.url, dir.path())).await;
    let admin = anon.with_basic("sys-admin", "pw-sys-admin");
    seed(&admin, &ProjectIds::new()).await;
    let run = |user: &str, args: &[&str]| {
        let out = std::process::Command::new(venv.join("bin/baremetal"))
            .args(args)
            .env("OS_AUTH_TYPE", "http_basic")
            .env("OS_USERNAME", user)
            .env("OS_PASSWORD", format!("pw-{user}"))
            .env("OS_ENDPOINT", &anon.base)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run("sys-admin", &["node", "list", "-f", "json"]);
    assert!(ok, "{out}{err}");
    let names: Vec<String> = serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{out}"))
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["node-a", "node-x"]);
    let (ok, out, err) = run("a-reader", &["node", "list", "-f", "json"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("node-a") && !out.contains("node-x"), "{out}");
    let (ok, out, err) = run("a-reader", &["node", "power", "on", "node-a"]);
    assert!(!ok, "a reader powered a node on: {out}");
    assert!(err.contains("403") || err.contains("denied"), "{err}");
    let (ok, out, err) = run("sys-admin", &["node", "show", "node-a", "-f", "json"]);
    assert!(ok, "{out}{err}");
    assert!(!out.contains(SECRET));
    let (ok, _, err) = {
        let out = std::process::Command::new(venv.join("bin/baremetal"))
            .args(["node", "list"])
            .env("OS_AUTH_TYPE", "http_basic")
            .env("OS_USERNAME", "sys-admin")
            .env("OS_PASSWORD", "wrong")
            .env("OS_ENDPOINT", &anon.base)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(!ok, "a wrong password was accepted");
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn noauth_is_refused_on_a_network_address() {
    let db = test_db(Backend::Sqlite, "noauth").await.unwrap();
    let mut cfg = test_config(&db.url);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let e = ingot_coordinator::server::start(
        cfg.clone(),
        ingot_coordinator::power::PowerDrivers::default(),
    )
    .await
    .expect_err("noauth started on 0.0.0.0");
    assert!(e.to_string().contains("noauth"), "{e}");
    cfg.auth.allow_noauth_on_network = true;
    let (running, _) = start_with(cfg).await;
    running.shutdown().await;
}

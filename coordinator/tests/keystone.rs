//! `[auth] strategy = keystone` against a real Keystone 30 from PyPI
//! (`tests/keystone/keystone-lab.sh`: SQLite, fernet tokens, on loopback):
//! the role matrix of `rbac.rs` with real tokens (system-scoped and
//! project-scoped, implied roles from Keystone), 401s for missing and
//! invalid tokens, and the real `baremetal` CLI with `auth_type: password`
//! finding the coordinator through Keystone's catalog.
//!
//! Without python3-venv or PyPI the test skips, unless `CI=true` or
//! `INGOT_REQUIRE_PRIVILEGED=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::roles::{PERSONAS, ProjectIds, SECRET, run_matrix, seed};
use common::{Backend, start_with, test_config, test_db};
use ingot_coordinator::config::AuthStrategy;
use serde_json::{Value, json};

/// A Keystone server of this test, stopped on drop.
struct Keystone {
    dir: tempfile::TempDir,
    port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keystone/keystone-lab.sh")
}

impl Keystone {
    /// Starts Keystone; `None` (skip) when it cannot run and skipping is allowed.
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        if !common::start_lab(&script(), dir.path(), port, "a real Keystone") {
            return None;
        }
        Some(Self { dir, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    /// Seeds users and projects; with `ironic`, the catalog's baremetal
    /// endpoint. Returns the seed's JSON.
    fn seed(&self, ironic: Option<&str>) -> Value {
        let mut cmd = Command::new(script());
        cmd.arg("seed")
            .arg(self.dir.path())
            .arg(self.port.to_string());
        if let Some(u) = ironic {
            cmd.arg("--ironic-url").arg(u);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "seed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A token of `user` (password `pw`), project- or system-scoped.
    async fn token(&self, user: &str, project: Option<&str>) -> String {
        let scope = match project {
            Some(p) => json!({"project": {"name": p, "domain": {"id": "default"}}}),
            None => json!({"system": {"all": true}}),
        };
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": "pw"}}},
            "scope": scope,
        }});
        let resp = reqwest::Client::new()
            .post(format!("{}/auth/tokens", self.url()))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "token of {user}");
        resp.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn ids_of(seed: &Value) -> ProjectIds {
    seed["projects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn keystone_config(db: &str, ks: &Keystone) -> ingot_coordinator::config::Config {
    let mut cfg = test_config(db);
    cfg.auth.strategy = AuthStrategy::Keystone;
    cfg.auth.keystone.auth_url = ks.url();
    cfg.auth.keystone.username = "ingot".into();
    cfg.auth.keystone.password = "ingot-secret".into();
    cfg.auth.keystone.project_name = "service".into();
    cfg
}

/// Runs `baremetal` with password authentication as `user`.
fn baremetal(
    venv: &Path,
    ks: &Keystone,
    user: &str,
    project: Option<&str>,
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = Command::new(venv.join("bin/baremetal"));
    cmd.args(args)
        .env("OS_AUTH_TYPE", "password")
        .env("OS_AUTH_URL", ks.url())
        .env("OS_USERNAME", user)
        .env("OS_PASSWORD", "pw")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_REGION_NAME", "RegionOne")
        .env("OS_INTERFACE", "public")
        .env_remove("OS_CLOUD")
        .env_remove("OS_ENDPOINT");
    match project {
        Some(p) => {
            cmd.env("OS_PROJECT_NAME", p)
                .env("OS_PROJECT_DOMAIN_NAME", "Default");
        }
        None => {
            cmd.env("OS_SYSTEM_SCOPE", "all");
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_role_matrix_and_the_cli() {
    let Some(venv) = common::venv::venv() else {
        return;
    };
    let Some(ks) = tokio::task::spawn_blocking(Keystone::start).await.unwrap() else {
        return;
    };
    let db = test_db(Backend::Sqlite, "keystone").await.unwrap();
    let (running, anon) = start_with(keystone_config(&db.url, &ks)).await;
    let base = anon.base.clone();
    let seeded = {
        let ks = &ks;
        tokio::task::block_in_place(|| ks.seed(Some(&base)))
    };
    let ids = ids_of(&seeded);

    // No token, a made-up one: 401 naming Keystone.
    let (st, v, h) = anon.raw("GET", "/v1/nodes", None).await;
    assert_eq!(st, 401, "{v}");
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Keystone uri="),
        "{h:?}"
    );
    let (st, _, _) = anon
        .with_header("X-Auth-Token", "gAAAAABnot-a-real-token")
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(st, 401);
    // The version documents stay public (openstacksdk reads / without a token).
    assert_eq!(anon.raw("GET", "/", None).await.0, 200);

    let admin_token = ks.token("sys-admin", None).await;
    let admin = anon.with_header("X-Auth-Token", &admin_token);
    seed(&admin, &ids).await;
    let mut tokens = std::collections::BTreeMap::new();
    for (user, _, project) in PERSONAS {
        tokens.insert(user, ks.token(user, project).await);
    }
    run_matrix(&admin, &ids, |user| {
        let a = anon.with_header("X-Auth-Token", &tokens[user]);
        async move { a }
    })
    .await;

    // The real CLI, through Keystone's catalog.
    let ks_ref = &ks;
    let venv_ref = &venv;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        baremetal(
            venv_ref,
            ks_ref,
            "sys-reader",
            None,
            &["node", "list", "-f", "json"],
        )
    });
    assert!(ok, "{out}{err}");
    assert!(out.contains("node-a") && out.contains("node-x"), "{out}");
    assert!(!out.contains(SECRET));
    let (ok, out, err) = tokio::task::block_in_place(|| {
        baremetal(
            venv_ref,
            ks_ref,
            "a-member",
            Some("tenant-a"),
            &["node", "list", "-f", "json"],
        )
    });
    assert!(ok, "{out}{err}");
    assert!(out.contains("node-a") && !out.contains("node-x"), "{out}");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        baremetal(
            venv_ref,
            ks_ref,
            "a-member",
            Some("tenant-a"),
            &["node", "power", "on", "node-a"],
        )
    });
    assert!(ok, "an owner member powers its node on: {out}{err}");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        baremetal(
            venv_ref,
            ks_ref,
            "sys-reader",
            None,
            &["node", "power", "off", "node-a"],
        )
    });
    assert!(!ok, "a reader powered a node off: {out}");
    assert!(err.contains("403") || err.contains("denied"), "{err}");
    running.shutdown().await;
}

//! Nova- and metalsmith-like calls through openstacksdk (the library Nova's
//! ironic driver and metalsmith use): allocation, VIFs, JSON patch, validate,
//! deploy with a config drive dict, node lookup by instance with a field
//! subset, power, undeploy, delete. The script is `tests/sdk_scenario.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::venv::venv;
use common::{Backend, start_with, test_config, test_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_scenario() {
    let Some(venv) = venv() else { return };
    let db = test_db(Backend::Sqlite, "sdk").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_scenario.py");
    let endpoint = api.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/python"))
            .arg(script)
            .arg(endpoint)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sdk scenario failed:\n{text}");
    assert!(text.contains("sdk scenario ok"), "{text}");
    running.shutdown().await;
}

//! Nova- and metalsmith-like calls through openstacksdk (the library Nova's
//! ironic driver and metalsmith use): allocation, VIFs, JSON patch, validate,
//! deploy with a config drive dict, node lookup by instance with a field
//! subset, power, undeploy, delete. The script is `tests/sdk_scenario.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::venv::{run_python, venv};
use common::{Backend, start_with, test_config, test_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_scenario() {
    let Some(venv) = venv() else { return };
    let db = test_db(Backend::Sqlite, "sdk").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    run_python(
        &venv,
        "sdk_scenario.py",
        vec![api.base.clone()],
        "sdk scenario ok",
    )
    .await;
    running.shutdown().await;
}

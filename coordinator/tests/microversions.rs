//! Ironic compatibility, issue 14 items 3 to 5: documents and requests as
//! Ironic 39 answers them at each microversion, the fields clients print,
//! and the behaviours real clients met. Every expected value here was
//! captured from a real Ironic 39.0.0 (standalone, fake-hardware) answering
//! the same request (`shared/reference/ironic-standalone.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Api, Backend, start_with, test_config, test_db};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// Node document keys per version (Ironic 39).
const NODE_KEYS: [(&str, &[&str]); 4] = [
    (
        "1.1",
        &[
            "chassis_uuid",
            "console_enabled",
            "created_at",
            "driver",
            "driver_info",
            "extra",
            "instance_info",
            "instance_uuid",
            "last_error",
            "links",
            "maintenance",
            "maintenance_reason",
            "ports",
            "power_state",
            "properties",
            "provision_state",
            "provision_updated_at",
            "reservation",
            "target_power_state",
            "target_provision_state",
            "updated_at",
            "uuid",
        ],
    ),
    (
        "1.31",
        &[
            "boot_interface",
            "chassis_uuid",
            "clean_step",
            "console_enabled",
            "console_interface",
            "created_at",
            "deploy_interface",
            "driver",
            "driver_info",
            "driver_internal_info",
            "extra",
            "inspect_interface",
            "inspection_finished_at",
            "inspection_started_at",
            "instance_info",
            "instance_uuid",
            "last_error",
            "links",
            "maintenance",
            "maintenance_reason",
            "management_interface",
            "name",
            "network_interface",
            "portgroups",
            "ports",
            "power_interface",
            "power_state",
            "properties",
            "provision_state",
            "provision_updated_at",
            "raid_config",
            "raid_interface",
            "reservation",
            "resource_class",
            "states",
            "target_power_state",
            "target_provision_state",
            "target_raid_config",
            "updated_at",
            "uuid",
            "vendor_interface",
        ],
    ),
    (
        "1.72",
        &[
            "allocation_uuid",
            "automated_clean",
            "bios_interface",
            "boot_interface",
            "chassis_uuid",
            "clean_step",
            "conductor",
            "conductor_group",
            "console_enabled",
            "console_interface",
            "created_at",
            "deploy_interface",
            "deploy_step",
            "description",
            "driver",
            "driver_info",
            "driver_internal_info",
            "extra",
            "fault",
            "inspect_interface",
            "inspection_finished_at",
            "inspection_started_at",
            "instance_info",
            "instance_uuid",
            "last_error",
            "lessee",
            "links",
            "maintenance",
            "maintenance_reason",
            "management_interface",
            "name",
            "network_data",
            "network_interface",
            "owner",
            "portgroups",
            "ports",
            "power_interface",
            "power_state",
            "properties",
            "protected",
            "protected_reason",
            "provision_state",
            "provision_updated_at",
            "raid_config",
            "raid_interface",
            "rescue_interface",
            "reservation",
            "resource_class",
            "retired",
            "retired_reason",
            "states",
            "storage_interface",
            "target_power_state",
            "target_provision_state",
            "target_raid_config",
            "traits",
            "updated_at",
            "uuid",
            "vendor_interface",
            "volume",
        ],
    ),
    (
        "latest",
        &[
            "allocation_uuid",
            "automated_clean",
            "bios_interface",
            "boot_interface",
            "boot_mode",
            "chassis_uuid",
            "clean_step",
            "conductor",
            "conductor_group",
            "console_enabled",
            "console_interface",
            "created_at",
            "deploy_interface",
            "deploy_step",
            "description",
            "disable_power_off",
            "driver",
            "driver_info",
            "driver_internal_info",
            "extra",
            "fault",
            "firmware_interface",
            "health",
            "inspect_interface",
            "inspection_finished_at",
            "inspection_started_at",
            "instance_info",
            "instance_name",
            "instance_uuid",
            "last_error",
            "lessee",
            "links",
            "maintenance",
            "maintenance_reason",
            "management_interface",
            "name",
            "network_data",
            "network_interface",
            "owner",
            "parent_node",
            "portgroups",
            "ports",
            "power_interface",
            "power_state",
            "properties",
            "protected",
            "protected_reason",
            "provision_state",
            "provision_updated_at",
            "raid_config",
            "raid_interface",
            "rescue_interface",
            "reservation",
            "resource_class",
            "retired",
            "retired_reason",
            "secure_boot",
            "service_step",
            "shard",
            "states",
            "storage_interface",
            "target_power_state",
            "target_provision_state",
            "target_raid_config",
            "traits",
            "updated_at",
            "uuid",
            "vendor_interface",
            "volume",
        ],
    ),
];

/// Port document keys per version (Ironic 39).
const PORT_KEYS: [(&str, &[&str]); 4] = [
    (
        "1.1",
        &[
            "address",
            "created_at",
            "extra",
            "links",
            "node_uuid",
            "updated_at",
            "uuid",
        ],
    ),
    (
        "1.31",
        &[
            "address",
            "created_at",
            "extra",
            "internal_info",
            "links",
            "local_link_connection",
            "node_uuid",
            "portgroup_uuid",
            "pxe_enabled",
            "updated_at",
            "uuid",
        ],
    ),
    (
        "1.72",
        &[
            "address",
            "created_at",
            "extra",
            "internal_info",
            "is_smartnic",
            "links",
            "local_link_connection",
            "node_uuid",
            "physical_network",
            "portgroup_uuid",
            "pxe_enabled",
            "updated_at",
            "uuid",
        ],
    ),
    (
        "latest",
        &[
            "address",
            "available_for_dynamic_portgroup",
            "category",
            "created_at",
            "description",
            "extra",
            "internal_info",
            "is_smartnic",
            "links",
            "local_link_connection",
            "name",
            "node_uuid",
            "physical_network",
            "portgroup_uuid",
            "pxe_enabled",
            "updated_at",
            "uuid",
            "vendor",
        ],
    ),
];

/// `/states` keys per version (Ironic 39).
const STATES_KEYS: [(&str, &[&str]); 3] = [
    (
        "1.1",
        &[
            "console_enabled",
            "last_error",
            "power_state",
            "provision_state",
            "provision_updated_at",
            "target_power_state",
            "target_provision_state",
        ],
    ),
    (
        "1.72",
        &[
            "console_enabled",
            "last_error",
            "power_state",
            "provision_state",
            "provision_updated_at",
            "raid_config",
            "target_power_state",
            "target_provision_state",
            "target_raid_config",
        ],
    ),
    (
        "latest",
        &[
            "boot_mode",
            "console_enabled",
            "last_error",
            "power_state",
            "provision_state",
            "provision_updated_at",
            "raid_config",
            "secure_boot",
            "target_power_state",
            "target_provision_state",
            "target_raid_config",
        ],
    ),
];

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn start(name: &str) -> (ingot_coordinator::server::Running, Api, common::TestDb) {
    let db = test_db(Backend::Sqlite, name).await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    (running, api, db)
}

#[tokio::test]
async fn documents_at_each_version() {
    let (running, api, _db) = start("microversions_docs").await;
    let (st, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "v1"}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    let uuid = n["uuid"].as_str().unwrap().to_owned();
    let (st, p) = api
        .post(
            "/v1/ports",
            json!({"node_uuid": uuid, "address": "52:54:00:aa:bb:01"}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let port = p["uuid"].as_str().unwrap().to_owned();
    for (version, want) in NODE_KEYS {
        let a = api.with_version(Some(version));
        let (st, doc) = a.get(&format!("/v1/nodes/{uuid}")).await;
        assert_eq!(st, 200);
        assert_eq!(keys(&doc), set(want), "node at {version}");
        // The detailed list shows the same document.
        if version != "1.1" {
            let (st, list) = a.get("/v1/nodes/detail").await;
            assert_eq!(st, 200);
            assert_eq!(
                keys(&list["nodes"][0]),
                set(want),
                "nodes/detail at {version}"
            );
        }
    }
    for (version, want) in PORT_KEYS {
        let (st, doc) = api
            .with_version(Some(version))
            .get(&format!("/v1/ports/{port}"))
            .await;
        assert_eq!(st, 200);
        assert_eq!(keys(&doc), set(want), "port at {version}");
    }
    for (version, want) in STATES_KEYS {
        let (st, doc) = api
            .with_version(Some(version))
            .get(&format!("/v1/nodes/{uuid}/states"))
            .await;
        assert_eq!(st, 200);
        assert_eq!(keys(&doc), set(want), "states at {version}");
    }
    // Driver documents: name, hosts, links at 1.1; type and interfaces from
    // 1.30, each interface from its own version.
    for (version, count) in [("1.1", 3), ("1.31", 23), ("1.72", 29), ("latest", 31)] {
        let (st, doc) = api
            .with_version(Some(version))
            .get("/v1/drivers/fake-hardware")
            .await;
        assert_eq!(st, 200);
        assert_eq!(
            doc.as_object().unwrap().len(),
            count,
            "driver at {version}: {doc}"
        );
    }
    // Allocations: owner from 1.60.
    let (st, a) = api
        .post("/v1/allocations", json!({"resource_class": "none-such"}))
        .await;
    assert_eq!(st, 201, "{a}");
    let au = a["uuid"].as_str().unwrap();
    let (_, at59) = api
        .with_version(Some("1.59"))
        .get(&format!("/v1/allocations/{au}"))
        .await;
    assert!(
        at59.get("owner").is_none() && at59.get("state").is_some(),
        "{at59}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn requests_at_old_versions() {
    let (running, api, _db) = start("microversions_requests").await;
    let v = |s: &str| api.with_version(Some(s));
    // Create: a field newer than the version is 406; an explicit null (or
    // "" for conductor_group) is no setting.
    for (version, body, want) in [
        ("1.1", json!({"driver": "fake-hardware", "name": "x"}), 406),
        (
            "1.1",
            json!({"driver": "fake-hardware", "resource_class": "gold"}),
            406,
        ),
        (
            "1.30",
            json!({"driver": "fake-hardware", "deploy_interface": "fake"}),
            406,
        ),
        (
            "1.50",
            json!({"driver": "fake-hardware", "description": "d"}),
            406,
        ),
        (
            "1.31",
            json!({"driver": "fake-hardware", "deploy_interface": "fake"}),
            201,
        ),
        (
            "1.1",
            json!({"driver": "fake-hardware", "name": null, "conductor_group": ""}),
            201,
        ),
    ] {
        let (st, doc) = v(version).post("/v1/nodes", body.clone()).await;
        assert_eq!(st, want, "{version} {body}: {doc}");
    }
    // Created at 1.1 (before 1.11) a node is available, which 1.1 calls null.
    let (st, doc) = v("1.1")
        .post("/v1/nodes", json!({"driver": "fake-hardware"}))
        .await;
    assert_eq!(st, 201);
    assert_eq!(doc["provision_state"], Value::Null, "{doc}");
    let old = doc["uuid"].as_str().unwrap().to_owned();
    assert_eq!(api.node(&old).await["provision_state"], "available");

    let (_, n) = api
        .post(
            "/v1/nodes",
            json!({"driver": "fake-hardware", "name": "named"}),
        )
        .await;
    let uuid = n["uuid"].as_str().unwrap().to_owned();
    let (_, p) = api
        .post(
            "/v1/ports",
            json!({"node_uuid": uuid, "address": "52:54:00:aa:bb:02"}),
        )
        .await;
    let port = p["uuid"].as_str().unwrap().to_owned();
    for (version, body, want) in [
        (
            "1.1",
            json!({"node_uuid": uuid, "address": "52:54:00:aa:bb:03", "pxe_enabled": true}),
            406,
        ),
        (
            "1.87",
            json!({"node_uuid": uuid, "address": "52:54:00:aa:bb:03", "name": "p"}),
            406,
        ),
        (
            "1.88",
            json!({"node_uuid": uuid, "address": "52:54:00:aa:bb:03", "name": "p"}),
            201,
        ),
    ] {
        let (st, doc) = v(version).post("/v1/ports", body.clone()).await;
        assert_eq!(st, want, "{version} {body}: {doc}");
    }
    // PATCH: a newer field is 406.
    let replace =
        |path: &str, value: Value| json!([{"op": "replace", "path": path, "value": value}]);
    let (st, _) = v("1.1")
        .patch(
            &format!("/v1/nodes/{uuid}"),
            replace("/resource_class", json!("x")),
        )
        .await;
    assert_eq!(st, 406);
    let (st, _) = v("1.1")
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "add", "path": "/extra/a", "value": "x"}]),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = v("1.1")
        .patch(
            &format!("/v1/ports/{port}"),
            replace("/pxe_enabled", json!(false)),
        )
        .await;
    assert_eq!(st, 406);
    // fields, sort_key and filters newer than the version: 406; detail
    // before 1.43: 400.
    for (version, path, want) in [
        ("1.8", format!("/v1/nodes/{uuid}?fields=uuid,traits"), 406),
        ("1.37", format!("/v1/nodes/{uuid}?fields=uuid,traits"), 200),
        ("1.8", format!("/v1/nodes/{uuid}?fields=uuid,health"), 406),
        (
            "latest",
            format!("/v1/nodes/{uuid}?fields=uuid,health"),
            200,
        ),
        ("1.8", "/v1/ports?fields=uuid,pxe_enabled".to_owned(), 406),
        ("1.20", "/v1/nodes?sort_key=resource_class".to_owned(), 406),
        ("1.8", "/v1/nodes?provision_state=enroll".to_owned(), 406),
        ("1.8", "/v1/nodes?driver=fake-hardware".to_owned(), 406),
        ("1.20", "/v1/nodes?resource_class=x".to_owned(), 406),
        ("1.45", "/v1/nodes?conductor_group=x".to_owned(), 406),
        ("1.64", "/v1/nodes?lessee=x".to_owned(), 406),
        ("1.81", "/v1/nodes?shard=x".to_owned(), 406),
        ("1.31", "/v1/nodes?detail=true".to_owned(), 400),
        ("1.43", "/v1/nodes?detail=true".to_owned(), 200),
        ("latest", "/v1/nodes?fault=x".to_owned(), 400),
        ("latest", "/v1/nodes?fault=power%20failure".to_owned(), 200),
        // Endpoints before the version that added them.
        ("1.27", format!("/v1/nodes/{uuid}/vifs"), 404),
        ("1.28", format!("/v1/nodes/{uuid}/vifs"), 200),
        ("1.36", format!("/v1/nodes/{uuid}/traits"), 406),
        ("1.51", "/v1/allocations".to_owned(), 404),
        ("1.48", "/v1/conductors".to_owned(), 404),
        ("1.22", "/v1/portgroups".to_owned(), 404),
        ("1.80", format!("/v1/nodes/{uuid}/inventory"), 404),
        // Names identify nodes from 1.5.
        ("1.4", "/v1/nodes/named".to_owned(), 404),
        ("1.5", "/v1/nodes/named".to_owned(), 200),
    ] {
        let (st, doc) = v(version).get(&path).await;
        assert_eq!(st, want, "GET {path} at {version}: {doc}");
    }
    let (st, _) = v("1.51")
        .post("/v1/allocations", json!({"resource_class": "x"}))
        .await;
    assert_eq!(st, 405);
    // Arguments an endpoint does not take are refused, not ignored.
    for path in [
        "/v1/ports?binding%3Ahost_id=x".to_owned(),
        "/v1/nodes?foo=1".to_owned(),
        "/v1/nodes/detail?foo=1".to_owned(),
        "/v1/allocations?foo=1".to_owned(),
        format!("/v1/nodes/{uuid}?foo=1"),
    ] {
        let (st, doc) = api.get(&path).await;
        assert_eq!(st, 400, "{path}: {doc}");
        assert!(
            common::faultstring(&doc).starts_with("Unexpected arguments: "),
            "{doc}"
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn fields_clients_print() {
    let (running, api, _db) = start("microversions_fields").await;
    let uuid = api
        .create_node(json!({"driver": "fake-hardware", "name": "f1"}))
        .await;
    let n = api.node(&uuid).await;
    assert_eq!(n["health"], Value::Null);
    assert_eq!(n["instance_name"], Value::Null);
    assert_eq!(n["service_step"], json!({}));
    // instance_name follows instance_info.display_name unless set, and is
    // a filter from 1.104.
    let (st, doc) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "add", "path": "/instance_info", "value": {"display_name": "web-1"}}]),
        )
        .await;
    assert_eq!(st, 200, "{doc}");
    assert_eq!(doc["instance_name"], "web-1");
    let (_, list) = api.get("/v1/nodes?instance_name=web-1").await;
    assert_eq!(list["nodes"].as_array().unwrap().len(), 1);
    let (st, _) = api
        .with_version(Some("1.103"))
        .get("/v1/nodes?instance_name=web-1")
        .await;
    assert_eq!(st, 406);
    let (st, doc) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "replace", "path": "/instance_name", "value": "db-1"}]),
        )
        .await;
    assert_eq!((st, &doc["instance_name"]), (200, &json!("db-1")));
    let (st, _) = api
        .patch(
            &format!("/v1/nodes/{uuid}"),
            json!([{"op": "replace", "path": "/health", "value": "OK"}]),
        )
        .await;
    assert_eq!(st, 400);
    // Ports: available_for_dynamic_portgroup (1.111), true by default.
    let (st, p) = api
        .post(
            "/v1/ports",
            json!({"node_uuid": uuid, "address": "52:54:00:aa:bb:04"}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(p["available_for_dynamic_portgroup"], true);
    // Every power action is timestamped in driver_internal_info.
    let (st, _) = api
        .put(
            &format!("/v1/nodes/{uuid}/states/power"),
            json!({"target": "power on"}),
        )
        .await;
    assert_eq!(st, 202);
    let n = api.wait_power_state(&uuid, "power on", T).await;
    let stamp = n["driver_internal_info"]["last_power_state_change"]
        .as_str()
        .unwrap_or_else(|| panic!("{n}"));
    // Naive UTC ISO 8601 with microseconds, as Ironic writes it.
    assert_eq!(stamp.len(), 26, "{stamp}");
    assert_eq!(&stamp[10..11], "T");
    running.shutdown().await;
}

#[tokio::test]
async fn behaviours_real_clients_met() {
    let (running, api, _db) = start("microversions_behaviours").await;
    let uuid = api
        .create_node(json!({"driver": "fake-hardware", "resource_class": "rc"}))
        .await;
    // Fake power knows nothing until told: manage leaves power_state null.
    api.provision(&uuid, json!({"target": "manage"})).await;
    let n = api.wait_state(&uuid, "manageable", T).await;
    assert_eq!(n["power_state"], Value::Null, "{n}");
    // Fake management: PXE, persistent false; only PXE can be set.
    let (st, bd) = api
        .get(&format!("/v1/nodes/{uuid}/management/boot_device"))
        .await;
    assert_eq!(
        (st, bd),
        (200, json!({"boot_device": "pxe", "persistent": false}))
    );
    let (_, sup) = api
        .get(&format!(
            "/v1/nodes/{uuid}/management/boot_device/supported"
        ))
        .await;
    assert_eq!(sup, json!({"supported_boot_devices": ["pxe"]}));
    let (st, _) = api
        .put(
            &format!("/v1/nodes/{uuid}/management/boot_device"),
            json!({"boot_device": "disk"}),
        )
        .await;
    assert_eq!(st, 400);
    // The fake console answers.
    let (st, c) = api.get(&format!("/v1/nodes/{uuid}/states/console")).await;
    assert_eq!(
        (st, c),
        (200, json!({"console_enabled": false, "console_info": null}))
    );
    // validate: every fake interface passes, and a pass has no reason key.
    let (_, val) = api.get(&format!("/v1/nodes/{uuid}/validate")).await;
    for (iface, r) in val.as_object().unwrap() {
        assert_eq!(r, &json!({"result": true}), "{iface}: {val}");
    }
    let (_, props) = api.get("/v1/drivers/fake-hardware/properties").await;
    assert_eq!(keys(&props), set(&["B1", "B2"]));
    // Powered on, deployed and undeployed with the fake deploy interface:
    // the power state is what the client set, as in Ironic.
    api.provision(&uuid, json!({"target": "provide"})).await;
    api.wait_state(&uuid, "available", T).await;
    api.put(
        &format!("/v1/nodes/{uuid}/states/power"),
        json!({"target": "power on"}),
    )
    .await;
    api.wait_power_state(&uuid, "power on", T).await;
    api.provision(&uuid, json!({"target": "active"})).await;
    assert_eq!(
        api.wait_state(&uuid, "active", T).await["power_state"],
        "power on"
    );
    api.provision(&uuid, json!({"target": "deleted"})).await;
    assert_eq!(
        api.wait_state(&uuid, "available", T).await["power_state"],
        "power on"
    );

    // manual-management takes noop deploy and fake or noop management.
    let mm = api
        .create_node(json!({"driver": "manual-management", "deploy_interface": "noop", "management_interface": "fake"}))
        .await;
    let (st, _) = api
        .patch(
            &format!("/v1/nodes/{mm}"),
            json!([{"op": "replace", "path": "/management_interface", "value": "noop"}]),
        )
        .await;
    assert_eq!(st, 200);
    let (_, val) = api.get(&format!("/v1/nodes/{mm}/validate")).await;
    assert_eq!(val["deploy"], json!({"result": true}));
    assert_eq!(
        val["bios"],
        json!({"result": false, "reason": "Driver manual-management does not support bios (disabled or not implemented)."})
    );
    // No port: the network boot cannot validate.
    assert_eq!(val["boot"]["result"], false, "{val}");

    // An unknown marker is 404, as Ironic looks it up.
    let unknown = "3c9d5c0e-0f7e-4d0c-a1a7-1d0b2b6f0d11";
    for path in ["/v1/nodes", "/v1/ports"] {
        let (st, doc) = api.get(&format!("{path}?limit=1&marker={unknown}")).await;
        assert_eq!(st, 404, "{path}: {doc}");
    }

    // Deleting an associated node in maintenance: 204, its allocation goes.
    let (st, a) = api
        .post("/v1/allocations", json!({"resource_class": "rc"}))
        .await;
    assert_eq!((st, &a["state"]), (201, &json!("active")), "{a}");
    let alloc = a["uuid"].as_str().unwrap().to_owned();
    let (st, _) = api.delete(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(st, 409, "associated, not in maintenance");
    let (st, _) = api
        .put(
            &format!("/v1/nodes/{uuid}/maintenance"),
            json!({"reason": "broken BMC"}),
        )
        .await;
    assert_eq!(st, 202);
    let (st, doc) = api.delete(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(st, 204, "{doc}");
    let (st, _) = api.get(&format!("/v1/allocations/{alloc}")).await;
    assert_eq!(st, 404);
    running.shutdown().await;
}

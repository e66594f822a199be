//! The REST API itself: version documents and negotiation, the error
//! envelope on bad input (malformed JSON, unknown fields, invalid
//! transitions: 4xx and nothing changed), and the node, port, VIF, trait,
//! allocation, validate, boot device, maintenance and collection features.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Api, Backend, faultstring, start_with, test_config, test_db};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

fn fake(name: &str) -> Value {
    json!({"driver": "fake-hardware", "name": name, "resource_class": "baremetal"})
}

/// Every field but the ones that legitimately move on a GET.
fn stable(mut n: Value) -> Value {
    n.as_object_mut().unwrap().remove("links");
    n
}

async fn expect_error(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> String {
    let (st, v, _) = api.raw(method, path, body).await;
    assert_eq!(st, status, "{method} {path} {body:?}: {v}");
    faultstring(&v)
}

async fn bad_input(backend: Backend) {
    let Some(db) = test_db(backend, "bad_input").await else {
        return;
    };
    let (running, api) = start_with(test_config(&db.url)).await;
    let uuid = api.create_node(fake("n1")).await;
    let before = stable(api.node(&uuid).await);

    // Malformed JSON, wrong shapes, unknown fields.
    expect_error(&api, "POST", "/v1/nodes", Some("{not json"), 400).await;
    expect_error(&api, "POST", "/v1/nodes", Some("[]"), 400).await;
    let m = expect_error(
        &api,
        "POST",
        "/v1/nodes",
        Some(r#"{"driver":"fake-hardware","bogus":1}"#),
        400,
    )
    .await;
    assert!(
        m.contains("Unknown attribute for argument node: bogus"),
        "{m}"
    );
    expect_error(&api, "POST", "/v1/nodes", Some(r#"{"name":"x"}"#), 400).await;
    let m = expect_error(
        &api,
        "POST",
        "/v1/nodes",
        Some(r#"{"driver":"no-such-driver"}"#),
        400,
    )
    .await;
    assert!(m.contains("no-such-driver"), "{m}");
    expect_error(
        &api,
        "POST",
        "/v1/nodes",
        Some(r#"{"driver":"fake-hardware","properties":"x"}"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "POST",
        "/v1/nodes",
        Some(r#"{"driver":"fake-hardware","deploy_interface":"iscsi"}"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "POST",
        "/v1/nodes",
        Some(r#"{"driver":"fake-hardware","name":"bad name!"}"#),
        400,
    )
    .await;
    let m = expect_error(
        &api,
        "POST",
        "/v1/nodes",
        Some(r#"{"driver":"fake-hardware","name":"n1"}"#),
        409,
    )
    .await;
    assert!(m.contains("already exists"), "{m}");

    // Provision requests that must change nothing.
    let prov = format!("/v1/nodes/{uuid}/states/provision");
    expect_error(&api, "PUT", &prov, Some("{"), 400).await;
    expect_error(
        &api,
        "PUT",
        &prov,
        Some(r#"{"target":"active","colour":"red"}"#),
        400,
    )
    .await;
    expect_error(&api, "PUT", &prov, Some(r#"{"target":"fly"}"#), 400).await;
    let m = expect_error(&api, "PUT", &prov, Some(r#"{"target":"active"}"#), 400).await;
    assert!(
        m.contains("can not be performed") && m.contains("enroll"),
        "{m}"
    );
    expect_error(&api, "PUT", &prov, Some(r#"{"target":"provide"}"#), 400).await;
    expect_error(&api, "PUT", &prov, Some(r#"{"target":"abort"}"#), 400).await;
    expect_error(&api, "PUT", &prov, Some(r#"{"target":"clean"}"#), 400).await;
    expect_error(
        &api,
        "PUT",
        &prov,
        Some(r#"{"target":"manage","configdrive":"x"}"#),
        400,
    )
    .await;
    // `manage` exists only from 1.4.
    let old = api.with_version(Some("1.3"));
    let (st, v, _) = old.raw("PUT", &prov, Some(r#"{"target":"manage"}"#)).await;
    assert_eq!(st, 406, "{v}");
    expect_error(
        &api,
        "PUT",
        &format!("/v1/nodes/{uuid}/states/power"),
        Some(r#"{"target":"explode"}"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "PUT",
        &format!("/v1/nodes/{uuid}/management/boot_device"),
        Some(r#"{"boot_device":"usb-stick"}"#),
        400,
    )
    .await;

    // Patches that must change nothing.
    let path = format!("/v1/nodes/{uuid}");
    let m = expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"replace","path":"/provision_state","value":"active"}]"#),
        400,
    )
    .await;
    assert!(m.contains("internal attribute"), "{m}");
    let m = expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"add","path":"/colour","value":"red"}]"#),
        400,
    )
    .await;
    assert!(m.contains("not allowed"), "{m}");
    expect_error(&api, "PATCH", &path, Some(r#"{"op":"add"}"#), 400).await;
    expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"frob","path":"/name"}]"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"remove","path":"/extra/nothing"}]"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"replace","path":"/properties","value":"x"}]"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"add","path":"/instance_uuid","value":"not-a-uuid"}]"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"remove","path":"/driver"}]"#),
        400,
    )
    .await;
    // A patch is all or nothing: a bad second op leaves the first unapplied.
    expect_error(
        &api,
        "PATCH",
        &path,
        Some(r#"[{"op":"add","path":"/extra/a","value":1},{"op":"remove","path":"/extra/zzz"}]"#),
        400,
    )
    .await;

    // Versions.
    let (st, v, h) = api
        .with_version(Some("1.999"))
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(st, 406);
    assert_eq!(h["x-openstack-ironic-api-minimum-version"], "1.1");
    assert_eq!(h["x-openstack-ironic-api-maximum-version"], "1.115");
    let inner: Value = serde_json::from_str(v["error_message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["code"], 406);
    let (st, _, _) = api
        .with_version(Some("2.1"))
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(st, 406);
    let (st, _, _) = api
        .with_version(Some("one.two"))
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(st, 400);

    // Ports.
    let m = expect_error(
        &api,
        "POST",
        "/v1/ports",
        Some(&json!({"address": "zz:zz", "node_uuid": uuid}).to_string()),
        400,
    )
    .await;
    assert!(m.contains("MAC"), "{m}");
    expect_error(
        &api,
        "POST",
        "/v1/ports",
        Some(r#"{"address":"52:54:00:00:00:01","node_uuid":"n1"}"#),
        400,
    )
    .await;
    expect_error(
        &api,
        "POST",
        "/v1/ports",
        Some(r#"{"address":"52:54:00:00:00:01"}"#),
        400,
    )
    .await;
    let (st, _) = api
        .post(
            "/v1/ports",
            json!({"address": "52:54:00:00:00:01", "node_uuid": uuid}),
        )
        .await;
    assert_eq!(st, 201);
    let m = expect_error(
        &api,
        "POST",
        "/v1/ports",
        Some(&json!({"address": "52:54:00:00:00:01", "node_uuid": uuid}).to_string()),
        409,
    )
    .await;
    assert!(m.contains("already exists"), "{m}");

    // Lookup and heartbeat without a valid token.
    let (st, _, _) = api
        .raw("GET", "/v1/lookup?addresses=52:54:00:00:00:01", None)
        .await;
    assert_eq!(st, 404, "lookup refused outside lookup states");
    expect_error(
        &api,
        "POST",
        &format!("/v1/heartbeat/{uuid}"),
        Some(r#"{"callback_url":"http://1.2.3.4:9999","agent_token":"nope","agent_version":"13"}"#),
        400,
    )
    .await;

    // Not found.
    let m = expect_error(&api, "GET", "/v1/nodes/ghost", None, 404).await;
    assert_eq!(m, "Node ghost could not be found.");
    expect_error(&api, "GET", "/v1/no-such-thing", None, 404).await;
    expect_error(&api, "GET", "/v1/nodes?fields=uuid,bogus", None, 400).await;
    expect_error(&api, "GET", "/v1/nodes?sort_dir=sideways", None, 400).await;
    expect_error(&api, "GET", "/v1/nodes?limit=-1", None, 400).await;

    assert_eq!(stable(api.node(&uuid).await), before, "nothing changed");

    // Deleting a deployed node is refused, and changes nothing.
    api.provision(&uuid, json!({"target": "manage"})).await;
    api.wait_state(&uuid, "manageable", T).await;
    api.provision(&uuid, json!({"target": "provide"})).await;
    api.wait_state(&uuid, "available", T).await;
    api.provision(&uuid, json!({"target": "active"})).await;
    api.wait_state(&uuid, "active", T).await;
    let before = stable(api.node(&uuid).await);
    let m = expect_error(&api, "DELETE", &format!("/v1/nodes/{uuid}"), None, 409).await;
    assert!(m.contains("active"), "{m}");
    expect_error(&api, "PUT", &prov, Some(r#"{"target":"provide"}"#), 400).await;
    assert_eq!(stable(api.node(&uuid).await), before);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_sqlite() {
    bad_input(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_postgres() {
    bad_input(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_features() {
    let db = test_db(Backend::Sqlite, "features").await.unwrap();
    let (running, api) = start_with(test_config(&db.url)).await;
    let bare = api.with_version(None);

    // Version documents as IPA and openstacksdk read them.
    let (st, root, h) = bare.raw("GET", "/", None).await;
    assert_eq!(st, 200);
    assert_eq!(root["default_version"]["version"], "1.115");
    assert_eq!(root["default_version"]["min_version"], "1.1");
    assert_eq!(root["versions"][0]["id"], "v1");
    assert_eq!(h["x-openstack-ironic-api-version"], "1.1");
    assert!(h.contains_key("x-openstack-request-id"));
    let (st, v1, _) = bare.raw("GET", "/v1/", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        v1["media_types"]["type"],
        "application/vnd.openstack.ironic.v1+json"
    );
    let (_, _, h) = api.raw("GET", "/v1/nodes", None).await;
    assert_eq!(h["x-openstack-ironic-api-version"], "1.115");
    let (_, _, h) = api
        .with_version(Some("1.46"))
        .raw("GET", "/v1/nodes", None)
        .await;
    assert_eq!(h["x-openstack-ironic-api-version"], "1.46");
    // Old clients create nodes in `available` (before 1.11).
    let (st, n) = api
        .with_version(Some("1.10"))
        .post("/v1/nodes", json!({"driver": "fake-hardware"}))
        .await;
    assert_eq!(st, 201);
    assert_eq!(n["provision_state"], "available");
    let old = n["uuid"].as_str().unwrap().to_owned();
    assert_eq!(api.delete(&format!("/v1/nodes/{old}")).await.0, 204);

    // Collections: filters, fields, pagination, sorting.
    for i in 0..5 {
        let mut body = fake(&format!("node-{i}"));
        if i % 2 == 0 {
            body["resource_class"] = json!("gpu");
            body["conductor_group"] = json!("Rack1");
        }
        api.create_node(body).await;
    }
    let (_, l) = api.get("/v1/nodes?resource_class=gpu").await;
    assert_eq!(l["nodes"].as_array().unwrap().len(), 3);
    let (_, l) = api.get("/v1/nodes?conductor_group=rack1").await;
    assert_eq!(l["nodes"].as_array().unwrap().len(), 3);
    let (_, l) = api.get("/v1/nodes?associated=false&maintenance=false&provision_state=enroll&driver=fake-hardware").await;
    assert_eq!(l["nodes"].as_array().unwrap().len(), 5);
    assert!(
        l["nodes"][0].get("driver").is_none(),
        "list shows the short form"
    );
    let (_, l) = api.get("/v1/nodes?fields=uuid,resource_class").await;
    assert_eq!(l["nodes"][0].as_object().unwrap().len(), 2);
    let (_, l) = api.get("/v1/nodes?detail=True").await;
    assert!(l["nodes"][0].get("driver_info").is_some());
    let (_, l) = api
        .get("/v1/nodes?sort_key=name&sort_dir=desc&limit=2")
        .await;
    let names: Vec<&str> = l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-4", "node-3"]);
    let next = l["next"].as_str().unwrap();
    assert!(
        next.contains("marker=") && next.contains("limit=2"),
        "{next}"
    );
    let next_path = next.strip_prefix(&api.base).unwrap();
    let (_, l2) = api.get(next_path).await;
    let names: Vec<&str> = l2["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-2", "node-1"]);
    let (_, l3) = api.get("/v1/nodes/detail?limit=10").await;
    assert!(l3.get("next").is_none());
    let (_, one) = api
        .get("/v1/nodes/node-1?fields=name,provision_state")
        .await;
    assert_eq!(one, json!({"name": "node-1", "provision_state": "enroll"}));

    // Maintenance.
    let (st, _) = api
        .put(
            "/v1/nodes/node-0/maintenance",
            json!({"reason": "broken fan"}),
        )
        .await;
    assert_eq!(st, 202);
    let n = api.node("node-0").await;
    assert_eq!(n["maintenance"], true);
    assert_eq!(n["maintenance_reason"], "broken fan");
    let (_, l) = api.get("/v1/nodes?maintenance=true").await;
    assert_eq!(l["nodes"].as_array().unwrap().len(), 1);
    let (st, _) = api.delete("/v1/nodes/node-0/maintenance").await;
    assert_eq!(st, 202);
    assert_eq!(api.node("node-0").await["maintenance"], false);

    // Traits.
    let (st, v) = api
        .put(
            "/v1/nodes/node-1/traits",
            json!({"traits": ["CUSTOM_GPU", "HW_CPU_X86_AVX2"]}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    assert_eq!(
        api.put("/v1/nodes/node-1/traits/CUSTOM_FAST", json!({}))
            .await
            .0,
        204
    );
    let (_, t) = api.get("/v1/nodes/node-1/traits").await;
    assert_eq!(
        t["traits"],
        json!(["CUSTOM_FAST", "CUSTOM_GPU", "HW_CPU_X86_AVX2"])
    );
    assert_eq!(
        api.delete("/v1/nodes/node-1/traits/CUSTOM_FAST").await.0,
        204
    );
    assert_eq!(
        api.put("/v1/nodes/node-1/traits", json!({"traits": ["lower"]}))
            .await
            .0,
        400
    );

    // Ports and VIFs.
    let n1 = api.node("node-1").await["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    for mac in ["52:54:00:00:01:01", "52-54-00-00-01-02"] {
        let (st, p) = api
            .post(
                "/v1/ports",
                json!({"address": mac, "node_uuid": n1, "pxe_enabled": mac.ends_with('1')}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
    }
    let (_, ports) = api.get("/v1/ports?node=node-1").await;
    assert_eq!(ports["ports"].as_array().unwrap().len(), 2);
    assert!(ports["ports"][0].get("node_uuid").is_none(), "short form");
    let (_, ports) = api.get("/v1/ports/detail?address=52:54:00:00:01:02").await;
    assert_eq!(ports["ports"][0]["address"], "52:54:00:00:01:02");
    assert_eq!(ports["ports"][0]["pxe_enabled"], false);
    let puuid = ports["ports"][0]["uuid"].as_str().unwrap().to_owned();
    let (st, p) = api
        .patch(
            &format!("/v1/ports/{puuid}"),
            json!([{"op": "add", "path": "/extra/rack", "value": "r1"}]),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["extra"]["rack"], "r1");
    let vif_path = "/v1/nodes/node-1/vifs";
    assert_eq!(api.post(vif_path, json!({"id": "vif-a"})).await.0, 204);
    assert_eq!(api.post(vif_path, json!({"id": "vif-a"})).await.0, 409);
    assert_eq!(api.post(vif_path, json!({"id": "vif-b"})).await.0, 204);
    let (st, v) = api.post(vif_path, json!({"id": "vif-c"})).await;
    assert_eq!(st, 400, "no free port: {v}");
    let (_, vifs) = api.get(vif_path).await;
    assert_eq!(vifs["vifs"].as_array().unwrap().len(), 2);
    let (_, pxe) = api.get("/v1/ports/detail?address=52:54:00:00:01:01").await;
    assert_eq!(
        pxe["ports"][0]["internal_info"]["tenant_vif_port_id"], "vif-a",
        "PXE port first"
    );
    assert_eq!(api.delete("/v1/nodes/node-1/vifs/vif-a").await.0, 204);
    assert_eq!(api.delete("/v1/nodes/node-1/vifs/vif-a").await.0, 400);

    // Validate, boot device, drivers.
    let (_, val) = api.get("/v1/nodes/node-1/validate").await;
    assert_eq!(val["power"]["result"], true);
    assert_eq!(val["deploy"]["result"], true);
    assert_eq!(val["storage"]["result"], true);
    let (st, v) = api
        .put(
            "/v1/nodes/node-1/management/boot_device",
            json!({"boot_device": "pxe", "persistent": true}),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    // Ironic's fake management: always PXE, not persistent; only PXE.
    let (_, bd) = api.get("/v1/nodes/node-1/management/boot_device").await;
    assert_eq!(bd, json!({"boot_device": "pxe", "persistent": false}));
    let (_, sup) = api
        .get("/v1/nodes/node-1/management/boot_device/supported")
        .await;
    assert_eq!(sup, json!({"supported_boot_devices": ["pxe"]}));
    let (_, d) = api.get("/v1/drivers").await;
    let names: Vec<&str> = d["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fake-hardware",
            "manual-management",
            "ipmi",
            "redfish",
            "snmp"
        ]
    );
    let (_, props) = api.get("/v1/drivers/ipmi/properties").await;
    assert!(props.get("ipmi_address").is_some());
    // ipmi checks Ironic's driver_info keys; a BMC that does not answer
    // (a closed loopback port) fails the manage verb's power check.
    let ipmi = api
        .create_node(json!({"driver": "ipmi", "name": "bmc-1"}))
        .await;
    let (_, val) = api.get(&format!("/v1/nodes/{ipmi}/validate")).await;
    assert_eq!(val["power"]["result"], false);
    assert!(
        val["power"]["reason"]
            .as_str()
            .unwrap()
            .contains("ipmi_address"),
        "{val}"
    );
    let closed_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (st, v) = api.patch("/v1/nodes/bmc-1", json!([{"op": "add", "path": "/driver_info/ipmi_address", "value": "127.0.0.1"}, {"op": "add", "path": "/driver_info/ipmi_port", "value": closed_port}, {"op": "add", "path": "/driver_info/ipmi_password", "value": "secret"}])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["driver_info"]["ipmi_password"], "******",
        "secrets masked"
    );
    assert_eq!(v["deploy_interface"], "direct");
    assert_eq!(v["power_interface"], "ipmitool");
    let (_, val) = api.get(&format!("/v1/nodes/{ipmi}/validate")).await;
    assert_eq!(val["power"]["result"], true, "{val}");
    api.provision("bmc-1", json!({"target": "manage"})).await;
    let n = api.wait_state("bmc-1", "enroll", T).await;
    assert!(
        n["last_error"]
            .as_str()
            .unwrap()
            .contains("IPMI call failed"),
        "{n}"
    );

    // Allocations.
    for name in ["node-1", "node-3"] {
        api.provision(name, json!({"target": "manage"})).await;
        api.wait_state(name, "manageable", T).await;
        api.provision(name, json!({"target": "provide"})).await;
        api.wait_state(name, "available", T).await;
        api.set_power(name, "power off").await;
    }
    let (st, a) = api
        .post(
            "/v1/allocations",
            json!({"name": "host-a", "resource_class": "baremetal", "traits": ["CUSTOM_GPU"]}),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["state"], "active");
    assert_eq!(a["node_uuid"], n1.as_str());
    let n = api.node("node-1").await;
    assert_eq!(n["allocation_uuid"], a["uuid"]);
    assert_eq!(n["instance_uuid"], a["uuid"]);
    let (st, b) = api
        .post(
            "/v1/allocations",
            json!({"name": "host-b", "resource_class": "baremetal", "traits": ["CUSTOM_GPU"]}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(b["state"], "error", "the only GPU node is taken: {b}");
    // Ironic's message: node-3 is of the class, but without the trait.
    assert!(
        b["last_error"]
            .as_str()
            .unwrap()
            .contains("no suitable nodes have the requested traits CUSTOM_GPU")
    );
    let (st, c) = api
        .post(
            "/v1/allocations",
            json!({"resource_class": "baremetal", "candidate_nodes": ["node-3"]}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(c["state"], "active");
    let (_, got) = api.get("/v1/allocations/host-a").await;
    assert_eq!(got["uuid"], a["uuid"]);
    let (st, p) = api
        .patch(
            "/v1/allocations/host-a",
            json!([{"op": "add", "path": "/extra/owner", "value": "me"}]),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(api.delete("/v1/allocations/host-a").await.0, 204);
    let n = api.node("node-1").await;
    assert!(
        n["allocation_uuid"].is_null() && n["instance_uuid"].is_null(),
        "{n}"
    );
    let (_, l) = api.get("/v1/allocations").await;
    assert_eq!(l["allocations"].as_array().unwrap().len(), 2);
    running.shutdown().await;
}

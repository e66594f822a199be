//! The role matrix shared by the http_basic (`rbac.rs`) and Keystone
//! (`keystone.rs`) tests: personas of Ironic's default roles, the actions
//! each may take on an owned and leased node, and what each lists.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::json;

use super::Api;

/// The BMC password no answer may show.
pub const SECRET: &str = "s3cr3t-ipmi-password";

/// What the matrix expects of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Anything but 401, 403 and 404 (the request got past policy).
    Allowed,
    /// 403.
    Forbidden,
    /// 404: a project caller is not told the node exists.
    Hidden,
}

fn outcome(status: u16) -> Outcome {
    match status {
        403 => Outcome::Forbidden,
        404 => Outcome::Hidden,
        401 => panic!("401 inside the matrix: the credentials did not work"),
        _ => Outcome::Allowed,
    }
}

/// The personas, as (user, roles, project) — `None` is system scope.
pub const PERSONAS: [(&str, &str, Option<&str>); 10] = [
    ("sys-admin", "admin", None),
    ("sys-member", "member", None),
    ("sys-reader", "reader", None),
    ("a-admin", "admin", Some("tenant-a")),
    ("a-member", "member", Some("tenant-a")),
    ("a-reader", "reader", Some("tenant-a")),
    ("b-member", "member", Some("tenant-b")),
    ("b-admin", "admin", Some("tenant-b")),
    ("c-member", "member", Some("tenant-c")),
    ("nova", "service", Some("service")),
];

/// One row of the matrix: an action and the outcome for each persona, in
/// the order of [`PERSONAS`]. `A` allowed, `F` forbidden, `H` hidden.
const MATRIX: [(&str, &str); 12] = [
    ("show node-a", "AAAAAAAAHA"),
    ("show node-x", "AAAHHHHHHA"),
    ("patch extra", "AAFAAFAAHA"),
    ("patch driver_info", "AAFAAFFFHA"),
    ("patch owner", "AAFFFFFFHA"),
    ("provision", "AAFAAFFAHA"),
    ("power", "AAFAAFAAHA"),
    ("console", "AAFAAFFFHA"),
    ("drivers", "AAAFFFFFFA"),
    ("delete", "AFFAFFHHHF"),
    ("allocation", "AAFAAFAAAA"),
    ("port", "AFFAFFFFFF"),
];

/// Which nodes each persona lists.
const LISTS: [&[&str]; 10] = [
    &["node-a", "node-x"],
    &["node-a", "node-x"],
    &["node-a", "node-x"],
    &["node-a"],
    &["node-a"],
    &["node-a"],
    &["node-a"],
    &["node-a"],
    &[],
    &["node-a", "node-x"],
];

fn expected(code: char) -> Outcome {
    match code {
        'A' => Outcome::Allowed,
        'F' => Outcome::Forbidden,
        _ => Outcome::Hidden,
    }
}

/// The project ID a persona's project name maps to (Keystone gives real IDs).
pub type ProjectIds = BTreeMap<String, String>;

/// Sets up the nodes as `admin`: node-a (owner tenant-a, lessee tenant-b,
/// BMC password), node-x (owner tenant-x).
pub async fn seed(admin: &Api, ids: &ProjectIds) {
    let id = |name: &str| ids.get(name).cloned().unwrap_or_else(|| name.to_owned());
    for (name, owner, lessee) in [
        ("node-a", id("tenant-a"), Some(id("tenant-b"))),
        ("node-x", "tenant-x".to_owned(), None),
    ] {
        let (st, v) = admin
            .post(
                "/v1/nodes",
                json!({
                    "driver": "fake-hardware",
                    "name": name,
                    "owner": owner,
                    "lessee": lessee,
                    "resource_class": "baremetal",
                    "driver_info": {"ipmi_password": SECRET, "ipmi_address": "127.0.0.1"},
                }),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
}

/// Runs one action as `api`; returns its status and the raw answer.
async fn act(api: &Api, admin: &Api, action: &str, user: &str, ids: &ProjectIds) -> (u16, String) {
    let id = |name: &str| ids.get(name).cloned().unwrap_or_else(|| name.to_owned());
    let (st, v, _) = match action {
        "show node-a" => api.raw("GET", "/v1/nodes/node-a", None).await,
        "show node-x" => api.raw("GET", "/v1/nodes/node-x", None).await,
        "patch extra" => {
            let body = json!([{"op": "add", "path": format!("/extra/{user}"), "value": 1}]);
            api.raw("PATCH", "/v1/nodes/node-a", Some(&body.to_string()))
                .await
        }
        "patch driver_info" => {
            let body = json!([{"op": "add", "path": "/driver_info/ipmi_username", "value": user}]);
            api.raw("PATCH", "/v1/nodes/node-a", Some(&body.to_string()))
                .await
        }
        "patch owner" => {
            let body = json!([{"op": "add", "path": "/owner", "value": id("tenant-a")}]);
            api.raw("PATCH", "/v1/nodes/node-a", Some(&body.to_string()))
                .await
        }
        // An invalid target for the state: past policy it is a 400.
        "provision" => {
            let body = json!({"target": "deleted"});
            api.raw(
                "PUT",
                "/v1/nodes/node-a/states/provision",
                Some(&body.to_string()),
            )
            .await
        }
        "power" => {
            let body = json!({"target": "power on"});
            api.raw(
                "PUT",
                "/v1/nodes/node-a/states/power",
                Some(&body.to_string()),
            )
            .await
        }
        "console" => {
            api.raw("GET", "/v1/nodes/node-a/states/console", None)
                .await
        }
        "drivers" => api.raw("GET", "/v1/drivers", None).await,
        "delete" => {
            let name = format!("del-{user}");
            let (st, v) = admin
                .post(
                    "/v1/nodes",
                    json!({"driver": "fake-hardware", "name": name, "owner": id("tenant-a")}),
                )
                .await;
            assert_eq!(st, 201, "{v}");
            api.raw("DELETE", &format!("/v1/nodes/{name}"), None).await
        }
        "allocation" => {
            let body = json!({"resource_class": "none-such", "name": format!("alloc-{user}")});
            api.raw("POST", "/v1/allocations", Some(&body.to_string()))
                .await
        }
        "port" => {
            let byte = user.bytes().map(usize::from).sum::<usize>() % 251;
            let mac = format!("52:54:00:aa:00:{byte:02x}");
            let body = json!({"address": mac, "node_uuid": admin.node("node-a").await["uuid"]});
            api.raw("POST", "/v1/ports", Some(&body.to_string())).await
        }
        other => panic!("unknown action {other}"),
    };
    (st, v.to_string())
}

/// Runs the whole matrix; `login(user)` gives each persona's client.
pub async fn run_matrix<F, Fut>(admin: &Api, ids: &ProjectIds, login: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = Api>,
{
    let mut failures = Vec::new();
    for (i, (user, _, _)) in PERSONAS.iter().enumerate() {
        let api = login(user).await;
        // Lists show the nodes the persona may see, and no secret.
        let (st, v, _) = api.raw("GET", "/v1/nodes?detail=True", None).await;
        assert_eq!(st, 200, "{user} list: {v}");
        let mut names: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["name"].as_str())
            .filter(|n| n.starts_with("node-"))
            .map(str::to_owned)
            .collect();
        names.sort();
        if names != LISTS[i] {
            failures.push(format!("{user} lists {names:?}, expected {:?}", LISTS[i]));
        }
        assert!(!v.to_string().contains(SECRET), "{user} saw the secret");
        for (action, row) in MATRIX {
            let want = expected(row.chars().nth(i).unwrap());
            let (status, body) = act(&api, admin, action, user, ids).await;
            assert!(!body.contains(SECRET), "{user} {action}: secret in {body}");
            let got = outcome(status);
            if got != want {
                failures.push(format!(
                    "{user} {action}: {status} ({got:?}), expected {want:?}: {body}"
                ));
            }
        }
    }
    // A lessee sees the node but not its driver_info or last_error.
    let lessee = login("b-member").await;
    let n = lessee.node("node-a").await;
    assert!(
        n["driver_info"]["content"]
            .as_str()
            .is_some_and(|s| s.contains("baremetal:node:get:driver_info")),
        "{n}"
    );
    assert!(failures.is_empty(), "role matrix:\n{}", failures.join("\n"));
}

//! The agent against a small Ironic-style coordinator on 127.0.0.1: lookup,
//! heartbeat with token, callback URL and auto-TLS certificate, the agent
//! API's envelope and error codes, and the token surviving a restart.
//! Unprivileged: the inventory comes from a fixture tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_support;

use std::time::Duration;

use agent_support::{Conductor, Coordinator, start_agent};
use reqwest::Method;
use serde_json::{Value, json};

const MAC: &str = "52:54:00:12:34:56";

#[test]
fn looks_up_heartbeats_lists_clean_steps_and_rejects_missing_token() {
    let coord = Coordinator::start(MAC, "1.115");
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&coord.url(), dir.path(), &[]);
    let hb = coord.wait_heartbeat(0, Duration::from_secs(30));

    // Lookup by the inventory's MACs with IPA's API version.
    let seen = coord.state.lock().unwrap().seen.clone();
    let lookup = seen
        .iter()
        .find(|s| s.path.starts_with("/v1/lookup"))
        .unwrap();
    assert!(
        lookup
            .path
            .contains("addresses=52:54:00:12:34:56,52:54:00:ab:cd:ef"),
        "{}",
        lookup.path
    );
    assert_eq!(lookup.version.as_deref(), Some("1.62"));
    assert_eq!(seen[0].path, "/");

    // The heartbeat: token, https callback URL (auto-TLS), version and certificate.
    assert_eq!(hb.version.as_deref(), Some("1.68"));
    assert_eq!(hb.body["agent_token"], coord.token());
    let cb = hb.body["callback_url"].as_str().unwrap();
    assert!(cb.starts_with("https://127.0.0.1:"), "{cb}");
    assert!(
        hb.body["agent_version"]
            .as_str()
            .unwrap()
            .starts_with("13.0.0+ingot.")
    );
    assert!(
        hb.body["agent_verify_ca"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let c = Conductor::from_heartbeat(&hb);
    // Unauthenticated documents.
    let (s, root) = c.call(Method::GET, "/", None);
    assert_eq!(s, 200);
    assert_eq!(root["name"], "OpenStack Ironic Python Agent API");
    let (s, status) = c.call(Method::GET, "/v1/status", None);
    assert_eq!(s, 200);
    assert!(status["started_at"].as_f64().unwrap() > 0.0);

    // clean.get_clean_steps lists erase_devices_metadata.
    let (s, r) = c.command(
        "clean.get_clean_steps",
        json!({"node": {"uuid": "x"}, "ports": []}),
        true,
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["command_name"], "get_clean_steps");
    assert_eq!(r["command_status"], "SUCCEEDED");
    assert_eq!(r["command_error"], Value::Null);
    let steps = r["command_result"]["clean_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    let meta = steps
        .iter()
        .find(|s| s["step"] == "erase_devices_metadata")
        .unwrap();
    assert_eq!(meta["priority"], 99);
    assert_eq!(meta["interface"], "deploy");
    // IPA's clean_uefi_nvram: listed, not automatic, with its argument.
    let nvram = steps
        .iter()
        .find(|s| s["step"] == "clean_uefi_nvram")
        .unwrap();
    assert_eq!(nvram["priority"], 0);
    assert_eq!(nvram["argsinfo"]["match_patterns"]["required"], false);
    assert_eq!(
        r["command_result"]["hardware_manager_version"],
        json!({"generic_hardware_manager": "1.2"})
    );

    // 401 without or with a wrong token, on every command endpoint.
    let body = Some(json!({"name": "clean.get_clean_steps", "params": {}}));
    let (s, f) = c.call(Method::POST, "/v1/commands/?wait=true", body.clone());
    assert_eq!(s, 401);
    assert_eq!(f["faultstring"], "401 Unauthorized: Token invalid.");
    let (s, _) = c.call(
        Method::POST,
        "/v1/commands/?wait=true&agent_token=wrong",
        body,
    );
    assert_eq!(s, 401);
    let (s, _) = c.call(Method::GET, "/v1/commands/", None);
    assert_eq!(s, 401);
    let id = r["id"].as_str().unwrap();
    let (s, _) = c.call(Method::GET, &format!("/v1/commands/{id}"), None);
    assert_eq!(s, 401);
    let (s, one) = c.call(
        Method::GET,
        &format!("/v1/commands/{id}?agent_token={}", c.token),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(one["id"], id);

    // 404 unknown extension and command id, 400 bad name / unknown command / bad body.
    let (s, f) = c.command("nosuch.thing", json!({}), true);
    assert_eq!((s, f["faultcode"].as_str()), (404, Some("Client")));
    let (s, _) = c.call(
        Method::GET,
        &format!("/v1/commands/no-such-id?agent_token={}", c.token),
        None,
    );
    assert_eq!(s, 404);
    let (s, _) = c.command("clean", json!({}), true);
    assert_eq!(s, 400);
    let (s, _) = c.command("clean.no_such_command", json!({}), true);
    assert_eq!(s, 400);
    let (s, _) = c.call(
        Method::POST,
        &format!("/v1/commands/?agent_token={}", c.token),
        Some(json!({"name": "clean.get_clean_steps", "params": 3})),
    );
    assert_eq!(s, 400);
    let (s, f) = c.command(
        "standby.prepare_image",
        json!({"image_info": {"id": "x", "urls": []}}),
        false,
    );
    assert_eq!(s, 400);
    assert_eq!(f["type"], "InvalidCommandParamsError");

    // Only the accepted commands are in the history.
    let names: Vec<Value> = c
        .commands()
        .iter()
        .map(|c| c["command_name"].clone())
        .collect();
    assert_eq!(names, vec![json!("get_clean_steps")]);
    drop(agent);
}

#[test]
fn busy_agent_answers_409() {
    let coord = Coordinator::start(MAC, "1.115");
    let dir = tempfile::tempdir().unwrap();
    // A slow image server: the write stays RUNNING for two seconds.
    let image = agent_support::gpt_image(8 << 20);
    let files = [("img.raw".to_string(), std::sync::Arc::new(image.clone()))]
        .into_iter()
        .collect();
    let faults = common::http::Faults {
        stall_after: Some((1 << 20, Duration::from_secs(2))),
        ..Default::default()
    };
    let server = common::http::TestServer::start(files, faults);
    std::fs::create_dir_all(dir.path().join("dev")).unwrap();
    std::fs::File::create(dir.path().join("dev/vda"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let _agent = start_agent(&coord.url(), dir.path(), &["--tls", "off"]);
    let hb = coord.wait_heartbeat(0, Duration::from_secs(30));
    assert!(
        hb.body["callback_url"]
            .as_str()
            .unwrap()
            .starts_with("http://")
    );
    assert!(hb.body.get("agent_verify_ca").is_none());
    let c = Conductor::from_heartbeat(&hb);
    let info = json!({"id": "img.raw", "urls": [server.url("img.raw")], "disk_format": "raw",
                      "checksum": agent_support::sha256(&image)});
    let (s, r) = c.command("standby.prepare_image", json!({"image_info": info}), false);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["command_status"], "RUNNING");
    let (s, f) = c.command("clean.get_clean_steps", json!({}), true);
    assert_eq!(s, 409, "{f}");
    assert!(
        f["faultstring"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("agent is busy")
    );
    let done = c.wait_last("prepare_image", Duration::from_secs(60));
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    let (s, _) = c.command("clean.get_clean_steps", json!({}), true);
    assert_eq!(s, 200);
}

#[test]
fn restart_keeps_the_token_and_a_lost_token_is_replaced() {
    let coord = Coordinator::start(MAC, "1.115");
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&coord.url(), dir.path(), &[]);
    let first = coord.wait_heartbeat(0, Duration::from_secs(30));
    let token = first.body["agent_token"].as_str().unwrap().to_string();
    drop(agent);

    // Restarted with the same state directory: lookup answers "******", and
    // the agent heartbeats with the token it saved.
    let n = coord.settled_count();
    let agent = start_agent(&coord.url(), dir.path(), &[]);
    let hb = coord.wait_heartbeat(n, Duration::from_secs(30));
    assert_eq!(hb.body["agent_token"], token.as_str());
    assert_eq!(coord.state.lock().unwrap().issued, 1);
    let c = Conductor::from_heartbeat(&hb);
    let (s, _) = c.command("clean.get_clean_steps", json!({}), true);
    assert_eq!(s, 200);
    drop(agent);

    // A fresh agent without the saved token is not locked out: it keeps
    // looking up, and once the coordinator wipes the old token (a new
    // operation), it receives the new one.
    let n = coord.settled_count();
    let fresh = tempfile::tempdir().unwrap();
    let _agent = start_agent(&coord.url(), fresh.path(), &[]);
    coord.wait_request(n, "/v1/lookup", Duration::from_secs(30));
    {
        let st = coord.state.lock().unwrap();
        assert!(
            !st.seen
                .iter()
                .skip(n)
                .any(|s| s.path.starts_with("/v1/heartbeat")),
            "{:#?}",
            st.seen
        );
    }
    {
        let mut st = coord.state.lock().unwrap();
        st.token = None;
    }
    let hb = coord.wait_heartbeat(n, Duration::from_secs(30));
    assert_eq!(hb.body["agent_token"], coord.token().as_str());
    assert_eq!(coord.state.lock().unwrap().issued, 2);
}

/// An agent that outlived a power-off (the coordinator wiped its token) looks
/// itself up again and receives a new token: the commands of the previous
/// operation are dropped, so a conductor polling `GET /v1/commands` sees only
/// its own. A lookup that hands out the same token again keeps them.
#[test]
fn a_new_token_drops_the_command_history_and_the_same_token_keeps_it() {
    let coord = Coordinator::start(MAC, "1.115");
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&coord.url(), dir.path(), &["--tls", "off"]);
    let hb = coord.wait_heartbeat(0, Duration::from_secs(30));
    let c = Conductor::from_heartbeat(&hb);
    let (s, _) = c.command("clean.get_clean_steps", json!({}), true);
    assert_eq!(s, 200);
    assert_eq!(c.commands().len(), 1);

    // The node is briefly unknown (404 heartbeats): the agent looks up again
    // and is handed the same token in clear. The history stays.
    let n = coord.count();
    {
        let mut st = coord.state.lock().unwrap();
        st.heartbeat_404 = true;
        st.token_delivered = false;
    }
    coord.wait_request(n, "/v1/lookup", Duration::from_secs(60));
    coord.state.lock().unwrap().heartbeat_404 = false;
    let n = coord.count();
    let hb = coord.wait_heartbeat(n, Duration::from_secs(60));
    assert_eq!(hb.body["agent_token"], c.token.as_str());
    assert_eq!(coord.state.lock().unwrap().issued, 1);
    let names: Vec<Value> = c
        .commands()
        .iter()
        .map(|x| x["command_name"].clone())
        .collect();
    assert_eq!(names, vec![json!("get_clean_steps")]);

    // Powered off and on without the agent noticing: the coordinator wiped the
    // token, rejects the old one, and the next lookup issues a new one.
    let n = coord.count();
    coord.state.lock().unwrap().token = None;
    let hb = coord.wait_heartbeat(n, Duration::from_secs(90));
    assert_eq!(coord.state.lock().unwrap().issued, 2);
    assert_ne!(hb.body["agent_token"], c.token.as_str());
    let fresh = Conductor::from_heartbeat(&hb);
    assert_eq!(
        fresh.commands(),
        Vec::<Value>::new(),
        "stale history served"
    );
    // The old token no longer opens the API.
    let (s, _) = c.call(
        Method::GET,
        &format!("/v1/commands/?agent_token={}", c.token),
        None,
    );
    assert_eq!(s, 401);
    assert!(
        agent
            .log_text()
            .contains("dropped the command history of the previous operation"),
        "{}",
        agent.log_text()
    );
    // Commands run under the new token are listed as usual.
    let (s, _) = fresh.command("clean.get_clean_steps", json!({}), true);
    assert_eq!(s, 200);
    assert_eq!(fresh.commands().len(), 1);
}

#[allow(dead_code, clippy::all)]
mod common;

//! A simulated ironic-python-agent: it looks itself up by MAC, heartbeats,
//! and serves `/v1/commands/` with IPA's result envelope. Async commands
//! finish after a short delay and then force a heartbeat at once, as IPA
//! does. The periodic heartbeat is slow on purpose (10 s) so that tests
//! prove the coordinator moves on as soon as a forced heartbeat reports a
//! finished step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Everything the agent saw and did.
#[derive(Default)]
pub struct SimState {
    /// Token from lookup.
    pub token: Option<String>,
    /// Node UUID from lookup.
    pub node_uuid: Option<String>,
    /// Command results in order.
    pub commands: Vec<Value>,
    /// Commands received: (name, params).
    pub received: Vec<(String, Value)>,
    /// Step names that fail.
    pub fail_steps: HashSet<String>,
    /// Lookups that returned 200.
    pub lookups: u32,
    /// The MAC it looks itself up with.
    pub mac: String,
    /// While set, the agent neither looks up nor heartbeats (a hung agent).
    pub paused: bool,
}

/// The agent.
#[derive(Clone)]
pub struct SimAgent {
    /// Shared state.
    pub state: Arc<Mutex<SimState>>,
    /// `http://127.0.0.1:port` of its command API.
    pub url: String,
    wake: Arc<Notify>,
}

/// The inventory the agent reports.
pub fn inventory(mac: &str) -> Value {
    json!({
        "cpu": {"model_name": "QEMU Virtual CPU", "frequency": "2400", "count": 4, "architecture": "x86_64", "flags": ["lm"], "socket_count": 1},
        "memory": {"total": 8_200_000_000_u64, "physical_mb": 8192},
        "disks": [
            {"name": "/dev/vda", "size": 21_474_836_480_u64, "rotational": false, "model": "virtio"},
            {"name": "/dev/nvme0n1", "size": 107_374_182_400_u64, "rotational": false}
        ],
        "interfaces": [
            {"name": "eth0", "mac_address": mac, "ipv4_address": "10.0.2.15", "has_carrier": true,
             "lldp": [[1, "0452540000beef"], [2, "0565746831"], [5, "7377697463682d31"]]},
            {"name": "eth1", "mac_address": "52:54:00:00:00:99", "has_carrier": false, "lldp": null}
        ],
        "bmc_address": null, "bmc_v6address": null,
        "system_vendor": {"product_name": "Standard PC", "serial_number": "S1", "manufacturer": "QEMU", "firmware": {}},
        // BIOS: in UEFI mode the deploy adds image.install_bootloader and
        // cleaning clean_uefi_nvram, which the UEFI lab covers with the real
        // agent under OVMF (docs/e2e.md); these tests count the commands.
        "boot": {"current_boot_mode": "bios", "pxe_interface": format!("01-{}", mac.replace(':', "-"))},
        "hostname": "sim"
    })
}

fn wipe_report(step: &str) -> Value {
    let secure = step == "erase_devices";
    json!({
        "devices": [{
            "path": "/dev/vda", "kind": "block", "model": "virtio", "serial": null,
            "size_bytes": 21_474_836_480_u64, "logical_block_size": 512,
            "mode": if secure { "secure" } else { "metadata" },
            "method": if secure { "discard_zero_out" } else { "metadata" },
            "nist_category": if secure { "clear" } else { "none" },
            "passes": null, "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
            "seconds": 1.0, "bytes": 2_097_152, "skipped": [], "partitions": [], "signatures": [],
            "verification": null, "status": "verified", "error": null
        }],
        "success": true
    })
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn fault(status: StatusCode, msg: &str) -> Response {
    (
        status,
        json!({"faultcode": "Client", "faultstring": msg}).to_string(),
    )
        .into_response()
}

async fn commands_post(State(agent): State<SimAgent>, uri: Uri, body: Bytes) -> Response {
    let q = query(&uri);
    let token = q
        .iter()
        .find(|(k, _)| k == "agent_token")
        .map(|(_, v)| v.clone());
    let req: Value = serde_json::from_slice(&body).unwrap();
    let name = req["name"].as_str().unwrap().to_owned();
    let params = req["params"].clone();
    let mut st = agent.state.lock().unwrap();
    if token.is_none() || token != st.token {
        return fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.");
    }
    if st
        .commands
        .last()
        .is_some_and(|c| c["command_status"] == "RUNNING")
    {
        return fault(StatusCode::CONFLICT, "Agent is busy: executing command");
    }
    st.received.push((name.clone(), params.clone()));
    let id = uuid::Uuid::new_v4().to_string();
    let short = name.split('.').nth(1).unwrap_or(&name).to_owned();
    let (status, result): (&str, Value) = match name.as_str() {
        "clean.get_clean_steps" => (
            "SUCCEEDED",
            json!({"clean_steps": {"GenericHardwareManager": [
                {"step": "erase_devices", "priority": 10, "interface": "deploy", "reboot_requested": false, "abortable": true},
                {"step": "erase_devices_metadata", "priority": 99, "interface": "deploy", "reboot_requested": false, "abortable": true}
            ]}, "hardware_manager_version": {"generic_hardware_manager": "1.2"}}),
        ),
        "standby.sync" => ("SUCCEEDED", Value::Null),
        "poll.get_hardware_info" => ("SUCCEEDED", inventory(&st.mac)),
        "clean.execute_clean_step" | "deploy.execute_deploy_step" => ("RUNNING", Value::Null),
        _ => return fault(StatusCode::BAD_REQUEST, &format!("Unknown command: {name}")),
    };
    let entry = json!({"id": id, "command_name": short, "command_status": status, "command_error": null, "command_result": if result.is_null() { Value::Null } else { result }});
    st.commands.push(entry.clone());
    if status == "RUNNING" {
        let step = params["step"]["step"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let fails = st.fail_steps.contains(&step);
        let a = agent.clone();
        let id2 = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            {
                let mut st = a.state.lock().unwrap();
                let c = st
                    .commands
                    .iter_mut()
                    .find(|c| c["id"] == id2.as_str())
                    .unwrap();
                if fails {
                    c["command_status"] = json!("FAILED");
                    c["command_error"] = json!({"type": "BlockDeviceEraseError", "code": 500, "message": "Failed to erase block device", "details": format!("simulated failure of {step}")});
                } else if short == "execute_clean_step" {
                    c["command_status"] = json!("SUCCEEDED");
                    c["command_result"] =
                        json!({"clean_result": wipe_report(&step), "clean_step": params["step"]});
                } else {
                    c["command_status"] = json!("SUCCEEDED");
                    c["command_result"] = json!({"deploy_result": {"result": "prepare_image: image (img.raw) written to device /dev/vda root_uuid=0x1234"}, "deploy_step": params["step"]});
                }
            }
            // IPA forces a heartbeat when an async command finishes.
            a.wake.notify_one();
        });
    }
    (StatusCode::OK, entry.to_string()).into_response()
}

async fn commands_get(State(agent): State<SimAgent>, uri: Uri) -> Response {
    let q = query(&uri);
    let token = q
        .iter()
        .find(|(k, _)| k == "agent_token")
        .map(|(_, v)| v.clone());
    let st = agent.state.lock().unwrap();
    if token.is_none() || token != st.token {
        return fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.");
    }
    (StatusCode::OK, json!({"commands": st.commands}).to_string()).into_response()
}

impl SimAgent {
    /// Starts the command API and the lookup/heartbeat loop against `api`.
    pub async fn start(api: &str, mac: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let agent = SimAgent {
            state: Arc::new(Mutex::new(SimState {
                mac: mac.to_owned(),
                ..SimState::default()
            })),
            url,
            wake: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route(
                "/v1/commands/",
                axum::routing::post(commands_post).get(commands_get),
            )
            .with_state(agent.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let a = agent.clone();
        let api = api.to_owned();
        let mac = mac.to_owned();
        tokio::spawn(async move { a.run(api, mac).await });
        agent
    }

    async fn run(self, api: String, mac: String) {
        let http = reqwest::Client::new();
        loop {
            let (token, paused) = {
                let st = self.state.lock().unwrap();
                (st.token.clone(), st.paused)
            };
            if paused {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            match token {
                None => {
                    let r = http
                        .get(format!("{api}/v1/lookup?addresses={mac}"))
                        .header("X-OpenStack-Ironic-API-Version", "1.62")
                        .send()
                        .await
                        .unwrap();
                    if r.status().as_u16() == 200 {
                        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                        let t = v["config"]["agent_token"].as_str().unwrap().to_owned();
                        let masked = t == "******";
                        {
                            let mut st = self.state.lock().unwrap();
                            st.lookups += 1;
                            if !masked {
                                st.token = Some(t);
                                st.node_uuid = v["node"]["uuid"].as_str().map(str::to_owned);
                            }
                            // A new boot of the ramdisk: a fresh command list.
                            st.commands.clear();
                        }
                        if masked {
                            // Issued to someone else: ask again later, not in a busy loop.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(t) => {
                    let node = self.state.lock().unwrap().node_uuid.clone().unwrap();
                    let body = json!({"callback_url": self.url, "agent_token": t, "agent_version": "13.0.0"});
                    let r = http
                        .post(format!("{api}/v1/heartbeat/{node}"))
                        .header("X-OpenStack-Ironic-API-Version", "1.68")
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .unwrap();
                    if r.status().as_u16() == 400 {
                        // Token wiped: the operation is over; the ramdisk "powers off".
                        self.state.lock().unwrap().token = None;
                        continue;
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), self.wake.notified()).await;
                }
            }
        }
    }

    /// The machine was powered on into the ramdisk: forget the token and
    /// commands, look up again at once.
    pub fn reboot(&self) {
        {
            let mut st = self.state.lock().unwrap();
            st.token = None;
            st.commands.clear();
        }
        self.wake.notify_one();
    }

    /// Names of commands received so far.
    pub fn received_names(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

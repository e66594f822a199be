//! The `redfish` power interface against sushy-tools' Redfish emulator
//! (fake driver) on loopback: power, boot source override, basic
//! authentication, TLS verify options, and a `redfish` node through the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sushy;

use std::time::{Duration, Instant};

use ingot_coordinator::power::redfish::{RedfishClient, RedfishPower};
use ingot_coordinator::power::{PowerAction, PowerDriver, PowerErrorKind, PowerState, PowerTarget};
use serde_json::{Value, json};
use sushy::Sushy;

fn driver() -> RedfishPower {
    // The fake driver applies power changes 1-11 s after the request.
    RedfishPower::new(
        RedfishClient::new(Duration::from_secs(10), 2),
        Duration::from_secs(30),
        Duration::from_millis(250),
    )
}

fn target(info: Value, boot_mode: Option<&str>) -> PowerTarget {
    PowerTarget {
        node_uuid: "node-redfish".into(),
        driver_info: info.as_object().unwrap().clone(),
        recorded: None,
        boot_mode: boot_mode.map(str::to_owned),
    }
}

fn with(mut info: Value, extra: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut info, extra) {
        a.extend(b);
    }
    info
}

#[tokio::test]
async fn power_and_boot_override_on_the_sushy_emulator() {
    let Some(sushy) = Sushy::start(false).await else {
        return;
    };
    let d = driver();
    let t = target(sushy.driver_info(), Some("uefi"));
    d.validate(&t.driver_info).unwrap();
    assert_eq!(d.get_power_state(&t).await.unwrap(), PowerState::Off);

    d.set_power_state(&t, PowerAction::On).await.unwrap();
    assert_eq!(sushy.system().await["PowerState"], "On");

    d.set_boot_device(&t, "pxe", true).await.unwrap();
    let boot = &sushy.system().await["Boot"];
    assert_eq!(boot["BootSourceOverrideTarget"], "Pxe", "{boot}");
    assert_eq!(boot["BootSourceOverrideMode"], "UEFI", "{boot}");
    assert_eq!(
        d.get_boot_device(&t).await.unwrap(),
        (Some("pxe".into()), Some(true))
    );
    let legacy = target(sushy.driver_info(), Some("bios"));
    d.set_boot_device(&legacy, "disk", false).await.unwrap();
    let boot = &sushy.system().await["Boot"];
    // The emulator ignores BootSourceOverrideEnabled (always Continuous);
    // the bodies are unit-tested in power::redfish::driver.
    assert_eq!(boot["BootSourceOverrideTarget"], "Hdd", "{boot}");
    assert_eq!(boot["BootSourceOverrideMode"], "Legacy", "{boot}");
    assert!(d.set_boot_device(&t, "floppy", false).await.is_err());

    d.set_power_state(&t, PowerAction::Off).await.unwrap();
    assert_eq!(sushy.system().await["PowerState"], "Off");

    // Without redfish_system_id, the only system is found.
    let mut info = sushy.driver_info();
    info.as_object_mut().unwrap().remove("redfish_system_id");
    assert_eq!(
        d.get_power_state(&target(info, None)).await.unwrap(),
        PowerState::Off
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let Some(sushy) = Sushy::start(false).await else {
        return;
    };
    let d = driver();
    let t = target(
        with(sushy.driver_info(), json!({"redfish_password": "wrong"})),
        None,
    );
    let e = d.get_power_state(&t).await.unwrap_err();
    assert_eq!(e.kind(), PowerErrorKind::Auth, "{e}");
    let e = e.to_string();
    assert!(e.contains("401"), "{e}");
    let t = target(
        with(sushy.driver_info(), json!({"redfish_auth_type": "session"})),
        None,
    );
    let e = d.get_power_state(&t).await.unwrap_err().to_string();
    assert!(e.contains("SessionService"), "{e}");
}

#[tokio::test]
async fn tls_verify_options() {
    let Some(sushy) = Sushy::start(true).await else {
        return;
    };
    let d = driver();
    let info = sushy.driver_info();
    // The default verifies against the web PKI: a self-signed certificate fails.
    let e = d
        .get_power_state(&target(info.clone(), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Redfish call failed"), "{e}");
    for verify in [
        json!(false),
        json!("False"),
        json!(sushy.cert.as_ref().unwrap().display().to_string()),
    ] {
        let t = target(
            with(info.clone(), json!({"redfish_verify_ca": verify})),
            None,
        );
        assert_eq!(
            d.get_power_state(&t).await.unwrap(),
            PowerState::Off,
            "{verify}"
        );
    }
}

#[tokio::test]
async fn api_powers_a_redfish_node_and_sets_pxe() {
    let Some(sushy) = Sushy::start(false).await else {
        return;
    };
    let db = common::test_db(common::Backend::Sqlite, "redfish_api")
        .await
        .unwrap();
    let (_running, api) = common::start_with(common::test_config(&db.url)).await;
    api.create_node(
        json!({"driver": "redfish", "name": "rf-1", "driver_info": sushy.driver_info()}),
    )
    .await;
    let (_, val) = api.get("/v1/nodes/rf-1/validate").await;
    assert_eq!(val["power"]["result"], true, "{val}");
    let (st, v) = api
        .put("/v1/nodes/rf-1/states/power", json!({"target": "power on"}))
        .await;
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = api.node("rf-1").await;
        if n["target_power_state"].is_null() && n["power_state"] == "power on" {
            break;
        }
        assert!(n["last_error"].is_null(), "{n}");
        assert!(Instant::now() < deadline, "{n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sushy.system().await["PowerState"], "On");
    let (st, v) = api
        .put(
            "/v1/nodes/rf-1/management/boot_device",
            json!({"boot_device": "pxe"}),
        )
        .await;
    assert!((200..300).contains(&st), "{st} {v}");
    let boot = &sushy.system().await["Boot"];
    assert_eq!(boot["BootSourceOverrideTarget"], "Pxe", "{boot}");
    let (_, bd) = api.get("/v1/nodes/rf-1/management/boot_device").await;
    assert_eq!(bd["boot_device"], "pxe", "{bd}");
}

/// A minimal Redfish service with a SessionService, for what the emulator
/// lacks: session authentication (with a token that expires) and the
/// ResetTypes of reboot, soft reboot and soft power off. Power changes apply
/// at once.
mod session_mock {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};

    #[derive(Default)]
    pub struct Mock {
        pub power: String,
        pub token: Option<String>,
        pub logins: u32,
        pub resets: Vec<String>,
        pub basic_requests: u32,
    }

    pub type Shared = Arc<Mutex<Mock>>;
    const SYS: &str = "/redfish/v1/Systems/1";

    fn authed(m: &mut Mock, h: &HeaderMap) -> bool {
        if h.contains_key("authorization") {
            m.basic_requests += 1;
        }
        let tok = h.get("x-auth-token").and_then(|v| v.to_str().ok());
        tok.is_some() && tok == m.token.as_deref()
    }

    async fn root() -> Response {
        serde_json::json!({
            "@odata.id": "/redfish/v1",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}
        })
        .to_string()
        .into_response()
    }

    async fn login(State(s): State<Shared>, body: String) -> Response {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["UserName"] != "u" || v["Password"] != "p" {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut m = s.lock().unwrap();
        m.logins += 1;
        let t = format!("token-{}", m.logins);
        m.token = Some(t.clone());
        (
            StatusCode::CREATED,
            [
                ("X-Auth-Token", t),
                (
                    "Location",
                    "/redfish/v1/SessionService/Sessions/1".to_owned(),
                ),
            ],
            "{}",
        )
            .into_response()
    }

    async fn system(State(s): State<Shared>, h: HeaderMap) -> Response {
        let mut m = s.lock().unwrap();
        if !authed(&mut m, &h) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        serde_json::json!({
            "@odata.id": SYS,
            "PowerState": m.power,
            "Actions": {"#ComputerSystem.Reset": {
                "target": format!("{SYS}/Actions/ComputerSystem.Reset"),
                "ResetType@Redfish.AllowableValues":
                    ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "PowerCycle"]
            }}
        })
        .to_string()
        .into_response()
    }

    async fn reset(State(s): State<Shared>, h: HeaderMap, body: String) -> Response {
        let mut m = s.lock().unwrap();
        if !authed(&mut m, &h) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let t = v["ResetType"].as_str().unwrap().to_owned();
        m.power = if t == "ForceOff" || t == "GracefulShutdown" {
            "Off"
        } else {
            "On"
        }
        .into();
        m.resets.push(t);
        StatusCode::NO_CONTENT.into_response()
    }

    /// Serves the mock on a free loopback port; returns its base URL.
    pub async fn start(state: Shared) -> String {
        let app = Router::new()
            .route("/redfish/v1", get(root))
            .route("/redfish/v1/SessionService/Sessions", post(login))
            .route(SYS, get(system))
            .route(&format!("{SYS}/Actions/ComputerSystem.Reset"), post(reset))
            .with_state(state);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }
}

#[tokio::test]
async fn session_auth_relogin_and_reset_types() {
    let state = session_mock::Shared::default();
    state.lock().unwrap().power = "On".into();
    let base = session_mock::start(state.clone()).await;
    let d = driver();
    let t = target(
        json!({"redfish_address": base, "redfish_system_id": "1",
            "redfish_username": "u", "redfish_password": "p"}),
        None,
    );
    assert_eq!(d.get_power_state(&t).await.unwrap(), PowerState::On);
    // ForceRestart is not allowed here: PowerCycle is used instead.
    d.set_power_state(&t, PowerAction::Reboot).await.unwrap();
    d.set_power_state(&t, PowerAction::SoftReboot)
        .await
        .unwrap();
    // The BMC forgets the session: one new login, and the call succeeds.
    state.lock().unwrap().token = None;
    d.set_power_state(&t, PowerAction::SoftOff).await.unwrap();
    d.set_power_state(&t, PowerAction::SoftOff).await.unwrap(); // already off: no reset
    d.set_power_state(&t, PowerAction::Reboot).await.unwrap(); // off: On
    {
        let m = state.lock().unwrap();
        assert_eq!(
            m.resets,
            ["PowerCycle", "GracefulRestart", "GracefulShutdown", "On"]
        );
        assert_eq!(m.logins, 2);
        assert_eq!(m.basic_requests, 0, "session auth only");
    }
    // Wrong password with session auth: the login is refused.
    let bad = target(
        json!({"redfish_address": base, "redfish_system_id": "1",
            "redfish_username": "u", "redfish_password": "x", "redfish_auth_type": "session"}),
        None,
    );
    let e = d.get_power_state(&bad).await.unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");
}

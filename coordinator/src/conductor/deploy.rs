//! Deploy and tear-down.
//!
//! With the `fake` (or `noop`) deploy interface a deploy touches nothing, as in Ironic. With
//! `direct` (the agent): boot device PXE and power on → `wait call-back`; on
//! the agent's heartbeat the `write_image` deploy step is sent with
//! `image_info` built from `instance_info` and the config drive; when a
//! heartbeat shows it finished, in UEFI mode `image.install_bootloader`
//! (the removable-media loader and an NVRAM boot entry, as Ironic's
//! `configure_local_boot` for whole-disk images), `standby.sync`, boot
//! device disk (persistent, with the boot mode: [`crate::model::boot_mode`]),
//! reboot → `active`. With fast track usable (`fast_track.rs`)
//! the agent left running by cleaning is driven at once instead of booting
//! the ramdisk; the end (reboot into the instance) is the same.

use ingot_proto::agent::{CommandResult, CommandStatus};
use serde_json::{Map, Value, json};
use tracing::info;

use super::outcome::{Outcome, Target, Until};
use super::phase::{Phase, Plan, Sent, sent_command};
use super::{Conductor, ConductorError, Next, command_error_text, is_busy};
use crate::agent_client::AgentEndpoint;
use crate::model::{Intent, Node};
use crate::power::{PowerAction, PowerState};
use crate::state::{Event, ProvisionState};

/// The Glance image id of the node's `image_source`, if it names one.
pub fn glance_image_id(node: &Node) -> Option<&str> {
    node.instance_info
        .get("image_source")
        .and_then(Value::as_str)
        .and_then(crate::glance::image_id)
}

/// Builds IPA's `image_info` from `instance_info`.
pub fn image_info(node: &Node) -> Result<Map<String, Value>, String> {
    image_info_with_source(node, false)
}

/// [`image_info`]; with `glance_pending` a Glance image source that is not
/// looked up yet passes (URL and checksum come from Glance when the deploy
/// starts) and the answer is empty.
pub(crate) fn image_info_with_source(
    node: &Node,
    glance_pending: bool,
) -> Result<Map<String, Value>, String> {
    let ii = &node.instance_info;
    let source = ii
        .get("image_source")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("instance_info.image_source is missing")?;
    let glance = crate::glance::image_id(source);
    if glance.is_none() && !(source.starts_with("http://") || source.starts_with("https://")) {
        return Err(format!(
            "instance_info.image_source must be an http(s) URL or a Glance image UUID, got {source}"
        ));
    }
    let resolved = ii.get("image_url").and_then(Value::as_str);
    if let (Some(id), None) = (glance, resolved) {
        if glance_pending {
            return Ok(Map::new());
        }
        return Err(format!("Glance image {id} was not looked up"));
    }
    let url = resolved.unwrap_or(source);
    let id = glance.map_or_else(
        || {
            source
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(source)
                .to_owned()
        },
        str::to_owned,
    );
    let checksum = ii.get("image_checksum").and_then(Value::as_str);
    let algo = ii.get("image_os_hash_algo").and_then(Value::as_str);
    let value = ii.get("image_os_hash_value").and_then(Value::as_str);
    if checksum.is_none() && (algo.is_none() || value.is_none()) {
        return Err(
            "instance_info needs image_checksum or image_os_hash_algo and image_os_hash_value"
                .into(),
        );
    }
    let mut info = Map::new();
    info.insert("id".into(), json!(id));
    info.insert("urls".into(), json!([url]));
    info.insert(
        "disk_format".into(),
        ii.get("image_disk_format").cloned().unwrap_or(Value::Null),
    );
    info.insert(
        "container_format".into(),
        ii.get("image_container_format")
            .cloned()
            .unwrap_or(Value::Null),
    );
    info.insert("stream_raw_images".into(), json!(true));
    if let Some(c) = checksum {
        info.insert("checksum".into(), json!(c));
    }
    if let (Some(a), Some(v)) = (algo, value) {
        info.insert("os_hash_algo".into(), json!(a));
        info.insert("os_hash_value".into(), json!(v));
    }
    info.insert("node_uuid".into(), json!(node.uuid));
    info.insert("image_type".into(), json!("whole-disk"));
    // As Ironic's agent deploy: the mode the instance boots in.
    if let Some(mode) = crate::model::boot_mode::for_deploy(node) {
        info.insert("deploy_boot_mode".into(), json!(mode.as_str()));
    }
    Ok(info)
}

/// The config drive to hand to the agent: a string (gzip+base64 ISO or URL)
/// as given, or a dict built into a `config-2` ISO ([`crate::configdrive`]).
fn configdrive(node: &Node) -> Result<Value, String> {
    match node.instance_info.get("configdrive") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) => Ok(json!(s)),
        Some(Value::Object(dict)) => {
            // As Ironic: meta_data.uuid and .name default to the node's.
            crate::configdrive::build_encoded(dict, &node.uuid, node.name.as_deref())
                .map(Value::String)
                .map_err(|e| e.to_string())
        }
        Some(other) => Err(format!(
            "configdrive must be a string or an object, got {other}"
        )),
    }
}

/// Deploy, as an agent [`Phase`].
pub(super) struct Deploy;

/// A deploy without the agent (Ironic's fake and noop deploy interfaces
/// touch no power) is done at once.
fn deployed_without_agent() -> Outcome {
    Outcome::transition(Event::Done, Target::Clear, |n| {
        n.intent = None;
        n.last_error = None;
        n.deploy_step = Map::new();
    })
}

/// What is written when the deploy goes to `wait call-back`.
fn deploy_started(n: &mut Node) {
    n.intent = None;
    n.last_error = None;
    n.deploy_step = json!({"interface": "deploy", "step": "deploy", "priority": 100})
        .as_object()
        .cloned()
        .unwrap_or_default();
}

/// The `write_image` deploy step with its arguments.
fn write_image_step(info: Map<String, Value>, configdrive: Value) -> Value {
    json!({
        "interface": "deploy",
        "step": "write_image",
        "priority": 80,
        "args": {"image_info": info, "configdrive": configdrive},
    })
}

/// `write_image` was sent and the agent answered `r`: a failed command
/// fails the deploy; else the command is recorded (the step shown without
/// the config drive) and the node waits for it, or looks again at once when
/// the agent finished already.
fn write_image_sent(r: &CommandResult, step: &Value) -> Outcome {
    if r.command_status == CommandStatus::Failed {
        return Outcome::fail(
            format!(
                "Deploy step deploy.write_image failed: {}",
                command_error_text(r)
            ),
            true,
        );
    }
    let id = r.id.clone();
    let mut shown = step.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(args)) = shown.get_mut("args") {
        args.insert("configdrive".into(), json!(crate::model::node::MASK));
    }
    let until = if r.command_status == CommandStatus::Succeeded {
        Until::Now
    } else {
        Until::Kicked
    };
    Outcome::wait_with(until, move |n| {
        n.driver_internal_info
            .insert("agent_command_id".into(), json!(id));
        n.deploy_step = shown.clone();
        super::progress::start(n);
        n.progress_ms = crate::model::now_ms();
    })
}

/// The instance is written and the node rebooted into it: `active`, with
/// the agent's result (secrets masked: the agent echoes the step with the
/// config drive and its user data).
fn deployed(mut result: Value) -> Outcome {
    crate::model::mask::mask_value(&mut result);
    Outcome::transition(Event::Done, Target::Clear, move |n| {
        n.wipe_agent_info();
        n.driver_internal_info
            .insert("deploy_result".into(), result.clone());
        n.deploy_step = Map::new();
        n.last_error = None;
        n.power_state = Some(PowerState::On);
    })
}

/// The instance is torn down (powered off when `powered_off`): it is
/// forgotten and automated cleaning starts.
fn torn_down(powered_off: bool) -> Outcome {
    Outcome::transition(
        Event::StartClean,
        Target::To(ProvisionState::Available),
        move |n| {
            if powered_off {
                n.power_state = Some(PowerState::Off);
            }
            n.instance_info = Map::new();
            n.instance_uuid = None;
            n.instance_name = None;
            n.allocation_uuid = None;
            n.wipe_agent_info();
            n.driver_internal_info.remove("deploy_result");
            n.intent = Some(Intent::Clean { steps: None });
        },
    )
}

impl Phase for Deploy {
    const START: ProvisionState = ProvisionState::Deploying;
    const WAIT: ProvisionState = ProvisionState::WaitCallBack;
    const NAME: &'static str = "Deploy";
    const NETWORK: crate::network::config::Phase = crate::network::config::Phase::Provisioning;

    async fn plan(&self, c: &Conductor, node: Node) -> Result<Plan, ConductorError> {
        if !node.uses_agent() {
            info!(node = %node.uuid, "deployed (fake deploy interface)");
            return Ok(Plan::Now(deployed_without_agent()));
        }
        let node = match c.resolve_glance(node).await? {
            Ok(node) => node,
            Err(e) => {
                return Ok(Plan::Now(Outcome::fail(
                    format!("Deploy failed: {e}"),
                    false,
                )));
            }
        };
        if let Err(e) = image_info(&node).and_then(|_| configdrive(&node)) {
            return Ok(Plan::Now(Outcome::fail(
                format!("Deploy failed: {e}"),
                false,
            )));
        }
        // Switched per phase: the instance needs a tenant network.
        if let Some(e) = c.tenant_plan_error(&node).await? {
            return Ok(Plan::Now(Outcome::fail(
                format!("Deploy failed: {e}"),
                false,
            )));
        }
        Ok(Plan::Agent {
            node: Box::new(node),
            reset: Box::new(|n: &mut Node| {
                n.driver_internal_info.remove("deploy_write_started");
            }),
            record: Box::new(deploy_started),
            target: Target::To(ProvisionState::Active),
        })
    }

    async fn drive(
        &self,
        c: &Conductor,
        node: Node,
        ep: &AgentEndpoint,
    ) -> Result<Outcome, ConductorError> {
        if node
            .driver_internal_info
            .get("agent_command_id")
            .and_then(Value::as_str)
            .is_some()
        {
            let commands = match c.agent().list_commands(ep).await {
                Ok(commands) => commands,
                Err(e) => {
                    return Ok(Outcome::fail(
                        format!("Deploy failed: reading the agent's commands: {e}"),
                        true,
                    ));
                }
            };
            match sent_command(&node, &commands) {
                Sent::Running(cmd) => {
                    return Ok(Outcome::still_running_with(super::progress::report(cmd)));
                }
                Sent::Succeeded(cmd) => {
                    let result = cmd.command_result.clone().unwrap_or(Value::Null);
                    return finish_deploy(c, &node, ep, result).await;
                }
                Sent::Failed(cmd) => {
                    return Ok(Outcome::fail(
                        format!(
                            "Deploy step deploy.write_image failed: {}",
                            command_error_text(cmd)
                        ),
                        true,
                    ));
                }
                // The agent restarted or never got it: send it again.
                Sent::Unknown => {
                    info!(node = %node.uuid, "write_image not known to the agent, sending it again");
                }
            }
        }
        send_write_image(c, &node, ep).await
    }
}

/// Sends the `write_image` deploy step.
async fn send_write_image(
    c: &Conductor,
    node: &Node,
    ep: &AgentEndpoint,
) -> Result<Outcome, ConductorError> {
    let (mut info, cd) = match image_info(node).and_then(|i| Ok((i, configdrive(node)?))) {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::fail(format!("Deploy failed: {e}"), true)),
    };
    if let Err(e) = c.cached_url(node, &mut info).await {
        return Ok(Outcome::fail(
            format!("Deploy failed: image cache: {e}"),
            true,
        ));
    }
    let step = write_image_step(info, cd);
    let mut params = c.step_params(node).await?;
    params.insert("step".into(), step.clone());
    params.insert("deploy_version".into(), json!({}));
    Ok(
        match c
            .agent_execute(node, ep, "deploy.execute_deploy_step", params, false)
            .await
        {
            Ok(r) => {
                if r.command_status != CommandStatus::Failed {
                    info!(node = %node.uuid, command = %r.id, "write_image sent to the agent");
                }
                write_image_sent(&r, &step)
            }
            Err(e) if is_busy(&e) => Outcome::wait(Until::Kicked),
            Err(e) => Outcome::fail(format!("Deploy failed: sending write_image: {e}"), true),
        },
    )
}

/// `image.install_bootloader`'s arguments for a whole-disk image in UEFI
/// mode (IPA's names; the agent finds the ESP and the root disk itself).
fn install_bootloader_params(node: &Node) -> Map<String, Value> {
    let ignore = node
        .driver_info
        .get("ignore_bootloader_failure")
        .map(|v| v.as_bool().unwrap_or_else(|| v.as_str() == Some("true")))
        .unwrap_or(false);
    let mut p = Map::new();
    p.insert("root_uuid".into(), Value::Null);
    p.insert("efi_system_part_uuid".into(), Value::Null);
    p.insert("prep_boot_part_uuid".into(), Value::Null);
    p.insert("target_boot_mode".into(), json!("uefi"));
    p.insert("software_raid".into(), json!(false));
    p.insert("ignore_bootloader_failure".into(), json!(ignore));
    p
}

/// The image is written: in UEFI mode the boot loader, then flush, boot
/// from disk, reboot into the instance.
async fn finish_deploy(
    c: &Conductor,
    node: &Node,
    ep: &AgentEndpoint,
    result: Value,
) -> Result<Outcome, ConductorError> {
    let uuid = &node.uuid;
    if crate::model::boot_mode::for_deploy(node) == Some(crate::model::boot_mode::BootMode::Uefi) {
        let mut params = c.step_params(node).await?;
        params.extend(install_bootloader_params(node));
        match c
            .agent_execute(node, ep, "image.install_bootloader", params, true)
            .await
        {
            Ok(r) if r.command_status == CommandStatus::Failed => {
                // As Ironic for a whole-disk image: the image's own loader
                // may still boot (the agent may be old); logged, not fatal.
                tracing::warn!(node = %uuid, error = %command_error_text(&r), "installing the UEFI boot loader failed; the image's own loader has to boot");
            }
            Ok(r) => {
                info!(node = %uuid, result = ?r.command_result, "UEFI boot loader installed");
            }
            Err(e) => {
                tracing::warn!(node = %uuid, error = %e, "installing the UEFI boot loader failed; the image's own loader has to boot");
            }
        }
    }
    // Flush the page cache to the disk before the out-of-band reboot.
    if let Err(e) = c
        .agent_execute(node, ep, "standby.sync", Map::new(), true)
        .await
    {
        tracing::warn!(node = %uuid, error = %e, "standby.sync failed; rebooting anyway");
    }
    if let Err(e) = c.set_boot_device(node, "disk", true).await {
        return Ok(Outcome::fail(
            format!("Deploy failed: setting boot device disk: {e}"),
            true,
        ));
    }
    if crate::network::tenancy::vlan_per_phase(node) {
        // Off the provisioning network only while powered off: power off,
        // ports to the tenant networks, power on (Ironic's order).
        if let Err(e) = c.set_power(node, PowerAction::Off).await {
            return Ok(Outcome::fail(
                format!("Deploy failed: powering off before the tenant networks: {e}"),
                true,
            ));
        }
        if let Err(e) = c
            .place_ports(node, crate::network::tenancy::Placement::Tenant)
            .await?
        {
            return Ok(Outcome::fail(format!("Deploy failed: {e}"), true));
        }
        if let Err(e) = c.set_power(node, PowerAction::On).await {
            return Ok(Outcome::fail(
                format!("Deploy failed: powering on into the instance: {e}"),
                true,
            ));
        }
    } else if let Err(e) = c.set_power(node, PowerAction::Reboot).await {
        return Ok(Outcome::fail(
            format!("Deploy failed: rebooting into the instance: {e}"),
            true,
        ));
    }
    info!(node = %uuid, "deployed");
    Ok(deployed(result))
}

impl Conductor {
    /// Looks a Glance image source up (the deploy's first step, as Ironic's
    /// `build_instance_info_for_deploy`): the record's checksum, hash,
    /// formats, size and properties go into `instance_info`, and
    /// `image_url` becomes the image's data URL, which the coordinator
    /// downloads into its cache. Any other source drops an `image_url` a
    /// previous Glance deploy left. The inner error is the reason (Ironic's
    /// words).
    async fn resolve_glance(&self, node: Node) -> Result<Result<Node, String>, ConductorError> {
        let uuid = node.uuid.clone();
        let Some(id) = glance_image_id(&node).map(str::to_owned) else {
            if node.driver_internal_info.contains_key("glance_image") {
                let n = self
                    .modify(&uuid, |n| {
                        n.driver_internal_info.remove("glance_image");
                        n.instance_info.remove("image_url");
                    })
                    .await?;
                return Ok(Ok(n));
            }
            return Ok(Ok(node));
        };
        let Some(glance) = self.glance() else {
            let e = crate::glance::GlanceError::NotConfigured(id);
            return Ok(Err(e.to_string()));
        };
        let record = match glance.image(&id).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        info!(node = %uuid, image = %id, "Glance image looked up");
        let n = self
            .modify(&uuid, move |n| {
                for (k, v) in &record.instance_info {
                    n.instance_info.insert(k.clone(), v.clone());
                }
                n.instance_info
                    .insert("image_url".into(), json!(record.file_url));
                n.driver_internal_info
                    .insert("glance_image".into(), json!(record.id));
            })
            .await?;
        Ok(Ok(n))
    }

    /// Points `image_info.urls` at the image cache when the node or the
    /// configuration asks for it (Ironic's `image_download_source = local`),
    /// and always for Glance images.
    async fn cached_url(&self, node: &Node, info: &mut Map<String, Value>) -> Result<(), String> {
        let glance = glance_image_id(node).map(str::to_owned);
        // instance_info overrides driver_info, as in Ironic.
        let local = glance.is_some()
            || node
                .instance_info
                .get("image_download_source")
                .or_else(|| node.driver_info.get("image_download_source"))
                .and_then(Value::as_str)
                == Some("local");
        let Some(cache) = self.image_cache() else {
            return if local {
                Err(
                    "image_download_source is \"local\" but no [images] cache_dir is configured"
                        .into(),
                )
            } else {
                Ok(())
            };
        };
        if !(local || self.config().images.always) {
            return Ok(());
        }
        let mut src = crate::image_cache::Source::of(node).map_err(|e| e.to_string())?;
        let key = match (&glance, self.glance()) {
            (Some(id), Some(g)) => {
                src.headers = g.auth_headers().await.map_err(|e| e.to_string())?;
                // Ironic's words for a Glance image that does not arrive whole.
                cache.ensure(&src).await.map_err(|e| match e {
                    crate::image_cache::CacheError::Checksum { .. } => format!(
                        "Failed to download image {id}, reason: The supplied image checksum is invalid or does not match. ({e})"
                    ),
                    other => format!("Failed to download image {id}, reason: {other}"),
                })?
            }
            _ => cache.ensure(&src).await.map_err(|e| e.to_string())?,
        };
        // Per node and time-limited: no other client can fetch the image.
        let path = format!("/images/{key}");
        let expires = crate::temp_url::now().saturating_add(self.config().images.url_ttl);
        let url = format!(
            "{}{}",
            self.config().agent_base_url(),
            self.url_key().signed(&path, &node.uuid, expires)
        );
        info.insert("urls".into(), json!([url]));
        Ok(())
    }

    /// Deleting: power off, forget the instance, then automated cleaning.
    pub(super) async fn tear_down(&self, node: Node) -> Result<Next, ConductorError> {
        let Some(node) = self
            .lock(&node.uuid, |n| {
                n.provision_state == ProvisionState::Deleting
            })
            .await?
        else {
            return Ok(Next::Idle);
        };
        // The instance's VIFs go first, whatever happens next (Ironic
        // removes them in its tear-down's `finally`).
        self.detach_vifs(&node.uuid).await?;
        // The agent's tear down powers off; Ironic's fake and noop deploy
        // interfaces leave the power as it is.
        let power_off = node.uses_agent();
        if power_off {
            if let Err(e) = self.set_power(&node, PowerAction::Off).await {
                let failed = Outcome::fail(format!("Tear down failed: power off: {e}"), false);
                return self.apply(&node.uuid, failed).await;
            }
        }
        // Off the tenant networks, back to cleaning (switched per phase).
        if let Err(e) = self
            .place_ports(
                &node,
                crate::network::tenancy::Placement::Service(
                    crate::network::config::Phase::Cleaning,
                ),
            )
            .await?
        {
            let failed = Outcome::fail(format!("Tear down failed: {e}"), true);
            return self.apply(&node.uuid, failed).await;
        }
        if let Some(alloc) = &node.allocation_uuid {
            if let Err(e) = self.db().delete_allocation(alloc).await {
                tracing::warn!(node = %node.uuid, error = %e, "deleting the allocation failed");
            }
        }
        info!(node = %node.uuid, "instance torn down, cleaning");
        self.apply(&node.uuid, torn_down(power_off)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conductor::phase::tests::command;

    fn waiting() -> Node {
        Node {
            uuid: "n1".into(),
            deploy_interface: Some("direct".into()),
            provision_state: ProvisionState::WaitCallBack,
            target_provision_state: Some(ProvisionState::Active),
            ..Node::default()
        }
    }

    #[test]
    fn the_boot_mode_goes_to_the_agent() {
        let mut n = waiting();
        n.instance_info = json!({
            "image_source": "http://h/i.raw", "image_checksum": "c",
            "capabilities": {"boot_mode": "uefi"},
        })
        .as_object()
        .cloned()
        .unwrap();
        let info = image_info(&n).unwrap();
        assert_eq!(info["deploy_boot_mode"], "uefi");
        let p = install_bootloader_params(&n);
        assert_eq!(p["target_boot_mode"], "uefi");
        assert_eq!(p["ignore_bootloader_failure"], false);
        n.instance_info.remove("capabilities");
        assert!(!image_info(&n).unwrap().contains_key("deploy_boot_mode"));
        n.boot_mode = Some("bios".into());
        assert_eq!(image_info(&n).unwrap()["deploy_boot_mode"], "bios");
    }

    #[test]
    fn a_deploy_without_the_agent_is_done_at_once() {
        let mut n = waiting();
        n.provision_state = ProvisionState::Deploying;
        n.intent = Some(Intent::Clean { steps: None });
        deployed_without_agent().apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Active);
        assert_eq!(n.target_provision_state, None);
        assert!(n.intent.is_none());
    }

    #[test]
    fn the_sent_write_image_is_recorded_without_the_config_drive() {
        let step = write_image_step(Map::new(), json!("H4sI-secret-user-data"));
        let running = write_image_sent(&command("w1", CommandStatus::Running), &step);
        assert!(matches!(
            running,
            Outcome::Wait {
                until: Until::Kicked,
                ..
            }
        ));
        let mut n = waiting();
        running.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::WaitCallBack);
        assert_eq!(n.driver_internal_info["agent_command_id"], "w1");
        assert_eq!(n.deploy_step["step"], "write_image");
        assert_eq!(
            n.deploy_step["args"]["configdrive"],
            json!(crate::model::node::MASK)
        );
        let done = write_image_sent(&command("w1", CommandStatus::Succeeded), &step);
        assert!(matches!(
            done,
            Outcome::Wait {
                until: Until::Now,
                ..
            }
        ));
        let failed = write_image_sent(&command("w1", CommandStatus::Failed), &step);
        let Outcome::Fail { reason, power_off } = failed else {
            panic!("a failed write_image fails the deploy");
        };
        assert!(reason.starts_with("Deploy step deploy.write_image failed"));
        assert!(power_off);
    }

    #[test]
    fn a_finished_deploy_is_active_and_forgets_the_agent() {
        let mut n = waiting();
        n.driver_internal_info
            .insert("agent_url".into(), json!("http://a:9999"));
        let result = json!({"deploy_result": {"args": {"configdrive": {"user_data": "x"}, "password": "p"}}});
        deployed(result).apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Active);
        assert_eq!(n.power_state, Some(PowerState::On));
        assert_eq!(n.agent_url(), None);
        let stored = n.driver_internal_info["deploy_result"].to_string();
        assert!(!stored.contains("\"p\""), "{stored}");
    }

    #[test]
    fn a_torn_down_node_cleans_towards_available() {
        let mut n = waiting();
        n.provision_state = ProvisionState::Deleting;
        n.instance_uuid = Some("i1".into());
        torn_down(true).apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Cleaning);
        assert_eq!(n.target_provision_state, Some(ProvisionState::Available));
        assert_eq!(n.instance_uuid, None);
        assert_eq!(n.power_state, Some(PowerState::Off));
        assert!(matches!(n.intent, Some(Intent::Clean { steps: None })));
        let mut active = waiting();
        active.provision_state = ProvisionState::Active;
        assert!(
            torn_down(false).apply_to(&mut active).is_err(),
            "only a node being deleted starts cleaning"
        );
    }
}

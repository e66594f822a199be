//! Fast track (Ironic's `[deploy] fast_track`): the agent ramdisk is kept
//! running between phases, so a node that was just inspected or cleaned is not
//! booted into the ramdisk again for the next phase.
//!
//! - With fast track on (the configuration's `fast_track`, or the node's
//!   `driver_info.fast_track`, which wins), inspection and cleaning end without
//!   a power off, and the agent keeps its token: it goes on heartbeating in
//!   `manageable` or `available`, where heartbeats only record the agent.
//! - When the next phase starts, the running agent is driven directly (no boot
//!   device change, no power action) if fast track is *usable*: enabled, the
//!   node not in maintenance, the agent's URL and token known, its last
//!   heartbeat younger than `fast_track_timeout`, and the power driver reading
//!   the node as on. Otherwise the ramdisk is booted as usual.
//! - Deploy's end (boot from disk) and tear-down (power off) are unchanged.

use serde_json::Value;
use tracing::{debug, info};

use super::{Conductor, ConductorError};
use crate::config::Config;
use crate::model::{Node, now_ms};
use crate::power::{PowerError, PowerState};

/// Whether fast track is on for `node`: `driver_info.fast_track` (a bool or a
/// boolean string) when set, else the configuration's `fast_track`.
pub fn enabled(config: &Config, node: &Node) -> bool {
    node.driver_info_flag("fast_track")
        .unwrap_or(config.fast_track)
}

/// Whether the agent stays running when an inspection or cleaning of `node`
/// ends: fast track on and the node not in maintenance.
pub fn keeps_agent(config: &Config, node: &Node) -> bool {
    enabled(config, node) && !node.maintenance
}

/// Forgets the finished phase's agent command but keeps the agent (URL,
/// token, last heartbeat), so that the next phase can drive it.
pub fn forget_command(node: &mut Node) {
    node.driver_internal_info.remove("agent_command_id");
}

/// Ends an agent phase: with fast track the agent is kept (only the phase's
/// command is forgotten), without it everything about the agent is wiped.
pub fn end_phase(keep_agent: bool, node: &mut Node) {
    if keep_agent {
        forget_command(node);
    } else {
        node.wipe_agent_info();
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC timestamp as the
/// coordinator writes them (`2026-01-02T03:04:05.123456+00:00`); `Z` or no
/// offset are read as UTC too, any other offset is refused.
fn parse_utc_ms(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .ok()
        .filter(|t| t.offset().is_utc())?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Whether the node's last agent heartbeat is younger than `timeout_secs`
/// at `now` (milliseconds since the epoch).
pub fn heartbeat_fresh(node: &Node, timeout_secs: u64, now: i64) -> bool {
    let Some(last) = node
        .driver_internal_info
        .get("agent_last_heartbeat")
        .and_then(Value::as_str)
        .and_then(parse_utc_ms)
    else {
        return false;
    };
    let limit = i64::try_from(timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    now.saturating_sub(last) < limit
}

/// Everything fast track needs that can be read from the node alone:
/// enabled, not in maintenance, recorded as powered on, an agent endpoint
/// and a recent heartbeat.
fn usable_on_record(config: &Config, node: &Node, now: i64) -> bool {
    keeps_agent(config, node)
        && node.power_state == Some(PowerState::On)
        && node.agent_url().is_some()
        && node.agent_token().is_some()
        && heartbeat_fresh(node, config.fast_track_timeout, now)
}

impl Conductor {
    /// Whether fast track is on for `node` (configuration, or the node's
    /// `driver_info.fast_track`).
    pub fn fast_track_enabled(&self, node: &Node) -> bool {
        enabled(self.config(), node)
    }

    /// Whether an agent may look itself up for `node` now: the wait states,
    /// and with fast track the stable states where the agent is kept running.
    pub fn lookup_allowed(&self, node: &Node) -> bool {
        node.provision_state
            .allows_lookup(self.fast_track_enabled(node))
    }

    /// Gets an agent for the phase starting on `node`: the running one when
    /// fast track is usable (its last command forgotten, its token kept),
    /// else a fresh one (the old agent's data wiped, the ramdisk booted).
    /// `reset` runs on the node either way (phase data to forget). Returns
    /// whether the running agent is reused, or why booting the ramdisk
    /// failed.
    pub(super) async fn agent_for_phase(
        &self,
        node: &Node,
        reset: &(dyn Fn(&mut Node) + Send + Sync),
    ) -> Result<Result<bool, PowerError>, ConductorError> {
        if self.fast_track_usable(node).await {
            self.modify(&node.uuid, |n| {
                forget_command(n);
                reset(n);
            })
            .await?;
            return Ok(Ok(true));
        }
        // The agent must look itself up again and gets a fresh token.
        self.modify(&node.uuid, |n| {
            n.wipe_agent_info();
            reset(n);
        })
        .await?;
        Ok(self.boot_agent(node).await.map(|()| false))
    }

    /// Whether the phase starting on `node` can drive the agent that is
    /// already running instead of booting the ramdisk (Ironic's
    /// `is_fast_track`): see the module documentation. The power state is
    /// read from the driver, as Ironic does; a failed read means no.
    pub(super) async fn fast_track_usable(&self, node: &Node) -> bool {
        if !usable_on_record(self.config(), node, now_ms()) {
            if self.fast_track_enabled(node) {
                debug!(node = %node.uuid, "fast track not usable: no recent agent heartbeat, powered off or in maintenance");
            }
            return false;
        }
        let power = match self.power_driver(node) {
            Ok(driver) => driver.get_power_state(&Self::power_target(node)).await,
            Err(e) => Err(e),
        };
        match power {
            Ok(PowerState::On) => {
                info!(node = %node.uuid, state = %node.provision_state, "fast track: driving the running agent, no ramdisk boot");
                true
            }
            Ok(PowerState::Off) => {
                info!(node = %node.uuid, "fast track not usable: the node is powered off");
                false
            }
            Err(e) => {
                info!(node = %node.uuid, error = %e, "fast track not usable: reading the power state failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::now_iso;

    fn node(driver_info: Value) -> Node {
        Node {
            driver_info: driver_info.as_object().cloned().unwrap_or_default(),
            ..Node::default()
        }
    }

    #[test]
    fn the_node_setting_wins() {
        let on = Config {
            fast_track: true,
            ..Config::default()
        };
        let off = Config::default();
        assert!(!enabled(&off, &node(json!({}))));
        assert!(enabled(&on, &node(json!({}))));
        assert!(!enabled(&on, &node(json!({"fast_track": false}))));
        assert!(!enabled(&on, &node(json!({"fast_track": "False"}))));
        assert!(enabled(&off, &node(json!({"fast_track": true}))));
        assert!(enabled(&off, &node(json!({"fast_track": "yes"}))));
        assert!(enabled(&on, &node(json!({"fast_track": "maybe"}))));
        let mut maint = node(json!({}));
        maint.maintenance = true;
        assert!(enabled(&on, &maint) && !keeps_agent(&on, &maint));
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_utc_ms("1970-01-01T00:00:01.500000+00:00"), Some(1500));
        assert_eq!(parse_utc_ms("1970-01-01T00:01:00Z"), Some(60_000));
        assert_eq!(parse_utc_ms("1970-01-02T00:00:00.25"), Some(86_400_250));
        assert_eq!(parse_utc_ms("1970-01-01T00:00:00+02:00"), None);
        assert_eq!(parse_utc_ms("yesterday"), None);
        assert_eq!(parse_utc_ms("1970-13-01T00:00:00"), None);
        let now = now_ms();
        let parsed = parse_utc_ms(&now_iso()).unwrap_or_default();
        assert!((now - parsed).abs() < 1000, "{now} vs {parsed}");
    }

    #[test]
    fn heartbeats_age() {
        let mut n = node(json!({}));
        assert!(!heartbeat_fresh(&n, 300, now_ms()), "no heartbeat");
        n.driver_internal_info
            .insert("agent_last_heartbeat".into(), json!(now_iso()));
        assert!(heartbeat_fresh(&n, 300, now_ms()));
        assert!(!heartbeat_fresh(&n, 300, now_ms() + 301_000));
        assert!(!heartbeat_fresh(&n, 0, now_ms() + 1));
    }

    #[test]
    fn usable_needs_power_agent_and_a_recent_heartbeat() {
        let config = Config {
            fast_track: true,
            ..Config::default()
        };
        let mut n = node(json!({}));
        n.power_state = Some(PowerState::On);
        for (k, v) in [
            ("agent_url", "http://10.0.0.5:9999"),
            ("agent_secret_token", "t"),
        ] {
            n.driver_internal_info.insert(k.into(), json!(v));
        }
        n.driver_internal_info
            .insert("agent_last_heartbeat".into(), json!(now_iso()));
        assert!(usable_on_record(&config, &n, now_ms()));
        assert!(!usable_on_record(&Config::default(), &n, now_ms()));
        let mut off = n.clone();
        off.power_state = Some(PowerState::Off);
        assert!(!usable_on_record(&config, &off, now_ms()));
        let mut maint = n.clone();
        maint.maintenance = true;
        assert!(!usable_on_record(&config, &maint, now_ms()));
        let mut no_token = n.clone();
        no_token.driver_internal_info.remove("agent_secret_token");
        assert!(!usable_on_record(&config, &no_token, now_ms()));
        assert!(!usable_on_record(&config, &n, now_ms() + 300_000));
    }
}

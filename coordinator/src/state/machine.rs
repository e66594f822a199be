//! States and transitions, as in Ironic's `ironic/common/states.py` for the
//! states Ingot supports. The table is the only place that decides whether a
//! change of state is allowed; the API (verbs) and the conductor (events) both
//! go through [`ProvisionState::on`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's provision state, spelled as Ironic spells it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProvisionState {
    /// Enrolled, credentials not verified.
    #[serde(rename = "enroll")]
    Enroll,
    /// Checking the BMC credentials.
    #[serde(rename = "verifying")]
    Verifying,
    /// Under the operator's control.
    #[serde(rename = "manageable")]
    Manageable,
    /// Inspection starting.
    #[serde(rename = "inspecting")]
    Inspecting,
    /// Waiting for the agent to report the inventory.
    #[serde(rename = "inspect wait")]
    InspectWait,
    /// Inspection failed.
    #[serde(rename = "inspect failed")]
    InspectFailed,
    /// Cleaning starting or between steps.
    #[serde(rename = "cleaning")]
    Cleaning,
    /// Waiting for the agent (clean steps run in the ramdisk).
    #[serde(rename = "clean wait")]
    CleanWait,
    /// Cleaning failed.
    #[serde(rename = "clean failed")]
    CleanFailed,
    /// Ready to deploy.
    #[serde(rename = "available")]
    Available,
    /// Deploy starting.
    #[serde(rename = "deploying")]
    Deploying,
    /// Waiting for the agent (deploy steps run in the ramdisk).
    #[serde(rename = "wait call-back")]
    WaitCallBack,
    /// Deploy failed.
    #[serde(rename = "deploy failed")]
    DeployFailed,
    /// Deployed.
    #[serde(rename = "active")]
    Active,
    /// Tearing down an instance.
    #[serde(rename = "deleting")]
    Deleting,
    /// Tear-down failed.
    #[serde(rename = "error")]
    Error,
}

/// Every state, for tests and documentation.
pub const ALL_STATES: [ProvisionState; 16] = [
    ProvisionState::Enroll,
    ProvisionState::Verifying,
    ProvisionState::Manageable,
    ProvisionState::Inspecting,
    ProvisionState::InspectWait,
    ProvisionState::InspectFailed,
    ProvisionState::Cleaning,
    ProvisionState::CleanWait,
    ProvisionState::CleanFailed,
    ProvisionState::Available,
    ProvisionState::Deploying,
    ProvisionState::WaitCallBack,
    ProvisionState::DeployFailed,
    ProvisionState::Active,
    ProvisionState::Deleting,
    ProvisionState::Error,
];

/// Something that moves a node between states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// `manage` verb (and the end of a manual clean).
    Manage,
    /// `provide` verb.
    Provide,
    /// `inspect` verb.
    Inspect,
    /// `clean` verb (manual cleaning).
    Clean,
    /// `active`/`deploy` verb.
    Deploy,
    /// `rebuild` verb.
    Rebuild,
    /// `deleted`/`undeploy` verb.
    Delete,
    /// `abort` verb.
    Abort,
    /// The operation finished.
    Done,
    /// The operation failed.
    Fail,
    /// The operation now waits for the agent.
    Wait,
    /// Tear-down finished: automated cleaning starts.
    StartClean,
}

/// A provision verb of `PUT /v1/nodes/{id}/states/provision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `manage`
    Manage,
    /// `provide`
    Provide,
    /// `inspect`
    Inspect,
    /// `clean`
    Clean,
    /// `active` or `deploy`
    Deploy,
    /// `rebuild`
    Rebuild,
    /// `deleted` or `undeploy`
    Undeploy,
    /// `abort`
    Abort,
}

/// A verb or event that is not allowed in the node's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event:?} is not allowed in state \"{state}\"")]
pub struct InvalidTransition {
    /// The state the node was in.
    pub state: ProvisionState,
    /// What was attempted.
    pub event: Event,
}

impl ProvisionState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enroll => "enroll",
            Self::Verifying => "verifying",
            Self::Manageable => "manageable",
            Self::Inspecting => "inspecting",
            Self::InspectWait => "inspect wait",
            Self::InspectFailed => "inspect failed",
            Self::Cleaning => "cleaning",
            Self::CleanWait => "clean wait",
            Self::CleanFailed => "clean failed",
            Self::Available => "available",
            Self::Deploying => "deploying",
            Self::WaitCallBack => "wait call-back",
            Self::DeployFailed => "deploy failed",
            Self::Active => "active",
            Self::Deleting => "deleting",
            Self::Error => "error",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s)
    }

    /// States in which the node network-boots the provisioning ramdisk:
    /// `/boot/ipxe/<mac>` serves it and the DHCP server answers the node.
    pub fn boots_ramdisk(self) -> bool {
        matches!(
            self,
            Self::Inspecting
                | Self::InspectWait
                | Self::Cleaning
                | Self::CleanWait
                | Self::Deploying
                | Self::WaitCallBack
        )
    }

    /// States in which the coordinator is actively working on the node. A
    /// coordinator that restarts finds such nodes orphaned and fails them.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Verifying | Self::Inspecting | Self::Cleaning | Self::Deploying | Self::Deleting
        )
    }

    /// States that wait for the agent; each has a timeout.
    pub fn is_wait(self) -> bool {
        matches!(
            self,
            Self::InspectWait | Self::CleanWait | Self::WaitCallBack
        )
    }

    /// States in which an agent may look itself up: the wait states, entered
    /// once the coordinator has booted the ramdisk, and with fast track
    /// (`fast_track`: on for the node) also the stable states in which the
    /// agent is kept running between operations ([`Self::keeps_agent`]).
    /// Ironic's fast-track list also has the transient states (inspecting,
    /// cleaning, deploying); Ingot does not allow them: there the conductor
    /// decides between driving the running agent and booting the ramdisk,
    /// and a stale agent that looked up just before a boot would get a token
    /// that the boot wipes.
    pub fn allows_lookup(self, fast_track: bool) -> bool {
        self.is_wait() || (fast_track && self.keeps_agent())
    }

    /// Stable states in which, with fast track, the agent keeps running and
    /// heartbeating between operations (enroll, manageable, available: the
    /// stable part of Ironic's `FASTTRACK_LOOKUP_ALLOWED_STATES`). Heartbeats
    /// there only record the agent.
    pub fn keeps_agent(self) -> bool {
        matches!(self, Self::Enroll | Self::Manageable | Self::Available)
    }

    /// States in which a node may be deleted (Ironic's `DELETE_ALLOWED_STATES`).
    pub fn allows_delete(self) -> bool {
        matches!(self, Self::Manageable | Self::Enroll | Self::Available)
    }

    /// States in which a node may be updated while a target is set
    /// (Ironic's `UPDATE_ALLOWED_STATES`, restricted to ours).
    pub fn allows_update_in_transition(self) -> bool {
        matches!(
            self,
            Self::DeployFailed
                | Self::Inspecting
                | Self::InspectFailed
                | Self::InspectWait
                | Self::CleanFailed
                | Self::Error
                | Self::Verifying
        )
    }

    /// Ironic's `FAILURE_STATES` (of ours): a power action there keeps
    /// `last_error`, which says why the node is there.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::DeployFailed | Self::CleanFailed | Self::InspectFailed | Self::Error
        )
    }

    /// The failure state of an operation in this state, used for timeouts and
    /// restart recovery.
    pub fn failure_state(self) -> Option<Self> {
        match self {
            Self::Verifying => Some(Self::Enroll),
            Self::Inspecting | Self::InspectWait => Some(Self::InspectFailed),
            Self::Cleaning | Self::CleanWait => Some(Self::CleanFailed),
            Self::Deploying | Self::WaitCallBack => Some(Self::DeployFailed),
            Self::Deleting => Some(Self::Error),
            _ => None,
        }
    }

    /// Applies an event; the whole transition table of the supported states.
    pub fn on(self, event: Event) -> Result<Self, InvalidTransition> {
        use Event as E;
        use ProvisionState as S;
        let next = match (self, event) {
            (S::Enroll, E::Manage) => S::Verifying,
            (S::Verifying, E::Done) => S::Manageable,
            (S::Verifying, E::Fail) => S::Enroll,
            (S::Manageable, E::Provide) => S::Cleaning,
            (S::Manageable, E::Clean) => S::Cleaning,
            (S::Manageable, E::Inspect) => S::Inspecting,
            (S::Inspecting, E::Done) => S::Manageable,
            (S::Inspecting, E::Fail) => S::InspectFailed,
            (S::Inspecting, E::Wait) => S::InspectWait,
            (S::InspectWait, E::Done) => S::Manageable,
            (S::InspectWait, E::Fail | E::Abort) => S::InspectFailed,
            (S::InspectFailed, E::Manage) => S::Manageable,
            (S::InspectFailed, E::Inspect) => S::Inspecting,
            (S::Available, E::Deploy) => S::Deploying,
            (S::Available, E::Manage) => S::Manageable,
            (S::Deploying, E::Wait) => S::WaitCallBack,
            (S::Deploying, E::Done) => S::Active,
            (S::Deploying, E::Fail) => S::DeployFailed,
            (S::WaitCallBack, E::Done) => S::Active,
            (S::WaitCallBack, E::Fail | E::Abort) => S::DeployFailed,
            (S::WaitCallBack, E::Delete) => S::Deleting,
            (S::DeployFailed, E::Rebuild | E::Deploy) => S::Deploying,
            (S::DeployFailed, E::Delete) => S::Deleting,
            (S::Active, E::Rebuild) => S::Deploying,
            (S::Active, E::Delete) => S::Deleting,
            (S::Deleting, E::StartClean) => S::Cleaning,
            (S::Deleting, E::Fail) => S::Error,
            (S::Cleaning, E::Wait) => S::CleanWait,
            (S::Cleaning, E::Done) => S::Available,
            (S::Cleaning, E::Manage) => S::Manageable,
            (S::Cleaning, E::Fail) => S::CleanFailed,
            (S::CleanWait, E::Done) => S::Available,
            (S::CleanWait, E::Manage) => S::Manageable,
            (S::CleanWait, E::Fail | E::Abort) => S::CleanFailed,
            (S::CleanFailed, E::Manage) => S::Manageable,
            (S::Error, E::Rebuild) => S::Deploying,
            (S::Error, E::Delete) => S::Deleting,
            (state, event) => return Err(InvalidTransition { state, event }),
        };
        Ok(next)
    }
}

impl fmt::Display for ProvisionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Verb {
    /// Parses a `target` of the provision API and checks its minimum microversion.
    /// Returns `Err(Some(min))` when the verb exists but needs a newer version,
    /// `Err(None)` when it is unknown.
    pub fn parse(target: &str, minor: u32) -> Result<Self, Option<u32>> {
        let (verb, min) = match target {
            "active" => (Self::Deploy, 1),
            "deploy" => (Self::Deploy, 73),
            "rebuild" => (Self::Rebuild, 1),
            "deleted" => (Self::Undeploy, 1),
            "undeploy" => (Self::Undeploy, 73),
            "manage" => (Self::Manage, 4),
            "provide" => (Self::Provide, 4),
            "inspect" => (Self::Inspect, 6),
            "abort" => (Self::Abort, 13),
            "clean" => (Self::Clean, 15),
            _ => return Err(None),
        };
        if minor < min {
            return Err(Some(min));
        }
        Ok(verb)
    }

    /// The event the verb fires.
    pub fn event(self) -> Event {
        match self {
            Self::Manage => Event::Manage,
            Self::Provide => Event::Provide,
            Self::Inspect => Event::Inspect,
            Self::Clean => Event::Clean,
            Self::Deploy => Event::Deploy,
            Self::Rebuild => Event::Rebuild,
            Self::Undeploy => Event::Delete,
            Self::Abort => Event::Abort,
        }
    }

    /// The name Ironic uses in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manage => "manage",
            Self::Provide => "provide",
            Self::Inspect => "inspect",
            Self::Clean => "clean",
            Self::Deploy => "deploy",
            Self::Rebuild => "rebuild",
            Self::Undeploy => "deleted",
            Self::Abort => "abort",
        }
    }
}

/// The target state shown while a node is in `state` after `verb`.
pub fn target_after(verb: Verb, state: ProvisionState) -> Option<ProvisionState> {
    use ProvisionState as S;
    match (verb, state) {
        (_, S::Verifying | S::Inspecting) => Some(S::Manageable),
        (Verb::Clean, S::Cleaning) => Some(S::Manageable),
        (_, S::Cleaning) => Some(S::Available),
        (_, S::Deploying) => Some(S::Active),
        (_, S::Deleting) => Some(S::Available),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in ALL_STATES {
            assert_eq!(ProvisionState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn lifecycle_path() {
        use Event as E;
        use ProvisionState as S;
        let mut s = S::Enroll;
        for e in [
            E::Manage,
            E::Done,
            E::Provide,
            E::Done,
            E::Deploy,
            E::Wait,
            E::Done,
            E::Delete,
            E::StartClean,
            E::Wait,
            E::Done,
        ] {
            s = s.on(e).unwrap();
        }
        assert_eq!(s, S::Available);
    }

    #[test]
    fn invalid_transitions_are_refused() {
        assert!(ProvisionState::Enroll.on(Event::Deploy).is_err());
        assert!(ProvisionState::Active.on(Event::Provide).is_err());
        assert!(ProvisionState::Available.on(Event::Abort).is_err());
    }

    #[test]
    fn every_wait_and_transient_state_can_fail() {
        for s in ALL_STATES {
            if s.is_wait() || s.is_transient() {
                let f = s.failure_state().unwrap();
                if s != ProvisionState::Verifying {
                    assert_eq!(s.on(Event::Fail).unwrap(), f);
                }
            }
        }
    }

    #[test]
    fn lookup_in_stable_states_needs_fast_track() {
        use ProvisionState as S;
        for s in ALL_STATES {
            assert_eq!(s.allows_lookup(false), s.is_wait(), "{s}");
            let stable = matches!(s, S::Enroll | S::Manageable | S::Available);
            assert_eq!(s.allows_lookup(true), s.is_wait() || stable, "{s}");
            assert!(!(s.is_transient() && s.allows_lookup(true)), "{s}");
        }
    }

    #[test]
    fn verbs_check_microversions() {
        assert_eq!(Verb::parse("manage", 1), Err(Some(4)));
        assert_eq!(Verb::parse("manage", 4), Ok(Verb::Manage));
        assert_eq!(Verb::parse("deploy", 72), Err(Some(73)));
        assert_eq!(Verb::parse("bogus", 99), Err(None));
    }
}

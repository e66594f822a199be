//! Power states and actions, typed, with Ironic's spellings on the wire and
//! in the stored node document.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Power states as Ironic spells them (`power_state`, `target_power_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    /// `power on`
    #[serde(rename = "power on")]
    On,
    /// `power off`
    #[serde(rename = "power off")]
    Off,
}

impl PowerState {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "power on",
            Self::Off => "power off",
        }
    }

    /// Reads Ironic's spelling; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "power on" => Some(Self::On),
            "power off" => Some(Self::Off),
            _ => None,
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A power action (`target` of `states/power`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerAction {
    /// `power on`
    #[serde(rename = "power on")]
    On,
    /// `power off`
    #[serde(rename = "power off")]
    Off,
    /// `rebooting`
    #[serde(rename = "rebooting")]
    Reboot,
    /// `soft power off`
    #[serde(rename = "soft power off")]
    SoftOff,
    /// `soft rebooting`
    #[serde(rename = "soft rebooting")]
    SoftReboot,
}

impl PowerAction {
    /// Parses the API's `target`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "power on" => Self::On,
            "power off" => Self::Off,
            "rebooting" => Self::Reboot,
            "soft power off" => Self::SoftOff,
            "soft rebooting" => Self::SoftReboot,
            _ => return None,
        })
    }

    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "power on",
            Self::Off => "power off",
            Self::Reboot => "rebooting",
            Self::SoftOff => "soft power off",
            Self::SoftReboot => "soft rebooting",
        }
    }

    /// The power state after the action (Ironic's `target_power_state`
    /// while it runs: `power on` for the reboots, `power off` for the soft
    /// power off).
    pub fn resulting_state(self) -> PowerState {
        match self {
            Self::Off | Self::SoftOff => PowerState::Off,
            Self::On | Self::Reboot | Self::SoftReboot => PowerState::On,
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a stored `target_power_state`. Nodes written before it was typed
/// may hold the action (`rebooting`, `soft power off`, `soft rebooting`):
/// those read as the state the action leads to, as Ironic records it.
pub fn deserialize_target<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PowerState>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.as_deref()
        .and_then(PowerAction::parse)
        .map(PowerAction::resulting_state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in [PowerState::On, PowerState::Off] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<PowerState>(&json).unwrap(), s);
            assert_eq!(PowerState::parse(s.as_str()), Some(s));
        }
        for a in [
            PowerAction::On,
            PowerAction::Off,
            PowerAction::Reboot,
            PowerAction::SoftOff,
            PowerAction::SoftReboot,
        ] {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(PowerAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(PowerState::parse("error"), None);
    }

    #[test]
    fn old_targets_read_as_states() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize_target", default)]
            t: Option<PowerState>,
        }
        let read = |j: &str| serde_json::from_str::<T>(j).unwrap().t;
        assert_eq!(read(r#"{"t":"rebooting"}"#), Some(PowerState::On));
        assert_eq!(read(r#"{"t":"soft power off"}"#), Some(PowerState::Off));
        assert_eq!(read(r#"{"t":"power on"}"#), Some(PowerState::On));
        assert_eq!(read(r#"{"t":null}"#), None);
        assert_eq!(read(r#"{}"#), None);
    }
}

//! The switch OS families the SSH driver speaks: one row of data each
//! ([`Family`]), rendered into command lines by [`change_commands`] and
//! read back by [`parse_port`].
//!
//! The commands are those of networking-generic-switch's device classes
//! (its `PLUG_PORT_TO_NETWORK`, `ADD_NETWORK_TO_TRUNK`, `SET_NATIVE_VLAN`
//! and save steps) and of the vendors' configuration guides; docs/network.md
//! lists them per family. Quarantine is an access port on the quarantine
//! VLAN, as on Open vSwitch, so it uses the access commands.
//!
//! The VLANs must exist on the switch (created by its operator); the driver
//! only moves ports between them.

use std::collections::BTreeSet;

use crate::network::config::SshDeviceType;
use crate::network::switch::{PortState, VlanId};

/// How a family's read-back output is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// `show running-config interface X` in the IOS style
    /// (`switchport mode`, `switchport access vlan`, `switchport trunk …`).
    CiscoLike {
        /// Without a `switchport mode` line the port is an access port
        /// (NX-OS, EOS, OS10); on IOS the default is dynamic, which we
        /// never set.
        default_access: bool,
        /// The trunk's native VLAN is `switchport access vlan` (OS10),
        /// not `switchport trunk native vlan`.
        native_is_access_vlan: bool,
    },
    /// Junos `show configuration interfaces X` (curly-brace text).
    Junos,
    /// SONiC `show vlan config` (a table of VLAN, member, tagging).
    Sonic,
    /// Cumulus `nv config show -o json` (the applied configuration).
    Nvue,
}

/// One switch OS family: every command the driver sends, as templates with
/// `{port}`, `{vlan}`, `{native}` and `{allowed}`.
#[derive(Debug)]
pub struct Family {
    /// networking-generic-switch's name (`device_type`).
    pub name: &'static str,
    /// Once after login (paging off).
    pub session_start: &'static [&'static str],
    /// Before the first change of a session (enter configuration mode).
    pub config_start: &'static [&'static str],
    /// Before each port's change (select the interface).
    pub port_start: &'static [&'static str],
    /// For each VLAN the port is in now, read back first (SONiC, whose
    /// memberships are added and deleted one by one): `{vlan}`.
    pub remove_member: Option<&'static str>,
    /// An access port on `{vlan}`.
    pub access: &'static [&'static str],
    /// A trunk carrying `{allowed}`.
    pub trunk: &'static [&'static str],
    /// For each allowed VLAN of a trunk: `{vlan}`.
    pub trunk_each: &'static [&'static str],
    /// A trunk's native VLAN `{native}`.
    pub native: &'static [&'static str],
    /// A trunk without native VLAN; `None` when the family cannot express
    /// it (untagged frames always land in a VLAN, 1 by default).
    pub no_native: Option<&'static [&'static str]>,
    /// After each port's change (leave the interface).
    pub port_end: &'static [&'static str],
    /// After the last change of a session: save or commit, leave
    /// configuration mode.
    pub config_end: &'static [&'static str],
    /// Reads a port's state back (`{port}`), outside configuration mode.
    pub show: &'static str,
    /// How [`Family::show`]'s output is read.
    pub parser: Parser,
    /// How `{allowed}` separates VLANs (ranges are never used).
    pub list_separator: &'static str,
    /// An output line starting with one of these (after leading blanks)
    /// means the command failed.
    pub errors: &'static [&'static str],
}

const CISCO_ERRORS: &[&str] = &["% ", "%Error", "Error:"];
const LINUX_ERRORS: &[&str] = &["Error:", "error:", "Usage:", "sudo:", "-bash:", "bash:"];

const CISCO_IOS: Family = Family {
    name: "cisco_ios",
    session_start: &["terminal length 0"],
    config_start: &["configure terminal"],
    port_start: &["interface {port}"],
    remove_member: None,
    access: &[
        "no switchport trunk native vlan",
        "no switchport trunk allowed vlan",
        "switchport mode access",
        "switchport access vlan {vlan}",
    ],
    trunk: &[
        "no switchport access vlan",
        "switchport mode trunk",
        "switchport trunk allowed vlan {allowed}",
    ],
    trunk_each: &[],
    native: &["switchport trunk native vlan {native}"],
    no_native: None,
    port_end: &["exit"],
    config_end: &["end", "write memory"],
    show: "show running-config interface {port}",
    parser: Parser::CiscoLike {
        default_access: false,
        native_is_access_vlan: false,
    },
    list_separator: ",",
    errors: CISCO_ERRORS,
};

const CISCO_NXOS: Family = Family {
    name: "cisco_nxos",
    config_end: &["end", "copy running-config startup-config"],
    parser: Parser::CiscoLike {
        default_access: true,
        native_is_access_vlan: false,
    },
    ..CISCO_IOS
};

const ARISTA_EOS: Family = Family {
    name: "arista_eos",
    config_end: &["end", "copy running-config startup-config"],
    parser: Parser::CiscoLike {
        default_access: true,
        native_is_access_vlan: false,
    },
    ..CISCO_IOS
};

const DELL_OS10: Family = Family {
    name: "dell_os10",
    access: &["switchport mode access", "switchport access vlan {vlan}"],
    // Through access mode first, which drops the tagged VLANs of an earlier
    // trunk (OS10's `switchport trunk allowed vlan` adds to them).
    trunk: &[
        "switchport mode access",
        "switchport mode trunk",
        "switchport trunk allowed vlan {allowed}",
    ],
    native: &["switchport access vlan {native}"],
    config_end: &["end", "copy running-configuration startup-configuration"],
    show: "show running-configuration interface {port}",
    parser: Parser::CiscoLike {
        default_access: true,
        native_is_access_vlan: true,
    },
    ..CISCO_IOS
};

const JUNIPER_JUNOS: Family = Family {
    name: "juniper_junos",
    session_start: &["set cli screen-length 0"],
    config_start: &["configure"],
    port_start: &[
        "delete interfaces {port} native-vlan-id",
        "delete interfaces {port} unit 0 family ethernet-switching",
    ],
    remove_member: None,
    access: &[
        "set interfaces {port} unit 0 family ethernet-switching interface-mode access",
        "set interfaces {port} unit 0 family ethernet-switching vlan members {vlan}",
    ],
    trunk: &[
        "set interfaces {port} unit 0 family ethernet-switching interface-mode trunk",
        "set interfaces {port} unit 0 family ethernet-switching vlan members [ {allowed} ]",
    ],
    trunk_each: &[],
    native: &["set interfaces {port} native-vlan-id {native}"],
    no_native: Some(&[]),
    port_end: &[],
    config_end: &["commit", "exit configuration-mode"],
    show: "show configuration interfaces {port}",
    parser: Parser::Junos,
    list_separator: " ",
    errors: &[
        "error:",
        "syntax error",
        "unknown command",
        "missing argument",
    ],
};

const SONIC: Family = Family {
    name: "sonic",
    session_start: &[],
    config_start: &[],
    port_start: &[],
    remove_member: Some("sudo config vlan member del {vlan} {port}"),
    access: &["sudo config vlan member add -u {vlan} {port}"],
    trunk: &[],
    trunk_each: &["sudo config vlan member add {vlan} {port}"],
    native: &["sudo config vlan member add -u {native} {port}"],
    no_native: Some(&[]),
    port_end: &[],
    config_end: &["sudo config save -y"],
    show: "show vlan config",
    parser: Parser::Sonic,
    list_separator: ",",
    errors: LINUX_ERRORS,
};

const CUMULUS_NVUE: Family = Family {
    name: "cumulus_nvue",
    session_start: &[],
    config_start: &[],
    port_start: &["nv unset interface {port} bridge domain br_default"],
    remove_member: None,
    access: &["nv set interface {port} bridge domain br_default access {vlan}"],
    trunk: &["nv set interface {port} bridge domain br_default vlan {allowed}"],
    trunk_each: &[],
    native: &["nv set interface {port} bridge domain br_default untagged {native}"],
    no_native: Some(&["nv set interface {port} bridge domain br_default untagged none"]),
    port_end: &[],
    config_end: &["nv config apply -y", "nv config save"],
    show: "nv config show -o json",
    parser: Parser::Nvue,
    list_separator: ",",
    errors: LINUX_ERRORS,
};

/// The table row of a family.
pub fn family(device_type: SshDeviceType) -> &'static Family {
    match device_type {
        SshDeviceType::CiscoIos => &CISCO_IOS,
        SshDeviceType::CiscoNxos => &CISCO_NXOS,
        SshDeviceType::AristaEos => &ARISTA_EOS,
        SshDeviceType::JuniperJunos => &JUNIPER_JUNOS,
        SshDeviceType::DellOs10 => &DELL_OS10,
        SshDeviceType::Sonic => &SONIC,
        SshDeviceType::CumulusNvue => &CUMULUS_NVUE,
    }
}

/// True for a port name that is safe inside a command line: 1 to 64
/// letters, digits, `/`, `.`, `:`, `-` or `_` (`Ethernet1/1`,
/// `ge-0/0/1`, `swp1`, `ethernet1/1/1:1`). Anything else could carry
/// another command.
pub fn valid_port_name(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 64
        && port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b':' | b'-' | b'_'))
}

fn render(
    template: &str,
    port: &str,
    vlan: Option<VlanId>,
    native: Option<VlanId>,
    allowed: &str,
) -> String {
    let mut s = template
        .replace("{port}", port)
        .replace("{allowed}", allowed);
    if let Some(v) = vlan {
        s = s.replace("{vlan}", &v.to_string());
    }
    if let Some(n) = native {
        s = s.replace("{native}", &n.to_string());
    }
    s
}

/// The command lines that put `port` into `state` (inside configuration
/// mode, without [`Family::config_start`] and [`Family::config_end`]).
/// `current` is the VLANs the port is in now, used by families with
/// [`Family::remove_member`]. Quarantine is access on `quarantine`, which
/// cannot be used otherwise.
pub fn change_commands(
    family: &Family,
    port: &str,
    state: &PortState,
    quarantine: VlanId,
    current: &BTreeSet<VlanId>,
) -> Result<Vec<String>, String> {
    if !valid_port_name(port) {
        return Err(format!(
            "port name {port:?}: only letters, digits, '/', '.', ':', '-' and '_' are sent to a switch CLI"
        ));
    }
    let mut lines = Vec::new();
    let mut push =
        |templates: &[&str], vlan: Option<VlanId>, native: Option<VlanId>, allowed: &str| {
            for t in templates {
                lines.push(render(t, port, vlan, native, allowed));
            }
        };
    push(family.port_start, None, None, "");
    if let Some(template) = family.remove_member {
        for v in current {
            push(&[template], Some(*v), None, "");
        }
    }
    match state {
        PortState::Access { vlan } => {
            if *vlan == quarantine {
                return Err(format!(
                    "VLAN {vlan} is the quarantine VLAN: quarantine the port instead"
                ));
            }
            push(family.access, Some(*vlan), None, "");
        }
        PortState::Quarantined => push(family.access, Some(quarantine), None, ""),
        PortState::Trunk { native, allowed } => {
            if allowed.is_empty() {
                return Err("a trunk needs at least one allowed VLAN".into());
            }
            if *native == Some(quarantine) || allowed.contains(&quarantine) {
                return Err(format!(
                    "VLAN {quarantine} is the quarantine VLAN and cannot be trunked"
                ));
            }
            let list = allowed
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(family.list_separator);
            push(family.trunk, None, None, &list);
            for v in allowed {
                push(family.trunk_each, Some(*v), None, "");
            }
            match native {
                Some(n) => push(family.native, None, Some(*n), ""),
                None => match family.no_native {
                    Some(templates) => push(templates, None, None, ""),
                    None => {
                        return Err(format!(
                            "{} cannot drop untagged frames on a trunk (they go to the native VLAN, 1 by default): give a native VLAN",
                            family.name
                        ));
                    }
                },
            }
        }
        PortState::AllVlans | PortState::Other { .. } => {
            return Err(format!("{state} cannot be set"));
        }
    }
    push(family.port_end, None, None, "");
    Ok(lines)
}

/// The read-back command for `port`.
pub fn show_command(family: &Family, port: &str) -> String {
    family.show.replace("{port}", port)
}

/// Reads `port`'s state from the output of [`show_command`] (the command's
/// echo and the prompt already removed). An access port on `quarantine`
/// reads as [`PortState::Quarantined`].
pub fn parse_port(
    family: &Family,
    port: &str,
    output: &str,
    quarantine: VlanId,
) -> Result<PortState, String> {
    let state = match family.parser {
        Parser::CiscoLike {
            default_access,
            native_is_access_vlan,
        } => parse_cisco_like(output, default_access, native_is_access_vlan)?,
        Parser::Junos => parse_junos(output)?,
        Parser::Sonic => {
            let (untagged, tagged) = sonic_members(output, port)?;
            from_members(untagged, tagged)
        }
        Parser::Nvue => parse_nvue(output, port)?,
    };
    Ok(match state {
        PortState::Access { vlan } if vlan == quarantine => PortState::Quarantined,
        other => other,
    })
}

/// The VLANs `port` is a member of (SONiC's read back), for
/// [`Family::remove_member`].
pub fn current_members(
    family: &Family,
    port: &str,
    output: &str,
) -> Result<BTreeSet<VlanId>, String> {
    match family.parser {
        Parser::Sonic => {
            let (untagged, tagged) = sonic_members(output, port)?;
            Ok(untagged.into_iter().chain(tagged).collect())
        }
        _ => Ok(BTreeSet::new()),
    }
}

fn vlan(text: &str) -> Result<VlanId, String> {
    let n: u16 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a VLAN id"))?;
    VlanId::new(n).ok_or_else(|| format!("VLAN {n} is out of range"))
}

/// `20,30-32` (or `20 30-32`) into VLAN ids; at most 4094 of them.
fn vlan_list(text: &str) -> Result<BTreeSet<VlanId>, String> {
    let mut out = BTreeSet::new();
    for item in text
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (vlan(a)?, vlan(b)?);
                if a > b {
                    return Err(format!("VLAN range {item} is backwards"));
                }
                for n in a.get()..=b.get() {
                    out.extend(VlanId::new(n));
                }
            }
            None => {
                out.insert(vlan(item)?);
            }
        }
    }
    Ok(out)
}

fn parse_cisco_like(
    output: &str,
    default_access: bool,
    native_is_access_vlan: bool,
) -> Result<PortState, String> {
    let mut mode: Option<String> = None;
    let mut access: Option<VlanId> = None;
    let mut native: Option<VlanId> = None;
    let mut allowed: Option<BTreeSet<VlanId>> = None;
    let mut seen_interface = false;
    for line in output.lines().map(str::trim) {
        if line.starts_with("interface ") {
            seen_interface = true;
        } else if let Some(m) = line.strip_prefix("switchport mode ") {
            mode = Some(m.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("switchport access vlan ") {
            access = Some(vlan(v)?);
        } else if let Some(v) = line.strip_prefix("switchport trunk native vlan ") {
            native = Some(vlan(v)?);
        } else if let Some(list) = line.strip_prefix("switchport trunk allowed vlan ") {
            let list = list.trim();
            if let Some(more) = list.strip_prefix("add ") {
                allowed
                    .get_or_insert_with(BTreeSet::new)
                    .extend(vlan_list(more)?);
            } else if list == "none" {
                allowed = Some(BTreeSet::new());
            } else if list == "all" {
                allowed = None;
            } else {
                allowed = Some(vlan_list(list)?);
            }
        }
    }
    if !seen_interface {
        return Err("no interface in the running configuration".into());
    }
    let one = VlanId::new(1).ok_or("VLAN 1")?;
    let mode = match mode.as_deref() {
        Some(m) => m.to_owned(),
        None if default_access => "access".to_owned(),
        None => {
            return Ok(PortState::Other {
                description: "no switchport mode (dynamic)".into(),
            });
        }
    };
    Ok(match mode.as_str() {
        "access" => {
            if native.is_some() || allowed.is_some() {
                PortState::Other {
                    description: "access port with trunk settings".into(),
                }
            } else {
                PortState::access(access.unwrap_or(one))
            }
        }
        "trunk" => {
            let native = if native_is_access_vlan {
                access.unwrap_or(one)
            } else {
                native.unwrap_or(one)
            };
            match allowed {
                None => PortState::AllVlans,
                Some(a) if a.is_empty() => PortState::Other {
                    description: "trunk allowing no VLAN".into(),
                },
                Some(allowed) => PortState::Trunk {
                    native: Some(native),
                    allowed,
                },
            }
        }
        other => PortState::Other {
            description: format!("switchport mode {other}"),
        },
    })
}

fn parse_junos(output: &str) -> Result<PortState, String> {
    let mut mode: Option<String> = None;
    let mut members: Option<BTreeSet<VlanId>> = None;
    let mut native: Option<VlanId> = None;
    let mut any = false;
    for line in output.lines().map(str::trim) {
        let Some(statement) = line.strip_suffix(';') else {
            any |= line.ends_with('{');
            continue;
        };
        any = true;
        if let Some(m) = statement.strip_prefix("interface-mode ") {
            mode = Some(m.trim().to_owned());
        } else if let Some(v) = statement.strip_prefix("native-vlan-id ") {
            native = Some(vlan(v)?);
        } else if let Some(list) = statement.strip_prefix("members ") {
            let list = list.trim().trim_start_matches('[').trim_end_matches(']');
            members = Some(vlan_list(list)?);
        }
    }
    if !any {
        return Ok(PortState::Other {
            description: "no configuration".into(),
        });
    }
    let members = members.unwrap_or_default();
    Ok(match mode.as_deref().unwrap_or("access") {
        "access" if native.is_none() && members.len() == 1 => {
            PortState::access(*members.iter().next().ok_or("one member")?)
        }
        "trunk" if !members.is_empty() => PortState::Trunk {
            native,
            allowed: members,
        },
        m => PortState::Other {
            description: format!("interface-mode {m} with {} VLAN members", members.len()),
        },
    })
}

type Members = (BTreeSet<VlanId>, BTreeSet<VlanId>);

/// SONiC's `show vlan config`: rows of `Name VID Member Mode`; returns the
/// port's untagged and tagged VLANs.
fn sonic_members(output: &str, port: &str) -> Result<Members, String> {
    let mut untagged = BTreeSet::new();
    let mut tagged = BTreeSet::new();
    for line in output.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [_, vid, member, mode] = cols[..] else {
            continue;
        };
        if member != port {
            continue;
        }
        let Ok(vid) = vid.parse::<u16>() else {
            continue;
        };
        let vid = VlanId::new(vid).ok_or_else(|| format!("VLAN {vid} is out of range"))?;
        match mode {
            "untagged" => untagged.insert(vid),
            "tagged" => tagged.insert(vid),
            other => return Err(format!("unknown tagging mode {other:?}")),
        };
    }
    Ok((untagged, tagged))
}

fn from_members(untagged: BTreeSet<VlanId>, tagged: BTreeSet<VlanId>) -> PortState {
    let mut u = untagged.iter();
    match (u.next(), u.next(), tagged.is_empty()) {
        (Some(v), None, true) => PortState::access(*v),
        (native, None, false) => PortState::Trunk {
            native: native.copied(),
            allowed: tagged,
        },
        (None, None, true) => PortState::Other {
            description: "in no VLAN".into(),
        },
        _ => PortState::Other {
            description: format!("untagged in {} VLANs", untagged.len()),
        },
    }
}

fn parse_nvue(output: &str, port: &str) -> Result<PortState, String> {
    let value: serde_json::Value =
        serde_json::from_str(output.trim()).map_err(|e| format!("not JSON: {e}"))?;
    // `nv config show -o json`: a list of objects, one of them {"set": {...}}.
    let set = value
        .as_array()
        .and_then(|items| items.iter().find_map(|i| i.get("set")))
        .ok_or("no \"set\" object")?;
    let Some(domain) = set
        .pointer(&format!(
            "/interface/{}/bridge/domain/br_default",
            port.replace('~', "~0").replace('/', "~1")
        ))
        .and_then(|d| d.as_object())
    else {
        return Ok(PortState::Other {
            description: "not in bridge br_default".into(),
        });
    };
    let number = |v: &serde_json::Value| -> Result<VlanId, String> {
        match v {
            serde_json::Value::Number(n) => vlan(&n.to_string()),
            serde_json::Value::String(s) => vlan(s),
            other => Err(format!("{other} is not a VLAN id")),
        }
    };
    let access = domain.get("access").map(number).transpose()?;
    let untagged = match domain.get("untagged") {
        None => None,
        Some(serde_json::Value::String(s)) if s == "none" => Some(None),
        Some(v) => Some(Some(number(v)?)),
    };
    let vlans = match domain.get("vlan") {
        None => None,
        Some(serde_json::Value::Object(map)) => {
            let mut all = BTreeSet::new();
            for key in map.keys() {
                if key == "all" {
                    return Ok(PortState::AllVlans);
                }
                all.extend(vlan_list(key)?);
            }
            Some(all)
        }
        Some(v) => Some(vlan_list(&v.to_string().replace('"', ""))?),
    };
    Ok(match (access, vlans, untagged) {
        (Some(v), None, None) => PortState::access(v),
        (None, Some(allowed), Some(native)) if !allowed.is_empty() => {
            PortState::Trunk { native, allowed }
        }
        (None, Some(_), None) => PortState::Other {
            description: "trunk with the bridge's default untagged VLAN".into(),
        },
        _ => PortState::Other {
            description: format!(
                "bridge domain settings {}",
                serde_json::Value::Object(domain.clone())
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v(n: u16) -> VlanId {
        VlanId::new(n).unwrap()
    }

    #[test]
    fn port_names_that_could_carry_commands_are_refused() {
        assert!(valid_port_name("Ethernet1/1"));
        assert!(valid_port_name("ge-0/0/1"));
        assert!(valid_port_name("ethernet1/1/1:1"));
        for bad in ["", "swp1; reload", "swp1\nreload", "a b", "x|y"] {
            assert!(!valid_port_name(bad), "{bad:?}");
            let e = change_commands(
                &CISCO_IOS,
                bad,
                &PortState::access(v(10)),
                v(4000),
                &BTreeSet::new(),
            );
            assert!(e.is_err());
        }
    }

    #[test]
    fn the_quarantine_vlan_and_unexpressible_trunks_are_refused() {
        let none = BTreeSet::new();
        assert!(
            change_commands(
                &CISCO_IOS,
                "Gi0/1",
                &PortState::access(v(4000)),
                v(4000),
                &none
            )
            .is_err()
        );
        let trunk = PortState::Trunk {
            native: None,
            allowed: [v(20)].into_iter().collect(),
        };
        let e = change_commands(&CISCO_IOS, "Gi0/1", &trunk, v(4000), &none).unwrap_err();
        assert!(e.contains("give a native VLAN"), "{e}");
        assert!(change_commands(&JUNIPER_JUNOS, "ge-0/0/1", &trunk, v(4000), &none).is_ok());
        let empty = PortState::Trunk {
            native: Some(v(10)),
            allowed: BTreeSet::new(),
        };
        assert!(change_commands(&SONIC, "Ethernet0", &empty, v(4000), &none).is_err());
    }

    #[test]
    fn cisco_like_output_parses() {
        let out = "Building configuration...\n\ninterface GigabitEthernet0/1\n switchport trunk native vlan 10\n switchport trunk allowed vlan 20,30-32\n switchport trunk allowed vlan add 40\n switchport mode trunk\nend\n";
        assert_eq!(
            parse_port(&CISCO_IOS, "Gi0/1", out, v(4000)).unwrap(),
            PortState::Trunk {
                native: Some(v(10)),
                allowed: [20, 30, 31, 32, 40].into_iter().map(v).collect()
            }
        );
        // EOS leaves out the default mode.
        let out = "interface Ethernet1\n   switchport access vlan 4000\n";
        assert_eq!(
            parse_port(&ARISTA_EOS, "Ethernet1", out, v(4000)).unwrap(),
            PortState::Quarantined
        );
        assert!(matches!(
            parse_port(&CISCO_IOS, "Gi0/1", "interface Gi0/1\n", v(4000)).unwrap(),
            PortState::Other { .. }
        ));
        assert_eq!(
            parse_port(
                &CISCO_NXOS,
                "Ethernet1/1",
                "interface Ethernet1/1\n  switchport mode trunk\n",
                v(4000)
            )
            .unwrap(),
            PortState::AllVlans
        );
        let out = "interface ethernet1/1/1\n no shutdown\n switchport mode trunk\n switchport access vlan 10\n switchport trunk allowed vlan 20\n";
        assert_eq!(
            parse_port(&DELL_OS10, "ethernet1/1/1", out, v(4000)).unwrap(),
            PortState::Trunk {
                native: Some(v(10)),
                allowed: [v(20)].into_iter().collect()
            }
        );
    }

    #[test]
    fn junos_output_parses() {
        let out = "native-vlan-id 10;\nunit 0 {\n    family ethernet-switching {\n        interface-mode trunk;\n        vlan {\n            members [ 20 30 ];\n        }\n    }\n}\n";
        assert_eq!(
            parse_port(&JUNIPER_JUNOS, "ge-0/0/1", out, v(4000)).unwrap(),
            PortState::Trunk {
                native: Some(v(10)),
                allowed: [v(20), v(30)].into_iter().collect()
            }
        );
        let out = "unit 0 {\n    family ethernet-switching {\n        interface-mode access;\n        vlan {\n            members 100;\n        }\n    }\n}\n";
        assert_eq!(
            parse_port(&JUNIPER_JUNOS, "ge-0/0/1", out, v(4000)).unwrap(),
            PortState::access(v(100))
        );
        assert!(matches!(
            parse_port(&JUNIPER_JUNOS, "ge-0/0/1", "\n", v(4000)).unwrap(),
            PortState::Other { .. }
        ));
    }

    #[test]
    fn sonic_and_nvue_output_parse() {
        let out = "Name        VID  Member     Mode\n--------  -----  ---------  --------\nVlan10       10  Ethernet0  untagged\nVlan20       20  Ethernet0  tagged\nVlan20       20  Ethernet4  untagged\n";
        assert_eq!(
            parse_port(&SONIC, "Ethernet0", out, v(4000)).unwrap(),
            PortState::Trunk {
                native: Some(v(10)),
                allowed: [v(20)].into_iter().collect()
            }
        );
        assert_eq!(
            parse_port(&SONIC, "Ethernet4", out, v(4000)).unwrap(),
            PortState::access(v(20))
        );
        assert_eq!(
            current_members(&SONIC, "Ethernet0", out).unwrap(),
            [v(10), v(20)].into_iter().collect()
        );
        let out = r#"[{"header": {"model": "VX"}}, {"set": {"interface": {"swp1": {"bridge": {"domain": {"br_default": {"vlan": {"20": {}, "30-31": {}}, "untagged": "none"}}}}, "swp2": {"bridge": {"domain": {"br_default": {"access": 100}}}}}}}]"#;
        assert_eq!(
            parse_port(&CUMULUS_NVUE, "swp1", out, v(4000)).unwrap(),
            PortState::Trunk {
                native: None,
                allowed: [v(20), v(30), v(31)].into_iter().collect()
            }
        );
        assert_eq!(
            parse_port(&CUMULUS_NVUE, "swp2", out, v(4000)).unwrap(),
            PortState::access(v(100))
        );
        assert!(matches!(
            parse_port(&CUMULUS_NVUE, "swp3", out, v(4000)).unwrap(),
            PortState::Other { .. }
        ));
    }
}

//! Settings of tenant network isolation: the switches, the named networks
//! and which network serves which phase.
//!
//! ```toml
//! [switches.tor1]
//! driver = "ovsdb"                            # Open vSwitch over OVSDB (RFC 7047)
//! address = "unix:/run/openvswitch/db.sock"   # or "tcp:10.0.0.2:6640"
//! timeout_ms = 10000                          # one call: connect, request, answer
//!
//! [switches.tor2]
//! driver = "ssh"                              # the switch's CLI over SSH
//! device_type = "cisco_ios"                   # cisco_ios | cisco_nxos | arista_eos | juniper_junos
//!                                             # | dell_os10 | sonic | cumulus_nvue
//! address = "10.0.0.3:22"
//! username = "ingot"
//! key_file = "/etc/ingot/switch.key"          # or password_file
//! known_hosts_file = "/etc/ingot/switch.known_hosts"
//! timeout_ms = 10000                          # connect and log in; each command
//!
//! [networks.provisioning]
//! vlan = 100
//! physical_network = "physnet1"               # optional
//! [networks.quarantine]
//! vlan = 4000
//! [networks.tenant-a]
//! vlan = 201
//!
//! [network_sync]                             # drift check of every switched port
//! interval_ms = 60000                         # 0 turns it off
//! attempts = 3                                # set + read back tries per change
//!
//! [network_roles]
//! provisioning = "provisioning"
//! cleaning = "provisioning"                   # default: provisioning
//! inspection = "provisioning"                 # default: provisioning
//! rescue = "provisioning"                     # default: provisioning
//! quarantine = "quarantine"
//! ```
//!
//! [`validate`] checks them at start: every role names a configured
//! network, no two networks share a VLAN on one physical network, and
//! switches need a provisioning and a quarantine network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::switch::VlanId;
use super::switch::ovsdb::OvsdbAddress;
use super::switch::ssh::session::parse_address;
use crate::config::Config;

/// A switch's settings, by driver (`driver = "ovsdb"` or `"ssh"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "driver", rename_all = "snake_case")]
pub enum SwitchConfig {
    /// Open vSwitch, over OVSDB.
    Ovsdb(OvsdbSwitchConfig),
    /// A vendor CLI over SSH.
    Ssh(SshSwitchConfig),
}

/// `driver = "ovsdb"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsdbSwitchConfig {
    /// `unix:/path/to/db.sock` or `tcp:host:port` (ovsdb-server's
    /// `--remote=punix:…` / `ptcp:…`).
    pub address: String,
    /// Time one call may take, connection included (milliseconds).
    #[serde(default = "default_switch_timeout_ms")]
    pub timeout_ms: u64,
}

/// The switch OS families the SSH driver speaks, with
/// networking-generic-switch's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SshDeviceType {
    /// Cisco IOS.
    CiscoIos,
    /// Cisco NX-OS.
    CiscoNxos,
    /// Arista EOS.
    AristaEos,
    /// Juniper Junos.
    JuniperJunos,
    /// Dell OS10.
    DellOs10,
    /// SONiC.
    Sonic,
    /// Cumulus Linux with NVUE.
    CumulusNvue,
}

/// `driver = "ssh"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSwitchConfig {
    /// The CLI family.
    pub device_type: SshDeviceType,
    /// `host` or `host:port` of the switch's SSH server.
    pub address: String,
    /// Login name.
    pub username: String,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// A private key file.
    pub key_file: Option<PathBuf>,
    /// The switch's host key, in known_hosts format (`host` for port 22,
    /// `[host]:port` otherwise). Required unless
    /// `insecure_accept_any_host_key`.
    pub known_hosts_file: Option<PathBuf>,
    /// Accept whatever host key the switch shows (labs only: anyone on the
    /// path can then pose as the switch and learn the password).
    #[serde(default)]
    pub insecure_accept_any_host_key: bool,
    /// Bound on connecting and logging in, and on each command's answer
    /// (milliseconds).
    #[serde(default = "default_switch_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_switch_timeout_ms() -> u64 {
    10_000
}

/// `[networks.<name>]`: a named network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Its VLAN id (1 to 4094).
    pub vlan: VlanId,
    /// The physical network it lives on (Neutron's `physical_network`);
    /// VLAN ids are unique within one.
    pub physical_network: Option<String>,
    /// A UUID a VIF may name the network by (as Nova names Neutron
    /// networks), besides its name.
    pub uuid: Option<String>,
}

/// `[network_sync]`: the periodic comparison of every switched port with
/// the state the coordinator put it in (like `[power_sync]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSyncConfig {
    /// Time between passes (milliseconds); 0 turns the sync off.
    pub interval_ms: u64,
    /// Tries of one change (set, read back, compare) before it fails
    /// closed.
    pub attempts: u32,
}

impl Default for NetworkSyncConfig {
    fn default() -> Self {
        Self {
            interval_ms: 60_000,
            attempts: 3,
        }
    }
}

/// `[network_roles]`: which named network serves which phase.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkRoles {
    /// Where nodes are deployed from (Ironic's `provisioning_network`).
    pub provisioning: Option<String>,
    /// Cleaning; default: provisioning.
    pub cleaning: Option<String>,
    /// Inspection; default: provisioning.
    pub inspection: Option<String>,
    /// Rescue; default: provisioning.
    pub rescue: Option<String>,
    /// Where a port goes when it is taken off every network.
    pub quarantine: Option<String>,
}

/// A phase during which a node's ports sit on a service network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Deploying.
    Provisioning,
    /// Cleaning.
    Cleaning,
    /// Inspection.
    Inspection,
    /// Rescue.
    Rescue,
}

impl NetworkRoles {
    /// The network of `phase`, with the defaults applied.
    pub fn network(&self, phase: Phase) -> Option<&str> {
        let own = match phase {
            Phase::Provisioning => None,
            Phase::Cleaning => self.cleaning.as_deref(),
            Phase::Inspection => self.inspection.as_deref(),
            Phase::Rescue => self.rescue.as_deref(),
        };
        own.or(self.provisioning.as_deref())
    }

    fn named(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("provisioning", self.provisioning.as_deref()),
            ("cleaning", self.cleaning.as_deref()),
            ("inspection", self.inspection.as_deref()),
            ("rescue", self.rescue.as_deref()),
            ("quarantine", self.quarantine.as_deref()),
        ]
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum NetworkConfigError {
    /// `what` is wrong because `why`.
    #[error("{what}: {why}")]
    Invalid {
        /// The section or key.
        what: String,
        /// Why.
        why: String,
    },
}

fn invalid(what: impl Into<String>, why: impl Into<String>) -> NetworkConfigError {
    NetworkConfigError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}

/// Switch and network names: what Ironic's `switch_info` and a VIF id can
/// carry without quoting.
fn check_name(section: &str, name: &str) -> Result<(), NetworkConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("[{section}.{name:?}]"),
            "names are 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Checks `[switches]`, `[networks]` and `[network_roles]` (at start).
pub fn validate(config: &Config) -> Result<(), NetworkConfigError> {
    for (name, switch) in &config.switches {
        check_name("switches", name)?;
        match switch {
            SwitchConfig::Ovsdb(c) => {
                OvsdbAddress::parse(&c.address)
                    .map_err(|why| invalid(format!("[switches.{name}] address"), why))?;
                if c.timeout_ms == 0 {
                    return Err(invalid(
                        format!("[switches.{name}] timeout_ms"),
                        "must be above 0",
                    ));
                }
            }
            SwitchConfig::Ssh(c) => {
                let what = |key: &str| format!("[switches.{name}] {key}");
                parse_address(&c.address).map_err(|why| invalid(what("address"), why))?;
                if c.username.is_empty() {
                    return Err(invalid(what("username"), "empty"));
                }
                match (&c.password_file, &c.key_file) {
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => {
                        return Err(invalid(
                            what("password_file"),
                            "give exactly one of password_file and key_file",
                        ));
                    }
                }
                if c.known_hosts_file.is_none() && !c.insecure_accept_any_host_key {
                    return Err(invalid(
                        what("known_hosts_file"),
                        "required: the switch's host key is checked (or set insecure_accept_any_host_key = true, labs only)",
                    ));
                }
                if c.timeout_ms == 0 {
                    return Err(invalid(what("timeout_ms"), "must be above 0"));
                }
            }
        }
    }
    let mut vlans: BTreeMap<(Option<&str>, VlanId), &str> = BTreeMap::new();
    for (name, network) in &config.networks {
        check_name("networks", name)?;
        let physnet = network.physical_network.as_deref();
        if physnet == Some("") {
            return Err(invalid(
                format!("[networks.{name}] physical_network"),
                "empty (leave it out instead)",
            ));
        }
        if let Some(other) = vlans.insert((physnet, network.vlan), name) {
            return Err(invalid(
                format!("[networks.{name}]"),
                format!(
                    "VLAN {} is network {other}'s too{}: two networks on one VLAN are not isolated",
                    network.vlan,
                    physnet.map(|p| format!(" on {p}")).unwrap_or_default()
                ),
            ));
        }
    }
    let roles = &config.network_roles;
    for (role, network) in roles.named() {
        if let Some(network) = network
            && !config.networks.contains_key(network)
        {
            return Err(invalid(
                format!("[network_roles] {role}"),
                format!("no [networks.{network}]"),
            ));
        }
    }
    if let Some(quarantine) = roles.quarantine.as_deref() {
        for (role, network) in roles.named() {
            if role != "quarantine" && network == Some(quarantine) {
                return Err(invalid(
                    "[network_roles] quarantine",
                    format!("{quarantine} is also the {role} network"),
                ));
            }
        }
    }
    if !config.switches.is_empty() {
        for (role, network) in [
            ("provisioning", roles.provisioning.as_deref()),
            ("quarantine", roles.quarantine.as_deref()),
        ] {
            if network.is_none() {
                return Err(invalid(
                    format!("[network_roles] {role}"),
                    "required when [switches] are configured",
                ));
            }
        }
    }
    if roles.named().iter().any(|(_, n)| n.is_some()) && roles.provisioning.is_none() {
        return Err(invalid(
            "[network_roles] provisioning",
            "required when other roles are set (they default to it)",
        ));
    }
    Ok(())
}

/// The quarantine network's VLAN, if one is configured.
pub fn quarantine_vlan(config: &Config) -> Result<Option<VlanId>, NetworkConfigError> {
    let Some(name) = config.network_roles.quarantine.as_deref() else {
        return Ok(None);
    };
    config
        .networks
        .get(name)
        .map(|n| Some(n.vlan))
        .ok_or_else(|| {
            invalid(
                "[network_roles] quarantine",
                format!("no [networks.{name}]"),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    const GOOD: &str = r#"
        [switches.tor1]
        driver = "ovsdb"
        address = "unix:/run/openvswitch/db.sock"

        [switches.tor2]
        driver = "ovsdb"
        address = "tcp:[::1]:6640"
        timeout_ms = 500

        [networks.prov]
        vlan = 100
        physical_network = "physnet1"
        [networks.clean]
        vlan = 101
        [networks.quarantine]
        vlan = 4000
        [networks.tenant-a]
        vlan = 100

        [network_roles]
        provisioning = "prov"
        cleaning = "clean"
        quarantine = "quarantine"
    "#;

    #[test]
    fn a_complete_configuration_parses_and_validates() {
        let config = parse(GOOD).unwrap();
        validate(&config).unwrap();
        let SwitchConfig::Ovsdb(tor1) = &config.switches["tor1"] else {
            panic!("tor1 is ovsdb");
        };
        assert_eq!(tor1.timeout_ms, 10_000);
        assert_eq!(config.networks["prov"].vlan.get(), 100);
        assert_eq!(
            config.networks["prov"].physical_network.as_deref(),
            Some("physnet1")
        );
        let roles = &config.network_roles;
        assert_eq!(roles.network(Phase::Provisioning), Some("prov"));
        assert_eq!(roles.network(Phase::Cleaning), Some("clean"));
        assert_eq!(roles.network(Phase::Inspection), Some("prov"));
        assert_eq!(roles.network(Phase::Rescue), Some("prov"));
        assert_eq!(quarantine_vlan(&config).unwrap().unwrap().get(), 4000);
        let switches = crate::network::switch::Switches::from_config(&config).unwrap();
        assert_eq!(switches.names().collect::<Vec<_>>(), ["tor1", "tor2"]);
    }

    #[test]
    fn nothing_configured_is_valid() {
        let config = parse("").unwrap();
        validate(&config).unwrap();
        assert!(
            crate::network::switch::Switches::from_config(&config)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_ssh_driver_is_checked_at_start() {
        let base = r#"
            [networks.provisioning]
            vlan = 100
            [networks.quarantine]
            vlan = 4000
            [network_roles]
            provisioning = "provisioning"
            quarantine = "quarantine"
            [switches.tor3]
            driver = "ssh"
            device_type = "arista_eos"
            address = "10.0.0.3:22"
            username = "ingot"
        "#;
        let config = parse(&format!(
            "{base}key_file = \"/etc/ingot/switch.key\"\nknown_hosts_file = \"/etc/ingot/kh\"\n"
        ))
        .unwrap();
        let SwitchConfig::Ssh(ssh) = &config.switches["tor3"] else {
            panic!("tor3 is ssh");
        };
        assert_eq!(ssh.device_type, SshDeviceType::AristaEos);
        validate(&config).unwrap();
        let switches = crate::network::switch::Switches::from_config(&config).unwrap();
        assert_eq!(switches.names().collect::<Vec<_>>(), ["tor3"]);
        for (extra, needle) in [
            ("key_file = \"/k\"\n", "known_hosts_file"),
            ("known_hosts_file = \"/kh\"\n", "exactly one of"),
            (
                "key_file = \"/k\"\npassword_file = \"/p\"\nknown_hosts_file = \"/kh\"\n",
                "exactly one of",
            ),
        ] {
            let config = parse(&format!("{base}{extra}")).unwrap();
            let e = validate(&config).unwrap_err().to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        }
        let config = parse(&format!(
            "{base}key_file = \"/k\"\ninsecure_accept_any_host_key = true\n"
        ))
        .unwrap();
        validate(&config).unwrap();
    }

    #[test]
    fn parse_errors() {
        for (text, needle) in [
            (
                "[switches.a]\ndriver = \"snmp\"\naddress = \"x\"",
                "unknown variant",
            ),
            (
                "[switches.a]\ndriver = \"ovsdb\"\naddress = \"unix:/x\"\nbridge = \"br0\"",
                "unknown field",
            ),
            ("[networks.a]\nvlan = 0", "out of range"),
            ("[networks.a]\nvlan = 4095", "out of range"),
            ("[networks.a]\nvlan = 10\nmtu = 9000", "unknown field"),
            ("[network_roles]\ntenant = \"a\"", "unknown field"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn validation_errors() {
        let with = |extra: &str| format!("{GOOD}\n{extra}");
        let cases = [
            (
                GOOD.replace("cleaning = \"clean\"", "cleaning = \"nope\""),
                "[network_roles] cleaning: no [networks.nope]",
            ),
            (
                GOOD.replace("quarantine = \"quarantine\"", "quarantine = \"clean\""),
                "clean is also the cleaning network",
            ),
            (
                GOOD.replace("quarantine = \"quarantine\"", ""),
                "[network_roles] quarantine: required when [switches] are configured",
            ),
            (
                with("[networks.tenant-b]\nvlan = 100"),
                "VLAN 100 is network tenant-a's too",
            ),
            (
                with("[networks.tenant-b]\nvlan = 100\nphysical_network = \"physnet1\""),
                "on physnet1",
            ),
            (
                GOOD.replace("unix:/run/openvswitch/db.sock", "ssl:1.2.3.4:6640"),
                "[switches.tor1] address",
            ),
            (
                GOOD.replace("timeout_ms = 500", "timeout_ms = 0"),
                "[switches.tor2] timeout_ms",
            ),
            (with("[networks.\"a b\"]\nvlan = 7"), "names are"),
            (
                "[networks.q]\nvlan = 5\n[network_roles]\nquarantine = \"q\"".to_owned(),
                "[network_roles] provisioning: required when other roles are set",
            ),
        ];
        for (text, needle) in cases {
            let config = parse(&text).unwrap();
            let e = validate(&config).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?}, got {e:?}");
        }
    }
}

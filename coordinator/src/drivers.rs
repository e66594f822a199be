//! Hardware types, named as in Ironic, with the interfaces each supports and
//! its defaults (the first entry of each list).

use serde_json::{Value, json};

/// A hardware type.
#[derive(Debug)]
pub struct HardwareType {
    /// Name (`fake-hardware`, `ipmi`, …).
    pub name: &'static str,
    /// Supported implementations per interface; the first is the default.
    pub interfaces: &'static [(&'static str, &'static [&'static str])],
}

const COMMON_TAIL: [(&str, &[&str]); 8] = [
    ("network", &["noop", "flat", "neutron", "ironic-networking"]),
    ("raid", &["no-raid", "agent"]),
    ("rescue", &["no-rescue"]),
    ("storage", &["noop"]),
    ("vendor", &["no-vendor"]),
    ("bios", &["no-bios"]),
    ("firmware", &["no-firmware"]),
    ("console", &["no-console"]),
];

macro_rules! hw {
    ($name:expr, $($iface:expr => [$($impl:expr),*]),* $(,)?) => {
        HardwareType {
            name: $name,
            interfaces: &[
                $(($iface, &[$($impl),*]),)*
                COMMON_TAIL[0], COMMON_TAIL[1], COMMON_TAIL[2], COMMON_TAIL[3],
                COMMON_TAIL[4], COMMON_TAIL[5], COMMON_TAIL[6], COMMON_TAIL[7],
            ],
        }
    };
}

/// Every hardware type.
pub static HARDWARE_TYPES: [HardwareType; 5] = [
    HardwareType {
        name: "fake-hardware",
        interfaces: &[
            ("boot", &["fake", "ipxe", "pxe"]),
            ("deploy", &["fake", "direct"]),
            ("management", &["fake", "noop"]),
            ("power", &["fake"]),
            ("inspect", &["fake", "agent", "no-inspect"]),
            ("network", &["noop", "flat", "neutron", "ironic-networking"]),
            ("raid", &["fake", "no-raid", "agent"]),
            ("rescue", &["fake", "no-rescue"]),
            ("storage", &["noop", "fake"]),
            ("vendor", &["fake", "no-vendor"]),
            ("bios", &["fake", "no-bios"]),
            ("firmware", &["fake", "no-firmware"]),
            ("console", &["fake", "no-console"]),
        ],
    },
    hw!("manual-management",
        "boot" => ["ipxe", "pxe", "fake"],
        "deploy" => ["direct", "fake", "noop"],
        "management" => ["noop", "fake"],
        "power" => ["fake"],
        "inspect" => ["agent", "no-inspect"],
    ),
    hw!("ipmi",
        "console" => ["no-console", "ipmitool-socat"],
        "boot" => ["ipxe", "pxe"],
        "deploy" => ["direct"],
        "management" => ["ipmitool", "noop"],
        "power" => ["ipmitool"],
        "inspect" => ["agent", "no-inspect"],
    ),
    hw!("redfish",
        "boot" => ["ipxe", "pxe"],
        "deploy" => ["direct"],
        "management" => ["redfish", "noop"],
        "power" => ["redfish"],
        "inspect" => ["agent", "no-inspect"],
    ),
    hw!("snmp",
        "boot" => ["ipxe", "pxe"],
        "deploy" => ["direct"],
        "management" => ["noop"],
        "power" => ["snmp"],
        "inspect" => ["agent", "no-inspect"],
    ),
];

/// Looks a hardware type up by name.
pub fn hardware_type(name: &str) -> Option<&'static HardwareType> {
    HARDWARE_TYPES.iter().find(|h| h.name == name)
}

impl HardwareType {
    /// Supported implementations of an interface.
    pub fn supported(&self, interface: &str) -> &'static [&'static str] {
        self.interfaces
            .iter()
            .find(|(i, _)| *i == interface)
            .map(|(_, l)| *l)
            .unwrap_or(&[])
    }

    /// Default implementation of an interface.
    pub fn default_for(&self, interface: &str) -> Option<&'static str> {
        self.supported(interface).first().copied()
    }

    /// driver_info keys the hardware type documents (Ironic's names).
    pub fn properties(&self) -> Value {
        match self.name {
            "ipmi" => json!({
                "ipmi_address": "IP address or hostname of the node. Required.",
                "ipmi_port": "remote IPMI RMCP port. Optional.",
                "ipmi_username": "username; default is NULL user. Optional.",
                "ipmi_password": "password. Optional.",
                "ipmi_cipher_suite": "IPMI cipher suite (3, 17). Optional.",
                "ipmi_priv_level": "privilege level; default is ADMINISTRATOR. Optional.",
                "ipmi_protocol_version": "the version of the IPMI protocol: 2.0 (default) or 1.5. Optional.",
                "ipmi_hex_kg_key": "Kg key for IPMIv2 authentication, as hexadecimal. Optional.",
                "ipmi_disable_boot_timeout": "whether to disable the BMC's 60 s boot flag timeout before setting the boot device; default true. Optional.",
                "deploy_kernel": "URL or path of the deploy kernel. Optional.",
                "deploy_ramdisk": "URL or path of the deploy ramdisk. Optional.",
            }),
            "redfish" => json!({
                "redfish_address": "The URL address to the Redfish controller. Required.",
                "redfish_system_id": "The canonical path to the ComputerSystem resource. Optional.",
                "redfish_username": "User account with admin/server-profile access privilege. Optional.",
                "redfish_password": "User account password. Optional.",
                "redfish_verify_ca": "Either a Boolean value, a path to a CA_BUNDLE file or directory. Optional.",
            }),
            "snmp" => json!({
                "snmp_driver": "PDU manufacturer driver. Required.",
                "snmp_address": "PDU IPv4 address or hostname. Required.",
                "snmp_outlet": "PDU power outlet index (1-based). Required.",
                "snmp_version": "SNMP protocol version: 1, 2c or 3. Optional.",
                "snmp_port": "SNMP port, default 161. Optional.",
                "snmp_community": "SNMP community. Optional.",
                "snmp_community_read": "SNMP community for reads. Optional.",
                "snmp_community_write": "SNMP community for writes. Optional.",
                "snmp_user": "SNMPv3 user name. Required for v3.",
                "snmp_auth_protocol": "SNMPv3 auth protocol. Optional.",
                "snmp_auth_key": "SNMPv3 auth key. Optional.",
                "snmp_priv_protocol": "SNMPv3 privacy protocol. Optional.",
                "snmp_priv_key": "SNMPv3 privacy key. Optional.",
            }),
            // Ironic lists the properties of the default interfaces: for
            // fake-hardware those of its fake vendor interface.
            "fake-hardware" => json!({
                "B1": "B1 description. Required.",
                "B2": "B2 description. Required.",
            }),
            // The agent (direct) deploy and its boot: the keys of Ironic's
            // list that Ingot reads.
            _ => json!({
                "deploy_kernel": "URL or path of the deploy kernel. Required for the direct deploy.",
                "deploy_ramdisk": "URL or path of the deploy ramdisk (the agent). Required for the direct deploy.",
                "image_download_source": "Where the agent downloads the image from: http (the image's URL) or local (the coordinator's cache). Optional.",
                "kernel_append_params": "Extra kernel command line for the deploy ramdisk. Optional.",
            }),
        }
    }
}

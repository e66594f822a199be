//! The PDU families Ironic's SNMP driver supported: where each keeps an
//! outlet's state and how it is switched. OIDs are relative to the
//! enterprises arc 1.3.6.1.4.1; the outlet index is appended, followed by
//! [`Family::suffix`].

use super::super::PowerState;

/// A SET that switches an outlet: the control OID and the value written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// Control OID below `1.3.6.1.4.1`, without the outlet index.
    pub oid: &'static [u32],
    /// INTEGER written.
    pub value: i64,
}

/// One PDU family (`snmp_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// `snmp_driver` name.
    pub name: &'static str,
    /// Status OID below `1.3.6.1.4.1`, without the outlet index.
    pub status: &'static [u32],
    /// Arcs after the outlet index (Aten appends `.0`).
    pub suffix: &'static [u32],
    /// Status values that mean on.
    pub status_on: &'static [i64],
    /// Status values that mean off.
    pub status_off: &'static [i64],
    /// How to switch on.
    pub on: Switch,
    /// How to switch off.
    pub off: Switch,
}

const ENTERPRISES: [u32; 6] = [1, 3, 6, 1, 4, 1];

const fn same(oid: &'static [u32], on: i64, off: i64) -> (Switch, Switch) {
    (Switch { oid, value: on }, Switch { oid, value: off })
}

const fn family(
    name: &'static str,
    status: &'static [u32],
    suffix: &'static [u32],
    status_on: &'static [i64],
    status_off: &'static [i64],
    switches: (Switch, Switch),
) -> Family {
    Family {
        name,
        status,
        suffix,
        status_on,
        status_off,
        on: switches.0,
        off: switches.1,
    }
}

const APC_MS: &[u32] = &[318, 1, 1, 4, 4, 2, 1, 3];
const APC_MSP: &[u32] = &[318, 1, 1, 6, 5, 1, 1, 5];
const APC_RPDU: &[u32] = &[318, 1, 1, 12, 3, 3, 1, 1, 4];
const ATEN: &[u32] = &[21317, 1, 3, 2, 2, 2, 2];
const CYBERPOWER: &[u32] = &[3808, 1, 1, 3, 3, 3, 1, 1, 4];
const TELTRONIX: &[u32] = &[23620, 1, 2, 2, 1, 4];
const EATON_STATUS: &[u32] = &[534, 6, 6, 7, 6, 6, 1, 2];
const EATON_OFF: &[u32] = &[534, 6, 6, 7, 6, 6, 1, 3];
const EATON_ON: &[u32] = &[534, 6, 6, 7, 6, 6, 1, 4];
const BAYTECH: &[u32] = &[4779, 1, 3, 5, 3, 1, 3, 1];
const SENTRY3_STATUS: &[u32] = &[1718, 3, 2, 3, 1, 5, 1, 1];
const SENTRY3_CONTROL: &[u32] = &[1718, 3, 2, 3, 1, 11, 1, 1];
const SENTRY4_STATUS: &[u32] = &[1718, 4, 1, 8, 5, 1, 1, 1, 1];
const SENTRY4_CONTROL: &[u32] = &[1718, 4, 1, 8, 5, 1, 2, 1, 1];
const RARITAN_STATUS: &[u32] = &[13742, 6, 4, 1, 2, 1, 3, 1];
const RARITAN_CONTROL: &[u32] = &[13742, 6, 4, 1, 2, 1, 2, 1];
const GEIST_STATUS: &[u32] = &[21239, 5, 2, 3, 5, 1, 4];
const GEIST_CONTROL: &[u32] = &[21239, 5, 2, 3, 5, 1, 6];

/// Every family, with `apc` an alias of `apc_masterswitch`.
pub const FAMILIES: &[Family] = &[
    family("apc", APC_MS, &[], &[1], &[2], same(APC_MS, 1, 2)),
    family(
        "apc_masterswitch",
        APC_MS,
        &[],
        &[1],
        &[2],
        same(APC_MS, 1, 2),
    ),
    family(
        "apc_masterswitchplus",
        APC_MSP,
        &[],
        &[1],
        &[3],
        same(APC_MSP, 1, 3),
    ),
    family(
        "apc_rackpdu",
        APC_RPDU,
        &[],
        &[1],
        &[2],
        same(APC_RPDU, 1, 2),
    ),
    family("aten", ATEN, &[0], &[2], &[1], same(ATEN, 2, 1)),
    family(
        "cyberpower",
        CYBERPOWER,
        &[],
        &[1],
        &[2],
        same(CYBERPOWER, 1, 2),
    ),
    family(
        "teltronix",
        TELTRONIX,
        &[],
        &[2],
        &[1],
        same(TELTRONIX, 2, 1),
    ),
    // Status 0 off, 1 on, 2 pending off, 3 pending on; writing 0 to the
    // on or off OID switches at once (the value is a delay in seconds).
    family(
        "eatonpower",
        EATON_STATUS,
        &[],
        &[1],
        &[0],
        (
            Switch {
                oid: EATON_ON,
                value: 0,
            },
            Switch {
                oid: EATON_OFF,
                value: 0,
            },
        ),
    ),
    family(
        "baytech_mrp27",
        BAYTECH,
        &[],
        &[1],
        &[0],
        same(BAYTECH, 1, 0),
    ),
    // Status 0 off, 1 on, 2 off-wait, 3 on-wait.
    family(
        "servertech_sentry3",
        SENTRY3_STATUS,
        &[],
        &[1],
        &[0],
        same(SENTRY3_CONTROL, 1, 2),
    ),
    // Sentry4 outlet state: on-like (fixedOn 1, idleOn 3, wakeOn 5, ocpOn 7,
    // on 11, lockedOn 15) and off-like (idleOff 2, wakeOff 4, ocpOff 6,
    // off 10, lockedOff 14); 8 and 9 are pending.
    family(
        "servertech_sentry4",
        SENTRY4_STATUS,
        &[],
        &[1, 3, 5, 7, 11, 15],
        &[2, 4, 6, 10, 14],
        same(SENTRY4_CONTROL, 1, 2),
    ),
    // Switching state 7 on, 8 off; control 1 on, 0 off.
    family(
        "raritan_pdu2",
        RARITAN_STATUS,
        &[],
        &[7],
        &[8],
        same(RARITAN_CONTROL, 1, 0),
    ),
    // Status 1 on, 2 off; control 2 on, 4 off.
    family(
        "vertivgeist_pdu",
        GEIST_STATUS,
        &[],
        &[1],
        &[2],
        same(GEIST_CONTROL, 2, 4),
    ),
];

/// The family for an `snmp_driver` name.
pub fn find(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The `snmp_driver` names, for error messages.
pub fn names() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.name).collect()
}

impl Family {
    fn full(&self, oid: &[u32], outlet: u32) -> Vec<u32> {
        let mut v = Vec::with_capacity(ENTERPRISES.len() + oid.len() + 1 + self.suffix.len());
        v.extend_from_slice(&ENTERPRISES);
        v.extend_from_slice(oid);
        v.push(outlet);
        v.extend_from_slice(self.suffix);
        v
    }

    /// The status OID of an outlet.
    pub fn status_oid(&self, outlet: u32) -> Vec<u32> {
        self.full(self.status, outlet)
    }

    /// The OID and value that switch an outlet on or off.
    pub fn switch(&self, outlet: u32, state: PowerState) -> (Vec<u32>, i64) {
        let s = match state {
            PowerState::On => self.on,
            PowerState::Off => self.off,
        };
        (self.full(s.oid, outlet), s.value)
    }

    /// Interprets a status value; `None` for pending or unknown values.
    pub fn state_of(&self, value: i64) -> Option<PowerState> {
        if self.status_on.contains(&value) {
            Some(PowerState::On)
        } else if self.status_off.contains(&value) {
            Some(PowerState::Off)
        } else {
            None
        }
    }
}

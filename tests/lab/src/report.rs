//! `report.json` and the table of seconds per phase.

use serde::Serialize;

use crate::checks::DiskCheck;

/// One phase of the lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `enroll`, `inspect`, `provide`, `deploy`, `boot from disk`, `undeploy`, `verify`.
    pub name: String,
    /// Wall time of the phase.
    pub seconds: f64,
    /// The states the node went through, in order.
    pub states: Vec<String>,
    /// Power-on (chassis_control starting QEMU) to the agent's first
    /// heartbeat, when the phase booted the agent.
    pub power_on_to_heartbeat: Option<f64>,
    /// Each new `driver_internal_info.ingot_progress` the node showed in
    /// the phase (what `baremetal node show` shows), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<ProgressSample>,
}

/// One `ingot_progress` the lab saw on the node.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressSample {
    /// Seconds since the phase started.
    pub at: f64,
    /// The step (`deploy.write_image`).
    pub step: String,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub percent: Option<f64>,
    pub rate_bytes_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

impl ProgressSample {
    /// Reads the node's `ingot_progress`, if it has counted bytes.
    pub fn from_node(n: &serde_json::Value, at: f64) -> Option<Self> {
        let p = &n["driver_internal_info"]["ingot_progress"];
        Some(Self {
            at,
            step: p["step"].as_str().unwrap_or("").to_owned(),
            bytes_done: p["bytes_done"].as_u64()?,
            bytes_total: p["bytes_total"].as_u64(),
            percent: p["percent"].as_f64(),
            rate_bytes_per_second: p["rate_bytes_per_second"].as_f64(),
            eta_seconds: p["eta_seconds"].as_f64(),
        })
    }

    /// `41.2% (26.4 of 64.0 MiB, 10.0 MiB/s, ETA 3.7 s) at 4.1 s`.
    pub fn line(&self) -> String {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        format!(
            "{}% ({:.1} of {} MiB, {} MiB/s, ETA {} s) at {:.1} s",
            self.percent.map_or("?".into(), |p| format!("{p:.1}")),
            mib(self.bytes_done),
            self.bytes_total
                .map_or("?".into(), |t| format!("{:.1}", mib(t))),
            self.rate_bytes_per_second
                .map_or("?".into(), |r| format!("{:.1}", r / f64::from(1u32 << 20))),
            self.eta_seconds.map_or("?".into(), |e| format!("{e:.1}")),
            self.at
        )
    }
}

/// Everything the run leaves in `report.json`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The node's UUID.
    pub node_uuid: String,
    /// The server's name in the work directory (`node1`, `node2`).
    pub node_name: String,
    /// The server's architecture.
    pub arch: crate::machine::Arch,
    /// The node was enrolled with fast track (provide and deploy drive the
    /// agent that inspection booted, without booting the ramdisk again).
    pub fast_track: bool,
    /// The provisioning network: `l2` (a bridge, the coordinator's DHCP)
    /// or `slirp` (QEMU's user network).
    pub network: String,
    /// TLS on every hop (`--tls`): what each hop used.
    pub tls: Option<crate::scenario::TlsEvidence>,
    /// The image from a real Glance, deployed by its UUID (`--glance`): the
    /// image id, Glance's record, the node's `instance_info` after the
    /// deploy, and the downloads seen in Glance's and the coordinator's logs.
    pub glance: Option<crate::glance::GlanceEvidence>,
    /// The HA lab (`--ha`): members, the kills with their detection,
    /// takeover and added delay, and the journal's double-ownership check.
    pub ha: Option<crate::ha::HaEvidence>,
    /// The coordinator's `/metrics` at the end, checked against the phases
    /// (not in the HA lab).
    pub metrics: Option<crate::metrics::MetricsEvidence>,
    /// The node's history at the end, checked against the lifecycle (not in
    /// the HA lab).
    pub history: Option<crate::history::HistoryEvidence>,
    /// The instance UUID given at deploy, and printed by the deployed image.
    pub instance_uuid: String,
    /// The console line that proved the image booted from disk.
    pub boot_marker: String,
    /// The boot marker also reached the lab through the coordinator's
    /// console (IPMI Serial-over-LAN via ipmi_sim).
    pub sol_console: bool,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// Sum of the lifecycle phases (enroll to undeploy, without building).
    pub lifecycle_seconds: f64,
    /// Properties inspection set.
    pub properties: serde_json::Value,
    /// Ports after inspection (MAC addresses).
    pub ports: Vec<String>,
    /// The host's check of every disk file after the secure wipe.
    pub disks: Vec<DiskCheck>,
    /// `driver_internal_info.clean_report` after undeploy (the agent's wipe reports).
    pub clean_report: serde_json::Value,
    /// The server's firmware (`bios` or `uefi`).
    pub firmware: String,
    /// Under OVMF (`--firmware uefi`): the boot mode inspection reported,
    /// the agent's boot entry, what the firmware booted, what cleaning removed.
    pub uefi: Option<crate::uefi::Evidence>,
    /// Whether everything checked out.
    pub passed: bool,
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut t = String::from("phase                    seconds   power-on → heartbeat\n");
        for p in &self.phases {
            let hb = p
                .power_on_to_heartbeat
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_default();
            t.push_str(&format!("{:<24} {:>7.1}   {hb}\n", p.name, p.seconds));
        }
        t.push_str(&format!(
            "{:<24} {:>7.1}\n",
            "lifecycle", self.lifecycle_seconds
        ));
        let measured: Vec<f64> = self
            .phases
            .iter()
            .filter_map(|p| p.power_on_to_heartbeat)
            .collect();
        let worst = measured.iter().copied().fold(0.0_f64, f64::max);
        if let Some(ha) = &self.ha {
            for k in &ha.kills {
                t.push_str(&format!("{}\n", k.line()));
            }
            t.push_str(&format!(
                "journal: {} rows by {:?}, fences {:?}, {} double-ownership violations\n",
                ha.journal.rows,
                ha.journal.per_conductor,
                ha.journal.fences,
                ha.journal.violations.len()
            ));
        }
        // The isolation lab does not time the boots.
        // Issue 18's goal is for x86_64 under SeaBIOS (iPXE from the NIC's
        // ROM); UEFI firmware and arm64's GRUB have none yet: measured only.
        let heartbeat = match (measured.is_empty(), self.arch, self.firmware.as_str()) {
            (true, _, _) => String::new(),
            (false, crate::machine::Arch::X86_64, "bios" | "") => {
                format!("power-on → heartbeat ≤ 12 s (worst here {worst:.1} s); ")
            }
            (false, arch, firmware) => format!(
                "power-on → heartbeat: no goal for {} under {firmware} (worst here {worst:.1} s); ",
                arch.name()
            ),
        };
        t.push_str(&format!(
            "goals (TCG, 2 cores): {heartbeat}lifecycle ≤ 180 s ({:.1} s)\n",
            self.lifecycle_seconds
        ));
        t
    }
}

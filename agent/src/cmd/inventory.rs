//! `ingot-agent inventory`: print the hardware inventory (IPA's document) as JSON.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ingot_agent::inventory::{InventoryOptions, collect};

/// Arguments of `inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Read sysfs/procfs under this directory instead of the live system
    /// (fixture trees; addresses then come from procfs, LLDP and IPMI are skipped).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Listen this many seconds for LLDP frames on interfaces with carrier.
    #[arg(long)]
    lldp_timeout: Option<u64>,
    /// Do not query the BMC through /dev/ipmi0.
    #[arg(long)]
    no_bmc: bool,
}

/// Runs the command.
pub fn run(args: InventoryArgs) -> anyhow::Result<()> {
    let inv = collect(&InventoryOptions {
        root: args.root,
        lldp_timeout: args.lldp_timeout.map(Duration::from_secs),
        bmc: !args.no_bmc,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &inv)?;
    use std::io::Write;
    match writeln!(out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

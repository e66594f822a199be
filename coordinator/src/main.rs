//! `ingot-coordinator`: the Ironic-compatible API, state machine, power, boot and
//! image serving. The daemon arrives with its issue; until then the binary only
//! says so.

use clap::Parser;

/// Ingot's coordinator daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("ingot-coordinator: the daemon is not built yet (see the coordinator issue)")
}

//! `ingot-ramdisk`: builds the provisioning ramdisk. The builder arrives with its
//! issue; until then the binary only says so.

use clap::Parser;

/// Builds Ingot's reproducible provisioning ramdisk.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("ingot-ramdisk: the builder is not built yet (see the ramdisk issue)")
}

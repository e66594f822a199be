//! `ingot-agent net`: bring the network up as init does (links up, DHCP on
//! the cabled interfaces or static `ip=`), print the leases as JSON. For
//! debugging and the network tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ingot_agent::net::{NetOptions, configure};

/// Arguments of `net`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Only these interfaces (default: every Ethernet interface with carrier).
    #[arg(long)]
    interface: Vec<String>,
    /// Only the interface with this MAC (BOOTIF).
    #[arg(long)]
    bootif: Option<String>,
    /// Static configuration in the kernel's ip= syntax instead of DHCP.
    #[arg(long)]
    ip: Option<String>,
    /// Where to write the name servers.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Seconds to wait for carrier after setting links up (all links together).
    #[arg(long, default_value_t = 3.0)]
    carrier_wait: f64,
    /// Seconds DHCP may take on one interface.
    #[arg(long, default_value_t = 60.0)]
    dhcp_timeout: f64,
    /// Do not set the host name from DHCP.
    #[arg(long)]
    no_hostname: bool,
}

/// Runs the command.
pub fn run(args: NetArgs) -> anyhow::Result<()> {
    let opts = NetOptions {
        bootif: args.bootif.map(|m| m.to_ascii_lowercase()),
        interfaces: args.interface,
        static_ip: args.ip.as_deref().and_then(ingot_agent::cmdline::parse_ip),
        resolv_conf: args.resolv_conf,
        carrier_wait: Duration::from_secs_f64(args.carrier_wait.max(0.0)),
        dhcp_timeout: Duration::from_secs_f64(args.dhcp_timeout.max(1.0)),
        set_hostname: !args.no_hostname,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let leases = rt.block_on(configure(&opts));
    println!("{}", serde_json::to_string_pretty(&leases)?);
    if leases.is_empty() {
        anyhow::bail!("no interface was configured");
    }
    Ok(())
}

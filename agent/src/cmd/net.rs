//! `ingot-agent net`: bring the network up as init does (links up, DHCP on
//! the cabled interfaces or static `ip=`), print the leases as JSON. For
//! debugging and the network tests. With `--keep` it stays in the foreground
//! and maintains the DHCP leases as init does, printing one JSON line per
//! lease event, until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ingot_agent::net::{LeaseEvent, NetOptions, configure, maintain};

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
    /// Stay in the foreground renewing the DHCP leases; print each lease
    /// event as a JSON line; exit on SIGTERM or SIGINT.
    #[arg(long)]
    keep: bool,
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
    // Blocked before any thread starts, so every thread inherits the mask
    // and only `sigwait` below sees the signals.
    let signals = if args.keep {
        Some(block_termination_signals()?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let leases = rt.block_on(configure(&opts));
    let Some(signals) = signals else {
        println!("{}", serde_json::to_string_pretty(&leases)?);
        if leases.is_empty() {
            anyhow::bail!("no interface was configured");
        }
        return Ok(());
    };
    if leases.is_empty() {
        anyhow::bail!("no interface was configured");
    }
    for lease in &leases {
        print_event(&LeaseEvent::Bound {
            lease: lease.clone(),
        });
    }
    let maintenance = maintain(&leases, &opts, Arc::new(print_event));
    let signal = wait_for(&signals)?;
    tracing::info!(signal, "stopping lease maintenance");
    maintenance.stop();
    Ok(())
}

/// One JSON line on stdout (line-buffered, so a reader sees it at once).
fn print_event(e: &LeaseEvent) {
    match serde_json::to_string(e) {
        Ok(line) => println!("{line}"),
        Err(err) => tracing::warn!(error = %err, "cannot encode a lease event"),
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (and the threads it
/// starts later); returns the set for [`wait_for`].
fn block_termination_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the old mask is not wanted (null).
    let r = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r)).context("blocking SIGTERM and SIGINT");
    }
    Ok(set)
}

/// Waits for one of the blocked signals; returns its number.
fn wait_for(set: &libc::sigset_t) -> anyhow::Result<i32> {
    let mut sig = 0;
    // SAFETY: a valid, initialised signal set and a local output.
    let r = unsafe { libc::sigwait(set, &mut sig) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r)).context("waiting for a signal");
    }
    Ok(sig)
}

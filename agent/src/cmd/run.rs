//! `ingot-agent run`: the agent against a coordinator, without the init
//! duties (development, or a ramdisk with another init).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use ingot_agent::ca::TrustedCa;
use ingot_agent::coordinator::runtime::{RunOptions, TlsMode, run as run_agent};
use ingot_agent::state::{AgentConfig, AgentState, PowerPolicy};

/// TLS of the agent API.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Tls {
    /// When the coordinator accepts agent_verify_ca (API 1.68), like IPA.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Coordinator (Ironic API) URL; several may be given comma-separated.
    #[arg(long)]
    api_url: String,
    /// Address the agent API listens on.
    #[arg(long, default_value = "0.0.0.0:9999")]
    listen: SocketAddr,
    /// Host put in the callback URL (default: the source address of the route
    /// to the coordinator).
    #[arg(long)]
    advertise_host: Option<String>,
    /// Port put in the callback URL (default: the listening port).
    #[arg(long)]
    advertise_port: Option<u16>,
    /// TLS of the agent API.
    #[arg(long, value_enum, default_value = "auto")]
    tls: Tls,
    /// Trust this PEM CA bundle for the coordinator and image downloads.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (labs only).
    #[arg(long)]
    insecure: bool,
    /// A pre-shared agent token (like IPA's ipa-agent-token).
    #[arg(long)]
    token: Option<String>,
    /// Read the inventory from this sysfs/procfs tree (testing).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Testing: open the disk the inventory calls /dev/NAME as DIR/NAME.
    #[arg(long)]
    dev_dir: Option<PathBuf>,
    /// Really power off and reboot on request (otherwise only logged).
    #[arg(long)]
    allow_power_actions: bool,
    /// Directory keeping the agent token across agent restarts.
    #[arg(long, default_value = "/run/ingot")]
    state_dir: PathBuf,
    /// First lookup retry interval in seconds.
    #[arg(long, default_value_t = 0.25)]
    lookup_interval: f64,
    /// Longest lookup retry interval in seconds.
    #[arg(long, default_value_t = 60.0)]
    lookup_max_interval: f64,
    /// Look up with these MAC addresses instead of the inventory's.
    #[arg(long)]
    mac: Vec<String>,
}

/// Runs the agent; returns only on a setup error.
pub fn run(args: RunArgs, log_level: &str) -> anyhow::Result<()> {
    let logs = ingot_agent::logring::init(log_level);
    let ca = match &args.ca_file {
        Some(p) => TrustedCa::from_pem_file(&format!("--ca-file {}", p.display()), p)?,
        None => TrustedCa::none(),
    };
    let config = AgentConfig {
        root: args.root,
        dev_dir: args.dev_dir,
        power: if args.allow_power_actions {
            PowerPolicy::Real
        } else {
            PowerPolicy::DryRun
        },
        state_dir: Some(args.state_dir),
        allow_without_token: false,
        ca: ca.clone(),
        insecure: args.insecure,
        ..AgentConfig::default()
    };
    let state = AgentState::new(config, logs);
    if let Some(t) = args.token {
        state.set_token(Some(t));
    }
    let mut opts = RunOptions::new(&args.api_url);
    opts.listen = args.listen;
    opts.advertise_host = args.advertise_host;
    opts.advertise_port = args.advertise_port;
    opts.tls = match args.tls {
        Tls::Auto => TlsMode::Auto,
        Tls::On => TlsMode::On,
        Tls::Off => TlsMode::Off,
    };
    opts.ca = ca;
    opts.insecure = args.insecure;
    opts.lookup_interval = Duration::from_secs_f64(args.lookup_interval.max(0.05));
    opts.lookup_max_interval =
        Duration::from_secs_f64(args.lookup_max_interval.max(args.lookup_interval).max(0.05));
    opts.macs = args.mac.iter().map(|m| m.to_ascii_lowercase()).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_agent(state, opts))?;
    Ok(())
}

//! `ingot-agent`: the provisioning agent and its standalone commands.

mod cmd;

use clap::{Parser, Subcommand};

/// musl's allocator returns every large buffer to the kernel on free, so each
/// HTTP read buffer would be faulted in page by page again; mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ingot's provisioning agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream an image (raw, qcow2, zstd, gzip, xz) onto a disk, verified.
    WriteImage(cmd::write_image::WriteImageArgs),
    /// Print the hardware inventory (IPA's JSON document).
    Inventory(cmd::inventory::InventoryArgs),
    /// Run the agent against a coordinator (lookup, heartbeat, agent API).
    Run(cmd::run::RunArgs),
    /// Bring the network up as init does (DHCP or ip=) and print the leases.
    Net(cmd::net::NetArgs),
    /// Erase named disks (metadata or secure), verify, and report per disk.
    Wipe(cmd::wipe::WipeArgs),
}

fn main() -> std::process::ExitCode {
    // As PID 1 (or started as /init) the agent is the ramdisk's init.
    if ingot_agent::init::is_init() {
        ingot_agent::init::main();
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        ingot_agent::logging::init(&cli.log_level);
    }
    let result = match cli.command {
        Command::WriteImage(args) => cmd::write_image::run(args),
        Command::Inventory(args) => cmd::inventory::run(args),
        Command::Run(args) => cmd::run::run(args, &cli.log_level),
        Command::Net(args) => cmd::net::run(args),
        Command::Wipe(args) => cmd::wipe::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingot-agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `ingot-coordinator [--log-format text|json] serve [--config <file.toml>] [--listen <addr:port>] [--database <url>]
//! [--boot-kernel <vmlinuz>] [--boot-initramfs <initramfs>]
//! [--boot-kernel-by-arch <arch>=<vmlinuz>]… [--boot-initramfs-by-arch <arch>=<initramfs>]…`

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ingot_coordinator::config::Config;
use ingot_coordinator::logging::LogFormat;
use ingot_coordinator::power::PowerDrivers;

/// Ingot's coordinator: an Ironic-compatible bare-metal API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the API and the conductor.
    Serve {
        /// TOML configuration file (see docs/coordinator.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:6385).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Database URL: sqlite:///abs/path.db, sqlite://rel.db or postgres://user@host/db
        /// (default: sqlite://ingot-coordinator.db in the working directory).
        #[arg(long)]
        database: Option<String>,
        /// The agent kernel served for network boot (`[boot] kernel`).
        #[arg(long)]
        boot_kernel: Option<PathBuf>,
        /// The agent ramdisk served for network boot (`[boot] initramfs`).
        #[arg(long)]
        boot_initramfs: Option<PathBuf>,
        /// An architecture's agent kernel, `<arch>=<path>` (`[boot.by_arch.<arch>] kernel`);
        /// repeatable.
        #[arg(long, value_parser = arch_path)]
        boot_kernel_by_arch: Vec<(String, PathBuf)>,
        /// An architecture's agent ramdisk, `<arch>=<path>` (`[boot.by_arch.<arch>] initramfs`);
        /// repeatable.
        #[arg(long, value_parser = arch_path)]
        boot_initramfs_by_arch: Vec<(String, PathBuf)>,
    },
}

/// Parses `<arch>=<path>`.
fn arch_path(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((a, p)) if !a.is_empty() && !p.is_empty() => Ok((a.to_owned(), PathBuf::from(p))),
        _ => Err(format!("expected <arch>=<path>, got {s:?}")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ingot_coordinator::logging::init(cli.log_format);
    match cli.command {
        Command::Serve {
            config,
            listen,
            database,
            boot_kernel,
            boot_initramfs,
            boot_kernel_by_arch,
            boot_initramfs_by_arch,
        } => {
            let mut cfg = match config {
                Some(p) => Config::from_file(&p)?,
                None => Config::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = database {
                cfg.database = d;
            }
            if let Some(k) = boot_kernel {
                cfg.boot.kernel = Some(k);
            }
            if let Some(i) = boot_initramfs {
                cfg.boot.initramfs = Some(i);
            }
            for (arch, k) in boot_kernel_by_arch {
                cfg.boot.by_arch.entry(arch).or_default().kernel = Some(k);
            }
            for (arch, i) in boot_initramfs_by_arch {
                cfg.boot.by_arch.entry(arch).or_default().initramfs = Some(i);
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                let running = ingot_coordinator::server::start(cfg, PowerDrivers::default())
                    .await
                    .context("starting the coordinator")?;
                let conductor = running.conductor.clone();
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("installing the SIGTERM handler")?;
                let why = tokio::select! {
                    r = running.wait() => {
                        r.context("serving the API")?;
                        return anyhow::Ok(());
                    }
                    _ = tokio::signal::ctrl_c() => "interrupted",
                    _ = term.recv() => "terminated",
                };
                // A graceful stop: the running steps finish, the nodes go to
                // the other members of the group at once, consoles stop (SOL
                // payloads deactivated rather than left to the BMCs' timeouts).
                tracing::info!(why, "stopping: handing the nodes over");
                conductor.leave(std::time::Duration::from_secs(30)).await;
                anyhow::Ok(())
            })
        }
    }
}

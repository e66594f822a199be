//! `ingot-lab`: the end-to-end lab's command line.
//!
//! - `ingot-lab run --workdir … --coordinator … --kernel … --initramfs … --image …`
//!   runs the lab with ready-made artifacts;
//! - `ingot-lab demo …` builds the ramdisk and the test image first, then runs
//!   it with progress for a person;
//! - `ingot-lab chassis-control <node dir> <mc> get|set …` is the program
//!   ipmi_sim calls for power and boot device.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ingot_lab::{Arch, Artifacts, Firmware, Network, Options, prepare};

#[derive(Debug, Parser)]
#[command(about = "Ingot's end-to-end lab: a QEMU server with an ipmi_sim BMC")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Work directory (emptied first).
    #[arg(long, default_value = "target/e2e")]
    workdir: PathBuf,
    /// The coordinator binary.
    #[arg(long)]
    coordinator: PathBuf,
    /// Seconds allowed for each phase.
    #[arg(long, default_value_t = 420)]
    phase_timeout: u64,
    /// Progress for a person on stdout.
    #[arg(long)]
    verbose: bool,
    /// Enroll the node with `driver_info.fast_track`: provide and deploy
    /// drive the agent inspection booted, without booting the ramdisk again.
    #[arg(long)]
    fast_track: bool,
    /// TLS on every hop (HTTPS API with a lab CA the agent verifies, the
    /// image from the coordinator's cache over HTTPS).
    #[arg(long)]
    tls: bool,
    /// The image from a real Glance (coordinator/tests/glance/glance-lab.sh,
    /// its venv made when missing): the test image uploaded as raw, the node
    /// deployed with `instance_info.image_source` = its UUID only, as Nova does.
    #[arg(long)]
    glance: bool,
    /// The HA lab: three coordinators on a private PostgreSQL cluster; the
    /// deploy's owner and then a second member are killed (SIGKILL) in the
    /// middle of the work; the per-node journal is checked for double
    /// ownership.
    #[arg(long)]
    ha: bool,
    /// The isolation lab (issue 19): two servers on a private Open vSwitch
    /// (userspace datapath) that the coordinator programs over OVSDB, tenant
    /// hosts in network namespaces; every probe and check in isolation.json.
    /// Fast track, no inspection. Needs root.
    #[arg(long)]
    isolation: bool,
    /// With --ha: a single-coordinator run's report.json, whose deploy time
    /// is the baseline of the deploy with a kill.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The provisioning network: `l2`, a bridge in a network namespace of
    /// the lab's own with the coordinator's DHCP server (needs root), or
    /// `slirp`, QEMU's user network (for machines without network
    /// namespaces).
    #[arg(long, value_enum, default_value_t = Network::L2)]
    network: Network,
    /// The server's firmware: `bios` (SeaBIOS) or `uefi` (OVMF with a
    /// variable store per node; the image must be the test image's UEFI
    /// variant, which `demo` builds).
    #[arg(long, value_enum, default_value_t = Firmware::Bios)]
    firmware: Firmware,
    /// The servers' architectures, one server each, driven one after the
    /// other by the same coordinator (`x86_64,aarch64`: an x86_64 server,
    /// then an aarch64 one under AAVMF). aarch64 servers are always UEFI
    /// and need the L2 network (the coordinator's DHCP and TFTP).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "x86_64")]
    arch: Vec<Arch>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the lab with the given artifacts.
    Run {
        #[command(flatten)]
        common: Common,
        /// The agent kernel.
        #[arg(long)]
        kernel: PathBuf,
        /// The agent ramdisk.
        #[arg(long)]
        initramfs: PathBuf,
        /// The bootable test image.
        #[arg(long)]
        image: PathBuf,
    },
    /// Builds the ramdisk and test image, then runs the lab.
    Demo {
        #[command(flatten)]
        common: Common,
        /// The static agent.
        #[arg(long)]
        agent: PathBuf,
        /// The test image's static init.
        #[arg(long)]
        test_init: PathBuf,
        /// The static aarch64 agent (for `--arch …aarch64`).
        #[arg(long)]
        agent_aarch64: Option<PathBuf>,
        /// The test image's static aarch64 init (for `--arch …aarch64`).
        #[arg(long)]
        test_init_aarch64: Option<PathBuf>,
        /// The `ingot-test-image` binary (builds the test image).
        #[arg(long)]
        test_image_builder: PathBuf,
        /// Where the Debian kernel is cached.
        #[arg(long, default_value = "target/kernel")]
        kernel_cache: PathBuf,
        /// Where the ramdisk and test image are built (default: `build` in
        /// the work directory). Another lab's: its ramdisk is reused when
        /// it is current, and the UEFI test image is a file of its own.
        #[arg(long)]
        build_dir: Option<PathBuf>,
    },
    /// ipmi_sim's chassis_control program (not for people).
    ChassisControl {
        /// The node directory.
        node_dir: PathBuf,
        /// `<mc> get|set …`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn run(common: Common, artifacts: Artifacts) -> Result<()> {
    let lab_bin = std::env::current_exe().context("locating ingot-lab")?;
    let common_isolation = common.isolation;
    let workdir = std::path::absolute(&common.workdir)?;
    // The HA lab's three coordinators stay on QEMU's user network: iPXE
    // chains to each in turn from QEMU's TFTP (three DHCP servers on one
    // bridge are not modelled yet).
    let network = if common.ha {
        Network::Slirp
    } else {
        common.network
    };
    if network == Network::L2 {
        // The namespace has no way out: first what needs the host's network
        // (the kernel was fetched already), Glance's venv from PyPI.
        if common.glance {
            let build = workdir.join(ingot_lab::scenario::BUILD_DIR);
            std::fs::create_dir_all(&build)?;
            ingot_lab::glance::GlanceServer::venv(&build.join("glance-venv.log"))?;
        }
        // Before any thread exists (checked): a namespace is per thread.
        if common.isolation {
            ingot_lab::netns::enter_empty()?;
        } else {
            ingot_lab::netns::enter()?;
        }
    }
    let reports = ingot_lab::run(&Options {
        workdir: workdir.clone(),
        coordinator: std::path::absolute(&common.coordinator)?,
        lab_bin,
        artifacts,
        verbose: common.verbose,
        fast_track: common.fast_track,
        tls: common.tls,
        glance: common.glance,
        ha: common.ha,
        isolation: common.isolation,
        baseline: common
            .baseline
            .as_deref()
            .map(std::path::absolute)
            .transpose()?,
        network,
        firmware: common.firmware,
        arches: common.arch.clone(),
        phase_timeout: Duration::from_secs(common.phase_timeout),
    })?;
    let Some(report) = reports.last() else {
        anyhow::bail!("the lab ran no server");
    };
    for r in &reports {
        if reports.len() > 1 {
            println!("\n{} ({}, {})", r.node_name, r.arch.name(), r.firmware);
        }
        println!("\n{}", r.table());
    }
    if reports.len() > 1 {
        for r in &reports {
            println!(
                "{} ({}): instance {} booted from disk ({}); disks wiped",
                r.node_name,
                r.arch.name(),
                r.instance_uuid,
                r.boot_marker
            );
        }
        println!(
            "one coordinator served {} servers; evidence in {}",
            reports.len(),
            workdir.display()
        );
    } else if common_isolation {
        println!(
            "isolation: {}; evidence in {}",
            std::fs::read_to_string(workdir.join("isolation-summary.txt"))
                .unwrap_or_default()
                .trim(),
            workdir.display()
        );
    } else if let Some(ha) = &report.ha {
        println!(
            "instance {} booted from disk ({}) after its owner was killed; cleaning completed on {}, the last member; evidence in {}",
            report.instance_uuid,
            report.boot_marker,
            ha.final_owner,
            workdir.display()
        );
    } else {
        println!(
            "instance {} booted from disk ({}); disks wiped; evidence in {}",
            report.instance_uuid,
            report.boot_marker,
            workdir.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::ChassisControl { node_dir, args } => {
            match ingot_lab::chassis::run(&node_dir, &args) {
                Ok(out) => {
                    print!("{out}");
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    // ipmi_sim shows the output as the reason.
                    println!("{e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Cmd::Run {
            common,
            kernel,
            initramfs,
            image,
        } => {
            if common.arch.len() > 1 {
                eprintln!("ingot-lab: `run` takes one architecture's files; `demo` builds several");
                return ExitCode::FAILURE;
            }
            run(
                common,
                Artifacts {
                    kernel,
                    initramfs,
                    image,
                    more: vec![],
                },
            )
        }
        Cmd::Demo {
            common,
            agent,
            test_init,
            agent_aarch64,
            test_init_aarch64,
            test_image_builder,
            kernel_cache,
            build_dir,
        } => (|| {
            let out = match build_dir {
                Some(d) => std::path::absolute(d)?,
                None => std::path::absolute(&common.workdir)?.join(ingot_lab::scenario::BUILD_DIR),
            };
            std::fs::create_dir_all(&out)?;
            println!(
                "building the agent ramdisk and the test image in {}",
                out.display()
            );
            let mut built = vec![];
            for &arch in &common.arch {
                let (agent, test_init) = match arch {
                    Arch::X86_64 => (&agent, &test_init),
                    Arch::Aarch64 => (
                        agent_aarch64
                            .as_ref()
                            .context("--arch aarch64 needs --agent-aarch64")?,
                        test_init_aarch64
                            .as_ref()
                            .context("--arch aarch64 needs --test-init-aarch64")?,
                    ),
                };
                built.push((
                    arch,
                    prepare::build(&prepare::Inputs {
                        kernel_cache: &kernel_cache,
                        agent,
                        test_init,
                        test_image_builder: &test_image_builder,
                        out: &out,
                        firmware: common.firmware,
                        arch,
                    })?,
                ));
            }
            let mut built = built.into_iter();
            let (_, mut artifacts) = built.next().context("no --arch")?;
            artifacts.more = built
                .map(|(arch, a)| prepare::ArchArtifacts {
                    arch,
                    kernel: a.kernel,
                    initramfs: a.initramfs,
                    image: a.image,
                })
                .collect();
            run(common, artifacts)
        })(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingot-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

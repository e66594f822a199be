//! `cargo xtask <task>`: project tasks.
//!
//! - `test`: install what is missing, then run every gate CI runs.
//! - `demo`: the end-to-end lab for a person (a QEMU server provisioned
//!   through the coordinator's Ironic API), with progress.
//! - `e2e`: the same lab as CI runs it.
//!
//! `demo` and `e2e` take `--fast-track`, `--tls`, `--glance`, `--network=slirp` and
//! `--firmware uefi`, or `--ha` or `--isolation`, or `--arch aarch64` (an
//! x86_64 and an aarch64 server under UEFI on one coordinator).
//! - `agent [--arch A]`, `ramdisk [--arch A]`: the static agent, or the agent
//!   ramdisk from Debian's kernel, for x86_64 or aarch64 (cross toolchain
//!   installed if missing; docs/architectures.md).
//! - `test-init [--arch A]`: the test image's static init for x86_64 or aarch64.
//! - `write-image-demo`: write a real disk image onto a loop device with the agent.
//! - `bench <name>`: benchmarks (`write-image`, `wipe`, `power-sync`, `convert`, `ha`, `api`).
//! - `fuzz [--seconds N] [TARGET...]`: every fuzz target under libFuzzer
//!   (nightly, cargo-fuzz; both installed if missing).

mod bench;
mod deny;
mod deps;
mod disk_image;
mod e2e;
mod elf;
mod fuzz;
mod ramdisk;
mod test;
mod util;
mod write_image_demo;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  test                 install missing packages, then fmt, clippy, tests, the static agent build,
                       the lab, the lab again with --tls --glance, the HA lab (--ha), the
                       isolation lab (--isolation) and the UEFI lab on both architectures
                       (--arch aarch64 --fast-track)
  demo [FLAGS]         a virtual server provisioned end to end: inspect, clean, deploy, boot, wipe
  e2e [FLAGS]          the same lab as CI runs it (evidence in target/e2e/)
                       FLAGS: --fast-track (the node keeps its agent between phases, Ironic's fast track)
                              --tls (TLS on every hop)
                              --glance (the image from a real Glance, deployed by its UUID as Nova does)
                              --network=slirp (QEMU's user network instead of a bridge with the
                                coordinator's DHCP, for machines without network namespaces)
                              --ha (three coordinators on PostgreSQL, two killed mid-work; alone)
                              --isolation (two servers on Open vSwitch, tenant VLANs, drift, a dead
                                switch; alone; evidence in target/e2e-isolation/)
                              --firmware uefi (the server under OVMF, the test image's UEFI variant)
                              --arch aarch64 (an x86_64 server under OVMF, then an aarch64 server
                                under AAVMF, on one coordinator; builds the aarch64 agent, ramdisk
                                and test image; evidence in target/e2e-aarch64/)
  agent [--arch A]     build the static agent for A (x86_64 or aarch64; the cross toolchain is
                       installed if missing) and check that it is a static ELF for A
  ramdisk [--arch A]   the same, then Debian's kernel for A and the agent ramdisk
                       (target/ramdisk-A/)
  test-init [--arch A] build the test image's init for A (target/<A>-unknown-linux-musl/agent/
                       ingot-testimage-init; aarch64: for `ingot-test-image --arch aarch64`)
  write-image-demo     write a small disk image to a loop device with ingot-agent (root)
  bench write-image    time write-image against the machine's limits (root; --busy: with a
                       CPU-bound competitor on one core)
  bench wipe           time wipe against dd and blkdiscard (root)
  bench power-sync     one power-state sync of 10,000 simulated IPMI BMCs against ipmitool
  bench convert        ingot-image convert against qemu-img convert (qcow2 -> raw, raw -> qcow2)
  bench ha             three coordinators on one PostgreSQL, 10,000 simulated BMCs: ownership
                       spread, takeover after SIGKILL, one owner per node (docs/benchmarks.md)
  bench api            the node and port API on 10,000 nodes, SQLite and PostgreSQL, p50/p99
                       per call against the in-memory path (docs/benchmarks.md)
  bench fleet          100 and 1,000 concurrent deploys (ipmi against bmc-fleet, simulated
                       agents over HTTP), SQLite and PostgreSQL; --ironic: real Ironic beside it
  fuzz [--seconds N] [TARGET...]
                       run every fuzz target (or those named) N seconds each (default 60) under
                       libFuzzer with nightly and cargo-fuzz (installed if missing); see docs/fuzzing.md";

fn main() -> ExitCode {
    let args = e2e::joined_flags(std::env::args().skip(1).collect());
    let result = match args.first().map(String::as_str) {
        Some("test") if args.len() == 1 => test::run(),
        Some("demo") if e2e::flags_ok(&args[1..]) => {
            e2e::run(e2e::Build::Minimal, true, &args[1..]).map(drop)
        }
        Some("e2e") if e2e::flags_ok(&args[1..]) => {
            e2e::run(e2e::Build::LikeTests, false, &args[1..]).map(drop)
        }
        Some("write-image-demo") if args.len() == 1 => write_image_demo::run(),
        Some("agent") => ramdisk::run_agent(&args[1..]),
        Some("ramdisk") => ramdisk::run_ramdisk(&args[1..]),
        Some("test-init") => ramdisk::run_test_init(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

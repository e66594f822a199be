//! `cargo xtask <task>`: project tasks.
//!
//! - `test`: install what is missing, then run every gate CI runs.
//! - `demo`: write a real disk image onto a loop device with the agent.
//! - `bench <name>`: benchmarks (`write-image`, `wipe`, `power-sync`).

mod bench;
mod demo;
mod deps;
mod disk_image;
mod elf;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  test                 install missing packages, then fmt, clippy, tests, the static agent build
  demo                 write a small disk image to a loop device with ingot-agent (root)
  bench write-image    time write-image against the machine's limits (root)
  bench wipe           time wipe against dd and blkdiscard (root)
  bench power-sync     one power-state sync of 10,000 simulated IPMI BMCs against ipmitool";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") if args.len() == 1 => test::run(),
        Some("demo") if args.len() == 1 => demo::run(),
        Some("bench") => bench::run(&args[1..]),
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

//! `cargo xtask test`: install what is missing, then run every gate CI runs.
//!
//! Gates: rustfmt, `cargo deny` (deny.toml's bans, licences and sources;
//! cargo-deny is installed first if missing), clippy (`-D warnings`), the
//! static musl agent build and an ELF check that it really is static, then
//! the workspace tests with privileged tests required
//! (`INGOT_REQUIRE_PRIVILEGED=1`; some of them boot or pack the static agent,
//! hence the order), and last the end-to-end lab (`e2e`), then the same lab
//! again with TLS on every hop and the image from a real Glance
//! (`ingot-lab run --tls --glance`), and the HA lab: three coordinators on
//! PostgreSQL, two of them killed mid-deploy and mid-cleaning
//! (`ingot-lab run --ha`), the isolation lab: two servers on a private
//! Open vSwitch, tenant VLANs, drift and a dead switch (`ingot-lab run
//! --isolation`), and the lab under UEFI on both architectures with one
//! coordinator (`cargo xtask e2e --arch aarch64 --fast-track`): an x86_64
//! server under OVMF on the same ramdisk with the test image's UEFI variant,
//! then an aarch64 server under AAVMF, whose static agent (checked like the
//! x86_64 one), ramdisk and test image it builds first. A failed gate does not stop the later
//! ones (except the ELF check, which needs the build); the task exits
//! non-zero if any failed.

use std::io::{BufRead, BufReader, Write as _};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::Arch;
use crate::{deps, elf, util};

/// Totals of libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestCounts {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// The panics in a `cargo test` output: where and why each failing test
/// stopped, kept for the summary at the end of the run (the CI log's tail),
/// far below the tests' captured output.
#[derive(Debug, Default)]
struct Panics {
    found: Vec<Panic>,
    /// The panic whose message lines are being read.
    open: Option<Panic>,
}

/// One `thread '…' panicked at …:` and its message.
#[derive(Debug, PartialEq, Eq)]
struct Panic {
    thread: String,
    at: String,
    message: Vec<String>,
}

impl Panics {
    /// Most panics kept, and message lines and characters per line kept.
    const MAX: usize = 20;
    const MAX_LINES: usize = 8;
    const MAX_CHARS: usize = 400;

    fn add_line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("thread '")
            && let Some((thread, at)) = rest.split_once("' panicked at ")
        {
            self.close();
            self.open = Some(Panic {
                thread: thread.to_owned(),
                at: at.trim_end_matches(':').to_owned(),
                message: Vec::new(),
            });
            return;
        }
        let Some(p) = &mut self.open else { return };
        let end = line.is_empty()
            || line.starts_with("note: ")
            || line.starts_with("stack backtrace:")
            || line.starts_with("---- ")
            || line.starts_with("failures:");
        if end || p.message.len() >= Self::MAX_LINES {
            self.close();
        } else {
            p.message.push(line.chars().take(Self::MAX_CHARS).collect());
        }
    }

    fn close(&mut self) {
        if let Some(p) = self.open.take()
            && self.found.len() < Self::MAX
        {
            self.found.push(p);
        }
    }

    fn finish(mut self) -> Vec<Panic> {
        self.close();
        self.found
    }
}

/// One gate's outcome.
struct Gate {
    name: &'static str,
    outcome: Result<String>,
    seconds: f64,
}

/// Runs `cargo test --workspace` with privileged tests required, echoing its
/// output and counting the results.
fn cargo_test(counts: &mut TestCounts, panics: &mut Vec<Panic>) -> Result<String> {
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .env("INGOT_REQUIRE_PRIVILEGED", "1");
    util::announce(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut out = std::io::stdout().lock();
    let mut seen = Panics::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        counts.add_line(&line);
        seen.add_line(&line);
        writeln!(out, "{line}")?;
    }
    drop(out);
    *panics = seen.finish();
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "cargo test failed ({status}): {} passed, {} failed",
            counts.passed,
            counts.failed
        );
    }
    if counts.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(format!(
        "{} passed, {} failed, {} ignored",
        counts.passed, counts.failed, counts.ignored
    ))
}

/// Checks that the agent built for `arch` is a static ELF for that machine:
/// no `PT_INTERP`, no `DT_NEEDED`, `e_machine` of `arch`. Returns a
/// description with its size.
pub fn check_static_agent(arch: Arch) -> Result<String> {
    check_static_binary("ingot-agent", &util::agent_path_for(arch), arch)
}

/// Checks that `path` (the program `name`) is a static ELF for `arch`, as
/// [`check_static_agent`] does for the agent.
pub fn check_static_binary(name: &str, path: &std::path::Path, arch: Arch) -> Result<String> {
    println!(
        "$ (xtask) check that {} is a static {} ELF",
        path.display(),
        arch.name()
    );
    let data = std::fs::read(path).with_context(|| path.display().to_string())?;
    let linkage = elf::linkage(&data).with_context(|| path.display().to_string())?;
    if linkage.machine != arch.elf_machine() {
        bail!(
            "{} is for ELF machine {}, not {} ({})",
            path.display(),
            linkage.machine,
            arch.name(),
            arch.elf_machine()
        );
    }
    if !linkage.is_static() {
        bail!(
            "{} is not static: interpreter {:?}, needs {:?}",
            path.display(),
            linkage.interpreter,
            linkage.needed
        );
    }
    let kind = if linkage.has_dynamic {
        "static PIE"
    } else {
        "static"
    };
    let msg = format!(
        "{} {kind}, no interpreter, no DT_NEEDED; {} ({} bytes)",
        arch.name(),
        util::human_bytes(data.len() as u64),
        data.len()
    );
    println!("{name}: {msg}");
    Ok(msg)
}

/// Runs the task.
pub fn run() -> Result<()> {
    let started = Instant::now();
    // One build of everything, once: incremental compilation's caches would
    // only cost disk space (gigabytes) and time here. Every cargo below
    // inherits this.
    // SAFETY: set before any thread is started.
    unsafe { std::env::set_var("CARGO_INCREMENTAL", "0") };
    let t = Instant::now();
    deps::ensure().context("prerequisites")?;
    // The tests gate builds the test image's aarch64 init, fetches the
    // arm64 kernel and boots them under AAVMF (INGOT_REQUIRE_PRIVILEGED=1
    // makes those tests mandatory): the arm64 architecture, its package
    // lists and the cross toolchain must be there before it, on a fresh
    // machine too. The aarch64 builds themselves stay late (below).
    deps::ensure_arch(Arch::Aarch64).context("prerequisites (aarch64)")?;
    let mut gates = vec![Gate {
        name: "prerequisites",
        outcome: Ok("installed or present".into()),
        seconds: t.elapsed().as_secs_f64(),
    }];
    let mut counts = TestCounts::default();
    let mut panics = Vec::new();

    let mut gate = |name: &'static str, f: &mut dyn FnMut() -> Result<String>| {
        println!("\n==> {name}");
        let t = Instant::now();
        let outcome = f();
        if let Err(e) = &outcome {
            println!("FAILED: {name}: {e:#}");
        }
        gates.push(Gate {
            name,
            outcome,
            seconds: t.elapsed().as_secs_f64(),
        });
    };
    gate("rustfmt", &mut || {
        util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))
            .map(|()| "formatted".into())
            .context("code is not formatted: run `cargo fmt --all`")
    });
    gate("cargo deny", &mut crate::deny::check);
    gate("clippy", &mut || {
        util::run(util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
        .map(|()| "no warnings".into())
    });
    let mut built = false;
    gate("agent build (musl)", &mut || {
        util::build_agent()?;
        built = true;
        Ok(format!("{}", util::agent_path().display()))
    });
    if built {
        gate("agent is static", &mut || check_static_agent(Arch::X86_64));
    } else {
        gate("agent is static", &mut || {
            bail!("not checked: the build failed")
        });
    }
    // After the agent build: some tests boot or pack the static agent.
    gate("tests", &mut || cargo_test(&mut counts, &mut panics));
    // Last: it reuses the test build and boots QEMU on a quiet machine.
    gate("e2e lab", &mut || {
        crate::e2e::run(crate::e2e::Build::LikeTests, false, &[]).map(|timings| {
            format!(
                "{}; {timings}",
                util::target_dir().join("e2e/report.json").display()
            )
        })
    });

    // The same lab with TLS on every hop and the image from a real Glance
    // (deployed by UUID, as Nova does), on the ramdisk and image just built:
    // one run for both variants keeps CI short.
    gate("e2e lab (TLS, Glance)", &mut || {
        crate::e2e::run_tls_glance_again().map(|timings| {
            format!(
                "{}; {timings}",
                util::target_dir().join("e2e-tls/report.json").display()
            )
        })
    });

    // Three coordinators on PostgreSQL, the node's owner killed while the
    // agent writes the image and again in cleaning; same ramdisk and image.
    gate("e2e lab (HA, PostgreSQL)", &mut || {
        crate::e2e::run_ha_again().map(|timings| {
            format!(
                "{}; {timings}",
                util::target_dir().join("e2e-ha/report.json").display()
            )
        })
    });

    // Tenant isolation on a private Open vSwitch: two servers, tenant
    // hosts, drift and a dead switch; same ramdisk and image.
    gate("e2e lab (isolation)", &mut || {
        crate::e2e::run_isolation_again().map(|timings| {
            format!(
                "{}; {timings}",
                util::target_dir()
                    .join("e2e-isolation/isolation.json")
                    .display()
            )
        })
    });

    // The aarch64 agent and the test image's aarch64 init (the cross
    // toolchain, QEMU's arm emulator and AAVMF were installed with the
    // prerequisites; checked again), then the same static check as
    // x86_64's. Late, so that the x86_64 labs above run on a machine not
    // yet busy with this build.
    let mut built_arm = false;
    gate("agent build (aarch64)", &mut || {
        crate::deps::ensure_arch(Arch::Aarch64)?;
        let agent = util::build_agent_for(Arch::Aarch64)?;
        util::build_test_init_for(Arch::Aarch64)?;
        built_arm = true;
        Ok(format!("{}", agent.display()))
    });
    if built_arm {
        gate("agent is static (aarch64)", &mut || {
            check_static_agent(Arch::Aarch64)
        });
    } else {
        gate("agent is static (aarch64)", &mut || {
            bail!("not checked: the build failed")
        });
    }
    // UEFI on both architectures, one coordinator: an x86_64 server under
    // OVMF (the same ramdisk, the UEFI test image), then an aarch64 server
    // under AAVMF (the agent just built; its ramdisk and test image built
    // here), fast track.
    gate("e2e lab (UEFI: x86_64 + aarch64)", &mut || {
        crate::e2e::run_multi_arch_again().map(|timings| {
            format!(
                "{}; {timings}",
                util::target_dir()
                    .join("e2e-aarch64/report-node2.json")
                    .display()
            )
        })
    });

    println!("\n==> summary");
    let mut failed = 0;
    for g in &gates {
        match &g.outcome {
            Ok(msg) => println!("  ok      {:<24} {:>6.1} s  {msg}", g.name, g.seconds),
            Err(e) => {
                failed += 1;
                println!("  FAILED  {:<24} {:>6.1} s  {e:#}", g.name, g.seconds);
            }
        }
    }
    println!(
        "  total {:.1} s; {} of {} gates passed",
        started.elapsed().as_secs_f64(),
        gates.len() - failed,
        gates.len()
    );
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    // Panics of passing tests (should_panic, a task's expected panic) are not news.
    if counts.failed > 0 && !panics.is_empty() {
        println!("test panics (the full output is above):");
        for p in &panics {
            println!("  {} at {}", p.thread, p.at);
            for l in &p.message {
                println!("      {l}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} gate(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_panic_messages() {
        let mut p = Panics::default();
        for l in [
            "---- sol_takeover stdout ----",
            "2026-11-27T18:22:53Z DEBUG noise",
            "thread 'sol_takeover' panicked at coordinator/tests/console.rs:441:15:",
            "ipmitool sol: no \"SOL Session operational\" in",
            "\"Info: SOL payload already active on another session\"",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            "thread 'tokio-runtime-worker' panicked at src/x.rs:1:2:",
            "boom",
            "",
            "test result: FAILED. 4 passed; 1 failed; 0 ignored",
        ] {
            p.add_line(l);
        }
        let found = p.finish();
        assert_eq!(
            found,
            vec![
                Panic {
                    thread: "sol_takeover".into(),
                    at: "coordinator/tests/console.rs:441:15".into(),
                    message: vec![
                        "ipmitool sol: no \"SOL Session operational\" in".into(),
                        "\"Info: SOL payload already active on another session\"".into()
                    ],
                },
                Panic {
                    thread: "tokio-runtime-worker".into(),
                    at: "src/x.rs:1:2".into(),
                    message: vec!["boom".into()],
                },
            ]
        );
    }

    #[test]
    fn counts_libtest_summaries() {
        let mut c = TestCounts::default();
        c.add_line("test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.31s");
        c.add_line(
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_line("test foo ... ok");
        c.add_line("running 3 tests");
        assert_eq!(
            c,
            TestCounts {
                passed: 15,
                failed: 1,
                ignored: 2
            }
        );
    }
}

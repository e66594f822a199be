//! Shared helpers: running commands, the agent build, loop devices, nginx.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The static agent's target triple on the machine's own architecture (CI, the lab).
pub const MUSL_TARGET: &str = Arch::X86_64.musl_target();

/// An architecture the static agent and its ramdisk are built for
/// (docs/architectures.md lists every place one appears).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (Debian `amd64`).
    X86_64,
    /// 64-bit Arm (Debian `arm64`).
    Aarch64,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// Parses the kernel's (`uname -m`) or Debian's name.
    pub fn parse(name: &str) -> Option<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == name || a.debian() == name)
    }

    /// The kernel's name (`uname -m`), as the inventory reports it.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name (packages, `dpkg --add-architecture`, `ingot-ramdisk --arch`).
    pub const fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// Rust's static musl target triple.
    pub const fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The ELF `e_machine` of its binaries.
    pub const fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => object::elf::EM_X86_64,
            Arch::Aarch64 => object::elf::EM_AARCH64,
        }
    }
}

/// The workspace root (the folder above `xtask/`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        None => repo_root().join("target"),
    }
}

/// A `cargo` command run from the workspace root, with the cargo that runs xtask.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    cmd
}

/// Quotes a word for display the way a shell would need it.
fn quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command as it would be typed in a shell (environment overrides first).
pub fn display(cmd: &Command) -> String {
    let mut out = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let _ = write!(out, "{}={} ", k.to_string_lossy(), quote(v));
        }
    }
    out.push_str(&quote(cmd.get_program()));
    for a in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out
}

/// Prints a command the way every task shows what it runs.
pub fn announce(cmd: &Command) {
    println!("$ {}", display(cmd));
    std::io::stdout().flush().ok();
}

/// Runs a command with inherited stdout/stderr (no stdin); fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    announce(cmd);
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout; on failure the error holds its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True if this process runs as root (uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Fails with a clear message unless running as root.
pub fn require_root(task: &str) -> Result<()> {
    if !is_root() {
        bail!("`cargo xtask {task}` needs root (it creates loop devices); run it as root");
    }
    Ok(())
}

/// Path of the static agent built by [`build_agent`].
pub fn agent_path() -> PathBuf {
    agent_path_for(Arch::X86_64)
}

/// Path of the static agent for `arch` built by [`build_agent_for`].
pub fn agent_path_for(arch: Arch) -> PathBuf {
    target_dir()
        .join(arch.musl_target())
        .join("agent")
        .join("ingot-agent")
}

/// Builds the static musl agent (profile `agent`) and returns its path.
pub fn build_agent() -> Result<PathBuf> {
    build_agent_for(Arch::X86_64)
}

/// Builds the static musl agent for `arch` (profile `agent`; the cross C
/// compiler and linker for aarch64 come from `.cargo/config.toml`).
pub fn build_agent_for(arch: Arch) -> Result<PathBuf> {
    build_static_for(arch, "ingot-agent", agent_path_for(arch))
}

/// Path of the test image's static init for `arch` built by
/// [`build_test_init_for`] ([`build_test_init`]: x86_64): `target/<arch>-unknown-linux-musl/agent/ingot-testimage-init`.
pub fn test_init_path_for(arch: Arch) -> PathBuf {
    target_dir()
        .join(arch.musl_target())
        .join("agent")
        .join("ingot-testimage-init")
}

/// Builds the test image's static init (musl, profile `agent`).
pub fn build_test_init() -> Result<PathBuf> {
    build_test_init_for(Arch::X86_64)
}

/// Builds the test image's static init for `arch` (musl, profile `agent`;
/// for aarch64 the cross linker comes from `.cargo/config.toml`, as for the
/// agent). The aarch64 one goes into the UEFI test image for arm64
/// (`ingot-test-image --arch aarch64 --firmware uefi`).
pub fn build_test_init_for(arch: Arch) -> Result<PathBuf> {
    build_static_for(arch, "ingot-testimage-init", test_init_path_for(arch))
}

/// Builds `package` for `arch`'s musl target with the `agent` profile.
fn build_static_for(arch: Arch, package: &str, path: PathBuf) -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--profile",
        "agent",
        "--target",
        arch.musl_target(),
        "-p",
        package,
    ]))?;
    if !path.is_file() {
        bail!("the build succeeded but {} does not exist", path.display());
    }
    Ok(path)
}

/// Sizes in MiB/GiB for people.
pub fn human_bytes(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let n = n as f64;
    if n >= 1024.0 * MIB {
        format!("{:.2} GiB", n / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", n / MIB)
    }
}

/// The SHA-256 of a file, in lower-case hex (with OpenSSL, which uses SHA-NI).
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = output(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-r"])
            .arg(path),
    )?;
    let hex = out.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("unexpected openssl output for {}: {out:?}", path.display());
    }
    Ok(hex.to_ascii_lowercase())
}

/// Creates (or resizes) a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.set_len(size)
        .with_context(|| format!("resize {}", path.display()))?;
    Ok(())
}

/// A loop device over a backing file, attached with direct I/O; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` to a free loop device (`losetup --find --show --direct-io=on`).
    pub fn attach(backing: &Path) -> Result<Self> {
        let mut cmd = Command::new("losetup");
        cmd.args(["--find", "--show", "--direct-io=on"])
            .arg(backing);
        announce(&cmd);
        let out = output(&mut cmd)?;
        let path = PathBuf::from(out.trim());
        if !path.starts_with("/dev") {
            bail!("losetup printed {out:?}, not a device");
        }
        Ok(Self { path })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let mut cmd = Command::new("losetup");
        cmd.arg("-d").arg(&self.path);
        announce(&cmd);
        if let Err(e) = output(&mut cmd) {
            eprintln!("warning: could not detach {}: {e:#}", self.path.display());
        }
    }
}

/// Asks the kernel for a free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A private nginx serving one folder on 127.0.0.1 (sendfile on); stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Nginx {
    /// Starts nginx in the foreground, single-process, serving `root`; its
    /// config, logs and temp files go in `work`.
    pub fn start(root: &Path, work: &Path) -> Result<Self> {
        let root = std::fs::canonicalize(root).with_context(|| root.display().to_string())?;
        std::fs::create_dir_all(work.join("tmp"))?;
        let work = std::fs::canonicalize(work)?;
        let port = free_port()?;
        let conf = work.join("nginx.conf");
        let w = work.display();
        let text = format!(
            "# Written by cargo xtask: a private, single-process nginx on loopback.\n\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {w}/nginx.pid;\n\
             error_log {w}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   sendfile on;\n\
             \x20   tcp_nopush on;\n\
             \x20   default_type application/octet-stream;\n\
             \x20   client_body_temp_path {w}/tmp/body;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       root {root};\n\
             \x20   }}\n\
             }}\n",
            root = root.display()
        );
        std::fs::write(&conf, text).with_context(|| conf.display().to_string())?;
        let bin = if Path::new("/usr/sbin/nginx").exists() {
            PathBuf::from("/usr/sbin/nginx")
        } else {
            PathBuf::from("nginx")
        };
        let mut cmd = Command::new(bin);
        cmd.arg("-e")
            .arg(work.join("error.log"))
            .arg("-p")
            .arg(&work)
            .arg("-c")
            .arg(&conf);
        announce(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("could not start `{}`", display(&cmd)))?;
        let mut nginx = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                println!("nginx serves {} on 127.0.0.1:{port}", root.display());
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(work.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start ({status}): {}", log.trim());
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of a file in the served folder.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        println!("stopping nginx (pid {})", self.child.id());
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Finds `"key": <number>` in a JSON text (the agent's flat summary) without a parser.
pub fn json_number(text: &str, key: &str) -> Option<f64> {
    let needle = format!("\"{key}\"");
    let rest = &text[text.find(&needle)? + needle.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        let mut cmd = Command::new("cargo");
        cmd.args(["fmt", "--all", "--", "--check", "a b", "it's"]);
        assert_eq!(display(&cmd), r"cargo fmt --all -- --check 'a b' 'it'\''s'");
    }

    #[test]
    fn finds_json_numbers() {
        let j = "{\n  \"seconds\": 4.25,\n  \"image_bytes\": 4294967296,\n  \"x\": null\n}";
        assert_eq!(json_number(j, "seconds"), Some(4.25));
        assert_eq!(json_number(j, "image_bytes"), Some(4294967296.0));
        assert_eq!(json_number(j, "x"), None);
        assert_eq!(json_number(j, "missing"), None);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512 << 20), "512.0 MiB");
        assert_eq!(human_bytes(4 << 30), "4.00 GiB");
    }
}

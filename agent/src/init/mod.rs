//! PID 1 duties: mount the API file systems, log to the kernel console, load
//! the kernel modules the hardware needs, reap orphans, configure the network,
//! then run the agent. It never exits: a fatal error is logged, and the
//! machine reboots after a timeout (the API stays up meanwhile when it could
//! start).

mod coldplug;
pub mod modules;
mod mounts;
mod uevent;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::ca::TrustedCa;
use crate::cmdline::{self, KernelParams};
use crate::coordinator::runtime::{RunOptions, TlsMode};
use crate::ipa::power::{PowerAction, execute as power};
use crate::state::{AgentConfig, AgentState, PowerPolicy};

/// Reboot this long after a fatal error, unless `ingot.reboot_timeout=` says otherwise.
pub const DEFAULT_REBOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// True when the binary must act as init: PID 1, or started as `/init`.
pub fn is_init() -> bool {
    if std::process::id() == 1 {
        return true;
    }
    std::env::args_os()
        .next()
        .is_some_and(|a| Path::new(&a).file_name().is_some_and(|n| n == "init"))
}

/// Makes fds 0–2 the kernel console, so logs reach the serial console.
fn open_console() {
    use std::os::fd::AsRawFd;
    let Ok(c) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; `c` stays open until then.
        unsafe { libc::dup2(c.as_raw_fd(), fd) };
    }
}

/// Reaps every child that exits (orphans re-parented to PID 1).
fn spawn_reaper() {
    let r = std::thread::Builder::new().name("reaper".into()).spawn(|| {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid <= 0 {
                // No children: check again later.
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot start the reaper thread");
    }
}

fn reboot_later(timeout: Duration, why: &str) -> ! {
    tracing::error!(reason = %why, timeout_s = timeout.as_secs(), "fatal error: rebooting after the timeout");
    std::thread::sleep(timeout);
    power(PowerAction::Reboot);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Panics log and reboot after the timeout instead of killing PID 1 (which
/// would panic the kernel).
fn install_panic_hook(timeout: Duration) {
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("ingot-agent: PANIC: {info}");
        std::thread::sleep(timeout);
        power(PowerAction::Reboot);
    }));
}

/// The running kernel's release (`uname -r`).
fn kernel_release() -> Option<String> {
    // SAFETY: utsname is plain old data; all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates `release`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Run options for the coordinator from the kernel parameters; `ca` is
/// [`KernelParams::trusted_ca`]'s result.
pub fn run_options(p: &KernelParams, api_url: &str, ca: &TrustedCa) -> RunOptions {
    let mut o = RunOptions::new(api_url);
    o.insecure = p.insecure;
    o.ca = ca.clone();
    o.advertise_host = p.advertise_host.clone();
    o.advertise_port = p.advertise_port;
    o.tls = match p.tls.as_deref() {
        Some("on") => TlsMode::On,
        Some("off") => TlsMode::Off,
        _ => TlsMode::Auto,
    };
    o
}

/// Loads the hardware's drivers on a thread of its own ([`coldplug`]); the
/// receiver turns `true` when start-up loading is over.
fn spawn_driver_loading() -> tokio::sync::watch::Receiver<bool> {
    let (done, loaded) = tokio::sync::watch::channel(false);
    let done = Arc::new(done);
    let load = |done: Arc<tokio::sync::watch::Sender<bool>>| {
        if let Some(rel) = kernel_release() {
            let db = modules::ModuleDb::load(&Path::new("/lib/modules").join(&rel));
            // UEFI variables (the boot entry, clean_uefi_nvram): Debian builds
            // efivarfs as a module, which no device asks for; the first mount
            // attempt, before any module, failed then.
            if Path::new("/sys/firmware/efi").is_dir() && modules::load_named(&db, "efivarfs") {
                mounts::mount_efivarfs();
            }
            let loaded = coldplug::load_drivers(db, Path::new("/"));
            tracing::info!(count = loaded.len(), kernel = %rel, "kernel modules loaded");
        }
        // Nobody may be waiting any more; that is fine.
        let _ = done.send(true);
    };
    let theirs = done.clone();
    let spawned = std::thread::Builder::new()
        .name("drivers".into())
        .spawn(move || load(theirs));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the driver thread: loading drivers first");
        load(done);
    }
    loaded
}

/// Waits until the interfaces the agent needs exist: the `BOOTIF=` one when
/// the command line names it (its driver may be loaded long before a slow
/// storage driver ends its probe), else every one (start-up driver loading
/// is over). The network and the lookup start then; interfaces whose driver
/// loads later are not in the lookup (the `BOOTIF=` one is what identifies
/// the node), but are in the inventory.
async fn links_ready(bootif: Option<&str>, mut loaded: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *loaded.borrow() {
            return;
        }
        if bootif.is_some_and(crate::net::has_link_with_mac) {
            tracing::info!(bootif = ?bootif, "the boot interface is up; drivers still loading");
            return;
        }
        tokio::select! {
            changed = loaded.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// The init entry point: never returns.
pub fn main() -> ! {
    mounts::mount_api_filesystems();
    open_console();
    let params = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let level = if params.debug { "debug" } else { "info" };
    let logs = crate::logring::init_with(level, false, params.log_json);
    let timeout = params.reboot_timeout.unwrap_or(DEFAULT_REBOOT_TIMEOUT);
    install_panic_hook(timeout);
    tracing::info!(version = %crate::state::agent_version(), "ingot-agent starting as init");
    spawn_reaper();
    crate::random::prime_kernel_generator();
    let drivers_loaded = spawn_driver_loading();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => reboot_later(timeout, &format!("cannot start the async runtime: {e}")),
    };
    let Some(api_url) = params.api_url.clone() else {
        reboot_later(
            timeout,
            "no ingot.api= (or ipa-api-url=) on the kernel command line",
        );
    };
    // A configured CA that cannot be used is fatal: falling back to the
    // public roots would trust servers the operator did not mean to.
    let ca = match params.trusted_ca() {
        Ok(ca) => ca,
        Err(e) => reboot_later(timeout, &e.to_string()),
    };
    let config = AgentConfig {
        power: PowerPolicy::Real,
        state_dir: Some("/run/ingot".into()),
        insecure: params.insecure,
        ca: ca.clone(),
        ..AgentConfig::default()
    };
    let state: Arc<AgentState> = AgentState::new(config, logs);
    if let Some(t) = &params.token {
        state.set_token(Some(t.clone()));
    }
    let mut opts = run_options(&params, &api_url, &ca);
    let network_ready = Arc::new(tokio::sync::Notify::new());
    opts.network_ready = Some(network_ready.clone());
    let net = crate::net::NetOptions::from_params(&params);
    let bootif = params.bootif.clone();
    let result = rt.block_on(async move {
        links_ready(bootif.as_deref(), drivers_loaded).await;
        tokio::spawn(async move {
            let leases = crate::net::configure(&net).await;
            tracing::info!(configured = leases.len(), "network configured");
            network_ready.notify_one();
            // Renew the DHCP leases for as long as the agent runs (a wipe can
            // outlast them); the maintenance threads log what they do.
            crate::net::maintain(&leases, &net, std::sync::Arc::new(|_| {}));
        });
        crate::coordinator::runtime::run(state, opts).await
    });
    match result {
        Ok(()) => reboot_later(timeout, "the agent stopped"),
        Err(e) => reboot_later(timeout, &e.to_string()),
    }
}

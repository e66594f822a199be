//! Drivers for the hardware, as udev loads them: every device present at
//! start (coldplug), then every device the kernel announces later (hotplug).
//!
//! - Each matched module's [`Chain`] loads on its own thread, as udev's
//!   workers do: a driver that probes slowly (ahci waiting for SATA links,
//!   nvme for its controller) holds up no other.
//! - A bus driver that binds (virtio_pci) creates devices (virtio0…); the
//!   kernel announces them before the load returns, so their drivers
//!   (virtio_net) start as soon as the bus driver's chain ends, not after
//!   the slowest chain of the round.
//! - [`load_drivers`] returns once nothing is loading and nothing new was
//!   announced. A thread goes on loading drivers for devices that appear
//!   later (a disk behind a slow SATA link, a USB stick), for as long as the
//!   agent runs.
//! - Without the kernel's announcements (the socket cannot be opened),
//!   sysfs is scanned again instead: after each quiet spell at start, then
//!   every half second for a minute.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::modules::{self, Chain, ModuleDb};
use super::uevent;

/// How often the start-up loop looks at the announcements while chains load.
const POLL: Duration = Duration::from_millis(20);
/// Without announcements: the wait before each scan after a quiet spell.
const SETTLE: Duration = Duration::from_millis(100);
/// Without announcements: scans after quiet spells at start, at most.
const SETTLE_SCANS: usize = 4;
/// Without announcements: the later scans' interval, and for how long.
const RESCAN_EVERY: Duration = Duration::from_millis(500);
const RESCAN_FOR: Duration = Duration::from_secs(60);

/// The state shared by the start-up loop, the chains' threads and the
/// hotplug thread.
#[derive(Clone)]
struct Loader {
    db: Arc<ModuleDb>,
    tried: Arc<Mutex<HashSet<String>>>,
    loaded: Arc<Mutex<Vec<String>>>,
}

impl Loader {
    /// Starts a chain's thread for each module matching `alias` that was not
    /// tried yet; each sends on `done` when it ends. Returns how many started.
    fn start(&self, alias: &str, done: &Sender<()>) -> usize {
        let mut started = 0;
        for module in self.db.lookup(alias) {
            let fresh = self
                .tried
                .lock()
                .is_ok_and(|mut t| t.insert(module.clone()));
            if !fresh {
                continue;
            }
            let chain: Chain = self.db.chain(&module);
            let loaded = self.loaded.clone();
            let done = done.clone();
            let alias_owned = alias.to_string();
            let spawned = std::thread::Builder::new()
                .name(format!("load {module}"))
                .spawn(move || {
                    modules::load_chain(&chain, &alias_owned, &loaded);
                    // The receiver is gone once start-up is over; nothing waits then.
                    let _ = done.send(());
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    // Load it here instead: slower, but loaded.
                    tracing::warn!(module = %module, error = %e, "cannot start a thread to load it");
                    modules::load_chain(&self.db.chain(&module), alias, &self.loaded);
                }
            }
        }
        started
    }

    /// [`Loader::start`] for each of `aliases`.
    fn start_all<'a>(
        &self,
        aliases: impl IntoIterator<Item = &'a str>,
        done: &Sender<()>,
    ) -> usize {
        aliases.into_iter().map(|a| self.start(a, done)).sum()
    }

    /// Every device's modalias in sysfs under `root`.
    fn scan(&self, root: &Path, done: &Sender<()>) -> usize {
        let aliases = modules::modaliases(root);
        self.start_all(aliases.iter().map(String::as_str), done)
    }

    /// What the socket holds now: the added devices' drivers, or a full scan
    /// when announcements were lost.
    fn take_announced(&self, s: &uevent::Socket, root: &Path, done: &Sender<()>) -> usize {
        let got = s.drain();
        let mut started = self.start_all(got.added(), done);
        if got.lost {
            tracing::warn!("device announcements were lost: scanning sysfs again");
            started += self.scan(root, done);
        }
        started
    }
}

/// Loads the drivers of the hardware under `root` (`/` as PID 1), returns
/// the modules loaded so far in order of completion, and leaves a thread
/// loading drivers for devices that appear later.
pub fn load_drivers(db: ModuleDb, root: &Path) -> Vec<String> {
    // Subscribe before the first scan, so nothing announced in between is missed.
    let events = match uevent::Socket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no device announcements (uevent socket): scanning sysfs instead");
            None
        }
    };
    let loader = Loader {
        db: Arc::new(db),
        tried: Arc::new(Mutex::new(HashSet::new())),
        loaded: Arc::new(Mutex::new(Vec::new())),
    };
    let (done, finished) = mpsc::channel();
    let mut running = loader.scan(root, &done);
    let mut settle_scans = 0;
    loop {
        while running > 0 {
            match finished.recv_timeout(POLL) {
                Ok(()) => running -= 1,
                Err(RecvTimeoutError::Timeout) => {}
                // Unreachable while `done` lives; stop waiting rather than spin.
                Err(RecvTimeoutError::Disconnected) => running = 0,
            }
            if let Some(s) = &events {
                running += loader.take_announced(s, root, &done);
            }
        }
        // Nothing is loading. A bus driver that just bound has announced its
        // devices already; without announcements, give them a moment.
        let new = match &events {
            Some(s) => loader.take_announced(s, root, &done),
            None if settle_scans < SETTLE_SCANS => {
                settle_scans += 1;
                std::thread::sleep(SETTLE);
                loader.scan(root, &done)
            }
            None => 0,
        };
        if new == 0 {
            break;
        }
        running += new;
    }
    let now = loader.loaded.lock().map(|l| l.clone()).unwrap_or_default();
    spawn_hotplug(loader, events, root.to_path_buf());
    now
}

/// The thread that loads drivers for devices announced from now on.
fn spawn_hotplug(loader: Loader, events: Option<uevent::Socket>, root: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("hotplug".into())
        .spawn(move || {
            // Nobody waits for these chains; the sends fail quietly.
            let (done, _) = mpsc::channel();
            match events {
                Some(s) => loop {
                    if !s.wait(None) {
                        // poll(2) failed (a signal): do not spin.
                        std::thread::sleep(POLL);
                    }
                    loader.take_announced(&s, &root, &done);
                },
                None => {
                    let until = Instant::now() + RESCAN_FOR;
                    while Instant::now() < until {
                        std::thread::sleep(RESCAN_EVERY);
                        loader.scan(&root, &done);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the hotplug thread: devices that appear later get no driver");
    }
}

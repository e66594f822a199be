//! Ctrl-C and SIGTERM: the server's QEMU runs in its own process group (the
//! BMC's chassis_control starts it detached, as ipmi_sim needs), so stopping
//! the lab must power it off explicitly, like the end of a run does. Glance
//! (`--glance`) runs in a session of its own, so it is stopped too.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM (children started later get the default
/// handlers back at exec) and starts a thread that, once one arrives, powers
/// off the node of the work directory `workdir`, stops its Glance if one
/// runs, asks the rest of the process group (coordinator, ipmi_sim) to stop,
/// and exits with 130.
pub fn install(workdir: PathBuf) {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; signal(2) replaces no handler we rely on.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
    std::thread::spawn(move || {
        while !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("ingot-lab: interrupted; powering the server off");
        for n in ["node1", "node2"] {
            crate::chassis::NodeDir(workdir.join(n)).power_off();
        }
        crate::glance::stop_left_over(&workdir.join("glance"), &workdir.join("glance-lab.log"));
        // SAFETY: kill(2) to our own process group; this process catches
        // SIGTERM (above), so only the children act on it.
        unsafe { libc::kill(0, libc::SIGTERM) };
        std::process::exit(130);
    });
}

//! Progress counters shared by the pipeline and whoever reports on it (the
//! CLI's stderr reporter, the agent's heartbeat).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Live counters of one image write.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes received from the source.
    pub received: AtomicU64,
    /// Source length if known (0 when unknown).
    pub source_total: AtomicU64,
    /// Bytes of the image written or zeroed on the target.
    pub written: AtomicU64,
    /// Set when the write has ended (successfully or not).
    pub finished: AtomicBool,
}

impl Progress {
    /// A fresh set of counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// One progress line: bytes, rate and ETA.
fn line(p: &Progress, elapsed: Duration) -> String {
    let got = p.received.load(Ordering::Relaxed) as f64;
    let total = p.source_total.load(Ordering::Relaxed) as f64;
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = got / secs;
    let written = p.written.load(Ordering::Relaxed) as f64;
    if total > 0.0 {
        let pct = (got / total * 100.0).min(100.0);
        let eta = if rate > 0.0 {
            (total - got).max(0.0) / rate
        } else {
            0.0
        };
        format!(
            "{pct:5.1}% {} of {} received, {}/s, {} written, ETA {eta:.0}s",
            human(got),
            human(total),
            human(rate),
            human(written)
        )
    } else {
        format!(
            "{} received, {}/s, {} written",
            human(got),
            human(rate),
            human(written)
        )
    }
}

fn bar(p: &Progress) -> String {
    let got = p.received.load(Ordering::Relaxed) as f64;
    let total = p.source_total.load(Ordering::Relaxed) as f64;
    if total <= 0.0 {
        return String::new();
    }
    let width = 30;
    let filled = ((got / total).min(1.0) * width as f64) as usize;
    format!("[{}{}] ", "#".repeat(filled), "-".repeat(width - filled))
}

/// Prints progress to stderr until the write finishes: a redrawn bar on a
/// terminal, a log line every `interval` otherwise.
pub fn spawn_reporter(p: Arc<Progress>, interval: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let start = Instant::now();
        let tick = if tty {
            Duration::from_millis(200)
        } else {
            interval
        };
        let mut last = Instant::now();
        while !p.finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() < tick {
                continue;
            }
            last = Instant::now();
            let mut err = std::io::stderr().lock();
            if tty {
                write!(err, "\r\x1b[2K{}{}", bar(&p), line(&p, start.elapsed())).ok();
            } else {
                writeln!(err, "progress: {}", line(&p, start.elapsed())).ok();
            }
            err.flush().ok();
        }
        let end = line(&p, start.elapsed());
        if tty {
            writeln!(std::io::stderr(), "\r\x1b[2K{}{end}", bar(&p)).ok();
        } else {
            writeln!(std::io::stderr(), "progress: {end} (done)").ok();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_lines() {
        let p = Progress::default();
        p.received.store(512 << 20, Ordering::Relaxed);
        p.source_total.store(1 << 30, Ordering::Relaxed);
        let l = line(&p, Duration::from_secs(2));
        assert!(l.contains("50.0%"), "{l}");
        assert!(l.contains("256.0 MiB/s"), "{l}");
        assert!(l.contains("ETA 2s"), "{l}");
        assert!(bar(&p).starts_with("[###############---"));
    }
}

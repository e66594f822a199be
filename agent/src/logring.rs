//! The agent's log: formatted lines on stderr (the kernel console as PID 1)
//! and a bounded in-memory ring of the same lines, which
//! `log.collect_system_logs` returns to the coordinator.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Lines kept at most.
const MAX_LINES: usize = 20_000;
/// Bytes kept at most.
const MAX_BYTES: usize = 4 << 20;

/// A shared ring buffer of log lines.
#[derive(Debug, Clone, Default)]
pub struct LogRing {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: u64,
}

impl LogRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a line, dropping the oldest ones beyond the limits.
    pub fn push(&self, line: String) {
        let Ok(mut r) = self.inner.lock() else { return };
        r.bytes += line.len() + 1;
        r.lines.push_back(line);
        while r.lines.len() > MAX_LINES || r.bytes > MAX_BYTES {
            match r.lines.pop_front() {
                Some(old) => {
                    r.bytes -= old.len() + 1;
                    r.dropped += 1;
                }
                None => break,
            }
        }
    }

    /// The whole ring as text, oldest first.
    pub fn text(&self) -> String {
        let Ok(r) = self.inner.lock() else {
            return String::new();
        };
        let mut s = String::with_capacity(r.bytes + 64);
        if r.dropped > 0 {
            let _ = writeln!(s, "[{} older lines dropped]", r.dropped);
        }
        for l in &r.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// A `tracing` layer that formats events into the ring.
#[derive(Debug, Clone)]
pub struct RingLayer {
    ring: LogRing,
}

struct LineVisitor<'a>(&'a mut String);

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = format!(
            "{}.{:03} {:>5}",
            now.as_secs(),
            now.subsec_millis(),
            event.metadata().level()
        );
        event.record(&mut LineVisitor(&mut line));
        self.ring.push(line);
    }
}

/// Installs the global subscriber: stderr plus the ring. `RUST_LOG`
/// overrides `default_level`. Returns the ring.
pub fn init(default_level: &str) -> LogRing {
    init_with(default_level, std::io::stderr().is_terminal(), false)
}

/// As [`init`], choosing whether stderr gets ANSI colours (never on the
/// kernel console: serial logs must stay plain text), and whether its lines
/// are JSON objects (`ingot.log_format=json`; the ring keeps text lines).
pub fn init_with(default_level: &str, ansi: bool, json: bool) -> LogRing {
    let ring = LogRing::new();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let res = tracing_subscriber::registry()
        .with(filter)
        .with((!json).then(|| text_layer(std::io::stderr, ansi)))
        .with(json.then(|| json_layer(std::io::stderr)))
        .with(RingLayer { ring: ring.clone() })
        .try_init();
    if res.is_err() {
        eprintln!("ingot-agent: a log subscriber was already installed");
    }
    ring
}

/// Text lines to `w`.
fn text_layer<S, W>(w: W, ansi: bool) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(w)
        .with_target(false)
        .with_ansi(ansi)
}

/// One JSON object per line to `w`: `timestamp`, `level`, `message` and the
/// event's fields at the top level.
fn json_layer<S, W>(w: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_writer(w)
        .with_target(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a layer writes.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            match self.0.lock() {
                Ok(mut v) => v.extend_from_slice(b),
                Err(p) => p.into_inner().extend_from_slice(b),
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_are_objects_with_the_fields() {
        let buf = Buffer::default();
        let sub = tracing_subscriber::registry().with(json_layer(buf.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(disk = "/dev/vda", bytes = 7_u64, "image written");
        });
        let text = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "image written");
        assert_eq!(v["disk"], "/dev/vda");
        assert_eq!(v["bytes"], 7);
    }

    #[test]
    fn ring_drops_oldest() {
        let r = LogRing::new();
        for i in 0..(MAX_LINES + 5) {
            r.push(format!("line {i}"));
        }
        let t = r.text();
        assert!(t.starts_with("[5 older lines dropped]\nline 5\n"));
    }
}

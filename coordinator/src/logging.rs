//! The coordinator's log lines: plain text (the default) or one JSON object
//! per line (`--log-format json`), for log shippers.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields at the top level, and the enclosing spans.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown log format {s:?}: text or json")),
        }
    }
}

/// A subscriber writing `format` lines to `writer`, filtered by `filter`;
/// `ansi` colours text lines (never JSON).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the process's subscriber: `RUST_LOG`, else `info`, to stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if tracing::subscriber::set_global_default(subscriber(format, filter, ansi, std::io::stderr))
        .is_err()
    {
        eprintln!("ingot-coordinator: a log subscriber was already installed");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(format: LogFormat) -> String {
        let buf = Buffer::default();
        let sub = subscriber(format, EnvFilter::new("info"), false, buf.clone());
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("deploy", node = "n1");
            let _in = span.enter();
            tracing::info!(step = "write_image", bytes = 42_u64, "step finished");
            tracing::debug!("filtered out");
        });
        let bytes = buf.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn json_lines_carry_the_fields() {
        let text = lines(LogFormat::Json);
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(all[0]).expect("a JSON object");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "step finished");
        assert_eq!(v["step"], "write_image");
        assert_eq!(v["bytes"], 42);
        assert_eq!(v["span"]["name"], "deploy");
        assert_eq!(v["span"]["node"], "n1");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.contains('T')));
        assert!(v["target"].as_str().is_some());
    }

    #[test]
    fn text_is_the_default() {
        assert_eq!(LogFormat::default(), LogFormat::Text);
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
        let text = lines(LogFormat::Text);
        assert!(text.contains("step finished") && text.contains("step=\"write_image\""));
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }
}

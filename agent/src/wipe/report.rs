//! Building the per-device report ([`ingot_proto::wipe::DeviceReport`]).

use std::error::Error;
use std::time::{Instant, SystemTime};

use ingot_proto::wipe::{DeviceKind, DeviceReport, WipeMode, WipeStatus};

/// Formats a time as RFC 3339 UTC with milliseconds (`2026-11-27T11:32:43.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// An error and all its sources, `: `-separated.
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}

/// Clock for one device's report.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// Starts now.
    pub fn start() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// A report for `path` with the times filled in up to now and everything
    /// else empty, `failed` until the caller says otherwise.
    pub fn report(&self, path: &str, mode: WipeMode) -> DeviceReport {
        DeviceReport {
            path: path.to_string(),
            kind: DeviceKind::Block,
            model: None,
            serial: None,
            size_bytes: 0,
            logical_block_size: 0,
            mode,
            method: None,
            nist_category: None,
            passes: None,
            pass_seconds: Vec::new(),
            started_at: rfc3339(self.wall),
            finished_at: String::new(),
            seconds: 0.0,
            bytes: 0,
            skipped: Vec::new(),
            partitions: Vec::new(),
            signatures: Vec::new(),
            verification: None,
            status: WipeStatus::Failed,
            error: None,
        }
    }

    /// Sets the end time and duration.
    pub fn finish(&self, r: &mut DeviceReport) {
        let elapsed = self.mono.elapsed();
        r.finished_at = rfc3339(self.wall + elapsed);
        r.seconds = elapsed.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // leap day 2024
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59.000Z");
    }
}

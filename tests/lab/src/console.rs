//! The node's serial console, as a file QEMU appends to across power cycles.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

/// Removes terminal escape sequences and carriage returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Reads the lines added to a console log since the last call.
pub struct Tail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl Tail {
    /// Starts at the current end of `path` (or at 0 if it does not exist yet).
    pub fn from_end(path: &Path) -> Self {
        let pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_path_buf(),
            pos,
            partial: String::new(),
        }
    }

    /// The complete new lines.
    pub fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return vec![];
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return vec![];
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return vec![];
        }
        self.pos += buf.len() as u64;
        self.partial
            .push_str(&strip_ansi(&String::from_utf8_lossy(&buf)));
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            out.push(line.trim_end().to_owned());
        }
        out
    }
}

/// Copies the console log to `out` line by line, each line prefixed with the
/// Unix time it appeared (polled every 50 ms: QEMU writes the file unbuffered),
/// so that boot stages can be timed. Runs until the process ends.
pub fn timestamp_lines(console: &Path, out: &Path) {
    let mut tail = Tail::from_end(console);
    let out = out.to_path_buf();
    std::thread::spawn(move || {
        loop {
            for line in tail.lines() {
                crate::proc::append_line(&out, &format!("{:.3} {line}", crate::proc::unix_now()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
}

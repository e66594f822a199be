//! A small HTTP/1.1 file server for tests, with injectable faults: dropped
//! connections, stalls, lying lengths, no Range support, and an image that
//! changes on the server between two requests. Written for the
//! tests (instead of nginx) because the faults must be exact and repeatable.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults applied by the server.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Close the connection after this many body bytes, for the first
    /// `drops` responses.
    pub drop_after: Option<u64>,
    /// How many responses are cut (default 1 when `drop_after` is set).
    pub drops: u32,
    /// Stop sending for `.1` after `.0` body bytes of the first response.
    pub stall_after: Option<(u64, Duration)>,
    /// Ignore Range headers (always answer 200 with the whole file).
    pub no_range: bool,
    /// Announce this Content-Length while serving only the real bytes.
    pub announce_len: Option<u64>,
    /// From the second request on, serve this body (under the ETag
    /// `"ingot-test-v2"`) instead of the file: the image changes on the server
    /// between the first connection and the resume.
    pub replace_after_first: Option<Arc<Vec<u8>>>,
    /// Answer a Range request even when its If-Range names another version,
    /// as a server or cache without If-Range support does.
    pub ignore_if_range: bool,
}

/// A running server; stops accepting when dropped.
pub struct TestServer {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Every request's `Range` header (or "-" when there was none).
    pub ranges: Arc<Mutex<Vec<String>>>,
    /// Every request's `If-Range` header (or "-" when there was none).
    pub if_ranges: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    /// Serves `files` (URL path → contents) with `faults`.
    pub fn start(files: HashMap<String, Arc<Vec<u8>>>, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let if_ranges = Arc::new(Mutex::new(Vec::new()));
        let files = Arc::new(files);
        let drops_left = Arc::new(AtomicU32::new(if faults.drop_after.is_some() {
            faults.drops.max(1)
        } else {
            0
        }));
        let stalled = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(faults);
        {
            let (stop, ranges, if_ranges) = (stop.clone(), ranges.clone(), if_ranges.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let ctx = Conn {
                                files: files.clone(),
                                faults: faults.clone(),
                                ranges: ranges.clone(),
                                if_ranges: if_ranges.clone(),
                                drops_left: drops_left.clone(),
                                stalled: stalled.clone(),
                                answered: answered.clone(),
                            };
                            std::thread::spawn(move || ctx.serve(s));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Self {
            addr,
            ranges,
            if_ranges,
            stop,
        }
    }

    /// URL of a served path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Conn {
    files: Arc<HashMap<String, Arc<Vec<u8>>>>,
    faults: Arc<Faults>,
    ranges: Arc<Mutex<Vec<String>>>,
    if_ranges: Arc<Mutex<Vec<String>>>,
    drops_left: Arc<AtomicU32>,
    stalled: Arc<AtomicBool>,
    /// Set once the first request was answered.
    answered: Arc<AtomicBool>,
}

impl Conn {
    fn serve(self, stream: TcpStream) {
        stream.set_nonblocking(false).ok();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut range = None;
        let mut if_range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim().to_string();
                match k.to_ascii_lowercase().as_str() {
                    "range" => range = Some(v),
                    "if-range" => if_range = Some(v),
                    _ => {}
                }
            }
        }
        self.ranges
            .lock()
            .unwrap()
            .push(range.clone().unwrap_or_else(|| "-".into()));
        self.if_ranges
            .lock()
            .unwrap()
            .push(if_range.clone().unwrap_or_else(|| "-".into()));
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut out = stream;
        let replaced = match &self.faults.replace_after_first {
            Some(v2) if self.answered.swap(true, Ordering::SeqCst) => Some(v2),
            _ => None,
        };
        let Some(body) = replaced.or_else(|| self.files.get(path.trim_start_matches('/'))) else {
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .ok();
            return;
        };
        let etag = if replaced.is_some() {
            "\"ingot-test-v2\""
        } else {
            "\"ingot-test-v1\""
        };
        let full_len = self.faults.announce_len.unwrap_or(body.len() as u64);
        let parsed = range
            .as_deref()
            .filter(|_| !self.faults.no_range)
            .filter(|_| {
                self.faults.ignore_if_range || if_range.as_deref().is_none_or(|v| v == etag)
            })
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                let start: u64 = a.parse().ok()?;
                let end: u64 = if b.is_empty() {
                    full_len - 1
                } else {
                    b.parse().ok()?
                };
                Some((start, end))
            });
        let (status, start, end) = match parsed {
            Some((s, _)) if s >= body.len() as u64 => {
                write!(
                    out,
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .ok();
                return;
            }
            Some((s, e)) => (206, s, e.min(full_len - 1)),
            None => (200, 0, full_len - 1),
        };
        let announced = end - start + 1;
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {announced}\r\nETag: {etag}\r\nAccept-Ranges: {}\r\nConnection: close\r\n",
            if status == 200 {
                "OK"
            } else {
                "Partial Content"
            },
            if self.faults.no_range {
                "none"
            } else {
                "bytes"
            },
        );
        if status == 206 {
            head.push_str(&format!(
                "Content-Range: bytes {start}-{end}/{full_len}\r\n"
            ));
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        let real_end = (end + 1).min(body.len() as u64);
        let mut data = &body[start as usize..real_end as usize];
        // Faults apply to whole-body (streaming) responses, not metadata reads.
        let streaming = end + 1 == full_len;
        let mut limit = data.len() as u64;
        if streaming && self.faults.drop_after.is_some() {
            let left = self.drops_left.load(Ordering::SeqCst);
            if left > 0 {
                self.drops_left.store(left - 1, Ordering::SeqCst);
                limit = limit.min(self.faults.drop_after.unwrap_or(0));
            }
        }
        let mut stall = None;
        if streaming {
            if let Some((at, d)) = self.faults.stall_after {
                if !self.stalled.swap(true, Ordering::SeqCst) {
                    stall = Some((at, d));
                }
            }
        }
        let mut sent = 0u64;
        while !data.is_empty() && sent < limit {
            let mut n = data.len().min(64 << 10).min((limit - sent) as usize);
            if let Some((at, _)) = stall {
                if sent < at {
                    n = n.min((at - sent) as usize);
                }
            }
            if out.write_all(&data[..n]).is_err() {
                return;
            }
            sent += n as u64;
            data = &data[n..];
            if let Some((at, d)) = stall {
                if sent >= at {
                    std::thread::sleep(d);
                    stall = None;
                }
            }
        }
        out.flush().ok();
        out.shutdown(std::net::Shutdown::Both).ok();
    }
}

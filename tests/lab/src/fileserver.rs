//! A small HTTP/1.1 file server for the lab's image store (what Glance or a
//! web server is to Ironic): `GET` and `HEAD` of the files in one directory,
//! with single `Range` requests, one thread per connection, requests logged,
//! and optionally a bandwidth per download (a store behind a real network:
//! the lab's deploy then lasts long enough for the node's `ingot_progress`
//! to move).

use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::proc;

/// Starts serving `dir` on `ip` (a free port), each download at most
/// `rate` bytes a second when given; runs until the process ends.
pub fn start(
    dir: &Path,
    log: &Path,
    ip: std::net::Ipv4Addr,
    rate: Option<u64>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind((ip, 0))?;
    let addr = listener.local_addr()?;
    let dir = dir.to_path_buf();
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = dir.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, &dir, &log, rate);
            });
        }
    });
    Ok(addr)
}

fn respond(s: &mut TcpStream, status: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    )?;
    s.write_all(body)
}

/// `bytes=a-b` or `bytes=a-` (one range only).
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = match b.trim() {
        "" => len.checked_sub(1)?,
        e => e.parse::<u64>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

fn serve(conn: TcpStream, dir: &Path, log: &Path, rate: Option<u64>) -> std::io::Result<()> {
    let mut s = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_owned());
            }
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let name = target.trim_start_matches('/');
    let path: PathBuf = dir.join(name);
    proc::append_line(
        log,
        &format!(
            "{:.3} {method} {target} range={}",
            proc::unix_now(),
            range.as_deref().unwrap_or("-")
        ),
    );
    let safe = !name.is_empty() && !name.contains('/') && !name.starts_with('.');
    let file = if safe {
        std::fs::File::open(&path).ok()
    } else {
        None
    };
    let Some(mut file) = file.filter(|_| method == "GET" || method == "HEAD") else {
        return respond(&mut s, "404 Not Found", "", b"not found\n");
    };
    let len = file.metadata()?.len();
    let (status, start, end) = match range.as_deref().map(|v| parse_range(v, len)) {
        None => ("200 OK", 0, len.saturating_sub(1)),
        Some(Some((a, b))) => ("206 Partial Content", a, b),
        Some(None) => {
            return respond(
                &mut s,
                "416 Range Not Satisfiable",
                &format!("Content-Range: bytes */{len}\r\n"),
                b"",
            );
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut headers =
        String::from("Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n");
    if status.starts_with("206") {
        headers.push_str(&format!("Content-Range: bytes {start}-{end}/{len}\r\n"));
    }
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {count}\r\nConnection: close\r\n{headers}\r\n"
    )?;
    if method == "GET" {
        file.seek(SeekFrom::Start(start))?;
        match rate {
            None => {
                std::io::copy(&mut (&mut file).take(count), &mut s)?;
            }
            Some(rate) => paced_copy(&mut (&mut file).take(count), &mut s, rate)?,
        }
    }
    s.flush()
}

/// Copies at most `rate` bytes a second (in 64 KiB pieces, each sent when
/// the average allows it).
fn paced_copy(
    from: &mut impl std::io::Read,
    to: &mut impl std::io::Write,
    rate: u64,
) -> std::io::Result<()> {
    let rate = rate.max(1) as f64;
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let due = std::time::Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        to.write_all(&buf[..n])?;
        sent += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::{paced_copy, parse_range};

    #[test]
    fn paces_the_copy() {
        let data = vec![7u8; 256 << 10];
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        paced_copy(&mut &data[..], &mut out, 1 << 20).unwrap();
        // 256 KiB at 1 MiB/s: the last of four pieces leaves at 0.1875 s.
        assert!(t.elapsed() >= std::time::Duration::from_millis(180));
        assert_eq!(out, data);
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=900-5000", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
    }
}

//! A small HTTP/1.1 file server for the lab's image store (what Glance or a
//! web server is to Ironic): `GET` and `HEAD` of the files in one directory,
//! with single `Range` requests, one thread per connection, requests logged.

use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::proc;

/// Starts serving `dir` on `ip` (a free port); runs until the process ends.
pub fn start(dir: &Path, log: &Path, ip: std::net::Ipv4Addr) -> Result<SocketAddr> {
    let listener = TcpListener::bind((ip, 0))?;
    let addr = listener.local_addr()?;
    let dir = dir.to_path_buf();
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = dir.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, &dir, &log);
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

fn serve(conn: TcpStream, dir: &Path, log: &Path) -> std::io::Result<()> {
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
        std::io::copy(&mut (&mut file).take(count), &mut s)?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::parse_range;

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

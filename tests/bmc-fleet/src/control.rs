//! The fleet's control endpoint: a line protocol on a TCP port of 127.0.0.1,
//! served by one plain thread (the BMCs keep running on their runtime), so
//! a benchmark can ask which BMCs were queried, when, and by whom.
//!
//! One request per connection, one line:
//!
//! - `status-queries <since_ms>`: the Get Chassis Status queries answered at
//!   or after `since_ms` (milliseconds since the Unix epoch). The answer has
//!   one line per BMC, in index order: its index, then one `<at_ms>/<session>`
//!   word per query, oldest first (`at_ms`: when it was answered, wall clock;
//!   `session`: the BMC's session ID, distinct per console), then `end`:
//!
//!   ```text
//!   0 1796560000123/257 1796560005120/257
//!   1 1796560000125/257
//!   end
//!   ```
//!
//! Anything else gets `error <why>`. The connection closes after the answer.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

use crate::{Bmcs, lock};

/// Serves the control endpoint on `listener` until the process ends.
pub fn serve(listener: TcpListener, bmcs: Bmcs) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("fleet-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                // A client that goes away mid-answer is its own problem.
                let _ = answer(conn, &bmcs);
            }
        })
}

fn answer(conn: TcpStream, bmcs: &Bmcs) -> io::Result<()> {
    let mut line = String::new();
    // One bounded line.
    BufReader::new((&conn).take(256)).read_line(&mut line)?;
    let mut out = BufWriter::new(&conn);
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().map(str::parse::<u64>),
        words.next(),
    ) {
        (Some("status-queries"), Some(Ok(since)), None) => {
            write_status(&mut out, bmcs, since)?;
        }
        _ => writeln!(out, "error expected `status-queries <since_ms>`")?,
    }
    out.flush()
}

/// Writes the `status-queries` answer.
pub fn write_status(out: &mut impl Write, bmcs: &Bmcs, since_ms: u64) -> io::Result<()> {
    for (i, bmc) in bmcs.iter().enumerate() {
        // Copy out under the lock, write without it.
        let queries: Vec<_> = lock(bmc).status_queries(since_ms).collect();
        write!(out, "{i}")?;
        for q in queries {
            write!(out, " {}/{}", q.at_ms, q.session)?;
        }
        writeln!(out)?;
    }
    writeln!(out, "end")
}

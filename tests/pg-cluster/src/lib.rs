//! A private PostgreSQL cluster for tests and labs: Debian's server binaries
//! (`/usr/lib/postgresql/<v>/bin`), `initdb` into a directory of the
//! caller's (as the `postgres` user when running as root), `pg_ctl start` on
//! a free loopback port with trust authentication. Databases are made and
//! queried with `psql`; no database driver. Dropping the [`Cluster`] stops
//! the server and removes its directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// What went wrong starting, querying or stopping the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `initdb` and `pg_ctl` under `/usr/lib/postgresql/<v>/bin`.
    #[error(
        "PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package postgresql)"
    )]
    NotInstalled,
    /// A program could not be run, or a file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("{what} failed: {detail}")]
    Failed {
        /// The program and what it was asked.
        what: String,
        /// Its stderr (and the server log where it helps).
        detail: String,
    },
    /// A database name that is not a plain identifier.
    #[error("database name {0:?} is not [a-z0-9_]+ starting with a letter or _")]
    BadName(String),
    /// The directory exists and holds something other than an earlier cluster.
    #[error("{0} exists and is not empty (and holds no earlier cluster)")]
    DirNotEmpty(PathBuf),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A running (or stopped, see [`Cluster::stop`]) private cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Started and not stopped since (shared: `stop` and `start_again` take
    /// `&self`, so a static cluster can have outages).
    running: AtomicBool,
    /// Set once the directory is ours to remove (not before `clear_dir`
    /// accepted it: a refused directory is left as it was).
    owns_dir: bool,
    watchdog: Option<Child>,
}

/// The newest `/usr/lib/postgresql/<v>/bin` with `initdb` and `pg_ctl`.
pub fn find_bin() -> Option<PathBuf> {
    find_bin_in(Path::new("/usr/lib/postgresql"))
}

fn find_bin_in(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            // "16", "17", or "9.6": the major version orders them.
            let name = e.file_name().to_string_lossy().into_owned();
            let major: u32 = name.split('.').next()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// Stops a cluster that a killed process left in `dir` (its server still
/// running: `pg_ctl` daemonizes it in a session of its own, so it outlives
/// the process group), without removing anything. Best effort; for a tool
/// that empties its work directory before a new run.
pub fn stop_left_over(dir: &Path) {
    let data = dir.join("data");
    if !data.join("postmaster.pid").exists() {
        return;
    }
    let Some(bin) = find_bin() else { return };
    let mut c = if running_as_root() {
        let mut c = Command::new("runuser");
        c.arg("-u")
            .arg("postgres")
            .arg("--")
            .arg(bin.join("pg_ctl"));
        c
    } else {
        Command::new(bin.join("pg_ctl"))
    };
    let _ = c
        .arg("-D")
        .arg(&data)
        .args(["-m", "immediate", "-w", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A free TCP port on 127.0.0.1 (free when asked).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("binding a free port"))?;
    Ok(l.local_addr()
        .map_err(io_err("binding a free port"))?
        .port())
}

/// True for names `CREATE DATABASE` takes unquoted and unchanged.
pub fn valid_db_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if s.is_empty() {
        s = stdout.trim().to_owned();
    }
    s
}

impl Cluster {
    /// Makes a cluster in `dir` (created; an earlier cluster left there by a
    /// killed run is stopped and replaced) and starts it on a free port.
    /// As root, `dir` is handed to the `postgres` user, and its parent must
    /// be searchable by that user.
    pub fn start(dir: &Path) -> Result<Cluster> {
        let bin = find_bin().ok_or(Error::NotInstalled)?;
        let dir = std::path::absolute(dir).map_err(io_err("resolving the cluster directory"))?;
        let as_postgres = running_as_root();
        let mut cluster = Cluster {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
            running: AtomicBool::new(false),
            owns_dir: false,
            watchdog: None,
        };
        cluster.clear_dir()?;
        cluster.owns_dir = true;
        std::fs::create_dir_all(&cluster.dir)
            .map_err(io_err(format!("creating {}", cluster.dir.display())))?;
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .output()
                .map_err(io_err("running chown"))?;
            if !out.status.success() {
                return Err(Error::Failed {
                    what: "chown to postgres (is there a postgres user?)".into(),
                    detail: output_text(&out),
                });
            }
        }
        let out = cluster
            .cmd("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output()
            .map_err(io_err("running initdb"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: "initdb".into(),
                detail: output_text(&out),
            });
        }
        // The port was free when picked, but the server binds it only now;
        // another process may have taken it in between: try a new one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match cluster.pg_start() {
                Ok(()) => break,
                Err(e) => {
                    if attempt >= 3 || !cluster.log_text().contains("could not bind") {
                        return Err(e);
                    }
                    cluster.port = free_port()?;
                }
            }
        }
        Ok(cluster)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data in `data/`, server log in `log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The server's log so far (empty if unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the server was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// `postgres://postgres@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database `name` (dropped first if present); its URL.
    pub fn create_db(&self, name: &str) -> Result<String> {
        if !valid_db_name(name) {
            return Err(Error::BadName(name.to_owned()));
        }
        // Two -c: CREATE DATABASE cannot run inside the implicit transaction
        // of one multi-statement command.
        let out = self
            .psql_cmd("postgres")
            .arg("-c")
            .arg(format!("DROP DATABASE IF EXISTS {name}"))
            .arg("-c")
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .map_err(io_err("running psql"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: format!("psql CREATE DATABASE {name}"),
                detail: output_text(&out),
            });
        }
        Ok(self.url(name))
    }

    /// Runs `sql` in database `db` with `psql -X -At -v ON_ERROR_STOP=1`;
    /// its output: one row a line, columns separated by `|`, no header.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = self
            .psql_cmd(db)
            .arg("-c")
            .arg(sql)
            .output()
            .map_err(io_err("running psql"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: format!("psql on {db}"),
                detail: output_text(&out),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected);
    /// data and port are kept for [`Cluster::start_again`].
    pub fn stop(&self) -> Result<()> {
        self.pg_stop("fast")
    }

    /// Stops the server as a crash would (`-m immediate`: no shutdown
    /// checkpoint; the next start recovers from the WAL).
    pub fn crash(&self) -> Result<()> {
        self.pg_stop("immediate")
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.pg_start()
    }

    /// Starts a detached shell that waits for this process to end, then
    /// stops the cluster and removes its directory: for clusters that are
    /// never dropped (a test binary's static) or a process that may be
    /// killed. Dropping the cluster ends the shell.
    pub fn stop_when_process_exits(&mut self) -> Result<()> {
        if self.watchdog.is_some() {
            return Ok(());
        }
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas}'{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            runas = if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        let child = Command::new("setsid")
            .args(["sh", "-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("starting the cluster watchdog"))?;
        self.watchdog = Some(child);
        Ok(())
    }

    fn cmd(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn psql_cmd(&self, db: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(db)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null());
        c
    }

    fn pg_start(&self) -> Result<()> {
        // No Unix socket (`-k ''`): its path would have to fit in 107 bytes,
        // and every client here uses TCP.
        let opts = format!(
            "-p {} -k '' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-o")
            .arg(&opts)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "start"])
            .output()
            .map_err(io_err("running pg_ctl start"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: format!("pg_ctl start on port {}", self.port),
                detail: format!("{}\n{}", output_text(&out), self.log_text()),
            });
        }
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn pg_stop(&self, mode: &str) -> Result<()> {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "stop"])
            .output()
            .map_err(io_err("running pg_ctl stop"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: format!("pg_ctl stop -m {mode}"),
                detail: output_text(&out),
            });
        }
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Removes `self.dir` if it is empty or holds an earlier cluster (which
    /// is stopped first); refuses anything else.
    fn clear_dir(&self) -> Result<()> {
        let entries: Vec<_> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("reading {}", self.dir.display()))(e)),
        };
        if entries.is_empty() {
            return Ok(());
        }
        if !self.data_dir().join("PG_VERSION").exists() {
            return Err(Error::DirNotEmpty(self.dir.clone()));
        }
        // A killed run may have left its server running.
        stop_left_over(&self.dir);
        std::fs::remove_dir_all(&self.dir)
            .map_err(io_err(format!("removing {}", self.dir.display())))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.pg_stop("immediate");
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names() {
        assert!(valid_db_name("ingot"));
        assert!(valid_db_name("_a1_b"));
        assert!(valid_db_name("lifecycle_1234"));
        assert!(!valid_db_name(""));
        assert!(!valid_db_name("1abc"));
        assert!(!valid_db_name("a-b"));
        assert!(!valid_db_name("Abc"));
        assert!(!valid_db_name("a;drop"));
        assert!(!valid_db_name(&"a".repeat(64)));
    }

    #[test]
    fn newest_version_wins() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        for v in ["9.6", "15", "17", "notaversion"] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin)?;
            std::fs::write(bin.join("initdb"), "")?;
            std::fs::write(bin.join("pg_ctl"), "")?;
        }
        // 18 lacks pg_ctl: not a server installation.
        let bin18 = root.path().join("18").join("bin");
        std::fs::create_dir_all(&bin18)?;
        std::fs::write(bin18.join("initdb"), "")?;
        assert_eq!(
            find_bin_in(root.path()),
            Some(root.path().join("17").join("bin"))
        );
        assert_eq!(find_bin_in(&root.path().join("missing")), None);
        Ok(())
    }
}

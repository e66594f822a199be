//! A private `ovsdb-server` for tests: a fresh database in a temporary
//! directory (not the system's), bridge br0 with internal ports p1 and p2,
//! listening on a unix socket and on 127.0.0.1; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_coordinator::network::switch::ovsdb::OvsdbAddress;

/// Open vSwitch's database schema (Debian's openvswitch-common).
pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Whether ovsdb-server, ovsdb-tool and ovs-vsctl are here (the test is
/// skipped otherwise, unless it must not be).
pub fn have_ovs() -> bool {
    let found = ["ovsdb-server", "ovsdb-tool", "ovs-vsctl"]
        .iter()
        .all(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        && Path::new(SCHEMA).exists();
    if !found {
        assert!(
            !super::must_not_skip(),
            "Open vSwitch is missing (apt-get install openvswitch-switch, or cargo xtask deps)"
        );
        eprintln!("SKIPPED: ovsdb-server, ovsdb-tool or ovs-vsctl missing");
    }
    found
}

/// A private ovsdb-server, killed on drop.
pub struct Ovsdb {
    /// Its directory (database, socket, logs).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// The unix socket.
    pub sock: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub tcp_port: u16,
}

impl Ovsdb {
    /// Starts a server listening on a unix socket and on 127.0.0.1 (TCP),
    /// with bridge br0 and internal ports p1 and p2.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("conf.db");
        let sock = dir.path().join("db.sock");
        let st = Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(SCHEMA)
            .status()
            .unwrap();
        assert!(st.success(), "ovsdb-tool create");
        let tcp_port = super::free_port();
        let mut server = Self {
            dir,
            child: None,
            sock,
            tcp_port,
        };
        server.run();
        server.vsctl(&[
            "init",
            "--",
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "--",
            "add-port",
            "br0",
            "p1",
            "--",
            "set",
            "interface",
            "p1",
            "type=internal",
            "--",
            "add-port",
            "br0",
            "p2",
            "--",
            "set",
            "interface",
            "p2",
            "type=internal",
        ]);
        server
    }

    /// Starts (again) the server on this database and waits until it
    /// listens.
    fn run(&mut self) {
        let db = self.dir.path().join("conf.db");
        let tcp_port = self.tcp_port;
        let log = std::fs::File::create(self.dir.path().join("stderr")).unwrap();
        let _ = std::fs::remove_file(&self.sock);
        let child = Command::new("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", self.sock.display()))
            .arg(format!("--remote=ptcp:{tcp_port}:127.0.0.1"))
            .arg(format!(
                "--unixctl={}",
                self.dir.path().join("ovsdb-server.ctl").display()
            ))
            .arg(format!(
                "--log-file={}",
                self.dir.path().join("ovsdb-server.log").display()
            ))
            .arg("--no-chdir")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting ovsdb-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", tcp_port)).is_err()
        {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "ovsdb-server exited ({st}): {}",
                    std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "ovsdb-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same database after [`Ovsdb::kill`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server still runs");
        self.run();
    }

    /// Runs `ovs-vsctl --no-wait` on this server; returns its output.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let out = Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.sock.display()))
            .arg("--no-wait")
            .arg("--timeout=10")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovs-vsctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn unix(&self) -> OvsdbAddress {
        OvsdbAddress::parse(&format!("unix:{}", self.sock.display())).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Ovsdb {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped server must be continued to die of SIGKILL promptly
            // (it does anyway, but say it).
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .status();
        }
        self.kill();
    }
}

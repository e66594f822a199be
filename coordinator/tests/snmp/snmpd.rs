//! net-snmp's `snmpd` on 127.0.0.1 and a free UDP port, with `apc_rpdu.py`
//! (next to this file) as a `pass_persist` handler for an APC rack PDU's
//! outlet command column. Communities: `public` read-only, `private`
//! read-write. Killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_coordinator::power::snmp::ber;
use ingot_coordinator::power::snmp::message::{PduKind, Request, Response, Value, Version};

/// rPDUOutletControlOutletCommand, without the outlet index.
pub const RPDU_COLUMN: &str = ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4";

/// Auth passphrase of the SNMPv3 user `ingot-md5` (authNoPriv, read-write).
pub const MD5_KEY: &str = "md5-auth-pass";
/// Auth passphrase of `ingot-sha` (authPriv with AES, read-write),
/// `ingot-sha256` (authNoPriv) and `ingot-sha512` (authPriv with AES).
pub const SHA_KEY: &str = "sha-auth-pass";
/// Privacy passphrase of `ingot-sha`, `ingot-sha512`, `ingot-aes192`
/// (MD5 with AES-192) and `ingot-aes256` (SHA with AES-256).
pub const AES_KEY: &str = "aes-priv-pass";

/// A running snmpd.
pub struct Snmpd {
    /// UDP port on 127.0.0.1.
    pub port: u16,
    /// Config, log, outlet state and `sets.log`.
    pub dir: tempfile::TempDir,
    child: Child,
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    which(tool).is_some()
}

fn which(tool: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

fn require(tool: &str, package: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        !super::common::must_not_skip(),
        "{tool} is required (apt-get install {package})"
    );
    eprintln!("SKIPPED: {tool} not installed (Debian package {package})");
    false
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snmp/apc_rpdu.py")
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// The OID of an outlet's command/status object.
pub fn outlet_oid(outlet: u32) -> String {
    format!("{RPDU_COLUMN}.{outlet}")
}

impl Snmpd {
    /// Starts snmpd; `None` (test skipped) when snmpd, the net-snmp tools or
    /// python3 are missing and the environment allows skipping.
    pub fn start() -> Option<Self> {
        if !(require("snmpd", "snmpd")
            && require("snmpget", "snmp")
            && require("python3", "python3"))
        {
            return None;
        }
        // An absolute interpreter: snmpd runs the handler with its own PATH.
        let python = Path::new("/usr/bin/python3")
            .exists()
            .then(|| PathBuf::from("/usr/bin/python3"))
            .or_else(|| which("python3"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_udp_port();
            let d = dir.path();
            let conf = format!(
                "agentAddress udp:127.0.0.1:{port}\n\
                 rocommunity public 127.0.0.1\n\
                 rwcommunity private 127.0.0.1\n\
                 createUser ingot-none\n\
                 createUser ingot-md5 MD5 \"{MD5_KEY}\"\n\
                 createUser ingot-sha SHA \"{SHA_KEY}\" AES \"{AES_KEY}\"\n\
                 rouser ingot-none noauth\n\
                 rwuser ingot-md5 auth\n\
                 createUser ingot-sha256 SHA-256 \"{SHA_KEY}\"\n\
                 createUser ingot-sha512 SHA-512 \"{SHA_KEY}\" AES \"{AES_KEY}\"\n\
                 createUser ingot-aes192 MD5 \"{MD5_KEY}\" AES-192 \"{AES_KEY}\"\n\
                 createUser ingot-aes256 SHA \"{SHA_KEY}\" AES-256 \"{AES_KEY}\"\n\
                 rwuser ingot-aes192 priv\n\
                 rwuser ingot-aes256 priv\n\
                 rwuser ingot-sha priv\n\
                 rwuser ingot-sha256 auth\n\
                 rwuser ingot-sha512 priv\n\
                 sysDescr ingot test PDU\n\
                 sysObjectID .1.3.6.1.4.1.318.1.3.4.5\n\
                 pass_persist .1.3.6.1.4.1.318.1.1.12 {py} {script} {state}\n",
                py = python.display(),
                script = script().display(),
                state = d.display(),
            );
            std::fs::write(d.join("snmpd.conf"), conf).unwrap();
            let mut child = Command::new("snmpd")
                .args(["-f", "-C", "-c"])
                .arg(d.join("snmpd.conf"))
                .arg("-Lf")
                .arg(d.join("snmpd.log"))
                .env("SNMP_PERSISTENT_DIR", d)
                .env("MIBS", "")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return Some(Self { port, dir, child });
            }
            // Most likely the port was taken in the meantime: try another.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "snmpd did not start: {}",
            std::fs::read_to_string(dir.path().join("snmpd.log")).unwrap_or_default()
        );
    }

    fn tool(&self, tool: &str, args: &[&str]) -> std::process::Output {
        Command::new(tool)
            .args(["-m", "", "-On", "-r", "1", "-t", "2"])
            .args(args)
            .env("SNMP_PERSISTENT_DIR", self.dir.path())
            .env("MIBS", "")
            .output()
            .unwrap()
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `snmpget -v2c -c public` of an outlet: the INTEGER it reads.
    pub fn snmpget(&self, outlet: u32) -> i64 {
        let out = self.tool(
            "snmpget",
            &[
                "-v2c",
                "-c",
                "public",
                "-Oqv",
                &self.target(),
                &outlet_oid(outlet),
            ],
        );
        assert!(
            out.status.success(),
            "snmpget: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("snmpget printed {text:?}"))
    }

    /// `snmpset -v1 -c private` of an outlet.
    pub fn snmpset(&self, outlet: u32, value: i64) {
        let out = self.tool(
            "snmpset",
            &[
                "-v1",
                "-c",
                "private",
                &self.target(),
                &outlet_oid(outlet),
                "i",
                &value.to_string(),
            ],
        );
        assert!(
            out.status.success(),
            "snmpset: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The sets the handler accepted, as `(outlet, value)`.
    pub fn sets(&self) -> Vec<(u32, i64)> {
        std::fs::read_to_string(self.dir.path().join("sets.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().skip(1);
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            })
            .collect()
    }

    /// driver_info for a node on `outlet` of this PDU.
    pub fn driver_info(&self, outlet: u32, version: &str) -> serde_json::Value {
        serde_json::json!({
            "snmp_driver": "apc_rackpdu",
            "snmp_address": "127.0.0.1",
            "snmp_port": self.port,
            "snmp_outlet": outlet,
            "snmp_version": version,
            "snmp_community_read": "public",
            "snmp_community_write": "private",
        })
    }
}

/// Waits until a GET of outlet 1 is answered (the handler is up).
fn wait_ready(child: &mut Child, port: u16, within: Duration) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let oid = ber::parse_oid(&outlet_oid(1)).unwrap();
    let req = Request {
        version: Version::V2c,
        community: "public",
        kind: PduKind::Get,
        request_id: 1,
        oid: &oid,
        value: Value::Null,
    }
    .encode();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let _ = sock.send_to(&req, ("127.0.0.1", port));
        if let Ok(n) = sock.recv(&mut buf) {
            if let Ok(r) = Response::decode(&buf[..n]) {
                if matches!(r.bindings.first(), Some((_, Value::Integer(_)))) {
                    return true;
                }
            }
        }
    }
    false
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A link for network tests: a veth pair whose server end stays in the test
//! process's namespace and whose client end sits in a network namespace
//! the test creates (both deleted on drop). Needs root.

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs a command and returns its output (panics if it cannot start).
pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

/// Runs a command that must succeed.
pub fn ok(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A namespace with the client end of a veth pair; deleted on drop.
pub struct Link {
    /// The client's namespace.
    pub ns: String,
    /// The server end (this namespace).
    pub server_if: String,
    /// The client end (in `ns`).
    pub client_if: String,
    /// The server end's address (a /24).
    pub server_ip: Ipv4Addr,
    /// Scratch space.
    pub dir: tempfile::TempDir,
}

impl Link {
    /// `tag` tells apart the links of tests running at once.
    pub fn new(tag: u32) -> Self {
        let id = std::process::id() % 10000;
        let ns = format!("ingot-dhcp-{id}-{tag}");
        let server_if = format!("idh{id}{tag}s");
        let client_if = format!("idh{id}{tag}c");
        let octet = u8::try_from((id * 2 + tag) % 200 + 20).unwrap();
        let server_ip = Ipv4Addr::new(10, 231, octet, 1);
        let _ = sh(&["ip", "netns", "del", &ns]);
        let _ = sh(&["ip", "link", "del", &server_if]);
        let link = Link {
            ns,
            server_if,
            client_if,
            server_ip,
            dir: tempfile::tempdir().unwrap(),
        };
        ok(&["ip", "netns", "add", &link.ns]);
        ok(&[
            "ip",
            "link",
            "add",
            &link.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &link.client_if,
        ]);
        ok(&["ip", "link", "set", &link.client_if, "netns", &link.ns]);
        ok(&[
            "ip",
            "addr",
            "add",
            &format!("{server_ip}/24"),
            "dev",
            &link.server_if,
        ]);
        ok(&["ip", "link", "set", &link.server_if, "up"]);
        ok(&[
            "ip", "netns", "exec", &link.ns, "ip", "link", "set", "lo", "up",
        ]);
        link
    }

    /// An address of the link's /24.
    pub fn ip(&self, last: u8) -> Ipv4Addr {
        let o = self.server_ip.octets();
        Ipv4Addr::new(o[0], o[1], o[2], last)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = sh(&["ip", "link", "del", &self.server_if]);
    }
}

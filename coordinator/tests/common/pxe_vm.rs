//! A QEMU machine under UEFI firmware whose own PXE stack (its NIC has no
//! option ROM) network-boots from the coordinator, in a [`Link`]'s network
//! namespace: `pxe_chain.rs` (x86-64, OVMF) and `pxe_chain_aarch64.rs`
//! (arm64, AAVMF).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use ingot_coordinator::server::Running;
use ingot_coordinator::state::ProvisionState;
use serde_json::json;

use super::Api;
use super::link::{Link, ok};

/// The machine: which QEMU, its machine options and its firmware.
pub struct Firmware {
    /// `qemu-system-x86_64`, `qemu-system-aarch64`.
    pub qemu: &'static str,
    /// `-machine …`, `-cpu …`, `-m …` and the like.
    pub machine: &'static [&'static str],
    /// The firmware's code (read-only pflash).
    pub code: &'static str,
    /// The firmware's variable store, copied for the machine (writable pflash).
    pub vars: &'static str,
}

/// QEMU, killed on drop.
pub struct Machine(Child);

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Puts the link's client end on a bridge with a tap in the namespace and
/// starts the machine there with NIC `mac`, its serial console written to
/// `console`.
pub fn boot(link: &Link, fw: &Firmware, mac: &str, console: &Path) -> Machine {
    let ns = link.ns.as_str();
    let vars = link.dir.path().join("vars.fd");
    std::fs::copy(fw.vars, &vars).unwrap();
    for args in [
        &[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ][..],
        &["ip", "link", "set", &link.client_if, "master", "br0"],
        &["ip", "link", "set", &link.client_if, "up"],
        &["ip", "tuntap", "add", "tap0", "mode", "tap"],
        &["ip", "link", "set", "tap0", "master", "br0"],
        &["ip", "link", "set", "tap0", "up"],
        &["ip", "link", "set", "br0", "up"],
    ] {
        let mut a = vec!["ip", "netns", "exec", ns];
        a.extend_from_slice(args);
        ok(&a);
    }
    let child = Command::new("ip")
        .args(["netns", "exec", ns, fw.qemu])
        .args(fw.machine)
        .args(["-display", "none", "-nodefaults", "-no-reboot"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={}", fw.code))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        // No option ROM: the firmware's own PXE boots, not iPXE's.
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=n0,mac={mac},romfile=,bootindex=1"
        ))
        .arg("-chardev")
        .arg(format!("file,id=s0,path={}", console.display()))
        .args(["-serial", "chardev:s0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Machine(child)
}

/// Enrolls a `fake-hardware` node `name` with a port of `mac` and puts it
/// straight into `inspect wait` in the database (the conductor's verbs would
/// power a fake node and start timers that have nothing to do with a boot
/// test), so its per-MAC script boots the agent ramdisk. Returns its UUID.
pub async fn node_in_inspect_wait(running: &Running, api: &Api, name: &str, mac: &str) -> String {
    let node = api
        .create_node(json!({"driver": "fake-hardware", "name": name}))
        .await;
    let (st, body) = api
        .post("/v1/ports", json!({"address": mac, "node_uuid": node}))
        .await;
    assert_eq!(st, 201, "{body}");
    running
        .conductor
        .db()
        .update_node::<(), _>(&node, |n| {
            n.provision_state = ProvisionState::InspectWait;
            Ok(())
        })
        .await
        .unwrap();
    node
}

/// The console without its escape sequences.
pub fn console_text(console: &Path) -> String {
    let raw = std::fs::read(console).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Whether each of `marks` appears in `text`, each after the previous one.
pub fn in_order(text: &str, marks: &[&str]) -> Result<(), String> {
    let mut from = 0;
    for m in marks {
        match text[from..].find(m) {
            Some(i) => from += i + m.len(),
            None => return Err(format!("missing (in order): {m:?}")),
        }
    }
    Ok(())
}

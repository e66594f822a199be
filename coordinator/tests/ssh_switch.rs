//! The SSH switch driver against the real OpenSSH `sshd`: each test starts
//! its own sshd on a free loopback port, with its own configuration, host
//! key and authorized key in a temporary directory (not the system's
//! service).
//!
//! The switch OSes (Cisco IOS and NX-OS, Arista EOS, Juniper Junos, Dell
//! OS10, SONiC, Cumulus NVUE) cannot run on this machine, so sshd's
//! `ForceCommand` is `ssh_switch/mimic.py`, a small shell that mimics each
//! family's prompts and modes, keeps a per-port state (read back reflects
//! earlier changes; Junos shows nothing before `commit`, NVUE nothing
//! before `nv config apply`) and records every command line with its
//! session. The expected command sequences below are written from the
//! vendors' configuration guides and networking-generic-switch's device
//! classes, independently of the driver's table.
//!
//! Without sshd the tests are skipped (they fail under CI or
//! INGOT_REQUIRE_PRIVILEGED=1; `cargo xtask deps` installs
//! openssh-server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_coordinator::network::config::SshDeviceType;
use ingot_coordinator::network::switch::ssh::SshSwitch;
use ingot_coordinator::network::switch::ssh::session::{Auth, HostKeys, SessionSettings};
use ingot_coordinator::network::switch::{
    PortState, SwitchDriver, SwitchErrorKind, VlanId, set_port_verified,
};

const SSHD: &str = "/usr/sbin/sshd";
const QUARANTINE: u16 = 4000;

fn v(n: u16) -> VlanId {
    VlanId::new(n).unwrap()
}

fn have_sshd() -> bool {
    let found = Path::new(SSHD).exists() && Path::new("/usr/bin/ssh-keygen").exists();
    if !found {
        assert!(
            !common::must_not_skip(),
            "sshd is missing (apt-get install openssh-server, or cargo xtask deps)"
        );
        eprintln!("SKIPPED: {SSHD} or ssh-keygen missing");
    }
    found
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ingot-test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen");
}

/// A private sshd whose sessions run the mimic of `family`; killed on drop.
struct Sshd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

impl Sshd {
    fn start(family: &str, delay: f32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mimic = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ssh_switch/mimic.py");
        let port = common::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin yes\n\
             PrintMotd no\nPrintLastLog no\nLogLevel ERROR\n\
             ForceCommand /usr/bin/python3 {mimic} {family} {dir} {delay}\n",
            dir = d.display(),
            mimic = mimic.display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let server = Self {
            dir,
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(server.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A known_hosts file with the server's real host key.
    fn known_hosts(&self) -> PathBuf {
        let key = std::fs::read_to_string(self.path("host_key.pub")).unwrap();
        let path = self.path("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {key}", self.port)).unwrap();
        path
    }

    fn settings(&self, host_keys: HostKeys, timeout: Duration) -> SessionSettings {
        SessionSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            username: whoami(),
            auth: Auth::KeyFile(self.path("client_key")),
            host_keys,
            connect_timeout: timeout,
            command_timeout: timeout,
            max_output: 1 << 20,
        }
    }

    fn switch(&self, device_type: SshDeviceType) -> SshSwitch {
        let settings = self.settings(
            HostKeys::KnownHosts(self.known_hosts()),
            Duration::from_secs(10),
        );
        SshSwitch::new("tor1", device_type, settings, v(QUARANTINE))
    }

    /// The recorded command lines, grouped by session, and then forgotten.
    fn take_sessions(&self) -> Vec<Vec<String>> {
        let path = self.path("record.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        let mut sessions: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines() {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            let session = entry["session"].as_str().unwrap().to_owned();
            if !sessions.iter().any(|(s, _)| *s == session) {
                sessions.push((session.clone(), Vec::new()));
            }
            if let Some(cmd) = entry["cmd"].as_str() {
                let slot = sessions.iter_mut().find(|(s, _)| *s == session).unwrap();
                slot.1.push(cmd.to_owned());
            }
        }
        sessions.into_iter().map(|(_, cmds)| cmds).collect()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn lines(template: &[&str], port: &str) -> Vec<String> {
    template.iter().map(|l| l.replace("{port}", port)).collect()
}

/// One family's expected sessions: the change, then the read back.
struct Expected {
    device_type: SshDeviceType,
    mimic: &'static str,
    port: &'static str,
    /// Access VLAN 100 (session start, configuration mode, change, save).
    access: &'static [&'static str],
    /// Trunk 20,30 with native 10.
    trunk: &'static [&'static str],
    /// Quarantine (access on 4000).
    quarantine: &'static [&'static str],
    /// The read back session.
    read: &'static [&'static str],
}

const IOS_READ: &[&str] = &["terminal length 0", "show running-config interface {port}"];

fn families() -> Vec<Expected> {
    vec![
        Expected {
            device_type: SshDeviceType::CiscoIos,
            mimic: "cisco_ios",
            port: "GigabitEthernet0/1",
            access: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport trunk native vlan",
                "no switchport trunk allowed vlan",
                "switchport mode access",
                "switchport access vlan 100",
                "exit",
                "end",
                "write memory",
            ],
            trunk: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport access vlan",
                "switchport mode trunk",
                "switchport trunk allowed vlan 20,30",
                "switchport trunk native vlan 10",
                "exit",
                "end",
                "write memory",
            ],
            quarantine: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport trunk native vlan",
                "no switchport trunk allowed vlan",
                "switchport mode access",
                "switchport access vlan 4000",
                "exit",
                "end",
                "write memory",
            ],
            read: IOS_READ,
        },
        Expected {
            device_type: SshDeviceType::CiscoNxos,
            mimic: "cisco_nxos",
            port: "Ethernet1/1",
            access: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport trunk native vlan",
                "no switchport trunk allowed vlan",
                "switchport mode access",
                "switchport access vlan 100",
                "exit",
                "end",
                "copy running-config startup-config",
            ],
            trunk: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport access vlan",
                "switchport mode trunk",
                "switchport trunk allowed vlan 20,30",
                "switchport trunk native vlan 10",
                "exit",
                "end",
                "copy running-config startup-config",
            ],
            quarantine: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport trunk native vlan",
                "no switchport trunk allowed vlan",
                "switchport mode access",
                "switchport access vlan 4000",
                "exit",
                "end",
                "copy running-config startup-config",
            ],
            read: IOS_READ,
        },
        Expected {
            device_type: SshDeviceType::AristaEos,
            mimic: "arista_eos",
            port: "Ethernet1",
            access: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport trunk native vlan",
                "no switchport trunk allowed vlan",
                "switchport mode access",
                "switchport access vlan 100",
                "exit",
                "end",
                "copy running-config startup-config",
            ],
            trunk: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport access vlan",
                "switchport mode trunk",
                "switchport trunk allowed vlan 20,30",
                "switchport trunk native vlan 10",
                "exit",
                "end",
                "copy running-config startup-config",
            ],
            quarantine: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "no switchport trunk native vlan",
                "no switchport trunk allowed vlan",
                "switchport mode access",
                "switchport access vlan 4000",
                "exit",
                "end",
                "copy running-config startup-config",
            ],
            read: IOS_READ,
        },
        Expected {
            device_type: SshDeviceType::DellOs10,
            mimic: "dell_os10",
            port: "ethernet1/1/1",
            access: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "switchport mode access",
                "switchport access vlan 100",
                "exit",
                "end",
                "copy running-configuration startup-configuration",
            ],
            trunk: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "switchport mode access",
                "switchport mode trunk",
                "switchport trunk allowed vlan 20,30",
                "switchport access vlan 10",
                "exit",
                "end",
                "copy running-configuration startup-configuration",
            ],
            quarantine: &[
                "terminal length 0",
                "configure terminal",
                "interface {port}",
                "switchport mode access",
                "switchport access vlan 4000",
                "exit",
                "end",
                "copy running-configuration startup-configuration",
            ],
            read: &[
                "terminal length 0",
                "show running-configuration interface {port}",
            ],
        },
        Expected {
            device_type: SshDeviceType::JuniperJunos,
            mimic: "juniper_junos",
            port: "ge-0/0/1",
            access: &[
                "set cli screen-length 0",
                "configure",
                "delete interfaces {port} native-vlan-id",
                "delete interfaces {port} unit 0 family ethernet-switching",
                "set interfaces {port} unit 0 family ethernet-switching interface-mode access",
                "set interfaces {port} unit 0 family ethernet-switching vlan members 100",
                "commit",
                "exit configuration-mode",
            ],
            trunk: &[
                "set cli screen-length 0",
                "configure",
                "delete interfaces {port} native-vlan-id",
                "delete interfaces {port} unit 0 family ethernet-switching",
                "set interfaces {port} unit 0 family ethernet-switching interface-mode trunk",
                "set interfaces {port} unit 0 family ethernet-switching vlan members [ 20 30 ]",
                "set interfaces {port} native-vlan-id 10",
                "commit",
                "exit configuration-mode",
            ],
            quarantine: &[
                "set cli screen-length 0",
                "configure",
                "delete interfaces {port} native-vlan-id",
                "delete interfaces {port} unit 0 family ethernet-switching",
                "set interfaces {port} unit 0 family ethernet-switching interface-mode access",
                "set interfaces {port} unit 0 family ethernet-switching vlan members 4000",
                "commit",
                "exit configuration-mode",
            ],
            read: &[
                "set cli screen-length 0",
                "show configuration interfaces {port}",
            ],
        },
        Expected {
            device_type: SshDeviceType::Sonic,
            mimic: "sonic",
            port: "Ethernet0",
            // The port starts in no VLAN; each change first reads the
            // memberships and deletes them one by one.
            access: &[
                "show vlan config",
                "sudo config vlan member add -u 100 {port}",
                "sudo config save -y",
            ],
            trunk: &[
                "show vlan config",
                "sudo config vlan member del 100 {port}",
                "sudo config vlan member add 20 {port}",
                "sudo config vlan member add 30 {port}",
                "sudo config vlan member add -u 10 {port}",
                "sudo config save -y",
            ],
            quarantine: &[
                "show vlan config",
                "sudo config vlan member del 10 {port}",
                "sudo config vlan member del 20 {port}",
                "sudo config vlan member del 30 {port}",
                "sudo config vlan member add -u 4000 {port}",
                "sudo config save -y",
            ],
            read: &["show vlan config"],
        },
        Expected {
            device_type: SshDeviceType::CumulusNvue,
            mimic: "cumulus_nvue",
            port: "swp1",
            access: &[
                "nv unset interface {port} bridge domain br_default",
                "nv set interface {port} bridge domain br_default access 100",
                "nv config apply -y",
                "nv config save",
            ],
            trunk: &[
                "nv unset interface {port} bridge domain br_default",
                "nv set interface {port} bridge domain br_default vlan 20,30",
                "nv set interface {port} bridge domain br_default untagged 10",
                "nv config apply -y",
                "nv config save",
            ],
            quarantine: &[
                "nv unset interface {port} bridge domain br_default",
                "nv set interface {port} bridge domain br_default access 4000",
                "nv config apply -y",
                "nv config save",
            ],
            read: &["nv config show -o json"],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_sends_the_expected_commands_and_reads_back() {
    if !have_sshd() {
        return;
    }
    for family in families() {
        let sshd = Sshd::start(family.mimic, 0.0);
        let switch = sshd.switch(family.device_type);
        let port = family.port;
        let trunk = PortState::Trunk {
            native: Some(v(10)),
            allowed: [v(20), v(30)].into_iter().collect(),
        };
        for (state, expected) in [
            (PortState::access(v(100)), family.access),
            (trunk.clone(), family.trunk),
            (PortState::Quarantined, family.quarantine),
        ] {
            set_port_verified(&switch, port, &state, 1)
                .await
                .unwrap_or_else(|e| panic!("{}: {state}: {e}", family.mimic));
            let sessions = sshd.take_sessions();
            assert_eq!(
                sessions,
                vec![lines(expected, port), lines(family.read, port)],
                "{}: {state}",
                family.mimic
            );
            assert_eq!(
                switch.read_port(port).await.unwrap(),
                state,
                "{}",
                family.mimic
            );
            sshd.take_sessions();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junos_and_nvue_read_back_the_committed_configuration() {
    if !have_sshd() {
        return;
    }
    // The read back comes from the committed (applied) configuration: a
    // port never configured reads as "other", and a change shows once the
    // session's `commit` (`nv config apply`) has run.
    for (device_type, mimic, port) in [
        (SshDeviceType::JuniperJunos, "juniper_junos", "ge-0/0/2"),
        (SshDeviceType::CumulusNvue, "cumulus_nvue", "swp2"),
    ] {
        let sshd = Sshd::start(mimic, 0.0);
        let switch = sshd.switch(device_type);
        assert!(matches!(
            switch.read_port(port).await.unwrap(),
            PortState::Other { .. }
        ));
        switch
            .set_port(port, &PortState::access(v(7)))
            .await
            .unwrap();
        assert_eq!(
            switch.read_port(port).await.unwrap(),
            PortState::access(v(7))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_fails_the_change_and_names_the_command() {
    if !have_sshd() {
        return;
    }
    // What the driver cannot express or must not send is refused before
    // any session: a Cisco trunk without native VLAN, a port name that
    // could carry another command.
    let sshd = Sshd::start("cisco_ios", 0.0);
    let switch = sshd.switch(SshDeviceType::CiscoIos);
    let e = switch
        .set_port(
            "Gi0/1",
            &PortState::Trunk {
                native: None,
                allowed: [v(20)].into_iter().collect(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::Invalid(_)), "{e}");
    let e = switch
        .set_port("Gi0/1; reload", &PortState::access(v(5)))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, SwitchErrorKind::Invalid(_)), "{e}");
    assert!(sshd.take_sessions().is_empty(), "nothing was sent");

    // A command the switch refuses: SONiC will not add a port to a VLAN
    // twice (here tagged, then untagged as the native VLAN).
    let sshd = Sshd::start("sonic", 0.0);
    let switch = sshd.switch(SshDeviceType::Sonic);
    let e = switch
        .set_port(
            "Ethernet4",
            &PortState::Trunk {
                native: Some(v(20)),
                allowed: [v(20)].into_iter().collect(),
            },
        )
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e.kind, SwitchErrorKind::Refused(_)), "{text}");
    assert!(
        text.contains("sudo config vlan member add -u 20 Ethernet4")
            && text.contains("already a member"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_changed_host_key_is_refused() {
    if !have_sshd() {
        return;
    }
    let sshd = Sshd::start("cisco_ios", 0.0);
    let timeout = Duration::from_secs(10);

    // Another key recorded for this host and port: refused.
    let other = sshd.path("other_key");
    keygen(&other);
    let key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let wrong = sshd.path("wrong_known_hosts");
    std::fs::write(&wrong, format!("[127.0.0.1]:{} {key}", sshd.port)).unwrap();
    // No key at all for this host and port: refused.
    let empty = sshd.path("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    for (known_hosts, needle) in [(wrong, "changed"), (empty, "no ssh-ed25519 key")] {
        let switch = SshSwitch::new(
            "tor1",
            SshDeviceType::CiscoIos,
            sshd.settings(HostKeys::KnownHosts(known_hosts), timeout),
            v(QUARANTINE),
        );
        let e = switch.read_port("Gi0/1").await.unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e.kind, SwitchErrorKind::Refused(_)) && text.contains("host key refused"),
            "{text}"
        );
        assert!(text.to_lowercase().contains(needle), "{text}");
        assert!(!e.is_transient());
    }
    // The recorded sessions: none got as far as a shell.
    assert!(sshd.take_sessions().is_empty());
    // The right key works (and so does accepting any key, labs only).
    for host_keys in [
        HostKeys::KnownHosts(sshd.known_hosts()),
        HostKeys::AcceptAny,
    ] {
        let switch = SshSwitch::new(
            "tor1",
            SshDeviceType::CiscoIos,
            sshd.settings(host_keys, timeout),
            v(QUARANTINE),
        );
        switch.read_port("Gi0/1").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_switch_fails_within_the_timeout() {
    if !have_sshd() {
        return;
    }
    let sshd = Sshd::start("cisco_ios", 0.0);
    let timeout = Duration::from_millis(1500);
    let mut settings = sshd.settings(HostKeys::AcceptAny, timeout);

    // sshd stopped: nothing listens any more.
    drop(sshd);
    let switch = SshSwitch::new(
        "tor1",
        SshDeviceType::CiscoIos,
        settings.clone(),
        v(QUARANTINE),
    );
    let started = Instant::now();
    let e = switch
        .set_port("Gi0/1", &PortState::access(v(100)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
    assert!(matches!(e.kind, SwitchErrorKind::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().contains("tor1") && e.to_string().contains("127.0.0.1"),
        "{e}"
    );
    assert!(e.is_transient());

    // A switch that accepts the connection and never says anything.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.port = listener.local_addr().unwrap().port();
    let switch = SshSwitch::new("tor1", SshDeviceType::CiscoIos, settings, v(QUARANTINE));
    let started = Instant::now();
    let e = switch.read_port("Gi0/1").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert!(
        matches!(e.kind, SwitchErrorKind::Timeout { ms: 1500 }),
        "{e}"
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_shell_is_cut_off_by_the_output_bound() {
    if !have_sshd() {
        return;
    }
    let sshd = Sshd::start("flood", 0.0);
    let mut settings = sshd.settings(
        HostKeys::KnownHosts(sshd.known_hosts()),
        Duration::from_secs(20),
    );
    settings.max_output = 64 * 1024;
    let switch = SshSwitch::new("tor1", SshDeviceType::CiscoIos, settings, v(QUARANTINE));
    let started = Instant::now();
    let e = switch.read_port("Gi0/1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(e.kind, SwitchErrorKind::Protocol(_)), "{e}");
    assert!(e.to_string().contains("65536 bytes"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_to_one_switch_share_a_session() {
    if !have_sshd() {
        return;
    }
    // Each command takes 50 ms in the mimic, so the first session is still
    // running when the other requests arrive: they wait, and the next
    // session applies them all with one save.
    let sshd = Sshd::start("cisco_ios", 0.05);
    let switch = sshd.switch(SshDeviceType::CiscoIos);
    let ports: Vec<String> = (1..=5).map(|i| format!("GigabitEthernet0/{i}")).collect();
    let changes = ports.iter().enumerate().map(|(i, p)| {
        let switch = &switch;
        async move {
            let vlan = v(100 + u16::try_from(i).unwrap());
            switch.set_port(p, &PortState::access(vlan)).await
        }
    });
    for result in futures_join_all(changes).await {
        result.unwrap();
    }
    let sessions = sshd.take_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    assert_eq!(switch.sessions_opened(), 2);
    let second = &sessions[1];
    let interfaces = second
        .iter()
        .filter(|c| c.starts_with("interface "))
        .count();
    assert_eq!(interfaces, 4, "{second:#?}");
    assert_eq!(second.iter().filter(|c| *c == "write memory").count(), 1);
    assert_eq!(
        second.iter().filter(|c| *c == "configure terminal").count(),
        1
    );
    for (i, p) in ports.iter().enumerate() {
        let vlan = v(100 + u16::try_from(i).unwrap());
        assert_eq!(switch.read_port(p).await.unwrap(), PortState::access(vlan));
    }
    let all: BTreeSet<_> = sessions.concat().into_iter().collect();
    assert!(all.contains("switchport access vlan 104"));
}

/// Polls every future on this task (no extra crate for join_all).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in handles.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *result = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}

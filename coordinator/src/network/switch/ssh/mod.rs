//! The SSH driver: a switch's own CLI over SSH, for the families
//! networking-generic-switch covers first (Cisco IOS and NX-OS, Arista
//! EOS, Juniper Junos, Dell OS10, SONiC, Cumulus NVUE).
//!
//! - [`families`]: the command table, one row per family, and the parsers
//!   of the read-back output.
//! - [`session`]: one SSH session (russh): host key checked against a
//!   known_hosts file, password or key login, an interactive shell driven
//!   prompt by prompt, with timeouts and an output bound.
//!
//! One session per switch at a time: requests queue, and whoever takes the
//! switch next runs every queued request in one session (all changes in
//! one configuration block with one save or commit, then the reads). So
//! concurrent changes to one switch are batched, and a switch never sees
//! two of our sessions at once.

pub mod families;
pub mod session;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use super::{BoxFuture, PortState, SwitchDriver, SwitchError, SwitchErrorKind, VlanId};
use crate::network::config::SshDeviceType;
use families::Family;
use session::{SessionError, SessionSettings, Shell};

/// The default bound on one answer's size: a whole `nv config show` of a
/// big switch fits, a flood does not.
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

/// The session settings of a `driver = "ssh"` switch (checked by
/// [`crate::network::config::validate`]).
pub fn session_settings(
    c: &crate::network::config::SshSwitchConfig,
) -> Result<SessionSettings, String> {
    let (host, port) = session::parse_address(&c.address)?;
    let auth = match (&c.password_file, &c.key_file) {
        (Some(p), None) => session::Auth::PasswordFile(p.clone()),
        (None, Some(k)) => session::Auth::KeyFile(k.clone()),
        _ => return Err("give exactly one of password_file and key_file".into()),
    };
    let host_keys = match (&c.known_hosts_file, c.insecure_accept_any_host_key) {
        (Some(path), _) => session::HostKeys::KnownHosts(path.clone()),
        (None, true) => session::HostKeys::AcceptAny,
        (None, false) => return Err("known_hosts_file is required".into()),
    };
    let timeout = std::time::Duration::from_millis(c.timeout_ms);
    Ok(SessionSettings {
        host,
        port,
        username: c.username.clone(),
        auth,
        host_keys,
        connect_timeout: timeout,
        command_timeout: timeout,
        max_output: DEFAULT_MAX_OUTPUT,
    })
}

/// What a queued request asks.
#[derive(Debug)]
enum Request {
    Set(PortState),
    Read,
}

#[derive(Debug)]
enum Reply {
    Done,
    State(PortState),
}

/// A queued request and where its answer goes.
#[derive(Debug)]
struct Job {
    port: String,
    request: Request,
    reply: oneshot::Sender<Result<Reply, SwitchErrorKind>>,
}

/// A switch driven through its CLI over SSH.
#[derive(Debug)]
pub struct SshSwitch {
    name: String,
    family: &'static Family,
    settings: SessionSettings,
    quarantine: VlanId,
    pending: Mutex<Vec<Job>>,
    session: tokio::sync::Mutex<()>,
    sessions: AtomicU64,
}

impl SshSwitch {
    /// A driver for the switch `name` of family `device_type`; quarantined
    /// ports go on `quarantine`.
    pub fn new(
        name: &str,
        device_type: SshDeviceType,
        settings: SessionSettings,
        quarantine: VlanId,
    ) -> Self {
        Self {
            name: name.to_owned(),
            family: families::family(device_type),
            settings,
            quarantine,
            pending: Mutex::new(Vec::new()),
            session: tokio::sync::Mutex::new(()),
            sessions: AtomicU64::new(0),
        }
    }

    /// The number of sessions opened so far.
    pub fn sessions_opened(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request, runs the queue if the switch is free, and waits
    /// for the answer (from this session or another caller's).
    async fn submit(&self, port: &str, request: Request) -> Result<Reply, SwitchError> {
        let (tx, rx) = oneshot::channel();
        self.lock_pending().push(Job {
            port: port.to_owned(),
            request,
            reply: tx,
        });
        {
            let _switch = self.session.lock().await;
            let jobs = std::mem::take(&mut *self.lock_pending());
            if !jobs.is_empty() {
                self.run_session(jobs).await;
            }
        }
        match rx.await {
            Ok(result) => result.map_err(|kind| SwitchError::new(&self.name, port, kind)),
            Err(_) => Err(SwitchError::new(
                &self.name,
                port,
                SwitchErrorKind::ConnectionLost("the session ended without an answer".into()),
            )),
        }
    }

    fn kind(&self, e: &SessionError) -> SwitchErrorKind {
        match e {
            SessionError::Unreachable { kind, message } => SwitchErrorKind::Unreachable {
                address: format!("{}:{}", self.settings.host, self.settings.port),
                source: std::io::Error::new(*kind, message.clone()),
            },
            SessionError::Timeout { ms, .. } => SwitchErrorKind::Timeout { ms: *ms },
            SessionError::HostKey(_) | SessionError::Auth(_) => {
                SwitchErrorKind::Refused(e.to_string())
            }
            SessionError::Lost(_) => SwitchErrorKind::ConnectionLost(e.to_string()),
            SessionError::TooMuchOutput(_) => SwitchErrorKind::Protocol(e.to_string()),
        }
    }

    /// Runs one command; an error line in its output is a refusal.
    async fn command(&self, shell: &mut Shell, line: &str) -> Result<String, Failure> {
        tracing::debug!(switch = %self.name, command = line, "switch command");
        let out = shell.run(line).await.map_err(Failure::Session)?;
        let error = out.lines().map(str::trim_start).find(|l| {
            self.family
                .errors
                .iter()
                .any(|marker| l.starts_with(marker))
        });
        match error {
            Some(e) => Err(Failure::Refused(format!("{line:?}: {}", e.trim()))),
            None => Ok(out),
        }
    }

    async fn commands(&self, shell: &mut Shell, lines: &[&str]) -> Result<(), Failure> {
        for line in lines {
            self.command(shell, line).await?;
        }
        Ok(())
    }

    async fn read(&self, shell: &mut Shell, port: &str) -> Result<String, Failure> {
        if !families::valid_port_name(port) {
            return Err(Failure::Invalid(format!(
                "port name {port:?} is not sent to a switch"
            )));
        }
        self.command(shell, &families::show_command(self.family, port))
            .await
    }

    /// One session: every queued change, one save, then every read.
    async fn run_session(&self, jobs: Vec<Job>) {
        let number = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(switch = %self.name, session = number, requests = jobs.len(), "switch session");
        let mut shell = match Shell::open(&self.settings).await {
            Ok(shell) => shell,
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(self.kind(&e)));
                }
                return;
            }
        };
        let (sets, reads): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| matches!(j.request, Request::Set(_)));
        let mut fatal: Option<SessionError> = None;
        if let Err(f) = self.commands(&mut shell, self.family.session_start).await {
            fatal = Some(f.into_session(&self.name));
        }

        // The changes, in one configuration block.
        let mut outcomes: Vec<(Job, Result<(), SwitchErrorKind>)> = Vec::new();
        let mut in_config = false;
        for job in sets {
            if fatal.is_some() {
                outcomes.push((job, Ok(())));
                continue;
            }
            let result = self.change(&mut shell, &job, &mut in_config).await;
            match result {
                Err(Failure::Session(e)) => {
                    fatal = Some(e);
                    outcomes.push((job, Ok(())));
                }
                Err(f) => outcomes.push((job, Err(f.into_kind()))),
                Ok(()) => outcomes.push((job, Ok(()))),
            }
        }
        if in_config && fatal.is_none() {
            match self.commands(&mut shell, self.family.config_end).await {
                Ok(()) => {}
                Err(Failure::Session(e)) => fatal = Some(e),
                Err(f) => {
                    let why = format!("saving the configuration: {}", f.into_kind());
                    for (_, result) in outcomes.iter_mut() {
                        if result.is_ok() {
                            *result = Err(SwitchErrorKind::Refused(why.clone()));
                        }
                    }
                }
            }
        }
        for (job, result) in outcomes {
            let result = match (&fatal, result) {
                (_, Err(kind)) => Err(kind),
                (Some(e), Ok(())) => Err(self.kind(e)),
                (None, Ok(())) => Ok(Reply::Done),
            };
            let _ = job.reply.send(result);
        }

        // The reads.
        for job in reads {
            if let Some(e) = &fatal {
                let _ = job.reply.send(Err(self.kind(e)));
                continue;
            }
            let result = match self.read(&mut shell, &job.port).await {
                Ok(out) => families::parse_port(self.family, &job.port, &out, self.quarantine)
                    .map(Reply::State)
                    .map_err(|why| SwitchErrorKind::Protocol(format!("reading back: {why}"))),
                Err(Failure::Session(e)) => {
                    let kind = self.kind(&e);
                    fatal = Some(e);
                    Err(kind)
                }
                Err(f) => Err(f.into_kind()),
            };
            let _ = job.reply.send(result);
        }
        if fatal.is_none() {
            shell.close().await;
        }
    }

    /// One port's change (entering configuration mode first if needed).
    async fn change(
        &self,
        shell: &mut Shell,
        job: &Job,
        in_config: &mut bool,
    ) -> Result<(), Failure> {
        let Request::Set(state) = &job.request else {
            return Ok(());
        };
        let mut current = BTreeSet::new();
        if self.family.remove_member.is_some() {
            // SONiC has no configuration mode: reading first is fine here.
            let out = self.read(shell, &job.port).await?;
            current = families::current_members(self.family, &job.port, &out)
                .map_err(|why| Failure::Protocol(format!("reading the memberships: {why}")))?;
        }
        let lines =
            families::change_commands(self.family, &job.port, state, self.quarantine, &current)
                .map_err(Failure::Invalid)?;
        if !*in_config {
            self.commands(shell, self.family.config_start).await?;
            *in_config = true;
        }
        for line in &lines {
            self.command(shell, line).await?;
        }
        Ok(())
    }
}

/// Why one step failed: the whole session, or only this request.
#[derive(Debug)]
enum Failure {
    Session(SessionError),
    Refused(String),
    Invalid(String),
    Protocol(String),
}

impl Failure {
    fn into_kind(self) -> SwitchErrorKind {
        match self {
            Self::Session(e) => SwitchErrorKind::ConnectionLost(e.to_string()),
            Self::Refused(why) => SwitchErrorKind::Refused(why),
            Self::Invalid(why) => SwitchErrorKind::Invalid(why),
            Self::Protocol(why) => SwitchErrorKind::Protocol(why),
        }
    }

    /// A failure of the session start counts for the whole session.
    fn into_session(self, switch: &str) -> SessionError {
        match self {
            Self::Session(e) => e,
            other => SessionError::Lost(format!(
                "{switch}: starting the session: {}",
                other.into_kind()
            )),
        }
    }
}

impl SwitchDriver for SshSwitch {
    fn name(&self) -> &str {
        &self.name
    }

    fn set_port<'a>(
        &'a self,
        port: &'a str,
        state: &'a PortState,
    ) -> BoxFuture<'a, Result<(), SwitchError>> {
        Box::pin(async move {
            // Refuse what cannot be sent before queueing it.
            families::change_commands(self.family, port, state, self.quarantine, &BTreeSet::new())
                .map_err(|why| SwitchError::new(&self.name, port, SwitchErrorKind::Invalid(why)))?;
            self.submit(port, Request::Set(state.clone()))
                .await
                .map(|_| ())
        })
    }

    fn read_port<'a>(&'a self, port: &'a str) -> BoxFuture<'a, Result<PortState, SwitchError>> {
        Box::pin(async move {
            match self.submit(port, Request::Read).await? {
                Reply::State(state) => Ok(state),
                Reply::Done => Err(SwitchError::new(
                    &self.name,
                    port,
                    SwitchErrorKind::Protocol("no state read".into()),
                )),
            }
        })
    }
}

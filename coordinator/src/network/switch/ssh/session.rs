//! One SSH session to a switch: connect, check the host key, log in, open
//! an interactive shell on a terminal (as an operator would, and as
//! networking-generic-switch does through netmiko), then send command
//! lines one at a time, reading each one's output up to the next prompt.
//!
//! Bounded everywhere a hostile or broken switch could hold us: connecting
//! and logging in ([`SessionSettings::connect_timeout`]), each command's
//! answer ([`SessionSettings::command_timeout`]) and each answer's size
//! ([`SessionSettings::max_output`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::time::Instant;

/// How the driver logs in.
#[derive(Debug, Clone)]
pub enum Auth {
    /// The password in this file (first line, without its newline).
    PasswordFile(PathBuf),
    /// This private key (OpenSSH or PEM format, not encrypted).
    KeyFile(PathBuf),
}

/// Which host keys are accepted.
#[derive(Debug, Clone)]
pub enum HostKeys {
    /// Only the key recorded for the switch in this known_hosts file
    /// (`host` for port 22, `[host]:port` otherwise; hashed names work).
    KnownHosts(PathBuf),
    /// Any key: `insecure_accept_any_host_key = true`, for labs only.
    AcceptAny,
}

/// Where and how to reach one switch.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Host name or address.
    pub host: String,
    /// TCP port (22 unless configured).
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Password or key.
    pub auth: Auth,
    /// Host key policy.
    pub host_keys: HostKeys,
    /// Bound on TCP connect, key exchange, login and the first prompt.
    pub connect_timeout: Duration,
    /// Bound on each command's answer (up to the next prompt).
    pub command_timeout: Duration,
    /// Bound on the bytes of one answer (and of the login banner).
    pub max_output: usize,
}

/// Splits `host`, `host:port` or `[v6]:port` (port 22 by default).
pub fn parse_address(address: &str) -> Result<(String, u16), String> {
    let bad = || format!("{address:?} is not host, host:port or [address]:port");
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match address.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            Some(_) => (address, None),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => 22,
    };
    Ok((host.to_owned(), port))
}

/// Why a session failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// TCP connect failed.
    #[error("unreachable: {message}")]
    Unreachable {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// Its text.
        message: String,
    },
    /// No answer within the bound.
    #[error("no answer within {ms} ms ({during})")]
    Timeout {
        /// The bound.
        ms: u64,
        /// What we were waiting for.
        during: String,
    },
    /// The host key is not the one recorded.
    #[error("host key refused: {0}")]
    HostKey(String),
    /// Login failed.
    #[error("login refused: {0}")]
    Auth(String),
    /// The session broke.
    #[error("session lost: {0}")]
    Lost(String),
    /// An answer was larger than the bound.
    #[error("more than {0} bytes of output without a prompt")]
    TooMuchOutput(usize),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks the server's key against the policy; records why it refused.
struct HostKeyCheck {
    host: String,
    port: u16,
    policy: HostKeys,
    refusal: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    fn refuse(&self, why: String) -> bool {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(why);
        }
        false
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            return Ok(self.refuse("host certificates are not supported".into()));
        };
        match &self.policy {
            HostKeys::AcceptAny => Ok(true),
            HostKeys::KnownHosts(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(true),
                    Ok(false) => Ok(self.refuse(format!(
                        "no {} key for {} in {}",
                        key.algorithm(),
                        self.host,
                        path.display()
                    ))),
                    Err(e) => Ok(self.refuse(format!("{e} ({})", path.display()))),
                }
            }
        }
    }
}

/// An open interactive shell on a switch.
pub struct Shell {
    handle: client::Handle<HostKeyCheck>,
    channel: russh::Channel<client::Msg>,
    settings: SessionSettings,
    buf: Vec<u8>,
    prompt_base: Option<String>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .finish_non_exhaustive()
    }
}

impl Shell {
    /// Connects, checks the host key, logs in, opens the shell and waits
    /// for the first prompt, all within `connect_timeout`.
    pub async fn open(settings: &SessionSettings) -> Result<Self, SessionError> {
        let bound = settings.connect_timeout;
        match tokio::time::timeout(bound, Self::open_inner(settings)).await {
            Ok(result) => result,
            Err(_) => Err(SessionError::Timeout {
                ms: millis(bound),
                during: "connecting and logging in".into(),
            }),
        }
    }

    async fn open_inner(settings: &SessionSettings) -> Result<Self, SessionError> {
        let refusal = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            host: settings.host.clone(),
            port: settings.port,
            policy: settings.host_keys.clone(),
            refusal: refusal.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(settings.command_timeout.saturating_mul(2)),
            ..Default::default()
        });
        let mut handle =
            match client::connect(config, (settings.host.as_str(), settings.port), handler).await {
                Ok(h) => h,
                Err(russh::Error::IO(e)) => {
                    return Err(SessionError::Unreachable {
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
                Err(e) => {
                    let refused = refusal.lock().ok().and_then(|mut r| r.take());
                    return Err(match refused {
                        Some(why) => SessionError::HostKey(why),
                        None => SessionError::Lost(format!("SSH handshake: {e}")),
                    });
                }
            };
        let lost = |what: &str, e: russh::Error| SessionError::Lost(format!("{what}: {e}"));
        let result = match &settings.auth {
            Auth::PasswordFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| SessionError::Auth(format!("{}: {e}", path.display())))?;
                let password = text.lines().next().unwrap_or_default().to_owned();
                handle
                    .authenticate_password(settings.username.clone(), password)
                    .await
                    .map_err(|e| lost("password login", e))?
            }
            Auth::KeyFile(path) => {
                let key = russh::keys::load_secret_key(path, None)
                    .map_err(|e| SessionError::Auth(format!("{}: {e}", path.display())))?;
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| lost("key login", e))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        settings.username.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(|e| lost("key login", e))?
            }
        };
        if !result.success() {
            return Err(SessionError::Auth(format!(
                "the switch refused {} as {:?}",
                match settings.auth {
                    Auth::PasswordFile(_) => "the password",
                    Auth::KeyFile(_) => "the key",
                },
                settings.username
            )));
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| lost("opening a session channel", e))?;
        channel
            .request_pty(false, "vt100", 511, 24, 0, 0, &[])
            .await
            .map_err(|e| lost("requesting a terminal", e))?;
        channel
            .request_shell(false)
            .await
            .map_err(|e| lost("starting the shell", e))?;
        let mut shell = Self {
            handle,
            channel,
            settings: settings.clone(),
            buf: Vec::new(),
            prompt_base: None,
        };
        let banner = shell.read_until_prompt(settings.connect_timeout).await?;
        let prompt = banner.prompt;
        // The base is the prompt without its mode marks: `switch` of
        // `switch#`, `user@sw` of `user@sw>`, `admin@sonic:~` of `…$`.
        let base = prompt
            .trim_end_matches(['#', '>', '$', ' '])
            .split('(')
            .next()
            .unwrap_or_default()
            .to_owned();
        shell.prompt_base = Some(base);
        Ok(shell)
    }

    /// Sends one command line and returns its output: the lines between
    /// its echo and the next prompt.
    pub async fn run(&mut self, command: &str) -> Result<String, SessionError> {
        let mut line = command.as_bytes().to_vec();
        line.push(b'\n');
        self.channel
            .data_bytes(line)
            .await
            .map_err(|e| SessionError::Lost(format!("sending {command:?}: {e}")))?;
        let answer = self
            .read_until_prompt(self.settings.command_timeout)
            .await?;
        let mut lines = answer.text.lines();
        let mut out = String::new();
        // The terminal echoes the command first.
        if let Some(first) = lines.next()
            && first.trim() != command.trim()
        {
            out.push_str(first);
            out.push('\n');
        }
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        Ok(out)
    }

    fn is_prompt(&self, line: &str) -> bool {
        let line = line.trim_end();
        if line.is_empty() || line.len() > 200 || !line.ends_with(['#', '>', '$']) {
            return false;
        }
        match &self.prompt_base {
            Some(base) => line.starts_with(base.as_str()),
            None => !line.contains(' '),
        }
    }

    async fn read_until_prompt(&mut self, bound: Duration) -> Result<Answer, SessionError> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(answer) = self.take_answer() {
                return Ok(answer);
            }
            let msg = match tokio::time::timeout_at(deadline, self.channel.wait()).await {
                Err(_) => {
                    return Err(SessionError::Timeout {
                        ms: millis(bound),
                        during: "waiting for the prompt".into(),
                    });
                }
                Ok(None) => return Err(SessionError::Lost("the switch closed the session".into())),
                Ok(Some(msg)) => msg,
            };
            match msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                    if self.buf.len().saturating_add(data.len()) > self.settings.max_output {
                        return Err(SessionError::TooMuchOutput(self.settings.max_output));
                    }
                    self.buf.extend_from_slice(&data);
                }
                ChannelMsg::Eof | ChannelMsg::Close => {
                    return Err(SessionError::Lost("the switch closed the session".into()));
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    return Err(SessionError::Lost(format!(
                        "the switch's shell exited ({exit_status})"
                    )));
                }
                _ => {}
            }
        }
    }

    /// When the buffer ends with a prompt: the text before it, and the
    /// prompt; the buffer is emptied.
    fn take_answer(&mut self) -> Option<Answer> {
        // Only the last line can be a prompt: look at it alone first, so a
        // long answer arriving in many chunks is not scanned again each time.
        let start = self
            .buf
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let last = String::from_utf8_lossy(&self.buf[start..]).replace('\r', "");
        if !self.is_prompt(&last) {
            return None;
        }
        let text = String::from_utf8_lossy(&self.buf).replace('\r', "");
        let (before, last) = match text.rsplit_once('\n') {
            Some((before, last)) => (before, last),
            None => ("", text.as_str()),
        };
        if !self.is_prompt(last) {
            return None;
        }
        let answer = Answer {
            text: before.to_owned(),
            prompt: last.trim_end().to_owned(),
        };
        self.buf.clear();
        Some(answer)
    }

    /// Ends the session politely (errors do not matter any more).
    pub async fn close(self) {
        let _ = self.channel.eof().await;
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

struct Answer {
    text: String,
    prompt: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(parse_address("10.0.0.3").unwrap(), ("10.0.0.3".into(), 22));
        assert_eq!(parse_address("sw1:2222").unwrap(), ("sw1".into(), 2222));
        assert_eq!(parse_address("[::1]:2222").unwrap(), ("::1".into(), 2222));
        assert_eq!(parse_address("[fe80::1]").unwrap(), ("fe80::1".into(), 22));
        for bad in ["", ":22", "sw1:0", "sw1:x", "[::1]x"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }
}

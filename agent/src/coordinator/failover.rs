//! Fail-over between the coordinator URLs of `ingot.api=` / `ipa-api-url=`
//! (with HA coordinators: every alive member, the one that served the boot
//! script first). The agent talks to one URL at a time and moves to the next
//! one, in round-robin order, when the current one stops answering; members
//! share the database, so any of them takes the agent's lookup and
//! heartbeat.

use std::time::Duration;

use super::{ApiVersion, Client, ClientError};
use crate::random::uniform;

/// Whether a failed request means that the coordinator at that URL cannot
/// serve it now, so another URL should be tried: no connection, a timeout or
/// a TLS failure, a 5xx (a member whose database is unreachable answers 503;
/// the others share the same database, so moving on is harmless), or an
/// answer that is not the coordinator's (a proxy's page). A 4xx is about
/// the node or the token and would be the same on every member.
pub fn moves_on(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } | ClientError::Decode { .. } => true,
        ClientError::Status { status, .. } => *status >= 500,
        ClientError::Setup(_) => false,
    }
}

/// Exponential backoff with jitter (each delay `U(1, 2)` times the current
/// step, never more than `max`), for rounds in which no URL answered.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            step: min,
            min,
            max,
        }
    }

    /// The next delay; doubles the step.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.step.mul_f64(uniform(1.0, 2.0)).min(self.max);
        self.step = self.step.saturating_mul(2).min(self.max);
        d
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// The coordinator URLs in their configured order and the one in use.
#[derive(Debug)]
pub struct Coordinators {
    clients: Vec<Client>,
    current: usize,
    /// Requests failed in a row (on any URL) since one was answered.
    streak: usize,
}

impl Coordinators {
    /// The clients, one per URL; the first is current. Empty is allowed but
    /// useless: [`Coordinators::current`] needs one.
    pub fn new(clients: Vec<Client>) -> Self {
        Self {
            clients,
            current: 0,
            streak: 0,
        }
    }

    /// The client of the URL in use.
    ///
    /// # Panics
    /// Never for a non-empty list (the runtime refuses an empty one).
    pub fn current(&self) -> &Client {
        &self.clients[self.current]
    }

    /// How many URLs there are.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether there is no URL.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// One round of `GET /`, from the current URL on in round-robin order;
    /// the first that answers becomes current. `None` when none answered.
    pub async fn discover_round(&mut self) -> Option<ApiVersion> {
        let n = self.clients.len();
        for step in 0..n {
            let i = (self.current + step) % n;
            match self.clients[i].discover().await {
                Ok(v) => {
                    self.current = i;
                    self.streak = 0;
                    tracing::info!(url = %self.clients[i].base(), version = %v, "coordinator found");
                    return Some(v);
                }
                Err(e) => {
                    tracing::warn!(url = %self.clients[i].base(), error = %e, "coordinator not reachable")
                }
            }
        }
        None
    }

    /// The current URL answered (success, or a 4xx about the node or the
    /// token): the failure streak ends.
    pub fn answered(&mut self) {
        self.streak = 0;
    }

    /// `request` (`"lookup"`, `"heartbeat"`) failed on the current URL with
    /// `error` (one that [`moves_on`]). Moves to the next URL in round-robin
    /// order that answers `GET /` (which also refreshes the API version the
    /// requests use) and returns `true` when the request should be retried
    /// there at once. Returns `false` when the caller should back off first:
    /// no other URL answered, or every URL has failed once since the last
    /// answer (then the retry after the delay goes to the URL switched to,
    /// if any).
    pub async fn failed(&mut self, request: &'static str, error: &ClientError) -> bool {
        self.streak = self.streak.saturating_add(1);
        let failed = self.current;
        let n = self.clients.len();
        let mut switched = false;
        for step in 1..n {
            let i = (failed + step) % n;
            match self.clients[i].discover().await {
                Ok(version) => {
                    self.current = i;
                    switched = true;
                    tracing::warn!(
                        request,
                        from = %self.clients[failed].base(),
                        to = %self.clients[i].base(),
                        version = %version,
                        error = %error,
                        "coordinator failed; switched to the next URL"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(request, url = %self.clients[i].base(), error = %e, "next coordinator URL not reachable either")
                }
            }
        }
        if switched && self.streak < n {
            return true;
        }
        if !switched {
            tracing::warn!(request, url = %self.clients[failed].base(), urls = n, error = %error, "no coordinator URL answers; backing off");
        }
        self.streak = 0;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_moves_on() {
        let status = |s| ClientError::Status {
            url: "u".into(),
            status: s,
            body: String::new(),
        };
        assert!(moves_on(&ClientError::Transport {
            url: "u".into(),
            reason: "connection refused".into()
        }));
        assert!(moves_on(&status(503)));
        assert!(moves_on(&status(500)));
        assert!(!moves_on(&status(404)));
        assert!(!moves_on(&status(400)));
        assert!(!moves_on(&status(409)));
    }

    #[test]
    fn backoff_is_bounded() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(201));
    }
}

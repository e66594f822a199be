//! The command history and the one-command-at-a-time rule.

use std::sync::{Arc, Mutex};

use ingot_image_tools::progress::Progress;
use ingot_proto::agent::{CommandResult, CommandStatus};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::{CmdError, CmdResult};

/// One command of this boot.
#[derive(Debug)]
pub struct Record {
    /// Its UUID.
    pub id: String,
    /// The short command name (`prepare_image`).
    pub name: String,
    state: Mutex<RecordState>,
    done: Notify,
    /// The write's counters, and when they started counting.
    progress: Mutex<Option<(Arc<Progress>, std::time::Instant)>>,
}

#[derive(Debug)]
struct RecordState {
    status: CommandStatus,
    error: Option<CmdError>,
    result: Option<Value>,
}

impl Record {
    fn new(name: &str) -> Self {
        Self {
            id: crate::random::uuid4(),
            name: name.to_string(),
            state: Mutex::new(RecordState {
                status: CommandStatus::Running,
                error: None,
                result: None,
            }),
            done: Notify::new(),
            progress: Mutex::new(None),
        }
    }

    /// True while running.
    pub fn is_running(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.status == CommandStatus::Running)
            .unwrap_or(false)
    }

    /// Attaches image write or wipe progress, reported while the command
    /// runs (with the time since it was attached: the coordinator derives
    /// the rate and ETA from it). Attaching again (the next URL, the next
    /// disk) starts the counters and the clock again.
    pub fn set_progress(&self, p: Arc<Progress>) {
        if let Ok(mut slot) = self.progress.lock() {
            *slot = Some((p, std::time::Instant::now()));
        }
    }

    /// Records the outcome and wakes waiters.
    pub fn finish(&self, outcome: CmdResult) {
        if let Ok(mut s) = self.state.lock() {
            match outcome {
                Ok(result) => {
                    s.status = CommandStatus::Succeeded;
                    s.result = result;
                }
                Err(e) => {
                    s.status = if e.kind == "VersionMismatch" {
                        CommandStatus::CleanVersionMismatch
                    } else {
                        CommandStatus::Failed
                    };
                    s.error = Some(e);
                }
            }
        }
        self.done.notify_waiters();
    }

    /// Waits until the command is no longer running.
    pub async fn wait(&self) {
        loop {
            let notified = self.done.notified();
            if !self.is_running() {
                return;
            }
            notified.await;
        }
    }

    /// The serialized result envelope.
    pub fn snapshot(&self) -> CommandResult {
        let (status, error, mut result) = match self.state.lock() {
            Ok(s) => (s.status, s.error.clone(), s.result.clone()),
            Err(_) => (CommandStatus::Failed, None, None),
        };
        if status == CommandStatus::Running {
            // Not part of IPA's envelope; Ironic ignores the result of a
            // running command, operators and the Ingot coordinator see progress.
            if let Some((p, since)) = self.progress.lock().ok().and_then(|p| p.clone()) {
                use std::sync::atomic::Ordering::Relaxed;
                let elapsed_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                let mut m = Map::new();
                m.insert(
                    "progress".into(),
                    json!({
                        "received_bytes": p.received.load(Relaxed),
                        "source_bytes": p.source_total.load(Relaxed),
                        "written_bytes": p.written.load(Relaxed),
                        "elapsed_ms": elapsed_ms,
                    }),
                );
                result = Some(Value::Object(m));
            }
        }
        CommandResult {
            id: self.id.clone(),
            command_name: self.name.clone(),
            command_status: status,
            command_error: error.map(|e| e.to_wire()),
            command_result: result,
        }
    }
}

/// The commands of the current operation, in order. As in IPA they are never
/// pruned while the token stays the same; a new token from lookup means a new
/// operation, and [`Executor::clear_finished`] drops the old one's commands.
#[derive(Debug, Default)]
pub struct Executor {
    records: Mutex<Vec<Arc<Record>>>,
}

impl Executor {
    /// Starts a record for `name`, or refuses with 409 if one is running.
    pub fn begin(&self, name: &str) -> Result<Arc<Record>, CmdError> {
        let mut recs = self
            .records
            .lock()
            .map_err(|_| CmdError::execution("command history lock poisoned"))?;
        if let Some(last) = recs.last() {
            if last.is_running() {
                return Err(CmdError::busy(&last.name));
            }
        }
        let r = Arc::new(Record::new(name));
        recs.push(r.clone());
        Ok(r)
    }

    /// Drops every finished command and returns how many there were. A
    /// command still running stays: it is still this agent's one command at a
    /// time, and its result still comes.
    pub fn clear_finished(&self) -> usize {
        let Ok(mut recs) = self.records.lock() else {
            return 0;
        };
        let before = recs.len();
        recs.retain(|r| r.is_running());
        before - recs.len()
    }

    /// Every command's envelope.
    pub fn list(&self) -> Vec<CommandResult> {
        self.records
            .lock()
            .map(|r| r.iter().map(|x| x.snapshot()).collect())
            .unwrap_or_default()
    }

    /// One command by id.
    pub fn get(&self, id: &str) -> Option<Arc<Record>> {
        self.records
            .lock()
            .ok()
            .and_then(|r| r.iter().find(|x| x.id == id).cloned())
    }
}

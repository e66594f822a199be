//! The node history (Ironic's API 1.78, with the fields of 1.113 and
//! 1.115): the per-node journal of `node_events` ([`Db::journal_start`])
//! read and written as history entries. Every action the conductor takes is
//! journalled around it (power, boot device, agent commands), every state
//! change, step, failure and takeover is recorded, and the API records what
//! its callers asked for. Retention is bounded per node
//! ([`Db::prune_history`]).

use sqlx::Row;

use super::{Db, DbError};

/// `kind` of the events the API records for a caller's request. They are
/// history, not actions: [`Db::node_events`] (the journal of who acted)
/// leaves them out.
pub const REQUEST_KIND: &str = "request";

/// A history entry to record.
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    /// The node.
    pub node_uuid: &'a str,
    /// The coordinator that records it.
    pub conductor: &'a str,
    /// The node's fencing token the coordinator holds.
    pub fence: i64,
    /// `power`, `boot_device`, `agent`, `takeover`, `provisioning`,
    /// `deploy_step`, `clean_step`, `request` (Ironic's `event_type`).
    pub kind: &'a str,
    /// What exactly (the power action, the command, the step).
    pub detail: &'a str,
    /// The text of the event.
    pub event: String,
    /// `INFO` or `ERROR`.
    pub severity: &'a str,
    /// The caller's user, when known.
    pub user: Option<String>,
    /// The caller's project, when known.
    pub project: Option<String>,
    /// The node's provision state.
    pub state: Option<String>,
    /// The node's target provision state.
    pub target_state: Option<String>,
    /// How it ended.
    pub result: Option<String>,
    /// A duration other than the row's own (see the migration).
    pub duration_ms: Option<i64>,
}

/// One history entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEntry {
    /// Its UUID.
    pub id: String,
    /// The coordinator that recorded it.
    pub conductor: String,
    /// See [`NewEvent::kind`].
    pub kind: String,
    /// See [`NewEvent::detail`].
    pub detail: String,
    /// The text (made from `kind` and `detail` for rows without one).
    pub event: String,
    /// `INFO` or `ERROR`.
    pub severity: String,
    /// The caller's user.
    pub user: Option<String>,
    /// The caller's project.
    pub project: Option<String>,
    /// The provision state then.
    pub state: Option<String>,
    /// The target provision state then.
    pub target_state: Option<String>,
    /// How it ended.
    pub result: Option<String>,
    /// Start (ms since the epoch, database clock).
    pub started_ms: i64,
    /// End; `None` while running, or when its coordinator died.
    pub finished_ms: Option<i64>,
    /// The duration in milliseconds, when known.
    pub duration_ms: Option<i64>,
}

/// The text of an event stored without one (rows of the journal before the
/// history).
fn event_text(kind: &str, detail: &str, conductor: &str) -> String {
    match kind {
        "power" => format!("Power action {detail}"),
        "boot_device" => format!("Boot device set to {detail}"),
        "agent" => format!("Agent command {detail}"),
        "takeover" => format!("Node taken over by {conductor} {detail}"),
        _ => format!("{kind} {detail}"),
    }
}

const COLUMNS: &str = "id, conductor, kind, detail, event, severity, user_id, project, state, \
     target_state, result, started_ms, finished_ms, duration_ms";

fn entry(r: &sqlx::any::AnyRow) -> Result<HistoryEntry, DbError> {
    let kind: String = r.try_get(2)?;
    let detail: String = r.try_get(3)?;
    let conductor: String = r.try_get(1)?;
    let event: Option<String> = r.try_get(4)?;
    let started_ms: i64 = r.try_get(11)?;
    let finished_ms: Option<i64> = r.try_get(12)?;
    let duration_ms: Option<i64> = r.try_get(13)?;
    Ok(HistoryEntry {
        id: r.try_get(0)?,
        event: event.unwrap_or_else(|| event_text(&kind, &detail, &conductor)),
        conductor,
        kind,
        detail,
        severity: r.try_get(5)?,
        user: r.try_get(6)?,
        project: r.try_get(7)?,
        state: r.try_get(8)?,
        target_state: r.try_get(9)?,
        result: r.try_get(10)?,
        started_ms,
        finished_ms,
        duration_ms: duration_ms.or_else(|| finished_ms.and_then(|f| f.checked_sub(started_ms))),
    })
}

impl Db {
    /// Journals the start of an action described by `e` (see
    /// [`Db::journal_start`]): `None`, nothing written, when the node's
    /// token moved on or another coordinator holds its reservation.
    pub async fn journal_begin(&self, e: &NewEvent<'_>) -> Result<Option<String>, DbError> {
        self.insert_event(e, true, None).await
    }

    /// Records an event that is over as it happens (a state change, a
    /// failure, a request). With `fenced`, only while the node's token is
    /// still `e.fence` (a conductor that lost the node records nothing);
    /// false when nothing was written.
    pub async fn record_event(&self, e: &NewEvent<'_>, fenced: bool) -> Result<bool, DbError> {
        Ok(self.insert_event(e, fenced, Some(())).await?.is_some())
    }

    async fn insert_event(
        &self,
        e: &NewEvent<'_>,
        fenced: bool,
        finished: Option<()>,
    ) -> Result<Option<String>, DbError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = self.now_ms_sql();
        let finished = if finished.is_some() { now } else { "NULL" };
        let guard = if fenced {
            "WHERE EXISTS (SELECT 1 FROM nodes WHERE uuid = $15 AND fence = $16 \
             AND (reservation IS NULL OR reservation = $17))"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO node_events (id, node_uuid, conductor, fence, kind, detail, started_ms, \
             finished_ms, event, severity, user_id, project, state, target_state, result, duration_ms) \
             SELECT $1, $2, $3, $4, $5, $6, {now}, {finished}, $7, $8, $9, $10, $11, $12, $13, $14 {guard}"
        );
        let mut q = sqlx::query(&sql)
            .bind(&id)
            .bind(e.node_uuid)
            .bind(e.conductor)
            .bind(e.fence)
            .bind(e.kind)
            .bind(e.detail)
            .bind(&e.event)
            .bind(e.severity)
            .bind(e.user.clone())
            .bind(e.project.clone())
            .bind(e.state.clone())
            .bind(e.target_state.clone())
            .bind(e.result.clone())
            .bind(e.duration_ms);
        if fenced {
            q = q.bind(e.node_uuid).bind(e.fence).bind(e.conductor);
        }
        let done = q.execute(&self.pool).await?;
        Ok((done.rows_affected() == 1).then_some(id))
    }

    /// Journals the end of an action or step: its result and severity, and
    /// a new text for the event when given.
    pub async fn journal_end(
        &self,
        id: &str,
        result: &str,
        severity: &str,
        event: Option<&str>,
    ) -> Result<(), DbError> {
        let now = self.now_ms_sql();
        sqlx::query(&format!(
            "UPDATE node_events SET finished_ms = {now}, result = $1, severity = $2, \
             event = COALESCE($3, event) WHERE id = $4"
        ))
        .bind(result)
        .bind(severity)
        .bind(event)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The id of the latest unfinished `kind` event of the node about
    /// `detail` that `conductor` recorded (a step it started).
    pub async fn open_event(
        &self,
        node_uuid: &str,
        conductor: &str,
        kind: &str,
        detail: &str,
    ) -> Result<Option<String>, DbError> {
        let row = sqlx::query(
            "SELECT id FROM node_events WHERE node_uuid = $1 AND conductor = $2 AND kind = $3 \
             AND detail = $4 AND finished_ms IS NULL ORDER BY started_ms DESC, id DESC LIMIT 1",
        )
        .bind(node_uuid)
        .bind(conductor)
        .bind(kind)
        .bind(detail)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(DbError::from)
    }

    /// Ends every step of the node still open in its history with
    /// `result` (an operator's abort ends the step without the conductor).
    pub async fn end_open_steps(&self, node_uuid: &str, result: &str) -> Result<u64, DbError> {
        let now = self.now_ms_sql();
        let done = sqlx::query(&format!(
            "UPDATE node_events SET finished_ms = {now}, result = $1 WHERE node_uuid = $2 \
             AND kind IN ('deploy_step', 'clean_step') AND finished_ms IS NULL"
        ))
        .bind(result)
        .bind(node_uuid)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Keeps the newest `max` entries of the node's history (Ironic's
    /// `[conductor] node_history_max_entries`). An action under way whose
    /// entry goes finishes all the same; its end is just not recorded.
    pub async fn prune_history(&self, node_uuid: &str, max: u32) -> Result<u64, DbError> {
        let done = sqlx::query(
            "DELETE FROM node_events WHERE node_uuid = $1 AND id NOT IN \
             (SELECT id FROM node_events WHERE node_uuid = $2 \
             ORDER BY started_ms DESC, id DESC LIMIT $3)",
        )
        .bind(node_uuid)
        .bind(node_uuid)
        .bind(i64::from(max))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The history of a node, oldest first.
    pub async fn node_history(&self, node_uuid: &str) -> Result<Vec<HistoryEntry>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_events WHERE node_uuid = $1 ORDER BY started_ms, id"
        ))
        .bind(node_uuid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// One entry of a node's history.
    pub async fn history_entry(
        &self,
        node_uuid: &str,
        id: &str,
    ) -> Result<Option<HistoryEntry>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM node_events WHERE node_uuid = $1 AND id = $2"
        ))
        .bind(node_uuid)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry).transpose()
    }
}

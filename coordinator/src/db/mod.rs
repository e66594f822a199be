//! Persistence: one code path for SQLite and PostgreSQL through sqlx's `Any`
//! driver, with runtime-checked queries. Each document is stored as JSON next
//! to the columns that need uniqueness or lookups. Nodes carry a `version`
//! column: every write is a compare-and-swap ([`Db::update_node`]), so two
//! writers (API requests, the conductor, another coordinator) can never lose
//! each other's changes.

pub mod history;
pub mod leases;
pub mod listed_node;
mod migrate;
pub mod node_query;
pub mod secrets;
mod sqlite_file;
pub mod stats;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::model::{Allocation, Node, Port};
pub use history::{HistoryEntry, NewEvent, REQUEST_KIND};

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not one we can use.
    #[error("invalid database URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A uniqueness constraint failed (name, instance_uuid, MAC address, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database file is empty, foreign, truncated or damaged.
    #[error("the database {path} cannot be used: {reason}")]
    Damaged {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A stored document does not parse.
    #[error("corrupt {kind} document {id}: {source}")]
    Corrupt {
        /// Table.
        kind: &'static str,
        /// Row.
        id: String,
        /// Parse error.
        source: serde_json::Error,
    },
    /// The node changed under us too many times in a row.
    #[error("node {0} is being changed concurrently; retry")]
    Contended(String),
    /// The row vanished.
    #[error("{0} not found")]
    NotFound(String),
    /// Migration failure.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be reached (no connection within the acquire
    /// timeout, connection refused or lost, the server shutting down): the
    /// request may succeed later. Made by [`DbError::from`] for such
    /// [`sqlx::Error`]s.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Anything else from the driver.
    #[error("database error: {0}")]
    Sqlx(#[source] sqlx::Error),
    /// The secrets key, or a value it does not decrypt.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// Stored secrets are encrypted but no key is configured.
    #[error(
        "nodes hold driver_info secrets encrypted at rest, but no secrets_key_file is configured; configure the key they were written with"
    )]
    NoSecretsKey,
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if unavailable(&e) {
            DbError::Unavailable(e.to_string())
        } else {
            DbError::Sqlx(e)
        }
    }
}

/// Whether `e` means that the database cannot be reached now, rather than
/// that it refused the statement: a pool that got no connection in time or
/// is closed, an I/O or TLS failure, a connection lost mid-way, or
/// PostgreSQL's connection exceptions (SQLSTATE class 08), admin/crash
/// shutdown and "cannot connect now" (57P01–57P03) and too many
/// connections (53300).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.len() == 5
                && (c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300"))
        }),
        _ => false,
    }
}

/// The outcome of [`Db::update_node`]: the caller's own error, or the database's.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// The closure refused the change.
    #[error(transparent)]
    Refused(E),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A coordinator registered in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConductorRow {
    /// Its name (`conductor_name`).
    pub hostname: String,
    /// Its `conductor_group`.
    pub conductor_group: String,
    /// Where its API listens.
    pub api_url: String,
    /// Online, with a heartbeat within the timeout.
    pub alive: bool,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// The hardware types it offers.
    pub drivers: Vec<String>,
}

/// One entry of the per-node journal ([`Db::journal_start`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeEvent {
    /// The coordinator that acted.
    pub conductor: String,
    /// The fencing token it held.
    pub fence: i64,
    /// `power`, `boot_device`, `agent`, `takeover`, ….
    pub kind: String,
    /// What exactly.
    pub detail: String,
    /// Start, by the database's clock (ms since the epoch).
    pub started_ms: i64,
    /// End; `None` when the coordinator never came back from it.
    pub finished_ms: Option<i64>,
}

/// How long a request waits for a PostgreSQL connection: short, so that
/// while the server is unreachable API calls fail with 503 in a few seconds
/// instead of hanging (the pool keeps trying to reconnect in the meantime,
/// and work resumes once the server is back).
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool's size on SQLite when the configuration does not set it
/// (`database_max_connections`): one writer at a time, readers in WAL mode.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// The pool's size on PostgreSQL when the configuration does not set it.
/// The fleet benchmark at 1,000 concurrent deploys showed no gain from 32
/// or 64 over 16 (docs/benchmarks.md, fleet), and three coordinators with
/// 16 each (plus one `LISTEN` connection each) stay well under Debian's
/// default `max_connections` of 100; a loaded machine may want more.
pub const PG_MAX_CONNECTIONS: u32 = 16;

/// The database handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    secrets: Option<std::sync::Arc<secrets::SecretBox>>,
}

fn map_err(e: sqlx::Error, what: &str) -> DbError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return DbError::Conflict(what.to_owned());
        }
    }
    DbError::from(e)
}

/// Rows of `(uuid, data)` parsed as `kind` records.
fn parse_rows<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    rows: &[sqlx::any::AnyRow],
) -> Result<Vec<T>, DbError> {
    load_rows(kind, rows, |uuid, data| parse(kind, uuid, data))
}

/// Rows of `(uuid, data)` loaded by `load`. A document that does not load
/// is logged and left out, so one bad row never hides the rest of the fleet
/// nor stops the coordinator (reading it alone still fails, with its error).
fn load_rows<T>(
    kind: &'static str,
    rows: &[sqlx::any::AnyRow],
    load: impl Fn(&str, &str) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let uuid: String = r.try_get(0)?;
        let data: String = r.try_get(1)?;
        match load(&uuid, &data) {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::error!(kind, id = %uuid, error = %e, "skipping a document that does not load")
            }
        }
    }
    Ok(out)
}

fn parse<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    id: &str,
    data: &str,
) -> Result<T, DbError> {
    serde_json::from_str(data).map_err(|source| DbError::Corrupt {
        kind,
        id: id.to_owned(),
        source,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing our own plain structs cannot fail (string keys, no custom impls).
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

impl Db {
    /// Connects (creating a SQLite file if missing) and runs the migrations,
    /// with the backend's default pool size.
    ///
    /// `url` is `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite::memory:`
    /// or `postgres://user@host:port/db`.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, None).await
    }

    /// [`Db::connect`] with at most `max_connections` connections in the
    /// pool (`None` or 0: [`SQLITE_MAX_CONNECTIONS`] or
    /// [`PG_MAX_CONNECTIONS`]).
    pub async fn connect_with(url: &str, max_connections: Option<u32>) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::Url {
                url: url.to_owned(),
                reason: "expected sqlite:… or postgres://…".into(),
            });
        };
        let mut url = url.to_owned();
        if backend == Backend::Sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| DbError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_file::path_of(&url)
        {
            sqlite_file::prepare(&path)?;
            sqlite_file::quick_check(&url, &path).await?;
        }
        let mut pool = AnyPoolOptions::new()
            .max_connections(max_connections.filter(|n| *n > 0).unwrap_or(match backend {
                Backend::Sqlite => SQLITE_MAX_CONNECTIONS,
                Backend::Postgres => PG_MAX_CONNECTIONS,
            }))
            .acquire_timeout(match backend {
                Backend::Sqlite => Duration::from_secs(30),
                Backend::Postgres => PG_ACQUIRE_TIMEOUT,
            });
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(opts).await?;
        let db = Self {
            pool,
            backend,
            secrets: None,
        };
        migrate::run(&db.pool).await?;
        db.backfill_node_columns().await?;
        Ok(db)
    }

    /// Encrypts `driver_info` secrets at rest with `key` from now on. Refuses
    /// (before anything is written) a key that does not open what is stored;
    /// without a key, refuses a database that holds encrypted secrets.
    pub async fn with_secrets(mut self, key: Option<secrets::SecretBox>) -> Result<Self, DbError> {
        let row = sqlx::query("SELECT uuid, data FROM nodes WHERE data LIKE $1 LIMIT 1")
            .bind(format!("%{}%", secrets::PREFIX))
            .fetch_optional(&self.pool)
            .await?;
        match (&key, row) {
            (None, Some(_)) => return Err(DbError::NoSecretsKey),
            (Some(k), Some(r)) => {
                let uuid: String = r.try_get(0)?;
                let data: String = r.try_get(1)?;
                let mut node: Node = parse("node", &uuid, &data)?;
                k.open_driver_info(&uuid, &mut node.driver_info)?;
            }
            _ => {}
        }
        self.secrets = key.map(std::sync::Arc::new);
        Ok(self)
    }

    /// A node document as stored: its `driver_info` secrets sealed.
    fn node_json(&self, node: &Node) -> String {
        match &self.secrets {
            None => to_json(node),
            Some(k) => {
                let mut n = node.clone();
                k.seal_driver_info(&n.uuid, &mut n.driver_info);
                to_json(&n)
            }
        }
    }

    /// A stored node document read: its `driver_info` secrets opened.
    fn node_from(&self, uuid: &str, data: &str) -> Result<Node, DbError> {
        let mut node: Node = parse("node", uuid, data)?;
        if secrets::has_sealed(&node.driver_info) {
            let k = self.secrets.as_ref().ok_or(DbError::NoSecretsKey)?;
            k.open_driver_info(uuid, &mut node.driver_info)?;
        }
        Ok(node)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- shared secrets ----

    /// The secret `name`, made with `make` by the first coordinator that
    /// asks (the others of the database read the same one).
    pub async fn shared_secret(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, DbError> {
        sqlx::query(
            "INSERT INTO coordinator_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(make())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM coordinator_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    // ---- conductors ----

    /// The database's clock in milliseconds since the epoch, as SQL.
    fn now_ms_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Registers (or re-registers) a coordinator as online, heartbeat now.
    pub async fn register_conductor(
        &self,
        hostname: &str,
        group: &str,
        api_url: &str,
        drivers: &[&str],
    ) -> Result<(), DbError> {
        let now = self.now_ms_sql();
        let drivers = drivers.join(",");
        sqlx::query(&format!(
            "INSERT INTO conductors (hostname, conductor_group, api_url, online, heartbeat_ms, drivers) \
             VALUES ($1, $2, $3, 1, {now}, $4) ON CONFLICT (hostname) DO UPDATE SET \
             conductor_group = $5, api_url = $6, online = 1, heartbeat_ms = {now}, drivers = $7"
        ))
        .bind(hostname)
        .bind(group)
        .bind(api_url)
        .bind(drivers.clone())
        .bind(group)
        .bind(api_url)
        .bind(drivers)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat of a coordinator; false when it is not
    /// registered or was marked offline (then it must register again).
    pub async fn conductor_heartbeat(&self, hostname: &str) -> Result<bool, DbError> {
        let now = self.now_ms_sql();
        let done = sqlx::query(&format!(
            "UPDATE conductors SET heartbeat_ms = {now} WHERE hostname = $1 AND online = 1"
        ))
        .bind(hostname)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a coordinator offline (a clean stop).
    pub async fn unregister_conductor(&self, hostname: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE conductors SET online = 0 WHERE hostname = $1")
            .bind(hostname)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every registered coordinator; `alive` when online with a heartbeat
    /// within `timeout_ms` of the database's clock.
    pub async fn list_conductors(&self, timeout_ms: i64) -> Result<Vec<ConductorRow>, DbError> {
        let now = self.now_ms_sql();
        let rows = sqlx::query(&format!(
            "SELECT hostname, conductor_group, api_url, online, {now} - heartbeat_ms, drivers \
             FROM conductors ORDER BY hostname"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let online: i64 = r.try_get(3)?;
                let age_ms: i64 = r.try_get(4)?;
                let drivers: String = r.try_get(5)?;
                Ok(ConductorRow {
                    hostname: r.try_get(0)?,
                    conductor_group: r.try_get(1)?,
                    api_url: r.try_get(2)?,
                    alive: online == 1 && age_ms <= timeout_ms,
                    heartbeat_age_ms: age_ms,
                    drivers: drivers
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect()
    }

    /// The database's clock (ms since the epoch).
    pub async fn now_ms(&self) -> Result<i64, DbError> {
        let row = sqlx::query(&format!("SELECT {}", self.now_ms_sql()))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Wakes the coordinators that `LISTEN` on `channel` (PostgreSQL's
    /// `NOTIFY`; nothing on SQLite, where one coordinator is alone).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), DbError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- the per-node journal ----

    /// Journals the start of an action on a node by `conductor` under the
    /// fencing token `fence`, and returns its id; `None` (nothing written)
    /// when the node's token moved on or another coordinator holds its
    /// reservation: then the caller must not act. The check and the insert
    /// are one statement.
    pub async fn journal_start(
        &self,
        node_uuid: &str,
        conductor: &str,
        fence: i64,
        kind: &str,
        detail: &str,
    ) -> Result<Option<String>, DbError> {
        self.journal_begin(&NewEvent {
            node_uuid,
            conductor,
            fence,
            kind,
            detail,
            severity: "INFO",
            ..NewEvent::default()
        })
        .await
    }

    /// Journals the end of an action started with [`Db::journal_start`].
    pub async fn journal_finish(&self, id: &str) -> Result<(), DbError> {
        let now = self.now_ms_sql();
        sqlx::query(&format!(
            "UPDATE node_events SET finished_ms = {now} WHERE id = $1"
        ))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The journal of what coordinators did to a node, oldest first: its
    /// history without the callers' requests and the agent's steps (which
    /// may outlast the coordinator that started them).
    pub async fn node_events(&self, node_uuid: &str) -> Result<Vec<NodeEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT conductor, fence, kind, detail, started_ms, finished_ms FROM node_events \
             WHERE node_uuid = $1 AND kind NOT IN ($2, 'deploy_step', 'clean_step') \
             ORDER BY started_ms, id",
        )
        .bind(node_uuid)
        .bind(REQUEST_KIND)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeEvent {
                    conductor: r.try_get(0)?,
                    fence: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    detail: r.try_get(3)?,
                    started_ms: r.try_get(4)?,
                    finished_ms: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// `(uuid, reservation)` of every reserved node.
    pub async fn reserved_nodes(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query("SELECT uuid, reservation FROM nodes WHERE reservation IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    // ---- nodes ----

    /// Finds a node by UUID or name.
    pub async fn get_node(&self, ident: &str) -> Result<Option<(Node, i64)>, DbError> {
        let row = sqlx::query("SELECT uuid, version, data FROM nodes WHERE uuid = $1 OR name = $2")
            .bind(ident)
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let uuid: String = r.try_get(0)?;
                let version: i64 = r.try_get(1)?;
                let data: String = r.try_get(2)?;
                Ok(Some((self.node_from(&uuid, &data)?, version)))
            }
        }
    }

    /// Every node, in creation order.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, DbError> {
        let rows = sqlx::query("SELECT uuid, data FROM nodes ORDER BY created_at, uuid")
            .fetch_all(&self.pool)
            .await?;
        load_rows("node", &rows, |uuid, data| self.node_from(uuid, data))
    }

    /// The nodes a coordinator must look after ([`Node::needs_conductor`]),
    /// in creation order: the rows whose `needs_conductor` column says so.
    pub async fn nodes_needing_conductor(&self) -> Result<Vec<Node>, DbError> {
        let rows = sqlx::query(
            "SELECT uuid, data FROM nodes WHERE needs_conductor = 1 ORDER BY created_at, uuid",
        )
        .fetch_all(&self.pool)
        .await?;
        load_rows("node", &rows, |uuid, data| self.node_from(uuid, data))
    }

    /// UUIDs of nodes in the given provision states.
    pub async fn node_uuids_in_states(&self, states: &[&str]) -> Result<Vec<String>, DbError> {
        let mut out = Vec::new();
        for s in states {
            let rows = sqlx::query("SELECT uuid FROM nodes WHERE provision_state = $1")
                .bind(*s)
                .fetch_all(&self.pool)
                .await?;
            for r in rows {
                out.push(r.try_get::<String, _>(0)?);
            }
        }
        Ok(out)
    }

    /// Inserts a new node.
    pub async fn insert_node(&self, node: &Node) -> Result<(), DbError> {
        let sql = format!(
            "INSERT INTO nodes (uuid, name, instance_uuid, provision_state, reservation, version, created_at, data, fence, {}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {})",
            node_query::COLUMNS,
            node_query::placeholders(10)
        );
        let q = sqlx::query(&sql)
            .bind(&node.uuid)
            .bind(node.name.clone())
            .bind(node.instance_uuid.clone())
            .bind(node.provision_state.as_str())
            .bind(node.reservation.clone())
            .bind(1_i64)
            .bind(node.created_at.clone().unwrap_or_default())
            .bind(self.node_json(node))
            .bind(node.fence);
        node_query::Columns::of(node)
            .bind(q)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err(e, "a node with this UUID or name already exists"))?;
        Ok(())
    }

    /// Reads the node, lets `f` change it, writes it back if the version did
    /// not move meanwhile, and retries from a fresh read if it did. `f` must be
    /// a pure function of the node it is given (it may run several times).
    pub async fn update_node<E, F>(&self, uuid: &str, mut f: F) -> Result<Node, UpdateError<E>>
    where
        F: FnMut(&mut Node) -> Result<(), E>,
    {
        for _ in 0..50 {
            let (mut node, version) = self
                .get_node(uuid)
                .await?
                .ok_or_else(|| DbError::NotFound(format!("node {uuid}")))?;
            let before = node.clone();
            f(&mut node).map_err(UpdateError::Refused)?;
            if node == before {
                return Ok(node);
            }
            node.updated_at = Some(crate::model::now_iso());
            let sql = format!(
                "UPDATE nodes SET name = $1, instance_uuid = $2, provision_state = $3, \
                 reservation = $4, version = $5, data = $6, fence = $7, {} WHERE uuid = $8 AND version = $9",
                node_query::assignments(10)
            );
            let q = sqlx::query(&sql)
                .bind(node.name.clone())
                .bind(node.instance_uuid.clone())
                .bind(node.provision_state.as_str())
                .bind(node.reservation.clone())
                .bind(version + 1)
                .bind(self.node_json(&node))
                .bind(node.fence)
                .bind(&node.uuid)
                .bind(version);
            let done = node_query::Columns::of(&node)
                .bind(q)
                .execute(&self.pool)
                .await
                .map_err(|e| map_err(e, "another node already has this name or instance_uuid"))?;
            if done.rows_affected() == 1 {
                return Ok(node);
            }
            tokio::task::yield_now().await;
        }
        Err(UpdateError::Db(DbError::Contended(uuid.to_owned())))
    }

    /// Deletes a node and its ports.
    pub async fn delete_node(&self, uuid: &str) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ports WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM node_events WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM nodes WHERE uuid = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- ports ----

    /// Inserts a port.
    pub async fn insert_port(&self, port: &Port) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO ports (uuid, address, node_uuid, created_at, data) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&port.uuid)
        .bind(&port.address)
        .bind(&port.node_uuid)
        .bind(port.created_at.clone().unwrap_or_default())
        .bind(to_json(port))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            map_err(
                e,
                &format!("A port with MAC address {} already exists.", port.address),
            )
        })?;
        Ok(())
    }

    /// Replaces a port.
    pub async fn update_port(&self, port: &Port) -> Result<(), DbError> {
        sqlx::query("UPDATE ports SET address = $1, node_uuid = $2, data = $3 WHERE uuid = $4")
            .bind(&port.address)
            .bind(&port.node_uuid)
            .bind(to_json(port))
            .bind(&port.uuid)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                map_err(
                    e,
                    &format!("A port with MAC address {} already exists.", port.address),
                )
            })?;
        Ok(())
    }

    /// A port by UUID.
    pub async fn get_port(&self, uuid: &str) -> Result<Option<Port>, DbError> {
        let row = sqlx::query("SELECT data FROM ports WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse("port", uuid, &r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// A port by MAC address.
    pub async fn get_port_by_address(&self, address: &str) -> Result<Option<Port>, DbError> {
        let row = sqlx::query("SELECT data FROM ports WHERE address = $1")
            .bind(address)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse("port", address, &r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// Ports, all or of one node, in creation order.
    pub async fn list_ports(&self, node_uuid: Option<&str>) -> Result<Vec<Port>, DbError> {
        let rows =
            match node_uuid {
                Some(n) => sqlx::query(
                    "SELECT uuid, data FROM ports WHERE node_uuid = $1 ORDER BY created_at, uuid",
                )
                .bind(n)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query("SELECT uuid, data FROM ports ORDER BY created_at, uuid")
                        .fetch_all(&self.pool)
                        .await?
                }
            };
        parse_rows("port", &rows)
    }

    /// Deletes a port.
    pub async fn delete_port(&self, uuid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM ports WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- allocations ----

    /// Inserts an allocation.
    pub async fn insert_allocation(&self, a: &Allocation) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO allocations (uuid, name, node_uuid, created_at, data) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.uuid)
        .bind(a.name.clone())
        .bind(a.node_uuid.clone())
        .bind(a.created_at.clone().unwrap_or_default())
        .bind(to_json(a))
        .execute(&self.pool)
        .await
        .map_err(|e| map_err(e, "an allocation with this UUID or name already exists"))?;
        Ok(())
    }

    /// Replaces an allocation.
    pub async fn update_allocation(&self, a: &Allocation) -> Result<(), DbError> {
        sqlx::query("UPDATE allocations SET name = $1, node_uuid = $2, data = $3 WHERE uuid = $4")
            .bind(a.name.clone())
            .bind(a.node_uuid.clone())
            .bind(to_json(a))
            .bind(&a.uuid)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err(e, "an allocation with this name already exists"))?;
        Ok(())
    }

    /// An allocation by UUID or name.
    pub async fn get_allocation(&self, ident: &str) -> Result<Option<Allocation>, DbError> {
        let row = sqlx::query("SELECT data FROM allocations WHERE uuid = $1 OR name = $2")
            .bind(ident)
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse("allocation", ident, &r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// Every allocation.
    pub async fn list_allocations(&self) -> Result<Vec<Allocation>, DbError> {
        let rows = sqlx::query("SELECT uuid, data FROM allocations ORDER BY created_at, uuid")
            .fetch_all(&self.pool)
            .await?;
        parse_rows("allocation", &rows)
    }

    /// Deletes an allocation.
    pub async fn delete_allocation(&self, uuid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM allocations WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_pool_has_the_configured_size_or_the_backends_default() {
        let dir = tempfile::tempdir().unwrap();
        for (i, (asked, got)) in [
            (None, SQLITE_MAX_CONNECTIONS),
            (Some(0), SQLITE_MAX_CONNECTIONS),
            (Some(9), 9),
        ]
        .into_iter()
        .enumerate()
        {
            let url = format!("sqlite://{}", dir.path().join(format!("{i}.db")).display());
            let db = Db::connect_with(&url, asked).await.unwrap();
            assert_eq!(db.pool_stats().max, got, "{asked:?}");
            db.close().await;
        }
    }

    fn node(i: u32, state: crate::state::ProvisionState) -> Node {
        Node {
            uuid: format!("00000000-0000-4000-8000-{i:012}"),
            driver: "fake-hardware".into(),
            provision_state: state,
            created_at: Some(format!("2026-01-01T00:00:0{i}+00:00")),
            ..Node::default()
        }
    }

    async fn needing(db: &Db) -> Vec<String> {
        let nodes = db.nodes_needing_conductor().await.unwrap();
        nodes.into_iter().map(|n| n.uuid).collect()
    }

    /// The `needs_conductor` column follows every write of the node, and a
    /// row written without it (by an older coordinator, or by hand) is
    /// filled from its document at the next start.
    #[tokio::test]
    async fn nodes_needing_a_conductor_follow_their_writes() {
        use crate::model::node::PowerIntent;
        use crate::model::power::PowerAction;
        use crate::state::ProvisionState;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let db = Db::connect(&url).await.unwrap();
        let idle = node(1, ProvisionState::Available);
        let waiting = node(2, ProvisionState::CleanWait);
        db.insert_node(&idle).await.unwrap();
        db.insert_node(&waiting).await.unwrap();
        assert_eq!(needing(&db).await, std::slice::from_ref(&waiting.uuid));
        let power = |n: &mut Node| {
            n.power_intent = Some(PowerIntent {
                target: PowerAction::On,
            });
            Ok::<_, ()>(())
        };
        db.update_node(&idle.uuid, power).await.unwrap();
        assert_eq!(
            needing(&db).await,
            [idle.uuid.clone(), waiting.uuid.clone()]
        );
        let done = |n: &mut Node| {
            n.power_intent = None;
            n.provision_state = ProvisionState::Available;
            Ok::<_, ()>(())
        };
        db.update_node(&idle.uuid, done).await.unwrap();
        db.update_node(&waiting.uuid, done).await.unwrap();
        assert!(needing(&db).await.is_empty());
        let console = |n: &mut Node| {
            n.console_enabled = true;
            Ok::<_, ()>(())
        };
        db.update_node(&idle.uuid, console).await.unwrap();
        assert_eq!(needing(&db).await, std::slice::from_ref(&idle.uuid));
        // Written as before migration 0008: the column is empty until the
        // next start fills it.
        let deploying = node(3, ProvisionState::Deploying);
        db.insert_node(&deploying).await.unwrap();
        sqlx::query("UPDATE nodes SET needs_conductor = NULL")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(needing(&db).await.is_empty());
        db.close().await;
        let db = Db::connect(&url).await.unwrap();
        assert_eq!(needing(&db).await, [idle.uuid, deploying.uuid]);
        db.close().await;
    }
}

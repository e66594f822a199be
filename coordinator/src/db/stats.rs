//! Figures for the metrics: node counts by state and the pool's use.

use sqlx::Row;

use super::{Backend, Db, DbError};

/// How the connection pool is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Nodes in one provision state and power state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    /// The provision state.
    pub provision_state: String,
    /// The power state (`None`: not recorded).
    pub power_state: Option<String>,
    /// How many nodes.
    pub nodes: i64,
}

impl Db {
    /// The pool's connections now.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Nodes counted by provision state and power state, in the database
    /// (one `GROUP BY`; the power state is read from the node document).
    pub async fn count_nodes_by_state(&self) -> Result<Vec<StateCount>, DbError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT provision_state, json_extract(data, '$.power_state'), COUNT(*) \
                 FROM nodes GROUP BY 1, 2"
            }
            Backend::Postgres => {
                "SELECT provision_state, (data::json)->>'power_state', COUNT(*) \
                 FROM nodes GROUP BY 1, 2"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(StateCount {
                    provision_state: r.try_get(0)?,
                    power_state: r.try_get(1)?,
                    nodes: r.try_get(2)?,
                })
            })
            .collect()
    }
}

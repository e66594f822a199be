//! The node list in SQL (issue 21 item 5): the columns next to `data` that
//! the list's filters and sort keys use (kept in step with the document by
//! [`Db::insert_node`] and [`Db::update_node`], the only writers of node
//! rows, and filled from `data` at start for rows written before they
//! existed or by hand), and [`NodeQuery`], a filtered, ordered, keyset-paged
//! select over them with indexes (migration 0007).

use sqlx::Row;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::listed_node::NodeText;
use super::{Db, DbError, parse};
use crate::model::Node;

/// The node's values of the list columns, as stored.
pub(super) struct Columns {
    driver: String,
    resource_class: Option<String>,
    conductor_group: String,
    owner: Option<String>,
    lessee: Option<String>,
    maintenance: i64,
    retired: i64,
    fault: Option<String>,
    parent_node: Option<String>,
    shard: Option<String>,
    needs_conductor: i64,
}

/// The list columns in the order [`Columns::bind`] binds them.
pub(super) const COLUMNS: &str = "driver, resource_class, conductor_group, owner, lessee, \
                                  maintenance, retired, fault, parent_node, shard, needs_conductor";

/// How many values [`Columns::bind`] binds.
pub(super) const COLUMN_COUNT: usize = 11;

impl Columns {
    /// The list columns of `node` (`conductor_group` lower-cased: the
    /// filter ignores case).
    pub(super) fn of(node: &Node) -> Self {
        Self {
            driver: node.driver.clone(),
            resource_class: node.resource_class.clone(),
            conductor_group: node.conductor_group.to_ascii_lowercase(),
            owner: node.owner.clone(),
            lessee: node.lessee.clone(),
            maintenance: i64::from(node.maintenance),
            retired: i64::from(node.retired),
            fault: node.fault.clone(),
            parent_node: node.parent_node.clone(),
            shard: node.shard.clone(),
            needs_conductor: i64::from(node.needs_conductor()),
        }
    }

    /// Binds the values, in the order of [`COLUMNS`].
    pub(super) fn bind<'q>(
        self,
        q: Query<'q, sqlx::Any, AnyArguments<'q>>,
    ) -> Query<'q, sqlx::Any, AnyArguments<'q>> {
        q.bind(self.driver)
            .bind(self.resource_class)
            .bind(self.conductor_group)
            .bind(self.owner)
            .bind(self.lessee)
            .bind(self.maintenance)
            .bind(self.retired)
            .bind(self.fault)
            .bind(self.parent_node)
            .bind(self.shard)
            .bind(self.needs_conductor)
    }
}

/// `$first, $first+1, …` for the list columns.
pub(super) fn placeholders(first: usize) -> String {
    (first..first + COLUMN_COUNT)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `col = $first, …` for the list columns.
pub(super) fn assignments(first: usize) -> String {
    COLUMNS
        .split(", ")
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value bound to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// Text.
    Text(String),
    /// An integer (the 0/1 flags).
    Int(i64),
}

/// A sort key the database orders by with an index. Ties are broken by
/// creation order (`created_at`, `uuid`), as the stable in-memory sort did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation order (the API's `id`, and `created_at`).
    Created,
    /// `uuid`.
    Uuid,
    /// `provision_state`.
    ProvisionState,
    /// `driver`.
    Driver,
    /// `maintenance` (false first).
    Maintenance,
}

impl SortKey {
    /// The key for an API `sort_key`, if the database can order by it.
    pub fn from_api(key: &str) -> Option<Self> {
        Some(match key {
            "id" | "created_at" => Self::Created,
            "uuid" => Self::Uuid,
            "provision_state" => Self::ProvisionState,
            "driver" => Self::Driver,
            "maintenance" => Self::Maintenance,
            _ => return None,
        })
    }

    /// The columns ordered by, most significant first.
    fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Created => &["created_at", "uuid"],
            Self::Uuid => &["uuid"],
            Self::ProvisionState => &["provision_state", "created_at", "uuid"],
            Self::Driver => &["driver", "created_at", "uuid"],
            Self::Maintenance => &["maintenance", "created_at", "uuid"],
        }
    }
}

/// Which nodes a caller may list ([`NodeQuery::scope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every node.
    All,
    /// Nodes whose owner is the project, or (`lessee`) whose lessee is.
    Project {
        /// The project.
        project: String,
        /// Whether owned nodes are seen.
        owner: bool,
        /// Whether leased nodes are seen.
        lessee: bool,
    },
}

/// A select over the node list columns.
#[derive(Debug, Clone)]
pub struct NodeQuery {
    conds: Vec<(String, Vec<Bind>)>,
    sort: SortKey,
    desc: bool,
    marker: Option<String>,
    limit: Option<usize>,
}

impl Default for NodeQuery {
    fn default() -> Self {
        Self {
            conds: Vec::new(),
            sort: SortKey::Created,
            desc: false,
            marker: None,
            limit: None,
        }
    }
}

/// The column a text equality filter may name.
const EQ_COLUMNS: [&str; 9] = [
    "provision_state",
    "resource_class",
    "instance_uuid",
    "driver",
    "owner",
    "lessee",
    "fault",
    "parent_node",
    "conductor_group",
];

impl NodeQuery {
    /// `column = value`; `column` must be one of the list columns (others
    /// are ignored, as a programming error caught by the unit tests).
    pub fn eq(&mut self, column: &'static str, value: &str) -> &mut Self {
        debug_assert!(EQ_COLUMNS.contains(&column), "{column}");
        if EQ_COLUMNS.contains(&column) {
            self.conds
                .push((format!("{column} = ?"), vec![Bind::Text(value.to_owned())]));
        }
        self
    }

    /// `column IS NULL` (or `IS NOT NULL` when `null` is false).
    pub fn null(&mut self, column: &'static str, null: bool) -> &mut Self {
        debug_assert!(EQ_COLUMNS.contains(&column) || column == "shard");
        let not = if null { "" } else { "NOT " };
        self.conds.push((format!("{column} IS {not}NULL"), vec![]));
        self
    }

    /// `maintenance` or `retired` is `value`.
    pub fn flag(&mut self, column: &'static str, value: bool) -> &mut Self {
        debug_assert!(matches!(column, "maintenance" | "retired"));
        self.conds
            .push((format!("{column} = ?"), vec![Bind::Int(i64::from(value))]));
        self
    }

    /// `shard` is one of `shards`.
    pub fn shard_in(&mut self, shards: &[&str]) -> &mut Self {
        let marks = vec!["?"; shards.len()].join(", ");
        self.conds.push((
            format!("shard IN ({marks})"),
            shards.iter().map(|s| Bind::Text((*s).to_owned())).collect(),
        ));
        self
    }

    /// Only the nodes `scope` lets the caller see.
    pub fn scope(&mut self, scope: &Scope) -> &mut Self {
        match scope {
            Scope::All => {}
            Scope::Project {
                project,
                owner,
                lessee,
            } => {
                let p = || Bind::Text(project.clone());
                match (owner, lessee) {
                    (true, true) => self
                        .conds
                        .push(("(owner = ? OR lessee = ?)".into(), vec![p(), p()])),
                    (true, false) => self.conds.push(("owner = ?".into(), vec![p()])),
                    (false, true) => self.conds.push(("lessee = ?".into(), vec![p()])),
                    (false, false) => self.conds.push(("1 = 0".into(), vec![])),
                }
            }
        }
        self
    }

    /// Orders by `key`, descending when `desc`.
    pub fn order(&mut self, key: SortKey, desc: bool) -> &mut Self {
        self.sort = key;
        self.desc = desc;
        self
    }

    /// Starts after the node `uuid` in this order (keyset pagination).
    pub fn after(&mut self, uuid: &str) -> &mut Self {
        self.marker = Some(uuid.to_owned());
        self
    }

    /// At most `n` rows.
    pub fn limit(&mut self, n: usize) -> &mut Self {
        self.limit = Some(n);
        self
    }

    /// The statement and its values; `marker` holds the marker row's values
    /// of the sort columns.
    fn sql(&self, marker: Option<Vec<Bind>>) -> (String, Vec<Bind>) {
        let mut conds: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        for (c, b) in &self.conds {
            conds.push(c.clone());
            binds.extend(b.iter().cloned());
        }
        let cols = self.sort.columns();
        if let Some(m) = marker {
            let op = if self.desc { "<" } else { ">" };
            let marks = vec!["?"; cols.len()].join(", ");
            conds.push(format!("({}) {op} ({marks})", cols.join(", ")));
            binds.extend(m);
        }
        let dir = if self.desc { "DESC" } else { "ASC" };
        let mut sql = String::from("SELECT uuid, data FROM nodes");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(
            &cols
                .iter()
                .map(|c| format!("{c} {dir}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let Some(n) = self.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        (numbered(&sql), binds)
    }
}

/// `?` placeholders as `$1, $2, …` (both backends take those through `Any`).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

fn bind_all<'q>(
    mut q: Query<'q, sqlx::Any, AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> Query<'q, sqlx::Any, AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
        };
    }
    q
}

/// Logs a row left out of a list because its document does not load (as
/// [`Db::list_nodes`] leaves them out: one bad row never hides the rest).
pub fn skipped(uuid: &str, e: &DbError) {
    tracing::error!(kind = "node", id = %uuid, error = %e, "skipping a document that does not load");
}

impl Db {
    /// The nodes `q` selects, in its order; `Ok(None)` when its marker is
    /// not a node (the API's 404). A document that does not load is logged
    /// and left out, as in [`Db::list_nodes`].
    pub async fn query_nodes(&self, q: &NodeQuery) -> Result<Option<Vec<Node>>, DbError> {
        let Some(texts) = self.query_node_texts(q).await? else {
            return Ok(None);
        };
        let mut nodes = Vec::with_capacity(texts.len());
        for t in &texts {
            match self.whole_node(t) {
                Ok(n) => nodes.push(n),
                Err(e) => skipped(&t.uuid, &e),
            }
        }
        Ok(Some(nodes))
    }

    /// The rows `q` selects, in its order, as stored (see
    /// [`Db::listed_node`] and [`Db::whole_node`] to read them); `Ok(None)`
    /// when its marker is not a node.
    pub async fn query_node_texts(&self, q: &NodeQuery) -> Result<Option<Vec<NodeText>>, DbError> {
        let marker = match &q.marker {
            None => None,
            Some(uuid) => {
                let cols = q.sort.columns();
                let row = sqlx::query(&format!(
                    "SELECT {} FROM nodes WHERE uuid = $1",
                    cols.join(", ")
                ))
                .bind(uuid.clone())
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let mut values = Vec::with_capacity(cols.len());
                for (i, c) in cols.iter().enumerate() {
                    values.push(if *c == "maintenance" {
                        Bind::Int(row.try_get(i)?)
                    } else {
                        Bind::Text(row.try_get(i)?)
                    });
                }
                Some(values)
            }
        };
        let (sql, binds) = q.sql(marker);
        let rows = bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.pool)
            .await?;
        let mut texts = Vec::with_capacity(rows.len());
        for r in &rows {
            texts.push(NodeText {
                uuid: r.try_get(0)?,
                data: r.try_get(1)?,
            });
        }
        Ok(Some(texts))
    }

    /// Fills the list columns from `data` for the rows that lack them
    /// (written before migration 0007 or 0008, or inserted by hand as the
    /// benchmarks do): at start, before the API serves. Secrets stay sealed
    /// (none of these columns holds one).
    pub(super) async fn backfill_node_columns(&self) -> Result<(), DbError> {
        let rows = sqlx::query(
            "SELECT uuid, data FROM nodes WHERE driver IS NULL OR needs_conductor IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE nodes SET {} WHERE uuid = ${}",
            assignments(1),
            COLUMN_COUNT + 1
        );
        let mut filled = 0_usize;
        for r in &rows {
            let uuid: String = r.try_get(0)?;
            let data: String = r.try_get(1)?;
            let node: Node = match parse("node", &uuid, &data) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(node = %uuid, error = %e, "cannot fill the list columns of a document that does not load");
                    continue;
                }
            };
            Columns::of(&node)
                .bind(sqlx::query(&sql))
                .bind(uuid)
                .execute(&mut *tx)
                .await?;
            filled += 1;
        }
        tx.commit().await?;
        tracing::info!(
            nodes = filled,
            "filled the node list columns from the documents"
        );
        if self.backend() == super::Backend::Postgres {
            // Every row filled left a dead version behind (its indexed
            // columns changed, so no in-place update): until autovacuum
            // comes by, every index scan visits both and the list pays
            // for it (measured: 4x the database's time per page at 10,000
            // nodes). Vacuum now, and give the planner its statistics.
            sqlx::query("VACUUM (ANALYZE) nodes")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_numbers_placeholders_and_orders_with_ties() {
        let mut q = NodeQuery::default();
        q.eq("provision_state", "available")
            .flag("maintenance", false)
            .order(SortKey::Driver, true)
            .limit(11);
        let (sql, binds) = q.sql(Some(vec![
            Bind::Text("ipmi".into()),
            Bind::Text("t".into()),
            Bind::Text("u".into()),
        ]));
        assert_eq!(
            sql,
            "SELECT uuid, data FROM nodes WHERE provision_state = $1 AND maintenance = $2 \
             AND (driver, created_at, uuid) < ($3, $4, $5) \
             ORDER BY driver DESC, created_at DESC, uuid DESC LIMIT 11"
        );
        assert_eq!(binds.len(), 5);
        assert_eq!(binds[1], Bind::Int(0));
    }

    #[test]
    fn scope_without_rights_selects_nothing() {
        let mut q = NodeQuery::default();
        q.scope(&Scope::Project {
            project: "p".into(),
            owner: false,
            lessee: false,
        });
        assert!(q.sql(None).0.contains("1 = 0"));
    }

    #[test]
    fn column_lists_agree() {
        assert_eq!(COLUMNS.split(", ").count(), COLUMN_COUNT);
        assert_eq!(
            placeholders(3),
            "$3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13"
        );
        assert!(assignments(1).starts_with("driver = $1, resource_class = $2"));
    }
}

//! Schema migrations, embedded in the binary (sqlx's `migrate!` macro would
//! need the macros feature; the list is short enough to spell out).

use std::borrow::Cow;

use sqlx::AnyPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The migrations, in order. Never edit one that has shipped: add a new one.
const MIGRATIONS: [(i64, &str, &str); 8] = [
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (
        2,
        "conductors",
        include_str!("../../migrations/0002_conductors.sql"),
    ),
    (
        3,
        "secrets",
        include_str!("../../migrations/0003_secrets.sql"),
    ),
    (
        4,
        "dhcp_leases",
        include_str!("../../migrations/0004_dhcp_leases.sql"),
    ),
    (5, "fleet", include_str!("../../migrations/0005_fleet.sql")),
    (
        6,
        "node_history",
        include_str!("../../migrations/0006_node_history.sql"),
    ),
    (
        7,
        "node_list",
        include_str!("../../migrations/0007_node_list.sql"),
    ),
    (
        8,
        "nodes_needing_a_conductor",
        include_str!("../../migrations/0008_nodes_needing_a_conductor.sql"),
    ),
];

/// Applies every migration not applied yet.
pub async fn run(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(version, desc, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*desc),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    let migrator = Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    };
    migrator.run(pool).await
}

//! Checks of a SQLite database file before the pool opens it: the file holds
//! BMC passwords, so it is created readable by its owner only (0600); an
//! empty or foreign file is refused instead of silently starting an empty
//! fleet; and `PRAGMA quick_check` runs once, so a truncated or damaged file
//! is refused at once with SQLite's own words (not after a pool timeout).

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sqlx::Connection;

use super::DbError;

/// The first 16 bytes of every SQLite 3 database.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The file a `sqlite:` URL names; `None` for in-memory databases.
pub(super) fn path_of(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

fn damaged(path: &Path, reason: impl Into<String>) -> DbError {
    DbError::Damaged {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Creates a missing file with mode 0600, and refuses an existing one that
/// is empty or not a SQLite database.
pub(super) fn prepare(path: &Path) -> Result<(), DbError> {
    match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| damaged(path, format!("cannot create it: {e}")))?;
            // SQLite writes its header on first use; an empty file that we
            // just made is the one case where empty is fine.
            Ok(())
        }
        Err(e) => Err(damaged(path, format!("cannot open it: {e}"))),
        Ok(mut f) => {
            let meta = f
                .metadata()
                .map_err(|e| damaged(path, format!("cannot stat it: {e}")))?;
            if meta.len() == 0 {
                return Err(damaged(
                    path,
                    "the file is empty (0 bytes), so it is not a database this coordinator wrote; \
                     remove it to start a new, empty fleet",
                ));
            }
            let mut head = [0u8; 16];
            f.read_exact(&mut head)
                .map_err(|e| damaged(path, format!("cannot read its header: {e}")))?;
            if &head != MAGIC {
                return Err(damaged(
                    path,
                    "it is not a SQLite 3 database (wrong header)",
                ));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "the database holds BMC passwords but is readable by others; chmod 600 it"
                );
            }
            Ok(())
        }
    }
}

/// Runs `PRAGMA quick_check` on one connection of its own.
pub(super) async fn quick_check(url: &str, path: &Path) -> Result<(), DbError> {
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .map_err(|e| damaged(path, format!("SQLite cannot open it: {e}")))?;
    let rows = sqlx::query("PRAGMA quick_check")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| damaged(path, format!("quick_check failed: {e}")))?;
    let _ = conn.close().await;
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|r| sqlx::Row::try_get::<String, _>(r, 0).ok())
        .collect();
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    let mut reason = lines.into_iter().take(5).collect::<Vec<_>>().join("; ");
    if reason.is_empty() {
        reason = "no answer".into();
    }
    Err(damaged(path, format!("quick_check found damage: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::path_of;
    use std::path::PathBuf;

    #[test]
    fn paths_of_urls() {
        assert_eq!(path_of("sqlite://a.db"), Some(PathBuf::from("a.db")));
        assert_eq!(
            path_of("sqlite:///var/lib/ingot.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/ingot.db"))
        );
        assert_eq!(path_of("sqlite::memory:"), None);
        assert_eq!(path_of("postgres://x/y"), None);
    }
}

//! Ironic's error envelope: `{"error_message": "<JSON string>"}` where the
//! string holds `{"faultcode": "Client"|"Server", "faultstring": …, "debuginfo": null}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::conductor::ConductorError;
use crate::db::{DbError, UpdateError};

/// The `Retry-After` (seconds) of every 503: about the time a request
/// waits for a database connection before giving up
/// ([`crate::db::PG_ACQUIRE_TIMEOUT`]).
pub const RETRY_AFTER_SECS: u64 = 5;

/// An API error, rendered in Ironic's envelope. A 503 carries `Retry-After`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The faultstring.
    pub message: String,
}

impl ApiError {
    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// 406 for a feature newer than the requested microversion.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, message)
    }
    /// 503 while the database cannot be reached; the response carries
    /// `Retry-After` ([`RETRY_AFTER_SECS`]).
    pub fn db_unavailable(reason: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The database is unavailable: {reason}; retry later."),
        )
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// 404 for a node.
    pub fn node_not_found(ident: &str) -> Self {
        Self::not_found(format!("Node {ident} could not be found."))
    }
    /// 409 NodeLocked.
    pub fn node_locked(uuid: &str, host: &str) -> Self {
        Self::conflict(format!(
            "Node {uuid} is locked by host {host}, please retry after the current operation is completed."
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let faultcode = if self.status.is_server_error() {
            "Server"
        } else {
            "Client"
        };
        let inner = json!({"faultcode": faultcode, "faultstring": self.message, "debuginfo": null});
        let body = json!({"error_message": inner.to_string()});
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict(m) => Self::conflict(m),
            DbError::NotFound(m) => Self::not_found(format!("{m} could not be found.")),
            DbError::Contended(m) => Self::conflict(format!(
                "Node {m} is being changed concurrently, please retry."
            )),
            DbError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Self::db_unavailable(&m)
            }
            other => {
                tracing::error!(error = %other, "database error");
                Self::internal(format!("Database error: {other}"))
            }
        }
    }
}

impl From<UpdateError<ApiError>> for ApiError {
    fn from(e: UpdateError<ApiError>) -> Self {
        match e {
            UpdateError::Refused(a) => a,
            UpdateError::Db(d) => d.into(),
        }
    }
}

impl From<ConductorError> for ApiError {
    fn from(e: ConductorError) -> Self {
        match e {
            ConductorError::Db(d) => d.into(),
            ConductorError::Transition(t) => {
                Self::internal(format!("The conductor's change of state was refused: {t}"))
            }
            ConductorError::Fenced(uuid) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "This coordinator cannot act on node {uuid} now (its database lease lapsed or another coordinator holds the node); retry."
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_503_with_retry_after() {
        let db = DbError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(db, DbError::Unavailable(_)), "{db:?}");
        let e = ApiError::from(db);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            e.message.starts_with("The database is unavailable: ")
                && e.message.ends_with("; retry later."),
            "{}",
            e.message
        );
        let resp = e.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            DbError::from(sqlx::Error::Io(refused)),
            DbError::Unavailable(_)
        ));
        // A statement the database refused is not an outage.
        let other = ApiError::from(DbError::from(sqlx::Error::RowNotFound));
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}

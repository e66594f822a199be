//! The metrics listener (`[metrics] listen`): `GET /metrics` and nothing
//! else, without authentication, apart from the API's port.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{NodeStateLabels, StateLabels, global};
use crate::db::Db;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The router of the metrics listener.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "GET /metrics\n") })
        .with_state(db)
}

async fn scrape(State(db): State<Db>) -> Response {
    // One scrape at a time: the node counts are rebuilt by each.
    static ONE: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(Default::default);
    let text = {
        let _one = ONE.lock().await;
        refresh(&db).await;
        global().encode()
    };
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// Reads the figures that are computed at scrape time: nodes by state and
/// the database pool. When the database does not answer, the node counts
/// are left out of this scrape.
pub async fn refresh(db: &Db) {
    let m = global();
    let pool = db.pool_stats();
    let in_use = pool.open.saturating_sub(pool.idle);
    for (state, n) in [("idle", pool.idle), ("in_use", in_use)] {
        m.db_connections
            .get_or_create(&StateLabels { state })
            .set(i64::from(n));
    }
    m.db_max_connections.set(i64::from(pool.max));
    match db.count_nodes_by_state().await {
        Ok(counts) => {
            // A state with no node left must disappear: rebuilt.
            m.nodes.clear();
            for c in counts {
                m.nodes
                    .get_or_create(&NodeStateLabels {
                        provision_state: c.provision_state,
                        power_state: c.power_state.unwrap_or_else(|| "unknown".to_owned()),
                    })
                    .set(c.nodes);
            }
        }
        Err(e) => {
            m.nodes.clear();
            tracing::warn!(error = %e, "metrics: counting the nodes failed");
        }
    }
}

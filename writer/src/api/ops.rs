//! Operations endpoints: liveness, readiness (the store answers) and Prometheus metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;

/// How long readiness waits for the store before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The store answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready<'a> {
    /// Always true here.
    pub ready: bool,
    /// `etcd` or `embedded`.
    pub store: &'static str,
    pub revision: i64,
    /// This writer's id.
    pub id: &'a str,
    /// `leader` or `standby`.
    pub role: &'static str,
    /// The leader's URL, when known.
    pub leader: Option<String>,
}

/// The store did not answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotReady {
    /// Always false here.
    pub ready: bool,
    pub store: &'static str,
    /// `{code: store_unavailable, message}`.
    pub error: NotReadyError,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotReadyError {
    pub code: &'static str,
    pub message: String,
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The store is reachable. Says whether this writer leads and where the leader is: a standby
/// is ready too (it serves reads and redirects writes).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "Store unreachable", body = NotReady)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.configs.store();
    match tokio::time::timeout(READY_TIMEOUT, store.current_revision()).await {
        Ok(Ok(revision)) => {
            let leadership = state.leadership.status();
            Json(Ready {
                ready: true,
                store: store.kind(),
                revision,
                id: &state.leadership.me().id,
                role: leadership.role().as_str(),
                leader: leadership.leader().map(|l| l.url.clone()),
            })
            .into_response()
        }
        Ok(Err(err)) => not_ready(store.kind(), err.to_string()),
        Err(_) => not_ready(store.kind(), format!("no answer within {READY_TIMEOUT:?}")),
    }
}

fn not_ready(store: &'static str, reason: String) -> Response {
    let body = NotReady {
        ready: false,
        store,
        error: NotReadyError {
            code: "store_unavailable",
            message: reason,
        },
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    for (endpoint, up) in state.configs.store_endpoints() {
        state
            .metrics
            .store_endpoint_up
            .with_label_values(&[endpoint.as_str()])
            .set(i64::from(up));
    }
    state.metrics.count_rollouts(&state.feed.snapshot());
    if let Some(replication) = &state.replication {
        replication.refresh_lag_gauges();
    }
    if let Some(alerts) = &state.alerts {
        alerts.evaluate();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

//! `GET /api/alerts`: the alerts the writer evaluates itself over its fleet view
//! ([`crate::alerts`]), evaluated at the request so the answer is current.
//!
//! Edges are shown to every caller, as in `/api/edges`; a client only to callers who may read
//! one of the prefixes it watches, as in `/api/clients` — an alert about clients lists the
//! visible ones, and an alert none of whose clients (or whose prefix) the caller may see is left
//! out.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use setpoint_core::ConfigPath;
use setpoint_core::alerts::{Alert, CLIENT_DISCONNECTED};
use setpoint_core::auth::Action;

use super::AppState;
use super::auth::Caller;
use crate::alerts::AlertBody;
use crate::error::Error;

/// The answer of `GET /api/alerts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertsBody {
    /// Firing now, by name then key.
    pub alerts: Vec<AlertBody>,
}

/// What `caller` may see of `alert` (`None`: nothing).
fn visible(state: &AppState, caller: &Caller, alert: &Alert) -> Option<AlertBody> {
    if let Some(prefix) = alert.key.strip_prefix("prefix:") {
        let path = if prefix == "/" {
            ConfigPath::root()
        } else {
            ConfigPath::parse(prefix).ok()?
        };
        return caller
            .may(&path, Action::Read)
            .then(|| AlertBody::of(alert));
    }
    let mut body = AlertBody::of(alert);
    if alert.clients.is_empty() {
        return Some(body);
    }
    let replication = state.replication.as_ref()?;
    let total = body.clients.len();
    body.clients = replication.clients(|fleet| {
        alert
            .clients
            .iter()
            .filter(|id| {
                fleet
                    .get(id)
                    .is_some_and(|r| r.readable_by(&caller.principal.grants))
            })
            .cloned()
            .collect()
    });
    if body.clients.is_empty() && alert.name == CLIENT_DISCONNECTED {
        return None;
    }
    // Those not shown are not counted either: the count would tell of clients it may not see.
    if body.clients.len() < total {
        body.clients_total = body.clients.len();
    }
    Some(body)
}

/// The alerts firing now: clients disconnected past the grace, a sharp drop of an edge's or a
/// prefix's connected clients, edges without a replication link or staying behind. Empty when
/// this writer serves no edges.
#[utoipa::path(get, path = "/api/alerts", tag = "fleet",
    responses((status = 200, description = "The firing alerts the caller may see", body = AlertsBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AlertsBody>, Error> {
    let firing = state
        .alerts
        .as_ref()
        .map(|alerts| alerts.evaluate())
        .unwrap_or_default();
    Ok(Json(AlertsBody {
        alerts: firing
            .iter()
            .filter_map(|alert| visible(&state, &caller, alert))
            .collect(),
    }))
}

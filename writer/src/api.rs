//! The writer's REST API (axum): routes, shared state and the middleware around them.
//!
//! Layout: [`config`] serves `/api/config/...` and `/api/batch`, [`schemas`] `/api/schemas/...`,
//! [`environments`] `/api/environments/...`, [`rollouts`] `POST /api/config/{path}/rollout` and
//! `/api/rollouts/...`,
//! [`ops`] health, readiness and metrics, [`openapi`] the generated OpenAPI document, [`input`]
//! turns raw bodies, headers and query strings into typed requests (every input is parsed here
//! once and rejected with a JSON error, never unwrapped).
//!
//! API boundary: handlers only parse, call [`crate::model::Configs`] and render. No handler
//! touches the store directly.

pub mod accounts;
pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod config;
pub mod environments;
pub mod input;
pub mod openapi;
pub mod ops;
pub mod preview;
pub mod rollouts;
pub mod schemas;
pub mod standby;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{get, post};

use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::Configs;
use crate::replication::Replication;

/// Largest request body read at all. Values are limited to 1 MiB of stored bytes; JSON escaping
/// can make the body that carries one larger, and batches carry several.
pub const MAX_BODY_BYTES: usize = 8 << 20;

#[derive(Clone)]
pub struct AppState {
    pub configs: Arc<Configs>,
    pub metrics: Arc<Metrics>,
    /// The replication link, when this writer serves edges.
    pub replication: Option<Arc<Replication>>,
    /// The writer's own alerts (with replication: they watch its edges and clients).
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
    /// Fleet membership, when this writer gossips.
    pub gossip: Option<Arc<setpoint_cluster::gossip::Gossip>>,
    /// The in-memory read model (every config, fed by the store's watch) that serves
    /// environment-aware reads.
    pub feed: Arc<crate::replication::feed::Feed>,
    pub secrets: setpoint_secrets::serve::SecretAccess,
    pub auth: Arc<auth::AuthState>,
    /// Whether this replica leads; standbys redirect writes ([`standby`]).
    pub leadership: Arc<crate::leader::Leadership>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/config", get(config::get_root))
        .route("/api/config/", get(config::get_root))
        .route(
            "/api/config/{*path}",
            get(config::get)
                .put(config::put)
                .delete(config::delete)
                .post(rollouts::create),
        )
        .route("/api/batch", post(config::batch))
        .route("/api/preview", post(preview::batch))
        .route("/api/schemas", get(schemas::list))
        .route(
            "/api/schemas/{*prefix}",
            get(schemas::get).put(schemas::put).delete(schemas::delete),
        )
        .route("/api/environments", get(environments::list))
        .route(
            "/api/environments/{name}",
            get(environments::get)
                .put(environments::put)
                .delete(environments::delete),
        )
        .route("/api/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/api/accounts/{id}",
            get(accounts::get).delete(accounts::delete),
        )
        .route(
            "/api/accounts/{id}/grants",
            axum::routing::put(accounts::set_grants),
        )
        .route("/api/accounts/{id}/keys", post(accounts::rotate))
        .route(
            "/api/accounts/{id}/keys/{key}",
            axum::routing::delete(accounts::revoke),
        )
        .route(
            "/api/policies/{*prefix}",
            axum::routing::put(approvals::put_policy).delete(approvals::delete_policy),
        )
        .route("/api/changes", get(approvals::list))
        .route("/api/changes/{id}", get(approvals::get))
        .route("/api/changes/{id}/approve", post(approvals::approve))
        .route("/api/changes/{id}/reject", post(approvals::reject))
        .route("/api/changes/{id}/cancel", post(approvals::cancel))
        .route("/api/rollouts", get(rollouts::list))
        .route("/api/rollouts/{id}", get(rollouts::get))
        .route("/api/rollouts/{id}/{action}", post(rollouts::steer))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/verify", get(audit::verify))
        .route("/api/edges", get(edges))
        .route("/api/alerts", get(alerts::list))
        .route("/api/clients", get(clients::list))
        .route("/api/clients/{id}", get(clients::get))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route_layer(setpoint_serving::metrics::Track::new(
            state.metrics.http.clone(),
        ))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            standby::redirect_writes,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        // Merged after the layers, so the console's files are outside the door: a browser
        // loads them without a key (they hold no data; every call they make to `/api/…` carries
        // the user's key).
        .merge(crate::console::router())
}

/// The answer of `GET /api/edges`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EdgesBody {
    pub edges: Vec<EdgeBody>,
    /// The revision the writer serves.
    pub revision: i64,
    pub writer: WriterBody,
}

/// One edge, as replication and gossip know it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EdgeBody {
    pub id: String,
    /// Its HTTP address.
    pub address: String,
    pub region: String,
    /// The gossip verdict `alive`, `suspect` or `down`; without gossip, from the replication
    /// link (`alive` while connected).
    pub state: &'static str,
    /// `connected`, `disconnected`, or `unknown` (known from gossip only).
    pub replication: &'static str,
    pub applied_revision: Option<i64>,
    /// Revisions behind the writer.
    pub lag: Option<i64>,
    /// The address its replication link comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// The id of the node it replicates from: this writer, or the regional edge that relays
    /// to it (the tree). Absent for an edge known from gossip only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Below a relay: the mean time of its own hop (the relay's feed → its ack), milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop_mean_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip_addr: Option<String>,
}

impl EdgeBody {
    /// An edge as a replication link knows it (no gossip yet): `state` from the link.
    fn replicating(
        id: String,
        address: String,
        region: String,
        connected: bool,
        applied_revision: i64,
        lag: i64,
        upstream: String,
    ) -> EdgeBody {
        EdgeBody {
            id,
            address,
            region,
            state: if connected { "alive" } else { "down" },
            replication: if connected {
                "connected"
            } else {
                "disconnected"
            },
            applied_revision: Some(applied_revision),
            lag: Some(lag),
            remote_addr: None,
            upstream: Some(upstream),
            hop_mean_ms: None,
            gossip_addr: None,
        }
    }
}

/// This writer: its id, role (`leader` or `standby`) and the leader's URL when known.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WriterBody {
    pub id: String,
    pub role: &'static str,
    pub leader: Option<String>,
}

/// Every edge known from gossip or from replication, merged by id.
/// `state` is the gossip verdict (`alive`, `suspect`, `down`); without gossip it is derived
/// from the replication link (`alive` while connected, else `down`).
#[utoipa::path(get, path = "/api/edges", tag = "fleet",
    responses((status = 200, description = "Every edge and this writer", body = EdgesBody),
              openapi::errors::Unavailable))]
pub async fn edges(
    State(state): State<AppState>,
    _caller: auth::Caller,
) -> Result<axum::Json<EdgesBody>, Error> {
    use std::collections::BTreeMap;

    use setpoint_cluster::gossip::{MemberState, Role};

    let revision = match &state.replication {
        Some(replication) => replication.revision(),
        None => state.configs.store_revision().await?,
    };
    let mut edges: BTreeMap<String, EdgeBody> = BTreeMap::new();
    if let Some(replication) = &state.replication {
        for edge in replication.edges() {
            let lag = replication.lag(&edge);
            let body = EdgeBody {
                remote_addr: Some(edge.remote_addr.to_string()),
                ..EdgeBody::replicating(
                    edge.id.clone(),
                    edge.http_addr,
                    edge.region,
                    edge.connected,
                    edge.applied_revision,
                    lag,
                    state.leadership.me().id.clone(),
                )
            };
            edges.insert(edge.id, body);
        }
        for edge in replication.relayed_edges() {
            // An edge listed twice (it failed over, and a relay still remembers it): the
            // connected entry wins.
            if edges
                .get(&edge.id)
                .is_some_and(|held| held.replication == "connected" || !edge.connected)
            {
                continue;
            }
            let lag = (replication.feed().config_revision() - edge.applied_revision).max(0);
            let body = EdgeBody {
                hop_mean_ms: (edge.hop_acked > 0)
                    .then(|| edge.hop_micros as f64 / edge.hop_acked as f64 / 1000.0),
                ..EdgeBody::replicating(
                    edge.id.clone(),
                    edge.http_addr,
                    edge.region,
                    edge.connected,
                    edge.applied_revision,
                    lag,
                    edge.upstream,
                )
            };
            edges.insert(edge.id, body);
        }
    }
    if let Some(gossip) = &state.gossip {
        for member in gossip
            .members()
            .into_iter()
            .filter(|m| m.info.role == Role::Edge)
        {
            let verdict = match member.state {
                MemberState::Alive => "alive",
                MemberState::Suspect => "suspect",
                MemberState::Down => "down",
            };
            let entry = edges
                .entry(member.info.id.clone())
                .or_insert_with(|| EdgeBody {
                    id: member.info.id.clone(),
                    address: member.info.http_addr.clone(),
                    region: member.info.region.clone(),
                    state: verdict,
                    replication: "unknown",
                    applied_revision: None,
                    lag: None,
                    remote_addr: None,
                    upstream: None,
                    hop_mean_ms: None,
                    gossip_addr: None,
                });
            entry.state = verdict;
            entry.gossip_addr = Some(member.gossip_addr.to_string());
        }
    }
    let leadership = state.leadership.status();
    Ok(axum::Json(EdgesBody {
        edges: edges.into_values().collect(),
        revision,
        writer: WriterBody {
            id: state.leadership.me().id.clone(),
            role: leadership.role().as_str(),
            leader: leadership.leader().map(|l| l.url.clone()),
        },
    }))
}

async fn not_found(method: Method, uri: Uri) -> Error {
    Error::not_found(format!("no route for {method} {}", uri.path()))
}

pub use setpoint_serving::listing::rewrite_list_method;

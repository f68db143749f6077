//! `/api/clients`: every application instance the edges report — what it watches, where, what it
//! applied, its last callback failure — and `/api/clients/{id}`.
//!
//! The data is the replication link's fleet view ([`crate::replication::Replication::clients`]);
//! this module only filters it by the caller's rights (a client is shown to callers who may
//! read one of the prefixes it watches; admins see all) and renders it.

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use setpoint_core::ConfigPath;
use setpoint_core::clients::{ClientFilter, ClientRecord};
use setpoint_serving::params::Path;

use super::AppState;
use super::auth::Caller;
use super::openapi::errors;
use crate::error::Error;

fn rfc3339(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// One application instance as the API shows it. Times are RFC 3339.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientBody<'a> {
    pub id: &'a str,
    /// The prefixes it watches.
    pub watching: &'a [String],
    pub edge: &'a str,
    pub env: Option<&'a str>,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// `connected` or `disconnected`.
    pub status: &'static str,
    pub connected_at: Option<String>,
    pub disconnected_at: Option<String>,
    pub last_seen: Option<String>,
    pub address: &'a str,
    /// `session` or `watch`.
    pub kind: &'static str,
    /// `name/version` of the SDK, when it said.
    pub sdk: Option<String>,
    pub applied_revision: i64,
    pub delivered_revision: i64,
    /// Revisions delivered but not yet applied.
    pub lag: i64,
    pub lag_seconds: f64,
    pub propagation_ms: Option<f64>,
    pub end_to_end_ms: Option<f64>,
    pub nacks: u64,
    pub last_error: Option<ClientErrorBody<'a>>,
}

/// The last change the client failed to apply.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientErrorBody<'a> {
    pub path: &'a str,
    pub error: &'a str,
    pub revision: i64,
    pub at: Option<String>,
}

/// One client as the API shows it.
pub fn render(record: &ClientRecord, now_ms: i64) -> ClientBody<'_> {
    let sdk = match (record.sdk.is_empty(), record.sdk_version.is_empty()) {
        (true, _) => None,
        (false, true) => Some(record.sdk.clone()),
        (false, false) => Some(format!("{}/{}", record.sdk, record.sdk_version)),
    };
    ClientBody {
        id: &record.id,
        watching: &record.prefixes,
        edge: &record.edge,
        env: record.env.as_deref(),
        labels: &record.labels,
        status: if record.is_connected() {
            "connected"
        } else {
            "disconnected"
        },
        connected_at: rfc3339(record.connected_at_ms),
        disconnected_at: record.disconnected_at_ms.and_then(rfc3339),
        last_seen: rfc3339(record.last_seen_ms),
        address: &record.address,
        kind: record.kind.as_str(),
        sdk,
        applied_revision: record.applied_revision,
        delivered_revision: record.delivered_revision,
        lag: record.lag_revisions(),
        lag_seconds: record.lag_seconds(now_ms),
        propagation_ms: record.propagation_ms,
        end_to_end_ms: record.end_to_end_ms,
        nacks: record.nacks,
        last_error: record.last_error.as_ref().map(|e| ClientErrorBody {
            path: &e.path,
            error: &e.error,
            revision: e.revision,
            at: rfc3339(e.at_ms),
        }),
    }
}

/// Parses `?prefix=&env=&status=&label=k=v&edge=` (labels repeat).
fn filter(params: &[(String, String)]) -> Result<ClientFilter, Error> {
    let mut filter = ClientFilter::default();
    for (name, value) in params {
        match name.as_str() {
            "prefix" => {
                let prefix = if value == "/" {
                    ConfigPath::root()
                } else {
                    ConfigPath::parse(value).map_err(|e| {
                        Error::bad_request(format!("prefix={value:?} is not a path: {e}"))
                    })?
                };
                filter.prefix = Some(prefix.as_str().to_owned());
            }
            "env" => filter.env = Some(value.clone()),
            "edge" => filter.edge = Some(value.clone()),
            "status" => {
                filter.connected = match value.as_str() {
                    "connected" => Some(true),
                    "disconnected" => Some(false),
                    "all" => None,
                    other => {
                        return Err(Error::bad_request(format!(
                            "status={other:?} is not one of connected, disconnected, all"
                        )));
                    }
                }
            }
            "label" => {
                let (key, value) = value.split_once('=').ok_or_else(|| {
                    Error::bad_request(format!("label={value:?} is not key=value"))
                })?;
                filter.labels.push((key.to_owned(), value.to_owned()));
            }
            other => {
                return Err(Error::bad_request(format!(
                    "unknown query parameter {other:?} (prefix, env, status, label, edge)"
                )));
            }
        }
    }
    Ok(filter)
}

/// The values of `?status=` (documentation; parsed in [`filter`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusFilter {
    Connected,
    Disconnected,
    All,
}

/// May `caller` see `record`: `read` on one of the prefixes it watches (admins may read all).
fn visible(caller: &Caller, record: &ClientRecord) -> bool {
    record.readable_by(&caller.principal.grants)
}

#[utoipa::path(get, path = "/api/clients", tag = "clients",
    params(("prefix" = Option<String>, Query, description = "Clients watching this prefix, or one above or below it"),
           ("env" = Option<String>, Query, description = "Clients of this environment"),
           ("status" = Option<StatusFilter>, Query, description = "connected, disconnected or all (default all)"),
           ("label" = Option<String>, Query, description = "key=value; repeat for several"),
           ("edge" = Option<String>, Query, description = "Clients of this edge")),
    responses((status = 200, description = "The clients the caller may see", body = [ClientBody]),
              errors::BadRequest))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Vec<serde_json::Value>>, Error> {
    let filter = filter(&params)?;
    let now = crate::replication::unix_ms();
    let listed = match &state.replication {
        Some(replication) => replication.clients(|fleet| {
            fleet
                .list(&filter)
                .into_iter()
                .filter(|r| visible(&caller, r))
                .filter_map(|r| serde_json::to_value(render(r, now)).ok())
                .collect::<Vec<_>>()
        }),
        None => Vec::new(),
    };
    Ok(Json(listed))
}

#[utoipa::path(get, path = "/api/clients/{id}", tag = "clients",
    params(("id" = String, Path, description = "The instance id")),
    responses((status = 200, description = "One client", body = ClientBody),
              errors::NotFound))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    let now = crate::replication::unix_ms();
    let found = state.replication.as_ref().and_then(|replication| {
        replication.clients(|fleet| {
            fleet
                .get(&id)
                .filter(|r| visible(&caller, r))
                .and_then(|r| serde_json::to_value(render(r, now)).ok())
        })
    });
    found
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("no client {id:?} is known")))
}

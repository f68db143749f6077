//! SSE streams that name their application instance (`?watch=true&instance_id=app-1`) take part
//! in the client registry like SDK sessions: registered while the stream is open, each delivered
//! batch recorded; the app (or a script) acknowledges with `POST /api/receipts`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use setpoint_core::clients::ClientKind;
use setpoint_core::{ConfigPath, Revision};

use crate::Edge;
use crate::auth::Caller;
use crate::clients::{ClientRegistry, Hello, RegisterError, Ticket};
use crate::error::ApiError;

/// A registered SSE stream; dropping it (the stream ended) marks the client disconnected.
pub struct SseClient {
    registry: Arc<ClientRegistry>,
    ticket: Ticket,
}

impl SseClient {
    pub fn delivered(&self, revision: Revision) {
        self.registry.delivered(&self.ticket, revision);
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.registry.disconnected(&self.ticket);
    }
}

/// `labels=zone=eu-1,version=2.3.1`.
fn labels(raw: Option<&String>) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    raw.split(',')
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "labels={raw:?} must be key=value pairs separated by commas"
                    ))
                })
        })
        .collect()
}

/// Registers the stream of `instance_id` watching `prefix` (in `env`), if the query names one.
pub fn register(
    edge: &Edge,
    caller: &Caller,
    query: &std::collections::HashMap<String, String>,
    prefix: &ConfigPath,
    env: Option<String>,
) -> Result<Option<SseClient>, ApiError> {
    let Some(id) = query.get("instance_id").filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    let hello = Hello {
        id: id.clone(),
        address: caller.peer.map(|p| p.to_string()).unwrap_or_default(),
        env,
        labels: labels(query.get("labels"))?,
        prefixes: vec![prefix.as_str().to_owned()],
        sdk: "sse".into(),
        sdk_version: String::new(),
    };
    let registry = edge.clients().clone();
    let revision = edge.holder().revision();
    let ticket = registry
        .register(hello, ClientKind::Sse, revision)
        .map_err(|e| match e {
            RegisterError::Invalid(message) => ApiError::bad_request(message),
            RegisterError::Full | RegisterError::FullBytes => ApiError::new(
                setpoint_core::error::ErrorCode::StoreUnavailable,
                e.to_string(),
            ),
        })?;
    Ok(Some(SseClient { registry, ticket }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    instance_id: String,
    revision: Revision,
    #[serde(default)]
    failures: Vec<NackBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    path: String,
    error: String,
}

/// `POST /api/receipts` `{"instance_id", "revision", "failures"?: [{"path", "error"}]}`: the
/// instance applied `revision` (and these callbacks failed). The instance must be connected
/// here, and the caller must be able to read what it watches. 204 on success.
pub async fn post_receipt(
    State(edge): State<Edge>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body: ReceiptBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"instance_id\", \"revision\", \"failures\"?: [{{\"path\", \"error\"}}]}}: {e}"
        ))
    })?;
    if body.failures.len() > setpoint_core::clients::MAX_PREFIXES {
        return Err(ApiError::bad_request(format!(
            "at most {} failures per receipt",
            setpoint_core::clients::MAX_PREFIXES
        )));
    }
    let registry = edge.clients();
    let not_here = || {
        ApiError::not_found(format!(
            "no connected client {:?} on this edge",
            body.instance_id
        ))
    };
    let (ticket, record) = registry
        .connected_ticket(&body.instance_id)
        .ok_or_else(not_here)?;
    let may = record.readable_by(&caller.principal.grants);
    if !may {
        // Indistinguishable from an unknown client: ids are not for probing.
        return Err(not_here());
    }
    let failures: Vec<(String, String)> = body
        .failures
        .into_iter()
        .map(|n| (n.path, n.error))
        .collect();
    let committed = edge.holder().committed_at(body.revision);
    registry.receipt(&ticket, body.revision, &failures, committed);
    Ok(StatusCode::NO_CONTENT)
}

//! The edge's HTTP API: config reads and SSE watches from memory, plus operations endpoints.
//!
//! Reads answer with the writer's JSON shapes (`setpoint_serving::body`: entry, listing, the
//! error body; ETag / If-None-Match and the listing rules are the writer's too) so a client can
//! point at either. Every read is served from one snapshot load; `X-Setpoint-Revision` is the
//! revision of that snapshot (so a client can watch from it without a gap) and
//! `X-Setpoint-Stale: true` says the edge has not heard from the writer. An edge holds only the
//! current version of each config: `?version=N` for any other version is a 404 saying so.
//!
//! `?watch=true` opens an SSE stream. Each change is one `data:` event
//! (`{"type":"update"|"delete","path","value"?,"format"?,"old_value"?,"version","revision"}`);
//! the SSE `id:` (the revision) is set only on the *last* event of each commit batch, so a
//! client that reconnects with `Last-Event-ID` resumes after a whole batch, never inside one.
//! `?from_revision=N` does the same for a first connection (the header wins when both are
//! given). When the edge cannot replay from there, the first event is `event: reset` with
//! `{"type":"reset","revision","state":[entries]}` and `id:` = revision; the same happens when a
//! slow client is cut off. Idle streams get a comment line every 15 s.
//!
//! `?watch=true&env=E` streams the same events for *effective* values in environment `E` (base
//! paths; a commit that changes no effective value sends nothing; resets carry the effective
//! state); `&resolve=true` substitutes `${VAR}` in them and leaves `${secret:…}` as written. An
//! unknown environment is a 404, as for `GET ?env=E`.
//!
//! Every read is for the [`Caller`]: a path needs `read`; a listing shows only the children
//! the caller can read something below (never `_setpoint`) and, recursive, only readable
//! entries; env-aware reads plan with the caller's grants (in an environment, on every layer:
//! the base path and its override in each environment of the chain; secrets need
//! `secrets:read` likewise); a watch needs `read` on everything below its prefix (with `env`, on
//! every layer), is checked again while it stays open, and ends with an `event: error` when its
//! key is revoked or its grant is gone.
//!
//! `?watch=true&instance_id=app-1[&labels=zone=eu-1,version=2]` also registers the stream in the
//! client registry (shown by the writer's `/api/clients`, disconnected when the stream ends);
//! `POST /api/receipts` `{"instance_id", "revision", "failures"?}` acknowledges what the app
//! applied ([`clients`]).
//!
//! `/healthz` answers 200 while the process serves, stale or not (staleness is a fact to report,
//! not a reason to be restarted); `/readyz` is 503 until a snapshot is loaded from disk or
//! received from the writer.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};
use setpoint_core::auth::Action;
use setpoint_core::read::ReadQuery;
use setpoint_core::snapshot::{Entry, Event, EventKind, Snapshot};
use setpoint_core::{ConfigPath, Revision, Version};
use setpoint_serving::params::Path;

use setpoint_serving::body::{EntryBody, ListedEntry, ListingBody};
use setpoint_serving::conditional::{etag, if_none_match_hits};
use setpoint_serving::listing;
use setpoint_serving::params::Params;

use crate::Edge;
use crate::auth::{Caller, WatchGuard};
use crate::error::ApiError;
use crate::watch::WatchSpec;

mod clients;
pub mod fast;
pub mod sse;

const REVISION_HEADER: HeaderName = HeaderName::from_static("x-setpoint-revision");
const STALE_HEADER: HeaderName = HeaderName::from_static("x-setpoint-stale");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// How often an idle SSE stream gets a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The HTTP routes, without a fallback (the caller adds one, see [`crate::Edge::router`]).
pub fn routes(edge: Edge) -> Router {
    let metrics = edge.metrics().http.clone();
    Router::new()
        .route("/api/config", get(get_root))
        .route("/api/config/", get(get_root))
        .route("/api/config/{*path}", get(get_path))
        .route("/api/receipts", axum::routing::post(clients::post_receipt))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route_layer(setpoint_serving::metrics::Track::new(metrics))
        .with_state(edge)
}

/// The answer to a path no route serves.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint on this edge")
}

async fn get_root(
    State(edge): State<Edge>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    read(
        &edge,
        &caller,
        ConfigPath::root(),
        &Params::new(query),
        request.headers(),
    )
    .await
}

async fn get_path(
    State(edge): State<Edge>,
    caller: Caller,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    // The request itself, not the `HeaderMap` extractor, which copies every header.
    request: Request,
) -> Result<Response, ApiError> {
    let path = ConfigPath::parse(&raw)?;
    read(&edge, &caller, path, &Params::new(query), request.headers()).await
}

async fn read(
    edge: &Edge,
    caller: &Caller,
    path: ConfigPath,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if params.flag("watch")? {
        return watch(edge, caller, path, params, headers).await;
    }
    let query = ReadQuery::from_params(|name| params.get(name))?;
    let instance = headers
        .get(crate::rollouts::INSTANCE_HEADER)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::bad_request(format!("{} is not ASCII", crate::rollouts::INSTANCE_HEADER))
            })
        })
        .transpose()?;
    if !query.is_plain() {
        let snapshot = crate::rollouts::snapshot_for(edge, instance)?;
        let stale = edge.holder().is_stale();
        let rendered = setpoint_secrets::serve::read(
            edge.secrets(),
            &snapshot,
            &path,
            &query,
            caller.grants(),
        )
        .await?;
        let response = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(rendered.content_type),
            )],
            rendered.body,
        )
            .into_response();
        return Ok(annotate(response, rendered.revision, stale));
    }
    let snapshot = crate::rollouts::snapshot_for(edge, instance)?;
    let stale = edge.holder().is_stale();
    let response = if params.flag("list")? || !caller.grants().allows(&path, Action::Read) {
        // A prefix the caller can read below still lists what it may see.
        list(&snapshot, caller, &path, params)?
    } else if let Some(version) = params.number::<Version>("version")? {
        match snapshot.get(&path) {
            Some(entry) if entry.version == version => entry_response(entry),
            _ => return Err(ApiError::version_not_held(path.as_str(), version)),
        }
    } else {
        match snapshot.get(&path) {
            Some(entry) if if_none_match_hits(headers, entry.version) => {
                let mut response = StatusCode::NOT_MODIFIED.into_response();
                response
                    .headers_mut()
                    .insert(header::ETAG, etag(entry.version));
                response
            }
            Some(entry) => entry_response(entry),
            None => list(&snapshot, caller, &path, params)?,
        }
    };
    Ok(annotate(response, snapshot.revision(), stale))
}

fn annotate(mut response: Response, revision: Revision, stale: bool) -> Response {
    let headers = response.headers_mut();
    headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    if stale {
        headers.insert(STALE_HEADER, HeaderValue::from_static("true"));
    }
    response
}

fn entry_response(entry: &Entry) -> Response {
    let mut response = axum::Json(EntryBody::of(entry)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(entry.version));
    response
}

fn list(
    snapshot: &Snapshot,
    caller: &Caller,
    path: &ConfigPath,
    params: &Params,
) -> Result<Response, ApiError> {
    caller.require_some_below(path)?;
    let grants = caller.grants();
    let mut children = snapshot.children(path);
    listing::retain_visible_children(&mut children, path, grants);
    listing::check_not_empty(path, &children, params.flag("list")?)?;
    let body = ListingBody {
        path: path.as_str(),
        children,
        revision: snapshot.revision(),
        entries: params.flag("recursive")?.then(|| {
            snapshot
                .below(path)
                .filter(|e| e.path != *path && listing::listable(&e.path, grants))
                .map(|e| ListedEntry::of(e))
                .collect()
        }),
    };
    Ok(axum::Json(body).into_response())
}

async fn watch(
    edge: &Edge,
    caller: &Caller,
    path: ConfigPath,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let from = match headers.get(LAST_EVENT_ID) {
        Some(raw) => Some(
            raw.to_str()
                .ok()
                .and_then(|text| text.trim().parse::<Revision>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be a revision (an integer)")
                })?,
        ),
        None => params.number::<Revision>("from_revision")?,
    };
    let env = params
        .get("env")
        .filter(|e| !e.is_empty())
        .map(str::to_owned);
    let guard = WatchGuard::new(
        edge.clone(),
        caller.clone(),
        vec![path.clone()],
        env.clone(),
    )?;
    let spec = WatchSpec {
        prefixes: vec![path.clone()],
        env: env.clone(),
        resolve: params.flag("resolve")?,
    };
    let watcher = edge
        .hub()
        .resume(spec, from, edge.config().resume_wait)
        .await?;
    let client = clients::register(edge, caller, params.map(), &path, env)?;
    let events = guard
        .wrap(watcher.into_stream().take_until(edge.closing()))
        .map(move |message| match message {
            Ok(message) => {
                if let Some(client) = &client {
                    client.delivered(message.revision());
                }
                sse::chunk(&message)
            }
            Err(error) => sse::error_chunk(&error),
        });
    Ok(annotate(
        sse::response(events, HEARTBEAT),
        edge.holder().revision(),
        edge.holder().is_stale(),
    ))
}

/// One change as an SSE payload.
pub fn event_json(event: &Event) -> Value {
    let mut body = json!({
        "type": match event.kind {
            EventKind::Put => "update",
            EventKind::Delete => "delete",
        },
        "path": event.path.as_str(),
        "version": event.version,
        "revision": event.revision,
    });
    if let Some(new) = &event.new {
        body["value"] = new.value.to_api_value();
        body["format"] = json!(new.value.format().as_str());
    }
    if let Some(old) = &event.old {
        body["old_value"] = old.value.to_api_value();
    }
    body
}

/// `{"type": "reset", "revision", "state": [entries]}`.
#[derive(serde::Serialize)]
struct ResetBody<'a> {
    r#type: &'static str,
    revision: Revision,
    state: Vec<EntryBody<'a>>,
}

async fn healthz(State(edge): State<Edge>) -> Response {
    let holder = edge.holder();
    let upstream = holder.upstream();
    axum::Json(json!({
        "status": "ok",
        "stale": holder.is_stale(),
        "staleness_seconds": holder.staleness_seconds(),
        "revision": holder.revision(),
        // The configured upstream followed now, or the gossip peer caught up from (also in
        // `upstream`, with its id in `upstream_peer`) while every configured one is gone.
        "upstream": upstream.as_ref().map(|u| u.addr.as_str()),
        "upstream_peer": upstream.as_ref().and_then(|u| u.peer.as_deref()),
        // The upstream is a standby writer (served from while the edge looks for the leader).
        "upstream_standby": holder.upstream_is_standby(),
    }))
    .into_response()
}

async fn readyz(State(edge): State<Edge>) -> Response {
    let holder = edge.holder();
    let ready = holder.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "waiting for a snapshot" },
        "stale": holder.is_stale(),
        "revision": holder.revision(),
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(edge): State<Edge>) -> Response {
    let text = edge.metrics().render(edge.holder());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

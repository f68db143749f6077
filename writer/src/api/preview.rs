//! Impact previews: `POST /api/preview` (a batch's changes) and `?dry_run=true` on a PUT, a
//! DELETE or a batch (with `?force=true` as the write would have it) answer what the commit
//! would do, and commit nothing:
//!
//! - `would`: `commit`, or `await_approval` with the approvals a policy asks for;
//! - `changes`: per change the version it would write (refusals are the commit's own: 400, 404,
//!   412, 413, 422 with every violation);
//! - `effective`: per environment (and the base), each effective value that would change, before
//!   and after with a JSON Patch — only where the caller may read every layer;
//! - `environments`: the environments whose effective values would change;
//! - `clients`: the connected instances that would receive an event (watching a prefix of a
//!   changed path, in an environment where its effective value changes), counted by edge,
//!   environment, label and watched prefix.
//!
//! The store decides validity ([`crate::model::Configs::preview`]); the effective values come
//! from the read model (the feed's snapshot) with the changes applied to a copy of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde_json::Value;
use setpoint_core::ConfigPath;
use setpoint_core::auth::{Action, EffectiveGrants};
use setpoint_core::clients::{ClientFilter, ClientRecord};
use setpoint_core::effective_watch::covers;
use setpoint_core::env::{Chain, Environments};
use setpoint_core::resolve::{self, Effective};
use setpoint_core::snapshot::{Entry, Snapshot};

use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::config::BatchBody;
use super::openapi::errors;
use super::{AppState, input};
use crate::error::Error;
use crate::model::{Change, ChangeResult, Preview};

/// What committing a batch would do (nothing was written).
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewBody {
    /// Always true: nothing was written.
    pub dry_run: bool,
    /// `commit`, or `await_approval` when a policy governs a path.
    pub would: &'static str,
    /// The approvals the policy asks for, when `would` is `await_approval`.
    pub approvals_required: Option<u32>,
    /// The store revision the preview was planned at.
    pub revision: i64,
    /// Per change, the version it would write.
    pub changes: Vec<ChangeResult>,
    /// Each effective value that would change, per environment (`env: null`: base values);
    /// only environments whose every layer the caller may read.
    pub effective: Vec<EffectiveChange>,
    /// The environments whose effective values would change.
    pub environments: Vec<String>,
    /// The connected clients that would receive an event.
    pub clients: Reach,
}

/// One effective value, before and after.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveChange {
    pub env: Option<String>,
    pub path: String,
    /// Any JSON (a value need not be an object); null when the path held none.
    #[schema(value_type = Value)]
    pub before: Option<Value>,
    /// Any JSON; null when the path would hold none.
    #[schema(value_type = Value)]
    pub after: Option<Value>,
    /// JSON Patch (RFC 6902) from `before` to `after`.
    #[schema(value_type = Vec<Object>)]
    pub diff: Value,
}

/// Clients that would receive an event, counted.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Reach {
    pub total: u64,
    pub by_edge: BTreeMap<String, u64>,
    /// `(base)` for clients without an environment.
    pub by_env: BTreeMap<String, u64>,
    /// `key=value`.
    pub by_label: BTreeMap<String, u64>,
    pub by_prefix: BTreeMap<String, u64>,
}

/// Preview a batch: what committing it would do, without committing.
#[utoipa::path(post, path = "/api/preview", tag = "config", operation_id = "preview", request_body = BatchBody,
    responses((status = 200, description = "What the commit would do; nothing written", body = PreviewBody),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::PreconditionFailed,
              errors::TooLarge, errors::Unprocessable, errors::Unavailable))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PreviewBody>, Error> {
    let body: BatchBody = input::json_body(body)?;
    let changes = super::config::batch_changes(&state, &caller, body).await?;
    answer(&state, &caller, &changes, false).await
}

/// The preview of `changes` (already checked against the caller's write and delete rights).
pub async fn answer(
    state: &AppState,
    caller: &Caller,
    changes: &[Change],
    force: bool,
) -> Result<Json<PreviewBody>, Error> {
    let preview = state.configs.preview(changes, &caller.actor, force).await?;
    let before = state.feed.snapshot();
    let after = applied(&before, changes, &preview);
    let bases: BTreeSet<ConfigPath> = changes.iter().map(|c| base_of(c.path())).collect();
    let environments = Environments::from_snapshot(&after);
    let mut views: Vec<(Option<String>, Chain)> = vec![(None, Chain::base())];
    for name in environments.names() {
        if let Ok(chain) = environments.chain(name) {
            views.push((Some(name.to_owned()), chain));
        }
    }
    let mut effective = Vec::new();
    let mut changed: BTreeMap<Option<String>, BTreeSet<ConfigPath>> = BTreeMap::new();
    for (env, chain) in &views {
        let grants = EffectiveGrants::new(&caller.principal.grants, chain);
        for base in &bases {
            let old = resolve::effective(&before, chain, base);
            let new = resolve::effective(&after, chain, base);
            if old.as_ref().map(|e| &e.value) == new.as_ref().map(|e| &e.value) {
                continue;
            }
            changed.entry(env.clone()).or_default().insert(base.clone());
            if grants.allows(base, Action::Read) {
                effective.push(EffectiveChange {
                    env: env.clone(),
                    path: base.as_str().to_owned(),
                    before: old.as_ref().map(Effective::api_value),
                    after: new.as_ref().map(Effective::api_value),
                    diff: setpoint_core::diff::json_patch(
                        old.as_ref().map_or(&Value::Null, |e| &e.value),
                        new.as_ref().map_or(&Value::Null, |e| &e.value),
                    ),
                });
            }
        }
    }
    let clients = match &state.replication {
        Some(replication) => replication.clients(|fleet| {
            let connected = ClientFilter {
                connected: Some(true),
                ..ClientFilter::default()
            };
            reached(&fleet.list(&connected), &changed)
        }),
        None => reached(&[], &changed),
    };
    let would = if preview.approvals_required.is_some() {
        "await_approval"
    } else {
        "commit"
    };
    Ok(Json(PreviewBody {
        dry_run: true,
        would,
        approvals_required: preview.approvals_required,
        revision: preview.revision,
        changes: preview.results,
        effective,
        environments: changed.keys().flatten().cloned().collect(),
        clients,
    }))
}

/// The base path an override (`/env/{e}/…`) layers, or the path itself.
fn base_of(path: &ConfigPath) -> ConfigPath {
    setpoint_core::env::split_override(path).map_or_else(|| path.clone(), |(_, base)| base)
}

/// `before` with the changes applied as the commit would write them.
fn applied(before: &Snapshot, changes: &[Change], preview: &Preview) -> Snapshot {
    let mut after = before.clone();
    for (index, change) in changes.iter().enumerate() {
        let version = preview.results.get(index).map_or(0, |r| r.version);
        after = match change {
            Change::Put(put) => after.with_entry(Arc::new(Entry {
                path: put.path.clone(),
                value: put.value.clone(),
                version,
                revision: preview.revision + 1,
                updated_at: String::new(),
            })),
            Change::Delete { path, .. } => after.without(path),
        };
    }
    after
}

/// Counts the connected clients that would get an event: one watching a prefix of a path whose
/// effective value changes in its environment (the base for a client without one).
fn reached(
    clients: &[&ClientRecord],
    changed: &BTreeMap<Option<String>, BTreeSet<ConfigPath>>,
) -> Reach {
    let mut reach = Reach::default();
    for client in clients {
        let Some(paths) = changed.get(&client.env) else {
            continue;
        };
        let prefixes: Vec<&str> = client
            .prefixes
            .iter()
            .filter(|prefix| {
                ConfigPath::parse(prefix)
                    .is_ok_and(|prefix| paths.iter().any(|p| covers(&prefix, p)))
            })
            .map(String::as_str)
            .collect();
        if prefixes.is_empty() {
            continue;
        }
        reach.total += 1;
        *reach.by_edge.entry(client.edge.clone()).or_default() += 1;
        let env = client.env.as_deref().unwrap_or("(base)");
        *reach.by_env.entry(env.to_owned()).or_default() += 1;
        for (key, value) in &client.labels {
            *reach.by_label.entry(format!("{key}={value}")).or_default() += 1;
        }
        for prefix in prefixes {
            *reach.by_prefix.entry(prefix.to_owned()).or_default() += 1;
        }
    }
    reach
}

//! Impact previews: `POST /api/preview` (a batch's changes) and `?dry_run=true` on a PUT, a
//! DELETE or a batch answer what the commit would do, and commit nothing:
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
use serde_json::{Value, json};
use setpoint_core::ConfigPath;
use setpoint_core::auth::{Action, EffectiveGrants};
use setpoint_core::clients::{ClientFilter, ClientRecord};
use setpoint_core::effective_watch::covers;
use setpoint_core::env::{Chain, Environments};
use setpoint_core::resolve::{self, Effective};
use setpoint_core::snapshot::{Entry, Snapshot};

use super::auth::Caller;
use super::config::BatchBody;
use super::{AppState, input};
use crate::error::Error;
use crate::model::{Change, Preview};

/// Preview a batch: what committing it would do, without committing.
#[utoipa::path(post, path = "/api/preview", tag = "config", request_body = BatchBody,
    responses((status = 200, description = "{would, approvals_required?, revision, changes, effective, environments, clients}: nothing written"),
              (status = 400, description = "A malformed change (details.index names it)"),
              (status = 404, description = "A delete of a path without a value"),
              (status = 412, description = "A per-change if_match failed"),
              (status = 422, description = "Violations in any change")))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let body: BatchBody = input::json_body(body)?;
    let changes = super::config::batch_changes(&state, &caller, body).await?;
    answer(&state, &caller, &changes).await
}

/// The preview of `changes` (already checked against the caller's write and delete rights).
pub async fn answer(
    state: &AppState,
    caller: &Caller,
    changes: &[Change],
) -> Result<Json<Value>, Error> {
    let preview = state.configs.preview(changes, &caller.actor).await?;
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
                effective.push(json!({
                    "env": env,
                    "path": base.as_str(),
                    "before": old.as_ref().map(Effective::api_value),
                    "after": new.as_ref().map(Effective::api_value),
                    "diff": setpoint_core::diff::json_patch(
                        old.as_ref().map_or(&Value::Null, |e| &e.value),
                        new.as_ref().map_or(&Value::Null, |e| &e.value),
                    ),
                }));
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
    Ok(Json(json!({
        "dry_run": true,
        "would": would,
        "approvals_required": preview.approvals_required,
        "revision": preview.revision,
        "changes": preview.results,
        "effective": effective,
        "environments": changed.keys().flatten().collect::<Vec<_>>(),
        "clients": clients,
    })))
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
) -> Value {
    let mut total = 0;
    let mut by_edge: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_env: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_prefix: BTreeMap<&str, u64> = BTreeMap::new();
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
        total += 1;
        *by_edge.entry(client.edge.as_str()).or_default() += 1;
        *by_env
            .entry(client.env.as_deref().unwrap_or("(base)"))
            .or_default() += 1;
        for (key, value) in &client.labels {
            *by_label.entry(format!("{key}={value}")).or_default() += 1;
        }
        for prefix in prefixes {
            *by_prefix.entry(prefix).or_default() += 1;
        }
    }
    json!({
        "total": total,
        "by_edge": by_edge,
        "by_env": by_env,
        "by_label": by_label,
        "by_prefix": by_prefix,
    })
}

//! `/api/policies/{prefix}` and `/api/changes`: the approval workflow.
//!
//! A write under a prefix whose policy requires approvals answers 202 with a change request
//! (see [`gate`]); approvers (`approve` on every path, never the author) approve or reject it;
//! the author (or an admin) may cancel it; the last approval commits it as one ordinary
//! versioned change, made against the versions it was requested on (409 when a path moved on).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use setpoint_core::ConfigPath;
use setpoint_core::auth::Action;

use super::AppState;
use super::auth::Caller;
use super::input;
use crate::error::{Error, ErrorCode};
use crate::model::accounts::unix_now;
use crate::model::approvals::{self, ChangeRequest, Policy, Status};
use crate::model::{Actor, Change, Precondition};

fn parse_prefix(raw: &str) -> Result<ConfigPath, Error> {
    if raw.trim_matches('/').is_empty() {
        Ok(ConfigPath::root())
    } else {
        Ok(ConfigPath::parse(raw)?)
    }
}

/// The status as seen now: a pending request past its expiry is expired.
fn view(mut request: ChangeRequest) -> ChangeRequest {
    if request.status == Status::Pending && unix_now() >= request.expires_at {
        request.status = Status::Expired;
    }
    request
}

fn request_json(request: &ChangeRequest) -> Value {
    serde_json::to_value(request).unwrap_or_default()
}

/// Called by the write handlers before they commit: when a policy requires approvals for any
/// of the paths, stores a change request and answers 202 instead.
pub async fn gate(
    state: &AppState,
    caller: &Caller,
    raw: Vec<Value>,
    parsed: &[Change],
) -> Result<Option<Response>, Error> {
    let _ = state
        .feed
        .wait_for(
            state.configs.last_commit(),
            std::time::Duration::from_secs(3),
        )
        .await;
    let snapshot = state.feed.snapshot();
    let policy = parsed
        .iter()
        .filter_map(|change| approvals::policy_for(&snapshot, change.path()))
        .max_by_key(|p| p.approvals_required);
    let Some(policy) = policy.filter(|p| p.approvals_required > 0) else {
        return Ok(None);
    };
    let request = state
        .configs
        .create_change_request(&caller.actor, &policy, raw, parsed)
        .await?;
    Ok(Some(
        (
            StatusCode::ACCEPTED,
            Json(json!({ "change": request_json(&request) })),
        )
            .into_response(),
    ))
}

/// Set the approval policy of a prefix.
#[utoipa::path(put, path = "/api/policies/{prefix}", tag = "approvals",
    params(("prefix" = String, Path, description = "Config prefix")),
    request_body = Policy,
    responses((status = 200, description = "{prefix, revision}"), (status = 403, description = "Needs admin on the prefix")))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let prefix = parse_prefix(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let policy: Policy = input::json_body(body)?;
    let revision = state
        .configs
        .put_policy(&prefix, &policy, &caller.actor)
        .await?;
    Ok(Json(
        json!({ "prefix": prefix.as_str(), "policy": policy, "revision": revision }),
    ))
}

#[utoipa::path(delete, path = "/api/policies/{prefix}", tag = "approvals",
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "{prefix, revision}"), (status = 404, description = "No policy there")))]
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Error> {
    let prefix = parse_prefix(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let revision = state.configs.delete_policy(&prefix, &caller.actor).await?;
    Ok(Json(
        json!({ "prefix": prefix.as_str(), "revision": revision }),
    ))
}

/// Change requests the caller may read (`?status=pending|committed|rejected|cancelled|expired|failed`).
#[utoipa::path(get, path = "/api/changes", tag = "approvals",
    params(("status" = Option<String>, Query, description = "Only this status")),
    responses((status = 200, description = "{changes: [...]}")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Error> {
    let status = query
        .get("status")
        .map(|raw| {
            Status::parse(raw).ok_or_else(|| {
                Error::bad_request(format!(
                    "status={raw:?} is not pending, committed, rejected, cancelled, expired or failed"
                ))
            })
        })
        .transpose()?;
    let all = state.configs.change_requests(None).await?;
    let grants = &caller.principal.grants;
    let visible: Vec<Value> = all
        .into_iter()
        .map(view)
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| {
            r.paths()
                .all(|p| ConfigPath::parse(p).is_ok_and(|p| grants.allows(&p, Action::Read)))
        })
        .map(|r| request_json(&r))
        .collect();
    Ok(Json(json!({ "changes": visible })))
}

#[utoipa::path(get, path = "/api/changes/{id}", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The change request"), (status = 404, description = "No such request")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let (request, _) = state.configs.change_request(&id).await?;
    for path in request.paths() {
        caller
            .require(&state, &ConfigPath::parse(path)?, Action::Read)
            .await?;
    }
    Ok(Json(request_json(&view(request))))
}

/// Loads a pending request for a decision; an expired one is stored as such and refused.
async fn pending(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(ChangeRequest, u64), Error> {
    let (mut request, version) = state.configs.change_request(id).await?;
    if request.status == Status::Pending && unix_now() >= request.expires_at {
        request.status = Status::Expired;
        state
            .configs
            .update_change_request(&request, version, &caller.actor)
            .await?;
    }
    if request.status != Status::Pending {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "change request {id} is {}, not pending",
                serde_json::to_value(request.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok((request, version))
}

async fn require_approver(
    state: &AppState,
    caller: &Caller,
    request: &ChangeRequest,
) -> Result<(), Error> {
    for path in request.paths() {
        caller
            .require(state, &ConfigPath::parse(path)?, Action::Approve)
            .await?;
    }
    if Some(&request.author) == caller.actor.name.as_ref() {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "the author of a change request cannot approve or reject it",
        ));
    }
    Ok(())
}

/// Approve; the last approval commits the change.
#[utoipa::path(post, path = "/api/changes/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The request (committed on the last approval)"),
              (status = 403, description = "No approve permission, or the author"),
              (status = 409, description = "Not pending, already approved by this account, or a path moved on")))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let _serialized = state.approvals_lock.lock().await;
    let (mut request, version) = pending(&state, &caller, &id).await?;
    require_approver(&state, &caller, &request).await?;
    let approver = caller.actor.name.clone().unwrap_or_default();
    if request.approvals.contains(&approver) {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!("{approver} already approved change request {id}"),
        ));
    }
    request.approvals.push(approver);
    if (request.approvals.len() as u32) < request.approvals_required {
        state
            .configs
            .update_change_request(&request, version, &caller.actor)
            .await?;
        return Ok(Json(request_json(&request)).into_response());
    }
    // The last approval: commit as the author, against the versions the request was made on.
    let outcome = commit_request(&state, &caller, &request).await;
    request.decided_by = caller.actor.name.clone();
    let failure = match outcome {
        Ok(revision) => {
            request.status = Status::Committed;
            request.revision = Some(revision);
            None
        }
        Err(error) => {
            request.status = Status::Failed;
            request.error = Some(error.message.clone());
            Some(error)
        }
    };
    state
        .configs
        .update_change_request(&request, version, &caller.actor)
        .await?;
    match failure {
        None => Ok(Json(request_json(&request)).into_response()),
        Some(error) => Err(error),
    }
}

async fn commit_request(
    state: &AppState,
    caller: &Caller,
    request: &ChangeRequest,
) -> Result<i64, Error> {
    let mut changes = Vec::with_capacity(request.changes.len());
    for raw in &request.changes {
        let parsed: super::config::BatchChange = serde_json::from_value(raw.clone())
            .map_err(|e| Error::internal(format!("stored change is malformed: {e}")))?;
        let mut change = super::config::batch_change(parsed)?;
        let base = request
            .base_versions
            .get(change.path().as_str())
            .copied()
            .unwrap_or(0);
        let slot = match &mut change {
            Change::Put(put) => &mut put.if_match,
            Change::Delete { if_match, .. } => if_match,
        };
        if slot.is_none() {
            *slot = Some(Precondition::Version(base));
        }
        changes.push(change);
    }
    let actor = Actor {
        name: Some(request.author.clone()),
        request_id: caller.actor.request_id.clone(),
        source: caller.actor.source.clone(),
    };
    state
        .configs
        .commit(changes, &actor)
        .await
        .map(|committed| committed.revision)
        .map_err(|error| {
            if error.code == ErrorCode::PreconditionFailed {
                Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "a path of change request {} changed since it was requested: {}",
                        request.id, error.message
                    ),
                )
            } else {
                error
            }
        })
}

#[utoipa::path(post, path = "/api/changes/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The request, rejected")))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let _serialized = state.approvals_lock.lock().await;
    let (mut request, version) = pending(&state, &caller, &id).await?;
    require_approver(&state, &caller, &request).await?;
    request.status = Status::Rejected;
    request.decided_by = caller.actor.name.clone();
    state
        .configs
        .update_change_request(&request, version, &caller.actor)
        .await?;
    Ok(Json(request_json(&request)))
}

#[utoipa::path(post, path = "/api/changes/{id}/cancel", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The request, cancelled"), (status = 403, description = "Neither the author nor an admin")))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let _serialized = state.approvals_lock.lock().await;
    let (mut request, version) = pending(&state, &caller, &id).await?;
    if Some(&request.author) != caller.actor.name.as_ref() {
        caller
            .require(&state, &ConfigPath::root(), Action::Admin)
            .await?;
    }
    request.status = Status::Cancelled;
    request.decided_by = caller.actor.name.clone();
    state
        .configs
        .update_change_request(&request, version, &caller.actor)
        .await?;
    Ok(Json(request_json(&request)))
}

//! `/api/policies/{prefix}` and `/api/changes`: the approval workflow.
//!
//! A write under a prefix whose policy requires approvals answers 202 with a change request
//! (the model decides: [`crate::model::Configs::submit`]); approvers (`approve` on every path, never the author) approve or reject it;
//! the author (or an admin) may cancel it; the last approval commits it as one ordinary
//! versioned change, made against the versions it was requested on (409 when a path moved on).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use setpoint_core::ConfigPath;
use setpoint_core::auth::Action;
use setpoint_serving::params::Path;

use super::AppState;
use super::auth::Caller;
use super::input;
use super::openapi::errors;
use crate::error::Error;
use crate::model::approvals::{ChangeRequest, Decision, Policy, Status};

fn parse_prefix(raw: &str) -> Result<ConfigPath, Error> {
    if raw.trim_matches('/').is_empty() {
        Ok(ConfigPath::root())
    } else {
        Ok(ConfigPath::parse(raw)?)
    }
}

/// The answer to a write that became a change request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeAccepted<'a> {
    pub change: &'a ChangeRequest,
}

/// A policy set: the prefix, the policy and the revision of the commit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyWritten<'a> {
    pub prefix: &'a str,
    pub policy: &'a Policy,
    pub revision: i64,
}

/// A policy removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyDeleted<'a> {
    pub prefix: &'a str,
    pub revision: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeList {
    pub changes: Vec<ChangeRequest>,
}

/// The answer to a write that became a change request: 202 and the request.
pub fn accepted(request: &ChangeRequest) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(ChangeAccepted { change: request }),
    )
        .into_response()
}

/// Set the approval policy of a prefix.
#[utoipa::path(put, path = "/api/policies/{prefix}", tag = "approvals",
    params(("prefix" = String, Path, description = "Config prefix")),
    request_body = Policy,
    responses((status = 200, description = "Set", body = PolicyWritten),
              errors::BadRequest, errors::Forbidden, errors::Conflict, errors::Unavailable))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let prefix = parse_prefix(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let policy: Policy = input::json_body(body)?;
    let revision = state
        .configs
        .put_policy(&prefix, &policy, &caller.actor)
        .await?;
    Ok(Json(PolicyWritten {
        prefix: prefix.as_str(),
        policy: &policy,
        revision,
    })
    .into_response())
}

#[utoipa::path(delete, path = "/api/policies/{prefix}", tag = "approvals",
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "Removed", body = PolicyDeleted),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let prefix = parse_prefix(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let revision = state.configs.delete_policy(&prefix, &caller.actor).await?;
    Ok(Json(PolicyDeleted {
        prefix: prefix.as_str(),
        revision,
    })
    .into_response())
}

/// Change requests the caller may read (`?status=pending|committed|rejected|cancelled|expired|failed`).
#[utoipa::path(get, path = "/api/changes", tag = "approvals",
    params(("status" = Option<Status>, Query, description = "Only this status")),
    responses((status = 200, description = "The change requests on paths the caller may read", body = ChangeList),
              errors::BadRequest, errors::Unavailable))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
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
    let all = state.configs.change_requests(status).await?;
    let grants = &caller.principal.grants;
    let changes: Vec<ChangeRequest> = all
        .into_iter()
        .filter(|r| {
            r.paths()
                .all(|p| ConfigPath::parse(p).is_ok_and(|p| grants.allows(&p, Action::Read)))
        })
        .collect();
    Ok(Json(ChangeList { changes }).into_response())
}

#[utoipa::path(get, path = "/api/changes/{id}", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The change request", body = ChangeRequest),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, Error> {
    let request = state.configs.change_request_now(&id).await?;
    for path in request.paths() {
        caller
            .require(&state, &ConfigPath::parse(path)?, Action::Read)
            .await?;
    }
    Ok(Json(request))
}

/// Checks the caller's rights for `decision` on the request's paths (403 and an audit record
/// otherwise); the request's own rules (pending, author, one approval each) are the model's.
async fn require_decider(
    state: &AppState,
    caller: &Caller,
    id: &str,
    decision: Decision,
) -> Result<(), Error> {
    let (request, _) = state.configs.change_request(id).await?;
    match decision {
        Decision::Approve | Decision::Reject => {
            for path in request.paths() {
                caller
                    .require(state, &ConfigPath::parse(path)?, Action::Approve)
                    .await?;
            }
        }
        Decision::Cancel => {
            if Some(&request.author) != caller.actor.name.as_ref() {
                caller
                    .require(state, &ConfigPath::root(), Action::Admin)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    decision: Decision,
) -> Result<Json<ChangeRequest>, Error> {
    require_decider(&state, &caller, &id, decision).await?;
    let request = state.configs.decide(&id, decision, &caller.actor).await?;
    Ok(Json(request))
}

/// Approve; the last approval commits the change.
#[utoipa::path(post, path = "/api/changes/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The request (committed on the last approval)", body = ChangeRequest),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::PreconditionFailed, errors::TooLarge, errors::Unprocessable, errors::Unavailable))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, Error> {
    decide(state, caller, id, Decision::Approve).await
}

#[utoipa::path(post, path = "/api/changes/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The request, rejected", body = ChangeRequest),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, Error> {
    decide(state, caller, id, Decision::Reject).await
}

#[utoipa::path(post, path = "/api/changes/{id}/cancel", tag = "approvals",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "The request, cancelled", body = ChangeRequest),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, Error> {
    decide(state, caller, id, Decision::Cancel).await
}

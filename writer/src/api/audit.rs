//! `/api/audit`: the audit log, paged and filtered, and `/api/audit/verify`, which checks the
//! hash chain against the stored records. Admin only.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use setpoint_core::ConfigPath;
use setpoint_core::auth::Action;

use super::AppState;
use super::auth::Caller;
use super::openapi::errors;
use crate::audit::{Filter, Outcome};
use crate::error::Error;

fn nanos(name: &str, raw: &str) -> Result<i128, Error> {
    if let Ok(seconds) = raw.parse::<i64>() {
        return Ok(i128::from(seconds) * 1_000_000_000);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .map_err(|_| {
            Error::bad_request(format!(
                "{name}={raw:?} is neither RFC 3339 nor unix seconds"
            ))
        })
}

/// One page of audit records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage<'a> {
    /// Oldest first.
    #[schema(value_type = Vec<AuditRecordBody>)]
    pub records: &'a [Value],
    /// Pass as `after` for the next page; null at the end.
    pub next: Option<&'a str>,
}

/// One record as a page shows it: the stored record and its id (what `after` takes). The model
/// renders it (`crate::audit::AuditLog::query`); this is its documentation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AuditRecordBody {
    pub id: String,
    #[serde(flatten)]
    pub record: crate::audit::Record,
}

/// What checking the hash chain found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyBody<'a> {
    pub ok: bool,
    /// Seals checked.
    pub sealed: u64,
    /// `{seq?, key?, message}` each.
    #[schema(value_type = Vec<Object>)]
    pub problems: &'a [setpoint_core::audit::Problem],
}

/// Audit records in time order: `?path=&actor=&action=&outcome=&since=&until=&limit=&after=`.
#[utoipa::path(get, path = "/api/audit", tag = "audit",
    params(("path" = Option<String>, Query, description = "At this path or below"),
           ("actor" = Option<String>, Query, description = "Account id"),
           ("action" = Option<String>, Query, description = "config.put, config.delete, config.batch, schema.put, environment.put, account.put, access.denied, auth.refused, …"),
           ("outcome" = Option<crate::audit::Outcome>, Query, description = "ok, denied, failed"),
           ("since" = Option<String>, Query, description = "RFC 3339 or unix seconds, inclusive"),
           ("until" = Option<String>, Query, description = "RFC 3339 or unix seconds, exclusive"),
           ("limit" = Option<usize>, Query, description = "Page size, default 100, at most 1000"),
           ("after" = Option<String>, Query, description = "`next` of the previous page")),
    responses((status = 200, description = "A page of records", body = AuditPage),
              errors::BadRequest, errors::Forbidden, errors::Unavailable))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
    caller
        .require(&state, &ConfigPath::root(), Action::Admin)
        .await?;
    let get = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let outcome = get("outcome")
        .map(|raw| match raw {
            "ok" => Ok(Outcome::Ok),
            "denied" => Ok(Outcome::Denied),
            "failed" => Ok(Outcome::Failed),
            other => Err(Error::bad_request(format!(
                "outcome={other:?} is not ok, denied or failed"
            ))),
        })
        .transpose()?;
    let filter = Filter {
        path: get("path").map(str::to_owned),
        actor: get("actor").map(str::to_owned),
        action: get("action").map(str::to_owned),
        outcome,
        since: get("since").map(|v| nanos("since", v)).transpose()?,
        until: get("until").map(|v| nanos("until", v)).transpose()?,
        after: get("after").map(str::to_owned),
        limit: get("limit")
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| Error::bad_request("limit must be a number"))
            })
            .transpose()?
            .unwrap_or(100),
    };
    let page = state.configs.audit_query(&filter).await?;
    Ok(Json(AuditPage {
        records: &page.records,
        next: page.next.as_deref(),
    })
    .into_response())
}

/// Checks the hash chain: every sealed record unchanged, none removed or inserted.
#[utoipa::path(get, path = "/api/audit/verify", tag = "audit",
    responses((status = 200, description = "What the check found", body = VerifyBody),
              errors::Forbidden, errors::Unavailable))]
pub async fn verify(State(state): State<AppState>, caller: Caller) -> Result<Response, Error> {
    caller
        .require(&state, &ConfigPath::root(), Action::Admin)
        .await?;
    let result = state.configs.audit_verify().await;
    state.metrics.audit_verified(&result);
    let report = result?;
    Ok(Json(VerifyBody {
        ok: report.ok,
        sealed: report.sealed,
        problems: &report.problems,
    })
    .into_response())
}

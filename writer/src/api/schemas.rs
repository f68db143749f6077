//! `/api/schemas/{prefix}`: JSON Schemas that govern every config at or below a prefix.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use setpoint_core::ConfigPath;
use setpoint_serving::params::Path;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::input;
use super::openapi::errors;
use crate::error::Error;
use crate::model::schemas::StoredSchema;
use setpoint_core::auth::Action;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaBody {
    /// JSON Schema 2020-12; formats are checked.
    #[schema(value_type = Value)]
    pub schema: Value,
}

/// A prefix schema as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaView<'a> {
    pub prefix: &'a str,
    #[schema(value_type = Value)]
    pub schema: &'a Value,
    /// RFC 3339.
    pub updated_at: &'a str,
    pub updated_by: Option<&'a str>,
    pub revision: i64,
}

impl<'a> SchemaView<'a> {
    fn of(stored: &'a StoredSchema) -> SchemaView<'a> {
        SchemaView {
            prefix: stored.prefix.as_str(),
            schema: &stored.schema,
            updated_at: &stored.meta.updated_at,
            updated_by: stored.meta.updated_by.as_deref(),
            revision: stored.revision,
        }
    }
}

/// Every prefix schema the caller can read something under.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaList<'a> {
    pub schemas: Vec<SchemaView<'a>>,
}

/// A schema set or removed: the prefix and the revision of the commit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaWritten<'a> {
    pub prefix: &'a str,
    pub revision: i64,
}

/// Every prefix schema.
#[utoipa::path(get, path = "/api/schemas", tag = "schemas",
    responses((status = 200, description = "Every schema on a prefix the caller can read under", body = SchemaList),
              errors::Unavailable))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, Error> {
    let mut all = state.configs.list_schemas().await?;
    all.retain(|stored| {
        caller
            .principal
            .grants
            .can_read_somewhere_below(&stored.prefix)
    });
    Ok(Json(SchemaList {
        schemas: all.iter().map(SchemaView::of).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/schemas/{prefix}", tag = "schemas",
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "The schema", body = SchemaView),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let prefix = ConfigPath::parse(&raw)?;
    caller.require(&state, &prefix, Action::Read).await?;
    let stored = state
        .configs
        .get_schema(&prefix)
        .await?
        .ok_or_else(|| Error::not_found(format!("no schema on {prefix}")))?;
    Ok(Json(SchemaView::of(&stored)).into_response())
}

/// Set the schema for a prefix. Every live config it governs must already satisfy it.
#[utoipa::path(put, path = "/api/schemas/{prefix}", tag = "schemas", request_body = SchemaBody,
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "Set", body = SchemaWritten),
              errors::BadRequest, errors::Forbidden, errors::Conflict, errors::TooLarge,
              errors::Unprocessable, errors::Unavailable))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let prefix = ConfigPath::parse(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let body: SchemaBody = input::json_body(body)?;
    let revision = state
        .configs
        .put_schema(&prefix, body.schema, &caller.actor)
        .await?;
    Ok(Json(SchemaWritten {
        prefix: prefix.as_str(),
        revision,
    })
    .into_response())
}

#[utoipa::path(delete, path = "/api/schemas/{prefix}", tag = "schemas",
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "Removed", body = SchemaWritten),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let prefix = ConfigPath::parse(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let revision = state.configs.delete_schema(&prefix, &caller.actor).await?;
    Ok(Json(SchemaWritten {
        prefix: prefix.as_str(),
        revision,
    })
    .into_response())
}

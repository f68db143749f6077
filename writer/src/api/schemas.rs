//! `/api/schemas/{prefix}`: JSON Schemas that govern every config at or below a prefix.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use setpoint_core::ConfigPath;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::input;
use crate::error::Error;
use crate::model::schemas::schema_json;
use setpoint_core::auth::Action;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaBody {
    /// JSON Schema 2020-12; formats are checked.
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// Every prefix schema.
#[utoipa::path(get, path = "/api/schemas", tag = "schemas", responses((status = 200, description = "{schemas: [...]}")))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    let mut all = state.configs.list_schemas().await?;
    all.retain(|stored| {
        caller
            .principal
            .grants
            .can_read_somewhere_below(&stored.prefix)
    });
    Ok(Json(
        json!({ "schemas": all.iter().map(schema_json).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(get, path = "/api/schemas/{prefix}", tag = "schemas",
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "The schema"), (status = 404, description = "No schema on this prefix")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Error> {
    let prefix = ConfigPath::parse(&raw)?;
    caller.require(&state, &prefix, Action::Read).await?;
    let stored = state
        .configs
        .get_schema(&prefix)
        .await?
        .ok_or_else(|| Error::not_found(format!("no schema on {prefix}")))?;
    Ok(Json(schema_json(&stored)))
}

/// Set the schema for a prefix. Every live config it governs must already satisfy it.
#[utoipa::path(put, path = "/api/schemas/{prefix}", tag = "schemas", request_body = SchemaBody,
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "{prefix, revision}"),
              (status = 400, description = "Not a valid JSON Schema"),
              (status = 422, description = "Existing configs violate it; every violation listed")))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let prefix = ConfigPath::parse(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let body: SchemaBody = input::json_body(body)?;
    let revision = state
        .configs
        .put_schema(&prefix, body.schema, &caller.actor)
        .await?;
    Ok(Json(
        json!({ "prefix": prefix.as_str(), "revision": revision }),
    ))
}

#[utoipa::path(delete, path = "/api/schemas/{prefix}", tag = "schemas",
    params(("prefix" = String, Path, description = "Config prefix")),
    responses((status = 200, description = "{prefix, revision}"), (status = 404, description = "No schema on this prefix")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Error> {
    let prefix = ConfigPath::parse(&raw)?;
    caller.require(&state, &prefix, Action::Admin).await?;
    let revision = state.configs.delete_schema(&prefix, &caller.actor).await?;
    Ok(Json(
        json!({ "prefix": prefix.as_str(), "revision": revision }),
    ))
}

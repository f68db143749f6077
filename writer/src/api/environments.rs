//! `/api/environments/{name}`: environments, their parents and variables.
//!
//! A definition is stored as the entry `/env/{name}` (see [`crate::model::environments`]), so
//! `GET /api/config/env/{name}/history` shows its versions too.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use setpoint_core::env::Environment;

use super::AppState;
use super::auth::Caller;
use super::input;
use crate::error::Error;
use crate::model::environments::EnvironmentView;
use setpoint_core::auth::Action;

/// The body of `PUT /api/environments/{name}` (documentation; parsed as
/// [`setpoint_core::env::Environment`]).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EnvironmentBody {
    /// The environment this one inherits overrides and variables from.
    pub parent: Option<String>,
    pub description: Option<String>,
    /// `${NAME}` values; names are `[A-Za-z_][A-Za-z0-9_]*`.
    pub variables: Option<std::collections::BTreeMap<String, String>>,
}

fn view_json(view: &EnvironmentView) -> Value {
    json!({
        "name": view.name,
        "parent": view.environment.parent,
        "description": view.environment.description,
        "variables": view.environment.variables,
        "version": view.version,
        "revision": view.revision,
        "updated_at": view.updated_at,
    })
}

/// Every environment.
#[utoipa::path(get, path = "/api/environments", tag = "environments",
    responses((status = 200, description = "{environments: [{name, parent, description, variables, version, revision, updated_at}]}")))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>, Error> {
    let all = state.configs.environments().await?;
    Ok(Json(
        json!({ "environments": all.iter().map(view_json).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(get, path = "/api/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses((status = 200, description = "The environment"), (status = 404, description = "No such environment")))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, Error> {
    let view = state
        .configs
        .environment(&name)
        .await?
        .ok_or_else(|| Error::not_found(format!("environment {name} does not exist")))?;
    Ok(Json(view_json(&view)))
}

/// Create or replace an environment: `{"parent"?, "description"?, "variables"?: {NAME: value}}`.
#[utoipa::path(put, path = "/api/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    request_body = EnvironmentBody,
    responses((status = 200, description = "{name, version, revision}"),
              (status = 400, description = "Malformed body or name"),
              (status = 422, description = "Unknown parent, a cycle, or an invalid variable name")))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let definition = setpoint_core::env::definition_path(&name)?;
    caller.require(&state, &definition, Action::Admin).await?;
    let body: Value = input::json_body(body)?;
    let environment = Environment::from_json(&body)?;
    // One environment update at a time: two concurrent updates could each pass the cycle
    // check and form a cycle together.
    let committed = state
        .configs
        .put_environment(&name, environment, &caller.actor)
        .await?;
    let version = committed.results.first().map_or(0, |r| r.version);
    Ok(Json(
        json!({ "name": name, "version": version, "revision": committed.revision }),
    ))
}

/// Delete an environment no other inherits from and that holds no overrides.
#[utoipa::path(delete, path = "/api/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses((status = 200, description = "{name, revision}"),
              (status = 404, description = "No such environment"),
              (status = 409, description = "Other environments inherit from it, or it holds overrides")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, Error> {
    let definition = setpoint_core::env::definition_path(&name)?;
    caller.require(&state, &definition, Action::Admin).await?;
    let committed = state
        .configs
        .delete_environment(&name, &caller.actor)
        .await?;
    Ok(Json(
        json!({ "name": name, "revision": committed.revision }),
    ))
}

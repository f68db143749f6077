//! `/api/environments/{name}`: environments, their parents and variables.
//!
//! A definition is stored as the entry `/env/{name}` (see [`crate::model::environments`]), so
//! `GET /api/config/env/{name}/history` shows its versions too.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use setpoint_core::env::Environment;
use setpoint_serving::params::Path;

use super::AppState;
use super::auth::Caller;
use super::input;
use super::openapi::errors;
use crate::error::Error;
use crate::model::environments::EnvironmentView;
use setpoint_core::auth::Action;

/// The body of `PUT /api/environments/{name}` (documentation; parsed as
/// [`setpoint_core::env::Environment`]).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EnvironmentDefinition {
    /// The environment this one inherits overrides and variables from.
    pub parent: Option<String>,
    pub description: Option<String>,
    /// `${NAME}` values; names are `[A-Za-z_][A-Za-z0-9_]*`.
    pub variables: Option<std::collections::BTreeMap<String, String>>,
}

/// An environment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentBody<'a> {
    pub name: &'a str,
    pub parent: Option<&'a str>,
    pub description: Option<&'a str>,
    pub variables: &'a std::collections::BTreeMap<String, String>,
    /// The version of its definition entry, `/env/{name}`.
    pub version: u64,
    pub revision: i64,
    /// RFC 3339.
    pub updated_at: &'a str,
}

impl<'a> EnvironmentBody<'a> {
    fn of(view: &'a EnvironmentView) -> EnvironmentBody<'a> {
        EnvironmentBody {
            name: &view.name,
            parent: view.environment.parent.as_deref(),
            description: view.environment.description.as_deref(),
            variables: &view.environment.variables,
            version: view.version,
            revision: view.revision,
            updated_at: &view.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentList<'a> {
    pub environments: Vec<EnvironmentBody<'a>>,
}

/// An environment defined, or (without `version`) deleted, by the commit at `revision`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentWritten<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub revision: i64,
}

/// Every environment.
#[utoipa::path(get, path = "/api/environments", tag = "environments",
    responses((status = 200, description = "Every environment", body = EnvironmentList),
              errors::Unavailable))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Response, Error> {
    let all = state.configs.environments().await?;
    Ok(Json(EnvironmentList {
        environments: all.iter().map(EnvironmentBody::of).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses((status = 200, description = "The environment", body = EnvironmentBody),
              errors::BadRequest, errors::NotFound, errors::Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let view = state
        .configs
        .environment(&name)
        .await?
        .ok_or_else(|| Error::not_found(format!("environment {name} does not exist")))?;
    Ok(Json(EnvironmentBody::of(&view)).into_response())
}

/// Create or replace an environment: `{"parent"?, "description"?, "variables"?: {NAME: value}}`.
#[utoipa::path(put, path = "/api/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    request_body = EnvironmentDefinition,
    responses((status = 200, description = "Defined", body = EnvironmentWritten),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::TooLarge, errors::Unprocessable, errors::Unavailable))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
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
    Ok(Json(EnvironmentWritten {
        name: &name,
        version: Some(version),
        revision: committed.revision,
    })
    .into_response())
}

/// Delete an environment no other inherits from and that holds no overrides.
#[utoipa::path(delete, path = "/api/environments/{name}", tag = "environments",
    params(("name" = String, Path, description = "Environment name")),
    responses((status = 200, description = "Deleted", body = EnvironmentWritten),
              errors::BadRequest, errors::Forbidden, errors::NotFound,
              errors::Conflict,
              errors::Unavailable))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let definition = setpoint_core::env::definition_path(&name)?;
    caller.require(&state, &definition, Action::Admin).await?;
    let committed = state
        .configs
        .delete_environment(&name, &caller.actor)
        .await?;
    Ok(Json(EnvironmentWritten {
        name: &name,
        version: None,
        revision: committed.revision,
    })
    .into_response())
}

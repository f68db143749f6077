//! `/api/accounts`: service accounts, their API keys and grants. Admin only (`admin` on `/`).
//!
//! A key is shown exactly once, in the answer that creates it; listings show key metadata
//! (id, created, expires, revoked), never hashes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use setpoint_core::ConfigPath;
use setpoint_core::auth::{Account, Action, Grant, NewKey};
use setpoint_serving::params::Path;

use super::AppState;
use super::auth::Caller;
use super::input;
use super::openapi::errors;
use crate::error::Error;
use crate::model::accounts::unix_now;

/// Default grace period of the old keys when a key is rotated.
pub const DEFAULT_GRACE_SECS: i64 = 3_600;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// 1-63 of a-z, 0-9, `-`, `_`, `.`.
    pub id: String,
    pub description: Option<String>,
    /// `[{"prefix": "/myapp", "actions": ["read", "write"]}]`; actions: read, write, delete,
    /// secrets:read, approve, rollout, admin.
    #[schema(value_type = Vec<GrantDoc>)]
    pub grants: Vec<Grant>,
    /// The key stops working this many seconds from now.
    pub expires_in_secs: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsBody {
    #[schema(value_type = Vec<GrantDoc>)]
    pub grants: Vec<Grant>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the account's other keys keep working (default 3600 s; 0 ends them now).
    pub grace_secs: Option<i64>,
    pub expires_in_secs: Option<i64>,
}

/// A grant: `actions` on every path at or below `prefix`, unless a longer grant says otherwise
/// (the documentation of `setpoint_core::auth::Grant`).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GrantDoc {
    pub prefix: String,
    /// read, write, delete, secrets:read, approve, rollout, admin.
    pub actions: Vec<String>,
}

/// An account as the API shows it: never a key or its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountBody<'a> {
    pub id: &'a str,
    pub description: Option<&'a str>,
    #[schema(value_type = Vec<GrantDoc>)]
    pub grants: &'a [Grant],
    pub keys: Vec<KeyBody<'a>>,
    pub disabled: bool,
}

/// One key's metadata.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyBody<'a> {
    pub id: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the key is refused from then on.
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

impl<'a> AccountBody<'a> {
    fn of(account: &'a Account) -> AccountBody<'a> {
        AccountBody {
            id: &account.id,
            description: account.description.as_deref(),
            grants: &account.grants,
            keys: account
                .keys
                .iter()
                .map(|k| KeyBody {
                    id: &k.id,
                    created_at: k.created_at,
                    expires_at: k.expires_at,
                    revoked: k.revoked,
                })
                .collect(),
            disabled: account.disabled,
        }
    }
}

/// An account with a new key: the only answer that ever shows a key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountWithKey<'a> {
    #[serde(flatten)]
    pub account: AccountBody<'a>,
    /// The API key, shown this once.
    pub key: &'a str,
    pub key_id: &'a str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountList<'a> {
    pub accounts: Vec<AccountBody<'a>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountDeleted<'a> {
    pub id: &'a str,
    pub deleted: bool,
}

fn with_key<'a>(account: &'a Account, key: &'a NewKey) -> AccountWithKey<'a> {
    AccountWithKey {
        account: AccountBody::of(account),
        key: &key.token,
        key_id: &key.record.id,
    }
}

fn expiry(seconds: Option<i64>) -> Result<Option<i64>, Error> {
    match seconds {
        Some(s) if s <= 0 => Err(Error::bad_request("expires_in_secs must be positive")),
        Some(s) => Ok(Some(unix_now().saturating_add(s))),
        None => Ok(None),
    }
}

async fn require_admin(state: &AppState, caller: &Caller) -> Result<(), Error> {
    caller
        .require(state, &ConfigPath::root(), Action::Admin)
        .await
}

/// Every account (metadata only).
#[utoipa::path(get, path = "/api/accounts", tag = "accounts",
    responses((status = 200, description = "Every account", body = AccountList),
              errors::Forbidden, errors::Unavailable))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    let accounts = state.configs.accounts().await?;
    Ok(Json(AccountList {
        accounts: accounts.iter().map(AccountBody::of).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account", body = AccountBody),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    let (account, _) = state
        .configs
        .account(&id)
        .await?
        .ok_or_else(|| Error::not_found(format!("account {id} does not exist")))?;
    Ok(Json(AccountBody::of(&account)).into_response())
}

/// Create a service account; the answer holds its API key, shown this once.
#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = CreateBody,
    responses((status = 201, description = "The account with `key`", body = AccountWithKey),
              errors::BadRequest, errors::Forbidden, errors::Conflict, errors::Unavailable))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    let body: CreateBody = input::json_body(body)?;
    let (account, key) = state
        .configs
        .create_account(
            &body.id,
            body.description,
            body.grants,
            expiry(body.expires_in_secs)?,
            &caller.actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(with_key(&account, &key))).into_response())
}

/// Replace an account's grants.
#[utoipa::path(put, path = "/api/accounts/{id}/grants", tag = "accounts", request_body = GrantsBody,
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account", body = AccountBody),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn set_grants(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    let body: GrantsBody = input::json_body(body)?;
    let account = state
        .configs
        .set_grants(&id, body.grants, &caller.actor)
        .await?;
    Ok(Json(AccountBody::of(&account)).into_response())
}

/// Rotate: a new key (shown once); the other keys keep working for the grace period.
#[utoipa::path(post, path = "/api/accounts/{id}/keys", tag = "accounts", request_body = Option<RotateBody>,
    params(("id" = String, Path, description = "Account id")),
    responses((status = 201, description = "The account with the new `key`", body = AccountWithKey),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    let body: RotateBody = match body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => RotateBody::default(),
        other => input::json_body(other)?,
    };
    let (account, key) = state
        .configs
        .rotate_key(
            &id,
            body.grace_secs.unwrap_or(DEFAULT_GRACE_SECS),
            expiry(body.expires_in_secs)?,
            &caller.actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(with_key(&account, &key))).into_response())
}

/// Revoke one key at once (on the writer now, on every edge as soon as the change reaches it).
#[utoipa::path(delete, path = "/api/accounts/{id}/keys/{key}", tag = "accounts",
    params(("id" = String, Path, description = "Account id"), ("key" = String, Path, description = "Key id")),
    responses((status = 200, description = "The account", body = AccountBody),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    let account = state.configs.revoke_key(&id, &key, &caller.actor).await?;
    Ok(Json(AccountBody::of(&account)).into_response())
}

/// Delete an account and with it every key.
#[utoipa::path(delete, path = "/api/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "Deleted", body = AccountDeleted),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::Unavailable))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    require_admin(&state, &caller).await?;
    if caller.principal.account == id {
        return Err(Error::bad_request(
            "an account cannot delete itself; use another admin account",
        ));
    }
    state.configs.delete_account(&id, &caller.actor).await?;
    Ok(Json(AccountDeleted {
        id: &id,
        deleted: true,
    })
    .into_response())
}

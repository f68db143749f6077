//! `/api/config/...` and `/api/batch`: versioned reads and writes of configs.
//!
//! `GET /api/config/{path}` serves several things by its query and last segment: the entry, an
//! old version (`?version=N`), the children of a prefix (`?list=true`, or any path without a
//! value), the history (`…/history`) and a diff (`…/diff?from=&to=`). `history`, `diff` and
//! `rollout` are reserved final segment names (see `setpoint_core::path`), so this is never
//! ambiguous.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use setpoint_core::read::ReadQuery;
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};
use setpoint_serving::params::Path;
use utoipa::ToSchema;

use super::AppState;
use super::approvals;
use super::auth::Caller;
use super::input::{self, Params};
use super::openapi::{ReadBody, errors};
use super::preview;
use crate::error::{Error, ErrorCode};
use crate::model::{
    Change, ChangeSpec, Committed, EntryView, Precondition, Submitted, Update, double_option,
};
use setpoint_core::auth::Action;
use setpoint_serving::body::{EntryBody, ListedEntry, ListingBody};
use setpoint_serving::conditional::{etag, if_none_match_hits};
use setpoint_serving::listing;

const REVISION_HEADER: &str = "x-setpoint-revision";
const DEFAULT_HISTORY_PAGE: u64 = 100;
const MAX_HISTORY_PAGE: u64 = 1000;

/// Body of `PUT /api/config/{path}`. Unknown fields are rejected (a typo is an error, not a
/// silent no-op). `null` clears `description`, `owner`, `schema` or `validators`; leaving a field
/// out keeps what the previous version had.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    /// The value: any JSON; a string for `yaml` and `text`.
    #[schema(value_type = Value)]
    pub value: Value,
    /// `json` (default), `yaml` or `text`.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Option<String>>,
    /// JSON Schema (2020-12) enforced on this and every later write until replaced.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Value>)]
    pub schema: Option<Option<Value>>,
    /// `[{"regex": "..."}, {"enum": [...]}]`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub validators: Option<Option<Vec<Value>>>,
}

/// The answer to a write of one path: the version it made.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResult<'a> {
    pub path: &'a str,
    pub version: Version,
    /// The store revision of the commit.
    pub revision: i64,
    /// Present (true) when the version written is a deletion.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The answer to `POST /api/batch`: every change's result, committed at one revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult<'a> {
    pub revision: i64,
    pub results: &'a [crate::model::ChangeResult],
}

/// A write's `200` as documented: the version made, or — with `?dry_run=true` — the preview
/// (exactly one of the two shapes fits a body).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum WriteAnswer<'a> {
    Written(WriteResult<'a>),
    Preview(preview::PreviewBody),
}

/// A batch's `200` as documented: the results, or — with `?dry_run=true` — the preview.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchAnswer<'a> {
    Committed(BatchResult<'a>),
    Preview(preview::PreviewBody),
}

/// The difference between two versions: a JSON Patch (`json`, `yaml`) or a unified diff (a
/// `text` side).
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffBody<'a> {
    pub path: &'a str,
    pub from: Version,
    pub to: Version,
    /// `json_patch` or `unified`.
    pub kind: &'static str,
    /// RFC 6902 operations (`kind` json_patch).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub patch: Option<Value>,
    /// Unified diff text (`kind` unified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One change of `POST /api/batch`: the model's own change form.
pub type BatchChange = ChangeSpec;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub changes: Vec<ChangeSpec>,
}

fn parse_path(raw: &str) -> Result<ConfigPath, Error> {
    Ok(ConfigPath::parse(raw)?)
}

fn put_change(
    path: ConfigPath,
    body: PutBody,
    if_match: Option<Precondition>,
) -> Result<Change, Error> {
    let mut change = Change::put(path, body.value, body.format.as_deref(), if_match)?;
    if let Change::Put(put) = &mut change {
        put.description = Update::from_option(body.description);
        put.owner = Update::from_option(body.owner);
        put.schema = Update::from_option(body.schema);
        put.validators = Update::from_option(body.validators.map(|v| v.map(Value::Array)));
    }
    Ok(change)
}

/// Submits `changes`: the committed result, or 202 with the change request a policy made of it.
async fn submit(
    state: &AppState,
    caller: &Caller,
    changes: Vec<Change>,
    force: bool,
) -> Result<Result<Committed, Response>, Error> {
    Ok(
        match state
            .configs
            .submit_forced(changes, &caller.actor, force)
            .await?
        {
            Submitted::Committed(committed) => Ok(committed),
            Submitted::Pending(request) => Err(approvals::accepted(&request)),
        },
    )
}

fn with_revision(mut response: Response, revision: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&revision.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REVISION_HEADER), value);
    }
    response
}

/// Write a config: a new version of `path`.
#[utoipa::path(put, path = "/api/config/{path}", tag = "config",
    params(("path" = String, Path, description = "Slash-separated config path, e.g. myapp/database/host"),
           ("If-Match" = Option<String>, Header, description = "Expected current version (\"3\", 3 or *)"),
           ("force" = Option<bool>, Query, description = "Write even though the path is under an active rollout"),
           ("dry_run" = Option<bool>, Query, description = "Answer what the write would do (a preview, as POST /api/preview) and write nothing")),
    request_body = PutBody,
    responses((status = 200, description = "New version of an existing config (with dry_run: the preview)", body = WriteAnswer,
                headers(("ETag" = String, description = "The new version, quoted"))),
              (status = 201, description = "First version, or re-created after a delete", body = WriteResult,
                headers(("ETag" = String, description = "The new version, quoted"))),
              (status = 202, description = "A policy needs approvals: the change waits in a change request", body = approvals::ChangeAccepted),
              errors::BadRequest, errors::Forbidden, errors::Conflict, errors::PreconditionFailed,
              errors::TooLarge, errors::Unprocessable, errors::Unavailable))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let path = parse_path(&raw)?;
    caller.require(&state, &path, Action::Write).await?;
    let params = Params::new(query);
    let (force, dry_run) = (params.flag("force")?, params.flag("dry_run")?);
    let body: PutBody = input::json_body(body)?;
    let change = put_change(path, body, input::if_match(&headers)?)?;
    if dry_run {
        return Ok(preview::answer(&state, &caller, &[change], force)
            .await?
            .into_response());
    }
    match submit(&state, &caller, vec![change], force).await? {
        Ok(committed) => Ok(single_result(committed)),
        Err(accepted) => Ok(accepted),
    }
}

/// Delete a config: writes a tombstone version.
#[utoipa::path(delete, path = "/api/config/{path}", tag = "config",
    params(("path" = String, Path, description = "Config path"),
           ("If-Match" = Option<String>, Header, description = "Expected current version"),
           ("force" = Option<bool>, Query, description = "Delete even though the path is under an active rollout"),
           ("dry_run" = Option<bool>, Query, description = "Answer what the delete would do (a preview, as POST /api/preview) and write nothing")),
    responses((status = 200, description = "Tombstone version written (with dry_run: the preview)", body = WriteAnswer),
              (status = 202, description = "A policy needs approvals: the change waits in a change request", body = approvals::ChangeAccepted),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::PreconditionFailed, errors::Unprocessable, errors::Unavailable))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let path = parse_path(&raw)?;
    caller.require(&state, &path, Action::Delete).await?;
    let params = Params::new(query);
    let (force, dry_run) = (params.flag("force")?, params.flag("dry_run")?);
    let change = Change::Delete {
        path,
        if_match: input::if_match(&headers)?,
    };
    if dry_run {
        return Ok(preview::answer(&state, &caller, &[change], force)
            .await?
            .into_response());
    }
    match submit(&state, &caller, vec![change], force).await? {
        Ok(committed) => Ok(single_result(committed)),
        Err(accepted) => Ok(accepted),
    }
}

fn single_result(committed: Committed) -> Response {
    let Some(result) = committed.results.first() else {
        return Error::internal("commit returned no result").into_response();
    };
    let status = if result.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = WriteResult {
        path: &result.path,
        version: result.version,
        revision: committed.revision,
        deleted: result.deleted,
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(result.version));
    with_revision(response, committed.revision)
}

/// Commit several puts and deletes atomically, as one revision.
#[utoipa::path(post, path = "/api/batch", tag = "config", request_body = BatchBody,
    params(("force" = Option<bool>, Query, description = "Commit even though a path is under an active rollout"),
           ("dry_run" = Option<bool>, Query, description = "Answer what the batch would do (a preview, as POST /api/preview) and write nothing")),
    responses((status = 200, description = "All changes committed at one revision (with dry_run: the preview)", body = BatchAnswer),
              (status = 202, description = "A policy needs approvals: the changes wait in a change request", body = approvals::ChangeAccepted),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Conflict,
              errors::PreconditionFailed, errors::TooLarge, errors::Unprocessable, errors::Unavailable))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let params = Params::new(query);
    let (force, dry_run) = (params.flag("force")?, params.flag("dry_run")?);
    let body: BatchBody = input::json_body(body)?;
    let changes = batch_changes(&state, &caller, body).await?;
    if dry_run {
        return Ok(preview::answer(&state, &caller, &changes, force)
            .await?
            .into_response());
    }
    let committed = match submit(&state, &caller, changes, force).await? {
        Ok(committed) => committed,
        Err(accepted) => return Ok(accepted),
    };
    let body = BatchResult {
        revision: committed.revision,
        results: &committed.results,
    };
    Ok(with_revision(
        Json(body).into_response(),
        committed.revision,
    ))
}

/// A batch's changes, parsed, each checked against the caller's write or delete right (errors
/// name the change's index).
pub(super) async fn batch_changes(
    state: &AppState,
    caller: &Caller,
    body: BatchBody,
) -> Result<Vec<Change>, Error> {
    let changes = body
        .changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| Change::from_spec(change).map_err(|e| e.at_index(index)))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, change) in changes.iter().enumerate() {
        let action = match change {
            Change::Put(_) => Action::Write,
            Change::Delete { .. } => Action::Delete,
        };
        caller
            .require(state, change.path(), action)
            .await
            .map_err(|e| e.at_index(index))?;
    }
    Ok(changes)
}

/// An entry as the API shows it: the edges' shape plus the metadata the writer keeps.
fn entry_body(entry: &EntryView) -> EntryBody<'_> {
    EntryBody {
        path: entry.path.as_str(),
        value: entry
            .value
            .as_ref()
            .map(|value| setpoint_core::auth::shown_value(&entry.path, value)),
        format: entry.format.as_str(),
        version: entry.version,
        revision: entry.revision,
        updated_at: &entry.meta.updated_at,
        updated_by: entry.meta.updated_by.as_deref(),
        description: entry.meta.description.as_deref(),
        owner: entry.meta.owner.as_deref(),
        schema: entry.schema.as_ref(),
        validators: entry.validators.as_ref(),
        deleted: entry.deleted(),
    }
}

/// The top-level names; with `env`, `resolve` or `format`, the whole tree read as on the edges.
#[utoipa::path(get, path = "/api/config", tag = "config",
    params(("list" = Option<bool>, Query, description = "List the top-level names (the default)"),
           ("env" = Option<String>, Query, description = "Environment: effective values; each path needs read on it and on its override in every environment of the chain (/env/{e}/…)"),
           ("explain" = Option<bool>, Query, description = "Add provenance"),
           ("resolve" = Option<bool>, Query, description = "Substitute references; the tree as one object"),
           ("format" = Option<String>, Query, description = "Bundle of the whole tree: json, yaml, dotenv, k8s-configmap, k8s-secret"),
           ("name" = Option<String>, Query, description = "Kubernetes object name for k8s-configmap / k8s-secret")),
    responses((status = 200, description = "The top-level names (ListingBody), or the tree read in an environment",
                content((ReadBody = "application/json"), (String = "application/yaml"), (String = "text/plain"))),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unprocessable,
              errors::Unavailable))]
pub async fn get_root(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
    let params = Params::new(query);
    let root = ConfigPath::root();
    if !params.flag("list")? {
        // `?format=`, `?env=`, `?resolve=` on `/` read the whole tree, as on the edges.
        let query = ReadQuery::from_params(|name| params.get(name))?;
        if !query.is_plain() {
            return environment_read(&state, &caller, &root, &query).await;
        }
    }
    list(&state, &caller, &root, &params).await
}

/// Read a config, an old version, or the children of a prefix.
#[utoipa::path(get, path = "/api/config/{path}", tag = "config",
    params(("path" = String, Path, description = "Config path or prefix"),
           ("version" = Option<u64>, Query, description = "An older version"),
           ("list" = Option<bool>, Query, description = "List children instead (also: HTTP method LIST)"),
           ("recursive" = Option<bool>, Query, description = "With list: every live path below, with versions"),
           ("env" = Option<String>, Query, description = "Environment: the effective value (overrides under /env/{env}/ and its ancestors merged over the base value); needs read on the path and on its override in every environment of the chain, secrets:read on all of them to resolve a secret"),
           ("explain" = Option<bool>, Query, description = "Add provenance: which path and version every key came from"),
           ("resolve" = Option<bool>, Query, description = "Substitute ${VAR}, ${VAR:default} and ${secret:name}; on a prefix, the subtree as one object"),
           ("format" = Option<String>, Query, description = "Bundle of the subtree: json, yaml, dotenv, k8s-configmap, k8s-secret"),
           ("name" = Option<String>, Query, description = "Kubernetes object name for k8s-configmap / k8s-secret")),
    responses((status = 200, description = "The entry (EntryBody), the children of a prefix (ListingBody), an effective value (EffectiveEntry) or, resolved, a subtree as one object; with format, the bundle",
                content((ReadBody = "application/json"), (String = "application/yaml"), (String = "text/plain")),
                headers(("X-Setpoint-Revision" = i64, description = "The store revision the answer was read at"))),
              (status = 304, description = "If-None-Match matched the current version"),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unprocessable,
              errors::Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let params = Params::new(query);
    let trimmed = raw.trim_end_matches('/');
    if let Some(base) = trimmed
        .strip_suffix("/history")
        .or_else(|| (trimmed == "history").then_some(""))
    {
        let path = parse_path(base)?;
        caller.require(&state, &path, Action::Read).await?;
        return history(&state, &path, &params).await;
    }
    if let Some(base) = trimmed
        .strip_suffix("/diff")
        .or_else(|| (trimmed == "diff").then_some(""))
    {
        let path = parse_path(base)?;
        caller.require(&state, &path, Action::Read).await?;
        return diff(&state, &path, &params).await;
    }
    let path = parse_path(&raw)?;
    if params.flag("list")? {
        return list(&state, &caller, &path, &params).await;
    }
    let query = ReadQuery::from_params(|name| params.get(name))?;
    if !query.is_plain() {
        return environment_read(&state, &caller, &path, &query).await;
    }
    if !caller.may(&path, Action::Read) {
        // A prefix the caller can read below still lists what it may see.
        return list(&state, &caller, &path, &params).await;
    }
    if let Some(version) = params.number("version")? {
        let entry = state
            .configs
            .version(&path, version)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{path} has no version {version} (never written, or removed by retention)"
                ))
            })?;
        if entry.deleted() {
            return Err(Error::not_found(format!(
                "version {version} of {path} is a deletion"
            )));
        }
        return Ok(entry_response(&entry));
    }
    match state.configs.current(&path).await? {
        Some(entry) if if_none_match_hits(&headers, entry.version) => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response
                .headers_mut()
                .insert(header::ETAG, etag(entry.version));
            Ok(response)
        }
        Some(entry) => Ok(entry_response(&entry)),
        None => list(&state, &caller, &path, &params).await,
    }
}

/// How long an environment-aware read waits for the read model to show this writer's own
/// latest commit before answering 503.
const READ_MODEL_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// `?env=`, `?resolve=`, `?explain=`, `?format=`: answered from the in-memory read model, by the
/// same code the edges run ([`setpoint_core::read`]).
async fn environment_read(
    state: &AppState,
    caller: &Caller,
    path: &ConfigPath,
    query: &ReadQuery,
) -> Result<Response, Error> {
    if !state
        .feed
        .wait_for(state.configs.last_commit(), READ_MODEL_WAIT)
        .await
    {
        return Err(Error::new(
            ErrorCode::StoreUnavailable,
            "the read model has not caught up with the store's watch; retry shortly",
        ));
    }
    let snapshot = state.feed.snapshot();
    let rendered = setpoint_secrets::serve::read(
        &state.secrets,
        &snapshot,
        path,
        query,
        &caller.principal.grants,
    )
    .await;
    let rendered = match rendered {
        Err(failure) if failure.code == ErrorCode::Forbidden => {
            let action = if query.resolve || query.format.is_some() {
                Action::SecretsRead
            } else {
                Action::Read
            };
            let _ = caller.deny(state, path, action).await;
            return Err(failure.into());
        }
        other => other?,
    };
    let response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rendered.content_type),
        )],
        rendered.body,
    )
        .into_response();
    Ok(with_revision(response, rendered.revision))
}

fn entry_response(entry: &EntryView) -> Response {
    let mut response = Json(entry_body(entry)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(entry.version));
    with_revision(response, entry.revision)
}

async fn list(
    state: &AppState,
    caller: &Caller,
    path: &ConfigPath,
    params: &Params,
) -> Result<Response, Error> {
    let grants = &caller.principal.grants;
    if !listing::may_list(path, grants) {
        return Err(caller.deny(state, path, Action::Read).await);
    }
    let recursive = params.flag("recursive")?;
    let mut found = state.configs.list(path, recursive).await?;
    listing::retain_visible_children(&mut found.children, path, grants);
    listing::check_not_empty(path, &found.children, params.flag("list")?)?;
    let body = ListingBody {
        path: path.as_str(),
        children: found.children,
        revision: found.revision,
        entries: recursive.then(|| {
            found
                .entries
                .iter()
                .filter(|e| listing::listable(&e.path, grants))
                .map(|e| ListedEntry {
                    path: e.path.as_str(),
                    version: e.version,
                    format: e.format.as_str(),
                    updated_at: &e.updated_at,
                })
                .collect()
        }),
    };
    Ok(with_revision(Json(body).into_response(), found.revision))
}

/// Versions of a config, newest first.
#[utoipa::path(get, path = "/api/config/{path}/history", tag = "config",
    params(("path" = String, Path, description = "Config path"),
           ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100, at most 1000)"),
           ("before" = Option<u64>, Query, description = "Only versions older than this")),
    responses((status = 200, description = "JSON array of versions, newest first; Link rel=next when more", body = [EntryBody]),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unavailable))]
pub async fn history(
    state: &AppState,
    path: &ConfigPath,
    params: &Params,
) -> Result<Response, Error> {
    let limit = params.number("limit")?.unwrap_or(DEFAULT_HISTORY_PAGE);
    if limit == 0 || limit > MAX_HISTORY_PAGE {
        return Err(Error::bad_request(format!(
            "limit must be between 1 and {MAX_HISTORY_PAGE}"
        )));
    }
    let before = params.number("before")?;
    let page = state.configs.history(path, limit as usize, before).await?;
    if page.versions.is_empty() && !state.configs.exists_ever(path).await? {
        return Err(Error::not_found(format!("{path} was never written")));
    }
    let body: Vec<EntryBody<'_>> = page.versions.iter().map(entry_body).collect();
    let mut response = Json(body).into_response();
    if let Some(next) = page.next_before {
        let link = format!("</api/config{path}/history?limit={limit}&before={next}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// A version's value as a diff may show it: an account record without its key hashes.
fn shown_for_diff(path: &ConfigPath, value: Option<ParsedValue>) -> Option<ParsedValue> {
    let value = value?;
    if !setpoint_core::auth::is_account_record(path) || value.format() != Format::Json {
        return Some(value);
    }
    let hidden = setpoint_core::auth::hide_key_hashes(value.structured());
    // Re-parsing a value that parsed once cannot fail; keep nothing rather than the hashes.
    ParsedValue::from_request(hidden, Some(Format::Json)).ok()
}

/// Difference between two versions: JSON Patch for json/yaml, unified diff for text.
#[utoipa::path(get, path = "/api/config/{path}/diff", tag = "config",
    params(("path" = String, Path, description = "Config path"),
           ("from" = Option<u64>, Query, description = "Older version (default: to - 1)"),
           ("to" = Option<u64>, Query, description = "Newer version (default: current)")),
    responses((status = 200, description = "The difference between the two versions", body = DiffBody),
              errors::BadRequest, errors::Forbidden, errors::NotFound, errors::Unavailable))]
pub async fn diff(state: &AppState, path: &ConfigPath, params: &Params) -> Result<Response, Error> {
    let to = match params.number("to")? {
        Some(v) => v,
        None => state.configs.current_version(path).await?,
    };
    let from = params.number("from")?.unwrap_or(to.saturating_sub(1));
    if to == 0 {
        return Err(Error::not_found(format!("{path} was never written")));
    }
    let load = |version: Version| async move {
        if version == 0 {
            return Ok(None);
        }
        state
            .configs
            .version(path, version)
            .await?
            .map(|e| shown_for_diff(path, e.value))
            .ok_or_else(|| Error::not_found(format!("{path} has no version {version}")))
    };
    let older = load(from).await?;
    let newer = load(to).await?;
    let diff = setpoint_core::diff::diff(
        older.as_ref(),
        newer.as_ref(),
        &format!("v{from}"),
        &format!("v{to}"),
    );
    let (kind, patch, text) = match diff {
        setpoint_core::diff::Diff::JsonPatch { patch } => ("json_patch", Some(patch), None),
        setpoint_core::diff::Diff::Unified { text } => ("unified", None, Some(text)),
    };
    let body = DiffBody {
        path: path.as_str(),
        from,
        to,
        kind,
        patch,
        text,
    };
    Ok(Json(body).into_response())
}

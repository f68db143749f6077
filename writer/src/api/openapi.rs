//! The OpenAPI document, generated from the handlers' annotations (utoipa), at
//! `/api/openapi.json`. `LIST /api/config/{prefix}` is documented as its `GET ?list=true` twin:
//! OpenAPI 3.1 has no way to name a non-standard method.
//!
//! Bodies are the types the handlers serialize (the read bodies are `setpoint_serving::body`'s,
//! shared with the edges), errors are [`errors`]' shared answers, one per status, derived from
//! the error vocabulary; [`Door`] adds what the middleware in front of every handler answers
//! (the `bearer` security scheme, 401, 429, a standby's 307). `tests/tests/api.rs` checks the
//! document against the running writer and `scripts/apifuzz` (schemathesis) against its answers.

pub mod errors;

use std::borrow::Cow;

use axum::Json;
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::{
    accounts, alerts, approvals, audit, clients, config, environments, ops, preview, rollouts,
    schemas,
};

/// The security scheme every operation but health uses.
pub const SECURITY_SCHEME: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Setpoint writer API",
        description = "Versioned configuration: write centrally, read locally. Every call but \
                       /healthz and /readyz needs `Authorization: Bearer <key>` (in `setpoint \
                       dev`, callers on loopback may leave it out)."
    ),
    modifiers(&Door),
    paths(
        config::get_root,
        config::get,
        config::put,
        config::delete,
        config::batch,
        preview::batch,
        config::history,
        config::diff,
        schemas::list,
        schemas::get,
        schemas::put,
        schemas::delete,
        environments::list,
        environments::get,
        environments::put,
        environments::delete,
        accounts::list,
        accounts::get,
        accounts::create,
        accounts::set_grants,
        accounts::rotate,
        accounts::revoke,
        accounts::delete,
        audit::list,
        approvals::put_policy,
        approvals::delete_policy,
        approvals::list,
        approvals::get,
        approvals::approve,
        approvals::reject,
        approvals::cancel,
        audit::verify,
        super::edges,
        alerts::list,
        clients::list,
        clients::get,
        rollouts::create,
        rollouts::list,
        rollouts::get,
        rollouts::steer,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        serve,
    ),
    components(schemas(
        preview::PreviewBody,
        config::PutBody,
        config::BatchBody,
        config::BatchChange,
        schemas::SchemaBody,
        rollouts::RolloutBody,
        rollouts::RolloutDraft,
        rollouts::DraftStage,
        rollouts::CanaryBody,
        rollouts::HealthBody,
        rollouts::RolloutView,
        rollouts::RolloutList,
        crate::model::ChangeResult,
        setpoint_serving::body::EntryBody,
        setpoint_serving::body::ListingBody,
        setpoint_serving::body::ListedEntry,
        setpoint_serving::body::ErrorBody,
        setpoint_serving::body::ErrorDetail,
        EffectiveEntry,
        clients::StatusFilter,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The body of a `GET /api/config/…` answered as JSON: a plain read's entry or listing, an
/// environment read's effective entry or listing, or — resolved — a subtree as one object
/// (the configs' own data, so any object).
pub struct ReadBody;

impl PartialSchema for ReadBody {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("EntryBody"))
            .item(Ref::from_schema_name("ListingBody"))
            .item(Ref::from_schema_name("EffectiveEntry"))
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .into()
    }
}

impl ToSchema for ReadBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ReadBody")
    }
}

/// An effective value (`?env=`, `?resolve=`, `?explain=`), as `setpoint_core::read` renders it
/// on the writer and every edge; `tests/tests/api.rs` checks a real answer against it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct EffectiveEntry {
    pub path: String,
    /// Any JSON for `json`; the text for `yaml` and `text`.
    #[schema(value_type = Value)]
    pub value: serde_json::Value,
    pub format: String,
    /// The version of the layer the value comes from (null when none has a version).
    pub version: Option<u64>,
    pub revision: Option<i64>,
    pub updated_at: Option<String>,
    /// The path the top layer was read from (an override under `/env/…`, or the base path).
    pub source: Option<String>,
    /// Whether `${…}` references were substituted.
    pub resolved: bool,
    /// The environment read in.
    pub environment: Option<String>,
    /// With `explain`: which layer every key came from.
    #[schema(value_type = Option<Object>)]
    pub provenance: Option<serde_json::Value>,
    /// With `explain`: every layer merged, lowest first.
    #[schema(value_type = Option<Vec<Object>>)]
    pub sources: Option<serde_json::Value>,
}

/// What the middleware in front of every handler adds to each operation: the `bearer` scheme
/// (all but `/healthz` and `/readyz`; optional on `/metrics`, which may be public), its 401 and
/// 429, and on writes the 307 a standby answers with the leader's address. Also unique
/// operation ids (`{tag}.{handler}`) and the shared error answers.
pub struct Door;

impl Modify for Door {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            SECURITY_SCHEME.to_owned(),
            RefOr::T(SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("spk_<id>_<secret>")
                    .description(Some(
                        "An API key: `Authorization: Bearer spk_<id>_<secret>`",
                    ))
                    .build(),
            )),
        );
        for (name, response) in errors::components() {
            components.responses.insert(name, response);
        }
        if let Ok(redirect) = serde_json::from_value::<Response>(standby_redirect()) {
            components
                .responses
                .insert(STANDBY_REDIRECT.to_owned(), RefOr::T(redirect));
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let methods = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.delete, true),
            ];
            for (operation, write) in methods {
                if let Some(operation) = operation {
                    guard(path, operation, write);
                }
            }
        }
    }
}

const STANDBY_REDIRECT: &str = "StandbyRedirect";

fn standby_redirect() -> serde_json::Value {
    serde_json::json!({
        "description": "This writer is a standby: send the write to the leader (Location)",
        "headers": {"Location": {"description": "The same call on the leader", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn guard(path: &str, operation: &mut Operation, write: bool) {
    let handler = operation.operation_id.take().unwrap_or_default();
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first().cloned())
        .unwrap_or_default();
    operation.operation_id = Some(format!("{tag}.{handler}"));
    if matches!(path, "/healthz" | "/readyz") {
        return;
    }
    let mut security = vec![SecurityRequirement::new(
        SECURITY_SCHEME,
        Vec::<String>::new(),
    )];
    if path == "/metrics" {
        // `--metrics-public` serves it without a key.
        security.push(SecurityRequirement::default());
    }
    operation.security = Some(security);
    let responses = &mut operation.responses.responses;
    for (status, name) in [("401", "Unauthenticated"), ("429", "TooManyRequests")] {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
    if write && path.starts_with("/api/") {
        responses
            .entry("307".to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(STANDBY_REDIRECT)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                assert!(seen.insert(id.clone()), "{method} {path}: {id} twice");
            }
        }
    }
}

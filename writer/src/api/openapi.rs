//! The OpenAPI document, generated from the handlers' annotations (utoipa), at
//! `/api/openapi.json`. `LIST /api/config/{prefix}` is documented as its `GET ?list=true` twin:
//! OpenAPI 3.1 has no way to name a non-standard method. The read bodies (entry, listing, error)
//! are the types the writer and the edges serialize (`setpoint_serving::body`), so the document
//! cannot drift from what either answers.

use axum::Json;
use utoipa::OpenApi;

use super::{accounts, approvals, audit, clients, config, environments, ops, schemas};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Setpoint writer API",
        description = "Versioned configuration: write centrally, read locally."
    ),
    paths(
        config::get,
        config::put,
        config::delete,
        config::batch,
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
        clients::list,
        clients::get,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        serve,
    ),
    components(schemas(
        config::PutBody,
        config::BatchBody,
        config::BatchChange,
        schemas::SchemaBody,
        crate::model::ChangeResult,
        setpoint_serving::body::EntryBody,
        setpoint_serving::body::ListingBody,
        setpoint_serving::body::ListedEntry,
        setpoint_serving::body::ErrorBody,
        setpoint_serving::body::ErrorDetail
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

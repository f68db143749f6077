//! Writes on a standby: `307 Temporary Redirect` to the leader, or `503` when none is known.
//!
//! Runs before authentication, so a standby never checks a key it would only forward (and
//! writes no audit record for a request it does not serve). Reads (GET/HEAD, and `LIST`, which
//! is rewritten to GET before routing) are served here from this replica's own model, which
//! follows the store. A 307 keeps the method and body; clients re-send their `Authorization`
//! header to the leader (curl: `--location-trusted`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

pub async fn redirect_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !write || !request.uri().path().starts_with("/api/") || state.leadership.is_leader() {
        return next.run(request).await;
    }
    let target = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    match state.leadership.leader_url() {
        Some(leader) => {
            let location = format!("{}{target}", leader.trim_end_matches('/'));
            let body = json!({ "error": {
                "code": "not_leader",
                "message": format!("this writer is a standby; send writes to the leader at {leader}"),
                "details": { "leader": leader, "location": location },
            }});
            let mut response = (StatusCode::TEMPORARY_REDIRECT, axum::Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        None => {
            let body = json!({ "error": {
                "code": "not_leader",
                "message": "this writer is a standby and no leader is known yet; retry shortly",
            }});
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

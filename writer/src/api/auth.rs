//! Who is calling: the authentication middleware and the [`Caller`] extractor.
//!
//! Every request except `/healthz`, `/readyz` (and `/metrics` when configured public) needs
//! `Authorization: Bearer <key>`; the key is checked against the accounts of the writer's read
//! model (the feed's snapshot — a revocation committed a moment ago applies at once). In
//! [`AuthMode::AnonymousLoopback`] (`setpoint dev` only) a request without a key from a
//! loopback address gets every right; any `Authorization` header that is not `Bearer <key>` is
//! a 401 in every mode. The key is checked first: only failed attempts are counted per source
//! address, and past the limit the source's failures get 429 with `Retry-After` until the window
//! ends — a valid key is never refused for them. Each refusal is logged (never the key) and
//! audited (a limited source's, only counted).
//!
//! Handlers take a [`Caller`] and ask it, per path and action, before they act; a refusal is a
//! 403 that is also written to the audit log.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use setpoint_core::ConfigPath;
use setpoint_core::auth::{Action, AuthError, Principal};
use setpoint_serving::auth::{Credentials, unix_now};

use super::AppState;
use crate::audit::{Event, Outcome};
use crate::error::{Error, ErrorCode};
use crate::model::Actor;

pub use setpoint_serving::auth::{AuthMode, AuthState, FAILURES_PER_MINUTE};

/// The authenticated caller of one request, with what the audit log needs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub actor: Actor,
}

impl Caller {
    /// May the caller do `action` on `path`?
    pub fn may(&self, path: &ConfigPath, action: Action) -> bool {
        self.principal.grants.allows(path, action)
    }

    /// Refuses with 403 (and an audit record) unless the caller may do `action` on `path`.
    pub async fn require(
        &self,
        state: &AppState,
        path: &ConfigPath,
        action: Action,
    ) -> Result<(), Error> {
        if self.may(path, action) {
            return Ok(());
        }
        Err(self.deny(state, path, action).await)
    }

    /// Refuses with 403 (and an audit record) unless the caller may do `action` on `path` and
    /// everything below it.
    pub async fn require_all_below(
        &self,
        state: &AppState,
        path: &ConfigPath,
        action: Action,
    ) -> Result<(), Error> {
        if self.principal.grants.allows_all_below(path, action) {
            return Ok(());
        }
        Err(self.deny(state, path, action).await)
    }

    /// The 403 for `action` on `path`, recorded in the audit log.
    pub async fn deny(&self, state: &AppState, path: &ConfigPath, action: Action) -> Error {
        let detail = format!("lacks {} on {path}", action.as_str());
        record_denied(
            state,
            &self.actor,
            "access.denied",
            Some(path.as_str()),
            detail,
        )
        .await;
        Error::new(
            ErrorCode::Forbidden,
            format!(
                "account {} may not {} {path}",
                self.principal.account,
                action.as_str()
            ),
        )
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Caller, Error> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "no API key given"))
    }
}

/// Writes a denied attempt to the audit log on its own; a store failure is logged, not raised
/// (the caller is refused either way).
async fn record_denied(
    state: &AppState,
    actor: &Actor,
    action: &str,
    path: Option<&str>,
    detail: String,
) {
    let event = Event {
        action,
        path,
        version_before: None,
        version_after: None,
        outcome: Outcome::Denied,
        detail: Some(detail),
    };
    if let Err(error) = state.configs.record_alone(actor, &event).await {
        tracing::warn!(%error, "cannot write the audit record of a denied attempt");
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(128)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            use rand::TryRng as _;
            let mut bytes = [0u8; 8];
            let _ = rand::rngs::SysRng.try_fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        })
}

/// The middleware: authenticates, then hands the request on with a [`Caller`] attached.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.auth.is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let peer = setpoint_serving::auth::peer(&request);
    let source_ip = peer.map(|p| p.ip());
    let headers = request.headers();
    let actor_header = super::input::actor(headers);
    let mut actor = Actor {
        name: None,
        request_id: request_id(headers),
        source: peer.map(|p| p.to_string()),
    };
    let now = unix_now();
    // The key first: only a failed authentication is counted against the source or refused
    // for its failures (see `setpoint_serving::auth`).
    let principal = match state.auth.credentials(headers, source_ip) {
        Credentials::Key(token) => match authenticate_token(&state, token, now).await {
            Ok(principal) => principal,
            Err(reason) => return refuse(&state, &actor, source_ip, reason).await,
        },
        Credentials::Anonymous => Principal::anonymous(),
        Credentials::Missing => return refuse(&state, &actor, source_ip, AuthError::Missing).await,
        Credentials::Malformed => {
            return refuse(&state, &actor, source_ip, AuthError::Malformed).await;
        }
    };
    actor.name = if principal.key_id.is_none() {
        actor_header.or_else(|| Some(principal.account.clone()))
    } else {
        Some(principal.account.clone())
    };
    request.extensions_mut().insert(Caller { principal, actor });
    next.run(request).await
}

/// Checks a token against the read model; an unknown key gets one more chance after the read
/// model has caught up with this writer's own latest commit (a key created a moment ago).
async fn authenticate_token(
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<Principal, AuthError> {
    // Right after a start the read model may not have loaded yet.
    let _ = state
        .feed
        .wait_for(
            state.configs.last_commit(),
            std::time::Duration::from_secs(3),
        )
        .await;
    let snapshot = state.feed.snapshot();
    match state.auth.accounts.authenticate(&snapshot, token, now) {
        Err(AuthError::Unknown) if snapshot.revision() < state.configs.last_commit() => {
            let _ = state
                .feed
                .wait_for(
                    state.configs.last_commit(),
                    std::time::Duration::from_secs(1),
                )
                .await;
            state
                .auth
                .accounts
                .get(&state.feed.snapshot())
                .authenticate(token, now)
        }
        other => other,
    }
}

async fn refuse(
    state: &AppState,
    actor: &Actor,
    source: Option<IpAddr>,
    reason: AuthError,
) -> Response {
    let refusal = state
        .auth
        .refuse(source, reason, unix_now(), Some(&actor.request_id));
    let limited = refusal.retry_after_secs.is_some();
    state
        .metrics
        .auth_failures
        .with_label_values(&[if limited {
            "rate_limited"
        } else {
            reason.as_str()
        }])
        .inc();
    // A limited source's failures are not audited one by one: the limit is what stops a flood
    // of them from growing the audit log.
    if !limited {
        record_denied(
            state,
            actor,
            "auth.refused",
            None,
            reason.as_str().to_owned(),
        )
        .await;
    }
    refusal.into_http()
}

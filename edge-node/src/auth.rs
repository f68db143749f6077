//! Who is calling an edge: the authentication middleware over the edge's whole router (HTTP,
//! SSE and gRPC — gRPC metadata `authorization` is the HTTP/2 header, so one layer covers all
//! three) and the [`Caller`] it attaches to each request.
//!
//! The door is the writer's (`setpoint_serving::auth`): every request except `/healthz`,
//! `/readyz`, the gRPC health service (and `/metrics` when configured public) needs
//! `Authorization: Bearer <key>`. Keys are checked against the accounts in the edge's own
//! snapshot (`/_setpoint/accounts/…`, replicated like any config, key hashes only; parsed once
//! per record by `setpoint_serving::accounts::AccountsCache`): a revocation applies to the next
//! request once the batch carrying it reaches the edge. In [`AuthMode::AnonymousLoopback`]
//! (`setpoint dev` only) a request without an `Authorization` header from a loopback address gets
//! every right; a header that is not `Bearer <key>` is a 401 in every mode.
//!
//! The key is checked first. Only failed attempts are counted per source address (core's
//! `FailureLimiter`); past [`FAILURES_PER_MINUTE`] the source's failures get 429
//! (`RESOURCE_EXHAUSTED`) with `Retry-After` (gRPC: `retry-after` metadata) until the minute
//! ends, while a valid key from the same address is served as always.
//! Each refusal is logged (reason and source, never the key) and counted in
//! `setpoint_edge_auth_failures_total{reason}`. gRPC callers get a trailers-only gRPC status,
//! HTTP callers the JSON error body.
//!
//! This module decides who the caller is and what it may see; the handlers ask the [`Caller`]
//! per path and action. It never talks to the writer: everything it knows is in the snapshot.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use setpoint_core::auth::{Action, AuthError, EffectiveGrants, Grants, Principal};
use setpoint_core::env::chain_of;
use setpoint_core::snapshot::Snapshot;
use setpoint_core::{ConfigPath, Revision};
use setpoint_serving::auth::{Credentials, INVALID_KEY, MISSING_KEY};

use crate::Edge;
use crate::error::{ApiError, ErrorCode};
use crate::watch::WatchMessage;

pub use setpoint_serving::auth::{AuthMode, AuthState, FAILURES_PER_MINUTE, unix_now};

/// How often an open watch whose key's expiry is unknown (a token not shaped `spk_<id>_…`)
/// checks it again.
const UNKNOWN_EXPIRY_RECHECK_SECS: i64 = 1;

/// The authenticated caller of one request.
#[derive(Clone)]
pub struct Caller {
    /// Shared with the accounts cache: a request copies no account id or grants.
    pub principal: Arc<Principal>,
    /// The key presented, so an open watch can check it again; `None` for anonymous callers.
    token: Option<Arc<str>>,
    /// The caller's address, when the server knows it (the client registry shows it).
    pub peer: Option<SocketAddr>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("principal", &self.principal)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Caller {
    pub fn grants(&self) -> &Grants {
        &self.principal.grants
    }

    fn forbidden(&self, path: &ConfigPath, action: Action) -> ApiError {
        ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "account {} may not {} {path}",
                self.principal.account,
                action.as_str()
            ),
        )
    }

    /// 403 unless the caller may do `action` on `path`.
    pub fn require(&self, path: &ConfigPath, action: Action) -> Result<(), ApiError> {
        if self.grants().allows(path, action) {
            Ok(())
        } else {
            Err(self.forbidden(path, action))
        }
    }

    /// 403 unless the caller may do `action` on `path` and on everything below it.
    pub fn require_all_below(&self, path: &ConfigPath, action: Action) -> Result<(), ApiError> {
        if self.grants().allows_all_below(path, action) {
            Ok(())
        } else {
            Err(self.forbidden(path, action))
        }
    }

    /// 403 unless the caller may do `action` on the effective values of `path` and everything
    /// below it in environment `env` — on the base paths and on their overrides in every
    /// environment of `env`'s chain as `snapshot` defines it ([`EffectiveGrants`]); without an
    /// environment, as [`Caller::require_all_below`]. An environment that does not exist (or whose
    /// chain is broken) is left to the watch hub, which refuses it as `GET ?env=` does.
    pub fn require_all_below_in(
        &self,
        snapshot: &Snapshot,
        path: &ConfigPath,
        env: Option<&str>,
        action: Action,
    ) -> Result<(), ApiError> {
        self.require_all_below(path, action)?;
        let Some(chain) = env.and_then(|name| chain_of(snapshot, name).ok()) else {
            return Ok(());
        };
        if EffectiveGrants::new(self.grants(), &chain).allows_all_below(path, action) {
            Ok(())
        } else {
            Err(self.forbidden_in(path, env.unwrap_or_default(), action))
        }
    }

    fn forbidden_in(&self, path: &ConfigPath, env: &str, action: Action) -> ApiError {
        ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "account {} may not {} {path} in environment {env}: that needs {} on {path} and on its override in every environment of the chain, below it too",
                self.principal.account,
                action.as_str(),
                action.as_str()
            ),
        )
    }

    /// 403 unless the caller may read something at or below `path` (listings).
    pub fn require_some_below(&self, path: &ConfigPath) -> Result<(), ApiError> {
        if self.grants().can_read_somewhere_below(path) {
            Ok(())
        } else {
            Err(self.forbidden(path, Action::Read))
        }
    }

    /// The caller of a gRPC request (put there by [`authenticate`]).
    pub fn of_grpc<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| tonic::Status::unauthenticated(MISSING_KEY))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, MISSING_KEY))
    }
}

/// Keeps an open watch honest. Made only for a caller who may watch its prefixes now (read on
/// everything below each one; in an environment, on every layer of the chain). Then, before a
/// message goes out, checks the caller's key against the edge's current accounts (revoked,
/// expired, disabled, deleted) and that its grants still cover every watched prefix — whenever
/// what decides it may have changed since the last check: an account record (revocation ends
/// the watch before the next message), in an environment its definitions (a watch whose
/// environment is given a parent the caller may not read ends before it shows a value from
/// it), or the key's expiry time passed. Nothing else decides it, so an unchanged watch costs
/// two atomic loads per message (at 100,000 sessions a check every second was 7 % of the edge).
pub struct WatchGuard {
    edge: Edge,
    caller: Caller,
    prefixes: Vec<ConfigPath>,
    env: Option<String>,
    /// The revision of the snapshot the last check saw.
    checked_at: Revision,
    /// When the caller's key stops being valid (unix seconds) as of the last check.
    expires_at: Option<i64>,
}

/// When `caller`'s key expires by `snapshot`'s accounts: `None` for never (or no key), a second
/// from now when the token does not name its key (checked again each second, as it cannot be
/// looked up by id).
fn key_expiry(edge: &Edge, caller: &Caller, snapshot: &Snapshot) -> Option<i64> {
    let token = caller.token.as_deref()?;
    match setpoint_core::auth::token_key_id(token) {
        Some(id) => edge.auth().accounts.get(snapshot).key_expires_at(id),
        None => Some(unix_now() + UNKNOWN_EXPIRY_RECHECK_SECS),
    }
}

impl WatchGuard {
    /// 403 unless `caller` may watch `prefixes` (in `env`) now.
    pub fn new(
        edge: Edge,
        caller: Caller,
        prefixes: Vec<ConfigPath>,
        env: Option<String>,
    ) -> Result<WatchGuard, ApiError> {
        let env = env.filter(|e| !e.is_empty());
        let snapshot = edge.holder().current();
        for prefix in &prefixes {
            caller.require_all_below_in(&snapshot, prefix, env.as_deref(), Action::Read)?;
        }
        let expires_at = key_expiry(&edge, &caller, &snapshot);
        Ok(WatchGuard {
            edge,
            caller,
            prefixes,
            env,
            checked_at: snapshot.revision(),
            expires_at,
        })
    }

    /// `stream`'s messages while the watch may go on; then the error to end it with, once.
    pub fn wrap<S>(
        self,
        stream: S,
    ) -> impl Stream<Item = Result<WatchMessage, ApiError>> + Send + 'static
    where
        S: Stream<Item = WatchMessage> + Send + 'static,
    {
        futures::stream::unfold(
            (Box::pin(stream), self, false),
            |(mut stream, mut guard, ended)| async move {
                if ended {
                    return None;
                }
                let message = stream.next().await?;
                match guard.check() {
                    Ok(()) => Some((Ok(message), (stream, guard, false))),
                    Err(error) => Some((Err(error), (stream, guard, true))),
                }
            },
        )
    }

    /// `Ok` while the watch may go on; the error to end it with otherwise.
    pub fn check(&mut self) -> Result<(), ApiError> {
        let Some(token) = self.caller.token.as_deref() else {
            return Ok(());
        };
        let holder = self.edge.holder();
        let changed = holder.accounts_changed_at() > self.checked_at
            || (self.env.is_some() && holder.definitions_changed_at() > self.checked_at);
        let expired = self.expires_at.is_some_and(|at| unix_now() >= at);
        if !changed && !expired {
            return Ok(());
        }
        let snapshot = holder.current();
        self.checked_at = snapshot.revision();
        let principal = self
            .edge
            .auth()
            .accounts
            .authenticate_shared(&snapshot, token, unix_now())
            .map_err(|reason| {
                tracing::info!(
                    account = %self.caller.principal.account,
                    reason = reason.as_str(),
                    "ending a watch: its key is no longer valid"
                );
                ApiError::new(ErrorCode::Unauthenticated, INVALID_KEY)
            })?;
        self.caller.principal = principal;
        self.expires_at = key_expiry(&self.edge, &self.caller, &snapshot);
        for prefix in &self.prefixes {
            if let Err(error) = self.caller.require_all_below_in(
                &snapshot,
                prefix,
                self.env.as_deref(),
                Action::Read,
            ) {
                tracing::info!(
                    account = %self.caller.principal.account,
                    %prefix,
                    env = self.env.as_deref().unwrap_or_default(),
                    "ending a watch: the account may no longer read the prefix"
                );
                return Err(error);
            }
        }
        Ok(())
    }
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `error` as a gRPC status (trailers only) or as the JSON error body.
fn answer(grpc: bool, error: ApiError) -> Response {
    if grpc {
        tonic::Status::from(error).into_http()
    } else {
        error.into_response()
    }
}

/// The authentication layer over the edge's router: authenticates, then hands the request on
/// with a [`Caller`] attached; a refusal is answered here. Hand-written rather than
/// `middleware::from_fn`: no boxed future and no copy of the inner service per request
/// (issue 14: every read pays each layer).
#[derive(Clone)]
pub struct Authenticate {
    edge: Edge,
}

impl Authenticate {
    pub fn new(edge: Edge) -> Authenticate {
        Authenticate { edge }
    }
}

impl<S> tower::Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            edge: self.edge.clone(),
            inner,
        }
    }
}

/// A service behind [`Authenticate`].
#[derive(Clone)]
pub struct Authenticated<S> {
    edge: Edge,
    inner: S,
}

impl<S> tower::Service<Request> for Authenticated<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match admit(&self.edge, &mut request) {
            None => futures::future::Either::Right(self.inner.call(request)),
            Some(refusal) => futures::future::Either::Left(std::future::ready(Ok(refusal))),
        }
    }
}

/// Why a request has no caller.
enum Unidentified {
    /// It carries a key, but this edge has no snapshot yet to check it against.
    NotReady,
    Refused(AuthError),
}

/// Who sends `request`: its key's principal and the key, or anonymous (no key, where the auth
/// mode allows that).
fn identify<'r>(
    edge: &Edge,
    request: &'r Request,
    source: Option<IpAddr>,
) -> Result<(Arc<Principal>, Option<&'r str>), Unidentified> {
    let auth = edge.auth();
    match auth.credentials(request.headers(), source) {
        Credentials::Key(token) => {
            if !edge.holder().is_ready() {
                return Err(Unidentified::NotReady);
            }
            auth.accounts
                .authenticate_shared(&edge.holder().load(), token, unix_now())
                .map(|principal| (principal, Some(token)))
                .map_err(Unidentified::Refused)
        }
        Credentials::Anonymous => Ok((Arc::new(Principal::anonymous()), None)),
        Credentials::Missing => Err(Unidentified::Refused(AuthError::Missing)),
        Credentials::Malformed => Err(Unidentified::Refused(AuthError::Malformed)),
    }
}

/// The caller of a plain read, when it has a valid key (or may be anonymous): for the read fast
/// path ([`crate::http::fast`]), which leaves every refusal to the full path (`None`). Carries no
/// token: a plain read never re-checks it.
pub(crate) fn plain_reader(edge: &Edge, request: &Request) -> Option<Caller> {
    let peer = setpoint_serving::auth::peer(request);
    let (principal, _) = identify(edge, request, peer.map(|p| p.ip())).ok()?;
    Some(Caller {
        principal,
        token: None,
        peer,
    })
}

/// Attaches the [`Caller`] to `request`; the refusal when it has none.
fn admit(edge: &Edge, request: &mut Request) -> Option<Response> {
    let auth = edge.auth();
    if auth.is_public(request.uri().path()) {
        return None;
    }
    let grpc = is_grpc(request.headers());
    let peer = setpoint_serving::auth::peer(request);
    let source = peer.map(|p| p.ip());
    // The key first: only a failed authentication is counted against the source or refused
    // for its failures (see `setpoint_serving::auth`).
    let caller = match identify(edge, request, source) {
        Ok((principal, token)) => Caller {
            principal,
            token: token.map(Into::into),
            peer,
        },
        Err(Unidentified::NotReady) => {
            return Some(answer(
                grpc,
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "this edge has no snapshot yet, so it cannot check API keys; retry shortly",
                ),
            ));
        }
        Err(Unidentified::Refused(reason)) => return Some(refuse(edge, source, reason, grpc)),
    };
    request.extensions_mut().insert(caller);
    None
}

fn refuse(edge: &Edge, source: Option<IpAddr>, reason: AuthError, grpc: bool) -> Response {
    let refusal = edge.auth().refuse(source, reason, unix_now(), None);
    if refusal.retry_after_secs.is_some() {
        edge.metrics().auth_failed("rate_limited");
    } else {
        edge.metrics().auth_failed(reason.as_str());
    }
    if grpc {
        refusal.into_grpc()
    } else {
        refusal.into_http()
    }
}

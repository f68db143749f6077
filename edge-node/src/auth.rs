//! Who is calling an edge: the authentication middleware over the edge's whole router (HTTP,
//! SSE and gRPC — gRPC metadata `authorization` is the HTTP/2 header, so one layer covers all
//! three) and the [`Caller`] it attaches to each request.
//!
//! Every request except `/healthz`, `/readyz`, the gRPC health service (and `/metrics` when
//! configured public) needs `Authorization: Bearer <key>`. Keys are checked against the accounts
//! in the edge's own snapshot (`/_setpoint/accounts/…`, replicated like any config, key hashes
//! only), rebuilt when the snapshot's revision moves: a revocation applies to the next request
//! once the batch carrying it reaches the edge. In [`AuthMode::AnonymousLoopback`]
//! (`setpoint dev` only) a request without a key from a loopback address gets every right.
//!
//! Failed attempts are counted per source address ([`FailureLimiter`]); past
//! [`FAILURES_PER_MINUTE`] the source gets 429 (`RESOURCE_EXHAUSTED`) until the minute ends.
//! Each refusal is logged (reason and source, never the key) and counted in
//! `setpoint_edge_auth_failures_total{reason}`. gRPC callers get a trailers-only gRPC status,
//! HTTP callers the JSON error body.
//!
//! This module decides who the caller is and what it may see; the handlers ask the [`Caller`]
//! per path and action. It never talks to the writer: everything it knows is in the snapshot.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use setpoint_core::auth::{Accounts, Action, AuthError, FailureLimiter, Grants, Principal};
use setpoint_core::snapshot::{Entry, Snapshot};
use setpoint_core::{ConfigPath, Revision};

use crate::Edge;
use crate::error::{ApiError, ErrorCode};
use crate::watch::WatchMessage;

/// Whether callers without a key get in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// A key for everything but health (and public metrics).
    #[default]
    Required,
    /// `setpoint dev`: no key needed from loopback addresses.
    AnonymousLoopback,
}

/// Failed authentications allowed per source address and minute.
pub const FAILURES_PER_MINUTE: u32 = 20;

/// How often an open watch checks again that its key is still valid and still grants the
/// watched prefixes (it also checks before the first message after a pause).
pub const WATCH_RECHECK: Duration = Duration::from_secs(1);

/// The accounts of the edge's snapshot, rebuilt when the revision moves and the account records
/// changed (most batches touch no account: the parsed accounts are then reused as they are).
#[derive(Default)]
pub struct AccountsCache {
    cached: ArcSwapOption<Cached>,
}

struct Cached {
    revision: Revision,
    /// The account records the accounts were built from (compared by pointer).
    records: Vec<Arc<Entry>>,
    accounts: Arc<Accounts>,
}

fn accounts_root() -> Option<ConfigPath> {
    ConfigPath::parse(&format!(
        "/{}/accounts",
        setpoint_core::auth::SYSTEM_SEGMENT
    ))
    .ok()
}

impl AccountsCache {
    /// The accounts of `snapshot`.
    pub fn get(&self, snapshot: &Snapshot) -> Arc<Accounts> {
        let cached = self.cached.load_full();
        if let Some(cached) = &cached
            && cached.revision == snapshot.revision()
        {
            return cached.accounts.clone();
        }
        let Some(root) = accounts_root() else {
            return Arc::default();
        };
        let records: Vec<Arc<Entry>> = snapshot.below(&root).cloned().collect();
        let unchanged = cached.as_ref().is_some_and(|cached| {
            cached.records.len() == records.len()
                && cached
                    .records
                    .iter()
                    .zip(&records)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        });
        let accounts = match cached {
            Some(cached) if unchanged => cached.accounts.clone(),
            _ => Arc::new(Accounts::from_snapshot(snapshot)),
        };
        self.cached.store(Some(Arc::new(Cached {
            revision: snapshot.revision(),
            records,
            accounts: accounts.clone(),
        })));
        accounts
    }
}

/// Authentication settings and state of one edge.
pub struct AuthState {
    pub mode: AuthMode,
    pub metrics_public: bool,
    pub accounts: AccountsCache,
    pub limiter: FailureLimiter,
}

impl AuthState {
    pub fn new(mode: AuthMode, metrics_public: bool) -> AuthState {
        AuthState {
            mode,
            metrics_public,
            accounts: AccountsCache::default(),
            limiter: FailureLimiter::new(FAILURES_PER_MINUTE, 60),
        }
    }
}

/// The authenticated caller of one request.
#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
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

/// The names of `path`'s children the caller may see: those it can read something below, never
/// the `_setpoint` namespace.
pub fn visible_children(snapshot: &Snapshot, path: &ConfigPath, grants: &Grants) -> Vec<String> {
    let mut children = snapshot.children(path);
    children.retain(|child| {
        path.join(child).is_ok_and(|p| {
            grants.can_read_somewhere_below(&p) && !setpoint_core::auth::is_system(&p)
        })
    });
    children
}

/// Whether a listing may show `entry` to a caller holding `grants` (never a system record).
pub fn listable(entry: &Entry, grants: &Grants) -> bool {
    !setpoint_core::auth::is_system(&entry.path) && grants.allows(&entry.path, Action::Read)
}

/// Keeps an open watch honest: before a message goes out, at most once per [`WATCH_RECHECK`],
/// checks the caller's key against the edge's current accounts (revoked, expired, disabled,
/// deleted) and that its grants still cover every watched prefix.
pub struct WatchGuard {
    edge: Edge,
    caller: Caller,
    prefixes: Vec<ConfigPath>,
    next_check: Instant,
}

impl WatchGuard {
    pub fn new(edge: Edge, caller: Caller, prefixes: Vec<ConfigPath>) -> WatchGuard {
        WatchGuard {
            edge,
            caller,
            prefixes,
            next_check: Instant::now() + WATCH_RECHECK,
        }
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
        let Some(token) = self.caller.token.clone() else {
            return Ok(());
        };
        let now = Instant::now();
        if now < self.next_check {
            return Ok(());
        }
        self.next_check = now + WATCH_RECHECK;
        let accounts = self.edge.auth().accounts.get(&self.edge.holder().current());
        let principal = accounts
            .authenticate(&token, unix_now())
            .map_err(|reason| {
                tracing::info!(
                    account = %self.caller.principal.account,
                    reason = reason.as_str(),
                    "ending a watch: its key is no longer valid"
                );
                ApiError::new(ErrorCode::Unauthenticated, INVALID_KEY)
            })?;
        for prefix in &self.prefixes {
            if !principal.grants.allows_all_below(prefix, Action::Read) {
                tracing::info!(
                    account = %principal.account,
                    %prefix,
                    "ending a watch: the account may no longer read the prefix"
                );
                return Err(self.caller.forbidden(prefix, Action::Read));
            }
        }
        self.caller.principal = principal;
        Ok(())
    }
}

const MISSING_KEY: &str = "this call needs an API key: Authorization: Bearer <key>";
const INVALID_KEY: &str = "the API key is not valid (unknown, expired or revoked)";

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Paths that never need a key: health (HTTP and gRPC), and metrics when configured public.
fn is_public(path: &str, metrics_public: bool) -> bool {
    matches!(path, "/healthz" | "/readyz")
        || path.starts_with("/grpc.health.v1.Health/")
        || (metrics_public && path == "/metrics")
}

/// `error` as a gRPC status (trailers only) or as the JSON error body.
fn answer(grpc: bool, error: ApiError) -> Response {
    if grpc {
        tonic::Status::from(error).into_http()
    } else {
        error.into_response()
    }
}

/// The middleware: authenticates, then hands the request on with a [`Caller`] attached.
pub async fn authenticate(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    let auth = edge.auth();
    if is_public(request.uri().path(), auth.metrics_public) {
        return next.run(request).await;
    }
    let grpc = is_grpc(request.headers());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let source = peer.map(|p| p.ip());
    let now = unix_now();
    if let Some(ip) = source
        && auth.limiter.is_blocked(ip, now)
    {
        edge.metrics().auth_failed("rate_limited");
        tracing::warn!(source = %ip, "too many failed authentications; refusing this source for now");
        return answer(
            grpc,
            ApiError::new(
                ErrorCode::TooManyRequests,
                "too many failed authentications from this address; try again later",
            ),
        );
    }
    let caller = match bearer(request.headers()) {
        Some(token) => {
            if !edge.holder().is_ready() {
                return answer(
                    grpc,
                    ApiError::new(
                        ErrorCode::StoreUnavailable,
                        "this edge has no snapshot yet, so it cannot check API keys; retry shortly",
                    ),
                );
            }
            let accounts = auth.accounts.get(&edge.holder().current());
            match accounts.authenticate(token, now) {
                Ok(principal) => Caller {
                    principal,
                    token: Some(token.into()),
                    peer,
                },
                Err(reason) => return refuse(&edge, source, reason, grpc),
            }
        }
        None if auth.mode == AuthMode::AnonymousLoopback
            && source.is_some_and(|ip| ip.is_loopback()) =>
        {
            Caller {
                principal: Principal::anonymous(),
                token: None,
                peer,
            }
        }
        None => return refuse(&edge, source, AuthError::Missing, grpc),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn refuse(edge: &Edge, source: Option<IpAddr>, reason: AuthError, grpc: bool) -> Response {
    let failures = source.map(|ip| edge.auth().limiter.record_failure(ip, unix_now()));
    tracing::warn!(
        reason = reason.as_str(),
        source = ?source,
        failures = ?failures,
        "authentication refused"
    );
    edge.metrics().auth_failed(reason.as_str());
    let message = match reason {
        AuthError::Missing => MISSING_KEY,
        _ => INVALID_KEY,
    };
    answer(grpc, ApiError::new(ErrorCode::Unauthenticated, message))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use setpoint_core::auth::{Account, Grant, new_key};
    use setpoint_core::snapshot::{Batch, Change, ChangeKind};
    use setpoint_core::{Format, ParsedValue};

    fn account_change(id: &str, key: &setpoint_core::auth::KeyRecord) -> Change {
        let account = Account {
            id: id.into(),
            description: None,
            grants: vec![Grant {
                prefix: "/a".into(),
                actions: [Action::Read].into(),
            }],
            keys: vec![key.clone()],
            disabled: false,
        };
        Change {
            path: ConfigPath::parse(&format!("/_setpoint/accounts/{id}")).unwrap(),
            version: 1,
            updated_at: String::new(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_request(
                    serde_json::to_value(&account).unwrap(),
                    Some(Format::Json),
                )
                .unwrap(),
            },
        }
    }

    fn other_change(revision: i64) -> Change {
        Change {
            path: ConfigPath::parse("/a/x").unwrap(),
            version: u64::try_from(revision).unwrap(),
            updated_at: String::new(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_stored(Format::Text, "x").unwrap(),
            },
        }
    }

    fn apply(snapshot: &Snapshot, revision: i64, changes: Vec<Change>) -> Snapshot {
        snapshot
            .apply(&Batch {
                revision,
                committed_at_micros: 0,
                changes,
            })
            .unwrap()
            .0
    }

    #[test]
    fn the_cache_rebuilds_only_when_account_records_change() {
        let key = new_key(&[1; 32], &[2; 9], 0, None);
        let cache = AccountsCache::default();
        let s1 = apply(
            &Snapshot::empty(),
            1,
            vec![account_change("svc", &key.record)],
        );
        let first = cache.get(&s1);
        assert!(first.authenticate(&key.token, 1).is_ok());
        let s2 = apply(&s1, 2, vec![other_change(2)]);
        assert!(Arc::ptr_eq(&first, &cache.get(&s2)), "reused");
        let mut revoked = key.record.clone();
        revoked.revoked = true;
        let s3 = apply(&s2, 3, vec![account_change("svc", &revoked)]);
        let third = cache.get(&s3);
        assert!(!Arc::ptr_eq(&first, &third), "rebuilt");
        assert_eq!(
            third.authenticate(&key.token, 1).unwrap_err(),
            AuthError::Revoked
        );
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(header::AUTHORIZATION, value.parse().unwrap());
            map
        };
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn only_health_and_optionally_metrics_are_public() {
        assert!(is_public("/healthz", false));
        assert!(is_public("/grpc.health.v1.Health/Check", false));
        assert!(!is_public("/metrics", false));
        assert!(is_public("/metrics", true));
        assert!(!is_public("/api/config/healthz", true));
        assert!(!is_public("/setpoint.edge.v1.Edge/Get", true));
    }
}

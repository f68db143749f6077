//! API keys at the door, as the writer and the edges check them: which paths need no key,
//! `Authorization: Bearer <key>`, anonymous loopback callers in `setpoint dev`, the per-source
//! failure limit and the messages a refused caller gets.
//!
//! The key is checked first; only a request that fails authentication is counted against its
//! source and can be refused for the source's failures (429 with `Retry-After` past
//! [`FAILURES_PER_MINUTE`]). A request with a valid key never touches the limiter, so it is never
//! refused because others failed from the same address, and costs nothing more.
//!
//! Each service's middleware strings these together with what only it does (the writer audits
//! refusals and waits for its read model; the edge answers gRPC callers with a status). The key
//! check itself is core's (`Accounts::authenticate`), against [`AccountsCache`]'s accounts.
//! Refusals are logged with reason and source, never the key.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use setpoint_core::auth::{AuthError, FailureLimiter, FailureVerdict};

use crate::accounts::AccountsCache;
use crate::error::{Error, ErrorCode};

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

pub const MISSING_KEY: &str = "this call needs an API key: Authorization: Bearer <key>";
pub const INVALID_KEY: &str = "the API key is not valid (unknown, expired or revoked)";

pub const TOO_MANY_FAILURES: &str =
    "too many failed authentications from this address; try again after Retry-After seconds";

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, spaces trimmed).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The peer address axum recorded for `request` (absent when served without connect info).
pub fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

/// What a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    Key(&'a str),
    /// No key, and none needed: loopback in [`AuthMode::AnonymousLoopback`].
    Anonymous,
    /// No key where one is needed.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>` (`Basic …`, an empty `Bearer`, not
    /// text): refused in every mode, never taken for "no header".
    Malformed,
}

/// A refused request: the error, and for a limited source how long until it may try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub error: Error,
    /// Seconds until the source's failure window ends (429s only).
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    /// The answer to an HTTP caller: the JSON error body, `Retry-After` on a 429.
    pub fn into_http(self) -> Response {
        let retry_after = self.retry_after_value();
        let mut response = self.error.into_response();
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }

    /// The answer to a gRPC caller: a trailers-only status, `retry-after` in its metadata on a
    /// `RESOURCE_EXHAUSTED`.
    pub fn into_grpc(self) -> Response {
        let retry_after = self.retry_after_value();
        let mut status = tonic::Status::from(self.error);
        if let Some(value) = retry_after
            && let Ok(value) = value.to_str().unwrap_or_default().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status.into_http()
    }

    fn retry_after_value(&self) -> Option<HeaderValue> {
        self.retry_after_secs.map(HeaderValue::from)
    }
}

/// Authentication settings and state of one node.
pub struct AuthState {
    pub mode: AuthMode,
    /// `/metrics` without a key.
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

    /// Paths that never need a key: health (HTTP and gRPC), and metrics when configured public.
    pub fn is_public(&self, path: &str) -> bool {
        matches!(path, "/healthz" | "/readyz")
            || path.starts_with("/grpc.health.v1.Health/")
            || (self.metrics_public && path == "/metrics")
    }

    /// What `headers` present, from `source`. Only a request with no `Authorization` header at
    /// all can be anonymous.
    pub fn credentials<'a>(
        &self,
        headers: &'a HeaderMap,
        source: Option<IpAddr>,
    ) -> Credentials<'a> {
        if let Some(token) = bearer(headers) {
            return Credentials::Key(token);
        }
        if headers.contains_key(header::AUTHORIZATION) {
            return Credentials::Malformed;
        }
        if self.mode == AuthMode::AnonymousLoopback && source.is_some_and(|ip| ip.is_loopback()) {
            Credentials::Anonymous
        } else {
            Credentials::Missing
        }
    }

    /// Counts a failed authentication against `source`, logs it and gives the answer: 401, or
    /// 429 with the seconds to wait once the source is past [`FAILURES_PER_MINUTE`]. Only
    /// failures come here: a valid key is never refused for its source's failures.
    pub fn refuse(
        &self,
        source: Option<IpAddr>,
        reason: AuthError,
        now: i64,
        request_id: Option<&str>,
    ) -> Refusal {
        let verdict = source.map(|ip| self.limiter.record_failure(ip, now));
        if let Some(FailureVerdict::Limited { retry_after_secs }) = verdict {
            tracing::warn!(
                reason = reason.as_str(),
                source = ?source,
                retry_after_secs,
                request_id = request_id.unwrap_or(""),
                "too many failed authentications from this source; refusing its failures for now"
            );
            return Refusal {
                error: Error::new(ErrorCode::TooManyRequests, TOO_MANY_FAILURES),
                retry_after_secs: Some(retry_after_secs),
            };
        }
        tracing::warn!(
            reason = reason.as_str(),
            source = ?source,
            failures = ?verdict,
            request_id = request_id.unwrap_or(""),
            "authentication refused"
        );
        let message = match reason {
            AuthError::Missing => MISSING_KEY,
            _ => INVALID_KEY,
        };
        Refusal {
            error: Error::new(ErrorCode::Unauthenticated, message),
            retry_after_secs: None,
        }
    }
}

/// Seconds since the Unix epoch (0 before it), the clock keys expire by.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::AUTHORIZATION, value.parse().unwrap());
        map
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn only_health_and_optionally_metrics_are_public() {
        let private = AuthState::new(AuthMode::Required, false);
        let public = AuthState::new(AuthMode::Required, true);
        assert!(private.is_public("/healthz"));
        assert!(private.is_public("/readyz"));
        assert!(private.is_public("/grpc.health.v1.Health/Check"));
        assert!(!private.is_public("/metrics"));
        assert!(public.is_public("/metrics"));
        assert!(!public.is_public("/api/config/healthz"));
        assert!(!public.is_public("/setpoint.edge.v1.Edge/Get"));
    }

    #[test]
    fn anonymous_only_from_loopback_in_dev_mode() {
        let loopback: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let remote: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let dev = AuthState::new(AuthMode::AnonymousLoopback, false);
        let prod = AuthState::new(AuthMode::Required, false);
        let none = HeaderMap::new();
        assert_eq!(dev.credentials(&none, loopback), Credentials::Anonymous);
        assert_eq!(dev.credentials(&none, remote), Credentials::Missing);
        assert_eq!(dev.credentials(&none, None), Credentials::Missing);
        assert_eq!(prod.credentials(&none, loopback), Credentials::Missing);
        let key = headers("Bearer k");
        assert_eq!(dev.credentials(&key, loopback), Credentials::Key("k"));
    }

    #[test]
    fn a_malformed_authorization_header_is_never_anonymous() {
        let loopback: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let dev = AuthState::new(AuthMode::AnonymousLoopback, false);
        for value in ["Basic YTpi", "Bearer", "Bearer   ", "", "spk_x"] {
            assert_eq!(
                dev.credentials(&headers(value), loopback),
                Credentials::Malformed,
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_source_past_the_limit_gets_429_with_retry_after_until_the_window_ends() {
        let auth = AuthState::new(AuthMode::Required, false);
        let source: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        for _ in 0..FAILURES_PER_MINUTE {
            let refusal = auth.refuse(source, AuthError::Unknown, 100, None);
            assert_eq!(refusal.error.code, ErrorCode::Unauthenticated);
            assert_eq!(refusal.error.message, INVALID_KEY);
            assert_eq!(refusal.retry_after_secs, None);
        }
        let limited = auth.refuse(source, AuthError::Unknown, 130, None);
        assert_eq!(limited.error.code, ErrorCode::TooManyRequests);
        assert_eq!(limited.retry_after_secs, Some(30));
        let http = limited.clone().into_http();
        assert_eq!(http.status(), 429);
        assert_eq!(http.headers()[header::RETRY_AFTER], "30");
        let grpc = limited.into_grpc();
        assert_eq!(grpc.headers()["retry-after"], "30");
        assert_eq!(grpc.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
        let fresh = auth.refuse(source, AuthError::Missing, 160, None);
        assert_eq!(fresh.error.message, MISSING_KEY, "a new window");
        assert_eq!(fresh.retry_after_secs, None);
    }
}

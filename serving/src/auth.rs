//! API keys at the door, as the writer and the edges check them: which paths need no key,
//! `Authorization: Bearer <key>`, anonymous loopback callers in `setpoint dev`, the per-source
//! failure limit (429 past [`FAILURES_PER_MINUTE`]) and the messages a refused caller gets.
//!
//! Each service's middleware strings these together with what only it does (the writer audits
//! refusals and waits for its read model; the edge answers gRPC callers with a status). The key
//! check itself is core's (`Accounts::authenticate`), against [`AccountsCache`]'s accounts.
//! Refusals are logged with reason and source, never the key.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, header};
use setpoint_core::auth::{AuthError, FailureLimiter};

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

    /// The 429 for a source that used up its failures, if it has.
    pub fn blocked(&self, source: Option<IpAddr>, now: i64) -> Option<Error> {
        let ip = source?;
        if !self.limiter.is_blocked(ip, now) {
            return None;
        }
        tracing::warn!(source = %ip, "too many failed authentications; refusing this source for now");
        Some(Error::new(
            ErrorCode::TooManyRequests,
            "too many failed authentications from this address; try again later",
        ))
    }

    /// What `headers` present, from `source`.
    pub fn credentials<'a>(
        &self,
        headers: &'a HeaderMap,
        source: Option<IpAddr>,
    ) -> Credentials<'a> {
        match bearer(headers) {
            Some(token) => Credentials::Key(token),
            None if self.mode == AuthMode::AnonymousLoopback
                && source.is_some_and(|ip| ip.is_loopback()) =>
            {
                Credentials::Anonymous
            }
            None => Credentials::Missing,
        }
    }

    /// Counts a refusal against `source`, logs it and gives the 401 to answer with.
    pub fn refuse(
        &self,
        source: Option<IpAddr>,
        reason: AuthError,
        now: i64,
        request_id: Option<&str>,
    ) -> Error {
        let failures = source.map(|ip| self.limiter.record_failure(ip, now));
        tracing::warn!(
            reason = reason.as_str(),
            source = ?source,
            failures = ?failures,
            request_id = request_id.unwrap_or(""),
            "authentication refused"
        );
        let message = match reason {
            AuthError::Missing => MISSING_KEY,
            _ => INVALID_KEY,
        };
        Error::new(ErrorCode::Unauthenticated, message)
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
    fn a_source_past_the_limit_is_refused_until_the_window_ends() {
        let auth = AuthState::new(AuthMode::Required, false);
        let source: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(auth.blocked(source, 100).is_none());
            let error = auth.refuse(source, AuthError::Unknown, 100, None);
            assert_eq!(error.code, ErrorCode::Unauthenticated);
            assert_eq!(error.message, INVALID_KEY);
        }
        let blocked = auth.blocked(source, 130).unwrap();
        assert_eq!(blocked.code, ErrorCode::TooManyRequests);
        assert!(auth.blocked(source, 160).is_none(), "a new window");
        assert_eq!(
            auth.refuse(source, AuthError::Missing, 160, None).message,
            MISSING_KEY
        );
    }
}

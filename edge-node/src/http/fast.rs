//! The read fast path: a plain `GET /api/config/{path}` of an entry the caller may read.
//!
//! The most common request an edge serves, answered before the router: no route matching, no
//! `LIST` rewrite, no extractors, no caller copied into the request's extensions, and its metric
//! series resolved once. It answers exactly as the full path would — the same body, `ETag`,
//! `304` on a matching `If-None-Match`, revision and staleness headers, the same series of
//! `setpoint_edge_http_requests_total` (route `/api/config/{*path}`) — and only when it can:
//! anything else (a query, a percent-encoded path, a rollout instance header, a key that does
//! not authenticate, a path the caller may not read or that holds no entry — listings, refusals,
//! 404s) goes to the full path unchanged, which decides as before. Issue 14: the layers around a
//! read cost a fifth of it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use setpoint_core::ConfigPath;
use setpoint_core::auth::Action;
use setpoint_serving::conditional::{etag, if_none_match_hits};
use setpoint_serving::metrics::Series;

use crate::Edge;

/// The route the full path counts these reads under.
const ROUTE: &str = "/api/config/{*path}";
const PREFIX: &str = "/api/config/";

/// [`FastRead`]'s metric series: 200 and 304.
struct Counted {
    ok: Series,
    not_modified: Series,
}

/// A service that answers plain reads itself and passes every other request to `inner`.
#[derive(Clone)]
pub struct FastRead<S> {
    edge: Edge,
    counted: Arc<Counted>,
    inner: S,
}

impl<S> FastRead<S> {
    pub fn new(edge: Edge, inner: S) -> FastRead<S> {
        let metrics = &edge.metrics().http;
        let counted = Arc::new(Counted {
            ok: metrics.series(ROUTE, &Method::GET, 200),
            not_modified: metrics.series(ROUTE, &Method::GET, 304),
        });
        FastRead {
            edge,
            counted,
            inner,
        }
    }
}

impl<S> tower::Service<Request> for FastRead<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<std::future::Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match answer(&self.edge, &self.counted, &request) {
            Some(response) => Either::Left(std::future::ready(Ok(response))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

/// The answer to `request` when it is a plain read of an entry its caller may read.
fn answer(edge: &Edge, counted: &Counted, request: &Request) -> Option<Response> {
    let started = Instant::now();
    if request.method() != Method::GET || request.uri().query().is_some() {
        return None;
    }
    let raw = request.uri().path().strip_prefix(PREFIX)?;
    if raw.is_empty() || raw.contains('%') {
        return None;
    }
    let headers = request.headers();
    if headers.contains_key(crate::rollouts::INSTANCE_HEADER) {
        return None;
    }
    let path = ConfigPath::parse(raw).ok()?;
    let caller = crate::auth::plain_reader(edge, request)?;
    if !caller.grants().allows(&path, Action::Read) {
        return None;
    }
    let snapshot = edge.holder().load();
    let entry = snapshot.get(&path)?;
    let stale = edge.holder().is_stale();
    let (response, series) = if if_none_match_hits(headers, entry.version) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, etag(entry.version));
        (response, &counted.not_modified)
    } else {
        (super::entry_response(entry), &counted.ok)
    };
    let response = super::annotate(response, snapshot.revision(), stale);
    series.record(started.elapsed().as_secs_f64());
    Some(response)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use setpoint_core::snapshot::{Batch, Change, ChangeKind};
    use setpoint_core::{Format, ParsedValue};

    use super::*;
    use crate::EdgeConfig;
    use crate::auth::AuthMode;

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        let loopback: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(loopback));
        request
    }

    /// Which requests the fast path answers itself; the rest must reach the full path, which
    /// `tests/http.rs` checks answers them alike.
    #[tokio::test]
    async fn answers_plain_reads_and_leaves_the_rest() {
        let edge = Edge::new(EdgeConfig {
            auth: AuthMode::AnonymousLoopback,
            ..EdgeConfig::default()
        })
        .unwrap();
        edge.holder()
            .apply(&Batch {
                revision: 1,
                committed_at_micros: 0,
                changes: vec![Change {
                    path: ConfigPath::parse("/app/a").unwrap(),
                    version: 1,
                    updated_at: "2026-11-01T00:00:00Z".into(),
                    kind: ChangeKind::Put {
                        value: ParsedValue::from_stored(Format::Text, "x").unwrap(),
                    },
                }],
            })
            .unwrap();
        let counted = Counted {
            ok: edge.metrics().http.series(ROUTE, &Method::GET, 200),
            not_modified: edge.metrics().http.series(ROUTE, &Method::GET, 304),
        };
        let answered = |request: Request| answer(&edge, &counted, &request).map(|r| r.status());

        assert_eq!(
            answered(request(Method::GET, "/api/config/app/a", &[])),
            Some(StatusCode::OK)
        );
        assert_eq!(
            answered(request(
                Method::GET,
                "/api/config/app/a",
                &[("if-none-match", "\"1\"")]
            )),
            Some(StatusCode::NOT_MODIFIED)
        );
        for (method, uri, headers) in [
            (Method::GET, "/api/config/app/a?env=prod", &[][..]),
            (Method::GET, "/api/config/app/%61", &[]),
            (Method::GET, "/api/config/app", &[]),
            (Method::GET, "/api/config/app/missing", &[]),
            (Method::GET, "/api/config/", &[]),
            (Method::GET, "/api/other/app/a", &[]),
            (Method::PUT, "/api/config/app/a", &[]),
            (
                Method::GET,
                "/api/config/app/a",
                &[(crate::rollouts::INSTANCE_HEADER, "i-1")][..],
            ),
            (
                Method::GET,
                "/api/config/app/a",
                &[("authorization", "Bearer spk_nope")][..],
            ),
        ] {
            assert_eq!(answered(request(method, uri, headers)), None, "{uri}");
        }
    }
}

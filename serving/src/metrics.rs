//! Request metrics, alike on the writer and the edges: every routed HTTP request (gRPC calls
//! included where they pass through the router) counted and timed by route template (never the
//! raw path: bounded labels), method and status.
//!
//! Each service registers them in its own registry under its own namespace
//! (`setpoint_http_requests_total` on the writer, `setpoint_edge_http_requests_total` on an edge)
//! with the same labels and buckets.
//!
//! The series of each (route, method, status) are resolved once and kept: a request then costs
//! one map lookup by the route it matched — no label hashing inside prometheus, no allocation.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Latency buckets of every request histogram, 100 µs to 5 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The labels, in this order.
pub const LABELS: [&str; 3] = ["route", "method", "status"];

pub struct RequestMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Resolved series: route → (method, status) → counter and histogram. Bounded by the
    /// routes, methods and statuses a service answers with (the labels are bounded anyway).
    resolved: RwLock<HashMap<String, RouteSeries>>,
}

/// The series of one route, by method and status.
type RouteSeries = HashMap<(Method, u16), Series>;

/// The counter and histogram of one (route, method, status).
#[derive(Clone)]
pub struct Series {
    requests: IntCounter,
    duration: Histogram,
}

impl Series {
    /// Counts one request that took `seconds`.
    pub fn record(&self, seconds: f64) {
        self.requests.inc();
        self.duration.observe(seconds);
    }
}

impl RequestMetrics {
    /// `{namespace}_http_requests_total` and `{namespace}_http_request_duration_seconds`,
    /// registered in `registry`.
    pub fn register(
        registry: &Registry,
        namespace: &str,
    ) -> Result<RequestMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{namespace}_http_requests_total"),
                "HTTP requests by route, method and status",
            ),
            &LABELS,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{namespace}_http_request_duration_seconds"),
                "Time to the response head of HTTP requests (a stream: until it opens)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &LABELS,
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(RequestMetrics {
            requests,
            duration,
            resolved: RwLock::default(),
        })
    }

    pub fn observe(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        if let Ok(resolved) = self.resolved.read()
            && let Some(series) = resolved
                .get(route)
                .and_then(|r| r.get(&(method.clone(), status)))
        {
            series.record(seconds);
            return;
        }
        self.resolve(route, method, status).record(seconds);
    }

    /// The series of `route`, `method` and `status`, for a caller that keeps it (a fast path
    /// that counts its requests as the route would, without looking the series up each time).
    pub fn series(&self, route: &str, method: &Method, status: u16) -> Series {
        self.resolve(route, method, status)
    }

    /// The series of a label set seen for the first time, kept for the next requests.
    fn resolve(&self, route: &str, method: &Method, status: u16) -> Series {
        let status_text = status.to_string();
        let labels = [route, method.as_str(), status_text.as_str()];
        let series = Series {
            requests: self.requests.with_label_values(&labels),
            duration: self.duration.with_label_values(&labels),
        };
        if let Ok(mut resolved) = self.resolved.write() {
            resolved
                .entry(route.to_owned())
                .or_default()
                .insert((method.clone(), status), series.clone());
        }
        series
    }
}

/// The request metrics layer: put it on a router with `route_layer` (the route template is only
/// known after routing). Hand-written rather than `middleware::from_fn`: no boxed future, no
/// copy of the inner service, nothing allocated per request (issue 14: every layer of the read
/// path is paid once per read).
#[derive(Clone)]
pub struct Track {
    metrics: Arc<RequestMetrics>,
}

impl Track {
    pub fn new(metrics: Arc<RequestMetrics>) -> Track {
        Track { metrics }
    }
}

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose requests are counted and timed (see [`Track`]).
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        TrackedFuture {
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: request.method().clone(),
            started: Instant::now(),
            metrics: self.metrics.clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`Tracked`] service, counted when it is ready.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        method: Method,
        started: Instant,
        metrics: Arc<RequestMetrics>,
    }
}

impl<F, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.metrics.observe(
                this.route.as_ref().map_or("unmatched", MatchedPath::as_str),
                this.method,
                response.status().as_u16(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_method_and_status() {
        let registry = Registry::new();
        let metrics = Arc::new(RequestMetrics::register(&registry, "test").unwrap());
        let app = Router::new()
            .route("/items/{id}", get(|| async { "ok" }))
            .route_layer(Track::new(metrics));
        let request = Request::get("/items/42").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut text)
            .unwrap();
        assert!(
            text.contains(
                "test_http_requests_total{method=\"GET\",route=\"/items/{id}\",status=\"200\"} 1"
            ),
            "{text}"
        );
    }
}

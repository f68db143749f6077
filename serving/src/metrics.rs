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
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
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

#[derive(Clone)]
struct Series {
    requests: IntCounter,
    duration: Histogram,
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
        let series = self.series(route, method, status);
        series.requests.inc();
        series.duration.observe(seconds);
    }

    fn series(&self, route: &str, method: &Method, status: u16) -> Series {
        let key = (method.clone(), status);
        if let Ok(resolved) = self.resolved.read()
            && let Some(series) = resolved.get(route).and_then(|r| r.get(&key))
        {
            return series.clone();
        }
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
                .insert(key, series.clone());
        }
        series
    }
}

/// Axum middleware (a route layer, so the route template is known) counting every request.
pub async fn track(
    State(metrics): State<Arc<RequestMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    // `MatchedPath` holds an `Arc<str>`: cloning it copies no text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
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
            .route_layer(axum::middleware::from_fn_with_state(metrics, track));
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

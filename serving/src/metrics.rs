//! Request metrics, alike on the writer and the edges: every routed HTTP request (gRPC calls
//! included where they pass through the router) counted and timed by route template (never the
//! raw path: bounded labels), method and status.
//!
//! Each service registers them in its own registry under its own namespace
//! (`setpoint_http_requests_total` on the writer, `setpoint_edge_http_requests_total` on an edge)
//! with the same labels and buckets.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Latency buckets of every request histogram, 100 µs to 5 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The labels, in this order.
pub const LABELS: [&str; 3] = ["route", "method", "status"];

pub struct RequestMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
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
        Ok(RequestMetrics { requests, duration })
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [route, method, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration.with_label_values(&labels).observe(seconds);
    }
}

/// Axum middleware (a route layer, so the route template is known) counting every request.
pub async fn track(
    State(metrics): State<Arc<RequestMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        &route,
        method.as_str(),
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

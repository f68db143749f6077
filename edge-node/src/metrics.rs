//! The edge's Prometheus metrics, in its own registry (never the process-global one).
//!
//! Applied revision and staleness are read from the holder at scrape time, so they are exact
//! whenever they are looked at; the watch hub's counters are the hub's own handles registered
//! here; HTTP requests are counted by the writer's middleware (`setpoint_serving::metrics`:
//! route template, method, status); refused authentications by reason (see [`crate::auth`]).

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use setpoint_serving::metrics::RequestMetrics;

use crate::clients::ClientCounters;
use crate::holder::SnapshotHolder;
use crate::watch::HubCounters;

pub struct Metrics {
    registry: Registry,
    applied_revision: IntGauge,
    staleness: Gauge,
    /// The resumption ring: batches and (about) bytes held.
    ring: IntGaugeVec,
    /// `setpoint_edge_http_requests_total{route,method,status}` and its latency histogram.
    pub http: Arc<RequestMetrics>,
    /// Open connections and those refused past the cap (`setpoint_serving::server`).
    pub connections: setpoint_serving::server::ConnectionMetrics,
    auth_failures: IntCounterVec,
}

impl Metrics {
    pub fn new(hub: &HubCounters, clients: &ClientCounters) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let applied_revision = IntGauge::new(
            "setpoint_edge_applied_revision",
            "Revision of the snapshot this edge serves.",
        )?;
        let staleness = Gauge::new(
            "setpoint_edge_staleness_seconds",
            "Seconds since the last frame from the writer (0 while connected).",
        )?;
        let ring = IntGaugeVec::new(
            Opts::new(
                "setpoint_edge_ring",
                "What the resumption ring holds: unit=batches, or unit=bytes (about; values).",
            ),
            &["unit"],
        )?;
        let http = Arc::new(RequestMetrics::register(&registry, "setpoint_edge")?);
        let connections =
            setpoint_serving::server::ConnectionMetrics::register(&registry, "setpoint_edge")?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "setpoint_edge_auth_failures_total",
                "Requests refused before any check of rights: missing, malformed, unknown, \
                 expired or revoked keys, disabled accounts, and sources refused for too many \
                 failures (rate_limited).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(applied_revision.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(staleness.clone()))?;
        registry.register(Box::new(ring.clone()))?;
        registry.register(Box::new(hub.watchers.clone()))?;
        registry.register(Box::new(hub.events_sent.clone()))?;
        registry.register(Box::new(hub.resets.clone()))?;
        registry.register(Box::new(hub.cut_off.clone()))?;
        registry.register(Box::new(hub.caught_up.clone()))?;
        registry.register(Box::new(hub.queued_bytes.clone()))?;
        registry.register(Box::new(clients.connected.clone()))?;
        registry.register(Box::new(clients.receipts.clone()))?;
        registry.register(Box::new(clients.nacks.clone()))?;
        registry.register(Box::new(clients.propagation.clone()))?;
        registry.register(Box::new(clients.end_to_end.clone()))?;
        registry.register(Box::new(clients.records.clone()))?;
        registry.register(Box::new(clients.bytes.clone()))?;
        Ok(Metrics {
            registry,
            applied_revision,
            staleness,
            ring,
            http,
            connections,
            auth_failures,
        })
    }

    /// The text exposition, with the holder's gauges refreshed first.
    pub fn render(&self, holder: &SnapshotHolder) -> String {
        self.applied_revision.set(holder.revision());
        self.staleness.set(holder.staleness_seconds());
        let (batches, bytes) = holder.ring_usage();
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.ring
            .with_label_values(&["batches"])
            .set(gauge(batches));
        self.ring.with_label_values(&["bytes"]).set(gauge(bytes));
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The registry, for parts of the edge that register their own metrics (the relay).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one refused authentication.
    pub fn auth_failed(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }
}

//! Prometheus metrics of the writer, in a registry of its own (several writers can run in one
//! test process). Served as text on `/metrics`.
//!
//! Also [`MeteredStore`]: a [`Store`] wrapper timing every store operation, so store latency is
//! measured in one place whatever calls it.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use setpoint_serving::metrics::{LATENCY_BUCKETS, RequestMetrics};
use setpoint_serving::server::ConnectionMetrics;

use crate::store::{
    KeyValue, LeaseId, RangeRequest, RangeResult, Read, ReadSet, Revision, Store, StoreError, Txn,
    TxnOutcome, WatchStream,
};

pub struct Metrics {
    pub registry: Registry,
    /// Routed requests by route, method and status (the edges count theirs alike).
    pub http: Arc<RequestMetrics>,
    /// Open connections and those refused past the cap (`setpoint_serving::server`).
    pub connections: ConnectionMetrics,
    pub store_ops: HistogramVec,
    pub commits: IntCounter,
    pub commit_conflicts: IntCounter,
    pub revision: IntGauge,
    /// Per store endpoint (etcd member): 1 while it answers, 0 after a failed call.
    pub store_endpoint_up: IntGaugeVec,
    pub history_removed: IntCounter,
    /// Commit seen by the writer → edge ack, per edge (writer clock only).
    pub replication_propagation: HistogramVec,
    pub edge_applied_revision: IntGaugeVec,
    pub edge_lag_revisions: IntGaugeVec,
    pub edges_connected: IntGauge,
    /// Replication connections closed because a peer sent bytes that are not a frame.
    pub replication_undecodable_frames: IntCounter,
    /// Application instances the edges report, by status (connected, disconnected).
    pub clients: IntGaugeVec,
    /// The same clients by edge, environment and status (for dashboards and alert rules).
    pub fleet_clients: IntGaugeVec,
    /// Connected clients per watched prefix (the most watched, bounded).
    pub fleet_prefix_clients: IntGaugeVec,
    /// Per edge: 1 while its replication link is up, 0 once it ended.
    pub edge_connected: IntGaugeVec,
    /// Audit chain verifications by result (ok, broken, failed).
    pub audit_verifications: IntCounterVec,
    /// Problems the last audit chain verification found (0 before any).
    pub audit_chain_problems: IntGauge,
    /// When the last audit chain verification finished (unix seconds; 0 before any).
    pub audit_verified_at: Gauge,
    /// Rollout records by status and whether their health gates halted them (set at scrape).
    pub rollouts: IntGaugeVec,
    /// Alerts the writer itself evaluates, firing now, by name.
    pub alerts_firing: IntGaugeVec,
    /// Webhook notifications by outcome (delivered, failed after retries, dropped: queue full).
    pub alert_notifications: IntCounterVec,
    /// Refused authentications by reason (missing, unknown, expired, revoked, …).
    pub auth_failures: IntCounterVec,
    /// 1 while this writer leads (may commit), 0 while it stands by.
    pub leader: IntGauge,
    /// Times this writer became leader or stopped being it.
    pub leadership_changes: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let http = Arc::new(RequestMetrics::register(&registry, "setpoint")?);
        let connections = ConnectionMetrics::register(&registry, "setpoint")?;
        let store_ops = HistogramVec::new(
            HistogramOpts::new(
                "setpoint_store_operation_duration_seconds",
                "Store operation latency (txn = commit)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["store", "op", "outcome"],
        )?;
        let commits = IntCounter::new(
            "setpoint_commits_total",
            "Transactions committed by the config model",
        )?;
        let commit_conflicts = IntCounter::new(
            "setpoint_commit_conflicts_total",
            "Transactions that lost a compare and were retried",
        )?;
        let revision = IntGauge::new(
            "setpoint_store_revision",
            "Last store revision this writer committed or read",
        )?;
        let store_endpoint_up = IntGaugeVec::new(
            Opts::new(
                "setpoint_store_endpoint_up",
                "Per etcd member: 1 while it answers, 0 for a second after a failed call.",
            ),
            &["endpoint"],
        )?;
        registry.register(Box::new(store_endpoint_up.clone()))?;
        let history_removed = IntCounter::new(
            "setpoint_history_versions_removed_total",
            "Old versions removed by retention",
        )?;
        let replication_propagation = HistogramVec::new(
            HistogramOpts::new(
                "setpoint_replication_propagation_seconds",
                "Time from the writer seeing a commit to an edge acknowledging it",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["edge"],
        )?;
        let edge_applied_revision = IntGaugeVec::new(
            Opts::new(
                "setpoint_edge_applied_revision",
                "Newest revision each edge acknowledged",
            ),
            &["edge"],
        )?;
        let edge_lag_revisions = IntGaugeVec::new(
            Opts::new(
                "setpoint_edge_lag_revisions",
                "Writer revision minus the edge's applied revision",
            ),
            &["edge"],
        )?;
        let edges_connected = IntGauge::new(
            "setpoint_replication_edges_connected",
            "Edges with an open replication session",
        )?;
        let replication_undecodable_frames = IntCounter::new(
            "setpoint_replication_undecodable_frames_total",
            "Replication connections closed because the peer sent bytes that are not a frame \
             (oversized, unknown version, undecodable or invalid)",
        )?;
        let clients = IntGaugeVec::new(
            Opts::new(
                "setpoint_clients",
                "Application instances reported by the edges, by status (disconnected ones \
                 within the retention window)",
            ),
            &["status"],
        )?;
        let fleet_clients = IntGaugeVec::new(
            Opts::new(
                "setpoint_fleet_clients",
                "Application instances reported by the edges, by edge, environment (empty: none) \
                 and status",
            ),
            &["edge", "env", "status"],
        )?;
        let fleet_prefix_clients = IntGaugeVec::new(
            Opts::new(
                "setpoint_fleet_prefix_clients",
                "Connected application instances watching each prefix (the 200 most watched)",
            ),
            &["prefix"],
        )?;
        let edge_connected = IntGaugeVec::new(
            Opts::new(
                "setpoint_replication_edge_connected",
                "Per edge: 1 while its replication link is up, 0 once it ended",
            ),
            &["edge"],
        )?;
        let audit_verifications = IntCounterVec::new(
            Opts::new(
                "setpoint_audit_verifications_total",
                "Audit chain verifications by result: ok, broken (problems found), failed \
                 (could not read the chain)",
            ),
            &["result"],
        )?;
        let audit_chain_problems = IntGauge::new(
            "setpoint_audit_chain_problems",
            "Problems the last audit chain verification found (0 before any)",
        )?;
        let audit_verified_at = Gauge::new(
            "setpoint_audit_chain_verified_timestamp_seconds",
            "When the last audit chain verification finished, unix seconds (0 before any)",
        )?;
        let rollouts = IntGaugeVec::new(
            Opts::new(
                "setpoint_rollouts",
                "Rollout records by status, and halted=true when the health gates paused or \
                 rolled one back",
            ),
            &["status", "halted"],
        )?;
        let alerts_firing = IntGaugeVec::new(
            Opts::new(
                "setpoint_alerts_firing",
                "Alerts the writer evaluates itself (GET /api/alerts), firing now, by name",
            ),
            &["alert"],
        )?;
        for name in setpoint_core::alerts::NAMES {
            alerts_firing.with_label_values(&[name]).set(0);
        }
        let alert_notifications = IntCounterVec::new(
            Opts::new(
                "setpoint_alert_notifications_total",
                "Alert webhook notifications by outcome: delivered, failed (after every retry), \
                 dropped (queue full)",
            ),
            &["outcome"],
        )?;
        for outcome in ["delivered", "failed", "dropped"] {
            alert_notifications.with_label_values(&[outcome]);
        }
        for result in ["ok", "broken", "failed"] {
            audit_verifications.with_label_values(&[result]);
        }
        registry.register(Box::new(fleet_clients.clone()))?;
        registry.register(Box::new(fleet_prefix_clients.clone()))?;
        registry.register(Box::new(edge_connected.clone()))?;
        registry.register(Box::new(audit_verifications.clone()))?;
        registry.register(Box::new(audit_chain_problems.clone()))?;
        registry.register(Box::new(audit_verified_at.clone()))?;
        registry.register(Box::new(rollouts.clone()))?;
        registry.register(Box::new(alerts_firing.clone()))?;
        registry.register(Box::new(alert_notifications.clone()))?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "setpoint_auth_failures_total",
                "Refused authentications by reason",
            ),
            &["reason"],
        )?;
        let leader = IntGauge::new(
            "setpoint_writer_leader",
            "1 while this writer is the leader (commits), 0 while it is a standby",
        )?;
        let leadership_changes = IntCounter::new(
            "setpoint_writer_leadership_changes_total",
            "Times this writer became leader or stopped being leader",
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(leadership_changes.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(replication_propagation.clone()))?;
        registry.register(Box::new(edge_applied_revision.clone()))?;
        registry.register(Box::new(edge_lag_revisions.clone()))?;
        registry.register(Box::new(edges_connected.clone()))?;
        registry.register(Box::new(replication_undecodable_frames.clone()))?;
        registry.register(Box::new(clients.clone()))?;
        registry.register(Box::new(store_ops.clone()))?;
        registry.register(Box::new(commits.clone()))?;
        registry.register(Box::new(commit_conflicts.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(history_removed.clone()))?;
        Ok(Metrics {
            registry,
            http,
            connections,
            store_ops,
            commits,
            commit_conflicts,
            revision,
            store_endpoint_up,
            history_removed,
            replication_propagation,
            edge_applied_revision,
            edge_lag_revisions,
            edges_connected,
            replication_undecodable_frames,
            clients,
            fleet_clients,
            fleet_prefix_clients,
            edge_connected,
            audit_verifications,
            audit_chain_problems,
            audit_verified_at,
            rollouts,
            alerts_firing,
            alert_notifications,
            auth_failures,
            leader,
            leadership_changes,
        })
    }

    /// Records the outcome of an audit chain verification.
    pub fn audit_verified<E>(&self, result: &Result<setpoint_core::audit::Report, E>) {
        let outcome = match result {
            Ok(report) => {
                self.audit_chain_problems
                    .set(i64::try_from(report.problems.len()).unwrap_or(i64::MAX));
                if report.ok { "ok" } else { "broken" }
            }
            Err(_) => "failed",
        };
        self.audit_verifications.with_label_values(&[outcome]).inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.audit_verified_at.set(now);
    }

    /// Counts the rollout records of `snapshot` by status and whether a health gate halted
    /// them.
    pub fn count_rollouts(&self, snapshot: &setpoint_core::snapshot::Snapshot) {
        use setpoint_core::rollout::{Rollout, Status, records_root};
        let root = records_root();
        let mut counts = std::collections::BTreeMap::new();
        for status in [
            Status::InProgress,
            Status::Paused,
            Status::Completed,
            Status::RolledBack,
        ] {
            for halted in ["true", "false"] {
                counts.insert((status.as_str(), halted), 0i64);
            }
        }
        for entry in snapshot.below(&root) {
            if let Some(rollout) = Rollout::from_value(entry.value.structured()) {
                let halted = if rollout.halted.is_some() {
                    "true"
                } else {
                    "false"
                };
                *counts.entry((rollout.status.as_str(), halted)).or_insert(0) += 1;
            }
        }
        for ((status, halted), n) in counts {
            self.rollouts.with_label_values(&[status, halted]).set(n);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::error!(%err, "cannot encode metrics");
        }
        out
    }
}

/// Times every call into the inner store.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    fn observe<T>(&self, op: &str, started: Instant, result: &Result<T, StoreError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(StoreError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        self.metrics
            .store_ops
            .with_label_values(&[self.inner.kind(), op, outcome])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn endpoints(&self) -> Vec<(String, bool)> {
        self.inner.endpoints()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.observe("get", started, &result);
        result
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult, StoreError> {
        let started = Instant::now();
        let result = self.inner.range(request).await;
        self.observe("range", started, &result);
        result
    }

    async fn read(&self, reads: Vec<Read>) -> Result<ReadSet, StoreError> {
        let started = Instant::now();
        let result = self.inner.read(reads).await;
        self.observe("read", started, &result);
        result
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.txn(txn).await;
        self.observe("txn", started, &result);
        if let Ok(outcome) = &result {
            if outcome.succeeded {
                self.metrics.commits.inc();
                self.metrics.revision.set(outcome.revision);
            } else {
                self.metrics.commit_conflicts.inc();
            }
        }
        result
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, from_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.compact(revision).await;
        self.observe("compact", started, &result);
        result
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let started = Instant::now();
        let result = self.inner.current_revision().await;
        self.observe("current_revision", started, &result);
        result
    }

    async fn lease_grant(&self, ttl: std::time::Duration) -> Result<LeaseId, StoreError> {
        self.inner.lease_grant(ttl).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_keep_alive(lease).await
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_revoke(lease).await
    }
}

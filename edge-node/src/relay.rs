//! The relay: this edge serves the replication protocol to other edges (`--replication-listen`),
//! so a regional edge feeds the edges of its region from memory instead of each crossing to the
//! writer.
//!
//! The sessions are `setpoint-replication`'s, the very code the writer serves with: a
//! downstream edge cannot tell a relay from a writer. What differs is the feed's source — a task
//! here follows this edge's own [`SnapshotHolder`] (every applied batch, re-encoded once and
//! shared; a reset when the holder swapped in a snapshot) — and the [`Host`]: a registry of the
//! edges this one feeds, per-hop propagation, and the client reports they send.
//!
//! Reports flow up: [`Relay::report`] gives the subscriber, for its upstream, every edge below
//! this one (its own downstream with their hop times, and what downstream relays reported,
//! recursively) and their client reports — everything on a new upstream link, changes after —
//! so the writer's `/api/edges` shows the tree and `/api/clients` every client.
//!
//! A relay serves only once its holder has something to serve (a snapshot from disk or its
//! upstream), and never sends an edge anything older than what it holds (the shared session
//! waits for the feed, then says `behind`). Must not: write to the holder, or talk to the
//! writer (the subscriber does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntGauge, Registry};
use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::Revision;
use setpoint_core::clients::{
    ClientFilter, ClientRecord, ClientReport, Fleet, MAX_REPORT_RECORDS, ProgressReport,
};
use setpoint_core::snapshot::Snapshot;
use setpoint_proto::frames::{MAX_RELAYED_CLIENT_REPORTS, RelayReport, RelayedEdge};
use setpoint_replication::feed::{Feed, FeedLimits};
use setpoint_replication::server::{self, Downstream, Host};
use setpoint_replication::sessions::{EdgeSession, Sessions};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::holder::{HubMessage, SnapshotHolder};

/// Where and how this edge serves other edges.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// UDP address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// This edge's server certificate and key, and the CA downstream edges' client certificates
    /// must chain to.
    pub tls: TlsFiles,
    pub limits: FeedLimits,
    /// This edge's id: the `upstream` of the edges it feeds in its reports.
    pub node_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot bind the relay endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("relay metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The relay's registry and metrics; the shared sessions report to it.
pub struct Relay {
    node_id: String,
    /// This edge's own holder: its staleness is what downstream edges are told.
    holder: Arc<SnapshotHolder>,
    feed: Arc<Feed>,
    downstream: Sessions,
    /// What flows up: the edges below and their clients.
    below: Mutex<Below>,
    /// `setpoint_edge_relay_propagation_seconds{edge}`: this relay's feed → the edge's ack.
    propagation: HistogramVec,
    connected: IntGauge,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// What this relay knows of the tree below it, to report upstream.
#[derive(Default)]
struct Below {
    /// The edges each downstream relay reported (their own downstream, recursively), by relay.
    relayed: BTreeMap<String, Vec<RelayedEdge>>,
    /// Per direct downstream edge: batches acked and their propagation, microseconds.
    hops: BTreeMap<String, (u64, u64)>,
    /// Every client below, so a new upstream link can be given everything.
    fleet: Fleet,
    /// Client reports received since the last report upstream.
    pending: Vec<(String, ClientReport)>,
    /// The edge list changed since it was last reported.
    changed: bool,
}

/// How long a relay remembers a client that disconnected (its upstream hears of it sooner).
const FORGET_DISCONNECTED_MS: i64 = 60_000;
/// How long a relay keeps reporting a downstream edge that disconnected (as the writer's default
/// retention: the writer's alert on it lasts as long), before forgetting it and its series.
const FORGET_EDGE: Duration = Duration::from_secs(24 * 3600);

impl Relay {
    fn below(&self) -> MutexGuard<'_, Below> {
        self.below.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reports for this relay's upstream: the edge list when it changed (always when
    /// `full`: a new link), and the client reports received since the last call (every client
    /// below, when `full`), chunked so no frame grows past a thousand client records.
    pub fn report(&self, full: bool) -> Vec<RelayReport> {
        self.forget_edges(FORGET_EDGE);
        let sessions = self.downstream.list();
        let mut below = self.below();
        let edges = (full || below.changed).then(|| {
            let mut edges: Vec<RelayedEdge> = sessions
                .iter()
                .map(|s| {
                    let (acked, micros) = below.hops.get(&s.id).copied().unwrap_or_default();
                    RelayedEdge {
                        id: s.id.clone(),
                        region: s.region.clone(),
                        http_addr: s.http_addr.clone(),
                        upstream: self.node_id.clone(),
                        connected: s.connected,
                        applied_revision: s.applied_revision,
                        hop_acked: acked,
                        hop_micros: micros,
                    }
                })
                .collect();
            for (relay, relayed) in &below.relayed {
                // Below a relay whose link ended, nothing is known to be connected.
                let live = sessions.iter().any(|s| &s.id == relay && s.connected);
                edges.extend(relayed.iter().map(|e| RelayedEdge {
                    connected: e.connected && live,
                    ..e.clone()
                }));
            }
            edges
        });
        below.changed = false;
        let clients: Vec<(String, ClientReport)> = if full {
            below.pending.clear();
            below
                .fleet
                .prune(crate::clients::now_ms(), FORGET_DISCONNECTED_MS);
            let mut by_edge: BTreeMap<String, Vec<ClientRecord>> = BTreeMap::new();
            for record in below.fleet.list(&ClientFilter::default()) {
                by_edge
                    .entry(record.edge.clone())
                    .or_default()
                    .push(record.clone());
            }
            by_edge
                .into_iter()
                .flat_map(|(edge, records)| {
                    let chunks: Vec<Vec<ClientRecord>> = records
                        .chunks(MAX_REPORT_RECORDS)
                        .map(<[ClientRecord]>::to_vec)
                        .collect();
                    chunks.into_iter().enumerate().map(move |(i, records)| {
                        let report = ClientReport {
                            full: i == 0,
                            records,
                        };
                        (edge.clone(), report)
                    })
                })
                .collect()
        } else {
            std::mem::take(&mut below.pending)
        };
        drop(below);
        let mut reports = Vec::new();
        let mut edges = edges;
        let mut current: Vec<(String, ClientReport)> = Vec::new();
        let mut records = 0;
        for (edge, report) in clients {
            if !current.is_empty()
                && (records + report.records.len() > MAX_REPORT_RECORDS
                    || current.len() >= MAX_RELAYED_CLIENT_REPORTS)
            {
                reports.push(RelayReport {
                    edges: edges.take(),
                    clients: std::mem::take(&mut current),
                });
                records = 0;
            }
            records += report.records.len();
            current.push((edge, report));
        }
        if !current.is_empty() || edges.is_some() {
            reports.push(RelayReport {
                edges,
                clients: current,
            });
        }
        reports
    }

    /// Forgets downstream edges disconnected longer than `retention`: their record, series,
    /// hop totals and what they relayed.
    fn forget_edges(&self, retention: Duration) {
        let Some(cutoff) = std::time::SystemTime::now().checked_sub(retention) else {
            return;
        };
        let forgotten = self.downstream.forget(cutoff);
        if forgotten.is_empty() {
            return;
        }
        let mut below = self.below();
        for id in forgotten {
            let _ = self.propagation.remove_label_values(&[&id]);
            below.hops.remove(&id);
            below.relayed.remove(&id);
        }
        below.changed = true;
    }

    /// Every edge this one fed since it started, connected or not, by id.
    pub fn downstream(&self) -> Vec<EdgeSession> {
        self.downstream.list()
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    fn count(&self, connected: usize) {
        self.connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
    }
}

impl Host for Relay {
    fn connected(&self, edge: Downstream) -> u64 {
        let (connection, connected) = self.downstream.connect(edge);
        self.count(connected);
        self.below().changed = true;
        connection
    }

    fn acked(&self, edge: &str, connection: u64, revision: Revision) {
        let revision = revision.min(self.feed.revision());
        if self.downstream.acked(edge, connection, revision).is_some() {
            self.below().changed = true;
        }
    }

    fn propagation(&self, edge: &str, elapsed: Duration) {
        self.propagation
            .with_label_values(&[edge])
            .observe(elapsed.as_secs_f64());
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut below = self.below();
        let hop = below.hops.entry(edge.to_owned()).or_default();
        hop.0 += 1;
        hop.1 = hop.1.saturating_add(micros);
    }

    fn clients(&self, edge: &str, connection: u64, report: ClientReport) {
        if !self.downstream.is_current(edge, connection) {
            return;
        }
        let mut below = self.below();
        below
            .fleet
            .apply(edge, report.clone(), crate::clients::now_ms());
        below.pending.push((edge.to_owned(), report));
    }

    /// Relayed upstream as the whole records it advanced: a relay report names clients whole
    /// (its upstream may have met them through another relay link).
    fn progress(&self, edge: &str, connection: u64, report: ProgressReport) {
        if !self.downstream.is_current(edge, connection) {
            return;
        }
        let ids: Vec<String> = report.progress.iter().map(|p| p.id.clone()).collect();
        let mut below = self.below();
        below.fleet.progress(edge, report);
        let records: Vec<ClientRecord> = ids
            .iter()
            .filter_map(|id| below.fleet.get(id))
            .filter(|record| record.edge == edge)
            .cloned()
            .collect();
        if !records.is_empty() {
            let report = ClientReport {
                full: false,
                records,
            };
            below.pending.push((edge.to_owned(), report));
        }
    }

    fn relayed(&self, edge: &str, connection: u64, report: RelayReport) {
        if !self.downstream.is_current(edge, connection) {
            return;
        }
        let now = crate::clients::now_ms();
        let mut below = self.below();
        if let Some(edges) = report.edges {
            for gone in edges.iter().filter(|e| !e.connected) {
                below.fleet.edge_lost(&gone.id, now);
            }
            below.relayed.insert(edge.to_owned(), edges);
            below.changed = true;
        }
        for (id, clients) in report.clients {
            below.fleet.apply(&id, clients.clone(), now);
            below.pending.push((id, clients));
        }
    }

    fn idle(&self, _edge: &str) {}

    fn disconnected(&self, edge: &str, connection: u64) {
        let (lost, connected) = self.downstream.disconnect(edge, connection);
        self.count(connected);
        if lost {
            let now = crate::clients::now_ms();
            let mut below = self.below();
            below.fleet.edge_lost(edge, now);
            let relayed: Vec<String> = below
                .relayed
                .get(edge)
                .map(|edges| edges.iter().map(|e| e.id.clone()).collect())
                .unwrap_or_default();
            for id in relayed {
                below.fleet.edge_lost(&id, now);
            }
            below.changed = true;
        }
    }

    fn undecodable(&self) {
        tracing::warn!("a downstream edge sent bytes that are not frames");
    }

    fn freshness(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.holder.staleness())
    }

    fn staleness(&self) -> Duration {
        Duration::try_from_secs_f64(self.holder.staleness_seconds()).unwrap_or_default()
    }
}

/// A running relay endpoint; [`RelayServer::shutdown`] stops it and frees the UDP port.
pub struct RelayServer {
    relay: Arc<Relay>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    follow: JoinHandle<()>,
}

impl RelayServer {
    /// Binds the endpoint and serves downstream edges from `holder`; the relay's metrics go
    /// into `registry` (the edge's).
    pub fn start(
        config: &RelayConfig,
        holder: Arc<SnapshotHolder>,
        registry: &Registry,
    ) -> Result<RelayServer, RelayError> {
        let server_config = tls::server_config(&config.tls)?;
        let bind = |source| RelayError::Bind {
            addr: config.listen,
            source,
        };
        let endpoint = quinn::Endpoint::server(server_config, config.listen).map_err(bind)?;
        let local_addr = endpoint.local_addr().map_err(bind)?;
        let propagation = HistogramVec::new(
            HistogramOpts::new(
                "setpoint_edge_relay_propagation_seconds",
                "Seconds from this relay applying a batch to a downstream edge acknowledging it \
                 (one hop).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["edge"],
        )?;
        let connected = IntGauge::new(
            "setpoint_edge_relay_edges_connected",
            "Downstream edges replicating from this edge now.",
        )?;
        registry.register(Box::new(propagation.clone()))?;
        registry.register(Box::new(connected.clone()))?;
        let feed = Feed::new(config.limits);
        let relay = Arc::new(Relay {
            node_id: config.node_id.clone(),
            holder: holder.clone(),
            below: Mutex::new(Below::default()),
            feed: feed.clone(),
            downstream: Sessions::new(),
            propagation,
            connected,
        });
        let follow = tokio::spawn(follow(holder, feed.clone()));
        let accept = tokio::spawn(server::serve(relay.clone(), feed, endpoint.clone()));
        tracing::info!(addr = %local_addr, "relay endpoint listening");
        Ok(RelayServer {
            relay,
            endpoint,
            local_addr,
            accept,
            follow,
        })
    }

    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Says goodbye to every downstream edge and waits until the port is free again.
    pub async fn shutdown(self) {
        self.endpoint
            .close(server::CLOSE_SHUTDOWN, b"edge stopping");
        let _ = self.accept.await;
        self.follow.abort();
        let _ = self.follow.await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// How often the relay looks whether its holder has become ready.
const READY_POLL: Duration = Duration::from_millis(50);

/// Feeds `feed` from `holder`: once the holder is ready, its snapshot; then every batch it
/// applies (encoded once for all sessions), and its snapshot again whenever the holder swapped
/// one in or this task fell behind the holder's broadcast.
async fn follow(holder: Arc<SnapshotHolder>, feed: Arc<Feed>) {
    while !holder.is_ready() {
        tokio::time::sleep(READY_POLL).await;
    }
    // Subscribed before the snapshot is read: a batch applied in between is both in the
    // snapshot and in the queue, and `publish_applied` skips what the feed already has.
    let mut hub = holder.subscribe();
    let reset = |feed: &Feed| {
        let snapshot = Snapshot::clone(&holder.current());
        let revision = snapshot.revision();
        feed.reset(snapshot, revision, Vec::new());
    };
    reset(&feed);
    loop {
        match hub.recv().await {
            Ok(HubMessage::Batch { batch, after, .. }) => {
                feed.publish_applied(&batch, after, Instant::now());
            }
            Ok(HubMessage::Reset { .. }) => reset(&feed),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "relay fell behind its holder; downstream edges resync"
                );
                reset(&feed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

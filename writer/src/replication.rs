//! Replication to edge nodes: the writer's side of the QUIC link.
//!
//! Layout:
//! - [`feed`]: follows the store's watch into a snapshot, a bounded ring of recent batches and a
//!   broadcast to sessions. The store is the only delta source.
//! - [`server`] (`setpoint-replication`'s, shared with relaying edges): one session per edge on
//!   the QUIC endpoint (mutual TLS, ALPN `setpoint/1`): hello, snapshot or ring catch-up, live
//!   batches, heartbeats, acks. The writer is its [`server::Host`].
//!
//! This module owns the session registry ([`Replication::edges`]), the fleet's client view
//! ([`Replication::clients`], folded from the edges' client reports) and the replication metrics.
//! It must not write to the store, and nothing outside it feeds edges.

pub mod feed;
pub use setpoint_replication::server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::Revision;
use setpoint_core::clients::{ClientReport, Fleet, ProgressReport};
use setpoint_proto::frames::RelayReport;
pub use setpoint_proto::frames::RelayedEdge;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

use feed::{Feed, FeedLimits};

/// Where and how the writer serves edges.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// UDP address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// The writer's certificate and key, and the CA edges' client certificates must chain to.
    pub tls: TlsFiles,
    pub limits: FeedLimits,
    /// How long a disconnected client stays in `/api/clients`.
    pub client_retention: Duration,
}

/// Default of [`ReplicationConfig::client_retention`]: a day.
pub const DEFAULT_CLIENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

impl ReplicationConfig {
    pub fn new(listen: SocketAddr, tls: TlsFiles) -> ReplicationConfig {
        ReplicationConfig {
            listen,
            tls,
            limits: FeedLimits::default(),
            client_retention: DEFAULT_CLIENT_RETENTION,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot bind the replication endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub use setpoint_replication::sessions::EdgeSession;
use setpoint_replication::sessions::Sessions;

/// The writer's replication state: the feed and the edges it serves.
pub struct Replication {
    feed: Arc<Feed>,
    metrics: Arc<Metrics>,
    sessions: Sessions,
    /// What each relaying edge reported of the edges below it, by relay id.
    relayed: Mutex<BTreeMap<String, Vec<RelayedEdge>>>,
    /// When this writer first saw each edge below a relay disconnected (relays report state,
    /// not times), for the alert rules' grace.
    relayed_down_since: Mutex<BTreeMap<String, i64>>,
    local_addr: SocketAddr,
    /// Every application instance the edges report, by id.
    fleet: Mutex<Fleet>,
    client_retention: Duration,
    /// When the fleet was last pruned and counted (unix ms).
    fleet_swept_ms: std::sync::atomic::AtomicI64,
    /// The label sets of the fleet's gauges last set, so those no longer counted are removed.
    fleet_series: Mutex<FleetSeries>,
    /// Whether this writer stands by now (`None`: it never does — the embedded store's sole
    /// writer); sessions tell edges, which then look for the leader.
    standby: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The series `setpoint_fleet_clients` and `setpoint_fleet_prefix_clients` show now.
#[derive(Default)]
struct FleetSeries {
    edges: std::collections::BTreeSet<[String; 3]>,
    prefixes: std::collections::BTreeSet<String>,
}

/// Clients by (edge, environment, status), and connected clients by watched prefix (the
/// [`setpoint_core::alerts::MAX_PREFIXES`] most watched; 0 for a prefix only disconnected
/// clients watch), for the fleet's gauges.
#[allow(clippy::type_complexity)]
fn fleet_counts(
    fleet: &Fleet,
) -> (
    BTreeMap<(&str, &str, &'static str), usize>,
    Vec<(&str, usize)>,
) {
    // Walked once a second over every client (100,000 and more): no sorting, no allocation per
    // record.
    let mut counts: HashMap<(&str, &str), [usize; 2]> = HashMap::new();
    let mut by_prefix: HashMap<&str, usize> = HashMap::new();
    for record in fleet.iter() {
        let connected = record.is_connected();
        let (edge, env) = (record.edge.as_str(), record.env.as_deref().unwrap_or(""));
        counts.entry((edge, env)).or_default()[usize::from(!connected)] += 1;
        for (i, prefix) in record.prefixes.iter().enumerate() {
            if !record.prefixes[..i].contains(prefix) {
                *by_prefix.entry(prefix).or_insert(0) += usize::from(connected);
            }
        }
    }
    // Both statuses of every (edge, env) held: a count that fell to 0 must read 0, not vanish
    // (a rule comparing it with its past would then see nothing).
    let mut by_edge = BTreeMap::new();
    for ((edge, env), [connected, disconnected]) in counts {
        by_edge.insert((edge, env, "connected"), connected);
        by_edge.insert((edge, env, "disconnected"), disconnected);
    }
    let mut by_prefix: Vec<(&str, usize)> = by_prefix.into_iter().collect();
    by_prefix.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_prefix.truncate(setpoint_core::alerts::MAX_PREFIXES);
    (by_edge, by_prefix)
}

fn system_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Now, in unix milliseconds (client records' clock).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Replication {
    /// Every edge that connected since the writer started, connected or not, by id.
    pub fn edges(&self) -> Vec<EdgeSession> {
        self.forget_edges();
        self.sessions.list()
    }

    /// Every edge below a relaying edge, as the relays reported them (not connected when their
    /// relay's link ended). The tree: each names its `upstream`.
    pub fn relayed_edges(&self) -> Vec<RelayedEdge> {
        let live: std::collections::BTreeSet<String> = self
            .edges()
            .into_iter()
            .filter(|e| e.connected)
            .map(|e| e.id)
            .collect();
        self.lock_relayed()
            .iter()
            .flat_map(|(relay, edges)| {
                let up = live.contains(relay);
                edges.iter().map(move |e| RelayedEdge {
                    connected: e.connected && up,
                    ..e.clone()
                })
            })
            .collect()
    }

    fn lock_relayed(&self) -> MutexGuard<'_, BTreeMap<String, Vec<RelayedEdge>>> {
        self.relayed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `id` is connected to this writer directly or below a relay other than `except`.
    fn connected_elsewhere(&self, id: &str, except: &str) -> bool {
        self.edges().iter().any(|e| e.id == id && e.connected)
            || self.lock_relayed().iter().any(|(relay, edges)| {
                relay != except && edges.iter().any(|e| e.id == id && e.connected)
            })
    }

    /// Folds in a relay's report: the edges below it replace what it said before (those no
    /// longer connected lose their clients, unless connected elsewhere now), their client
    /// reports go into the fleet as theirs.
    fn relay_reported(&self, relay: &str, connection: u64, report: RelayReport) {
        if !self.sessions.is_current(relay, connection) {
            return;
        }
        let now = unix_ms();
        if let Some(edges) = report.edges {
            let gone: Vec<String> = edges
                .iter()
                .filter(|e| !e.connected)
                .map(|e| e.id.clone())
                .collect();
            self.lock_relayed().insert(relay.to_owned(), edges);
            let gone: Vec<String> = gone
                .into_iter()
                .filter(|id| !self.connected_elsewhere(id, relay))
                .collect();
            if !gone.is_empty() {
                let mut fleet = self.lock_fleet();
                for id in gone {
                    fleet.edge_lost(&id, now);
                }
            }
        }
        for (edge, clients) in report.clients {
            self.apply_clients(&edge, clients);
        }
    }

    /// The fleet's clients (connected, and disconnected within the retention window), read
    /// under its lock by `f`.
    pub fn clients<T>(&self, f: impl FnOnce(&Fleet) -> T) -> T {
        let mut fleet = self.lock_fleet();
        fleet.prune(unix_ms(), self.retention_ms());
        self.count_clients(&fleet);
        f(&fleet)
    }

    /// Forgets edges disconnected longer than the client retention, with their series and
    /// what they relayed (a fleet whose hosts come and go must not grow without bound).
    fn forget_edges(&self) {
        let Some(cutoff) = std::time::SystemTime::now().checked_sub(self.client_retention) else {
            return;
        };
        for id in self.sessions.forget(cutoff) {
            for gauge in [
                &self.metrics.edge_connected,
                &self.metrics.edge_lag_revisions,
                &self.metrics.edge_applied_revision,
            ] {
                let _ = gauge.remove_label_values(&[&id]);
            }
            let _ = self
                .metrics
                .replication_propagation
                .remove_label_values(&[&id]);
            self.lock_relayed().remove(&id);
            tracing::info!(edge = %id, "forgot an edge disconnected longer than the retention");
        }
    }

    fn retention_ms(&self) -> i64 {
        i64::try_from(self.client_retention.as_millis()).unwrap_or(i64::MAX)
    }

    fn lock_fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds in a client report from the edge `id`, if `connection` is still its live one.
    fn clients_reported(&self, id: &str, connection: u64, report: ClientReport) {
        if !self.sessions.is_current(id, connection) {
            return;
        }
        self.apply_clients(id, report);
    }

    /// Folds a client report of the edge `id` into the fleet.
    fn apply_clients(&self, id: &str, report: ClientReport) {
        let mut fleet = self.lock_fleet();
        fleet.apply(id, report, unix_ms());
        self.sweep(&mut fleet);
    }

    /// Folds the edge `id`'s progress of clients it reported before, if `connection` is still
    /// its live one.
    fn progress_reported(&self, id: &str, connection: u64, report: ProgressReport) {
        if !self.sessions.is_current(id, connection) {
            return;
        }
        let mut fleet = self.lock_fleet();
        fleet.progress(id, report);
        self.sweep(&mut fleet);
    }

    /// Prunes and recounts the fleet, at most once a second.
    fn sweep(&self, fleet: &mut Fleet) {
        let now = unix_ms();
        // Pruning and counting walk every client: at most once a second, however many edges
        // report (listings prune before they answer anyway).
        let last = self.fleet_swept_ms.load(Ordering::Relaxed);
        if now - last >= 1000
            && self
                .fleet_swept_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            fleet.prune(now, self.retention_ms());
            self.count_clients(fleet);
        }
    }

    fn count_clients(&self, fleet: &Fleet) {
        let (connected, disconnected) = fleet.counts();
        let gauge = &self.metrics.clients;
        gauge
            .with_label_values(&["connected"])
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        gauge
            .with_label_values(&["disconnected"])
            .set(i64::try_from(disconnected).unwrap_or(i64::MAX));
        let (by_edge, by_prefix) = fleet_counts(fleet);
        // Set the new counts, then remove only the series no longer counted: a reset first
        // would let a scrape in between see none, and restart every rule's `for:` on them.
        let mut shown = self.fleet_series.lock().unwrap_or_else(|e| e.into_inner());
        let mut edges = std::collections::BTreeSet::new();
        for ((edge, env, status), n) in by_edge {
            self.metrics
                .fleet_clients
                .with_label_values(&[edge, env, status])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            edges.insert([edge.to_owned(), env.to_owned(), status.to_owned()]);
        }
        for gone in shown.edges.difference(&edges) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = self.metrics.fleet_clients.remove_label_values(&labels);
        }
        let mut prefixes = std::collections::BTreeSet::new();
        for (prefix, n) in by_prefix {
            self.metrics
                .fleet_prefix_clients
                .with_label_values(&[prefix])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            prefixes.insert(prefix.to_owned());
        }
        for gone in shown.prefixes.difference(&prefixes) {
            let _ = self
                .metrics
                .fleet_prefix_clients
                .remove_label_values(&[gone.as_str()]);
        }
        *shown = FleetSeries { edges, prefixes };
    }

    /// Sets every edge's lag gauge from the feed's revision now (acks alone would leave the lag
    /// of an edge that stopped acknowledging where it was).
    pub fn refresh_lag_gauges(&self) {
        for edge in self.edges() {
            self.metrics
                .edge_lag_revisions
                .with_label_values(&[&edge.id])
                .set(self.lag(&edge));
        }
    }

    /// The edges and clients as the alert rules see them.
    pub fn alert_inputs(
        &self,
    ) -> (
        Vec<setpoint_core::alerts::EdgeState>,
        Vec<setpoint_core::alerts::ClientState>,
    ) {
        use setpoint_core::alerts::{ClientState, EdgeState};
        let mut edges: BTreeMap<String, EdgeState> = self
            .edges()
            .into_iter()
            .map(|edge| {
                let state = EdgeState {
                    lag: if edge.connected { self.lag(&edge) } else { 0 },
                    connected: edge.connected,
                    disconnected_at_ms: edge.disconnected_at.map(system_ms),
                    id: edge.id.clone(),
                };
                (edge.id, state)
            })
            .collect();
        // Edges below a relay count too (a leaf gone is as gone as a direct edge); one that is
        // also known directly is judged by whichever link is up.
        let now = unix_ms();
        let mut down_since = self
            .relayed_down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let relayed = self.relayed_edges();
        down_since.retain(|id, _| relayed.iter().any(|e| &e.id == id && !e.connected));
        for edge in relayed {
            if edges.get(&edge.id).is_some_and(|known| known.connected) {
                continue;
            }
            let state = if edge.connected {
                EdgeState {
                    id: edge.id.clone(),
                    connected: true,
                    disconnected_at_ms: None,
                    lag: (self.feed.config_revision() - edge.applied_revision).max(0),
                }
            } else {
                let since = *down_since.entry(edge.id.clone()).or_insert(now);
                if edges
                    .get(&edge.id)
                    .is_some_and(|known| known.disconnected_at_ms.is_some_and(|at| at <= since))
                {
                    continue;
                }
                EdgeState {
                    id: edge.id.clone(),
                    connected: false,
                    disconnected_at_ms: Some(since),
                    lag: 0,
                }
            };
            edges.insert(edge.id, state);
        }
        drop(down_since);
        let edges = edges.into_values().collect();
        // In the fleet's own order: the rules need no sorting (sorting 100,000 records by id
        // every evaluation was a fifth of the writer's work at that scale).
        let clients = self.clients(|fleet| {
            fleet
                .iter()
                .map(|r| ClientState {
                    id: r.id.clone(),
                    edge: r.edge.clone(),
                    prefixes: r.prefixes.clone(),
                    disconnected_at_ms: r.disconnected_at_ms,
                })
                .collect()
        });
        (edges, clients)
    }

    /// The newest revision the feed has seen.
    pub fn revision(&self) -> Revision {
        self.feed.revision()
    }

    /// How many revisions `edge` trails the last config change (0 when it has everything).
    pub fn lag(&self, edge: &EdgeSession) -> i64 {
        (self.feed.config_revision() - edge.applied_revision).max(0)
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    fn connect(&self, edge: server::Downstream) -> u64 {
        let id = edge.id.clone();
        self.metrics
            .edge_applied_revision
            .with_label_values(&[&id])
            .set(edge.revision);
        self.metrics.edge_connected.with_label_values(&[&id]).set(1);
        let (connection, connected) = self.sessions.connect(edge);
        self.count_connected(connected);
        connection
    }

    fn disconnect(&self, id: &str, connection: u64) {
        let (lost, connected) = self.sessions.disconnect(id, connection);
        self.count_connected(connected);
        if lost {
            self.metrics.edge_connected.with_label_values(&[id]).set(0);
            // A relay's link ended: the edges below it are lost to this writer too.
            let below: Vec<String> = self
                .lock_relayed()
                .get(id)
                .map(|edges| edges.iter().map(|e| e.id.clone()).collect())
                .unwrap_or_default();
            let below: Vec<String> = below
                .into_iter()
                .filter(|e| !self.connected_elsewhere(e, id))
                .collect();
            let mut fleet = self.lock_fleet();
            fleet.edge_lost(id, unix_ms());
            for edge in below {
                fleet.edge_lost(&edge, unix_ms());
            }
            self.count_clients(&fleet);
        }
    }

    fn count_connected(&self, connected: usize) {
        self.metrics
            .edges_connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
    }

    /// Records an ack from `id` and refreshes its lag.
    fn acked(&self, id: &str, connection: u64, revision: Revision) {
        // An edge cannot have applied what the feed has not seen.
        let revision = revision.min(self.feed.revision());
        let Some(applied) = self.sessions.acked(id, connection, revision) else {
            return;
        };
        self.metrics
            .edge_applied_revision
            .with_label_values(&[id])
            .set(applied);
        self.refresh_lag(id);
    }

    fn refresh_lag(&self, id: &str) {
        let applied = self.sessions.applied_revision(id).unwrap_or(0);
        let lag = (self.feed.config_revision() - applied).max(0);
        self.metrics
            .edge_lag_revisions
            .with_label_values(&[id])
            .set(lag);
    }

    fn observe_propagation(&self, id: &str, elapsed: Duration) {
        self.metrics
            .replication_propagation
            .with_label_values(&[id])
            .observe(elapsed.as_secs_f64());
    }
}

/// The writer's side of every edge session: the registry, the fleet view and the metrics.
impl server::Host for Replication {
    fn connected(&self, edge: server::Downstream) -> u64 {
        self.connect(edge)
    }

    fn acked(&self, edge: &str, connection: u64, revision: Revision) {
        Replication::acked(self, edge, connection, revision);
    }

    fn propagation(&self, edge: &str, elapsed: Duration) {
        self.observe_propagation(edge, elapsed);
    }

    fn clients(&self, edge: &str, connection: u64, report: ClientReport) {
        self.clients_reported(edge, connection, report);
    }

    fn progress(&self, edge: &str, connection: u64, report: ProgressReport) {
        self.progress_reported(edge, connection, report);
    }

    fn relayed(&self, edge: &str, connection: u64, report: RelayReport) {
        self.relay_reported(edge, connection, report);
    }

    fn idle(&self, edge: &str) {
        self.refresh_lag(edge);
    }

    fn disconnected(&self, edge: &str, connection: u64) {
        self.disconnect(edge, connection);
    }

    fn undecodable(&self) {
        self.metrics.replication_undecodable_frames.inc();
    }

    fn standby(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.standby.clone()
    }
}

/// A running replication endpoint; [`ReplicationServer::shutdown`] stops it and releases the
/// store and the UDP port.
pub struct ReplicationServer {
    replication: Arc<Replication>,
    endpoint: quinn::Endpoint,
    accept: JoinHandle<()>,
}

impl ReplicationServer {
    /// Binds the endpoint and serves edges from `feed`.
    pub fn start(
        config: &ReplicationConfig,
        feed: Arc<Feed>,
        metrics: Arc<Metrics>,
        standby: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<ReplicationServer, ReplicationError> {
        let server_config = tls::server_config(&config.tls)?;
        let endpoint = quinn::Endpoint::server(server_config, config.listen).map_err(|source| {
            ReplicationError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| ReplicationError::Bind {
                addr: config.listen,
                source,
            })?;
        let replication = Arc::new(Replication {
            feed,
            metrics,
            sessions: Sessions::new(),
            relayed: Mutex::new(BTreeMap::new()),
            relayed_down_since: Mutex::new(BTreeMap::new()),
            local_addr,
            fleet: Mutex::new(Fleet::new()),
            client_retention: config.client_retention,
            fleet_swept_ms: std::sync::atomic::AtomicI64::new(0),
            fleet_series: Mutex::new(FleetSeries::default()),
            standby,
        });
        let accept = tokio::spawn(server::serve(
            replication.clone(),
            replication.feed.clone(),
            endpoint.clone(),
        ));
        tracing::info!(addr = %local_addr, "replication endpoint listening");
        Ok(ReplicationServer {
            replication,
            endpoint,
            accept,
        })
    }

    pub fn replication(&self) -> &Arc<Replication> {
        &self.replication
    }

    /// Says goodbye to every edge and waits until the port is free again.
    pub async fn shutdown(self) {
        self.endpoint
            .close(server::CLOSE_SHUTDOWN, b"writer stopping");
        let _ = self.accept.await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tls_alpn_is_the_frame_codecs() {
        assert_eq!(
            setpoint_cluster::tls::ALPN,
            setpoint_proto::frames::ALPN,
            "cluster repeats the ALPN because it must not depend on proto"
        );
    }
}

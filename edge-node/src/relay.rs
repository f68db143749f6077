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
//! A relay serves only once its holder has something to serve (a snapshot from disk or its
//! upstream), and never sends an edge anything older than what it holds (the shared session
//! waits for the feed, then says `behind`). Must not: write to the holder, or talk to the
//! writer (the subscriber does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntGauge, Registry};
use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::Revision;
use setpoint_core::clients::ClientReport;
use setpoint_core::snapshot::Snapshot;
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
    feed: Arc<Feed>,
    downstream: Sessions,
    /// `setpoint_edge_relay_propagation_seconds{edge}`: this relay's feed → the edge's ack.
    propagation: HistogramVec,
    connected: IntGauge,
}

impl Relay {
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
        connection
    }

    fn acked(&self, edge: &str, connection: u64, revision: Revision) {
        let revision = revision.min(self.feed.revision());
        self.downstream.acked(edge, connection, revision);
    }

    fn propagation(&self, edge: &str, elapsed: Duration) {
        self.propagation
            .with_label_values(&[edge])
            .observe(elapsed.as_secs_f64());
    }

    fn clients(&self, _edge: &str, _connection: u64, _report: ClientReport) {}

    fn idle(&self, _edge: &str) {}

    fn disconnected(&self, edge: &str, connection: u64) {
        let (_, connected) = self.downstream.disconnect(edge, connection);
        self.count(connected);
    }

    fn undecodable(&self) {
        tracing::warn!("a downstream edge sent bytes that are not frames");
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

//! The replication subscriber: the edge's side of the QUIC link to its upstream — the writer, or
//! a regional edge relaying the writer's stream (the same protocol either way).
//!
//! Dials an upstream (mutual TLS, ALPN `setpoint/1`), says `Hello` with the revision the holder
//! already has, then feeds the [`SnapshotHolder`]: a snapshot transfer (`SnapshotBegin`, chunks,
//! `SnapshotEnd`) replaces the holder's snapshot, each `Batch` is applied in revision order
//! (duplicates and revisions at or below the holder's are skipped), heartbeats refresh
//! staleness. Applied revisions are acked, coalesced while more frames are already buffered.
//!
//! Upstreams come in order of preference (regional edges first, the writer last). The edge
//! starts with the first; after a failure or 2.5 s of silence it goes at once to the next, and
//! backs off (jittered, 100 ms → 5 s) only after a whole round failed. While on a later one, it
//! probes the earlier ones every [`PROBE_INTERVAL`] (a hello and the first answer) and returns to
//! the first that would serve it. Any upstream feeds (each follows the writer's stream), and the
//! Hello's revision makes it resume by delta or send a snapshot.
//!
//! Never backwards: an upstream that holds less than this edge says `behind` (and is left for
//! the next one), and a snapshot older than the holder's is refused the same way, so failing over
//! to a lagging relay can never move the edge — or its watchers — back in time.
//!
//! What kind of source an upstream is (`Frame::SourceState`, first and on every change): a relay
//! cut off from the writer makes the edge as stale as the relay — heartbeats do not make it
//! fresh; a standby writer serves but is not where the edge belongs (the leader's fleet view,
//! which rollout health gates and alerts read, would miss its clients). Either way the edge
//! keeps following it and probes the upstreams after it too, moving to the first that answers
//! as neither stale nor a standby.
//!
//! Peer catch-up: when a whole round of the configured upstreams failed, the edge asks its
//! [`PeerFinder`] (gossip: the live regional edges of its region that said they hold at least as
//! much, most advanced first) and follows the first that serves, exactly as it would a relay,
//! while probing the configured upstreams; it returns to the first of them that would serve. A
//! peer is only a stopgap, so it is never probed for or returned to, and `/healthz` names it.
//!
//! This module is the holder's only writer. It must not serve anything, and never trusts an
//! upstream's bytes: every frame is validated by the codec before it touches the holder.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::Revision;
use setpoint_core::snapshot::{Entry, Snapshot};
use setpoint_proto::frames::{self, Frame, FrameError};
use setpoint_replication::server::BEHIND;
use tokio::io::BufReader;

use crate::clients::ClientRegistry;
use crate::holder::{SnapshotHolder, Upstream};
use crate::relay::Relay;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reserve at most this many entries up front, whatever a `SnapshotBegin` announces.
const MAX_RESERVE: usize = 100_000;
/// A writer sends a heartbeat every second when idle; this long without any frame (two and a half
/// missed heartbeats) means it is gone (killed, paused, cut off), well before QUIC's idle timeout:
/// the edge says it is stale — within 3 s of the writer's last word — and moves on to another
/// replica.
const WRITER_SILENCE: Duration = Duration::from_millis(2_500);
/// How often client registry changes go to the writer.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often an edge on a less preferred upstream checks whether a preferred one would serve it.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// How long a probe waits for an upstream's first answer: longer than a relay waits for its feed
/// to reach the edge's revision before it says `behind`.
const PROBE_WAIT: Duration = Duration::from_secs(4);

/// A peer to catch up from: a regional edge of this edge's region found by gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    /// `host:port` of its replication endpoint; its certificate must carry the host.
    pub addr: String,
}

/// Given this edge's revision, the peers it may catch up from, most preferred first.
#[derive(Clone)]
pub struct PeerFinder(Arc<dyn Fn(Revision) -> Vec<Peer> + Send + Sync>);

impl PeerFinder {
    pub fn new(find: impl Fn(Revision) -> Vec<Peer> + Send + Sync + 'static) -> PeerFinder {
        PeerFinder(Arc::new(find))
    }

    fn find(&self, revision: Revision) -> Vec<Peer> {
        (self.0)(revision)
    }
}

impl std::fmt::Debug for PeerFinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerFinder")
    }
}

/// How an edge reaches its writer and introduces itself.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// `host:port` of each upstream's replication endpoint (UDP), most preferred first
    /// (regional edges, then the writer's replicas), resolved on every attempt.
    pub upstreams: Vec<String>,
    /// The name every writer's certificate must carry (`None`: the host part of its address).
    pub server_name: Option<String>,
    /// The edge's client certificate and key, and the CA the writer's certificate chains to.
    pub tls: TlsFiles,
    pub node_id: String,
    pub region: String,
    /// Where this edge serves HTTP/gRPC (reported to the writer).
    pub http_addr: String,
    /// The client registry to report to the writer (on a second, one-way stream).
    pub clients: Option<Arc<ClientRegistry>>,
    /// This edge's relay, whose reports of the edges below go up the same stream.
    pub relay: Option<Arc<Relay>>,
    /// Where to catch up when every upstream is gone (`None`: only the upstreams).
    pub peers: Option<PeerFinder>,
}

impl SubscriberConfig {
    pub fn new(writer: impl Into<String>, tls: TlsFiles, node_id: impl Into<String>) -> Self {
        SubscriberConfig {
            upstreams: vec![writer.into()],
            server_name: None,
            tls,
            node_id: node_id.into(),
            region: String::new(),
            http_addr: String::new(),
            clients: None,
            relay: None,
            peers: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("replication TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("no upstream to replicate from")]
    NoUpstream,
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("upstream closed the stream")]
    Closed,
    #[error("the upstream sent nothing for {0:?}")]
    Silent(Duration),
    #[error("upstream said goodbye: {0}")]
    Goodbye(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The upstream holds less than this edge (it said so, or offered an older snapshot).
    #[error("upstream is behind this edge: {0}")]
    Behind(String),
    /// A relay answered a probe saying it is cut off from the writer itself.
    #[error("upstream is stale itself")]
    Stale,
    /// A writer answered a probe saying it is a standby.
    #[error("upstream is a standby writer")]
    Standby,
    /// A more preferred upstream answered a probe: switch to it.
    #[error("upstream {0} is preferred and serves again")]
    Preferred(usize),
}

/// One upstream to follow: a configured one, or a peer found by gossip.
struct Target<'a> {
    addr: &'a str,
    /// The peer's node id (`None`: a configured upstream).
    peer: Option<&'a str>,
    /// The configured upstreams to probe meanwhile and return to (indices from 0).
    preferred: &'a [String],
    /// The configured upstreams after this one (indices from `preferred.len() + 1`): probed too
    /// while this one says it is stale itself or a standby, so an edge leaves a relay cut off
    /// from the writer, or a standby writer, for a fresher upstream or the leader further down
    /// its list.
    later: &'a [String],
}

/// Which upstream to use next: the preference order and how many attempts failed since the
/// last one that was heard from (a whole round of failures earns a backoff).
#[derive(Debug)]
struct Order {
    count: usize,
    current: usize,
    failures: usize,
}

impl Order {
    fn new(count: usize) -> Order {
        Order {
            count,
            current: 0,
            failures: 0,
        }
    }

    /// The current upstream failed (`heard`: after it had answered). Moves to the next one;
    /// true when a whole round has failed since anyone was heard, so the caller backs off.
    fn failed(&mut self, heard: bool) -> bool {
        if heard {
            self.failures = 0;
        }
        self.failures += 1;
        self.current = (self.current + 1) % self.count.max(1);
        self.failures.is_multiple_of(self.count.max(1))
    }

    /// A more preferred upstream answered a probe.
    fn prefer(&mut self, index: usize) {
        self.current = index.min(self.count.saturating_sub(1));
        self.failures = 0;
    }
}

/// Follows the upstreams until `shutdown` resolves. Fails only when the TLS material is unusable
/// or there is no upstream.
pub async fn run(
    config: SubscriberConfig,
    holder: Arc<SnapshotHolder>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SubscriberError> {
    if config.upstreams.is_empty() {
        return Err(SubscriberError::NoUpstream);
    }
    let client_config = tls::client_config(&config.tls)?;
    let mut backoff = Backoff::new(&config.node_id);
    let mut order = Order::new(config.upstreams.len());
    tokio::pin!(shutdown);
    loop {
        let index = order.current;
        let Some(upstream) = config.upstreams.get(index) else {
            return Err(SubscriberError::NoUpstream);
        };
        let mut heard = false;
        let target = Target {
            addr: upstream,
            peer: None,
            preferred: &config.upstreams[..index],
            later: &config.upstreams[index + 1..],
        };
        let ended = tokio::select! {
            _ = &mut shutdown => break,
            ended = session(target, &config, &client_config, &holder, &mut heard) => ended,
        };
        holder.set_connected(false);
        holder.set_upstream(None);
        if let SessionError::Preferred(preferred) = ended {
            order.prefer(preferred);
            let to = &config.upstreams[order.current];
            tracing::info!(from = %upstream, %to, "moving to an upstream that serves (preferred, or fresher)");
            backoff.reset();
            continue;
        }
        if heard {
            backoff.reset();
        }
        let round_failed = order.failed(heard);
        tracing::warn!(%upstream, reason = %ended, "replication link down");
        if round_failed && let Some(finder) = &config.peers {
            // Every configured upstream failed: catch up from a peer until one serves again.
            let back = tokio::select! {
                _ = &mut shutdown => break,
                back = follow_peers(finder, &config, &client_config, &holder) => back,
            };
            if let Some(index) = back {
                order.prefer(index);
                backoff.reset();
                continue;
            }
        }
        // Another upstream is likely alive: try it at once; back off only once all have failed.
        let delay = if round_failed {
            backoff.next()
        } else {
            Duration::ZERO
        };
        tracing::debug!(retry_in = ?delay, "next replication attempt");
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    holder.set_connected(false);
    holder.set_upstream(None);
    Ok(())
}

/// Follows the peers `finder` offers, one after another, while every configured upstream is
/// unreachable. Returns the index of the configured upstream that would serve again, or `None`
/// once no peer serves (the caller backs off and tries its upstreams again).
async fn follow_peers(
    finder: &PeerFinder,
    config: &SubscriberConfig,
    client_config: &quinn::ClientConfig,
    holder: &SnapshotHolder,
) -> Option<usize> {
    loop {
        let mut heard_any = false;
        for peer in finder.find(holder.revision()) {
            let mut heard = false;
            let target = Target {
                addr: &peer.addr,
                peer: Some(&peer.id),
                preferred: &config.upstreams,
                later: &[],
            };
            tracing::info!(peer = %peer.id, addr = %peer.addr, revision = holder.revision(), "every upstream is gone: catching up from a peer");
            let ended = session(target, config, client_config, holder, &mut heard).await;
            holder.set_connected(false);
            holder.set_upstream(None);
            if let SessionError::Preferred(index) = ended {
                let to = &config.upstreams[index.min(config.upstreams.len() - 1)];
                tracing::info!(peer = %peer.id, %to, "an upstream serves again: leaving the peer");
                return Some(index);
            }
            tracing::warn!(peer = %peer.id, reason = %ended, "catch-up from a peer ended");
            if heard {
                // It served for a while: ask gossip afresh (a more advanced peer may be up).
                heard_any = true;
                break;
            }
        }
        if !heard_any {
            return None;
        }
        tokio::time::sleep(BACKOFF_MIN).await;
    }
}

async fn session(
    target: Target<'_>,
    config: &SubscriberConfig,
    client_config: &quinn::ClientConfig,
    holder: &SnapshotHolder,
    heard: &mut bool,
) -> SessionError {
    let name = match target.peer {
        // A peer is dialled at the address it advertised; its certificate carries that host.
        Some(_) => host_of(target.addr),
        None => server_name(target.addr, config),
    };
    let connection = match connect(target.addr, name, client_config).await {
        Ok(connection) => connection,
        Err(err) => return err,
    };
    let err = tokio::select! {
        err = follow(&connection, &target, config, holder, heard) => err,
        err = report(&connection, config) => err,
        index = probe(&target, config, client_config, holder) => SessionError::Preferred(index),
    };
    let reason = err.to_string();
    connection.close(0u32.into(), reason.as_bytes());
    err
}

async fn report(connection: &quinn::Connection, config: &SubscriberConfig) -> SessionError {
    if config.clients.is_none() && config.relay.is_none() {
        return std::future::pending().await;
    }
    report_clients(connection, config).await
}

/// Every [`PROBE_INTERVAL`], asks each of the target's preferred upstreams in turn — and,
/// while the target says it is stale itself or a standby, the later ones too — whether it
/// would serve this edge now (fresh, not a standby); completes with the index of the first that
/// would (never, when there is none to ask).
async fn probe(
    target: &Target<'_>,
    config: &SubscriberConfig,
    client_config: &quinn::ClientConfig,
    holder: &SnapshotHolder,
) -> usize {
    if target.preferred.is_empty() && target.later.is_empty() {
        return std::future::pending().await;
    }
    let later_from = target.preferred.len() + 1;
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let later = if holder.upstream_is_stale() || holder.upstream_is_standby() {
            target.later
        } else {
            &[]
        };
        let candidates = target
            .preferred
            .iter()
            .enumerate()
            .chain(later.iter().enumerate().map(|(i, u)| (later_from + i, u)));
        for (index, upstream) in candidates {
            match would_serve(upstream, config, client_config, holder.revision()).await {
                Ok(()) => return index,
                Err(err) => tracing::debug!(%upstream, %err, "upstream would not serve"),
            }
        }
    }
}

/// Connects, says hello with `revision` and reads the first answer: anything but a goodbye or a
/// relay saying it is stale means the upstream serves (and is not behind). The probe
/// connection is then closed.
async fn would_serve(
    upstream: &str,
    config: &SubscriberConfig,
    client_config: &quinn::ClientConfig,
    revision: Revision,
) -> Result<(), SessionError> {
    let connection = connect(upstream, server_name(upstream, config), client_config).await?;
    let answered = tokio::time::timeout(PROBE_WAIT, async {
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        frames::write_frame(&mut send, &hello(config, revision)).await?;
        match frames::read_frame(&mut recv).await? {
            Some(Frame::Goodbye { reason }) => Err(goodbye(reason)),
            Some(Frame::SourceState { stale: true, .. }) => Err(SessionError::Stale),
            Some(Frame::SourceState { standby: true, .. }) => Err(SessionError::Standby),
            Some(_) => Ok(()),
            None => Err(SessionError::Closed),
        }
    })
    .await
    .unwrap_or(Err(SessionError::Silent(PROBE_WAIT)));
    connection.close(0u32.into(), b"probe");
    answered
}

fn hello(config: &SubscriberConfig, revision: Revision) -> Frame {
    Frame::Hello {
        node_id: config.node_id.clone(),
        region: config.region.clone(),
        revision,
        http_addr: config.http_addr.clone(),
    }
}

fn goodbye(reason: String) -> SessionError {
    if reason.starts_with(BEHIND) {
        SessionError::Behind(reason)
    } else {
        SessionError::Goodbye(reason)
    }
}

/// The name a configured upstream's certificate must carry.
fn server_name(upstream: &str, config: &SubscriberConfig) -> String {
    config
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(upstream))
}

async fn connect(
    upstream: &str,
    server_name: String,
    client_config: &quinn::ClientConfig,
) -> Result<quinn::Connection, SessionError> {
    let addr = tokio::net::lookup_host(upstream)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| SessionError::Resolve(upstream.to_owned()))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint =
        quinn::Endpoint::client(bind).map_err(|e| SessionError::Connect(e.to_string()))?;
    endpoint.set_default_client_config(client_config.clone());
    let connecting = endpoint
        .connect(addr, &server_name)
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(SessionError::Connect(err.to_string())),
        Err(_) => Err(SessionError::Connect(format!(
            "no answer from {addr} within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// Sends the client registry (and a relay's reports of the edges below) on its own one-way
/// stream: everything first (the upstream replaces what it held for this edge), then what
/// changed, every [`REPORT_INTERVAL`].
async fn report_clients(connection: &quinn::Connection, config: &SubscriberConfig) -> SessionError {
    let mut send = match connection.open_uni().await {
        Ok(send) => send,
        Err(err) => return SessionError::Connect(err.to_string()),
    };
    let mut full = true;
    loop {
        let own = config.clients.iter().map(|c| c.report(full));
        let below = config.relay.iter().flat_map(|r| r.report(full));
        let frames: Vec<Frame> = own
            .flat_map(|report| {
                let whole = report.whole.into_iter().map(Frame::Clients);
                whole.chain(report.progress.into_iter().map(Frame::Progress))
            })
            .chain(below.map(Frame::Relayed))
            .collect();
        for frame in frames {
            if let Err(err) = frames::write_frame(&mut send, &frame).await {
                return err.into();
            }
        }
        full = false;
        tokio::time::sleep(REPORT_INTERVAL).await;
    }
}

/// A snapshot transfer in progress.
struct Incoming {
    revision: Revision,
    entries: Vec<Entry>,
}

async fn follow(
    connection: &quinn::Connection,
    target: &Target<'_>,
    config: &SubscriberConfig,
    holder: &SnapshotHolder,
    heard: &mut bool,
) -> SessionError {
    let (mut send, recv) = match connection.open_bi().await {
        Ok(streams) => streams,
        Err(err) => return SessionError::Connect(err.to_string()),
    };
    if let Err(err) = frames::write_frame(&mut send, &hello(config, holder.revision())).await {
        return err.into();
    }
    let mut recv = BufReader::with_capacity(64 << 10, recv);
    let mut incoming: Option<Incoming> = None;
    let mut unacked: Option<Revision> = None;
    loop {
        // Abandoning a read half-way is fine: the session ends with it.
        let frame = match tokio::time::timeout(WRITER_SILENCE, frames::read_frame(&mut recv)).await
        {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return SessionError::Closed,
            Ok(Err(err)) => return err.into(),
            Err(_) => return SessionError::Silent(WRITER_SILENCE),
        };
        if let Frame::Goodbye { reason } = frame {
            return goodbye(reason);
        }
        if !*heard {
            *heard = true;
            match &frame {
                Frame::SourceState {
                    stale: true,
                    staleness_ms,
                    ..
                } => holder.set_connected_to_stale(Duration::from_millis(*staleness_ms)),
                _ => holder.set_connected(true),
            }
            holder.set_upstream(Some(Upstream {
                addr: target.addr.to_owned(),
                peer: target.peer.map(str::to_owned),
            }));
            tracing::info!(upstream = %target.addr, peer = ?target.peer, revision = holder.revision(), "replication link up");
        }
        holder.touch();
        match handle(frame, holder, &mut incoming) {
            Ok(Some(applied)) => unacked = Some(applied),
            Ok(None) => {}
            Err(err) => return err,
        }
        // Coalesce: ack once nothing more is already buffered.
        if recv.buffer().is_empty()
            && let Some(revision) = unacked.take()
            && let Err(err) = frames::write_frame(&mut send, &Frame::Ack { revision }).await
        {
            return err.into();
        }
    }
}

/// Applies one frame; returns the revision to ack, if any.
fn handle(
    frame: Frame,
    holder: &SnapshotHolder,
    incoming: &mut Option<Incoming>,
) -> Result<Option<Revision>, SessionError> {
    match frame {
        Frame::SnapshotBegin { revision, entries } => {
            let current = holder.revision();
            if revision < current {
                // Swapping it in would move this edge and its watchers back in time.
                return Err(SessionError::Behind(format!(
                    "offered a snapshot at revision {revision}; this edge holds {current}"
                )));
            }
            let reserve = usize::try_from(entries)
                .unwrap_or(MAX_RESERVE)
                .min(MAX_RESERVE);
            *incoming = Some(Incoming {
                revision,
                entries: Vec::with_capacity(reserve),
            });
            Ok(None)
        }
        Frame::SnapshotChunk { entries } => {
            let Some(transfer) = incoming.as_mut() else {
                return Err(SessionError::Protocol(
                    "SnapshotChunk outside a snapshot".into(),
                ));
            };
            for entry in entries {
                transfer.entries.push(entry.into_entry()?);
            }
            Ok(None)
        }
        Frame::SnapshotEnd { revision } => {
            let Some(transfer) = incoming.take() else {
                return Err(SessionError::Protocol(
                    "SnapshotEnd outside a snapshot".into(),
                ));
            };
            if transfer.revision != revision {
                return Err(SessionError::Protocol(format!(
                    "snapshot began at revision {} but ended at {revision}",
                    transfer.revision
                )));
            }
            let count = transfer.entries.len();
            holder.replace(Snapshot::from_entries(revision, transfer.entries));
            tracing::info!(revision, entries = count, "snapshot received");
            Ok(Some(revision))
        }
        Frame::Batch(wire) => {
            if incoming.is_some() {
                return Err(SessionError::Protocol(
                    "Batch inside a snapshot transfer".into(),
                ));
            }
            let current = holder.revision();
            if wire.revision <= current {
                tracing::debug!(
                    revision = wire.revision,
                    current,
                    "skipping a batch already applied"
                );
                return Ok(None);
            }
            let batch = wire.into_batch()?;
            match holder.apply(&batch) {
                Ok(applied) => Ok(Some(applied.revision)),
                Err(err) => {
                    tracing::warn!(%err, "batch not applied");
                    Ok(None)
                }
            }
        }
        Frame::Heartbeat { .. } => {
            holder.set_ready();
            Ok(None)
        }
        Frame::SourceState {
            stale,
            staleness_ms,
            standby,
        } => {
            holder.set_upstream_stale(stale, Duration::from_millis(staleness_ms));
            holder.set_upstream_standby(standby);
            Ok(None)
        }
        Frame::Goodbye { reason } => Err(goodbye(reason)),
        Frame::Hello { .. }
        | Frame::Ack { .. }
        | Frame::Clients(_)
        | Frame::Progress(_)
        | Frame::Relayed(_) => Err(SessionError::Protocol(
            "the writer sent an edge-only frame".into(),
        )),
    }
}

/// `host:port` → `host` (`[::1]:8000` → `::1`): the name a writer's certificate carries.
pub fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// Jittered exponential backoff; the jitter comes from a tiny PRNG seeded per node and process.
struct Backoff {
    next: Duration,
    state: u64,
}

impl Backoff {
    fn new(seed: &str) -> Backoff {
        let mut state = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        for byte in seed.bytes() {
            state = state.rotate_left(5) ^ u64::from(byte);
        }
        Backoff {
            next: BACKOFF_MIN,
            state: state | 1,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// A delay between half and all of the current step; the step then doubles up to the cap.
    fn next(&mut self) -> Duration {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let fraction = 0.5 + (self.state % 1000) as f64 / 2000.0;
        step.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port() {
        assert_eq!(host_of("127.0.0.1:8000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8000"), "::1");
        assert_eq!(host_of("writer.internal:7000"), "writer.internal");
    }

    #[test]
    fn upstreams_are_tried_in_order_and_a_round_of_failures_backs_off() {
        let mut order = Order::new(3);
        assert_eq!(order.current, 0);
        assert!(!order.failed(false));
        assert_eq!(order.current, 1);
        assert!(!order.failed(false));
        assert_eq!(order.current, 2);
        assert!(order.failed(false), "all three failed: back off");
        assert_eq!(order.current, 0);
        // One that was heard from resets the round.
        assert!(!order.failed(true));
        assert_eq!(order.current, 1);
        order.prefer(0);
        assert_eq!(order.current, 0);
        let mut single = Order::new(1);
        assert!(
            single.failed(false),
            "a single upstream backs off every time"
        );
        assert_eq!(single.current, 0);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new("edge-1");
        let first = backoff.next();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        let mut last = first;
        for _ in 0..20 {
            last = backoff.next();
        }
        assert!(last >= BACKOFF_MAX / 2 && last <= BACKOFF_MAX);
        backoff.reset();
        assert!(backoff.next() <= BACKOFF_MIN);
    }
}

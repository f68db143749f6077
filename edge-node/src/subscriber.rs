//! The replication subscriber: the edge's side of the QUIC link to the writer.
//!
//! Dials the writer (mutual TLS, ALPN `setpoint/1`), says `Hello` with the revision the holder
//! already has, then feeds the [`SnapshotHolder`]: a snapshot transfer (`SnapshotBegin`, chunks,
//! `SnapshotEnd`) replaces the holder's snapshot, each `Batch` is applied in revision order
//! (duplicates and revisions at or below the holder's are skipped), heartbeats refresh
//! staleness. Applied revisions are acked, coalesced while more frames are already buffered.
//! Any error or disconnect marks the holder disconnected and reconnects with jittered
//! exponential backoff (100 ms → 5 s); the writer's address is resolved again on every attempt.
//! Given several writer replicas, each attempt after a failure goes to the next one in turn: any
//! replica feeds (the feed follows the store), and the Hello's revision makes the new one resume
//! by delta or send a snapshot, exactly as a reconnect to the same writer would.
//!
//! This module is the holder's only writer. It must not serve anything, and never trusts the
//! writer's bytes: every frame is validated by the codec before it touches the holder.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::Revision;
use setpoint_core::snapshot::{Entry, Snapshot};
use setpoint_proto::frames::{self, Frame, FrameError};
use tokio::io::BufReader;

use crate::clients::ClientRegistry;
use crate::holder::SnapshotHolder;

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

/// How an edge reaches its writer and introduces itself.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// `host:port` of each writer replica's replication endpoint (UDP), resolved on every
    /// attempt; tried in turn.
    pub writers: Vec<String>,
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
}

impl SubscriberConfig {
    pub fn new(writer: impl Into<String>, tls: TlsFiles, node_id: impl Into<String>) -> Self {
        SubscriberConfig {
            writers: vec![writer.into()],
            server_name: None,
            tls,
            node_id: node_id.into(),
            region: String::new(),
            http_addr: String::new(),
            clients: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("replication TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("no writer to replicate from")]
    NoWriter,
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
    #[error("writer closed the stream")]
    Closed,
    #[error("the writer sent nothing for {0:?}")]
    Silent(Duration),
    #[error("writer said goodbye: {0}")]
    Goodbye(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// Follows the writer until `shutdown` resolves. Fails only when the TLS material is unusable.
pub async fn run(
    config: SubscriberConfig,
    holder: Arc<SnapshotHolder>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SubscriberError> {
    let client_config = tls::client_config(&config.tls)?;
    let mut backoff = Backoff::new(&config.node_id);
    tokio::pin!(shutdown);
    let mut turn = 0usize;
    loop {
        let Some(writer) = config.writers.get(turn % config.writers.len().max(1)) else {
            return Err(SubscriberError::NoWriter);
        };
        let mut heard = false;
        let ended = tokio::select! {
            _ = &mut shutdown => break,
            ended = session(writer, &config, &client_config, &holder, &mut heard) => ended,
        };
        holder.set_connected(false);
        if heard {
            backoff.reset();
        }
        // The next replica, unless this is the only one. A writer that just died is likely
        // still dead on the next attempt; another replica is likely alive.
        turn = turn.wrapping_add(1);
        let delay = backoff.next();
        tracing::warn!(%writer, reason = %ended, retry_in = ?delay, "replication link down");
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    holder.set_connected(false);
    Ok(())
}

async fn session(
    writer: &str,
    config: &SubscriberConfig,
    client_config: &quinn::ClientConfig,
    holder: &SnapshotHolder,
    heard: &mut bool,
) -> SessionError {
    let connection = match connect(writer, config, client_config).await {
        Ok(connection) => connection,
        Err(err) => return err,
    };
    let err = match &config.clients {
        Some(clients) => tokio::select! {
            err = follow(&connection, writer, config, holder, heard) => err,
            err = report_clients(&connection, clients) => err,
        },
        None => follow(&connection, writer, config, holder, heard).await,
    };
    let reason = err.to_string();
    connection.close(0u32.into(), reason.as_bytes());
    err
}

async fn connect(
    writer: &str,
    config: &SubscriberConfig,
    client_config: &quinn::ClientConfig,
) -> Result<quinn::Connection, SessionError> {
    let addr = tokio::net::lookup_host(writer)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| SessionError::Resolve(writer.to_owned()))?;
    let server_name = config
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(writer));
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

/// Sends the client registry on its own one-way stream: everything first (the writer replaces
/// what it held for this edge), then what changed, every [`REPORT_INTERVAL`].
async fn report_clients(connection: &quinn::Connection, clients: &ClientRegistry) -> SessionError {
    let mut send = match connection.open_uni().await {
        Ok(send) => send,
        Err(err) => return SessionError::Connect(err.to_string()),
    };
    let mut full = true;
    loop {
        for report in clients.report(full) {
            if let Err(err) = frames::write_frame(&mut send, &Frame::Clients(report)).await {
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
    writer: &str,
    config: &SubscriberConfig,
    holder: &SnapshotHolder,
    heard: &mut bool,
) -> SessionError {
    let (mut send, recv) = match connection.open_bi().await {
        Ok(streams) => streams,
        Err(err) => return SessionError::Connect(err.to_string()),
    };
    let hello = Frame::Hello {
        node_id: config.node_id.clone(),
        region: config.region.clone(),
        revision: holder.revision(),
        http_addr: config.http_addr.clone(),
    };
    if let Err(err) = frames::write_frame(&mut send, &hello).await {
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
        if !*heard {
            *heard = true;
            holder.set_connected(true);
            tracing::info!(%writer, revision = holder.revision(), "replication link up");
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
        Frame::Goodbye { reason } => Err(SessionError::Goodbye(reason)),
        Frame::Hello { .. } | Frame::Ack { .. } | Frame::Clients(_) => Err(SessionError::Protocol(
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

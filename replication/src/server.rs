//! One replication session per downstream edge, over a QUIC connection the endpoint accepted.
//!
//! The edge opens one bidirectional stream and says `Hello` (node id, region, the revision it
//! holds). The node answers with the ring's batches after that revision, or a snapshot in chunks
//! when the ring does not reach back; then live batches as the feed publishes them, and a
//! heartbeat after a second without any frame. Acks on the same stream time each batch (from
//! when this node's feed saw it) and tell the [`Host`] how far the edge is. Client reports (and a
//! relay's reports of the edges below it) come on a second, one-way stream.
//!
//! An edge holding a revision this node has not reached is never sent anything older: the
//! session waits up to [`BEHIND_WAIT`] for the feed to get there, then says `Goodbye` (a reason
//! starting with [`BEHIND`]) and closes with [`CLOSE_BEHIND`], so the edge tries another upstream.
//!
//! A session whose broadcast queue overflows is cut off as too slow with a `Goodbye` and
//! [`CLOSE_TOO_SLOW`]; it reconnects for a snapshot. Undecodable bytes close with
//! [`CLOSE_UNDECODABLE`], well-formed frames out of place with [`CLOSE_PROTOCOL`], so garbage is
//! told apart from a silent peer (which the hello deadline closes with [`CLOSE_PROTOCOL`]).
//! Must not: block the feed, or keep state beyond one session (the host keeps registries).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use setpoint_core::Revision;
use setpoint_core::clients::{ClientReport, ProgressReport};
use setpoint_core::snapshot::Snapshot;
use setpoint_proto::frames::{self, Frame, RelayReport, WireEntry};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use crate::feed::{Feed, FeedBatch, FeedEvent, Start};

/// Application close codes.
pub const CLOSE_SHUTDOWN: quinn::VarInt = quinn::VarInt::from_u32(0);
/// Well-formed frames in the wrong place, a bad Hello, or no Hello before the deadline.
pub const CLOSE_PROTOCOL: quinn::VarInt = quinn::VarInt::from_u32(1);
pub const CLOSE_TOO_SLOW: quinn::VarInt = quinn::VarInt::from_u32(2);
/// Bytes that are not a frame: oversized, an unknown protocol version, a body that does not
/// decode or fails validation.
pub const CLOSE_UNDECODABLE: quinn::VarInt = quinn::VarInt::from_u32(3);
/// This node is behind the edge's revision: it must not move the edge backwards.
pub const CLOSE_BEHIND: quinn::VarInt = quinn::VarInt::from_u32(4);

/// How the `Goodbye` reason of a node behind the edge begins.
pub const BEHIND: &str = "behind:";
/// How long a session waits for the feed to reach an edge that holds more than it has.
pub const BEHIND_WAIT: Duration = Duration::from_secs(2);

/// How long a new connection may take to open its stream and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A heartbeat goes out after this long without any frame to the edge.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Target size of one snapshot chunk; one entry (≤ 1 MiB value) may overshoot it, and the
/// result stays far below `MAX_FRAME_BYTES`.
const CHUNK_BYTES: usize = 1 << 20;
/// Sent-but-unacked batches remembered per session for propagation timing.
const MAX_IN_FLIGHT: usize = 65_536;

/// A downstream edge as its hello introduced it.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub id: String,
    pub region: String,
    /// Where the edge serves HTTP/gRPC.
    pub http_addr: String,
    /// The QUIC peer address.
    pub remote_addr: SocketAddr,
    /// The revision it held when it said hello.
    pub revision: Revision,
}

/// What the node serving edges does with what sessions learn. Called from session tasks; keep
/// each call short (a lock, an update).
pub trait Host: Send + Sync + 'static {
    /// A session started; the returned id names this connection in the other calls, so an old
    /// connection ending does not mark a newer one of the same node disconnected.
    fn connected(&self, edge: Downstream) -> u64;
    /// The edge applied everything up to `revision`.
    fn acked(&self, edge: &str, connection: u64, revision: Revision);
    /// A batch took `elapsed` from this node's feed to the edge's ack.
    fn propagation(&self, edge: &str, elapsed: Duration);
    /// A client report of the edge (checked).
    fn clients(&self, edge: &str, connection: u64, report: ClientReport);
    /// Progress of clients the edge reported whole before on this link (checked).
    fn progress(&self, edge: &str, connection: u64, report: ProgressReport);
    /// A relay's report of the edges below it and their clients (checked).
    fn relayed(&self, edge: &str, connection: u64, report: RelayReport);
    /// A heartbeat went out (nothing else to send for a second).
    fn idle(&self, edge: &str);
    fn disconnected(&self, edge: &str, connection: u64);
    /// A session closed over bytes that are not frames.
    fn undecodable(&self);
    /// Whether this node is itself cut off from the writer, as a flag that changes (`None`: it
    /// never is — the writer). Sessions tell edges with `Frame::SourceState`.
    fn freshness(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
    /// Whether this node is a standby writer now, as a flag that changes (`None`: it never is —
    /// a relay, or a sole writer). Sessions tell edges with `Frame::SourceState`.
    fn standby(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
    /// How long this node has been cut off (asked when it is).
    fn staleness(&self) -> Duration {
        Duration::ZERO
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("edge closed the connection")]
    Closed,
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("undecodable frame: {0}")]
    Undecodable(String),
    #[error("edge too slow; cut off")]
    TooSlow,
    /// A write blocked past the send timeout; the stream may end mid-frame, so no goodbye.
    #[error("edge stopped reading; cut off")]
    Stalled,
    #[error("{0}")]
    Behind(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("node stopping")]
    Stopping,
}

impl From<frames::FrameError> for SessionEnd {
    fn from(err: frames::FrameError) -> SessionEnd {
        use frames::FrameError;
        match err {
            FrameError::TooLarge { .. }
            | FrameError::UnsupportedVersion(_)
            | FrameError::Decode(_)
            | FrameError::Invalid(_) => SessionEnd::Undecodable(err.to_string()),
            FrameError::Io(_) | FrameError::Encode(_) => SessionEnd::Protocol(err.to_string()),
        }
    }
}

/// Accepts connections on `endpoint` until it is closed, serving each from `feed`; then ends
/// every session.
pub async fn serve<H: Host>(host: Arc<H>, feed: Arc<Feed>, endpoint: quinn::Endpoint) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    sessions.spawn(session(host.clone(), feed.clone(), incoming));
                }
                None => break,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    sessions.shutdown().await;
}

async fn session<H: Host>(host: Arc<H>, feed: Arc<Feed>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(err) => {
            tracing::info!(%remote, %err, "replication handshake refused");
            return;
        }
    };
    let end = run(host.as_ref(), &feed, &connection, remote).await;
    match &end {
        SessionEnd::Closed | SessionEnd::Stopping | SessionEnd::Behind(_) => {
            tracing::info!(%remote, reason = %end, "edge session ended");
        }
        _ => tracing::warn!(%remote, reason = %end, "edge session closed"),
    }
    let code = match end {
        SessionEnd::TooSlow | SessionEnd::Stalled => CLOSE_TOO_SLOW,
        SessionEnd::Protocol(_) => CLOSE_PROTOCOL,
        SessionEnd::Behind(_) => CLOSE_BEHIND,
        SessionEnd::Undecodable(_) => {
            host.undecodable();
            CLOSE_UNDECODABLE
        }
        _ => CLOSE_SHUTDOWN,
    };
    connection.close(code, end.to_string().as_bytes());
}

async fn run<H: Host>(
    host: &H,
    feed: &Arc<Feed>,
    connection: &quinn::Connection,
    remote: SocketAddr,
) -> SessionEnd {
    let hello = tokio::time::timeout(HELLO_TIMEOUT, async {
        let (send, mut recv) = connection
            .accept_bi()
            .await
            .map_err(|e| SessionEnd::Lost(e.to_string()))?;
        match frames::read_frame(&mut recv).await? {
            Some(Frame::Hello {
                node_id,
                region,
                revision,
                http_addr,
            }) => Ok((send, recv, node_id, region, revision, http_addr)),
            Some(other) => Err(SessionEnd::Protocol(format!(
                "first frame must be Hello, got {}",
                frame_name(&other)
            ))),
            None => Err(SessionEnd::Closed),
        }
    })
    .await;
    let (mut send, mut recv, node_id, region, revision, http_addr) = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(end)) => return end,
        Err(_) => return SessionEnd::Protocol("no Hello within 5 s".into()),
    };
    if node_id.is_empty() || node_id.len() > 256 || revision < 0 {
        return SessionEnd::Protocol(
            "Hello needs a node id (1-256 bytes) and a revision ≥ 0".into(),
        );
    }
    feed.loaded().await;
    if !feed.wait_for(revision, BEHIND_WAIT).await {
        let reason = format!(
            "{BEHIND} this node is at revision {}, the edge holds {revision}",
            feed.revision()
        );
        say_goodbye(&mut send, connection, reason.clone()).await;
        return SessionEnd::Behind(reason);
    }
    let connection_id = host.connected(Downstream {
        id: node_id.clone(),
        region,
        http_addr,
        remote_addr: remote,
        revision,
    });
    tracing::info!(%remote, node = %node_id, revision, "edge connected");
    let in_flight = Mutex::new(VecDeque::new());
    let session = Session {
        host,
        feed,
        node_id: &node_id,
        connection_id,
        in_flight: &in_flight,
    };
    let end = tokio::select! {
        end = session.send_loop(&mut send, revision) => end,
        end = session.read_loop(&mut recv) => end,
        end = session.client_reports(connection) => end,
    };
    if matches!(end, SessionEnd::TooSlow) {
        say_goodbye(
            &mut send,
            connection,
            "too slow; reconnect for a snapshot".into(),
        )
        .await;
    }
    host.disconnected(&node_id, connection_id);
    end
}

/// Says why before closing, and gives the goodbye a moment to arrive.
async fn say_goodbye(send: &mut quinn::SendStream, connection: &quinn::Connection, reason: String) {
    let goodbye = Frame::Goodbye { reason };
    let said =
        tokio::time::timeout(Duration::from_secs(1), frames::write_frame(send, &goodbye)).await;
    if matches!(said, Ok(Ok(()))) {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(1), connection.closed()).await;
    }
}

struct Session<'a, H> {
    host: &'a H,
    feed: &'a Arc<Feed>,
    node_id: &'a str,
    connection_id: u64,
    in_flight: &'a Mutex<VecDeque<(Revision, Instant)>>,
}

impl<H: Host> Session<'_, H> {
    /// Catch-up, then live batches and heartbeats. Returns only when the session must end.
    async fn send_loop(&self, send: &mut quinn::SendStream, edge_revision: Revision) -> SessionEnd {
        let feed = self.feed;
        let timeout = feed.limits().send_timeout;
        let mut freshness = self.host.freshness();
        let mut standby = self.host.standby();
        let mut state = (
            freshness.as_mut().is_some_and(|f| *f.borrow_and_update()),
            standby.as_mut().is_some_and(|s| *s.borrow_and_update()),
        );
        // A stale relay or a standby says so first, so an edge (or a probe) knows before
        // anything else.
        if (state.0 || state.1)
            && let Err(end) = self.send_source_state(send, state).await
        {
            return end;
        }
        let (mut events, start) = feed.subscribe(edge_revision);
        let mut last_sent = match start {
            Start::Resume(batches) => {
                let mut last = edge_revision;
                for batch in batches {
                    if let Err(end) = self.send_batch(send, &batch).await {
                        return end;
                    }
                    last = batch.revision;
                }
                last
            }
            Start::Snapshot(snapshot) => match send_snapshot(send, &snapshot, timeout).await {
                Ok(revision) => revision,
                Err(end) => return end,
            },
        };
        loop {
            let event = tokio::select! {
                event = tokio::time::timeout(HEARTBEAT, events.recv()) => event,
                stale = changed(&mut freshness) => {
                    state.0 = stale;
                    if let Err(end) = self.send_source_state(send, state).await {
                        return end;
                    }
                    continue;
                }
                is_standby = changed(&mut standby) => {
                    state.1 = is_standby;
                    if let Err(end) = self.send_source_state(send, state).await {
                        return end;
                    }
                    continue;
                }
            };
            match event {
                Ok(Ok(FeedEvent::Batch(batch))) => {
                    if batch.revision > last_sent {
                        if let Err(end) = self.send_batch(send, &batch).await {
                            return end;
                        }
                        last_sent = batch.revision;
                    }
                }
                Ok(Ok(FeedEvent::Reset)) => {
                    match send_snapshot(send, &feed.snapshot(), timeout).await {
                        Ok(revision) => last_sent = revision,
                        Err(end) => return end,
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => return SessionEnd::TooSlow,
                Ok(Err(RecvError::Closed)) => return SessionEnd::Stopping,
                Err(_idle) => {
                    let heartbeat = Frame::Heartbeat {
                        revision: feed.revision(),
                    };
                    if let Err(end) = write(send, &heartbeat, timeout).await {
                        return end;
                    }
                    self.host.idle(self.node_id);
                }
            }
        }
    }

    /// `(stale, standby)` as a `SourceState` frame.
    async fn send_source_state(
        &self,
        send: &mut quinn::SendStream,
        (stale, standby): (bool, bool),
    ) -> Result<(), SessionEnd> {
        let staleness_ms = if stale {
            u64::try_from(self.host.staleness().as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        let frame = Frame::SourceState {
            stale,
            staleness_ms,
            standby,
        };
        write(send, &frame, self.feed.limits().send_timeout).await
    }

    async fn send_batch(
        &self,
        send: &mut quinn::SendStream,
        batch: &FeedBatch,
    ) -> Result<(), SessionEnd> {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if in_flight.len() >= MAX_IN_FLIGHT {
                in_flight.pop_front();
            }
            in_flight.push_back((batch.revision, batch.seen));
        }
        let timeout = self.feed.limits().send_timeout;
        match tokio::time::timeout(timeout, send.write_all(&batch.frame)).await {
            Ok(written) => written.map_err(|e| SessionEnd::Lost(e.to_string())),
            Err(_) => Err(SessionEnd::Stalled),
        }
    }

    /// Acks (and a final goodbye) from the edge.
    async fn read_loop(&self, recv: &mut quinn::RecvStream) -> SessionEnd {
        loop {
            match frames::read_frame(recv).await {
                Ok(Some(Frame::Ack { revision })) => self.acked(revision),
                Ok(Some(Frame::Goodbye { reason })) => {
                    tracing::info!(node = %self.node_id, %reason, "edge said goodbye");
                    return SessionEnd::Closed;
                }
                Ok(Some(other)) => {
                    return SessionEnd::Protocol(format!(
                        "unexpected {} from an edge",
                        frame_name(&other)
                    ));
                }
                Ok(None) => return SessionEnd::Closed,
                Err(err) => return err.into(),
            }
        }
    }

    /// The edge's client reports, on the one-way stream it opens for them.
    async fn client_reports(&self, connection: &quinn::Connection) -> SessionEnd {
        let mut recv = match connection.accept_uni().await {
            Ok(recv) => recv,
            Err(err) => return SessionEnd::Lost(err.to_string()),
        };
        loop {
            match frames::read_frame(&mut recv).await {
                Ok(Some(Frame::Clients(report))) => {
                    if let Err(reason) = report.check() {
                        return SessionEnd::Protocol(reason);
                    }
                    self.host.clients(self.node_id, self.connection_id, report);
                }
                Ok(Some(Frame::Progress(report))) => {
                    if let Err(reason) = report.check() {
                        return SessionEnd::Protocol(reason);
                    }
                    self.host.progress(self.node_id, self.connection_id, report);
                }
                Ok(Some(Frame::Relayed(report))) => {
                    if let Err(reason) = report.check() {
                        return SessionEnd::Protocol(reason);
                    }
                    self.host.relayed(self.node_id, self.connection_id, report);
                }
                Ok(Some(other)) => {
                    return SessionEnd::Protocol(format!(
                        "unexpected {} on the client report stream",
                        frame_name(&other)
                    ));
                }
                // The edge stopped reporting; the session itself goes on.
                Ok(None) => return std::future::pending().await,
                Err(err) => return err.into(),
            }
        }
    }

    fn acked(&self, revision: Revision) {
        let now = Instant::now();
        let timed: Vec<Duration> = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let mut timed = Vec::new();
            while let Some(&(sent, seen)) = in_flight.front() {
                if sent > revision {
                    break;
                }
                in_flight.pop_front();
                timed.push(now.saturating_duration_since(seen));
            }
            timed
        };
        for elapsed in timed {
            self.host.propagation(self.node_id, elapsed);
        }
        self.host.acked(self.node_id, self.connection_id, revision);
    }
}

/// Sends `snapshot` as Begin, chunks and End; returns its revision.
async fn send_snapshot(
    send: &mut quinn::SendStream,
    snapshot: &Snapshot,
    timeout: Duration,
) -> Result<Revision, SessionEnd> {
    let revision = snapshot.revision();
    write(
        send,
        &Frame::SnapshotBegin {
            revision,
            entries: snapshot.len() as u64,
        },
        timeout,
    )
    .await?;
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for entry in snapshot.entries() {
        let wire = WireEntry::from_entry(entry);
        bytes += wire.path.len() + wire.stored.len() + wire.updated_at.len() + 32;
        chunk.push(wire);
        if bytes >= CHUNK_BYTES {
            write(
                send,
                &Frame::SnapshotChunk {
                    entries: std::mem::take(&mut chunk),
                },
                timeout,
            )
            .await?;
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        write(send, &Frame::SnapshotChunk { entries: chunk }, timeout).await?;
    }
    write(send, &Frame::SnapshotEnd { revision }, timeout).await?;
    Ok(revision)
}

/// Writes one frame; a write blocked past `timeout` means the edge is too slow.
async fn write(
    send: &mut quinn::SendStream,
    frame: &Frame,
    timeout: Duration,
) -> Result<(), SessionEnd> {
    match tokio::time::timeout(timeout, frames::write_frame(send, frame)).await {
        Ok(written) => written.map_err(|e| SessionEnd::Lost(e.to_string())),
        Err(_) => Err(SessionEnd::Stalled),
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::SnapshotBegin { .. } => "SnapshotBegin",
        Frame::SnapshotChunk { .. } => "SnapshotChunk",
        Frame::SnapshotEnd { .. } => "SnapshotEnd",
        Frame::Batch(_) => "Batch",
        Frame::Heartbeat { .. } => "Heartbeat",
        Frame::Ack { .. } => "Ack",
        Frame::Goodbye { .. } => "Goodbye",
        Frame::Clients(_) => "Clients",
        Frame::Relayed(_) => "Relayed",
        Frame::Progress(_) => "Progress",
        Frame::SourceState { .. } => "SourceState",
    }
}

/// The next value of `flag` once it changes; never, without one (or once it is gone).
async fn changed(flag: &mut Option<tokio::sync::watch::Receiver<bool>>) -> bool {
    let Some(receiver) = flag else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        return std::future::pending().await;
    }
    *receiver.borrow_and_update()
}

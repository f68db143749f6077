//! Client sessions: the `Session` RPC the SDKs hold open, one per application instance.
//!
//! The client's first message is a hello (instance id, environment, prefixes, labels, SDK, the
//! revision it holds); the edge checks it and the caller's rights, registers the instance in
//! the [`ClientRegistry`], answers `SessionStarted`, and then streams the watch hub's messages for
//! those prefixes exactly as `Watch` does (one update per commit batch or a reset), with
//! heartbeats in intervals that had no update (any message proves the edge alive). The client's receipts (applied revision, NACKs) and heartbeats go to the
//! registry; a client silent for three heartbeat intervals is closed with `DEADLINE_EXCEEDED`.
//! A client that reads too slowly fills its bounded queue and the hub cuts it off with a reset,
//! as any watcher. The response stream polls the watcher itself (in the connection's stream
//! task, no hand-off per update); a small task reads what the client sends.
//!
//! Rollouts: a session also watches the rollout records (`/_setpoint/rollouts/`) and merges the
//! two streams in revision order (the hub hands a batch to every watcher it touches in one step,
//! so whichever message comes first, the other watcher's earlier ones are already queued);
//! [`crate::rollouts`] decides what this instance is given — the candidate of a rollout whose
//! current stage it is in, else the stable value.
//!
//! The gRPC plumbing is here; what a session *is* lives in [`crate::clients`] (the registry),
//! [`crate::watch`] (the stream of changes) and [`crate::rollouts`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::task::{Context, Poll};

use futures::{FutureExt, Stream};
use setpoint_core::clients::ClientKind;
use setpoint_core::{ConfigPath, Revision};
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as ClientKindMsg;
use setpoint_proto::edge::v1::server_message::Kind as ServerKind;
use tonic::{Status, Streaming};

use crate::Edge;
use crate::auth::{Caller, WatchGuard};
use crate::clients::{ClientRegistry, Hello, RegisterError, Ticket};
use crate::error::ApiError;
use crate::grpc::watch_response;
use crate::rollouts::SessionRollouts;
use crate::watch::{Ender, WatchMessage, WatchSpec, Watcher};

/// How long a client may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Subscribing "from" this revision makes the hub start with a reset: every session without a
/// revision of its own begins with the full state of its prefixes.
const RESET_FIRST: Revision = -1;
/// How long a session waits for this edge to reach the revision its client already holds.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

pub type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ServerMessage, Status>> + Send>>;

/// Session settings (from [`crate::EdgeConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// How often both sides send heartbeats; three missed intervals end a session.
    pub heartbeat: Duration,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// Reads and checks the hello: the first message, within [`HELLO_TIMEOUT`].
async fn read_hello(inbound: &mut Streaming<pb::ClientMessage>) -> Result<pb::ClientHello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no hello within 10 s"))??;
    match first.and_then(|m| m.kind) {
        Some(ClientKindMsg::Hello(hello)) => Ok(hello),
        Some(_) => Err(Status::invalid_argument(
            "the first message of a session must be a hello",
        )),
        None => Err(Status::invalid_argument(
            "the session ended before its hello",
        )),
    }
}

/// Waits (a little) until this edge holds `revision`: a client that already applied more than
/// this edge has — the edge restarted from an older disk snapshot, or the client moved from a
/// further-ahead edge — must not be moved backwards by a reset to an older state. While the edge
/// has lost its writer that is `UNAVAILABLE` (the client retries); an edge linked to its writer
/// that still has not reached the revision means the client's revision comes from another
/// history (a store started anew): then the session goes on, and starts with a reset.
async fn catch_up(edge: &Edge, revision: Option<Revision>) -> Result<(), Status> {
    // An edge with nothing to serve yet (no disk snapshot, no writer) would hand the client an
    // empty state as if it were the truth.
    let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
    while !edge.holder().is_ready() {
        if tokio::time::Instant::now() >= deadline {
            return Err(Status::unavailable(
                "this edge has no snapshot yet (neither on disk nor from its writer); retry later",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(revision) = revision else {
        return Ok(());
    };
    let mut changes = edge.holder().changes();
    let caught_up = tokio::time::timeout(CATCH_UP_TIMEOUT, changes.wait_for(|r| *r >= revision));
    if matches!(caught_up.await, Ok(Ok(_))) || !edge.holder().is_stale() {
        return Ok(());
    }
    Err(Status::unavailable(format!(
        "this edge is at revision {} and the client already holds {revision}; retry later",
        edge.holder().revision()
    )))
}

/// The hub's stream of changes for a session: effective values in `env` (with `${VAR}`
/// substituted when `resolve`), or the stored entries.
fn subscribe(
    edge: &Edge,
    prefixes: Vec<ConfigPath>,
    env: Option<String>,
    resolve: bool,
    from: Option<Revision>,
) -> Result<Watcher, Status> {
    let spec = WatchSpec {
        prefixes,
        env,
        resolve,
    };
    edge.hub()
        .subscribe_spec(spec, from)
        .map_err(|e| Status::from(ApiError::from(e)))
}

/// Opens a session for `caller`: checks the hello, registers the client, starts streaming.
pub async fn open(
    edge: Edge,
    caller: Caller,
    peer: Option<SocketAddr>,
    mut inbound: Streaming<pb::ClientMessage>,
) -> Result<SessionStream, Status> {
    let hello = read_hello(&mut inbound).await?;
    if hello.prefixes.len() > setpoint_core::clients::MAX_PREFIXES {
        return Err(Status::invalid_argument(format!(
            "at most {} prefixes",
            setpoint_core::clients::MAX_PREFIXES
        )));
    }
    let prefixes = crate::grpc::watched_prefixes(&hello.prefixes)?;
    let env = hello.env.clone().filter(|e| !e.is_empty());
    let guard = WatchGuard::new(edge.clone(), caller, prefixes.clone(), env.clone())?;
    let from = hello.from_revision.filter(|r| *r >= 0);
    let labels: std::collections::BTreeMap<String, String> = hello.labels.into_iter().collect();
    let client = Hello {
        id: hello.instance_id.clone(),
        address: peer.map(|p| p.to_string()).unwrap_or_default(),
        env: env.clone(),
        labels: labels.clone(),
        prefixes: prefixes.iter().map(|p| p.as_str().to_owned()).collect(),
        sdk: hello.sdk,
        sdk_version: hello.sdk_version,
    };
    client.check().map_err(Status::invalid_argument)?;
    catch_up(&edge, from).await?;
    let watcher = subscribe(
        &edge,
        prefixes.clone(),
        env.clone(),
        hello.resolve,
        from.or(Some(RESET_FIRST)),
    )?;
    // After the session's own watch, so the records it starts from are at least as new.
    // Beside it: the records' watch wakes the session through the session's watch, and is polled
    // only when it rang.
    let mut records = edge.hub().subscribe_beside(
        &watcher,
        vec![SessionRollouts::records_prefix()],
        Some(RESET_FIRST),
    );
    let mut rollouts = SessionRollouts::new(
        hello.instance_id,
        labels,
        prefixes.clone(),
        watcher.view().cloned(),
    );
    let registry = edge.clients();
    let ticket = registry
        .register(client, ClientKind::Session, from.unwrap_or(0))
        .map_err(|e| match e {
            RegisterError::Invalid(message) => Status::invalid_argument(message),
            RegisterError::Full | RegisterError::FullBytes => {
                Status::resource_exhausted(e.to_string())
            }
        })?;
    let heartbeat = edge.config().session.heartbeat;
    let registry = registry.clone();
    // Before the start's staleness: a change after it moves the signals.
    let signals = edge.signals();
    let stale = edge.holder().is_stale();
    let mut pending = VecDeque::new();
    pending.push_back(pb::ServerMessage {
        kind: Some(ServerKind::Started(pb::SessionStarted {
            edge_id: registry.edge_id().to_owned(),
            heartbeat_interval_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
            revision: edge.holder().revision(),
            stale,
        })),
    });
    // Catch-up: the reset or replay the hub has ready right now, then a heartbeat that marks its
    // end — a client that applied everything before it is in sync (a replay filtered to its
    // prefixes may end below SessionStarted's revision).
    let mut watcher = watcher;
    let mut records_revision = 0;
    while let Some(Some(message)) = records.next().now_or_never() {
        records_revision = message.revision();
        // A fresh session gets the candidates in its reset; a resumed one right after its replay.
        let _ = rollouts.on_records(&message, &edge.holder().current());
    }
    let mut last = from.unwrap_or(0);
    while let Some(Some(message)) = watcher.next().now_or_never() {
        last = last.max(message.revision());
        if let Some(message) = rollouts.on_watch(message) {
            registry.delivered(&ticket, message.revision());
            pending.push_back(update(&message));
        }
    }
    if from.is_some()
        && let Some(message) = rollouts.on_resume(last.max(records_revision))
    {
        registry.delivered(&ticket, message.revision());
        pending.push_back(update(&message));
    }
    pending.push_back(beat(&edge));

    let started = Instant::now();
    let heard = Arc::new(Heard::default());
    let reader = tokio::spawn(read_inbound(
        Inbound {
            edge: edge.clone(),
            ticket: ticket.clone(),
            started,
            heard: heard.clone(),
            ender: watcher.ender(),
        },
        inbound,
    ));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outbound = Outbound {
        signals,
        stale,
        guard,
        edge,
        watcher,
        records,
        rollouts,
        peeked: Peeked::new(),
        ticks,
        silence: crate::clients::ClientRegistry::silence_limit(heartbeat),
        started,
        heard,
        pending,
        done: false,
        _session: Registered {
            registry,
            ticket,
            reader: reader.abort_handle(),
        },
    };
    Ok(Box::pin(outbound))
}

/// The session's registration; dropping it (the response stream ended or was dropped with its
/// connection) marks the client disconnected and stops the inbound reader (aborted: a reader
/// watching for a stop signal paid for that on every receipt).
struct Registered {
    registry: Arc<ClientRegistry>,
    ticket: Ticket,
    reader: tokio::task::AbortHandle,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.reader.abort();
        self.registry.disconnected(&self.ticket);
    }
}

/// What the server sends: polled by the connection's own stream task, so an update goes from
/// the watcher's queue to the wire with no hand-off in between. A hand-written stream over
/// persistent sources: a poll builds no futures (at 100,000 sessions a `select!` over six fresh
/// futures per update was a tenth of the edge's work).
struct Outbound {
    edge: Edge,
    watcher: Watcher,
    /// The rollout records' watch, merged with `watcher` in revision order.
    records: Watcher,
    rollouts: SessionRollouts,
    peeked: Peeked,
    guard: WatchGuard,
    ticks: tokio::time::Interval,
    /// [`Edge::signals`] when the staleness and closing flags were last looked at.
    signals: u64,
    /// The staleness the client was last told.
    stale: bool,
    silence: Duration,
    started: Instant,
    heard: Arc<Heard>,
    /// Sent before anything else: the start, the catch-up and its heartbeat.
    pending: VecDeque<pb::ServerMessage>,
    done: bool,
    _session: Registered,
}

impl Stream for Outbound {
    type Item = Result<pb::ServerMessage, Status>;

    /// The next message, or the status that ends the session; `None` once it ended. Messages
    /// first; the clock, the client's end, staleness and shutdown when none is ready.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let out = self.get_mut();
        if out.done {
            return Poll::Ready(None);
        }
        if let Some(message) = out.pending.pop_front() {
            return Poll::Ready(Some(Ok(message)));
        }
        let ended = |out: &mut Outbound, status: Option<Status>| {
            out.done = true;
            Poll::Ready(status.map(Err))
        };
        loop {
            match out.peeked.take(cx, &mut out.watcher, &mut out.records) {
                Some(Merged::Watch(message)) => {
                    if let Err(error) = out.guard.check() {
                        return ended(out, Some(error.into()));
                    }
                    if let Some(message) = out.rollouts.on_watch(message) {
                        return Poll::Ready(Some(Ok(out.deliver(&message))));
                    }
                    continue;
                }
                Some(Merged::Records(message)) => {
                    let snapshot = out.edge.holder().current();
                    if let Some(message) = out.rollouts.on_records(&message, &snapshot) {
                        return Poll::Ready(Some(Ok(out.deliver(&message))));
                    }
                    continue;
                }
                None => {}
            }
            match out.watcher.poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    out.peeked.watch = Some(message);
                    continue;
                }
                Poll::Ready(None) => {
                    let status = out
                        .heard
                        .ended
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    return ended(out, status);
                }
                Poll::Pending => {}
            }
            // After the session's watch answered `Pending`, so a bell rung from now on wakes it.
            if out.peeked.records_due(&out.watcher) {
                match out.records.poll_next(cx) {
                    Poll::Ready(Some(message)) => {
                        out.peeked.records = Some(message);
                        continue;
                    }
                    Poll::Ready(None) => return ended(out, None),
                    Poll::Pending => out.peeked.records_due = false,
                }
            }
            break;
        }
        if out.ticks.poll_tick(cx).is_ready() {
            let heard = Duration::from_millis(out.heard.at_ms.load(Ordering::Relaxed));
            if out.started.elapsed().saturating_sub(heard) > out.silence {
                let status = Status::deadline_exceeded(format!(
                    "no message from the client for {} ms (three heartbeat intervals)",
                    out.silence.as_millis()
                ));
                return ended(out, Some(status));
            }
            return Poll::Ready(Some(Ok(beat(&out.edge))));
        }
        // The client hears at once when this edge loses or regains its writer; every watcher is
        // woken after the signals move.
        let signals = out.edge.signals();
        if signals != out.signals {
            out.signals = signals;
            if out.edge.is_closing() {
                return ended(out, Some(Status::unavailable("the edge is shutting down")));
            }
            let stale = out.edge.holder().is_stale();
            if stale != out.stale {
                out.stale = stale;
                return Poll::Ready(Some(Ok(beat(&out.edge))));
            }
        }
        Poll::Pending
    }
}

impl Outbound {
    /// An update for the client. It proves the edge alive as a heartbeat would, so the next
    /// heartbeat is due a whole interval after it: a busy session carries none (at 100,000
    /// sessions and a 5 s interval, heartbeats were 20,000 messages a second each way), and its
    /// clock does not even wake it (pushing the deadline out is one atomic operation). The
    /// silence check rides on that clock, so it waits for a quiet interval too; a client too
    /// stuck to read is cut off sooner anyway, by HTTP/2 pings and its full queue.
    fn deliver(&mut self, message: &WatchMessage) -> pb::ServerMessage {
        self._session
            .registry
            .delivered(&self._session.ticket, message.revision());
        self.ticks.reset();
        update(message)
    }
}

/// The next message of either watch, oldest revision first (records first on a tie: a commit
/// that completes a rollout also writes its path, which must then pass).
enum Merged {
    Watch(WatchMessage),
    Records(WatchMessage),
}

/// A message taken from each watch but not yet handled.
struct Peeked {
    watch: Option<WatchMessage>,
    records: Option<WatchMessage>,
    /// The records' watch may have something: it rang (it was subscribed beside the session's
    /// watch) since it last answered `Pending`.
    records_due: bool,
}

impl Peeked {
    fn new() -> Peeked {
        Peeked {
            watch: None,
            records: None,
            records_due: true,
        }
    }

    fn records_due(&mut self, watch: &Watcher) -> bool {
        if watch.rung() {
            self.records_due = true;
        }
        self.records_due
    }

    /// The older of the messages at hand. With one at hand, the other watch is polled once (the
    /// records' only when due): the hub queues a batch for every watcher it touches in one step,
    /// so an older message of the other watch is already there.
    fn take(
        &mut self,
        cx: &mut Context<'_>,
        watch: &mut Watcher,
        records: &mut Watcher,
    ) -> Option<Merged> {
        if self.watch.is_some() && self.records.is_none() && self.records_due(watch) {
            match records.poll_next(cx) {
                Poll::Ready(Some(message)) => self.records = Some(message),
                Poll::Ready(None) => {}
                Poll::Pending => self.records_due = false,
            }
        }
        if self.records.is_some()
            && self.watch.is_none()
            && let Poll::Ready(Some(message)) = watch.poll_next(cx)
        {
            self.watch = Some(message);
        }
        let records_first = match (&self.watch, &self.records) {
            (Some(w), Some(r)) => r.revision() <= w.revision(),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if records_first {
            self.records.take().map(Merged::Records)
        } else {
            self.watch.take().map(Merged::Watch)
        }
    }
}

/// What the receipt reader tells the session's stream.
#[derive(Default)]
struct Heard {
    /// Milliseconds after the session started the client was last heard from.
    at_ms: AtomicU64,
    /// Why the reader ended, once it did: the status to end the session with (`None` for a
    /// client that simply left). The reader then ends the session's watcher, which ends the
    /// session.
    ended: Mutex<Option<Status>>,
}

struct Inbound {
    edge: Edge,
    ticket: Ticket,
    started: Instant,
    heard: Arc<Heard>,
    ender: Ender,
}

/// Reads the client's receipts and heartbeats into the registry until the client's side ends,
/// breaks the protocol, or the session is over (then [`Registered`] aborts it).
async fn read_inbound(session: Inbound, mut inbound: Streaming<pb::ClientMessage>) {
    let registry = session.edge.clients();
    let status = loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => break None,
        };
        let at = u64::try_from(session.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        session.heard.at_ms.store(at, Ordering::Relaxed);
        match message.kind {
            Some(ClientKindMsg::Receipt(receipt)) => {
                let failures: Vec<(String, String)> = receipt
                    .failures
                    .into_iter()
                    .map(|n| (n.path, n.error))
                    .collect();
                let committed = session.edge.holder().committed_at(receipt.revision);
                registry.receipt(&session.ticket, receipt.revision, &failures, committed);
            }
            Some(ClientKindMsg::Heartbeat(_)) => registry.seen(&session.ticket),
            Some(ClientKindMsg::Hello(_)) => {
                break Some(Status::invalid_argument("a session has one hello"));
            }
            None => {}
        }
    };
    *session
        .heard
        .ended
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = status;
    session.ender.end();
}

fn beat(edge: &Edge) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(ServerKind::Heartbeat(pb::Heartbeat {
            revision: edge.holder().revision(),
            stale: edge.holder().is_stale(),
        })),
    }
}

fn update(message: &WatchMessage) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(ServerKind::Update(watch_response(message))),
    }
}

//! The session task: one per client, for the client's whole life. It opens the `Session` stream
//! (hello with the revision held), applies each update to the store, runs the callbacks, writes
//! the cache file, sends the receipt, exchanges heartbeats, and on any loss reconnects with
//! backoff, resuming from the last applied revision. It holds no thread: everything, callbacks
//! included, runs on this one tokio task, which is what lets thousands of clients share a
//! process.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::backoff::{Backoff, Rng};
use crate::cache_file::CacheFile;
use crate::error::Error;
use crate::options::{Config, MAX_MESSAGE_BYTES};
use crate::store::Store;
use crate::watch::{SharedRegistry, dispatch};

const SDK: &str = "rust";
/// Until SessionStarted tells the real interval.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How long the edge has to answer the hello before the attempt counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What `wait_ready`, `get` and `is_stale` look at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    /// A sync completed at least once in this client's life.
    pub synced: bool,
    /// The current session is established and synced (false while reconnecting).
    pub live: bool,
    /// The edge says it lost the writer.
    pub edge_stale: bool,
    /// Why the edge refused the last attempt (the token, an invalid or unsupported request),
    /// until a session starts.
    pub refused: Option<Error>,
    pub closed: bool,
}

/// State shared by the client handle and its session task.
pub(crate) struct Shared {
    pub config: Config,
    pub store: RwLock<Store>,
    pub registry: SharedRegistry,
    pub status: watch::Sender<Status>,
}

impl Shared {
    pub fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        // Store updates do not panic half-way (no unwrap, no callbacks under the lock).
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    fn store_mut(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a session attempt ended.
#[derive(Debug)]
enum Ended {
    /// The client is closing.
    Closed,
    /// The edge refused the token (or the request): retry only at the slow pace.
    Refused(Error),
    /// Anything else: reconnect with backoff.
    Lost(String),
}

/// Runs sessions until `cancel` fires, then writes the cache file a last time.
pub(crate) async fn run(shared: Arc<Shared>, channel: Channel, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Rng::from_entropy());
    let mut saved = shared.store().revision();
    loop {
        let ended = attempt(&shared, channel.clone(), &cancel, &mut backoff, &mut saved).await;
        shared
            .status
            .send_if_modified(|s| std::mem::replace(&mut s.live, false));
        let delay = match ended {
            Ended::Closed => break,
            Ended::Refused(error) => {
                tracing::warn!(%error, "the edge refused the session; retrying in 30 s");
                shared.status.send_modify(|s| s.refused = Some(error));
                backoff.refused_delay()
            }
            Ended::Lost(reason) => {
                let delay = backoff.next_delay();
                tracing::info!(%reason, ?delay, "session lost; reconnecting");
                delay
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    persist(&shared, &mut saved).await;
}

async fn attempt(
    shared: &Shared,
    channel: Channel,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
    saved: &mut Option<i64>,
) -> Ended {
    let from_revision = shared.store().revision();
    let opened = tokio::select! {
        _ = cancel.cancelled() => return Ended::Closed,
        opened = tokio::time::timeout(START_TIMEOUT, open(&shared.config, channel, from_revision)) => opened,
    };
    let (tx, stream, started) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(ended)) => return ended,
        Err(_) => return Ended::Lost("the edge did not start the session in time".into()),
    };
    tracing::debug!(edge = %started.edge_id, revision = started.revision, ?from_revision, "session started");
    backoff.reset();
    shared.status.send_modify(|s| {
        s.refused = None;
        s.edge_stale = started.stale;
    });
    let mut catch_up = CatchUp::new(from_revision, started.revision);
    if catch_up.is_synced() {
        mark_synced(shared);
    }
    let heartbeat = match started.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT,
        ms => Duration::from_millis(u64::from(ms)),
    };
    serve(shared, cancel, tx, stream, heartbeat, &mut catch_up, saved).await
}

/// Opens the stream: the hello goes first, then the edge must answer `SessionStarted`.
async fn open(
    config: &Config,
    channel: Channel,
    from_revision: Option<i64>,
) -> Result<
    (
        mpsc::Sender<pb::ClientMessage>,
        Streaming<pb::ServerMessage>,
        pb::SessionStarted,
    ),
    Ended,
> {
    let (tx, rx) = mpsc::channel(8);
    let hello = pb::ClientHello {
        instance_id: config.instance_id.clone(),
        env: config.env.clone(),
        prefixes: config.prefixes.clone(),
        labels: config.labels.clone(),
        sdk: SDK.to_owned(),
        sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        from_revision,
        resolve: false,
    };
    // Queued before the call so the edge has it as soon as the stream opens.
    tx.try_send(message(pb::client_message::Kind::Hello(hello)))
        .map_err(|_| Ended::Lost("hello not queued".into()))?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(authorization) = &config.authorization {
        request
            .metadata_mut()
            .insert("authorization", authorization.clone());
    }
    let mut client = EdgeClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut stream = client
        .session(request)
        .await
        .map_err(|s| ended_by(&s))?
        .into_inner();
    match stream.message().await.map_err(|s| ended_by(&s))? {
        Some(pb::ServerMessage {
            kind: Some(pb::server_message::Kind::Started(started)),
        }) => Ok((tx, stream, started)),
        other => Err(Ended::Lost(format!(
            "expected SessionStarted, got {other:?}"
        ))),
    }
}

/// The established session: updates and heartbeats in, receipts and heartbeats out, until the
/// client closes or the edge is lost (the stream ends or falls silent for three intervals).
async fn serve(
    shared: &Shared,
    cancel: &CancellationToken,
    tx: mpsc::Sender<pb::ClientMessage>,
    mut stream: Streaming<pb::ServerMessage>,
    heartbeat: Duration,
    catch_up: &mut CatchUp,
    saved: &mut Option<i64>,
) -> Ended {
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A receipt tells the edge this client is alive as a heartbeat would: none is sent in an
    // interval that had one.
    let mut last_sent = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ended::Closed,
            received = stream.message() => {
                let kind = match received {
                    Ok(Some(pb::ServerMessage { kind: Some(kind) })) => kind,
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ended::Lost("the edge ended the session".into()),
                    Err(status) => return ended_by(&status),
                };
                last_heard = Instant::now();
                let now_synced = match kind {
                    pb::server_message::Kind::Update(update) => {
                        let now_synced = catch_up.update(update.revision, update.reset);
                        if let Err(reason) = apply(shared, &tx, update, saved).await {
                            return Ended::Lost(reason);
                        }
                        last_sent = Instant::now();
                        now_synced
                    }
                    pb::server_message::Kind::Heartbeat(beat) => {
                        shared.status.send_if_modified(|s| {
                            std::mem::replace(&mut s.edge_stale, beat.stale) != beat.stale
                        });
                        catch_up.heartbeat()
                    }
                    pb::server_message::Kind::Started(_) => {
                        tracing::warn!("a second SessionStarted on one session; ignored");
                        false
                    }
                };
                if now_synced {
                    mark_synced(shared);
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    return Ended::Lost(format!("the edge was silent for three heartbeat intervals ({heartbeat:?} each)"));
                }
                if last_sent.elapsed() < heartbeat {
                    continue;
                }
                last_sent = Instant::now();
                let revision = shared.store().revision().unwrap_or(0);
                let beat = pb::Heartbeat { revision, stale: false };
                if tx.send(message(pb::client_message::Kind::Heartbeat(beat))).await.is_err() {
                    return Ended::Lost("the request stream closed".into());
                }
            }
        }
    }
}

/// When a session counts as synced. Without a revision to resume from, the edge starts with a
/// reset. Resuming, the stream is caught up at once if the client already holds the edge's
/// revision; else after an update at (or past) it, a reset, or the edge's first heartbeat,
/// which follows the replay (when nothing under the prefixes changed, no update ever comes).
#[derive(Debug)]
struct CatchUp {
    resuming: bool,
    target: i64,
    synced: bool,
}

impl CatchUp {
    fn new(from_revision: Option<i64>, started_revision: i64) -> CatchUp {
        CatchUp {
            resuming: from_revision.is_some(),
            target: started_revision,
            synced: from_revision.is_some_and(|from| from >= started_revision),
        }
    }

    fn is_synced(&self) -> bool {
        self.synced
    }

    /// An update arrived; true when it completes the sync.
    fn update(&mut self, revision: i64, reset: bool) -> bool {
        self.complete_if(reset || revision >= self.target)
    }

    /// A heartbeat arrived; true when it completes the sync.
    fn heartbeat(&mut self) -> bool {
        self.complete_if(self.resuming)
    }

    fn complete_if(&mut self, done: bool) -> bool {
        let newly = done && !self.synced;
        self.synced |= done;
        newly
    }
}

/// One update: apply it, run the callbacks, write the cache file, acknowledge it.
async fn apply(
    shared: &Shared,
    tx: &mpsc::Sender<pb::ClientMessage>,
    update: pb::WatchResponse,
    saved: &mut Option<i64>,
) -> Result<(), String> {
    let events = shared.store_mut().apply(&update);
    let failures = dispatch(&shared.registry, &events);
    persist(shared, saved).await;
    let receipt = pb::Receipt {
        revision: update.revision,
        failures,
    };
    tx.send(message(pb::client_message::Kind::Receipt(receipt)))
        .await
        .map_err(|_| "the request stream closed".to_owned())
}

fn mark_synced(shared: &Shared) {
    shared.status.send_modify(|s| {
        s.synced = true;
        s.live = true;
    });
}

/// Writes the cache file when one is configured and the store moved since the last write. A
/// failed write is logged and retried after the next update: the session goes on regardless.
async fn persist(shared: &Shared, saved: &mut Option<i64>) {
    let Some(path) = shared.config.cache_path.clone() else {
        return;
    };
    let file = {
        let store = shared.store();
        let Some(revision) = store.revision() else {
            return;
        };
        if *saved == Some(revision) {
            return;
        }
        CacheFile::new(
            shared.config.env.clone(),
            shared.config.prefixes.clone(),
            revision,
            store.entries().clone(),
        )
    };
    let revision = file.revision;
    match tokio::task::spawn_blocking(move || file.save(&path)).await {
        Ok(Ok(())) => *saved = Some(revision),
        Ok(Err(error)) => tracing::warn!(%error, "cache file not written"),
        Err(error) => tracing::warn!(%error, "cache file writer failed"),
    }
}

fn ended_by(status: &tonic::Status) -> Ended {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            Ended::Refused(Error::Unauthorized(status.message().to_owned()))
        }
        // A request the edge will refuse again (an unknown environment, a bad prefix): retrying
        // fast would only load it.
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            Ended::Refused(Error::Invalid(status.message().to_owned()))
        }
        // An edge without a feature the hello asks for (an older edge, sessions with an
        // environment): surfaced to wait_ready instead of a silent timeout.
        tonic::Code::Unimplemented => Ended::Refused(Error::Other(format!(
            "the edge cannot serve this session: {}",
            status.message()
        ))),
        code => Ended::Lost(format!("{code:?}: {}", status.message())),
    }
}

fn message(kind: pb::client_message::Kind) -> pb::ClientMessage {
    pb::ClientMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::CatchUp;

    #[test]
    fn a_fresh_session_is_synced_by_its_reset_only() {
        let mut catch_up = CatchUp::new(None, 10);
        assert!(!catch_up.is_synced());
        assert!(
            !catch_up.heartbeat(),
            "a heartbeat before the reset proves nothing"
        );
        assert!(catch_up.update(10, true));
        assert!(!catch_up.update(11, false), "synced once");
    }

    #[test]
    fn a_resumed_session_is_synced_when_caught_up() {
        assert!(CatchUp::new(Some(10), 10).is_synced(), "nothing to replay");
        let mut replaying = CatchUp::new(Some(5), 10);
        assert!(!replaying.update(7, false), "still replaying");
        assert!(replaying.update(10, false));
        let mut quiet = CatchUp::new(Some(5), 10);
        assert!(
            quiet.heartbeat(),
            "nothing under the prefixes changed since 5"
        );
        let mut lost = CatchUp::new(Some(5), 10);
        assert!(lost.update(10, true), "the edge no longer held 5: a reset");
    }
}

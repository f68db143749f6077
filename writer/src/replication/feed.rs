//! The replication feed: the writer's own view of every live config, kept current by the
//! store's watch, and the stream of commit batches edges receive.
//!
//! Owns: the current [`Snapshot`], a bounded ring of recent encoded batches (count- and
//! byte-bounded) for edges that resume, the broadcast that fans batches out to sessions, and the
//! instant each batch was seen (for skew-free propagation measurement).
//!
//! Reads never wait for the feed: the snapshot sits behind arc-swap and the newest revision in an
//! atomic, so a request loads them without a lock. The one lock, over the ring, is taken by the
//! feed's own task (a pointer swap and a push per batch: the snapshot is applied and the frame
//! encoded before it) and by edge sessions starting or acknowledging — never by a request.
//!
//! Architecture invariant: the store's watch is the ONLY delta source. Nothing here is fed by the
//! REST handlers, so whatever is committed to the store (by this writer, or another replica after
//! failover) reaches every edge. Must not: write to the store, or speak QUIC.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::StreamExt;
use setpoint_core::snapshot::{Batch, Change, ChangeKind, Entry, Snapshot};
use setpoint_core::{ConfigPath, ParsedValue, Revision};
use setpoint_proto::frames::{self, Frame, WireBatch};
use tokio::sync::{broadcast, watch};

use crate::model::records::{self, Keys, Pointer};
use crate::store::{EventKind, RangeRequest, Store, StoreError, WatchBatch};

/// Bounds of the resumption ring and of each session's queue.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    /// Most batches kept for edges that resume by delta.
    pub ring_batches: usize,
    /// Most encoded bytes kept in the ring.
    pub ring_bytes: usize,
    /// Batches a session may fall behind the feed before it is cut off.
    pub session_queue: usize,
    /// Longest a single write to an edge may block (its flow-control window full) before the
    /// edge is cut off as too slow.
    pub send_timeout: Duration,
}

impl Default for FeedLimits {
    fn default() -> FeedLimits {
        FeedLimits {
            ring_batches: 10_000,
            ring_bytes: 64 << 20,
            session_queue: 4_096,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// One committed transaction, encoded once as a frame and shared by every session.
#[derive(Debug)]
pub struct FeedBatch {
    pub revision: Revision,
    /// When the feed received it from the store's watch (the writer's clock).
    pub seen: Instant,
    /// `Frame::Batch` on the wire, length prefix included.
    pub frame: Bytes,
}

/// What sessions receive from the feed.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    Batch(Arc<FeedBatch>),
    /// The feed reloaded the whole state (its watch position was compacted away, or a batch was
    /// too large for one frame): every session sends a fresh snapshot.
    Reset,
}

/// Where a new session starts.
#[derive(Debug)]
pub enum Start {
    /// The edge's revision is covered by the ring: these batches bring it up to date.
    Resume(Vec<Arc<FeedBatch>>),
    /// It is not: send this snapshot.
    Snapshot(Snapshot),
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] records::CorruptRecord),
}

/// What a starting session must see consistently: the resumption ring and the revision it ends at.
struct Ring {
    /// The newest revision seen, including transactions that changed no config.
    revision: Revision,
    batches: VecDeque<Arc<FeedBatch>>,
    bytes: usize,
    /// Every batch after this revision is in the ring.
    base: Revision,
}

/// The shared side of the feed; the task that drives it is [`Feed::start`]'s.
pub struct Feed {
    /// The current snapshot; replaced (never mutated) by the feed's task, under the ring's lock
    /// so a starting session sees a snapshot and a ring that belong together.
    snapshot: ArcSwap<Snapshot>,
    /// [`Ring::revision`], readable without the lock.
    revision: AtomicI64,
    ring: Mutex<Ring>,
    events: broadcast::Sender<FeedEvent>,
    loaded: watch::Sender<bool>,
    /// The newest revision seen, for readers waiting to see their own write.
    seen_revision: watch::Sender<Revision>,
    pub(super) limits: FeedLimits,
}

impl Feed {
    /// Starts following the store under `prefix`. The returned task owns the store handle; abort
    /// and await it to release the store.
    pub fn start(
        store: Arc<dyn Store>,
        prefix: &str,
        limits: FeedLimits,
    ) -> (Arc<Feed>, tokio::task::JoinHandle<()>) {
        let (events, _) = broadcast::channel(limits.session_queue.max(1));
        let feed = Arc::new(Feed {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            revision: AtomicI64::new(0),
            ring: Mutex::new(Ring {
                revision: 0,
                batches: VecDeque::new(),
                bytes: 0,
                base: 0,
            }),
            events,
            loaded: watch::channel(false).0,
            // -1 until the first load, so waiting for revision 0 waits for the load.
            seen_revision: watch::channel(-1).0,
            limits,
        });
        let task = tokio::spawn(follow(feed.clone(), store, Layout::new(prefix)));
        (feed, task)
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the first full load is done.
    pub async fn loaded(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|loaded| *loaded).await;
    }

    /// Waits until the feed has seen `revision` (so the snapshot reflects every commit up to
    /// it); false when `timeout` passes first.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.seen_revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|seen| *seen >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The newest revision the feed has seen (0 before the first load).
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// The revision of the last config change (the snapshot's); transactions that changed no
    /// config (retention removing old versions) move [`Feed::revision`] but not this, so an edge
    /// holding it has everything.
    pub fn config_revision(&self) -> Revision {
        self.snapshot.load().revision()
    }

    /// The writer's current snapshot (a persistent map: cloning it copies no entry).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::clone(&self.snapshot.load())
    }

    /// When the feed saw the batch at `revision`, while it is still in the ring.
    pub fn seen_at(&self, revision: Revision) -> Option<Instant> {
        let ring = self.lock();
        let index = ring
            .batches
            .binary_search_by_key(&revision, |b| b.revision)
            .ok()?;
        ring.batches.get(index).map(|b| b.seen)
    }

    /// Subscribes to live events and says where an edge holding `revision` starts. Both happen
    /// under one lock, so no batch falls between the start and the first live event.
    pub fn subscribe(&self, revision: Revision) -> (broadcast::Receiver<FeedEvent>, Start) {
        let ring = self.lock();
        let rx = self.events.subscribe();
        let start = if revision >= ring.base && revision <= ring.revision {
            Start::Resume(
                ring.batches
                    .iter()
                    .filter(|b| b.revision > revision)
                    .cloned()
                    .collect(),
            )
        } else {
            Start::Snapshot(self.snapshot())
        };
        (rx, start)
    }

    /// Moves the newest revision seen on (under the ring's lock, after the snapshot it brings):
    /// a reader woken by `seen_revision` finds the snapshot already applied.
    fn advance(&self, ring: &mut Ring, revision: Revision) {
        ring.revision = revision;
        self.revision.store(revision, Ordering::Release);
        self.seen_revision.send_replace(revision);
    }

    /// Replaces everything with a fresh load at `snapshot.revision()`. `history` holds the
    /// store's own batches after `history_base` up to the load (see [`backfill`]), so an edge that
    /// was a little behind when this writer (re)started still resumes by delta.
    fn reset(&self, snapshot: Snapshot, history_base: Revision, history: Vec<Batch>) {
        let loaded = snapshot.revision();
        // Encoded before the lock is taken.
        let mut batches = VecDeque::with_capacity(history.len());
        let mut bytes = 0;
        let mut complete = true;
        for batch in history.iter().filter(|b| !b.changes.is_empty()) {
            match frames::encode(&Frame::Batch(WireBatch::from_batch(batch))) {
                Ok(frame) => {
                    bytes += frame.len();
                    batches.push_back(Arc::new(FeedBatch {
                        revision: batch.revision,
                        seen: Instant::now(),
                        frame: Bytes::from(frame),
                    }));
                }
                Err(_) => complete = false,
            }
        }
        let fits = batches.len() <= self.limits.ring_batches && bytes <= self.limits.ring_bytes;
        let mut ring = self.lock();
        self.snapshot.store(Arc::new(snapshot));
        if complete && fits && history_base < loaded {
            ring.batches = batches;
            ring.bytes = bytes;
            ring.base = history_base;
        } else {
            ring.batches.clear();
            ring.bytes = 0;
            ring.base = loaded;
        }
        self.advance(&mut ring, loaded);
        let _ = self.events.send(FeedEvent::Reset);
        drop(ring);
        self.loaded.send_replace(true);
    }

    /// Applies one store batch: the snapshot moves on, the batch goes into the ring and out to
    /// every session. Only the feed's task calls this, so the next snapshot and the frame are
    /// computed before the lock is taken.
    fn publish(&self, batch: Batch, seen: Instant) {
        if batch.revision <= self.revision() {
            return;
        }
        if batch.changes.is_empty() {
            let mut ring = self.lock();
            self.advance(&mut ring, batch.revision);
            return;
        }
        let next = match self.snapshot.load().apply(&batch) {
            Ok((next, _)) => next,
            Err(err) => {
                tracing::error!(%err, "feed batch out of order; skipped");
                let mut ring = self.lock();
                self.advance(&mut ring, batch.revision);
                return;
            }
        };
        let frame = frames::encode(&Frame::Batch(WireBatch::from_batch(&batch)));
        let mut ring = self.lock();
        self.snapshot.store(Arc::new(next));
        self.advance(&mut ring, batch.revision);
        let frame = match frame {
            Ok(frame) => Bytes::from(frame),
            Err(err) => {
                // Too large for one frame: edges get it inside a (chunked) snapshot instead.
                tracing::warn!(%err, revision = batch.revision, "batch cannot be framed; edges resync by snapshot");
                ring.batches.clear();
                ring.bytes = 0;
                ring.base = batch.revision;
                let _ = self.events.send(FeedEvent::Reset);
                return;
            }
        };
        let batch = Arc::new(FeedBatch {
            revision: batch.revision,
            seen,
            frame,
        });
        ring.bytes += batch.frame.len();
        ring.batches.push_back(batch.clone());
        while ring.batches.len() > self.limits.ring_batches
            || (ring.bytes > self.limits.ring_bytes && ring.batches.len() > 1)
        {
            let Some(old) = ring.batches.pop_front() else {
                break;
            };
            ring.bytes -= old.frame.len();
            ring.base = old.revision;
        }
        let _ = self.events.send(FeedEvent::Batch(batch));
    }
}

/// The store keys the feed reads: pointers (to load) and version records (to follow).
struct Layout {
    keys: Keys,
    /// `P h`: every version record starts with it.
    versions_root: String,
}

impl Layout {
    fn new(prefix: &str) -> Layout {
        let keys = Keys::new(prefix);
        let mut root = prefix.to_owned();
        if !root.ends_with('/') {
            root.push('/');
        }
        root.push('h');
        Layout {
            keys,
            versions_root: root,
        }
    }

    /// The path of a version record key `P h{path}@{version}`.
    fn path_of_version(&self, key: &str) -> Option<ConfigPath> {
        let (path, version) = key.strip_prefix(&self.versions_root)?.rsplit_once('@')?;
        version.parse::<u64>().ok()?;
        ConfigPath::parse(path).ok()
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Loads the full state, then follows the watch; reconnects from the last revision on failure
/// and reloads everything when that revision was compacted away.
async fn follow(feed: Arc<Feed>, store: Arc<dyn Store>, keys: Layout) {
    let mut backoff = BACKOFF_MIN;
    let mut need_load = true;
    loop {
        if need_load {
            match load(store.as_ref(), &keys).await {
                Ok((snapshot, last_change)) => {
                    let (base, history) = backfill(
                        store.as_ref(),
                        &keys,
                        snapshot.revision(),
                        last_change,
                        feed.limits.ring_batches,
                    )
                    .await;
                    tracing::info!(
                        revision = snapshot.revision(),
                        entries = snapshot.len(),
                        history_from = base + 1,
                        history_batches = history.len(),
                        "replication feed loaded"
                    );
                    feed.reset(snapshot, base, history);
                    need_load = false;
                }
                Err(err) => {
                    tracing::warn!(%err, "replication feed cannot load the store; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let from = feed.revision() + 1;
        let mut stream = match store.watch(&keys.versions_root, from).await {
            Ok(stream) => stream,
            Err(StoreError::Compacted { .. }) => {
                tracing::warn!(from, "replication feed position compacted; reloading");
                need_load = true;
                continue;
            }
            Err(err) => {
                tracing::warn!(%err, "replication feed cannot watch the store; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(batch) => {
                    backoff = BACKOFF_MIN;
                    let seen = Instant::now();
                    feed.publish(to_batch(&keys, &batch), seen);
                }
                Err(StoreError::Compacted { .. }) => {
                    need_load = true;
                    break;
                }
                Err(err) => {
                    tracing::warn!(%err, "replication feed lost the store's watch; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// How long the store's history replay may pause before the backfill gives up on it.
const BACKFILL_IDLE: Duration = Duration::from_secs(2);

/// The store's own batches of the last `revisions` revisions up to `loaded`, read from its watch
/// history (DESIGN.md: deltas from the in-memory log, else from the store's watch), so an edge
/// that was a little behind when this writer (re)started resumes by delta, not by snapshot.
/// Returns the revision after which the history is complete, and the batches. Complete means
/// the replay reached `last_change`, the newest config change at or before the load; otherwise
/// (compacted, store error, replay stalled) it returns `(loaded, [])` and such edges get a
/// snapshot, as before. Never a history with a hole.
async fn backfill(
    store: &dyn Store,
    keys: &Layout,
    loaded: Revision,
    last_change: Revision,
    revisions: usize,
) -> (Revision, Vec<Batch>) {
    let from = (loaded - revisions as Revision + 1).max(2);
    if last_change < from {
        // No config changed in the window: the ring is complete as it is (empty).
        return (from - 1, Vec::new());
    }
    let mut stream = match store.watch(&keys.versions_root, from).await {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(%err, from, "no store history to backfill the ring");
            return (loaded, Vec::new());
        }
    };
    let mut history = Vec::new();
    loop {
        match tokio::time::timeout(BACKFILL_IDLE, stream.next()).await {
            Ok(Some(Ok(batch))) if batch.revision <= loaded => {
                let reached = batch.revision >= last_change;
                history.push(to_batch(keys, &batch));
                if reached {
                    return (from - 1, history);
                }
            }
            Ok(Some(Ok(_))) | Ok(None) | Err(_) => {
                tracing::debug!(
                    from,
                    last_change,
                    "store history replay incomplete; edges behind get a snapshot"
                );
                return (loaded, Vec::new());
            }
            Ok(Some(Err(err))) => {
                tracing::debug!(%err, "store history replay failed");
                return (loaded, Vec::new());
            }
        }
    }
}

/// Every live config, read at one revision of the pointers.
/// Also returns the revision of the last config change at or before the load (the newest
/// pointer write, tombstones included): the backfill knows it is complete once it has seen it.
async fn load(store: &dyn Store, layout: &Layout) -> Result<(Snapshot, Revision), FeedError> {
    let keys = &layout.keys;
    let pointers = store
        .range(RangeRequest::prefix(
            &keys.pointers_below(&ConfigPath::root()),
        ))
        .await?;
    let live: Vec<(ConfigPath, Pointer)> = pointers
        .kvs
        .iter()
        .filter_map(|kv| {
            let path = keys.path_of_pointer(&kv.key)?;
            match records::decode_json::<Pointer>(&kv.key, &kv.value) {
                Ok(pointer) if !pointer.deleted => Some((path, pointer)),
                Ok(_) => None,
                Err(err) => {
                    tracing::error!(%err, "skipping a corrupt pointer");
                    None
                }
            }
        })
        .collect();
    let reads = futures::stream::iter(live.into_iter().map(|(path, pointer)| async move {
        let key = keys.version(&path, pointer.version);
        store.get(&key).await.map(|kv| (path, key, kv))
    }))
    .buffered(16);
    let reads: Vec<_> = reads.collect().await;
    let mut entries = Vec::with_capacity(reads.len());
    for read in reads {
        let (path, key, kv) = read?;
        let Some(kv) = kv else {
            // Superseded and removed since the pointer read; the watch brings the newer version.
            tracing::debug!(%path, "current version record gone while loading");
            continue;
        };
        match entry(path, &key, &kv.value, kv.mod_revision) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(err) => tracing::error!(%err, "skipping a corrupt version record"),
        }
    }
    let last_change = pointers
        .kvs
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap_or(0);
    Ok((
        Snapshot::from_entries(pointers.revision, entries),
        last_change,
    ))
}

fn entry(
    path: ConfigPath,
    key: &str,
    bytes: &[u8],
    revision: Revision,
) -> Result<Option<Entry>, records::CorruptRecord> {
    let (header, stored) = records::decode_version(key, bytes)?;
    if header.deleted {
        return Ok(None);
    }
    let value =
        ParsedValue::from_stored(header.format, &stored).map_err(|e| records::CorruptRecord {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Some(Entry {
        path,
        value,
        version: header.version,
        revision,
        updated_at: header.meta.updated_at,
    }))
}

/// A store batch as a core batch: puts of version records become changes; deletes are retention
/// removing old versions and are ignored.
fn to_batch(keys: &Layout, batch: &WatchBatch) -> Batch {
    let mut changes = Vec::new();
    for event in &batch.events {
        if event.kind != EventKind::Put {
            continue;
        }
        let key = &event.kv.key;
        let Some(path) = keys.path_of_version(key) else {
            tracing::error!(key, "unexpected key under the version records; skipped");
            continue;
        };
        let (header, stored) = match records::decode_version(key, &event.kv.value) {
            Ok(decoded) => decoded,
            Err(err) => {
                tracing::error!(%err, "skipping a corrupt version record");
                continue;
            }
        };
        let kind = if header.deleted {
            ChangeKind::Delete
        } else {
            match ParsedValue::from_stored(header.format, &stored) {
                Ok(value) => ChangeKind::Put { value },
                Err(err) => {
                    tracing::error!(%err, key, "skipping a version record whose value does not parse");
                    continue;
                }
            }
        };
        changes.push(Change {
            path,
            version: header.version,
            updated_at: header.meta.updated_at,
            kind,
        });
    }
    Batch {
        revision: batch.revision,
        committed_at_micros: now_micros(),
        changes,
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeyValue, WatchEvent};
    use setpoint_core::Format;

    fn put_event(key: String, value: Vec<u8>, revision: Revision) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key,
                value,
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            },
        }
    }

    fn header(version: u64, deleted: bool) -> records::VersionHeader {
        records::VersionHeader {
            version,
            deleted,
            format: Format::Json,
            meta: records::Meta {
                updated_at: "2026-01-01T00:00:00Z".into(),
                ..records::Meta::default()
            },
        }
    }

    #[test]
    fn version_puts_become_changes_and_retention_deletes_are_ignored() {
        let layout = Layout::new("/sp");
        let keys = &layout.keys;
        let a = ConfigPath::parse("/a/b").unwrap();
        let c = ConfigPath::parse("/c").unwrap();
        let batch = WatchBatch {
            revision: 7,
            events: vec![
                put_event(
                    keys.version(&a, 2),
                    records::encode_version(&header(2, false), "{\"x\":1}"),
                    7,
                ),
                put_event(
                    keys.version(&c, 3),
                    records::encode_version(&header(3, true), ""),
                    7,
                ),
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: keys.version(&a, 1),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: 7,
                        version: 0,
                    },
                },
            ],
        };
        let batch = to_batch(&layout, &batch);
        assert_eq!(batch.revision, 7);
        assert_eq!(batch.changes.len(), 2);
        assert_eq!(batch.changes[0].path, a);
        assert_eq!(batch.changes[0].version, 2);
        assert!(matches!(batch.changes[0].kind, ChangeKind::Put { .. }));
        assert_eq!(batch.changes[1].path, c);
        assert_eq!(batch.changes[1].kind, ChangeKind::Delete);
    }
}

//! The feed a replication server serves: the current snapshot, a bounded ring of recent encoded
//! batches for downstream edges that resume, and the broadcast that fans new batches out to
//! sessions.
//!
//! Owns: the current [`Snapshot`], the ring (count- and byte-bounded), the broadcast, and the
//! instant each batch was seen (so every hop measures propagation on its own clock, skew-free).
//! Who feeds it is the caller's business: the writer follows its store's watch, a relaying edge
//! follows its own snapshot holder. Each batch is encoded once here and shared by every session.
//!
//! Reads never wait for the feed: the snapshot sits behind arc-swap and the newest revision in an
//! atomic, so a request loads them without a lock. The one lock, over the ring, is taken by the
//! task that publishes (a pointer swap and a push per batch: the snapshot is applied and the
//! frame encoded before it) and by sessions starting — never by a request.
//!
//! Must not: touch a store or a holder, or speak QUIC (that is [`crate::server`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use setpoint_core::Revision;
use setpoint_core::snapshot::{AppliedBatch, Batch, Snapshot};
use setpoint_proto::frames::{self, Frame, FrameError, WireBatch, WireChange};
use tokio::sync::{broadcast, watch};

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
    /// When this node's feed received it (its own clock).
    pub seen: Instant,
    /// `Frame::Batch` on the wire, length prefix included.
    pub frame: Bytes,
}

/// What sessions receive from the feed.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    Batch(Arc<FeedBatch>),
    /// The feed reloaded the whole state (its source was reset, or a batch was too large for
    /// one frame): every session sends a fresh snapshot.
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

/// What a starting session must see consistently: the resumption ring and the revision it ends at.
struct Ring {
    /// The newest revision seen, including transactions that changed no config.
    revision: Revision,
    batches: VecDeque<Arc<FeedBatch>>,
    bytes: usize,
    /// Every batch after this revision is in the ring.
    base: Revision,
}

/// The shared side of a feed: whoever follows the source calls [`Feed::publish`] (or
/// [`Feed::publish_applied`]) and [`Feed::reset`]; sessions call [`Feed::subscribe`].
pub struct Feed {
    /// The current snapshot; replaced (never mutated) under the ring's lock, so a starting
    /// session sees a snapshot and a ring that belong together.
    snapshot: ArcSwap<Snapshot>,
    /// [`Ring::revision`], readable without the lock.
    revision: AtomicI64,
    ring: Mutex<Ring>,
    events: broadcast::Sender<FeedEvent>,
    loaded: watch::Sender<bool>,
    /// The newest revision seen, for readers waiting to see their own write.
    seen_revision: watch::Sender<Revision>,
    limits: FeedLimits,
}

impl Feed {
    /// An empty feed, not loaded: sessions wait until the first [`Feed::reset`].
    pub fn new(limits: FeedLimits) -> Arc<Feed> {
        let (events, _) = broadcast::channel(limits.session_queue.max(1));
        Arc::new(Feed {
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
        })
    }

    pub fn limits(&self) -> &FeedLimits {
        &self.limits
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

    /// The current snapshot (a persistent map: cloning it copies no entry).
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

    /// Replaces everything with `snapshot`. `history` holds the source's batches after
    /// `history_base` up to the snapshot (the writer reads them from its store), so a downstream
    /// edge that was a little behind still resumes by delta; pass `(snapshot.revision(), [])`
    /// when there is none.
    pub fn reset(&self, snapshot: Snapshot, history_base: Revision, history: Vec<Batch>) {
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

    /// Applies one batch of the source: the snapshot moves on, the batch goes into the ring and
    /// out to every session. One task publishes, so the next snapshot and the frame are computed
    /// before the lock is taken. A batch without changes only moves the revision on.
    pub fn publish(&self, batch: Batch, seen: Instant) {
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
        self.push(batch.revision, Arc::new(next), frame, seen);
    }

    /// Publishes a batch the source already applied (a relaying edge's holder did): `after` is
    /// the snapshot it led to. Revisions at or below the feed's are ignored.
    pub fn publish_applied(&self, applied: &AppliedBatch, after: Arc<Snapshot>, seen: Instant) {
        if applied.revision <= self.revision() {
            return;
        }
        let frame = frames::encode(&Frame::Batch(wire_batch(applied)));
        self.push(applied.revision, after, frame, seen);
    }

    fn push(
        &self,
        revision: Revision,
        next: Arc<Snapshot>,
        frame: Result<Vec<u8>, FrameError>,
        seen: Instant,
    ) {
        let mut ring = self.lock();
        self.snapshot.store(next);
        self.advance(&mut ring, revision);
        let frame = match frame {
            Ok(frame) => Bytes::from(frame),
            Err(err) => {
                // Too large for one frame: edges get it inside a (chunked) snapshot instead.
                tracing::warn!(%err, revision, "batch cannot be framed; edges resync by snapshot");
                ring.batches.clear();
                ring.bytes = 0;
                ring.base = revision;
                let _ = self.events.send(FeedEvent::Reset);
                return;
            }
        };
        let batch = Arc::new(FeedBatch {
            revision,
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

/// An applied batch as the wire carries it: each event's new entry, or a delete. (A delete's
/// own timestamp is not kept by an applied batch; no edge reads it: the entry is gone.)
fn wire_batch(applied: &AppliedBatch) -> WireBatch {
    WireBatch {
        revision: applied.revision,
        committed_at_micros: applied.committed_at_micros,
        changes: applied
            .events
            .iter()
            .map(|event| WireChange {
                path: event.path.as_str().to_owned(),
                version: event.version,
                updated_at: event
                    .new
                    .as_ref()
                    .map(|entry| entry.updated_at.clone())
                    .unwrap_or_default(),
                value: event
                    .new
                    .as_ref()
                    .map(|entry| (entry.value.format(), entry.value.stored().to_owned())),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use setpoint_core::snapshot::{Change, ChangeKind};
    use setpoint_core::{ConfigPath, Format, ParsedValue};

    fn batch(revision: Revision, path: &str, value: Option<&str>) -> Batch {
        Batch {
            revision,
            committed_at_micros: 7,
            changes: vec![Change {
                path: ConfigPath::parse(path).unwrap_or_else(|e| panic!("{e}")),
                version: revision as u64,
                updated_at: "2026-01-01T00:00:00Z".into(),
                kind: match value {
                    Some(v) => ChangeKind::Put {
                        value: ParsedValue::from_stored(Format::Text, v)
                            .unwrap_or_else(|e| panic!("{e}")),
                    },
                    None => ChangeKind::Delete,
                },
            }],
        }
    }

    #[test]
    fn a_relayed_batch_is_the_batch_the_writer_encoded() {
        // A relay re-encodes what its holder applied: a downstream edge must get the same frame
        // the writer sent, so one protocol serves every hop.
        let (writer, relay) = (
            Feed::new(FeedLimits::default()),
            Feed::new(FeedLimits::default()),
        );
        writer.reset(Snapshot::empty(), 0, Vec::new());
        relay.reset(Snapshot::empty(), 0, Vec::new());
        let mut state = Snapshot::empty();
        for b in [batch(2, "/a", Some("x")), batch(3, "/a", None)] {
            writer.publish(b.clone(), Instant::now());
            let (after, applied) = state.apply(&b).unwrap_or_else(|e| panic!("{e}"));
            state = after.clone();
            relay.publish_applied(&applied, Arc::new(after), Instant::now());
        }
        let frames = |feed: &Feed| match feed.subscribe(0).1 {
            Start::Resume(batches) => batches.iter().map(|b| b.frame.clone()).collect::<Vec<_>>(),
            Start::Snapshot(_) => panic!("the ring covers revision 0"),
        };
        let (sent, relayed) = (frames(&writer), frames(&relay));
        assert_eq!(sent.len(), 2);
        // The put is byte for byte the writer's; the delete differs only in its unused time.
        assert_eq!(sent[0], relayed[0]);
        assert_eq!(relay.revision(), 3);
        assert_eq!(relay.snapshot().len(), 0);
    }

    #[test]
    fn a_session_resumes_inside_the_ring_and_gets_a_snapshot_outside_it() {
        let feed = Feed::new(FeedLimits {
            ring_batches: 2,
            ..FeedLimits::default()
        });
        feed.reset(Snapshot::empty(), 0, Vec::new());
        for revision in 2..=5 {
            feed.publish(batch(revision, "/a", Some("v")), Instant::now());
        }
        assert!(matches!(feed.subscribe(3).1, Start::Resume(b) if b.len() == 2));
        assert!(matches!(feed.subscribe(5).1, Start::Resume(b) if b.is_empty()));
        assert!(matches!(feed.subscribe(2).1, Start::Snapshot(s) if s.revision() == 5));
        assert!(
            matches!(feed.subscribe(9).1, Start::Snapshot(_)),
            "ahead of the feed: the server refuses it before subscribing"
        );
    }
}

//! The snapshot holder: the one place an edge's config state lives.
//!
//! Reads load the current snapshot with one atomic pointer load (arc-swap) and never take a lock.
//! The replication subscriber is the only writer: it applies batches (in revision order) or
//! swaps in a whole snapshot. Every applied batch goes into a bounded ring (for watch resumption)
//! and out on a broadcast channel to the watch hub.
//!
//! Writes (`apply`, `replace`) and ring reads (`since`) share one short mutex so that the ring
//! and the snapshot always agree: the ring holds *every* batch after its floor revision up to the
//! current snapshot's revision. This module must not know about watchers, HTTP or the disk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use setpoint_core::snapshot::{AppliedBatch, ApplyError, Batch, Snapshot};
use setpoint_core::{Revision, env};
use tokio::sync::{broadcast, watch};

/// How many applied batches the ring keeps by default for watch resumption.
pub const DEFAULT_RING_CAPACITY: usize = 10_000;
/// How much memory (about) the ring may hold by default: the writer's ring is capped alike.
pub const DEFAULT_RING_BYTES: usize = 64 << 20;
/// How many hub messages the broadcast buffers before the hub is considered lagging.
pub const HUB_CHANNEL_CAPACITY: usize = 4_096;

/// What the holder tells the watch hub.
#[derive(Debug, Clone)]
pub enum HubMessage {
    /// One applied commit batch, in revision order, with the snapshots before and after it
    /// (environment-aware watches compare effective values across it; clones are O(1)).
    Batch {
        batch: Arc<AppliedBatch>,
        before: Arc<Snapshot>,
        after: Arc<Snapshot>,
    },
    /// The whole snapshot was replaced (a snapshot transfer): every watcher must reset.
    Reset { revision: Revision },
}

/// Tuning of a [`SnapshotHolder`].
#[derive(Debug, Clone)]
pub struct HolderOptions {
    /// Applied batches kept for resumption (at least 1).
    pub ring_capacity: usize,
    /// About how many bytes of values the ring may hold; the oldest batches go first, the newest
    /// one always stays.
    pub ring_bytes: usize,
    /// True when the initial snapshot is real data (loaded from disk): the edge is ready to serve.
    pub ready: bool,
}

impl Default for HolderOptions {
    fn default() -> HolderOptions {
        HolderOptions {
            ring_capacity: DEFAULT_RING_CAPACITY,
            ring_bytes: DEFAULT_RING_BYTES,
            ready: false,
        }
    }
}

/// Every applied batch after `floor`, oldest first, within a count and a byte budget.
struct Ring {
    floor: Revision,
    batches: VecDeque<(Arc<AppliedBatch>, usize)>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, batch: Arc<AppliedBatch>) {
        let size = batch.approx_bytes();
        self.batches.push_back((batch, size));
        self.bytes += size;
        while self.batches.len() > self.capacity
            || (self.bytes > self.max_bytes && self.batches.len() > 1)
        {
            let Some((evicted, size)) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.floor = evicted.revision;
        }
    }

    fn clear(&mut self, floor: Revision) {
        self.batches.clear();
        self.bytes = 0;
        self.floor = floor;
    }

    fn since(&self, revision: Revision, current: Revision) -> Option<Vec<Arc<AppliedBatch>>> {
        if revision < self.floor || revision > current {
            return None;
        }
        let start = self
            .batches
            .partition_point(|(b, _)| b.revision <= revision);
        Some(
            self.batches
                .range(start..)
                .map(|(b, _)| b.clone())
                .collect(),
        )
    }
}

pub struct SnapshotHolder {
    current: ArcSwap<Snapshot>,
    ring: Mutex<Ring>,
    /// The last batch applied (none after a snapshot swap): the revision nearly every receipt
    /// names, answered by [`SnapshotHolder::committed_at`] without the ring's lock, which the
    /// receipts of 100,000 sessions contended on.
    latest: ArcSwapOption<AppliedBatch>,
    hub: broadcast::Sender<HubMessage>,
    changes: watch::Sender<Revision>,
    /// The stale flag's changes, for sessions that tell their clients at once.
    staleness: watch::Sender<bool>,
    connected: AtomicBool,
    stale: AtomicBool,
    ready: AtomicBool,
    started: Instant,
    /// Microseconds after `started` of the last frame from the writer.
    /// Negative when an upstream said it lost the writer before this edge started.
    last_contact_micros: AtomicI64,
    /// The revision of the last batch that changed an environment definition (or of the last
    /// snapshot swapped in): open watches in an environment check their chain again after it.
    definitions_changed: AtomicI64,
    /// The revision of the last batch that changed an account record (or of the last snapshot
    /// swapped in): open watches check their caller's key and grants again after it.
    accounts_changed: AtomicI64,
    /// The upstream the subscriber is following now, for `/healthz`.
    upstream: Mutex<Option<Upstream>>,
    /// The upstream (a relay) said it is itself cut off from the writer: its heartbeats no
    /// longer make this edge fresh.
    upstream_stale: AtomicBool,
    /// The upstream followed says it is a standby writer.
    upstream_standby: AtomicBool,
}

/// What the subscriber follows now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upstream {
    /// `host:port` of its replication endpoint.
    pub addr: String,
    /// Set when it is not one of the configured upstreams but a peer of this edge's region found
    /// by gossip, followed only while every configured upstream is unreachable: its node id.
    pub peer: Option<String>,
}

impl SnapshotHolder {
    /// A holder starting from `initial` (e.g. loaded from disk); `stale` until the writer answers.
    pub fn new(initial: Snapshot, stale: bool) -> Arc<SnapshotHolder> {
        let ready = !stale || initial.revision() > 0 || !initial.is_empty();
        SnapshotHolder::with_options(
            initial,
            stale,
            HolderOptions {
                ready,
                ..HolderOptions::default()
            },
        )
    }

    /// Like [`SnapshotHolder::new`] with an explicit ring capacity and readiness.
    pub fn with_options(
        initial: Snapshot,
        stale: bool,
        options: HolderOptions,
    ) -> Arc<SnapshotHolder> {
        let revision = initial.revision();
        let (hub, _) = broadcast::channel(HUB_CHANNEL_CAPACITY);
        let (changes, _) = watch::channel(revision);
        Arc::new(SnapshotHolder {
            current: ArcSwap::from_pointee(initial),
            latest: ArcSwapOption::empty(),
            ring: Mutex::new(Ring {
                floor: revision,
                batches: VecDeque::new(),
                capacity: options.ring_capacity.max(1),
                max_bytes: options.ring_bytes,
                bytes: 0,
            }),
            hub,
            changes,
            connected: AtomicBool::new(!stale),
            stale: AtomicBool::new(stale),
            staleness: watch::channel(stale).0,
            ready: AtomicBool::new(options.ready),
            started: Instant::now(),
            last_contact_micros: AtomicI64::new(0),
            definitions_changed: AtomicI64::new(revision),
            accounts_changed: AtomicI64::new(revision),
            upstream: Mutex::new(None),
            upstream_stale: AtomicBool::new(false),
            upstream_standby: AtomicBool::new(false),
        })
    }

    /// The revision of the last batch that changed an environment definition, or of the last
    /// snapshot swapped in (which may have): a check of an environment's chain made on a
    /// snapshot at or after it is still current.
    pub fn definitions_changed_at(&self) -> Revision {
        self.definitions_changed.load(Ordering::Acquire)
    }

    /// The revision of the last batch that changed an account record, or of the last snapshot
    /// swapped in.
    pub fn accounts_changed_at(&self) -> Revision {
        self.accounts_changed.load(Ordering::Acquire)
    }

    /// The current snapshot (cheap: one atomic load + Arc clone).
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot for the length of one request, without touching its shared
    /// reference count (which every core's reads would otherwise contend on).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub fn revision(&self) -> Revision {
        self.current.load().revision()
    }

    /// Applies one batch; out of order → error and nothing changes.
    pub fn apply(&self, batch: &Batch) -> Result<Arc<AppliedBatch>, ApplyError> {
        let mut ring = self.lock_ring();
        let before = self.current.load_full();
        let (next, applied) = before.apply(batch)?;
        let (applied, after) = (Arc::new(applied), Arc::new(next));
        self.current.store(after.clone());
        if applied
            .events
            .iter()
            .any(|event| env::definition_name(&event.path).is_some())
        {
            // After the snapshot is current, before any watcher can get the batch: a watch that
            // sees this revision finds the new definitions in `current()`.
            self.definitions_changed
                .store(applied.revision, Ordering::Release);
        }
        if let Some(accounts) = setpoint_core::auth::accounts_root()
            && applied.events.iter().any(|e| e.path.starts_with(&accounts))
        {
            self.accounts_changed
                .store(applied.revision, Ordering::Release);
        }
        ring.push(applied.clone());
        self.latest.store(Some(applied.clone()));
        // No receiver (no hub yet) is fine: the ring still holds the batch.
        let _ = self.hub.send(HubMessage::Batch {
            batch: applied.clone(),
            before,
            after,
        });
        drop(ring);
        self.ready.store(true, Ordering::Release);
        self.changes.send_replace(applied.revision);
        Ok(applied)
    }

    /// Swaps in a full snapshot (after a snapshot transfer). Watchers of this edge get a reset.
    pub fn replace(&self, snapshot: Snapshot) {
        let revision = snapshot.revision();
        let mut ring = self.lock_ring();
        self.current.store(Arc::new(snapshot));
        self.latest.store(None);
        self.definitions_changed.store(revision, Ordering::Release);
        self.accounts_changed.store(revision, Ordering::Release);
        ring.clear(revision);
        let _ = self.hub.send(HubMessage::Reset { revision });
        drop(ring);
        self.ready.store(true, Ordering::Release);
        self.changes.send_replace(revision);
    }

    /// Called by the subscriber: an upstream answered (clears the stale flag, until that
    /// upstream says it is stale itself) or was lost.
    pub fn set_connected(&self, connected: bool) {
        self.upstream_stale.store(false, Ordering::Release);
        self.upstream_standby.store(false, Ordering::Release);
        if connected {
            self.touch();
        }
        self.connected.store(connected, Ordering::Release);
        self.set_stale(!connected);
    }

    /// Called by the subscriber when its upstream (a relay) says whether it is cut off from the
    /// writer itself, and since how long: this edge is then exactly as stale — its staleness
    /// counts from the relay's last word from the writer, and heartbeats do not refresh it.
    pub fn set_upstream_stale(&self, stale: bool, staleness: Duration) {
        self.upstream_stale.store(stale, Ordering::Release);
        if stale {
            let back = i64::try_from(staleness.as_micros()).unwrap_or(i64::MAX);
            let micros = self.elapsed_micros().saturating_sub(back);
            self.last_contact_micros.store(micros, Ordering::Release);
        } else {
            self.touch();
        }
        let connected = self.connected.load(Ordering::Acquire);
        self.set_stale(stale || !connected);
    }

    fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Release);
        self.staleness.send_if_modified(|held| {
            let changed = *held != stale;
            *held = stale;
            changed
        });
    }

    /// Called by the subscriber when a new link's first word is that the upstream is stale
    /// itself: connected, but never fresh for a moment.
    pub fn set_connected_to_stale(&self, staleness: Duration) {
        self.connected.store(true, Ordering::Release);
        self.set_upstream_stale(true, staleness);
    }

    /// Called by the subscriber when its upstream says whether it is a standby writer.
    pub fn set_upstream_standby(&self, standby: bool) {
        self.upstream_standby.store(standby, Ordering::Release);
    }

    /// True while the upstream followed says it is a standby writer.
    pub fn upstream_is_standby(&self) -> bool {
        self.upstream_standby.load(Ordering::Acquire)
    }

    /// True while the upstream followed says it is itself cut off from the writer.
    pub fn upstream_is_stale(&self) -> bool {
        self.upstream_stale.load(Ordering::Acquire)
    }

    /// Called by the subscriber: the upstream it follows now (`None` between links).
    pub fn set_upstream(&self, upstream: Option<Upstream>) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = upstream;
    }

    /// The upstream this edge follows now, if any.
    pub fn upstream(&self) -> Option<Upstream> {
        self.upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fires when the stale flag changes (the value is the new flag).
    pub fn staleness(&self) -> watch::Receiver<bool> {
        self.staleness.subscribe()
    }

    /// True while the writer has not answered since this edge started, or is currently lost.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Seconds since the last frame from the writer (0 while connected and fresh).
    pub fn staleness_seconds(&self) -> f64 {
        if !self.is_stale() {
            return 0.0;
        }
        let last = self.last_contact_micros.load(Ordering::Acquire);
        self.elapsed_micros().saturating_sub(last).max(0) as f64 / 1e6
    }

    /// Called on every frame from the upstream (batches and heartbeats); a no-op while that
    /// upstream is stale itself.
    pub fn touch(&self) {
        if self.upstream_stale.load(Ordering::Acquire) {
            return;
        }
        self.last_contact_micros
            .store(self.elapsed_micros(), Ordering::Release);
    }

    fn elapsed_micros(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Every applied batch after `revision`, oldest first; `None` when the ring no longer holds
    /// all of them (or `revision` is ahead of this edge), so nothing missing can be proven.
    pub fn since(&self, revision: Revision) -> Option<Vec<Arc<AppliedBatch>>> {
        self.since_with_snapshot(revision).0
    }

    /// [`SnapshotHolder::since`] together with the snapshot the batches lead up to, read
    /// atomically: the batches end exactly at the snapshot's revision.
    pub fn since_with_snapshot(
        &self,
        revision: Revision,
    ) -> (Option<Vec<Arc<AppliedBatch>>>, Arc<Snapshot>) {
        let ring = self.lock_ring();
        let snapshot = self.current.load_full();
        (ring.since(revision, snapshot.revision()), snapshot)
    }

    /// When the writer committed `revision` (its clock, unix microseconds), while the ring still
    /// holds that batch or it is the last one applied.
    pub fn committed_at(&self, revision: Revision) -> Option<i64> {
        if let Some(latest) = &*self.latest.load()
            && latest.revision == revision
        {
            return Some(latest.committed_at_micros);
        }
        let ring = self.lock_ring();
        let index = ring
            .batches
            .binary_search_by_key(&revision, |(b, _)| b.revision)
            .ok()?;
        ring.batches.get(index).map(|(b, _)| b.committed_at_micros)
    }

    /// What the resumption ring holds now: batches and (about) bytes.
    pub fn ring_usage(&self) -> (usize, usize) {
        let ring = self.lock_ring();
        (ring.batches.len(), ring.bytes)
    }

    /// The hub's feed: every applied batch and every reset, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<HubMessage> {
        self.hub.subscribe()
    }

    /// Fires after every apply and replace (the value is the new revision); the persister waits
    /// on it.
    pub fn changes(&self) -> watch::Receiver<Revision> {
        self.changes.subscribe()
    }

    /// True once the edge has a snapshot to serve: loaded from disk or received from the writer.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the edge ready (e.g. the writer confirmed an empty config set).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn lock_ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent with the snapshot in
        // a way worse than a reset, so a poisoned lock is simply taken over.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use setpoint_core::snapshot::{Change, ChangeKind};
    use setpoint_core::{ConfigPath, Format, ParsedValue};

    fn batch(revision: Revision, path: &str) -> Batch {
        Batch {
            revision,
            committed_at_micros: 0,
            changes: vec![Change {
                path: ConfigPath::parse(path).unwrap(),
                version: revision as u64,
                updated_at: "2026-01-01T00:00:00Z".into(),
                kind: ChangeKind::Put {
                    value: ParsedValue::from_stored(Format::Text, "v").unwrap(),
                },
            }],
        }
    }

    #[test]
    fn ring_covers_exactly_what_it_holds() {
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            true,
            HolderOptions {
                ring_capacity: 3,
                ring_bytes: usize::MAX,
                ready: false,
            },
        );
        assert!(!holder.is_ready());
        for revision in [2, 3, 5, 8] {
            holder.apply(&batch(revision, "/a")).unwrap();
        }
        assert!(holder.is_ready());
        assert_eq!(holder.revision(), 8);
        // Ring holds 3, 5, 8; floor is 2.
        assert!(holder.since(1).is_none());
        let revs = |v: Vec<Arc<AppliedBatch>>| v.iter().map(|b| b.revision).collect::<Vec<_>>();
        assert_eq!(revs(holder.since(2).unwrap()), vec![3, 5, 8]);
        assert_eq!(revs(holder.since(4).unwrap()), vec![5, 8]);
        assert_eq!(revs(holder.since(8).unwrap()), Vec::<Revision>::new());
        assert!(holder.since(9).is_none(), "ahead of the edge");
        assert!(holder.apply(&batch(8, "/a")).is_err());
        assert_eq!(holder.revision(), 8);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_keeps_the_newest_batch() {
        let big = |revision: Revision| Batch {
            revision,
            committed_at_micros: 0,
            changes: vec![Change {
                path: ConfigPath::parse("/big").unwrap(),
                version: revision as u64,
                updated_at: "2026-01-01T00:00:00Z".into(),
                kind: ChangeKind::Put {
                    value: ParsedValue::from_stored(Format::Text, &"x".repeat(256 << 10)).unwrap(),
                },
            }],
        };
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            true,
            HolderOptions {
                ring_capacity: 10_000,
                ring_bytes: 4 << 20,
                ready: false,
            },
        );
        for revision in 2..1_000 {
            holder.apply(&big(revision)).unwrap();
        }
        let (batches, bytes) = holder.ring_usage();
        assert!(bytes <= 4 << 20, "{bytes} bytes held");
        assert!(batches >= 2, "{batches} batches");
        // What it holds is still a contiguous tail: resumable from its floor, not before.
        assert!(holder.since(999 - batches as Revision).is_some());
        assert!(holder.since(998 - batches as Revision).is_none());
        let tiny = SnapshotHolder::with_options(
            Snapshot::empty(),
            true,
            HolderOptions {
                ring_capacity: 10,
                ring_bytes: 1,
                ready: false,
            },
        );
        tiny.apply(&big(2)).unwrap();
        assert_eq!(tiny.ring_usage().0, 1, "the newest batch always stays");
    }

    #[test]
    fn replace_resets_the_ring_and_broadcasts() {
        let holder = SnapshotHolder::new(Snapshot::empty(), true);
        let mut feed = holder.subscribe();
        holder.apply(&batch(2, "/a")).unwrap();
        holder.replace(Snapshot::from_entries(10, []));
        assert!(
            matches!(feed.try_recv(), Ok(HubMessage::Batch { batch, .. }) if batch.revision == 2)
        );
        assert!(matches!(
            feed.try_recv(),
            Ok(HubMessage::Reset { revision: 10 })
        ));
        assert!(holder.since(2).is_none());
        assert_eq!(holder.since(10).unwrap().len(), 0);
    }

    #[test]
    fn staleness_follows_the_connection() {
        let holder = SnapshotHolder::new(Snapshot::empty(), true);
        assert!(holder.is_stale());
        holder.set_connected(true);
        assert!(!holder.is_stale());
        assert_eq!(holder.staleness_seconds(), 0.0);
        holder.set_connected(false);
        assert!(holder.is_stale());
        assert!(holder.staleness_seconds() >= 0.0);
    }

    #[test]
    fn an_upstream_that_is_stale_itself_makes_this_edge_as_stale_until_it_is_fresh_again() {
        let holder = SnapshotHolder::new(Snapshot::empty(), true);
        let mut flag = holder.staleness();
        holder.set_connected(true);
        assert!(!holder.is_stale());
        assert!(flag.has_changed().unwrap_or(false) && !*flag.borrow_and_update());
        // The relay lost the writer 5 s ago: so did this edge, and its heartbeats change nothing.
        holder.set_upstream_stale(true, Duration::from_secs(5));
        holder.touch();
        assert!(holder.is_stale() && holder.upstream_is_stale());
        assert!(
            holder.staleness_seconds() >= 5.0,
            "{}",
            holder.staleness_seconds()
        );
        assert!(flag.has_changed().unwrap_or(false) && *flag.borrow_and_update());
        holder.set_upstream_stale(false, Duration::ZERO);
        assert!(!holder.is_stale() && !holder.upstream_is_stale());
        assert_eq!(holder.staleness_seconds(), 0.0);
        // A new link starts from what its own first word says.
        holder.set_connected(false);
        holder.set_connected_to_stale(Duration::from_secs(2));
        assert!(holder.is_stale() && holder.staleness_seconds() >= 2.0);
        holder.set_connected(true);
        assert!(!holder.is_stale() && !holder.upstream_is_stale());
    }
}

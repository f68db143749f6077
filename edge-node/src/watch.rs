//! The watch hub: fans every applied batch out to the watchers whose prefixes it touches.
//!
//! Built for 100k watchers per edge. Watchers are indexed by prefix; for each batch the hub walks
//! each changed path's ancestors, looks each up in the index, builds every touched prefix's
//! filtered event list once and shares it (`Arc`) between all watchers of that prefix. A watcher
//! with several prefixes (overlaps normalized away at subscription) gets one merged message per
//! batch, in the batch's event order.
//!
//! Every watcher has a small queue, bounded in messages and in bytes. When it is full the watcher
//! is marked behind and the hub stops sending to it; once its consumer has drained the queue, the
//! watcher catches up from the holder's ring at its own pace (the ring is the backlog, shared by
//! all watchers) and then goes live again — no reset for a watcher that is merely slower than a
//! burst, e.g. an edge catching up hundreds of batches at once. Only when the ring no longer holds
//! everything after the watcher's position does it drop what is pending and emit a reset (the
//! current state of its prefixes). Memory per watcher stays bounded whatever the consumer does.
//! A snapshot replacement, or the hub itself lagging the holder's broadcast, resets every watcher.
//!
//! Resumption: a watcher subscribed with `from_revision` first replays the batches the holder's
//! ring still holds after it, then continues live with no gap and no duplicate (registration and
//! the ring read happen under the same lock the hub delivers under). When the ring no longer
//! covers it, the first message is a reset. A watcher is never moved backwards: resuming from a
//! revision this edge has not reached yet waits (bounded) until it has ([`WatchHub::resume`]),
//! else fails with [`WatchError::Behind`] — retry later or at another edge.
//!
//! System records (`/_setpoint/…`: the accounts, replicated so the edge can check keys) reach
//! only watchers of a prefix inside that namespace: a watcher of `/` never sees them, in batches,
//! replays or resets. Who may watch what is decided before [`WatchHub::subscribe`] is called.
//!
//! Environment-aware watchers ([`WatchSpec`] with `env` and/or `resolve`) see effective values
//! (see `setpoint_core::effective_watch`). They are grouped by [`EnvView`] (environment, resolve):
//! per batch each group's effective events are computed once, over the union of the group's
//! prefixes, from the snapshots before and after the batch that the holder sends along, then
//! shared per prefix exactly as base events are. Replays rebuild the snapshot before each ring
//! batch by undoing batches from the current snapshot; resets carry the effective state. The
//! queues, cut-off and ordering guarantees are the base watch's.
//!
//! This module knows nothing of HTTP, SSE or gRPC; those map [`WatchMessage`]s to their wire.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::Duration;

use futures::task::AtomicWaker;
use prometheus::{IntCounter, IntGauge};
use setpoint_core::auth::is_system;
use setpoint_core::effective_watch::{EnvView, covers};
use setpoint_core::env::{self, EnvError};
use setpoint_core::snapshot::{AppliedBatch, Entry, Event, Snapshot};
use setpoint_core::{ConfigPath, Revision};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;

use crate::holder::{HubMessage, SnapshotHolder};

/// Messages a watcher's queue holds before it catches up from the ring instead.
pub const DEFAULT_QUEUE_CAPACITY: usize = 128;
/// Bytes (about: the values its messages hold) a watcher's queue holds before it catches up from
/// the ring instead.
pub const QUEUE_BYTES: usize = 8 << 20;
/// Most prefixes one watch or session may name (after parsing, before overlaps are merged).
pub const MAX_PREFIXES: usize = 1_000;
/// How long a resume from a revision this edge has not reached yet waits for it.
pub const RESUME_WAIT: Duration = Duration::from_secs(5);

/// The changes of one commit batch below a watcher's prefixes, in the batch's order. Shared
/// (`Arc`) by every watcher of the same prefix; each wire encoding is computed once, by the
/// first watcher that needs it, and reused by all the others.
#[derive(Debug)]
pub struct WatchBatch {
    pub revision: Revision,
    pub events: Vec<Event>,
    /// About the memory its events' values hold (for the queues' byte bound).
    pub bytes: usize,
    /// The SSE chunk of the batch (every event, the id on the last), shared by its watchers.
    pub sse: std::sync::OnceLock<bytes::Bytes>,
    /// gRPC events, one per event.
    pub grpc: std::sync::OnceLock<Arc<[setpoint_proto::edge::v1::Event]>>,
}

impl WatchBatch {
    pub fn new(revision: Revision, events: Vec<Event>) -> WatchBatch {
        let bytes = events
            .iter()
            .map(|e| {
                e.old.as_ref().map_or(0, |x| x.approx_bytes())
                    + e.new.as_ref().map_or(0, |x| x.approx_bytes())
                    + 64
            })
            .sum();
        WatchBatch {
            revision,
            events,
            bytes,
            sse: Default::default(),
            grpc: Default::default(),
        }
    }
}

/// The complete current state of a watcher's prefixes at `revision`.
#[derive(Debug)]
pub struct ResetState {
    pub revision: Revision,
    pub entries: Vec<Arc<Entry>>,
}

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum WatchMessage {
    Batch(Arc<WatchBatch>),
    /// Replace everything held under the prefixes with this state.
    Reset(Arc<ResetState>),
}

impl WatchMessage {
    pub fn revision(&self) -> Revision {
        match self {
            WatchMessage::Batch(batch) => batch.revision,
            WatchMessage::Reset(reset) => reset.revision,
        }
    }
}

/// What a watcher asks for: prefixes, and optionally the environment whose effective values it
/// wants (`resolve`: with `${VAR}` substituted; `${secret:…}` references stay as written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSpec {
    pub prefixes: Vec<ConfigPath>,
    /// `None` (or empty): stored entries, as [`WatchHub::subscribe`] watches them.
    pub env: Option<String>,
    pub resolve: bool,
}

impl WatchSpec {
    /// The effective view this spec asks for; `None` for a base watch.
    fn view(&self) -> Option<EnvView> {
        let env = self.env.clone().filter(|e| !e.is_empty());
        (env.is_some() || self.resolve).then_some(EnvView {
            env,
            resolve: self.resolve,
        })
    }
}

/// Why a watch cannot start; mapped to the API's error vocabulary by [`crate::error`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WatchError {
    /// The environment does not exist (now), or its chain is broken: `GET ?env=` refuses it too.
    #[error(transparent)]
    Environment(#[from] EnvError),
    /// A prefix under `/env` watched with an environment: overrides are layers, not base paths.
    #[error(
        "{prefix} is under /env: watch the base prefix with an environment, or the override itself without env and resolve"
    )]
    Reserved { prefix: ConfigPath },
    /// Resuming from a revision this edge has not reached (e.g. just restarted from its disk
    /// snapshot): answering would move the caller backwards.
    #[error(
        "this edge is at revision {at}, behind the asked revision {asked}; retry shortly or at another edge"
    )]
    Behind { asked: Revision, at: Revision },
}

/// The hub's counters, registered by the metrics module.
#[derive(Clone)]
pub struct HubCounters {
    /// Connected watchers.
    pub watchers: IntGauge,
    /// Events handed to watchers' streams.
    pub events_sent: IntCounter,
    /// Resets emitted (cut off, snapshot replaced, resume not covered).
    pub resets: IntCounter,
    /// Watchers reset because they fell further behind than the ring holds.
    pub cut_off: IntCounter,
    /// Watchers whose queue filled up and who caught up from the ring instead.
    pub caught_up: IntCounter,
    /// Bytes (about) held in all watchers' queues.
    pub queued_bytes: IntGauge,
}

impl HubCounters {
    pub fn new() -> Result<HubCounters, prometheus::Error> {
        Ok(HubCounters {
            watchers: IntGauge::new("setpoint_edge_watchers", "Connected watchers.")?,
            events_sent: IntCounter::new(
                "setpoint_edge_events_sent_total",
                "Watch events handed to watchers.",
            )?,
            resets: IntCounter::new(
                "setpoint_edge_watchers_reset_total",
                "Resets sent to watchers (cut off, snapshot replaced, or resume not covered).",
            )?,
            cut_off: IntCounter::new(
                "setpoint_edge_watchers_cut_off_total",
                "Watchers that fell further behind than the resumption ring holds and were reset.",
            )?,
            caught_up: IntCounter::new(
                "setpoint_edge_watchers_caught_up_total",
                "Watchers whose queue filled up and who caught up from the resumption ring.",
            )?,
            queued_bytes: IntGauge::new(
                "setpoint_edge_watch_queued_bytes",
                "Bytes (about: the values) held in watchers' queues.",
            )?,
        })
    }
}

/// Everything the hub and one watcher share, in one allocation: its queue, its consumer's waker,
/// its flags and byte count. A delivery touches them all, and at 100,000 watchers each separate
/// allocation was a cache miss of its own per commit (a tokio channel was several: its
/// cache-padded halves, its semaphore, its slot blocks).
#[derive(Default)]
struct Shared {
    /// Batches the consumer has not taken yet, oldest first; bounded by the hub (in messages and
    /// in bytes).
    queue: Mutex<VecDeque<Arc<WatchBatch>>>,
    /// The consumer's task, woken by whatever it must look at: a batch queued, a flag set.
    waker: AtomicWaker,
    /// For a watcher subscribed beside another ([`WatchHub::subscribe_beside`]): that one's,
    /// rung instead of this one's waker.
    doorbell: Option<Arc<Shared>>,
    /// A watcher beside this one has something to look at ([`Watcher::rung`]).
    rung: AtomicBool,
    /// Must reset (snapshot replaced, hub lagged): nothing after its position can be proven.
    lagged: AtomicBool,
    /// Its queue filled up: it catches up from the ring after `after` once drained.
    behind: AtomicBool,
    /// Bytes of the messages in its queue.
    queued: AtomicUsize,
    /// Ended from outside ([`Ender`]): the stream ends at its next poll.
    ended: AtomicBool,
}

/// Ends a watcher from elsewhere — its stream ends (`None`) at its next poll, woken now — for
/// a consumer that must stop for a reason of its own (a session whose client left): the flag
/// sits beside the ones every poll reads anyway, so watching for it costs nothing.
pub struct Ender {
    shared: Arc<Shared>,
}

impl Ender {
    pub fn end(&self) {
        self.shared.ended.store(true, Ordering::Release);
        self.shared.ring();
    }
}

/// Wakes every watcher with nothing to deliver ([`Nudger::nudge_all`]); does not keep the hub
/// alive.
#[derive(Clone)]
pub struct Nudger(Weak<Inner>);

impl Nudger {
    /// Wakes every watcher's consumer once (for state they check when woken, such as the
    /// edge's staleness); false once the hub is gone.
    pub fn nudge_all(&self) -> bool {
        let Some(inner) = self.0.upgrade() else {
            return false;
        };
        let registry = inner.lock();
        for slot in registry.watchers.values() {
            slot.shared.ring();
        }
        true
    }
}

struct Slot {
    prefixes: Arc<[ConfigPath]>,
    /// `None` for a base watcher.
    view: Option<Arc<EnvView>>,
    shared: Arc<Shared>,
    /// The watcher already has (or has queued) everything up to this revision.
    after: Revision,
}

/// Watcher ids by watched prefix.
type Index = HashMap<ConfigPath, HashSet<u64>>;

#[derive(Default)]
struct Registry {
    /// Base watchers.
    by_prefix: Index,
    /// Environment-aware watchers, one index per view.
    views: HashMap<Arc<EnvView>, Index>,
    watchers: HashMap<u64, Slot>,
}

impl Registry {
    fn index(&mut self, view: Option<&Arc<EnvView>>) -> &mut Index {
        match view {
            Some(view) => self.views.entry(view.clone()).or_default(),
            None => &mut self.by_prefix,
        }
    }
}

struct Inner {
    holder: Arc<SnapshotHolder>,
    registry: Mutex<Registry>,
    queue_capacity: usize,
    queue_bytes: usize,
    counters: HubCounters,
    next_id: AtomicU64,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(stop) = self
            .stop
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = stop.send(());
        }
    }
}

/// The fan-out of one edge. Cheap to clone.
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<Inner>,
}

impl WatchHub {
    /// Starts the hub task (needs a tokio runtime); it ends when the last handle is dropped.
    pub fn start(
        holder: Arc<SnapshotHolder>,
        queue_capacity: usize,
        counters: HubCounters,
    ) -> WatchHub {
        let (stop, stopped) = oneshot::channel();
        let feed = holder.subscribe();
        let inner = Arc::new(Inner {
            holder,
            registry: Mutex::new(Registry::default()),
            queue_capacity: queue_capacity.max(1),
            queue_bytes: QUEUE_BYTES,
            counters,
            next_id: AtomicU64::new(1),
            stop: Mutex::new(Some(stop)),
        });
        tokio::spawn(run_hub(Arc::downgrade(&inner), feed, stopped));
        WatchHub { inner }
    }

    pub fn counters(&self) -> &HubCounters {
        &self.inner.counters
    }

    pub fn nudger(&self) -> Nudger {
        Nudger(Arc::downgrade(&self.inner))
    }

    /// Number of registered watchers.
    pub fn watcher_count(&self) -> usize {
        self.inner.lock().watchers.len()
    }

    /// Watches `prefixes` (overlaps are merged). With `from_revision`, first replays what the
    /// holder still has after it, or starts with a reset when it cannot prove nothing is missing.
    /// Without, starts live at the current revision. Dropping the [`Watcher`] unregisters it.
    pub fn subscribe(&self, prefixes: Vec<ConfigPath>, from_revision: Option<Revision>) -> Watcher {
        self.register(prefixes, None, from_revision, None)
    }

    /// [`WatchHub::subscribe`] for a second watch of the consumer of `main`, which it wakes
    /// instead of waking its own: whatever it gets to look at (a batch, a reset, its end) sets
    /// `main`'s [`Watcher::rung`] and wakes `main`'s consumer. That consumer polls this watcher
    /// only when rung — a watch that rarely has anything (a session's rollout records) then
    /// costs nothing per message of the busy one.
    pub fn subscribe_beside(
        &self,
        main: &Watcher,
        prefixes: Vec<ConfigPath>,
        from_revision: Option<Revision>,
    ) -> Watcher {
        self.register(prefixes, None, from_revision, Some(main.shared.clone()))
    }

    /// [`WatchHub::subscribe_spec`] that never moves the caller backwards: resuming from a
    /// revision this edge has not reached yet waits up to `wait` until it has, else fails with
    /// [`WatchError::Behind`].
    pub async fn resume(
        &self,
        spec: WatchSpec,
        from_revision: Option<Revision>,
        wait: Duration,
    ) -> Result<Watcher, WatchError> {
        if let Some(asked) = from_revision {
            let mut changes = self.inner.holder.changes();
            let reached = tokio::time::timeout(wait, changes.wait_for(|r| *r >= asked)).await;
            if !matches!(reached, Ok(Ok(_))) {
                return Err(WatchError::Behind {
                    asked,
                    at: self.inner.holder.revision(),
                });
            }
        }
        self.subscribe_spec(spec, from_revision)
    }

    /// [`WatchHub::subscribe`] for a [`WatchSpec`]: with an environment (or `resolve`), the
    /// watcher sees effective values. Refused when the environment does not exist now (or its
    /// chain is broken) or a prefix lies under `/env`; an environment deleted later is seen as
    /// base values from then on.
    pub fn subscribe_spec(
        &self,
        spec: WatchSpec,
        from_revision: Option<Revision>,
    ) -> Result<Watcher, WatchError> {
        let Some(view) = spec.view() else {
            return Ok(self.subscribe(spec.prefixes, from_revision));
        };
        if let Some(prefix) = spec.prefixes.iter().find(|p| env::is_reserved(p)) {
            return Err(WatchError::Reserved {
                prefix: prefix.clone(),
            });
        }
        if let Some(name) = &view.env {
            env::chain_of(&self.inner.holder.current(), name)?;
        }
        Ok(self.register(spec.prefixes, Some(Arc::new(view)), from_revision, None))
    }

    fn register(
        &self,
        prefixes: Vec<ConfigPath>,
        view: Option<Arc<EnvView>>,
        from_revision: Option<Revision>,
        doorbell: Option<Arc<Shared>>,
    ) -> Watcher {
        let prefixes: Arc<[ConfigPath]> = normalize(prefixes).into();
        let shared = Arc::new(Shared {
            doorbell,
            ..Shared::default()
        });
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut registry = self.inner.lock();
        let (replay, snapshot) = match from_revision {
            Some(from) => match self.inner.holder.since_with_snapshot(from) {
                (Some(batches), snapshot) => (batches, snapshot),
                (None, snapshot) => {
                    shared.lagged.store(true, Ordering::Release);
                    (Vec::new(), snapshot)
                }
            },
            None => (Vec::new(), self.inner.holder.current()),
        };
        let index = registry.index(view.as_ref());
        for prefix in prefixes.iter() {
            index.entry(prefix.clone()).or_default().insert(id);
        }
        registry.watchers.insert(
            id,
            Slot {
                prefixes: prefixes.clone(),
                view: view.clone(),
                shared: shared.clone(),
                after: snapshot.revision(),
            },
        );
        drop(registry);
        self.inner.counters.watchers.inc();
        // Outside the lock: the batches and the snapshot they end at never change.
        let replay_before = match (&view, from_revision) {
            (Some(_), Some(from)) if !replay.is_empty() => {
                Some(before_all(&snapshot, &replay, from))
            }
            _ => None,
        };
        Watcher {
            id,
            hub: self.inner.clone(),
            prefixes,
            view,
            shared,
            replay: replay.into(),
            replay_before,
        }
    }
}

/// The snapshot before `batches` (consecutive, ending at `snapshot`), at revision `from`.
fn before_all(snapshot: &Snapshot, batches: &[Arc<AppliedBatch>], from: Revision) -> Snapshot {
    let mut current = snapshot.clone();
    for (index, batch) in batches.iter().enumerate().rev() {
        let revision = match index.checked_sub(1) {
            Some(previous) => batches[previous].revision,
            None => from,
        };
        current = current.undo(batch, revision);
    }
    current
}

/// Sorts, dedups and drops every prefix that lies below another one.
fn normalize(mut prefixes: Vec<ConfigPath>) -> Vec<ConfigPath> {
    // Shallowest first, so a prefix is dropped when one of its ancestors (or itself) is kept:
    // one set lookup per ancestor, linear in prefixes × depth (not quadratic: 100k prefixes in
    // one request once cost the edge 25 s).
    prefixes.sort_by_key(|p| p.segment_count());
    let mut kept: HashSet<ConfigPath> = HashSet::with_capacity(prefixes.len());
    let root = ConfigPath::root();
    for prefix in prefixes {
        if kept.contains(&root) {
            break;
        }
        let covered = prefix
            .ancestors_and_self()
            .iter()
            .any(|ancestor| kept.contains(ancestor));
        if !covered {
            kept.insert(prefix);
        }
    }
    let mut kept: Vec<ConfigPath> = kept.into_iter().collect();
    kept.sort();
    kept
}

async fn run_hub(
    inner: Weak<Inner>,
    mut feed: tokio::sync::broadcast::Receiver<HubMessage>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            _ = &mut stopped => return,
            message = feed.recv() => message,
        };
        let Some(inner) = inner.upgrade() else { return };
        match message {
            Ok(HubMessage::Batch {
                batch,
                before,
                after,
            }) => deliver(&inner, &batch, &before, &after),
            Ok(HubMessage::Reset { .. }) => reset_all(&inner),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the watch hub lagged the holder; resetting every watcher"
                );
                reset_all(&inner);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Marks every watcher for a reset and wakes it.
fn reset_all(inner: &Inner) {
    let registry = inner.lock();
    for slot in registry.watchers.values() {
        if !slot.shared.lagged.swap(true, Ordering::AcqRel) {
            slot.shared.ring();
        }
    }
}

fn deliver(inner: &Inner, batch: &AppliedBatch, before: &Snapshot, after: &Snapshot) {
    let mut guard = inner.lock();
    let Registry {
        by_prefix,
        views,
        watchers,
    } = &mut *guard;
    if watchers.is_empty() {
        return;
    }
    let mut fan = Fan {
        watchers,
        revision: batch.revision,
        counters: &inner.counters,
        queue_capacity: inner.queue_capacity,
        queue_bytes: inner.queue_bytes,
    };
    fan.out(by_prefix, &batch.events);
    for (view, index) in views.iter() {
        // Once per view and batch, over every prefix its watchers watch.
        let scope = normalize(index.keys().cloned().collect());
        let events = view.events(before, after, batch, &scope);
        fan.out(index, &events);
    }
}

/// Hands one batch's events to the watchers of an index.
struct Fan<'a> {
    watchers: &'a mut HashMap<u64, Slot>,
    revision: Revision,
    counters: &'a HubCounters,
    queue_capacity: usize,
    queue_bytes: usize,
}

impl Fan<'_> {
    /// Filters `events` once per touched prefix of `index` and shares the result between that
    /// prefix's watchers; a watcher of several prefixes gets one merged message.
    fn out(&mut self, index: &Index, events: &[Event]) {
        if index.is_empty() || events.is_empty() {
            return;
        }
        // Which events each watched prefix sees, in order.
        let mut touched: HashMap<&ConfigPath, Vec<usize>> = HashMap::new();
        for (position, event) in events.iter().enumerate() {
            let system = is_system(&event.path);
            for ancestor in event.path.ancestors_and_self() {
                if system && ancestor.is_root() {
                    continue;
                }
                if let Some((key, _)) = index.get_key_value(&ancestor) {
                    touched.entry(key).or_default().push(position);
                }
            }
        }
        let revision = self.revision;
        let select = |indices: &[usize]| {
            Arc::new(WatchBatch::new(
                revision,
                indices.iter().map(|&i| events[i].clone()).collect(),
            ))
        };
        // One lookup per watcher: a single-prefix watcher is offered its prefix's batch at once.
        let mut added = 0;
        let mut merged: HashMap<u64, Vec<usize>> = HashMap::new();
        for (prefix, indices) in &touched {
            let Some(ids) = index.get(*prefix) else {
                continue;
            };
            let shared = select(indices);
            for id in ids {
                let Some(slot) = self.watchers.get_mut(id) else {
                    continue;
                };
                if slot.prefixes.len() == 1 {
                    let offer = slot.offer(shared.clone(), self.queue_capacity, self.queue_bytes);
                    added += self.settle(offer);
                } else {
                    merged.entry(*id).or_default().extend(indices);
                }
            }
        }
        for (id, mut indices) in merged {
            indices.sort_unstable();
            indices.dedup();
            let Some(slot) = self.watchers.get_mut(&id) else {
                continue;
            };
            let offer = slot.offer(select(&indices), self.queue_capacity, self.queue_bytes);
            added += self.settle(offer);
        }
        // Once per batch: every watcher adding to one gauge was a contended cache line each.
        self.counters.queued_bytes.add(gauge(added));
    }

    /// Counts what became of an offer; the bytes it queued.
    fn settle(&mut self, offer: Offer) -> usize {
        match offer {
            Offer::Queued(bytes) => return bytes,
            Offer::Skipped => {}
            Offer::Full => self.counters.caught_up.inc(),
        }
        0
    }
}

/// What became of a batch offered to one watcher.
enum Offer {
    /// Queued: this many bytes.
    Queued(usize),
    /// It must reset, is behind, or already has the batch.
    Skipped,
    /// Its queue is full: it is behind now.
    Full,
}

impl Slot {
    fn offer(
        &mut self,
        message: Arc<WatchBatch>,
        queue_capacity: usize,
        queue_bytes: usize,
    ) -> Offer {
        let shared = &self.shared;
        if shared.lagged.load(Ordering::Acquire)
            || shared.behind.load(Ordering::Acquire)
            || message.revision <= self.after
        {
            return Offer::Skipped;
        }
        let (size, revision) = (message.bytes, message.revision);
        let queued = shared.queued.load(Ordering::Acquire);
        let too_many_bytes = queued > 0 && queued + size > queue_bytes;
        if too_many_bytes || !shared.push(message, queue_capacity) {
            // The ring holds what follows; the watcher fetches it once it has drained.
            shared.behind.store(true, Ordering::Release);
            shared.ring();
            return Offer::Full;
        }
        self.after = revision;
        shared.queued.fetch_add(size, Ordering::AcqRel);
        shared.ring();
        Offer::Queued(size)
    }
}

impl Shared {
    /// Wakes the consumer: through the watcher it was subscribed beside, if any, after the
    /// flag that one's consumer checks.
    fn ring(&self) {
        match &self.doorbell {
            Some(beside) => {
                beside.rung.store(true, Ordering::Release);
                beside.waker.wake();
            }
            None => self.waker.wake(),
        }
    }

    /// Queues `batch` unless the queue holds `capacity` batches already.
    fn push(&self, batch: Arc<WatchBatch>, capacity: usize) -> bool {
        let mut queue = self.lock_queue();
        if queue.len() >= capacity {
            return false;
        }
        queue.push_back(batch);
        true
    }

    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<Arc<WatchBatch>>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn gauge(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn unregister(registry: &mut Registry, id: u64) -> bool {
    let Some(slot) = registry.watchers.remove(&id) else {
        return false;
    };
    let index = registry.index(slot.view.as_ref());
    for prefix in slot.prefixes.iter() {
        if let Some(ids) = index.get_mut(prefix) {
            ids.remove(&id);
            if ids.is_empty() {
                index.remove(prefix);
            }
        }
    }
    if let Some(view) = &slot.view
        && registry.views.get(view).is_some_and(HashMap::is_empty)
    {
        registry.views.remove(view);
    }
    true
}

/// One watcher's end: yields [`WatchMessage`]s in revision order. Drop it to unregister.
pub struct Watcher {
    id: u64,
    hub: Arc<Inner>,
    prefixes: Arc<[ConfigPath]>,
    view: Option<Arc<EnvView>>,
    shared: Arc<Shared>,
    replay: VecDeque<Arc<AppliedBatch>>,
    /// For an environment-aware replay: the snapshot before the next batch of `replay`.
    replay_before: Option<Snapshot>,
}

impl Watcher {
    /// The normalized prefixes watched.
    pub fn prefixes(&self) -> &[ConfigPath] {
        &self.prefixes
    }

    /// A handle that ends this watcher's stream from elsewhere.
    pub fn ender(&self) -> Ender {
        Ender {
            shared: self.shared.clone(),
        }
    }

    /// Whether a watcher subscribed beside this one ([`WatchHub::subscribe_beside`]) has had
    /// something to look at since the last call. Checked after this watcher's
    /// [`Watcher::poll_next`] answered `Pending`, a rung bell is never missed: it wakes the waker
    /// that poll registered.
    pub fn rung(&self) -> bool {
        self.shared.rung.load(Ordering::Acquire) && self.shared.rung.swap(false, Ordering::AcqRel)
    }

    /// The environment view watched; `None` for stored entries.
    pub fn view(&self) -> Option<&EnvView> {
        self.view.as_deref()
    }

    /// The next message; `None` once its [`Ender`] has ended it.
    pub async fn next(&mut self) -> Option<WatchMessage> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Watcher::next`] for hand-written futures and streams (a session polls it among other
    /// sources, with no future built and dropped per message).
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<WatchMessage>> {
        // Everything is looked at once more after the waker is registered, so a batch or flag
        // that arrived in between is not left to a wake-up that already happened.
        let mut registered = false;
        loop {
            if self.shared.ended.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            if self.shared.lagged.load(Ordering::Acquire) {
                return Poll::Ready(Some(self.reset()));
            }
            if let Some(batch) = self.replay.pop_front() {
                if let Some(message) = self.filter(&batch) {
                    return Poll::Ready(Some(self.sent(message)));
                }
                continue;
            }
            let next = self.shared.lock_queue().pop_front();
            if let Some(batch) = next {
                self.dequeued(batch.bytes);
                if !self.shared.lagged.load(Ordering::Acquire) {
                    return Poll::Ready(Some(self.sent(batch)));
                }
                continue;
            }
            // The hub sends nothing more while the watcher is behind, so an empty queue here is
            // the point to fetch the rest from the ring.
            if self.shared.behind.load(Ordering::Acquire) {
                if let Some(reset) = self.catch_up() {
                    return Poll::Ready(Some(reset));
                }
                continue;
            }
            if registered {
                return Poll::Pending;
            }
            self.shared.waker.register(cx.waker());
            registered = true;
        }
    }

    fn dequeued(&self, bytes: usize) {
        self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.hub.counters.queued_bytes.sub(gauge(bytes));
    }

    /// Loads everything after the watcher's position from the ring as its replay and lets the hub
    /// send to it again; a reset when the ring no longer holds all of it.
    fn catch_up(&mut self) -> Option<WatchMessage> {
        let mut registry = self.hub.lock();
        let slot = registry.watchers.get_mut(&self.id)?;
        let from = slot.after;
        let (Some(batches), snapshot) = self.hub.holder.since_with_snapshot(from) else {
            drop(registry);
            self.hub.counters.cut_off.inc();
            return Some(self.reset());
        };
        slot.after = snapshot.revision();
        self.shared.behind.store(false, Ordering::Release);
        drop(registry);
        self.replay_before = match &self.view {
            Some(_) if !batches.is_empty() => Some(before_all(&snapshot, &batches, from)),
            _ => None,
        };
        self.replay = batches.into();
        None
    }

    /// Turns the watcher into a stream (for SSE and gRPC bodies).
    pub fn into_stream(self) -> impl futures::Stream<Item = WatchMessage> + Send + 'static {
        futures::stream::unfold(self, |mut watcher| async move {
            let message = watcher.next().await?;
            Some((message, watcher))
        })
    }

    fn sent(&self, batch: Arc<WatchBatch>) -> WatchMessage {
        self.hub
            .counters
            .events_sent
            .inc_by(batch.events.len() as u64);
        WatchMessage::Batch(batch)
    }

    /// What this watcher sees of a replayed batch.
    fn filter(&mut self, batch: &AppliedBatch) -> Option<Arc<WatchBatch>> {
        let events: Vec<Event> = match &self.view {
            None => batch
                .events
                .iter()
                .filter(|e| self.prefixes.iter().any(|p| covers(p, &e.path)))
                .cloned()
                .collect(),
            Some(view) => {
                let before = self.replay_before.take()?;
                let after = before.redo(batch);
                let events = view.events(&before, &after, batch, &self.prefixes);
                self.replay_before = Some(after);
                events
            }
        };
        (!events.is_empty()).then(|| Arc::new(WatchBatch::new(batch.revision, events)))
    }

    /// Drops what is pending and restarts from the current snapshot. Runs under the hub's lock so
    /// that every batch after the snapshot's revision is still delivered.
    fn reset(&mut self) -> WatchMessage {
        let snapshot = {
            let mut registry = self.hub.lock();
            let pending: VecDeque<_> = std::mem::take(&mut *self.shared.lock_queue());
            for batch in pending {
                self.dequeued(batch.bytes);
            }
            let snapshot = self.hub.holder.current();
            if let Some(slot) = registry.watchers.get_mut(&self.id) {
                slot.after = snapshot.revision();
            }
            self.shared.lagged.store(false, Ordering::Release);
            self.shared.behind.store(false, Ordering::Release);
            snapshot
        };
        self.replay.clear();
        self.replay_before = None;
        self.hub.counters.resets.inc();
        let state = match &self.view {
            None => state_of(&snapshot, &self.prefixes),
            Some(view) => ResetState {
                revision: snapshot.revision(),
                entries: view.state(&snapshot, &self.prefixes),
            },
        };
        WatchMessage::Reset(Arc::new(state))
    }
}

/// Every entry under `prefixes` (disjoint, sorted) in path order.
pub fn state_of(snapshot: &Snapshot, prefixes: &[ConfigPath]) -> ResetState {
    let mut entries: Vec<Arc<Entry>> = prefixes
        .iter()
        .flat_map(|prefix| {
            snapshot
                .below(prefix)
                .filter(move |e| covers(prefix, &e.path))
                .cloned()
        })
        .collect();
    if prefixes.len() > 1 {
        entries.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    }
    ResetState {
        revision: snapshot.revision(),
        entries,
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let pending = self.shared.queued.swap(0, Ordering::AcqRel);
        self.hub.counters.queued_bytes.sub(gauge(pending));
        let removed = unregister(&mut self.hub.lock(), self.id);
        if removed {
            self.hub.counters.watchers.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use setpoint_core::snapshot::{Batch, Change, ChangeKind};
    use setpoint_core::{Format, ParsedValue};
    use std::time::Duration;

    fn path(p: &str) -> ConfigPath {
        ConfigPath::parse(p).unwrap()
    }

    fn put(p: &str, value: &str) -> Change {
        Change {
            path: path(p),
            version: 1,
            updated_at: String::new(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_stored(Format::Text, value).unwrap(),
            },
        }
    }

    fn apply(holder: &SnapshotHolder, revision: Revision, changes: Vec<Change>) {
        holder
            .apply(&Batch {
                revision,
                committed_at_micros: 0,
                changes,
            })
            .unwrap();
    }

    async fn next(watcher: &mut Watcher) -> WatchMessage {
        tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .unwrap()
            .unwrap()
    }

    fn paths(message: &WatchMessage) -> Vec<String> {
        match message {
            WatchMessage::Batch(b) => b.events.iter().map(|e| e.path.to_string()).collect(),
            WatchMessage::Reset(r) => r.entries.iter().map(|e| e.path.to_string()).collect(),
        }
    }

    #[test]
    fn normalize_drops_nested_prefixes() {
        let got = normalize(vec![
            path("/a/b"),
            path("/c"),
            path("/a"),
            path("/a"),
            path("/ab"),
        ]);
        assert_eq!(got, vec![path("/a"), path("/ab"), path("/c")]);
        assert_eq!(
            normalize(vec![path("/x"), ConfigPath::root()]),
            vec![ConfigPath::root()]
        );
    }

    #[test]
    fn normalizing_many_prefixes_is_not_quadratic() {
        // Issue 11, finding 5: 100k prefixes (every other one nested under another) cost 25 s
        // when each was compared with every kept one. Linear now; the bound is only generous.
        let mut prefixes = Vec::new();
        for n in 0..50_000 {
            prefixes.push(path(&format!("/p{n}")));
            prefixes.push(path(&format!("/p{n}/child")));
        }
        let started = std::time::Instant::now();
        let kept = normalize(prefixes);
        assert_eq!(kept.len(), 50_000);
        assert!(kept.iter().all(|p| p.segment_count() == 1));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn one_merged_message_per_batch_for_several_prefixes() {
        let holder = SnapshotHolder::new(Snapshot::empty(), false);
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        let mut both = hub.subscribe(vec![path("/a"), path("/c"), path("/a/x")], None);
        let mut only_a = hub.subscribe(vec![path("/a")], None);
        apply(
            &holder,
            2,
            vec![
                put("/c/1", "1"),
                put("/b", "2"),
                put("/a/x", "3"),
                put("/a", "4"),
            ],
        );
        let message = next(&mut both).await;
        assert_eq!(message.revision(), 2);
        assert_eq!(paths(&message), vec!["/c/1", "/a/x", "/a"]);
        assert_eq!(paths(&next(&mut only_a).await), vec!["/a/x", "/a"]);
        assert_eq!(hub.watcher_count(), 2);
        drop(both);
        assert_eq!(hub.watcher_count(), 1);
    }

    /// Counts the wake-ups of a hand-polled watcher.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        async fn after(&self, count: usize) {
            tokio::time::timeout(Duration::from_secs(5), async {
                while self.0.load(Ordering::SeqCst) < count {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn a_waiting_watcher_is_woken_by_a_batch_a_nudge_and_its_ender() {
        let holder = SnapshotHolder::new(Snapshot::empty(), false);
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        let mut watcher = hub.subscribe(vec![path("/a")], None);
        let wakes = Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(watcher.poll_next(&mut cx).is_pending());

        apply(&holder, 2, vec![put("/a", "2")]);
        wakes.after(1).await;
        match watcher.poll_next(&mut cx) {
            Poll::Ready(Some(message)) => assert_eq!(message.revision(), 2),
            other => panic!(
                "expected the batch, got {:?}",
                other.map(|m| m.map(|m| m.revision()))
            ),
        }
        assert!(watcher.poll_next(&mut cx).is_pending());

        // A nudge wakes it with nothing to deliver.
        assert!(hub.nudger().nudge_all());
        wakes.after(2).await;
        assert!(watcher.poll_next(&mut cx).is_pending());

        // Ended from elsewhere while waiting: woken, and the stream ends.
        watcher.ender().end();
        wakes.after(3).await;
        assert!(matches!(watcher.poll_next(&mut cx), Poll::Ready(None)));
    }

    #[tokio::test]
    async fn a_watcher_beside_another_rings_it_instead_of_waking_its_own_consumer() {
        let holder = SnapshotHolder::new(Snapshot::empty(), false);
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        let mut main = hub.subscribe(vec![path("/a")], None);
        let mut beside = hub.subscribe_beside(&main, vec![path("/b")], None);
        let wakes = Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(main.poll_next(&mut cx).is_pending());
        assert!(!main.rung());

        // A batch of the main watch wakes its consumer and rings nothing.
        apply(&holder, 2, vec![put("/a", "2")]);
        wakes.after(1).await;
        assert!(!main.rung());
        assert!(matches!(main.poll_next(&mut cx), Poll::Ready(Some(m)) if m.revision() == 2));
        assert!(main.poll_next(&mut cx).is_pending());

        // One of the watch beside it wakes the main watch's consumer, once, and rings.
        apply(&holder, 3, vec![put("/b", "3")]);
        wakes.after(2).await;
        assert!(main.rung());
        assert!(!main.rung(), "a bell is answered once");
        assert!(main.poll_next(&mut cx).is_pending());
        assert!(matches!(beside.poll_next(&mut cx), Poll::Ready(Some(m)) if m.revision() == 3));
        assert!(beside.poll_next(&mut cx).is_pending());

        // So does a reset of every watcher (which wakes the main watch's consumer for its own
        // reset too, perhaps first: wait for the bell itself).
        holder.replace(Snapshot::empty());
        tokio::time::timeout(Duration::from_secs(5), async {
            while !main.rung() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the watch beside it rang");
        assert!(matches!(
            beside.poll_next(&mut cx),
            Poll::Ready(Some(WatchMessage::Reset(_)))
        ));
    }

    #[tokio::test]
    async fn resume_replays_then_goes_live_and_resets_when_not_covered() {
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            false,
            crate::holder::HolderOptions {
                ring_capacity: 2,
                ring_bytes: usize::MAX,
                ready: true,
            },
        );
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        for revision in 2..=4 {
            apply(&holder, revision, vec![put("/a", &revision.to_string())]);
        }
        let mut resumed = hub.subscribe(vec![path("/a")], Some(2));
        apply(&holder, 5, vec![put("/a", "5")]);
        for want in 3..=5 {
            assert_eq!(next(&mut resumed).await.revision(), want);
        }
        let mut too_old = hub.subscribe(vec![path("/a")], Some(1));
        let first = next(&mut too_old).await;
        assert!(matches!(&first, WatchMessage::Reset(r) if r.revision == 5));
        apply(&holder, 6, vec![put("/a", "6")]);
        assert_eq!(next(&mut too_old).await.revision(), 6);
    }

    #[tokio::test]
    async fn system_records_never_reach_a_watcher_of_the_root() {
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            false,
            crate::holder::HolderOptions {
                ring_capacity: 8,
                ring_bytes: usize::MAX,
                ready: true,
            },
        );
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        let mut root = hub.subscribe(vec![path("/")], None);
        let mut system = hub.subscribe(vec![path("/_setpoint")], None);
        apply(
            &holder,
            2,
            vec![put("/_setpoint/accounts/a", "{}"), put("/app/x", "1")],
        );
        apply(&holder, 3, vec![put("/_setpoint/accounts/b", "{}")]);
        apply(&holder, 4, vec![put("/app/y", "2")]);
        assert_eq!(paths(&next(&mut root).await), vec!["/app/x"]);
        assert_eq!(next(&mut root).await.revision(), 4, "batch 3 is skipped");
        assert_eq!(
            paths(&next(&mut system).await),
            vec!["/_setpoint/accounts/a"]
        );
        let mut replayed = hub.subscribe(vec![path("/")], Some(1));
        assert_eq!(paths(&next(&mut replayed).await), vec!["/app/x"]);
        assert_eq!(paths(&next(&mut replayed).await), vec!["/app/y"]);
        let reset = state_of(&holder.current(), &[path("/")]);
        let reset_paths: Vec<&str> = reset.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(reset_paths, vec!["/app/x", "/app/y"]);
        assert_eq!(
            state_of(&holder.current(), &[path("/_setpoint")])
                .entries
                .len(),
            2
        );
    }

    fn json(p: &str, value: serde_json::Value) -> Change {
        Change {
            path: path(p),
            version: 1,
            updated_at: String::new(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_request(value, None).unwrap(),
            },
        }
    }

    fn delete(p: &str) -> Change {
        Change {
            path: path(p),
            version: 2,
            updated_at: String::new(),
            kind: ChangeKind::Delete,
        }
    }

    fn spec(prefix: &str, env: &str, resolve: bool) -> WatchSpec {
        WatchSpec {
            prefixes: vec![path(prefix)],
            env: Some(env.to_owned()),
            resolve,
        }
    }

    /// `(path, old value, new value)` of each event, values as the API shows them.
    fn changes(message: &WatchMessage) -> Vec<(String, Option<Value>, Option<Value>)> {
        let WatchMessage::Batch(batch) = message else {
            panic!("a batch expected, got {message:?}");
        };
        batch
            .events
            .iter()
            .map(|e| {
                (
                    e.path.to_string(),
                    e.old.as_ref().map(|o| o.value.to_api_value()),
                    e.new.as_ref().map(|n| n.value.to_api_value()),
                )
            })
            .collect()
    }

    fn change(
        p: &str,
        old: Option<Value>,
        new: Option<Value>,
    ) -> (String, Option<Value>, Option<Value>) {
        (p.to_owned(), old, new)
    }

    /// An edge with prod-eu → prod (prod has `HOST=db1`) and staging, and `/app/a` = 1.
    fn environments() -> (Arc<SnapshotHolder>, WatchHub) {
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            false,
            crate::holder::HolderOptions {
                ring_capacity: 4,
                ring_bytes: usize::MAX,
                ready: true,
            },
        );
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        apply(
            &holder,
            2,
            vec![
                json("/env/prod", json!({"variables": {"HOST": "db1"}})),
                json("/env/prod-eu", json!({"parent": "prod"})),
                json("/env/staging", json!({})),
                json("/app/a", json!(1)),
            ],
        );
        (holder, hub)
    }

    #[tokio::test]
    async fn env_watchers_see_effective_values() {
        let (holder, hub) = environments();
        let mut eu = hub
            .subscribe_spec(spec("/app", "prod-eu", false), None)
            .unwrap();
        let mut resolved = hub
            .subscribe_spec(spec("/app", "prod-eu", true), None)
            .unwrap();
        apply(&holder, 3, vec![json("/env/prod/app/a", json!(2))]);
        assert_eq!(
            changes(&next(&mut eu).await),
            vec![change("/app/a", Some(json!(1)), Some(json!(2)))]
        );
        assert_eq!(next(&mut resolved).await.revision(), 3);
        // Neither a base change an override hides, nor another environment's override.
        apply(
            &holder,
            4,
            vec![
                json("/app/a", json!(5)),
                json("/env/staging/app/a", json!(3)),
            ],
        );
        // The parent changes: staging's override shows.
        apply(
            &holder,
            5,
            vec![json("/env/prod-eu", json!({"parent": "staging"}))],
        );
        let message = next(&mut eu).await;
        assert_eq!(message.revision(), 5, "batch 4 changed no effective value");
        assert_eq!(
            changes(&message),
            vec![change("/app/a", Some(json!(2)), Some(json!(3)))]
        );
        // The override removed: back to the base value.
        apply(&holder, 6, vec![delete("/env/staging/app/a")]);
        assert_eq!(
            changes(&next(&mut eu).await),
            vec![change("/app/a", Some(json!(3)), Some(json!(5)))]
        );
        // Variables matter only when substituting; secrets are never pushed resolved.
        apply(
            &holder,
            7,
            vec![json("/app/url", json!("pg://${HOST}/${secret:pw}"))],
        );
        apply(
            &holder,
            8,
            vec![json("/env/staging", json!({"variables": {"HOST": "db2"}}))],
        );
        assert_eq!(
            changes(&next(&mut eu).await),
            vec![change(
                "/app/url",
                None,
                Some(json!("pg://${HOST}/${secret:pw}"))
            )]
        );
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let message = next(&mut resolved).await;
            seen.push((message.revision(), changes(&message)));
        }
        let raw = json!("pg://${HOST}/${secret:pw}");
        assert_eq!(
            seen[2..],
            [
                // staging defines no HOST yet: the value is pushed raw.
                (7, vec![change("/app/url", None, Some(raw.clone()))]),
                (
                    8,
                    vec![change(
                        "/app/url",
                        Some(raw),
                        Some(json!("pg://db2/${secret:pw}"))
                    )]
                ),
            ],
            "{seen:?}"
        );
        apply(&holder, 9, vec![json("/app/b", json!(1))]);
        assert_eq!(
            next(&mut eu).await.revision(),
            9,
            "batch 8 changed nothing without resolve"
        );
    }

    #[tokio::test]
    async fn env_watchers_of_one_view_and_prefix_share_each_batch() {
        let (holder, hub) = environments();
        let mut one = hub
            .subscribe_spec(spec("/app", "prod", false), None)
            .unwrap();
        let mut two = hub
            .subscribe_spec(spec("/app", "prod", false), None)
            .unwrap();
        let mut deeper = hub
            .subscribe_spec(spec("/app/a", "prod", false), None)
            .unwrap();
        let mut base = hub.subscribe(vec![path("/app")], None);
        apply(
            &holder,
            3,
            vec![json("/env/prod/app/a", json!(2)), json("/app/z", json!(0))],
        );
        let (WatchMessage::Batch(a), WatchMessage::Batch(b)) =
            (next(&mut one).await, next(&mut two).await)
        else {
            panic!("batches expected");
        };
        assert!(Arc::ptr_eq(&a, &b), "computed once and shared");
        assert_eq!(a.events.len(), 2);
        assert_eq!(
            changes(&next(&mut deeper).await),
            vec![change("/app/a", Some(json!(1)), Some(json!(2)))]
        );
        assert_eq!(paths(&next(&mut base).await), vec!["/app/z"]);
        drop((one, two, deeper));
        assert!(
            hub.inner.lock().views.is_empty(),
            "an empty view group is dropped"
        );
    }

    #[tokio::test]
    async fn env_watchers_resume_from_the_ring_and_reset_with_the_effective_state() {
        let (holder, hub) = environments();
        apply(&holder, 3, vec![json("/env/prod/app/a", json!(2))]);
        apply(&holder, 4, vec![json("/app/a", json!(9))]);
        apply(
            &holder,
            5,
            vec![
                delete("/env/prod/app/a"),
                json("/_setpoint/accounts/x", json!({})),
            ],
        );
        let mut resumed = hub
            .subscribe_spec(spec("/", "prod", false), Some(2))
            .unwrap();
        let first = next(&mut resumed).await;
        assert_eq!(first.revision(), 3);
        assert_eq!(
            changes(&first),
            vec![change("/app/a", Some(json!(1)), Some(json!(2)))]
        );
        let second = next(&mut resumed).await;
        assert_eq!(second.revision(), 5, "batch 4 changed nothing in prod");
        assert_eq!(
            changes(&second),
            vec![change("/app/a", Some(json!(2)), Some(json!(9)))]
        );
        apply(&holder, 6, vec![json("/app/a", json!(10))]);
        assert_eq!(next(&mut resumed).await.revision(), 6, "then live, no gap");

        apply(&holder, 7, vec![json("/env/prod/app/only", json!("o"))]);
        let mut too_old = hub
            .subscribe_spec(spec("/", "prod", false), Some(1))
            .unwrap();
        let WatchMessage::Reset(reset) = next(&mut too_old).await else {
            panic!("a reset expected");
        };
        let state: Vec<(&str, Value)> = reset
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.value.to_api_value()))
            .collect();
        assert_eq!(reset.revision, 7);
        assert_eq!(
            state,
            vec![("/app/a", json!(10)), ("/app/only", json!("o"))],
            "base paths, no /env, no system records"
        );
    }

    #[tokio::test]
    async fn env_watches_of_unknown_environments_or_under_env_are_refused() {
        let (holder, hub) = environments();
        let refused = |spec: WatchSpec| hub.subscribe_spec(spec, None).map(|_| ()).unwrap_err();
        assert_eq!(
            refused(spec("/app", "nope", false)),
            WatchError::Environment(EnvError::Unknown {
                name: "nope".into()
            })
        );
        assert!(matches!(
            refused(spec("/env/prod", "prod", false)),
            WatchError::Reserved { .. }
        ));
        // Deleted later: the watch goes on with base values.
        let mut eu = hub
            .subscribe_spec(spec("/app", "prod-eu", false), None)
            .unwrap();
        apply(&holder, 3, vec![json("/env/prod-eu/app/a", json!(2))]);
        assert_eq!(next(&mut eu).await.revision(), 3);
        apply(&holder, 4, vec![delete("/env/prod-eu")]);
        assert_eq!(
            changes(&next(&mut eu).await),
            vec![change("/app/a", Some(json!(2)), Some(json!(1)))]
        );
        // Without an environment or resolve, a spec is a base watch.
        let base = hub
            .subscribe_spec(
                WatchSpec {
                    prefixes: vec![path("/app")],
                    env: Some(String::new()),
                    resolve: false,
                },
                None,
            )
            .unwrap();
        assert!(base.view().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_catches_up_from_the_ring_in_order_without_a_reset() {
        let holder = SnapshotHolder::new(Snapshot::empty(), false);
        let hub = WatchHub::start(holder.clone(), 2, HubCounters::new().unwrap());
        let mut slow = hub.subscribe(vec![path("/a")], None);
        let mut fast = hub.subscribe(vec![path("/a")], None);
        // A burst (an edge catching up) far larger than the queue.
        for revision in 2..=10 {
            apply(&holder, revision, vec![put("/a", &revision.to_string())]);
            assert_eq!(next(&mut fast).await.revision(), revision);
        }
        assert_eq!(hub.counters().caught_up.get(), 1);
        for revision in 2..=10 {
            let message = next(&mut slow).await;
            assert!(
                matches!(&message, WatchMessage::Batch(b) if b.revision == revision),
                "{message:?}"
            );
        }
        apply(&holder, 11, vec![put("/a", "11")]);
        assert_eq!(next(&mut slow).await.revision(), 11, "live again");
        assert_eq!(next(&mut fast).await.revision(), 11);
        assert_eq!(hub.counters().resets.get(), 0);
        assert_eq!(hub.counters().cut_off.get(), 0);
        assert_eq!(hub.counters().queued_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_watcher_further_behind_than_the_ring_is_reset() {
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            false,
            crate::holder::HolderOptions {
                ring_capacity: 3,
                ring_bytes: usize::MAX,
                ready: true,
            },
        );
        let hub = WatchHub::start(holder.clone(), 2, HubCounters::new().unwrap());
        let mut slow = hub.subscribe(vec![path("/a")], None);
        let mut fast = hub.subscribe(vec![path("/a")], None);
        for revision in 2..=10 {
            apply(&holder, revision, vec![put("/a", &revision.to_string())]);
            assert_eq!(next(&mut fast).await.revision(), revision);
        }
        assert_eq!(next(&mut slow).await.revision(), 2);
        assert_eq!(next(&mut slow).await.revision(), 3);
        let reset = next(&mut slow).await;
        assert!(
            matches!(&reset, WatchMessage::Reset(r) if r.revision == 10 && r.entries.len() == 1),
            "{reset:?}"
        );
        assert_eq!(hub.counters().cut_off.get(), 1);
        apply(&holder, 11, vec![put("/a", "11")]);
        assert_eq!(next(&mut slow).await.revision(), 11);
    }

    #[tokio::test]
    async fn queues_are_bounded_in_bytes_too() {
        let holder = SnapshotHolder::with_options(
            Snapshot::empty(),
            false,
            crate::holder::HolderOptions {
                ring_capacity: 1_000,
                ring_bytes: usize::MAX,
                ready: true,
            },
        );
        let hub = WatchHub::start(holder.clone(), 10_000, HubCounters::new().unwrap());
        let mut slow = hub.subscribe(vec![path("/big")], None);
        let value = "x".repeat(512 << 10);
        for revision in 2..=60 {
            apply(&holder, revision, vec![put("/big", &value)]);
            let queued = hub.counters().queued_bytes.get();
            assert!(
                queued <= (QUEUE_BYTES + (2 << 20)) as i64,
                "{queued} bytes queued"
            );
        }
        for revision in 2..=60 {
            assert_eq!(next(&mut slow).await.revision(), revision);
        }
        assert!(
            hub.counters().caught_up.get() >= 1,
            "the byte bound was reached"
        );
        assert_eq!(hub.counters().queued_bytes.get(), 0);
        assert_eq!(hub.counters().resets.get(), 0);
    }

    #[tokio::test]
    async fn a_resume_ahead_of_the_edge_waits_and_never_goes_backwards() {
        let holder = SnapshotHolder::new(Snapshot::empty(), false);
        let hub = WatchHub::start(holder.clone(), 16, HubCounters::new().unwrap());
        for revision in 2..=5 {
            apply(&holder, revision, vec![put("/a", &revision.to_string())]);
        }
        let spec = WatchSpec {
            prefixes: vec![path("/a")],
            ..WatchSpec::default()
        };
        let refused = hub
            .resume(spec.clone(), Some(9), Duration::from_millis(100))
            .await
            .err();
        assert_eq!(refused, Some(WatchError::Behind { asked: 9, at: 5 }));
        let catching_up = holder.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for revision in 6..=10 {
                apply(
                    &catching_up,
                    revision,
                    vec![put("/a", &revision.to_string())],
                );
            }
        });
        let mut watcher = hub
            .resume(spec, Some(9), Duration::from_secs(5))
            .await
            .unwrap();
        let first = next(&mut watcher).await;
        assert!(
            matches!(&first, WatchMessage::Batch(b) if b.revision == 10),
            "exactly what follows 9: {first:?}"
        );
    }
}

//! The writer's replication feed: its own view of every live config, kept current by the
//! store's watch, published into the shared [`Feed`] (`setpoint-replication`) that edges are
//! served from.
//!
//! Owns: following the store (load, backfill of recent history, watch, reload when compacted)
//! and turning version records into core batches. The feed is also the writer's read model: its
//! snapshot sits behind arc-swap and its revision in an atomic, so requests read without a lock.
//!
//! Architecture invariant: the store's watch is the ONLY delta source. Nothing here is fed by the
//! REST handlers, so whatever is committed to the store (by this writer, or another replica after
//! failover) reaches every edge. Must not: write to the store, or speak QUIC.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use setpoint_core::snapshot::{Batch, Change, ChangeKind, Entry, Snapshot};
use setpoint_core::{ConfigPath, ParsedValue, Revision};

use crate::model::records::{self, Keys, Pointer};
use crate::store::{EventKind, RangeRequest, Store, StoreError, WatchBatch};

pub use setpoint_replication::feed::{Feed, FeedBatch, FeedEvent, FeedLimits, Start};

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] records::CorruptRecord),
}

/// Starts following the store under `prefix` into a new feed. The returned task owns the store
/// handle; abort and await it to release the store.
pub fn start(
    store: Arc<dyn Store>,
    prefix: &str,
    limits: FeedLimits,
) -> (Arc<Feed>, tokio::task::JoinHandle<()>) {
    let feed = Feed::new(limits);
    let task = tokio::spawn(follow(feed.clone(), store, Layout::new(prefix)));
    (feed, task)
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
                        feed.limits().ring_batches,
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

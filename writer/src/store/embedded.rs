//! [`Store`] on one embedded redb database file. Keeps etcd's semantics (global revision,
//! mod/create revisions, watch from a revision, compaction) so the writer cannot tell the two
//! apart. Watches replay from an on-disk change log and then follow live commits.
//!
//! Why redb: pure Rust (no C toolchain, no `unsafe` of ours), ACID with one file per store,
//! MVCC so readers never block the single writer, a stable file format, and actively maintained.
//!
//! Layout: table `current` maps a key to its record (create/mod revision, version, value);
//! table `log` maps `(revision, index)` to the events each commit made, for watch replay; table
//! `meta` holds the current and the compacted revision. Every redb call runs on tokio's blocking
//! pool. This module must not interpret keys or values.

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;

use super::*;

const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
const LOG: TableDefinition<(i64, u32), &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// etcd's default `--max-request-bytes`; the embedded store refuses the same transactions.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Live batches a watcher may fall behind before its stream ends with an error.
const WATCH_BUFFER: usize = 1024;
/// Revisions read from the log per blocking call while a watch replays.
const REPLAY_CHUNK: i64 = 64;

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Every committed batch, unfiltered. Sent while `commit_lock` is held, so in revision order.
    live: broadcast::Sender<Arc<WatchBatch>>,
    /// Spans redb's commit and the broadcast: redb serializes writers but not what follows.
    commit_lock: Mutex<()>,
}

/// Creates `dir` (mode 0700) and an empty `file` in it (mode 0600) when missing, and tightens
/// the file when it exists: the store holds every value and every account's key hashes, so it
/// is this user's alone whatever the umask (redb itself creates its file 0666 & !umask). A
/// directory that exists is the operator's (say, a home directory) and is left as it is.
fn create_private(dir: &Path, file: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let failed = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| StoreError::Other(format!("preparing {what}: {e}"))
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed(dir))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map_err(failed(file))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(failed(file))
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/setpoint.redb`, private to this user (see [`create_private`]).
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let path = dir.join("setpoint.redb");
        create_private(dir, &path)?;
        // The file lock is released when the previous owner's last handle drops, which can
        // trail its shutdown by a moment (a blocking call finishing on the blocking pool): wait
        // up to 3 s for it instead of failing a restart. Only at startup.
        let mut attempts = 0;
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 60 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                // redb locks the whole file; the holder is another live process (or this one).
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Other(format!(
                        "the embedded store {} is in use by another process: only one writer \
                         may open an embedded store (run standby writers on etcd)",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(StoreError::Other(format!(
                        "opening {}: {e}",
                        path.display()
                    )));
                }
            }
        };
        let wtx = db.begin_write().map_err(db_error)?;
        {
            let mut meta = wtx.open_table(META).map_err(db_error)?;
            if meta.get(META_REVISION).map_err(db_error)?.is_none() {
                meta.insert(META_REVISION, 1).map_err(db_error)?;
                meta.insert(META_COMPACTED, 0).map_err(db_error)?;
            }
            wtx.open_table(CURRENT).map_err(db_error)?;
            wtx.open_table(LOG).map_err(db_error)?;
        }
        wtx.commit().map_err(db_error)?;
        let (live, _) = broadcast::channel(WATCH_BUFFER);
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                live,
                commit_lock: Mutex::new(()),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        run_blocking(self.inner.clone(), f).await
    }
}

async fn run_blocking<T: Send + 'static>(
    inner: Arc<Inner>,
    f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| StoreError::Other(format!("embedded store task failed: {e}")))?
}

fn db_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("embedded store: {error}"))
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            let rtx = inner.db.begin_read().map_err(db_error)?;
            let current = rtx.open_table(CURRENT).map_err(db_error)?;
            let found = current.get(key.as_str()).map_err(db_error)?;
            found
                .map(|record| decode_record(&key, record.value()))
                .transpose()
        })
        .await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult, StoreError> {
        self.blocking(move |inner| {
            let rtx = inner.db.begin_read().map_err(db_error)?;
            let revision = read_meta(&rtx.open_table(META).map_err(db_error)?, META_REVISION)?;
            let current = rtx.open_table(CURRENT).map_err(db_error)?;
            let (kvs, more) = range_in(&current, &request)?;
            Ok(RangeResult {
                kvs,
                revision,
                more,
            })
        })
        .await
    }

    async fn read(&self, reads: Vec<Read>) -> Result<ReadSet, StoreError> {
        self.blocking(move |inner| {
            // One read transaction: every read sees the same committed state.
            let rtx = inner.db.begin_read().map_err(db_error)?;
            let revision = read_meta(&rtx.open_table(META).map_err(db_error)?, META_REVISION)?;
            let current = rtx.open_table(CURRENT).map_err(db_error)?;
            let mut results = Vec::with_capacity(reads.len());
            for read in reads {
                results.push(match read {
                    Read::Get(key) => match current.get(key.as_str()).map_err(db_error)? {
                        Some(record) => vec![decode_record(&key, record.value())?],
                        None => Vec::new(),
                    },
                    Read::Range(request) => range_in(&current, &request)?.0,
                });
            }
            Ok(ReadSet { results, revision })
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        check_txn(&txn)?;
        self.blocking(move |inner| commit(inner, txn)).await
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        // Subscribe before reading anything: every commit the reads below miss is then in `rx`.
        let rx = self.inner.live.subscribe();
        let (revision, compacted) = self
            .blocking(|inner| {
                let rtx = inner.db.begin_read().map_err(db_error)?;
                let meta = rtx.open_table(META).map_err(db_error)?;
                Ok((
                    read_meta(&meta, META_REVISION)?,
                    read_meta(&meta, META_COMPACTED)?,
                ))
            })
            .await?;
        if from_revision > 0 && from_revision < compacted {
            return Err(StoreError::Compacted {
                requested: from_revision,
                compacted,
            });
        }
        let (delivered, replay_from) = if from_revision > 0 {
            (from_revision - 1, Some(from_revision))
        } else {
            (revision, None)
        };
        let state = EmbeddedWatch {
            inner: self.inner.clone(),
            prefix: prefix.to_owned(),
            rx,
            delivered,
            replay_from,
            queue: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            EmbeddedWatch::next,
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.blocking(move |inner| {
            let _guard = inner.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
            let wtx = inner.db.begin_write().map_err(db_error)?;
            {
                let mut meta = wtx.open_table(META).map_err(db_error)?;
                let current = read_meta(&meta, META_REVISION)?;
                let compacted = read_meta(&meta, META_COMPACTED)?;
                if revision > current {
                    return Err(StoreError::Other(format!(
                        "cannot compact to revision {revision}: it is a future revision (current {current})"
                    )));
                }
                if revision <= compacted {
                    return Err(StoreError::Compacted { requested: revision, compacted });
                }
                let mut log = wtx.open_table(LOG).map_err(db_error)?;
                log.retain_in::<(i64, u32), _>(..(revision, 0), |_, _| false).map_err(db_error)?;
                meta.insert(META_COMPACTED, revision).map_err(db_error)?;
            }
            wtx.commit().map_err(db_error)
        })
        .await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.blocking(|inner| {
            let rtx = inner.db.begin_read().map_err(db_error)?;
            read_meta(&rtx.open_table(META).map_err(db_error)?, META_REVISION)
        })
        .await
    }
    async fn lease_grant(&self, _ttl: std::time::Duration) -> Result<LeaseId, StoreError> {
        Err(no_leases())
    }

    async fn lease_keep_alive(&self, _lease: LeaseId) -> Result<(), StoreError> {
        Err(no_leases())
    }

    async fn lease_revoke(&self, _lease: LeaseId) -> Result<(), StoreError> {
        Err(no_leases())
    }
}

/// Leases fence writers that share a store. Only one process can open this one (redb locks
/// the file), so there is nothing to fence and no lease to keep.
fn no_leases() -> StoreError {
    StoreError::Other(
        "the embedded store has no leases: it is single-process, so its writer is the only one"
            .to_owned(),
    )
}

/// The keys of `request` in `table`, and whether its limit cut them short.
fn range_in(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    request: &RangeRequest,
) -> Result<(Vec<KeyValue>, bool), StoreError> {
    let mut kvs = Vec::new();
    if !request.end.is_empty() && request.start >= request.end {
        return Ok((kvs, false));
    }
    let end = if request.end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(request.end.as_str())
    };
    let entries = table
        .range::<&str>((Bound::Included(request.start.as_str()), end))
        .map_err(db_error)?;
    let mut entries: Box<dyn Iterator<Item = _>> = if request.descending {
        Box::new(entries.rev())
    } else {
        Box::new(entries)
    };
    for entry in entries.by_ref() {
        if request.limit > 0 && kvs.len() == request.limit {
            return Ok((kvs, true));
        }
        let (key, record) = entry.map_err(db_error)?;
        kvs.push(decode_record(key.value(), record.value())?);
    }
    Ok((kvs, false))
}

/// Whether `compare` holds in `table` (etcd's rules: a missing key, or an empty range,
/// compares as mod revision 0).
fn compare_holds(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    compare: &Compare,
) -> Result<bool, StoreError> {
    match compare {
        Compare::ModRevision { key, op, revision } => {
            let actual = match table.get(key.as_str()).map_err(db_error)? {
                Some(record) => decode_record(key, record.value())?.mod_revision,
                None => 0,
            };
            Ok(op.holds(actual, *revision))
        }
        Compare::ModRevisionRange {
            start,
            end,
            op,
            revision,
        } => {
            let request = RangeRequest {
                start: start.clone(),
                end: end.clone(),
                limit: 0,
                descending: false,
            };
            let (kvs, _) = range_in(table, &request)?;
            if kvs.is_empty() {
                return Ok(op.holds(0, *revision));
            }
            Ok(kvs.iter().all(|kv| op.holds(kv.mod_revision, *revision)))
        }
    }
}

/// The checks etcd makes before a transaction reaches its store.
fn check_txn(txn: &Txn) -> Result<(), StoreError> {
    let mut keys = std::collections::HashSet::new();
    let mut size = 0usize;
    for write in &txn.writes {
        let (key, value_len) = match write {
            TxnOp::Put { key, value } => (key, value.len()),
            TxnOp::Delete { key } => (key, 0),
            TxnOp::PutWithLease { .. } => return Err(no_leases()),
        };
        if key.is_empty() {
            return Err(StoreError::Other("key is not provided".to_owned()));
        }
        if !keys.insert(key.as_str()) {
            return Err(StoreError::Other(format!(
                "duplicate key given in txn request: {key}"
            )));
        }
        size += key.len() + value_len + 16;
    }
    for compare in &txn.compares {
        size += compare.key().len() + 16;
    }
    if size > MAX_REQUEST_BYTES {
        return Err(StoreError::TooLarge(format!(
            "transaction of about {size} bytes exceeds {MAX_REQUEST_BYTES} bytes"
        )));
    }
    Ok(())
}

fn commit(inner: &Inner, txn: Txn) -> Result<TxnOutcome, StoreError> {
    let _guard = inner.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
    let wtx = inner.db.begin_write().map_err(db_error)?;
    let batch = {
        let mut meta = wtx.open_table(META).map_err(db_error)?;
        let mut current = wtx.open_table(CURRENT).map_err(db_error)?;
        let revision = read_meta(&meta, META_REVISION)?;
        for compare in &txn.compares {
            if !compare_holds(&current, compare)? {
                return Ok(TxnOutcome {
                    succeeded: false,
                    revision,
                });
            }
        }
        let next = revision + 1;
        let mut events = Vec::with_capacity(txn.writes.len());
        for write in txn.writes {
            match write {
                TxnOp::Put { key, value } => {
                    let previous = match current.get(key.as_str()).map_err(db_error)? {
                        Some(record) => Some(decode_record(&key, record.value())?),
                        None => None,
                    };
                    let kv = KeyValue {
                        create_revision: previous.as_ref().map_or(next, |p| p.create_revision),
                        version: previous.as_ref().map_or(1, |p| p.version + 1),
                        mod_revision: next,
                        key,
                        value,
                    };
                    current
                        .insert(kv.key.as_str(), encode_record(&kv).as_slice())
                        .map_err(db_error)?;
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv,
                    });
                }
                // `check_txn` refused these before the transaction began.
                TxnOp::PutWithLease { .. } => return Err(no_leases()),
                // Like etcd, deleting a missing key changes nothing and makes no event.
                TxnOp::Delete { key } => {
                    if current.remove(key.as_str()).map_err(db_error)?.is_some() {
                        let kv = KeyValue {
                            key,
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: next,
                            version: 0,
                        };
                        events.push(WatchEvent {
                            kind: EventKind::Delete,
                            kv,
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(TxnOutcome {
                succeeded: true,
                revision,
            });
        }
        let mut log = wtx.open_table(LOG).map_err(db_error)?;
        for (index, event) in (0u32..).zip(&events) {
            log.insert((next, index), encode_event(event).as_slice())
                .map_err(db_error)?;
        }
        meta.insert(META_REVISION, next).map_err(db_error)?;
        WatchBatch {
            revision: next,
            events,
        }
    };
    wtx.commit().map_err(db_error)?;
    let revision = batch.revision;
    // No receiver is not an error: nobody watches.
    let _ = inner.live.send(Arc::new(batch));
    Ok(TxnOutcome {
        succeeded: true,
        revision,
    })
}

fn read_meta(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64, StoreError> {
    meta.get(name)
        .map_err(db_error)?
        .map(|v| v.value())
        .ok_or_else(|| StoreError::Other(format!("embedded store: meta `{name}` is missing")))
}

/// Reads the log's revisions `[from, from + REPLAY_CHUNK)` for `prefix`. Returns the batches, the
/// last revision the read covered, and whether it reached the store's current revision.
fn read_log(
    inner: &Inner,
    prefix: &str,
    from: Revision,
) -> Result<(Vec<WatchBatch>, Revision, bool), StoreError> {
    let rtx = inner.db.begin_read().map_err(db_error)?;
    let meta = rtx.open_table(META).map_err(db_error)?;
    let revision = read_meta(&meta, META_REVISION)?;
    let compacted = read_meta(&meta, META_COMPACTED)?;
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    let until = (from + REPLAY_CHUNK).min(revision + 1);
    let log = rtx.open_table(LOG).map_err(db_error)?;
    let mut batches: Vec<WatchBatch> = Vec::new();
    for entry in log
        .range::<(i64, u32)>((from, 0)..(until, 0))
        .map_err(db_error)?
    {
        let (key, bytes) = entry.map_err(db_error)?;
        let (event_revision, _) = key.value();
        let event = decode_event(bytes.value())?;
        if !event.kv.key.starts_with(prefix) {
            continue;
        }
        match batches.last_mut() {
            Some(batch) if batch.revision == event_revision => batch.events.push(event),
            _ => batches.push(WatchBatch {
                revision: event_revision,
                events: vec![event],
            }),
        }
    }
    Ok((batches, until - 1, until > revision))
}

/// One watcher: replays the log in chunks, then follows the live broadcast. `delivered` is the
/// highest revision already covered, so live batches the replay already read are skipped.
struct EmbeddedWatch {
    inner: Arc<Inner>,
    prefix: String,
    rx: broadcast::Receiver<Arc<WatchBatch>>,
    delivered: Revision,
    replay_from: Option<Revision>,
    queue: VecDeque<WatchBatch>,
    done: bool,
}

impl EmbeddedWatch {
    async fn next(mut self) -> Option<(Result<WatchBatch, StoreError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(batch) = self.queue.pop_front() {
                return Some((Ok(batch), self));
            }
            if let Some(from) = self.replay_from {
                let prefix = self.prefix.clone();
                match run_blocking(self.inner.clone(), move |inner| {
                    read_log(inner, &prefix, from)
                })
                .await
                {
                    Ok((batches, covered, complete)) => {
                        self.queue.extend(batches);
                        self.delivered = self.delivered.max(covered);
                        self.replay_from = if complete { None } else { Some(covered + 1) };
                    }
                    Err(error) => return self.fail(error),
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) if batch.revision > self.delivered => {
                    self.delivered = batch.revision;
                    let events: Vec<WatchEvent> = batch
                        .events
                        .iter()
                        .filter(|e| e.kv.key.starts_with(&self.prefix))
                        .cloned()
                        .collect();
                    if !events.is_empty() {
                        return Some((
                            Ok(WatchBatch {
                                revision: batch.revision,
                                events,
                            }),
                            self,
                        ));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let resume = self.delivered + 1;
                    return self.fail(StoreError::Unavailable(format!(
                        "watcher fell {missed} commits behind; watch again from revision {resume}"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return self.fail(StoreError::Unavailable("embedded store closed".to_owned()));
                }
            }
        }
    }

    fn fail(mut self, error: StoreError) -> Option<(Result<WatchBatch, StoreError>, Self)> {
        self.done = true;
        Some((Err(error), self))
    }
}

// Binary records: fixed little-endian integers, then length-prefixed bytes. Every decode checks
// lengths, so a damaged file is an error, never a panic.

const RECORD_HEADER: usize = 24;

fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = || StoreError::Other(format!("embedded store: corrupt record for key {key:?}"));
    let header = bytes.get(..RECORD_HEADER).ok_or_else(corrupt)?;
    let int = |at: usize| -> Result<i64, StoreError> {
        let raw: [u8; 8] = header
            .get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(corrupt)?;
        Ok(i64::from_le_bytes(raw))
    };
    Ok(KeyValue {
        key: key.to_owned(),
        value: bytes[RECORD_HEADER..].to_vec(),
        create_revision: int(0)?,
        mod_revision: int(8)?,
        version: int(16)?,
    })
}

fn encode_event(event: &WatchEvent) -> Vec<u8> {
    let record = encode_record(&event.kv);
    let key = event.kv.key.as_bytes();
    let mut out = Vec::with_capacity(5 + key.len() + record.len());
    out.push(match event.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    // Keys are far below 4 GiB: etcd's whole request limit is 1.5 MiB.
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&record);
    out
}

fn decode_event(bytes: &[u8]) -> Result<WatchEvent, StoreError> {
    let corrupt = || StoreError::Other("embedded store: corrupt change log entry".to_owned());
    let (&kind, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let kind = match kind {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        _ => return Err(corrupt()),
    };
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(corrupt)?;
    let key_len = usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|_| corrupt())?;
    let key = rest.get(4..4 + key_len).ok_or_else(corrupt)?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt())?;
    let record = rest.get(4 + key_len..).ok_or_else(corrupt)?;
    Ok(WatchEvent {
        kind,
        kv: decode_record(key, record)?,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_store_file_is_private_whatever_the_umask() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let store = EmbeddedStore::open(&dir).unwrap();
        assert_eq!(mode(&dir.join("setpoint.redb")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        drop(store);

        // A file an older version left world-readable is tightened on open.
        let file = dir.join("setpoint.redb");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = EmbeddedStore::open(&dir).unwrap();
        assert_eq!(mode(&file), 0o600);
    }
}

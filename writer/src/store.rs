//! The storage abstraction: a revisioned key-value store with etcd's semantics.
//!
//! [`Store`] is what the config model needs from its backing store: point reads, ordered range
//! reads, transactions guarded by compares, a watch from a revision, and compaction. Two
//! implementations: [`etcd::EtcdStore`] (production; a real etcd cluster) and
//! [`embedded::EmbeddedStore`] (one redb database file, for single-machine use and the
//! quickstart). One conformance suite (`tests/tests/store_conformance.rs`) holds both to the same
//! contract.
//!
//! Leases (grant with a TTL, keep alive, revoke, puts attached to one) are etcd's and exist only
//! there: the embedded store is single-process (its directory is locked), so the process holding
//! it is the only writer by construction and has nothing to fence; it refuses lease calls with
//! [`StoreError::Other`].
//!
//! Semantics shared by both (they are etcd's):
//! - Every successful transaction that writes at least one key gets the next global revision;
//!   all its writes carry that revision as `mod_revision`. A transaction with no writes does not
//!   advance the revision. The first revision of an empty store is 1 and writes start at 2.
//! - `mod_revision` of a missing key is 0, so `Compare::mod_revision(k, Equal, 0)` means "k does
//!   not exist".
//! - A key may appear at most once in a transaction's writes.
//! - Watch batches are grouped by revision, in revision order, with events in the order the
//!   transaction wrote them. Watching from a compacted revision is [`StoreError::Compacted`].
//!
//! This module must not know about configs, paths or versions: keys are opaque strings.

pub mod embedded;
pub mod etcd;

use std::pin::Pin;

use futures::Stream;

pub type Revision = i64;

/// An etcd lease: keys put with it are deleted when it expires or is revoked.
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes to the key since it was created (etcd's `version`).
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// A guard evaluated atomically with the transaction's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// Compares the key's `mod_revision` (0 when missing) with `revision`.
    ModRevision {
        key: String,
        op: CompareOp,
        revision: Revision,
    },
    /// Compares the `mod_revision` of every key in `[start, end)` with `revision`; an empty
    /// range compares 0 (etcd's range compare). `Less` than the revision a range was read at
    /// means "nothing in it changed since" — including no key created in it.
    ModRevisionRange {
        start: String,
        end: String,
        op: CompareOp,
        revision: Revision,
    },
}

impl Compare {
    pub fn mod_revision(key: impl Into<String>, op: CompareOp, revision: Revision) -> Compare {
        Compare::ModRevision {
            key: key.into(),
            op,
            revision,
        }
    }

    /// The same compare over every key starting with `prefix`.
    pub fn mod_revision_prefix(prefix: &str, op: CompareOp, revision: Revision) -> Compare {
        Compare::ModRevisionRange {
            start: prefix.to_owned(),
            end: prefix_end(prefix),
            op,
            revision,
        }
    }

    /// The key (or the range's first key) the compare reads.
    pub fn key(&self) -> &str {
        match self {
            Compare::ModRevision { key, .. } => key,
            Compare::ModRevisionRange { start, .. } => start,
        }
    }
}

impl CompareOp {
    /// Whether `actual op expected` holds.
    pub fn holds(self, actual: Revision, expected: Revision) -> bool {
        match self {
            CompareOp::Equal => actual == expected,
            CompareOp::NotEqual => actual != expected,
            CompareOp::Greater => actual > expected,
            CompareOp::Less => actual < expected,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// A put attached to `lease`: the key disappears (a delete event) when the lease ends.
    PutWithLease {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
    },
}

/// All `compares` hold → all `writes` are applied as one revision; otherwise nothing is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub writes: Vec<TxnOp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    pub succeeded: bool,
    /// The commit's revision when it succeeded (and wrote); else the store's current revision.
    pub revision: Revision,
}

/// Keys in `[start, end)` in key order (or reverse). `limit == 0` means no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRequest {
    pub start: String,
    pub end: String,
    pub limit: usize,
    pub descending: bool,
}

impl RangeRequest {
    /// Every key starting with `prefix`, ascending.
    pub fn prefix(prefix: &str) -> RangeRequest {
        RangeRequest {
            start: prefix.to_owned(),
            end: prefix_end(prefix),
            limit: 0,
            descending: false,
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end for a prefix).
/// Keys here are ASCII, so incrementing the last byte below 0x7f is enough; an empty result
/// means "to the end of the keyspace".
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_default();
        }
    }
    String::new()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The store's revision at the time of the read.
    pub revision: Revision,
    /// True when `limit` cut the result short.
    pub more: bool,
}

/// One read of an atomic multi-read ([`Store::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// One key: zero or one result.
    Get(String),
    Range(RangeRequest),
}

/// The results of [`Store::read`], in the order of the reads, all at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSet {
    pub results: Vec<Vec<KeyValue>>,
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a delete: the key, an empty value and `mod_revision` = the deleting revision.
    pub kv: KeyValue,
}

/// Every event of one committed transaction that matched the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: Revision,
    pub events: Vec<WatchEvent>,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchBatch, StoreError>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time. Maps to 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The asked revision was compacted away.
    #[error("revision {requested} is compacted (oldest kept: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The request exceeds a store limit (etcd's request size).
    #[error("request too large for the store: {0}")]
    TooLarge(String),
    /// The lease is unknown to the store: expired, revoked or never granted.
    #[error("lease {0:x} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// This writer no longer leads (refused before sending, or its fence compare failed because
    /// another writer took the leader key); the transaction was not applied. Maps to 503.
    #[error("this writer is not the leader{}", leader_hint(.0))]
    NotLeader(Option<String>),
    /// Anything else the store reported.
    #[error("store error: {0}")]
    Other(String),
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(url) => format!(" (the leader is {url})"),
        None => " (no leader is known yet)".to_owned(),
    }
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// `etcd` or `embedded`, for metrics and logs.
    fn kind(&self) -> &'static str;
    /// Each endpoint of the store and whether it answered its last call (etcd's members; empty
    /// for a store without endpoints).
    fn endpoints(&self) -> Vec<(String, bool)> {
        Vec::new()
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    async fn range(&self, request: RangeRequest) -> Result<RangeResult, StoreError>;
    /// Several gets and ranges in one round trip, all seen at one revision (etcd: one read-only
    /// transaction). A commit reads everything it decides on with one call.
    async fn read(&self, reads: Vec<Read>) -> Result<ReadSet, StoreError>;
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;
    /// Batches for keys starting with `prefix`, from `from_revision` inclusive (0 = only future
    /// changes). The stream ends with an error item when the store is lost.
    async fn watch(&self, prefix: &str, from_revision: Revision)
    -> Result<WatchStream, StoreError>;
    /// Discards the history (not the current values) before `revision`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    async fn current_revision(&self) -> Result<Revision, StoreError>;
    /// A new lease that lives `ttl` (rounded up to whole seconds; etcd may raise it to its
    /// minimum) unless kept alive.
    async fn lease_grant(&self, ttl: std::time::Duration) -> Result<LeaseId, StoreError>;
    /// Renews `lease` to its full TTL; [`StoreError::LeaseNotFound`] once it has ended.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Ends `lease` now, deleting its keys. Revoking an unknown lease is `LeaseNotFound`.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
}

//! The audit log: one record per commit (configs, schemas, environments, accounts) written in
//! the same store transaction as the change it describes, plus one per denied attempt.
//!
//! Keys under the prefix `P`:
//! - `P l{nanos:020}{seq:010}` records (time-ordered, unique within this writer), JSON
//!   [`Record`]s. Never a secret value: records hold paths, versions, names, addresses.
//! - `P L{seq:020}` seals: the hash chain ([`setpoint_core::audit`]), one per record, appended by
//!   [`AuditLog::seal_pending`] in key order once a record is older than the settle time (longer
//!   than any commit can take, so no record can appear behind the sealer's cursor).
//! - `P Ah` the chain's head (last seal), `P Aa` the anchor left when retention removed the
//!   chain's beginning.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use setpoint_core::audit::{self as chain, Anchor, Seal};

use crate::error::Error;
use crate::store::{Compare, CompareOp, RangeRequest, Store, Txn, TxnOp, prefix_end};

/// Who asked for a change: `updated_by` of what it writes, and the audit record's actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The account id (or, for anonymous loopback callers in `setpoint dev`, the
    /// `X-Setpoint-Actor` name if given).
    pub name: Option<String>,
    /// `X-Request-Id` if the caller sent one, else generated.
    pub request_id: String,
    /// The caller's address.
    pub source: Option<String>,
}

impl Actor {
    /// The writer itself (bootstrap, default environments).
    pub fn system() -> Actor {
        Actor {
            name: Some("setpoint".to_owned()),
            request_id: "startup".to_owned(),
            source: None,
        }
    }
}

/// Seals written per store transaction (two operations each, plus the head).
const SEALS_PER_TXN: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

/// What happened, before it is stamped with the actor and time.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// `config.put`, `config.delete`, `schema.put`, `environment.delete`, `account.create`, …
    pub action: &'a str,
    pub path: Option<&'a str>,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// RFC 3339.
    pub time: String,
    pub actor: Option<String>,
    pub action: String,
    pub path: Option<String>,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub request_id: String,
    pub source: Option<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The chain's head as stored at `P Ah`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
    /// The last sealed record's key.
    key: String,
}

/// One page of [`AuditLog::query`].
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub records: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; absent at the end.
    pub next: Option<String>,
}

/// Filters of [`AuditLog::query`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records at this path or below it.
    pub path: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// Unix nanoseconds, inclusive.
    pub since: Option<i128>,
    /// Unix nanoseconds, exclusive.
    pub until: Option<i128>,
    /// A record id from a previous page.
    pub after: Option<String>,
    pub limit: usize,
}

pub struct AuditLog {
    prefix: String,
    /// `P l`.
    records: String,
    sequence: AtomicU64,
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

impl AuditLog {
    pub fn new(prefix: &str) -> AuditLog {
        AuditLog {
            prefix: prefix.to_owned(),
            records: format!("{prefix}l"),
            sequence: AtomicU64::new(0),
        }
    }

    fn seals(&self) -> String {
        format!("{}L", self.prefix)
    }

    fn seal_key(&self, seq: u64) -> String {
        format!("{}L{seq:020}", self.prefix)
    }

    fn head_key(&self) -> String {
        format!("{}Ah", self.prefix)
    }

    fn anchor_key(&self) -> String {
        format!("{}Aa", self.prefix)
    }

    async fn head(&self, store: &dyn Store) -> Result<(Option<Head>, i64), Error> {
        match store.get(&self.head_key()).await? {
            None => Ok((None, 0)),
            Some(kv) => Ok((Some(decode_record(&kv.key, &kv.value)?), kv.mod_revision)),
        }
    }

    async fn anchor(&self, store: &dyn Store) -> Result<Option<Anchor>, Error> {
        match store.get(&self.anchor_key()).await? {
            None => Ok(None),
            Some(kv) => Ok(Some(decode_record(&kv.key, &kv.value)?)),
        }
    }

    /// Seals every record older than `settle`, in key order; returns how many. Guarded by a
    /// compare on the head, so two sealers can never fork the chain.
    pub async fn seal_pending(&self, store: &dyn Store, settle: Duration) -> Result<usize, Error> {
        let cutoff = now_nanos() - i128::try_from(settle.as_nanos()).unwrap_or(i128::MAX);
        let end = format!("{}{:020}", self.records, cutoff.max(0));
        let mut sealed = 0;
        loop {
            let (head, head_revision) = self.head(store).await?;
            let start = match &head {
                Some(head) => format!("{}\u{0}", head.key),
                None => self.records.clone(),
            };
            if start >= end {
                return Ok(sealed);
            }
            let range = store
                .range(RangeRequest {
                    start,
                    end: end.clone(),
                    limit: SEALS_PER_TXN,
                    descending: false,
                })
                .await?;
            if range.kvs.is_empty() {
                return Ok(sealed);
            }
            let mut prev = head.map(|h| (h.seq, h.hash));
            if prev.is_none()
                && let Some(anchor) = self.anchor(store).await?
            {
                prev = Some((anchor.seq, anchor.hash));
            }
            let mut writes = Vec::with_capacity(range.kvs.len() + 1);
            let mut last: Option<Seal> = None;
            for kv in &range.kvs {
                let seal = chain::next_seal(
                    prev.as_ref().map(|(seq, hash)| (*seq, hash.as_str())),
                    &kv.key,
                    &kv.value,
                );
                prev = Some((seal.seq, seal.hash.clone()));
                writes.push(TxnOp::Put {
                    key: self.seal_key(seal.seq),
                    value: serde_json::to_vec(&seal).unwrap_or_default(),
                });
                last = Some(seal);
            }
            let Some(last) = last else {
                return Ok(sealed);
            };
            writes.push(TxnOp::Put {
                key: self.head_key(),
                value: serde_json::to_vec(&Head {
                    seq: last.seq,
                    hash: last.hash.clone(),
                    key: last.key.clone(),
                })
                .unwrap_or_default(),
            });
            let outcome = store
                .txn(Txn {
                    compares: vec![Compare::mod_revision(
                        self.head_key(),
                        CompareOp::Equal,
                        head_revision,
                    )],
                    writes,
                })
                .await?;
            if !outcome.succeeded {
                // Another sealer moved the head; start over from it.
                continue;
            }
            sealed += range.kvs.len();
            if !range.more {
                return Ok(sealed);
            }
        }
    }

    /// Checks the whole chain against the stored records.
    pub async fn verify(&self, store: &dyn Store) -> Result<chain::Report, Error> {
        let anchor = self.anchor(store).await?;
        let seals_range = store.range(RangeRequest::prefix(&self.seals())).await?;
        let mut seals = Vec::with_capacity(seals_range.kvs.len());
        for kv in &seals_range.kvs {
            let seal: Seal = decode_record(&kv.key, &kv.value)?;
            seals.push(seal);
        }
        let records: HashMap<String, Vec<u8>> = match seals.last() {
            None => HashMap::new(),
            Some(last) => store
                .range(RangeRequest {
                    start: self.records.clone(),
                    end: format!("{}\u{0}", last.key),
                    limit: 0,
                    descending: false,
                })
                .await?
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
        };
        Ok(chain::verify(anchor.as_ref(), &seals, &records))
    }

    /// Records in time order, filtered, `filter.limit` at a time (scanning at most ten pages'
    /// worth per call).
    pub async fn query(&self, store: &dyn Store, filter: &Filter) -> Result<Page, Error> {
        let limit = filter.limit.clamp(1, 1000);
        let mut start = match filter.since {
            Some(since) => format!("{}{:020}", self.records, since.max(0)),
            None => self.records.clone(),
        };
        if let Some(after) = &filter.after {
            let after_key = format!("{}{after}\u{0}", self.records);
            if after_key > start {
                start = after_key;
            }
        }
        let end = match filter.until {
            Some(until) => format!("{}{:020}", self.records, until.max(0)),
            None => prefix_end(&self.records),
        };
        let mut records = Vec::new();
        let mut next = None;
        let mut scanned = 0;
        while records.len() < limit && scanned < limit * 10 && start < end {
            let range = store
                .range(RangeRequest {
                    start: start.clone(),
                    end: end.clone(),
                    limit,
                    descending: false,
                })
                .await?;
            for kv in &range.kvs {
                scanned += 1;
                let id = kv
                    .key
                    .strip_prefix(&self.records)
                    .unwrap_or(&kv.key)
                    .to_owned();
                start = format!("{}\u{0}", kv.key);
                let Ok(record) = serde_json::from_slice::<Record>(&kv.value) else {
                    continue;
                };
                if matches(&record, filter) {
                    let mut value = serde_json::to_value(&record).unwrap_or_default();
                    value["id"] = serde_json::json!(id);
                    records.push(value);
                    if records.len() == limit {
                        next = Some(id);
                        break;
                    }
                }
            }
            if !range.more {
                if records.len() < limit {
                    next = None;
                }
                break;
            }
            if records.len() < limit {
                next = start
                    .strip_prefix(&self.records)
                    .map(|s| s.trim_end_matches('\u{0}').to_owned());
            }
        }
        Ok(Page { records, next })
    }

    /// Removes sealed records (and their seals) older than `keep`, leaving an anchor so the rest
    /// of the chain still verifies. Returns how many records went.
    pub async fn compact(&self, store: &dyn Store, keep: Duration) -> Result<usize, Error> {
        let cutoff = now_nanos() - i128::try_from(keep.as_nanos()).unwrap_or(i128::MAX);
        let cutoff_key = format!("{}{:020}", self.records, cutoff.max(0));
        let mut removed = 0;
        loop {
            let range = store
                .range(RangeRequest {
                    start: self.seals(),
                    end: prefix_end(&self.seals()),
                    limit: SEALS_PER_TXN,
                    descending: false,
                })
                .await?;
            let mut writes = Vec::new();
            let mut last: Option<Seal> = None;
            for kv in &range.kvs {
                let seal: Seal = decode_record(&kv.key, &kv.value)?;
                if seal.key >= cutoff_key {
                    break;
                }
                writes.push(TxnOp::Delete {
                    key: seal.key.clone(),
                });
                writes.push(TxnOp::Delete {
                    key: kv.key.clone(),
                });
                last = Some(seal);
            }
            let Some(last) = last else {
                return Ok(removed);
            };
            let count = writes.len() / 2;
            writes.push(TxnOp::Put {
                key: self.anchor_key(),
                value: serde_json::to_vec(&Anchor {
                    seq: last.seq,
                    hash: last.hash,
                })
                .unwrap_or_default(),
            });
            store
                .txn(Txn {
                    compares: vec![],
                    writes,
                })
                .await?;
            removed += count;
            if count < SEALS_PER_TXN {
                return Ok(removed);
            }
        }
    }

    /// Key prefix of every record.
    pub fn records_prefix(&self) -> &str {
        &self.records
    }

    /// Runs [`AuditLog::seal_pending`] every `every` until aborted.
    pub async fn sealer(self: Arc<Self>, store: Arc<dyn Store>, settle: Duration, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.seal_pending(store.as_ref(), settle).await {
                tracing::warn!(%error, "audit sealing pass failed; will retry");
            }
        }
    }

    /// The store write that records `event` by `actor` at `now` (RFC 3339); the caller puts it
    /// into the same transaction as the change.
    pub fn write(&self, actor: &Actor, event: &Event<'_>, now: time::OffsetDateTime) -> TxnOp {
        let nanos = u128::try_from(now.unix_timestamp_nanos()).unwrap_or(0);
        let now = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
        let record = Record {
            time: now,
            actor: actor.name.clone(),
            action: event.action.to_owned(),
            path: event.path.map(str::to_owned),
            version_before: event.version_before,
            version_after: event.version_after,
            request_id: actor.request_id.clone(),
            source: actor.source.clone(),
            outcome: event.outcome,
            detail: event.detail.clone(),
        };
        TxnOp::Put {
            key: format!("{}{nanos:020}{sequence:010}", self.records),
            value: serde_json::to_vec(&record).unwrap_or_default(),
        }
    }
}

fn matches(record: &Record, filter: &Filter) -> bool {
    let path_ok = filter.path.as_deref().is_none_or(|want| {
        record.path.as_deref().is_some_and(|p| {
            p == want || p.starts_with(&format!("{}/", want.trim_end_matches('/')))
        }) || record
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(&format!("\"{want}")))
    });
    path_ok
        && filter
            .actor
            .as_deref()
            .is_none_or(|a| record.actor.as_deref() == Some(a))
        && filter.action.as_deref().is_none_or(|a| record.action == a)
        && filter.outcome.is_none_or(|o| record.outcome == o)
}

/// A stored audit record, seal or chain end, decoded; a corrupt one is an internal error.
fn decode_record<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::error!(%key, error = %e, "corrupt audit record in the store");
        Error::internal(format!("corrupt record at {key}: {e}"))
    })
}

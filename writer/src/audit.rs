//! The audit log: one record per mutation (configs, schemas, environments, accounts) written in
//! the same store transaction as the change it describes, plus one per denied attempt.
//!
//! Record keys are `P l{nanos:020}{seq:010}` (time-ordered, unique within this writer); the value
//! is the JSON [`Record`]. Never a secret value: records hold paths, versions, names.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::model::Actor;
use crate::store::TxnOp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

pub struct AuditLog {
    /// `P l`.
    records: String,
    sequence: AtomicU64,
}

impl AuditLog {
    pub fn new(prefix: &str) -> AuditLog {
        AuditLog {
            records: format!("{prefix}l"),
            sequence: AtomicU64::new(0),
        }
    }

    /// Key prefix of every record.
    pub fn records_prefix(&self) -> &str {
        &self.records
    }

    /// The store write that records `event` by `actor` at `now` (RFC 3339); the caller puts it
    /// into the same transaction as the change.
    pub fn write(&self, actor: &Actor, event: &Event<'_>, now: &str) -> TxnOp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
        let record = Record {
            time: now.to_owned(),
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

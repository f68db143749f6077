//! History compaction: removes old versions that the retention rules let go.
//!
//! Runs in the background on the writer (see [`crate::run`]). For every path governed by a rule
//! it reads the version headers, asks [`setpoint_core::retention::removable`] which may go
//! (never the current version), and deletes them in small transactions. It also compacts the
//! store's own revision history so etcd's MVCC log stays bounded.

use setpoint_core::ConfigPath;
use setpoint_core::retention::{self, Rule, StoredVersion};
use time::OffsetDateTime;

use super::Configs;
use super::records::{self, Pointer};
use crate::error::Error;
use crate::store::{RangeRequest, Revision, Txn, TxnOp};

/// Deletes per transaction: small enough for etcd's default limit of 128 operations.
const DELETES_PER_TXN: usize = 64;
/// Version records read per range while scanning one path's history.
const PAGE: usize = 64;

impl Configs {
    /// Applies `rules` once. Returns how many versions were removed.
    pub async fn compact_history(&self, rules: &[Rule]) -> Result<usize, Error> {
        if rules.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now().unix_timestamp();
        let pointers = self
            .store
            .range(RangeRequest::prefix(
                &self.keys.pointers_below(&ConfigPath::root()),
            ))
            .await?;
        let mut removed = 0;
        for kv in pointers.kvs {
            let Some(path) = self.keys.path_of_pointer(&kv.key) else {
                continue;
            };
            let Some(rule) = retention::rule_for(rules, &path) else {
                continue;
            };
            let pointer: Pointer = records::decode_json(&kv.key, &kv.value)?;
            let history = self.version_times(&path).await?;
            let doomed = retention::removable(&history, pointer.version, &rule.policy, now);
            for chunk in doomed.chunks(DELETES_PER_TXN) {
                let writes = chunk
                    .iter()
                    .map(|v| TxnOp::Delete {
                        key: self.keys.version(&path, *v),
                    })
                    .collect();
                self.store
                    .txn(Txn {
                        compares: vec![],
                        writes,
                    })
                    .await?;
                removed += chunk.len();
            }
        }
        if removed > 0 {
            tracing::info!(removed, "history compaction removed old versions");
        }
        Ok(removed)
    }

    async fn version_times(&self, path: &ConfigPath) -> Result<Vec<StoredVersion>, Error> {
        let mut out = Vec::new();
        let mut request = RangeRequest::prefix(&self.keys.versions_of(path));
        request.limit = PAGE;
        loop {
            let page = self.store.range(request.clone()).await?;
            for kv in &page.kvs {
                let (header, _) = records::decode_version(&kv.key, &kv.value)?;
                out.push(StoredVersion {
                    version: header.version,
                    written_at: unix_seconds(&header.meta.updated_at),
                });
            }
            match page.kvs.last() {
                Some(last) if page.more => request.start = format!("{}\0", last.key),
                _ => return Ok(out),
            }
        }
    }

    /// Compacts the store's revision log, keeping the last `keep` revisions; nothing to do when
    /// that target is not past `done` (the last compaction).
    pub async fn compact_store(
        &self,
        keep: Revision,
        done: Revision,
    ) -> Result<Option<Revision>, Error> {
        let current = self.store.current_revision().await?;
        let target = current - keep;
        if target <= done.max(1) {
            return Ok(None);
        }
        self.store.compact(target).await?;
        Ok(Some(target))
    }
}

fn unix_seconds(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        // An unreadable timestamp counts as "now": such a version is kept, never wrongly removed.
        .unwrap_or(i64::MAX)
}

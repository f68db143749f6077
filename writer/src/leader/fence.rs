//! [`FencedStore`]: the store as this writer's model sees it — every transaction fenced by
//! this writer's leadership.
//!
//! While leading, each transaction gets one more compare: the leader key's mod revision equals
//! the revision that made this writer leader. A writer that lost the key (paused past its lease,
//! partitioned) therefore cannot commit, whatever it believes. While not leading, transactions
//! are refused before they are sent. A fenced transaction that fails is checked against the
//! leader key: if the key is no longer ours the answer is [`StoreError::NotLeader`] (never a
//! lost race the model would retry) and the writer steps down at once.
//!
//! Compaction has no compare in etcd; it is refused while not leading (it only discards history
//! that every writer agrees is old, so the local check is enough). Reads, watches and lease calls
//! pass through: standbys serve reads.

use std::sync::Arc;

use super::{Fence, Leadership};
use crate::store::{
    Compare, CompareOp, KeyValue, LeaseId, RangeRequest, RangeResult, Read, ReadSet, Revision,
    Store, StoreError, Txn, TxnOutcome, WatchStream,
};

pub struct FencedStore {
    inner: Arc<dyn Store>,
    leadership: Arc<Leadership>,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn Store>, leadership: Arc<Leadership>) -> FencedStore {
        FencedStore { inner, leadership }
    }
}

#[async_trait::async_trait]
impl Store for FencedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn endpoints(&self) -> Vec<(String, bool)> {
        self.inner.endpoints()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult, StoreError> {
        self.inner.range(request).await
    }

    async fn read(&self, reads: Vec<Read>) -> Result<ReadSet, StoreError> {
        self.inner.read(reads).await
    }

    async fn txn(&self, mut txn: Txn) -> Result<TxnOutcome, StoreError> {
        let revision = match self.leadership.fence() {
            Fence::Sole => return self.inner.txn(txn).await,
            Fence::Refuse(leader) => return Err(StoreError::NotLeader(leader)),
            Fence::Term(revision) => revision,
        };
        let key = self.leadership.key();
        txn.compares
            .push(Compare::mod_revision(key, CompareOp::Equal, revision));
        let outcome = self.inner.txn(txn).await?;
        if outcome.succeeded {
            return Ok(outcome);
        }
        // A failed compare: ours (a lost race the caller handles) or the fence?
        match self.inner.get(key).await? {
            Some(kv) if kv.mod_revision == revision => Ok(outcome),
            holder => {
                let holder = holder.and_then(|kv| serde_json::from_slice(&kv.value).ok());
                self.leadership.lost(revision, holder);
                Err(StoreError::NotLeader(self.leadership.leader_url()))
            }
        }
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, from_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        match self.leadership.fence() {
            Fence::Sole | Fence::Term(_) => self.inner.compact(revision).await,
            Fence::Refuse(leader) => Err(StoreError::NotLeader(leader)),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn lease_grant(&self, ttl: std::time::Duration) -> Result<LeaseId, StoreError> {
        self.inner.lease_grant(ttl).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_keep_alive(lease).await
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_revoke(lease).await
    }
}

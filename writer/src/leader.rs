//! Leadership among writer replicas on one store: which one may commit.
//!
//! One key, `{prefix}Wleader`, names the leader (`{"id", "url"}`, JSON) and is attached to the
//! leader's etcd lease. A writer campaigns with one transaction — "the key is absent → put it
//! with my lease" — and leads while it keeps the lease alive (every TTL/3). If a renewal is not
//! confirmed before the lease could have run out (counted from when the last confirmed request
//! was *sent*, so never later than etcd's own expiry), it steps down at once. Standbys watch the
//! key, know the leader's advertised URL, and campaign again when the key is deleted (lease
//! expired or revoked on a clean shutdown).
//!
//! Leading is only a hint for routing; correctness comes from the fence in [`fence`]: every
//! transaction of this process carries a compare on the leader key's mod revision as this
//! writer put it, so a paused or partitioned former leader cannot commit once another writer
//! holds the key (revisions never repeat, so a stale fence can never match again).
//!
//! A writer restarted with the same id takes its own previous key over without waiting for the
//! old lease (as Kubernetes' leader election does for the same holder identity): the previous
//! process is gone, or ids are misconfigured — then the two alternate but the fence still holds.
//!
//! The embedded store is single-process (its file is locked), so its writer is the sole leader
//! ([`Leadership::sole`]) with no lease and no fence.
//!
//! This module decides who leads; it must not know configs, and it never commits anything but
//! the leader key.

pub mod fence;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{
    Compare, CompareOp, EventKind, KeyValue, LeaseId, RangeRequest, Revision, Store, StoreError,
    Txn, TxnOp,
};

/// Default lease TTL: a dead leader is replaced within about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// The wait between campaign rounds that failed on the store.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A failed renewal is retried this soon (while the lease still holds).
const RENEW_RETRY: Duration = Duration::from_millis(200);

/// Who a writer is, as recorded in the leader key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub id: String,
    /// Where the writer serves its REST API (`http://host:port`); standbys redirect writes here.
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// One period of leadership: the revision that put our leader key (the fence), our lease, and
/// until when the lease is known to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    revision: Revision,
    lease: LeaseId,
    valid_until: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    role: Role,
    /// The current leader as last seen (this writer while it leads); `None` when unknown.
    leader: Option<LeaderInfo>,
    /// `None` while standing by, and for the sole writer of an embedded store.
    term: Option<Term>,
    /// The first campaign round has decided (lead or follow).
    settled: bool,
}

impl Status {
    /// This writer's role now (a term past its confirmed lease counts as standby).
    pub fn role(&self) -> Role {
        match (self.role, self.term) {
            (Role::Leader, Some(term)) if Instant::now() >= term.valid_until => Role::Standby,
            (role, _) => role,
        }
    }

    pub fn leader(&self) -> Option<&LeaderInfo> {
        self.leader.as_ref()
    }

    /// Identifies a term, so a supervisor can tell a new one from the one it started jobs for.
    pub fn term_revision(&self) -> Option<Revision> {
        self.term.map(|t| t.revision)
    }
}

/// What a transaction of this writer must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// The sole writer of a single-process store: nothing to add.
    Sole,
    /// Leading: compare the leader key's mod revision with this one.
    Term(Revision),
    /// Not leading: refuse (the leader's URL when known).
    Refuse(Option<String>),
}

pub struct Leadership {
    me: LeaderInfo,
    key: String,
    status: watch::Sender<Status>,
}

impl Leadership {
    /// `{prefix}Wleader` — `W` is no other record's letter (`P l…` are audit records).
    pub fn key_for(prefix: &str) -> String {
        let mut key = prefix.to_owned();
        if !key.ends_with('/') {
            key.push('/');
        }
        key.push_str("Wleader");
        key
    }

    /// The only writer of a single-process store: leader from the start, never fenced.
    pub fn sole(prefix: &str, me: LeaderInfo) -> Arc<Leadership> {
        let status = Status {
            role: Role::Leader,
            leader: Some(me.clone()),
            term: None,
            settled: true,
        };
        Arc::new(Leadership {
            key: Leadership::key_for(prefix),
            me,
            status: watch::channel(status).0,
        })
    }

    /// Starts campaigning on `store` (which must support leases) in a task; returns at once.
    pub fn campaign(
        store: Arc<dyn Store>,
        prefix: &str,
        me: LeaderInfo,
        ttl: Duration,
    ) -> (Arc<Leadership>, tokio::task::JoinHandle<()>) {
        let status = Status {
            role: Role::Standby,
            leader: None,
            term: None,
            settled: false,
        };
        let leadership = Arc::new(Leadership {
            key: Leadership::key_for(prefix),
            me,
            status: watch::channel(status).0,
        });
        let task = tokio::spawn(leadership.clone().run(store, ttl));
        (leadership, task)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn me(&self) -> &LeaderInfo {
        &self.me
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        self.status.borrow().role() == Role::Leader
    }

    /// The leader's URL when it is another writer (where a standby sends writes).
    pub fn leader_url(&self) -> Option<String> {
        let status = self.status.borrow();
        status
            .leader
            .as_ref()
            .filter(|leader| leader.id != self.me.id)
            .map(|leader| leader.url.clone())
    }

    pub fn fence(&self) -> Fence {
        let status = self.status.borrow();
        match (status.role(), status.term) {
            (Role::Leader, Some(term)) => Fence::Term(term.revision),
            (Role::Leader, None) => Fence::Sole,
            (Role::Standby, _) => Fence::Refuse(
                status
                    .leader
                    .as_ref()
                    .filter(|leader| leader.id != self.me.id)
                    .map(|leader| leader.url.clone()),
            ),
        }
    }

    /// The fence of term `revision` failed: another writer holds the key (`now`, if known).
    /// Steps down at once, if that term is still the current one.
    pub fn lost(&self, revision: Revision, now: Option<LeaderInfo>) {
        self.status.send_if_modified(|status| {
            if status.term.map(|t| t.revision) != Some(revision) {
                return false;
            }
            tracing::warn!(
                revision,
                leader = ?now,
                "the leader key is no longer ours; stepping down"
            );
            status.role = Role::Standby;
            status.term = None;
            status.leader = now;
            true
        });
    }

    /// Resolves once the first campaign round decided (at once for the sole writer).
    pub async fn settled(&self) {
        let mut rx = self.status.subscribe();
        let _ = rx.wait_for(|status| status.settled).await;
    }

    /// Ends the current term (if any) and revokes its lease so a standby takes over now
    /// instead of after the TTL. For a clean shutdown, after the campaign task was stopped.
    pub async fn resign(&self, store: &dyn Store) {
        let mut ended = None;
        self.status.send_if_modified(|status| {
            ended = status.term.take();
            if ended.is_some() {
                status.role = Role::Standby;
                status.leader = None;
            }
            ended.is_some()
        });
        if let Some(term) = ended {
            match store.lease_revoke(term.lease).await {
                Ok(()) => tracing::info!("resigned leadership"),
                Err(err) => {
                    tracing::warn!(%err, "cannot revoke the leader lease; it expires by itself")
                }
            }
        }
    }

    fn set(&self, role: Role, leader: Option<LeaderInfo>, term: Option<Term>) {
        self.status.send_if_modified(|status| {
            let next = Status {
                role,
                leader,
                term,
                settled: true,
            };
            let changed = *status != next;
            *status = next;
            changed
        });
    }

    fn extend(&self, revision: Revision, valid_until: Instant) {
        self.status
            .send_if_modified(|status| match status.term.as_mut() {
                Some(term) if term.revision == revision => {
                    term.valid_until = valid_until;
                    // A renewal is not news for subscribers; only `role()` reads it.
                    false
                }
                _ => false,
            });
    }

    async fn run(self: Arc<Self>, store: Arc<dyn Store>, ttl: Duration) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.round(store.as_ref(), ttl).await {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?backoff, "leader election round failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Observes the key; leads while it is ours, or follows the leader until the key goes away.
    async fn round(&self, store: &dyn Store, ttl: Duration) -> Result<(), StoreError> {
        let observed = store
            .range(RangeRequest {
                start: self.key.clone(),
                end: format!("{}\0", self.key),
                limit: 1,
                descending: false,
            })
            .await?;
        let current = observed.kvs.into_iter().next();
        if let Some(kv) = &current {
            let holder = decode(kv);
            if holder.as_ref().is_none_or(|h| h.id != self.me.id) {
                self.set(Role::Standby, holder, None);
                return self.follow(store, observed.revision + 1).await;
            }
            tracing::info!("the leader key names this writer (a previous run); taking it over");
        }
        // Counted before the grant is sent: etcd starts the TTL later, so our view of the lease
        // never outlives etcd's.
        let granted_at = Instant::now();
        let lease = store.lease_grant(ttl).await?;
        let compare = Compare::mod_revision(
            &self.key,
            CompareOp::Equal,
            current.as_ref().map_or(0, |kv| kv.mod_revision),
        );
        let put = TxnOp::PutWithLease {
            key: self.key.clone(),
            value: serde_json::to_vec(&self.me).unwrap_or_default(),
            lease,
        };
        let outcome = store
            .txn(Txn {
                compares: vec![compare],
                writes: vec![put],
            })
            .await;
        match outcome {
            Ok(outcome) if outcome.succeeded => {
                self.lead(store, lease, outcome.revision, granted_at, ttl)
                    .await;
                Ok(())
            }
            other => {
                // Lost the race (the next round follows the winner) or the store failed.
                let _ = store.lease_revoke(lease).await;
                other.map(drop)
            }
        }
    }

    /// Follows the leader key from `from` until it is deleted; updates who leads on each put.
    async fn follow(&self, store: &dyn Store, from: Revision) -> Result<(), StoreError> {
        let mut stream = store.watch(&self.key, from).await?;
        while let Some(batch) = stream.next().await {
            for event in batch?.events {
                if event.kv.key != self.key {
                    continue;
                }
                match event.kind {
                    EventKind::Delete => {
                        tracing::info!("the leader is gone; campaigning");
                        self.set(Role::Standby, None, None);
                        return Ok(());
                    }
                    EventKind::Put => self.set(Role::Standby, decode(&event.kv), None),
                }
            }
        }
        Err(StoreError::Unavailable(
            "the watch of the leader key ended".to_owned(),
        ))
    }

    /// Leads term `revision` while the lease is renewed in time and nobody took the key.
    async fn lead(
        &self,
        store: &dyn Store,
        lease: LeaseId,
        revision: Revision,
        granted_at: Instant,
        ttl: Duration,
    ) {
        let mut valid_until = granted_at + ttl;
        let mut status = self.status.subscribe();
        self.set(
            Role::Leader,
            Some(self.me.clone()),
            Some(Term {
                revision,
                lease,
                valid_until,
            }),
        );
        tracing::info!(revision, ?ttl, "became leader");
        let interval = ttl / 3;
        let mut next = granted_at + interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(valid_until) => {
                    tracing::warn!("the leader lease was not renewed in time; stepping down");
                    break;
                }
                changed = status.changed() => {
                    // `lost` or `resign` ended this term.
                    if changed.is_err() || status.borrow_and_update().term.map(|t| t.revision) != Some(revision) {
                        break;
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    let sent = Instant::now();
                    match tokio::time::timeout_at(valid_until, store.lease_keep_alive(lease)).await {
                        Ok(Ok(())) => {
                            valid_until = sent + ttl;
                            self.extend(revision, valid_until);
                            next = sent + interval;
                        }
                        Ok(Err(StoreError::LeaseNotFound(_))) => {
                            tracing::warn!("the leader lease is gone; stepping down");
                            break;
                        }
                        Ok(Err(err)) => {
                            tracing::warn!(%err, "cannot renew the leader lease; retrying");
                            next = Instant::now() + RENEW_RETRY.min(interval);
                        }
                        Err(_) => {
                            tracing::warn!("the leader lease was not renewed in time; stepping down");
                            break;
                        }
                    }
                }
            }
        }
        self.status.send_if_modified(|status| {
            if status.term.map(|t| t.revision) != Some(revision) {
                return false;
            }
            status.role = Role::Standby;
            status.term = None;
            status.leader = None;
            true
        });
        // The key may still be ours in etcd (a slow store, not a dead lease): free it so a
        // standby need not wait for the TTL. If the store is unreachable this fails; the lease
        // then expires by itself.
        let _ = store.lease_revoke(lease).await;
    }
}

fn decode(kv: &KeyValue) -> Option<LeaderInfo> {
    match serde_json::from_slice(&kv.value) {
        Ok(info) => Some(info),
        Err(err) => {
            tracing::warn!(%err, key = kv.key, "the leader key does not hold a leader record");
            None
        }
    }
}

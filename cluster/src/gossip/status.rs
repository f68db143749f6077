//! What a node says about its progress beyond membership: the revision it has applied, carried
//! as foca custom broadcasts.
//!
//! Membership (who is up, where) lives in the identity and changes rarely; a revision changes
//! with every commit, so it travels separately: each node broadcasts a small [`Status`] when its
//! revision changed (at most once per [`STATUS_INTERVAL`]) and again every [`STATUS_REFRESH`]
//! (so members that joined later learn it). A status is keyed by node id and ordered by
//! (generation, seq): a newer one replaces an older one still being disseminated, and anything
//! older than what a node already knows is dropped instead of being passed on.
//!
//! Datagrams are unauthenticated (see `gossip.rs`): a status is a hint for choosing a peer to
//! catch up from, never a reason to accept data — the replication link is mutual TLS and refuses
//! to move an edge backwards whatever a peer claimed here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foca::{BroadcastHandler, Invalidates};

use super::identity::NodeId;

/// A changed revision is broadcast at most this often.
pub(crate) const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// An unchanged revision is broadcast again this often.
pub(crate) const STATUS_REFRESH: Duration = Duration::from_secs(5);
/// The most node statuses one node keeps (a hostile sender inventing ids cannot grow it further).
const MAX_STATUSES: usize = 65_536;
/// The longest node id a status may carry (an identity is at most 400 bytes in all).
const MAX_ID_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Status {
    pub(crate) id: String,
    /// The generation of the identity that sent it (see `identity.rs`).
    pub(crate) generation: u64,
    /// Counts this run's broadcasts: a refresh with an unchanged revision is still news.
    pub(crate) seq: u64,
    pub(crate) revision: i64,
}

impl Status {
    fn newer_than(&self, other: &Status) -> bool {
        (self.generation, self.seq) > (other.generation, other.seq)
    }
}

/// Which status a queued broadcast is, so a newer one from the same node replaces it.
#[derive(Debug)]
pub(crate) struct StatusKey(Status);

impl Invalidates for StatusKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0.id == other.0.id && !other.0.newer_than(&self.0)
    }
}

/// The newest status known per node id, shared between foca's handler and the driver.
#[derive(Debug, Clone, Default)]
pub(crate) struct Statuses(Arc<Mutex<Known>>);

#[derive(Debug, Default)]
pub(crate) struct Known {
    pub(crate) by_id: BTreeMap<String, Status>,
    /// Bumped on every change, so the driver re-reads only when there is news.
    pub(crate) version: u64,
}

impl Statuses {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Known> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StatusError {
    #[error("undecodable status: {0}")]
    Decode(#[from] postcard::Error),
    #[error("a status must carry a node id of 1 to {MAX_ID_BYTES} bytes")]
    BadId,
}

/// foca's side: decodes what arrives and decides whether it is news worth passing on.
pub(crate) struct StatusHandler(pub(crate) Statuses);

impl BroadcastHandler<NodeId> for StatusHandler {
    type Key = StatusKey;
    type Error = StatusError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<StatusKey>, StatusError> {
        let status: Status = postcard::from_bytes(data)?;
        if status.id.is_empty() || status.id.len() > MAX_ID_BYTES {
            return Err(StatusError::BadId);
        }
        let mut known = self.0.lock();
        let news = match known.by_id.get(&status.id) {
            Some(old) => status.newer_than(old),
            None => known.by_id.len() < MAX_STATUSES,
        };
        if !news {
            return Ok(None);
        }
        known.by_id.insert(status.id.clone(), status.clone());
        known.version += 1;
        Ok(Some(StatusKey(status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, generation: u64, seq: u64, revision: i64) -> Vec<u8> {
        let status = Status {
            id: id.to_owned(),
            generation,
            seq,
            revision,
        };
        postcard::to_allocvec(&status).unwrap_or_default()
    }

    fn revision_of(statuses: &Statuses, id: &str) -> Option<i64> {
        statuses.lock().by_id.get(id).map(|s| s.revision)
    }

    #[test]
    fn only_news_is_kept_and_passed_on() {
        let statuses = Statuses::default();
        let mut handler = StatusHandler(statuses.clone());
        let receive = |handler: &mut StatusHandler, data: &[u8]| {
            handler.receive_item(data, None).map(|key| key.is_some())
        };
        assert!(matches!(
            receive(&mut handler, &status("a", 1, 1, 10)),
            Ok(true)
        ));
        // The same broadcast again, or an older one: known, not passed on.
        assert!(matches!(
            receive(&mut handler, &status("a", 1, 1, 10)),
            Ok(false)
        ));
        assert!(matches!(
            receive(&mut handler, &status("a", 1, 0, 99)),
            Ok(false)
        ));
        assert_eq!(revision_of(&statuses, "a"), Some(10));
        // A refresh (next seq) and a new run (next generation, seq from zero) are news.
        assert!(matches!(
            receive(&mut handler, &status("a", 1, 2, 12)),
            Ok(true)
        ));
        assert!(matches!(
            receive(&mut handler, &status("a", 2, 0, 3)),
            Ok(true)
        ));
        assert_eq!(revision_of(&statuses, "a"), Some(3));
    }

    #[test]
    fn hostile_statuses_are_refused_without_being_kept() {
        let statuses = Statuses::default();
        let mut handler = StatusHandler(statuses.clone());
        assert!(handler.receive_item(&[0xff, 0xff, 0xff], None).is_err());
        assert!(handler.receive_item(&status("", 1, 1, 1), None).is_err());
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(handler.receive_item(&status(&long, 1, 1, 1), None).is_err());
        assert!(statuses.lock().by_id.is_empty());
    }

    #[test]
    fn a_newer_status_invalidates_the_queued_one_of_the_same_node_only() {
        let key = |id: &str, generation, seq| {
            StatusKey(Status {
                id: id.to_owned(),
                generation,
                seq,
                revision: 0,
            })
        };
        assert!(key("a", 1, 2).invalidates(&key("a", 1, 1)));
        assert!(key("a", 2, 0).invalidates(&key("a", 1, 9)));
        assert!(!key("a", 1, 1).invalidates(&key("a", 1, 2)));
        assert!(!key("b", 1, 2).invalidates(&key("a", 1, 1)));
    }
}

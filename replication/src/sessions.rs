//! The registry of downstream edges a node serves (the writer's `/api/edges`, a relay's
//! downstream list): one record per node id, owned by its newest connection, kept after the link
//! ends (marked disconnected) so operators see it.
//!
//! Must not: decide anything about the fleet (clients, alerts, metrics): the host does that with
//! what these calls return.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use setpoint_core::Revision;

use crate::server::Downstream;

/// One downstream edge as the node serving it knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSession {
    pub id: String,
    pub region: String,
    /// Where the edge serves HTTP/gRPC (from its hello).
    pub http_addr: String,
    /// The QUIC peer address.
    pub remote_addr: SocketAddr,
    pub connected: bool,
    pub connected_since: SystemTime,
    /// When its link ended (`None` while connected).
    pub disconnected_at: Option<SystemTime>,
    /// The newest revision the edge acknowledged (its hello's revision before any ack).
    pub applied_revision: Revision,
    pub last_ack: Option<SystemTime>,
}

struct Record {
    session: EdgeSession,
    /// Which connection owns the record, so an old connection ending does not mark a newer one
    /// of the same node disconnected.
    connection: u64,
}

#[derive(Default)]
pub struct Sessions {
    records: Mutex<BTreeMap<String, Record>>,
    next_connection: AtomicU64,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection of `edge` (replacing any older one of the same id); returns
    /// the connection's id and how many edges are connected now.
    pub fn connect(&self, edge: Downstream) -> (u64, usize) {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
        let mut records = self.lock();
        records.insert(
            edge.id.clone(),
            Record {
                session: EdgeSession {
                    id: edge.id,
                    region: edge.region,
                    http_addr: edge.http_addr,
                    remote_addr: edge.remote_addr,
                    connected: true,
                    connected_since: SystemTime::now(),
                    disconnected_at: None,
                    applied_revision: edge.revision,
                    last_ack: None,
                },
                connection,
            },
        );
        (connection, connected(&records))
    }

    /// Marks `id` disconnected if `connection` still owns it; returns whether it did, and how
    /// many edges are connected now.
    pub fn disconnect(&self, id: &str, connection: u64) -> (bool, usize) {
        let mut records = self.lock();
        let mut lost = false;
        if let Some(record) = records.get_mut(id)
            && record.connection == connection
        {
            record.session.connected = false;
            record.session.disconnected_at = Some(SystemTime::now());
            lost = true;
        }
        (lost, connected(&records))
    }

    /// Records an ack of `revision`; the edge's applied revision after it, or `None` when
    /// `connection` no longer owns the record.
    pub fn acked(&self, id: &str, connection: u64, revision: Revision) -> Option<Revision> {
        let mut records = self.lock();
        let record = records.get_mut(id)?;
        if record.connection != connection {
            return None;
        }
        record.session.applied_revision = record.session.applied_revision.max(revision);
        record.session.last_ack = Some(SystemTime::now());
        Some(record.session.applied_revision)
    }

    /// Whether `connection` is the live one of `id`.
    pub fn is_current(&self, id: &str, connection: u64) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|r| r.connection == connection)
    }

    pub fn applied_revision(&self, id: &str) -> Option<Revision> {
        self.lock().get(id).map(|r| r.session.applied_revision)
    }

    /// Forgets the edges whose link ended before `cutoff` (so a fleet whose hosts come and go
    /// does not grow the registry, or the host's per-edge series, for ever); returns their ids.
    pub fn forget(&self, cutoff: SystemTime) -> Vec<String> {
        let mut forgotten = Vec::new();
        self.lock().retain(|id, record| {
            let keep = record.session.disconnected_at.is_none_or(|at| at >= cutoff);
            if !keep {
                forgotten.push(id.clone());
            }
            keep
        });
        forgotten
    }

    /// Every edge that connected (and is not forgotten), connected or not, by id.
    pub fn list(&self) -> Vec<EdgeSession> {
        self.lock().values().map(|r| r.session.clone()).collect()
    }
}

fn connected(records: &BTreeMap<String, Record>) -> usize {
    records.values().filter(|r| r.session.connected).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str, revision: Revision) -> Downstream {
        Downstream {
            id: id.into(),
            region: "r".into(),
            http_addr: String::new(),
            remote_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            revision,
        }
    }

    #[test]
    fn an_old_connection_ending_leaves_the_newer_one_connected() {
        let sessions = Sessions::new();
        let (old, _) = sessions.connect(hello("a", 3));
        let (new, count) = sessions.connect(hello("a", 5));
        assert_eq!(count, 1);
        assert_eq!(sessions.acked("a", old, 9), None, "not the owner");
        assert_eq!(sessions.disconnect("a", old), (false, 1));
        assert_eq!(
            sessions.acked("a", new, 4),
            Some(5),
            "never below the hello"
        );
        assert_eq!(sessions.acked("a", new, 7), Some(7));
        assert_eq!(sessions.disconnect("a", new), (true, 0));
        let listed = sessions.list();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].connected && listed[0].disconnected_at.is_some());
    }

    #[test]
    fn only_edges_gone_before_the_cutoff_are_forgotten() {
        let sessions = Sessions::new();
        let (gone, _) = sessions.connect(hello("gone", 1));
        sessions.connect(hello("live", 1));
        sessions.disconnect("gone", gone);
        let before = SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(sessions.forget(before).is_empty(), "gone just now");
        let after = SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(sessions.forget(after), ["gone"]);
        let ids: Vec<String> = sessions.list().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["live"], "a connected edge stays whatever the cutoff");
    }
}

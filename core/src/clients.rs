//! Application instances as the fleet sees them: the record an edge keeps per client session
//! (or registered SSE stream), the report an edge sends the writer, and the writer's merged view.
//!
//! An edge owns the records of the clients connected to it and reports them to the writer as
//! changes since its last report ([`ClientReport`]; a reconnecting edge sends everything with
//! `full`). The writer folds reports into a [`Fleet`]: one record per instance id, the edge it
//! was last seen on, `disconnected` (with the time) once its edge says so or the edge itself is
//! lost, forgotten after the retention window.
//!
//! Pure: no clock (times are unix milliseconds passed in), no I/O. Records travel in
//! replication frames (postcard), so they carry no serde attributes that skip fields.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::auth::{Action, Grants};
use crate::{ConfigPath, Revision};

/// Longest instance id, label key or value, SDK name, prefix list entry or error text accepted
/// from a client (longer ones are refused at the edge, or cut in error texts).
pub const MAX_FIELD_BYTES: usize = 256;
/// Most labels per client.
pub const MAX_LABELS: usize = 32;
/// Most watched prefixes per client.
pub const MAX_PREFIXES: usize = 64;
/// Longest error text kept from a NACK.
pub const MAX_ERROR_BYTES: usize = 1024;
/// Most records in one report frame.
pub const MAX_REPORT_RECORDS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientKind {
    /// An SDK's gRPC `Session`.
    Session,
    /// An SSE watch that named its instance (`?instance_id=`), acknowledging over HTTP.
    Sse,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Session => "session",
            ClientKind::Sse => "sse",
        }
    }
}

/// The last callback failure a client reported (a NACK).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientError {
    pub path: String,
    pub error: String,
    pub revision: Revision,
    pub at_ms: i64,
}

/// One application instance on one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: String,
    /// The edge serving it.
    pub edge: String,
    /// The client's address as the edge saw it.
    pub address: String,
    pub kind: ClientKind,
    pub env: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub prefixes: Vec<String>,
    pub sdk: String,
    pub sdk_version: String,
    pub connected_at_ms: i64,
    /// Last message from the client (receipt, heartbeat, hello).
    pub last_seen_ms: i64,
    /// Set once the session ended.
    pub disconnected_at_ms: Option<i64>,
    /// The newest revision the edge delivered to it.
    pub delivered_revision: Revision,
    /// The newest revision it acknowledged as applied.
    pub applied_revision: Revision,
    /// When the oldest delivered but unacknowledged update was delivered (unix ms).
    pub pending_since_ms: Option<i64>,
    /// Edge delivery → client receipt of its last acknowledged change, milliseconds.
    pub propagation_ms: Option<f64>,
    /// Commit (the writer's clock) → client receipt of its last acknowledged change.
    pub end_to_end_ms: Option<f64>,
    pub nacks: u64,
    pub last_error: Option<ClientError>,
}

impl ClientRecord {
    pub fn is_connected(&self) -> bool {
        self.disconnected_at_ms.is_none()
    }

    /// Revisions delivered but not yet acknowledged (0 when it applied everything sent to it).
    pub fn lag_revisions(&self) -> i64 {
        (self.delivered_revision - self.applied_revision).max(0)
    }

    /// How long the oldest unacknowledged delivery has waited, in seconds (0 when none).
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        match self.pending_since_ms {
            Some(since) if self.lag_revisions() > 0 => (now_ms - since).max(0) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// Whether a caller with `grants` may see this client (and acknowledge for it): it can read
    /// one of the prefixes the client watches.
    pub fn readable_by(&self, grants: &Grants) -> bool {
        self.prefixes.iter().any(|prefix| {
            let path = if prefix == "/" {
                Ok(ConfigPath::root())
            } else {
                ConfigPath::parse(prefix)
            };
            path.is_ok_and(|p| grants.allows(&p, Action::Read))
        })
    }
}

/// What changes in a record after its session registered: the part a report carries for a
/// client whose whole record it already sent on the same link ([`ProgressReport`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientProgress {
    pub id: String,
    pub last_seen_ms: i64,
    pub disconnected_at_ms: Option<i64>,
    pub delivered_revision: Revision,
    pub applied_revision: Revision,
    pub pending_since_ms: Option<i64>,
    pub propagation_ms: Option<f64>,
    pub end_to_end_ms: Option<f64>,
    pub nacks: u64,
    pub last_error: Option<ClientError>,
}

impl ClientRecord {
    /// The changing part of the record.
    pub fn progress(&self) -> ClientProgress {
        ClientProgress {
            id: self.id.clone(),
            last_seen_ms: self.last_seen_ms,
            disconnected_at_ms: self.disconnected_at_ms,
            delivered_revision: self.delivered_revision,
            applied_revision: self.applied_revision,
            pending_since_ms: self.pending_since_ms,
            propagation_ms: self.propagation_ms,
            end_to_end_ms: self.end_to_end_ms,
            nacks: self.nacks,
            last_error: self.last_error.clone(),
        }
    }

    /// Takes the changing part from `progress` (of this record's id).
    pub fn advance(&mut self, progress: ClientProgress) {
        self.last_seen_ms = progress.last_seen_ms;
        self.disconnected_at_ms = progress.disconnected_at_ms;
        self.delivered_revision = progress.delivered_revision;
        self.applied_revision = progress.applied_revision;
        self.pending_since_ms = progress.pending_since_ms;
        self.propagation_ms = progress.propagation_ms;
        self.end_to_end_ms = progress.end_to_end_ms;
        self.nacks = progress.nacks;
        self.last_error = progress.last_error;
    }
}

/// What an edge tells the writer about clients whose whole record it already reported on this
/// link: only what changed in them, a tenth of a record's bytes and no strings but the id. At
/// 100,000 sessions each acknowledging every commit, whole records cost the edge, the link and
/// the writer more than the commit itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    pub progress: Vec<ClientProgress>,
}

impl ProgressReport {
    /// Checks a peer's report: bounded in entries and in every field.
    pub fn check(&self) -> Result<(), String> {
        if self.progress.len() > MAX_REPORT_RECORDS {
            return Err(format!(
                "a progress report holds {} entries; the limit is {MAX_REPORT_RECORDS}",
                self.progress.len()
            ));
        }
        for p in &self.progress {
            if p.id.is_empty()
                || p.id.len() > MAX_FIELD_BYTES
                || p.last_error.as_ref().is_some_and(|e| {
                    e.error.len() > MAX_ERROR_BYTES || e.path.len() > MAX_FIELD_BYTES
                })
            {
                return Err(format!("client progress {:.64?} is out of bounds", p.id));
            }
        }
        Ok(())
    }
}

/// What an edge tells the writer about its clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// True: `records` is everything the edge has; the writer drops what it held for this edge
    /// and is not listed (marks it disconnected).
    pub full: bool,
    /// New or changed records.
    pub records: Vec<ClientRecord>,
}

impl ClientReport {
    /// Checks a peer's report: bounded in records and in every field.
    pub fn check(&self) -> Result<(), String> {
        if self.records.len() > MAX_REPORT_RECORDS {
            return Err(format!(
                "a client report holds {} records; the limit is {MAX_REPORT_RECORDS}",
                self.records.len()
            ));
        }
        for record in &self.records {
            let fields = [
                &record.id,
                &record.sdk,
                &record.sdk_version,
                &record.address,
            ];
            let labels = record.labels.iter().flat_map(|(k, v)| [k, v]);
            if record.id.is_empty()
                || fields
                    .into_iter()
                    .chain(labels)
                    .chain(&record.prefixes)
                    .any(|f| f.len() > MAX_FIELD_BYTES)
                || record.labels.len() > MAX_LABELS
                || record.prefixes.len() > MAX_PREFIXES
                || record
                    .env
                    .as_ref()
                    .is_some_and(|e| e.len() > MAX_FIELD_BYTES)
                || record.last_error.as_ref().is_some_and(|e| {
                    e.error.len() > MAX_ERROR_BYTES || e.path.len() > MAX_FIELD_BYTES
                })
            {
                return Err(format!("client record {:.64?} is out of bounds", record.id));
            }
        }
        Ok(())
    }
}

/// A filter on the fleet listing (`GET /api/clients?prefix=&env=&status=&label=k=v`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientFilter {
    /// Clients watching this prefix, or something below or above it.
    pub prefix: Option<String>,
    pub env: Option<String>,
    /// `Some(true)`: connected only; `Some(false)`: disconnected only.
    pub connected: Option<bool>,
    pub labels: Vec<(String, String)>,
    pub edge: Option<String>,
}

fn overlaps(a: &str, b: &str) -> bool {
    let under = |inner: &str, outer: &str| {
        outer == "/"
            || inner == outer
            || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
    };
    under(a, b) || under(b, a)
}

impl ClientFilter {
    pub fn matches(&self, record: &ClientRecord) -> bool {
        if let Some(prefix) = &self.prefix
            && !record.prefixes.iter().any(|p| overlaps(p, prefix))
        {
            return false;
        }
        if let Some(env) = &self.env
            && record.env.as_deref() != Some(env.as_str())
        {
            return false;
        }
        if let Some(connected) = self.connected
            && record.is_connected() != connected
        {
            return false;
        }
        if let Some(edge) = &self.edge
            && &record.edge != edge
        {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| record.labels.get(k) == Some(v))
    }
}

/// The writer's view of every client in the fleet, by instance id.
#[derive(Debug, Default)]
pub struct Fleet {
    clients: HashMap<String, ClientRecord>,
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet::default()
    }

    /// Folds in a report from `edge` (the authenticated sender: records claiming another edge
    /// are taken as this edge's).
    pub fn apply(&mut self, edge: &str, report: ClientReport, now_ms: i64) {
        if report.full {
            self.edge_lost(edge, now_ms);
        }
        for mut record in report.records {
            record.edge = edge.to_owned();
            match self.clients.get(&record.id) {
                // The instance moved to another edge and is connected there: an old edge's
                // news of its departure does not override that.
                Some(held)
                    if held.edge != edge && held.is_connected() && !record.is_connected() => {}
                _ => {
                    self.clients.insert(record.id.clone(), record);
                }
            }
        }
    }

    /// Folds in progress from `edge` for clients it reported whole before; entries for clients
    /// the fleet holds on another edge (moved, or never reported) are dropped.
    pub fn progress(&mut self, edge: &str, report: ProgressReport) {
        for progress in report.progress {
            if let Some(held) = self.clients.get_mut(&progress.id)
                && held.edge == edge
            {
                held.advance(progress);
            }
        }
    }

    /// `edge` is gone (its replication link ended): its clients are no longer connected to
    /// anything the writer can see.
    pub fn edge_lost(&mut self, edge: &str, now_ms: i64) {
        for record in self.clients.values_mut() {
            if record.edge == edge && record.disconnected_at_ms.is_none() {
                record.disconnected_at_ms = Some(now_ms);
            }
        }
    }

    /// Forgets clients disconnected for longer than `retention_ms`.
    pub fn prune(&mut self, now_ms: i64, retention_ms: i64) {
        self.clients
            .retain(|_, record| match record.disconnected_at_ms {
                Some(at) => now_ms - at <= retention_ms,
                None => true,
            });
    }

    pub fn get(&self, id: &str) -> Option<&ClientRecord> {
        self.clients.get(id)
    }

    /// Every client, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &ClientRecord> {
        self.clients.values()
    }

    /// The clients matching `filter`, by id.
    pub fn list(&self, filter: &ClientFilter) -> Vec<&ClientRecord> {
        let mut listed: Vec<&ClientRecord> = self
            .clients
            .values()
            .filter(|r| filter.matches(r))
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// (connected, disconnected) counts.
    pub fn counts(&self) -> (usize, usize) {
        let connected = self.clients.values().filter(|r| r.is_connected()).count();
        (connected, self.clients.len() - connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, prefixes: &[&str]) -> ClientRecord {
        ClientRecord {
            id: id.into(),
            edge: String::new(),
            address: "127.0.0.1:1".into(),
            kind: ClientKind::Session,
            env: Some("prod".into()),
            labels: BTreeMap::from([("zone".into(), "eu-1".into())]),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            sdk: "go".into(),
            sdk_version: "0.1.0".into(),
            connected_at_ms: 1_000,
            last_seen_ms: 1_000,
            disconnected_at_ms: None,
            delivered_revision: 10,
            applied_revision: 10,
            pending_since_ms: None,
            propagation_ms: None,
            end_to_end_ms: None,
            nacks: 0,
            last_error: None,
        }
    }

    fn report(full: bool, records: Vec<ClientRecord>) -> ClientReport {
        ClientReport { full, records }
    }

    #[test]
    fn reports_upsert_and_a_full_report_disconnects_what_it_omits() {
        let mut fleet = Fleet::new();
        fleet.apply(
            "e1",
            report(false, vec![record("a", &["/app"]), record("b", &["/x"])]),
            2_000,
        );
        assert_eq!(fleet.counts(), (2, 0));
        assert_eq!(fleet.get("a").map(|r| r.edge.as_str()), Some("e1"));
        fleet.apply("e1", report(true, vec![record("a", &["/app"])]), 3_000);
        assert_eq!(fleet.counts(), (1, 1));
        assert_eq!(
            fleet.get("b").and_then(|r| r.disconnected_at_ms),
            Some(3_000)
        );
    }

    #[test]
    fn a_lost_edge_disconnects_its_clients_and_retention_forgets_them() {
        let mut fleet = Fleet::new();
        fleet.apply("e1", report(false, vec![record("a", &["/app"])]), 0);
        fleet.apply("e2", report(false, vec![record("b", &["/app"])]), 0);
        fleet.edge_lost("e1", 5_000);
        assert!(!fleet.get("a").is_some_and(ClientRecord::is_connected));
        assert!(fleet.get("b").is_some_and(ClientRecord::is_connected));
        fleet.prune(5_000 + 60_000, 60_000);
        assert!(fleet.get("a").is_some(), "still inside the window");
        fleet.prune(5_000 + 60_001, 60_000);
        assert!(fleet.get("a").is_none());
        assert!(
            fleet.get("b").is_some(),
            "connected clients are never pruned"
        );
    }

    #[test]
    fn a_client_that_moved_is_not_disconnected_by_its_old_edge() {
        let mut fleet = Fleet::new();
        fleet.apply("e1", report(false, vec![record("a", &["/app"])]), 0);
        fleet.apply("e2", report(false, vec![record("a", &["/app"])]), 10);
        let mut gone = record("a", &["/app"]);
        gone.disconnected_at_ms = Some(20);
        fleet.apply("e1", report(false, vec![gone]), 20);
        let held = fleet.get("a").expect("held");
        assert_eq!(held.edge, "e2");
        assert!(held.is_connected());
    }

    #[test]
    fn progress_advances_the_edges_own_records_only() {
        let mut fleet = Fleet::new();
        fleet.apply("edge-a", report(true, vec![record("a", &["/app"])]), 0);
        fleet.apply("edge-b", report(true, vec![record("b", &["/app"])]), 0);
        let mut moved = fleet.get("a").cloned().unwrap();
        moved.applied_revision = 42;
        moved.delivered_revision = 43;
        moved.pending_since_ms = Some(7);
        moved.disconnected_at_ms = Some(9);
        let mut foreign = fleet.get("b").cloned().unwrap();
        foreign.applied_revision = 99;
        let mut unknown = record("nobody", &["/app"]);
        unknown.applied_revision = 5;
        let progress = ProgressReport {
            progress: vec![moved.progress(), foreign.progress(), unknown.progress()],
        };
        assert!(progress.check().is_ok());
        fleet.progress("edge-a", progress);
        let a = fleet.get("a").unwrap();
        assert_eq!(
            (a.applied_revision, a.delivered_revision, a.pending_since_ms),
            (42, 43, Some(7))
        );
        assert!(!a.is_connected());
        assert_eq!(a.edge, "edge-a");
        assert_eq!(a.prefixes, vec!["/app".to_owned()], "the rest is kept");
        assert_eq!(
            fleet.get("b").unwrap().applied_revision,
            10,
            "edge-b's client"
        );
        assert!(fleet.get("nobody").is_none(), "progress creates no records");

        let mut long = record("x", &[]).progress();
        long.id = "x".repeat(MAX_FIELD_BYTES + 1);
        assert!(
            ProgressReport {
                progress: vec![long]
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn filters_by_prefix_env_status_and_labels() {
        let mut fleet = Fleet::new();
        let mut other = record("b", &["/other"]);
        other.env = None;
        other.labels.clear();
        fleet.apply("e1", report(false, vec![record("a", &["/app"]), other]), 0);
        let ids = |filter: ClientFilter| -> Vec<String> {
            fleet.list(&filter).iter().map(|r| r.id.clone()).collect()
        };
        let by_prefix = |p: &str| ClientFilter {
            prefix: Some(p.into()),
            ..ClientFilter::default()
        };
        assert_eq!(
            ids(by_prefix("/app/db")),
            vec!["a"],
            "below a watched prefix"
        );
        assert_eq!(ids(by_prefix("/")), vec!["a", "b"], "above every prefix");
        assert!(ids(by_prefix("/ap")).is_empty(), "segments, not bytes");
        let env = ClientFilter {
            env: Some("prod".into()),
            ..ClientFilter::default()
        };
        assert_eq!(ids(env), vec!["a"]);
        let label = ClientFilter {
            labels: vec![("zone".into(), "eu-1".into())],
            ..ClientFilter::default()
        };
        assert_eq!(ids(label), vec!["a"]);
        let disconnected = ClientFilter {
            connected: Some(false),
            ..ClientFilter::default()
        };
        assert!(ids(disconnected).is_empty());
    }

    #[test]
    fn lag_counts_only_unacknowledged_deliveries() {
        let mut r = record("a", &["/"]);
        assert_eq!(r.lag_revisions(), 0);
        assert_eq!(r.lag_seconds(10_000), 0.0);
        r.delivered_revision = 15;
        r.pending_since_ms = Some(8_000);
        assert_eq!(r.lag_revisions(), 5);
        assert_eq!(r.lag_seconds(10_000), 2.0);
    }
}

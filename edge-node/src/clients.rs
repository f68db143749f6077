//! The edge's client registry: which application instances are connected here, what they watch,
//! what was delivered to them and what they acknowledged applying.
//!
//! Sessions ([`crate::session`]) and SSE streams that name an instance register here and tell it
//! about deliveries and receipts; the replication subscriber drains [`ClientRegistry::report`]
//! to the writer (changes since the last report; everything after a reconnect). A record whose
//! session ended is kept, marked disconnected, until it has been reported once.
//!
//! An instance id is owned by its newest session: when an app reconnects before its old
//! session noticed, the old one's late news (receipts, its end) is ignored.
//!
//! Bounded in count and in bytes: at most [`MAX_CLIENTS`] records holding at most
//! [`MAX_REGISTRY_BYTES`] (labels and prefixes make a record anywhere from a few hundred bytes to
//! about 50 KiB, so a count alone would allow gigabytes), [`MAX_PENDING`] delivery times per
//! client; `setpoint_edge_client_registry_{records,bytes}` show the use. Knows nothing of gRPC or
//! HTTP.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use setpoint_core::Revision;
use setpoint_core::clients::{
    ClientError, ClientKind, ClientRecord, ClientReport, MAX_ERROR_BYTES, MAX_FIELD_BYTES,
    MAX_LABELS, MAX_PREFIXES, MAX_REPORT_RECORDS, ProgressReport,
};

/// Most client records one edge keeps (connected plus not yet reported disconnected).
pub const MAX_CLIENTS: usize = 200_000;
/// Most bytes the records may hold together (see [`footprint`]).
pub const MAX_REGISTRY_BYTES: usize = 256 << 20;
/// Delivery times kept per client while waiting for its receipts.
const MAX_PENDING: usize = 64;

/// What a client says about itself when it connects.
#[derive(Debug, Clone, Default)]
pub struct Hello {
    pub id: String,
    pub address: String,
    pub env: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub prefixes: Vec<String>,
    pub sdk: String,
    pub sdk_version: String,
}

impl Hello {
    /// Checks what a client sent: an id, and every field within bounds.
    pub fn check(&self) -> Result<(), String> {
        let id = &self.id;
        if id.is_empty() {
            return Err("instance_id is empty: name the application instance".into());
        }
        if id.len() > MAX_FIELD_BYTES || id.chars().any(char::is_control) {
            return Err(format!(
                "instance_id must be 1-{MAX_FIELD_BYTES} bytes without control characters"
            ));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!("at most {MAX_LABELS} labels"));
        }
        let too_long = self
            .labels
            .iter()
            .flat_map(|(k, v)| [k, v])
            .chain([&self.sdk, &self.sdk_version])
            .any(|f| f.len() > MAX_FIELD_BYTES);
        if too_long || self.labels.keys().any(|k| k.is_empty()) {
            return Err(format!(
                "labels, sdk and sdk_version must be at most {MAX_FIELD_BYTES} bytes (label keys not empty)"
            ));
        }
        if self.prefixes.len() > MAX_PREFIXES {
            return Err(format!("at most {MAX_PREFIXES} prefixes"));
        }
        Ok(())
    }
}

/// A registered client's handle: its session's record, shared with the registry, so news of
/// the session locks that record alone and looks nothing up.
#[derive(Clone)]
pub struct Ticket {
    cell: Arc<Cell>,
}

impl Ticket {
    pub fn id(&self) -> &str {
        &self.cell.id
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.cell.id).finish()
    }
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Invalid(String),
    #[error("this edge already tracks {MAX_CLIENTS} clients")]
    Full,
    #[error(
        "this edge's client registry holds {MAX_REGISTRY_BYTES} bytes of records: no room for another"
    )]
    FullBytes,
}

/// The registry's metrics, registered by [`crate::metrics`].
#[derive(Clone)]
pub struct ClientCounters {
    pub connected: IntGauge,
    pub receipts: IntCounter,
    pub nacks: IntCounterVec,
    /// The `prefix` label values in use: clients name the paths of their NACKs, so the labels
    /// are capped at [`MAX_NACK_LABELS`] (then `other`) to keep the metric bounded.
    nack_labels: Arc<Mutex<HashSet<String>>>,
    /// Edge delivery → client receipt.
    pub propagation: Histogram,
    /// Commit (writer's clock) → client receipt.
    pub end_to_end: Histogram,
    /// Records held (connected, and disconnected not yet reported).
    pub records: IntGauge,
    /// Bytes those records hold (see [`footprint`]).
    pub bytes: IntGauge,
}

impl ClientCounters {
    pub fn new() -> Result<ClientCounters, prometheus::Error> {
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Ok(ClientCounters {
            connected: IntGauge::new(
                "setpoint_edge_clients_connected",
                "Client sessions (and SSE streams with an instance id) connected to this edge.",
            )?,
            receipts: IntCounter::new(
                "setpoint_edge_client_receipts_total",
                "Receipts (applied revisions) received from clients.",
            )?,
            nack_labels: Arc::default(),
            nacks: IntCounterVec::new(
                Opts::new(
                    "setpoint_edge_client_nacks_total",
                    "Callback failures clients reported, by the first segment of the path.",
                ),
                &["prefix"],
            )?,
            propagation: Histogram::with_opts(
                HistogramOpts::new(
                    "setpoint_edge_client_propagation_seconds",
                    "Edge delivery of a change → the client's receipt of having applied it.",
                )
                .buckets(buckets.clone()),
            )?,
            end_to_end: Histogram::with_opts(
                HistogramOpts::new(
                    "setpoint_edge_client_end_to_end_seconds",
                    "Commit (the writer's clock) → the client's receipt (exact when writer and \
                     edge clocks agree).",
                )
                .buckets(buckets),
            )?,
            records: IntGauge::new(
                "setpoint_edge_client_registry_records",
                "Client records this edge holds (connected, and disconnected not yet reported).",
            )?,
            bytes: IntGauge::new(
                "setpoint_edge_client_registry_bytes",
                "Bytes the client records hold (bounded: new clients are refused past the limit).",
            )?,
        })
    }
}

/// One session's registration, shared by the registry's map and the session's [`Ticket`].
struct Cell {
    id: String,
    /// What the record's fixed parts cost (see [`fixed_footprint`]).
    fixed: usize,
    slot: Mutex<Slot>,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Slot {
    record: ClientRecord,
    /// Delivered revisions not yet acknowledged: (revision, when delivered).
    pending: VecDeque<(Revision, Instant)>,
    /// A newer session of the instance took the record over, or it was forgotten: this
    /// session's late news is ignored.
    retired: bool,
    /// In the registry's dirty list: a busy client is listed once per report, not once per
    /// update and receipt.
    dirty: bool,
    /// Its whole record went out on the current report link: what changes travels as progress.
    announced: bool,
}

/// What a record's fixed parts cost the registry: its strings and fixed overhead (the map entry
/// and its key, the cell, a dirty-list entry). With [`variable_footprint`], an estimate of the
/// heap a record holds, exact enough to bound it.
fn fixed_footprint(record: &ClientRecord) -> usize {
    let strings = [
        &record.id,
        &record.edge,
        &record.address,
        &record.sdk,
        &record.sdk_version,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>();
    let env = record.env.as_ref().map_or(0, String::len);
    let labels: usize = record
        .labels
        .iter()
        .map(|(k, v)| k.len() + v.len() + 48)
        .sum();
    let prefixes: usize = record.prefixes.iter().map(|p| p.len() + 24).sum();
    let fixed = record.id.len() + std::mem::size_of::<Cell>() + 64;
    strings + env + labels + prefixes + fixed
}

/// What the parts that change after registration cost: the pending queue and the last error.
fn variable_footprint(slot: &Slot) -> usize {
    let error = slot
        .record
        .last_error
        .as_ref()
        .map_or(0, |e| e.path.len() + e.error.len());
    slot.pending.capacity() * std::mem::size_of::<(Revision, Instant)>() + error
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Arc<Cell>>,
    /// The sum of the records' footprints.
    bytes: usize,
    /// Changed since the last report.
    dirty: Vec<Arc<Cell>>,
}

/// `items` in frames of at most [`MAX_REPORT_RECORDS`].
fn in_frames<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut items = items.into_iter().peekable();
    let mut frames = Vec::new();
    while items.peek().is_some() {
        frames.push(items.by_ref().take(MAX_REPORT_RECORDS).collect());
    }
    frames
}

/// A report for the upstream: whole records (new clients, or everything after a reconnect),
/// then the progress of clients announced before.
#[derive(Debug, Default)]
pub struct Report {
    pub whole: Vec<ClientReport>,
    pub progress: Vec<ProgressReport>,
}

pub struct ClientRegistry {
    edge_id: String,
    state: Mutex<State>,
    counters: ClientCounters,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Distinct `prefix` labels of `setpoint_edge_client_nacks_total` before new ones count as
/// `other`.
const MAX_NACK_LABELS: usize = 256;

impl ClientCounters {
    /// Counts one NACK under the first segment of its path (`/myapp/db/host` → `/myapp`): `invalid`
    /// for a path that does not parse, `other` once [`MAX_NACK_LABELS`] are in use.
    fn nack(&self, path: &str) {
        let label = match setpoint_core::ConfigPath::parse(path) {
            Ok(parsed) => match parsed.segments().next() {
                Some(first) => format!("/{first}"),
                None => "/".to_owned(),
            },
            Err(_) => "invalid".to_owned(),
        };
        let label = {
            let mut labels = self.nack_labels.lock().unwrap_or_else(|e| e.into_inner());
            if labels.contains(&label) || labels.len() < MAX_NACK_LABELS {
                labels.insert(label.clone());
                label
            } else {
                "other".to_owned()
            }
        };
        self.nacks.with_label_values(&[&label]).inc();
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl std::fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistry")
            .field("edge_id", &self.edge_id)
            .finish_non_exhaustive()
    }
}

impl ClientRegistry {
    pub fn new(edge_id: impl Into<String>, counters: ClientCounters) -> ClientRegistry {
        ClientRegistry {
            edge_id: edge_id.into(),
            state: Mutex::new(State::default()),
            counters,
        }
    }

    pub fn edge_id(&self) -> &str {
        &self.edge_id
    }

    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client at `revision` (the revision it holds, or 0); a connected record of the
    /// same instance is taken over.
    pub fn register(
        &self,
        hello: Hello,
        kind: ClientKind,
        revision: Revision,
    ) -> Result<Ticket, RegisterError> {
        hello.check().map_err(RegisterError::Invalid)?;
        let now = now_ms();
        let mut record = ClientRecord {
            id: hello.id.clone(),
            edge: self.edge_id.clone(),
            address: hello.address,
            kind,
            env: hello.env,
            labels: hello.labels,
            prefixes: hello.prefixes,
            sdk: hello.sdk,
            sdk_version: hello.sdk_version,
            connected_at_ms: now,
            last_seen_ms: now,
            disconnected_at_ms: None,
            delivered_revision: revision,
            applied_revision: revision,
            pending_since_ms: None,
            propagation_ms: None,
            end_to_end_ms: None,
            nacks: 0,
            last_error: None,
        };
        let fixed = fixed_footprint(&record);
        let mut state = self.lock();
        let state = &mut *state;
        let previous = state.clients.get(&hello.id).cloned();
        if previous.is_none() && state.clients.len() >= MAX_CLIENTS {
            return Err(RegisterError::Full);
        }
        let mut previous_slot = previous.as_ref().map(|cell| cell.lock());
        let (was_connected, replaced) = match &previous_slot {
            Some(slot) => {
                // What the instance did before this session is still true of it.
                record.nacks = slot.record.nacks;
                record.last_error = slot.record.last_error.clone();
                let replaced = previous.as_ref().map_or(0, |c| c.fixed) + variable_footprint(slot);
                (slot.record.is_connected(), replaced)
            }
            None => (false, 0),
        };
        let slot = Slot {
            record,
            pending: VecDeque::new(),
            retired: false,
            dirty: true,
            announced: false,
        };
        let added = fixed + variable_footprint(&slot);
        if state.bytes - replaced + added > MAX_REGISTRY_BYTES {
            return Err(RegisterError::FullBytes);
        }
        if let Some(old) = previous_slot.as_mut() {
            old.retired = true;
        }
        drop(previous_slot);
        let cell = Arc::new(Cell {
            id: hello.id,
            fixed,
            slot: Mutex::new(slot),
        });
        state.clients.insert(cell.id.clone(), cell.clone());
        state.dirty.push(cell.clone());
        state.bytes = state.bytes - replaced + added;
        self.measured(state);
        if !was_connected {
            self.counters.connected.inc();
        }
        Ok(Ticket { cell })
    }

    /// Publishes the registry's size.
    fn measured(&self, state: &State) {
        self.counters.bytes.set(gauge(state.bytes));
        self.counters.records.set(gauge(state.clients.len()));
    }

    /// Runs `f` on the record `ticket` owns, marking it changed; nothing when another session
    /// took it over. Locks that record only, and the registry once per report interval (to list
    /// it as changed) or when the record's size changed.
    fn with<T>(&self, ticket: &Ticket, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        let (out, before, after, listed) = {
            let mut slot = ticket.cell.lock();
            if slot.retired {
                return None;
            }
            let before = variable_footprint(&slot);
            let out = f(&mut slot);
            let after = variable_footprint(&slot);
            (out, before, after, std::mem::replace(&mut slot.dirty, true))
        };
        if before != after || !listed {
            let mut state = self.lock();
            state.bytes = state.bytes + after - before;
            if !listed {
                state.dirty.push(ticket.cell.clone());
            }
            if before != after {
                self.measured(&state);
            }
        }
        Some(out)
    }

    /// The edge sent the client the update at `revision`.
    pub fn delivered(&self, ticket: &Ticket, revision: Revision) {
        let (now, at) = (Instant::now(), now_ms());
        self.with(ticket, |slot| {
            if revision <= slot.record.delivered_revision {
                return;
            }
            slot.record.delivered_revision = revision;
            if slot.pending.is_empty() {
                slot.record.pending_since_ms = Some(at);
            }
            if slot.pending.len() >= MAX_PENDING {
                slot.pending.pop_front();
            }
            slot.pending.push_back((revision, now));
        });
    }

    /// The client applied everything up to `revision`; `failures` are its NACKs (path, error).
    /// `committed_at_micros` is the commit time of `revision` when the edge still knows it.
    pub fn receipt(
        &self,
        ticket: &Ticket,
        revision: Revision,
        failures: &[(String, String)],
        committed_at_micros: Option<i64>,
    ) {
        let (now, at) = (Instant::now(), now_ms());
        let counters = &self.counters;
        self.with(ticket, |slot| {
            let record = &mut slot.record;
            record.last_seen_ms = at;
            counters.receipts.inc();
            for (path, error) in failures.iter().take(MAX_PREFIXES) {
                record.nacks += 1;
                counters.nack(path);
                record.last_error = Some(ClientError {
                    path: cut(path, MAX_FIELD_BYTES),
                    error: cut(error, MAX_ERROR_BYTES),
                    revision,
                    at_ms: at,
                });
            }
            if revision <= record.applied_revision {
                return;
            }
            record.applied_revision = revision;
            let mut delivered = None;
            while let Some(&(pending, when)) = slot.pending.front() {
                if pending > revision {
                    break;
                }
                slot.pending.pop_front();
                if pending == revision {
                    delivered = Some(when);
                }
            }
            record.pending_since_ms = (!slot.pending.is_empty()).then_some(at);
            if let Some(when) = delivered {
                let elapsed = now.saturating_duration_since(when);
                record.propagation_ms = Some(elapsed.as_secs_f64() * 1000.0);
                counters.propagation.observe(elapsed.as_secs_f64());
                if let Some(committed) = committed_at_micros {
                    let micros = (now_micros() - committed).max(0);
                    record.end_to_end_ms = Some(micros as f64 / 1000.0);
                    counters.end_to_end.observe(micros as f64 / 1e6);
                }
            }
        });
    }

    /// The client is alive (a heartbeat).
    pub fn seen(&self, ticket: &Ticket) {
        let at = now_ms();
        self.with(ticket, |slot| slot.record.last_seen_ms = at);
    }

    /// The ticket of the connected record of `id`, and the record (for HTTP receipts).
    pub fn connected_ticket(&self, id: &str) -> Option<(Ticket, ClientRecord)> {
        let cell = self.lock().clients.get(id).cloned()?;
        let record = {
            let slot = cell.lock();
            (!slot.retired && slot.record.is_connected()).then(|| slot.record.clone())?
        };
        Some((Ticket { cell }, record))
    }

    /// The session ended.
    pub fn disconnected(&self, ticket: &Ticket) {
        let at = now_ms();
        let ended = self.with(ticket, |slot| {
            let was = slot.record.is_connected();
            slot.record.disconnected_at_ms = Some(at);
            slot.pending.clear();
            was
        });
        if ended == Some(true) {
            self.counters.connected.dec();
        }
    }

    /// What to send the upstream: with `full` (a new link), every record whole (the first frame
    /// `full`, the rest not); else what changed since the last report — whole for clients not
    /// yet announced on this link, progress for the rest — in frames of at most
    /// [`MAX_REPORT_RECORDS`]. Disconnected records are forgotten once reported.
    pub fn report(&self, full: bool) -> Report {
        let mut state = self.lock();
        let cells: Vec<Arc<Cell>> = if full {
            state.dirty.clear();
            state.clients.values().cloned().collect()
        } else {
            std::mem::take(&mut state.dirty)
        };
        let mut whole = Vec::new();
        let mut progress = Vec::new();
        for cell in cells {
            let mut slot = cell.lock();
            if slot.retired {
                continue;
            }
            slot.dirty = false;
            if full || !slot.announced {
                slot.announced = true;
                whole.push(slot.record.clone());
            } else {
                progress.push(slot.record.progress());
            }
            if !slot.record.is_connected() {
                slot.retired = true;
                state.bytes -= cell.fixed + variable_footprint(&slot);
                drop(slot);
                state.clients.remove(&cell.id);
            }
        }
        self.measured(&state);
        drop(state);
        let mut whole = in_frames(whole);
        if full && whole.is_empty() {
            // A new link's first report says `full` even with nothing in it.
            whole.push(Vec::new());
        }
        let whole = whole
            .into_iter()
            .enumerate()
            .map(|(i, records)| ClientReport {
                full: full && i == 0,
                records,
            });
        let progress = in_frames(progress)
            .into_iter()
            .map(|progress| ProgressReport { progress });
        Report {
            whole: whole.collect(),
            progress: progress.collect(),
        }
    }

    /// A copy of every record (connected and not yet reported disconnected), by id.
    pub fn records(&self) -> Vec<ClientRecord> {
        let cells: Vec<Arc<Cell>> = self.lock().clients.values().cloned().collect();
        let mut records: Vec<ClientRecord> =
            cells.iter().map(|c| c.lock().record.clone()).collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
    }

    pub fn get(&self, id: &str) -> Option<ClientRecord> {
        let cell = self.lock().clients.get(id).cloned()?;
        let record = cell.lock().record.clone();
        Some(record)
    }

    /// How long sessions may stay silent before the edge closes them.
    pub fn silence_limit(heartbeat: Duration) -> Duration {
        heartbeat * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> ClientRegistry {
        ClientRegistry::new("edge-1", ClientCounters::new().unwrap())
    }

    fn hello(id: &str) -> Hello {
        Hello {
            id: id.into(),
            prefixes: vec!["/app".into()],
            ..Hello::default()
        }
    }

    /// The largest hello the checks allow: every label and prefix at its limit.
    fn heavy_hello(id: &str) -> Hello {
        let long = |i: usize| format!("{i:0>width$}", width = MAX_FIELD_BYTES);
        Hello {
            id: id.into(),
            labels: (0..MAX_LABELS).map(|i| (long(i), long(i))).collect(),
            prefixes: (0..MAX_PREFIXES)
                .map(|i| format!("/{}", "p".repeat(500 - i)))
                .collect(),
            sdk: long(0),
            sdk_version: long(1),
            ..Hello::default()
        }
    }

    #[test]
    fn the_registry_is_bounded_in_bytes_and_frees_reported_records() {
        let registry = registry();
        let mut tickets = Vec::new();
        let refused = loop {
            let id = format!("client-{}", tickets.len());
            match registry.register(heavy_hello(&id), ClientKind::Session, 1) {
                Ok(ticket) => tickets.push(ticket),
                Err(e) => break e,
            }
            assert!(tickets.len() < MAX_CLIENTS, "never refused");
        };
        assert!(matches!(refused, RegisterError::FullBytes), "{refused}");
        // Far fewer than the count limit: the bytes bound is what held.
        assert!(
            tickets.len() < MAX_CLIENTS / 10,
            "{} records",
            tickets.len()
        );
        let counters = registry.counters();
        let bytes = usize::try_from(counters.bytes.get()).unwrap();
        assert!(bytes <= MAX_REGISTRY_BYTES, "{bytes} bytes");
        assert!(
            bytes > MAX_REGISTRY_BYTES / 2,
            "{bytes} bytes: footprint undercounts"
        );
        assert_eq!(
            counters.records.get(),
            i64::try_from(tickets.len()).unwrap()
        );
        // Taking over an existing instance's record is always possible.
        let again = registry.register(heavy_hello("client-0"), ClientKind::Session, 2);
        assert!(again.is_ok(), "a reconnect was refused: {again:?}");

        // Disconnected records are forgotten once reported, and their bytes with them.
        for ticket in &tickets[1..] {
            registry.disconnected(ticket);
        }
        let _ = registry.report(false);
        assert_eq!(registry.counters().records.get(), 1);
        let left = usize::try_from(registry.counters().bytes.get()).unwrap();
        assert!(left < bytes / 100, "{left} bytes left of {bytes}");
        assert!(
            registry
                .register(heavy_hello("newcomer"), ClientKind::Session, 1)
                .is_ok(),
            "room was not given back"
        );
    }

    #[test]
    fn hostile_hellos_are_refused() {
        let registry = registry();
        for bad in [
            hello(""),
            hello(&"x".repeat(MAX_FIELD_BYTES + 1)),
            hello("a\nb"),
            Hello {
                labels: (0..=MAX_LABELS)
                    .map(|i| (i.to_string(), "v".into()))
                    .collect(),
                ..hello("a")
            },
            Hello {
                labels: BTreeMap::from([(String::new(), "v".into())]),
                ..hello("a")
            },
        ] {
            assert!(matches!(
                registry.register(bad, ClientKind::Session, 0),
                Err(RegisterError::Invalid(_))
            ));
        }
        assert!(registry.records().is_empty());
    }

    #[test]
    fn receipts_clear_lag_and_record_nacks_and_propagation() {
        let registry = registry();
        let ticket = registry
            .register(hello("a"), ClientKind::Session, 5)
            .unwrap();
        registry.delivered(&ticket, 7);
        registry.delivered(&ticket, 9);
        let record = registry.get("a").unwrap();
        assert_eq!((record.delivered_revision, record.lag_revisions()), (9, 4));
        registry.receipt(
            &ticket,
            7,
            &[("/app/bad".into(), "boom".into())],
            Some(now_micros()),
        );
        let record = registry.get("a").unwrap();
        assert_eq!(record.applied_revision, 7);
        assert_eq!(record.nacks, 1);
        assert_eq!(record.last_error.as_ref().unwrap().error, "boom");
        assert!(record.propagation_ms.is_some() && record.end_to_end_ms.is_some());
        registry.receipt(&ticket, 9, &[], None);
        let record = registry.get("a").unwrap();
        assert_eq!(record.lag_revisions(), 0);
        assert_eq!(record.pending_since_ms, None);
        assert_eq!(
            registry.counters().nacks.with_label_values(&["/app"]).get(),
            1
        );
    }

    #[test]
    fn nack_labels_stay_bounded_whatever_paths_clients_name() {
        let registry = registry();
        let ticket = registry
            .register(hello("a"), ClientKind::Session, 0)
            .unwrap();
        let failures: Vec<(String, String)> = (0..MAX_NACK_LABELS + 10)
            .map(|i| (format!("/p{i}/x"), "boom".to_owned()))
            .chain([("not a path".to_owned(), "boom".to_owned())])
            .collect();
        for chunk in failures.chunks(32) {
            registry.receipt(&ticket, 1, chunk, None);
        }
        let nacks = &registry.counters().nacks;
        assert_eq!(nacks.with_label_values(&["/p0"]).get(), 1);
        assert!(nacks.with_label_values(&["other"]).get() >= 10);
        let labels = registry.counters().nack_labels.lock().unwrap().len();
        assert!(labels <= MAX_NACK_LABELS, "{labels} labels");
    }

    #[test]
    fn the_newest_session_owns_the_instance() {
        let registry = registry();
        let old = registry
            .register(hello("a"), ClientKind::Session, 0)
            .unwrap();
        let new = registry
            .register(hello("a"), ClientKind::Session, 0)
            .unwrap();
        assert_eq!(registry.counters().connected.get(), 1);
        registry.disconnected(&old);
        assert!(
            registry.get("a").unwrap().is_connected(),
            "the old session's end is ignored"
        );
        registry.disconnected(&new);
        assert!(!registry.get("a").unwrap().is_connected());
        assert_eq!(registry.counters().connected.get(), 0);
    }

    #[test]
    fn reports_carry_changes_once_and_forget_reported_disconnects() {
        let registry = registry();
        let a = registry
            .register(hello("a"), ClientKind::Session, 0)
            .unwrap();
        let _b = registry.register(hello("b"), ClientKind::Sse, 0).unwrap();
        let first = registry.report(false);
        assert_eq!(first.whole.len(), 1);
        assert_eq!(first.whole[0].records.len(), 2);
        assert!(first.progress.is_empty());
        let nothing = registry.report(false);
        assert!(
            nothing.whole.is_empty() && nothing.progress.is_empty(),
            "nothing changed since"
        );
        // Announced clients travel as progress: the changing fields only.
        registry.delivered(&a, 3);
        let moved = registry.report(false);
        assert!(moved.whole.is_empty());
        assert_eq!(moved.progress.len(), 1);
        assert_eq!(moved.progress[0].progress[0].id, "a");
        assert_eq!(moved.progress[0].progress[0].delivered_revision, 3);
        registry.disconnected(&a);
        let gone = registry.report(false);
        assert_eq!(gone.progress[0].progress.len(), 1);
        assert!(gone.progress[0].progress[0].disconnected_at_ms.is_some());
        assert!(registry.get("a").is_none(), "forgotten once reported");
        // A new link hears everything whole, and a reconnected instance is whole again.
        let full = registry.report(true);
        assert!(full.whole[0].full);
        assert_eq!(full.whole[0].records.len(), 1);
        let again = registry
            .register(hello("a"), ClientKind::Session, 3)
            .unwrap();
        registry.delivered(&again, 4);
        let back = registry.report(false);
        assert_eq!(back.whole[0].records[0].id, "a");
        assert_eq!(back.whole[0].records[0].delivered_revision, 4);
        assert!(back.progress.is_empty());
    }

    #[test]
    fn an_old_sessions_late_news_is_not_reported() {
        let registry = registry();
        let old = registry
            .register(hello("a"), ClientKind::Session, 0)
            .unwrap();
        let _ = registry.report(false);
        let new = registry
            .register(hello("a"), ClientKind::Session, 5)
            .unwrap();
        registry.receipt(&old, 9, &[], None);
        registry.delivered(&old, 9);
        let report = registry.report(false);
        assert_eq!(report.whole.len(), 1, "the new session, whole");
        assert_eq!(report.whole[0].records.len(), 1);
        assert_eq!(report.whole[0].records[0].applied_revision, 5);
        assert!(report.progress.is_empty());
        registry.receipt(&new, 6, &[], None);
        assert_eq!(registry.get("a").unwrap().applied_revision, 6);
    }

    #[test]
    fn a_full_report_is_split_into_bounded_frames() {
        let registry = registry();
        for i in 0..(MAX_REPORT_RECORDS + 5) {
            registry
                .register(hello(&format!("c{i}")), ClientKind::Session, 0)
                .unwrap();
        }
        let frames = registry.report(true).whole;
        assert_eq!(frames.len(), 2);
        assert!(frames[0].full && !frames[1].full);
        assert_eq!(
            frames[0].records.len() + frames[1].records.len(),
            MAX_REPORT_RECORDS + 5
        );
        assert!(frames.iter().all(|f| f.check().is_ok()));
    }
}

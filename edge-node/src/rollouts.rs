//! Rollouts at the edge: what one client session sees of the paths under rollout.
//!
//! The writer keeps each rollout as a replicated record (`/_setpoint/rollouts/{id}`,
//! [`setpoint_core::rollout`]); this module turns the records into what one instance is given.
//! A session is assigned the candidate of an active rollout when its instance is a member of the
//! current stage ([`Rollout::assigns`]) and the candidate changes a value it watches as it sees
//! values (its environment's effective value, computed as if the candidate were committed);
//! otherwise the stable value. So:
//!
//! - a reset carries the candidate for the paths the session holds on candidate;
//! - a committed change of such a path is not passed on (the member keeps the candidate) until
//!   the rollout ends — unless the rollout completes in that very commit, which *is* the
//!   candidate becoming the next version;
//! - a record change (stage, pause, rollback) yields one event per path whose assignment
//!   changed, at the record's revision: the candidate for a new member, the stable value (or a
//!   delete) for one rolled back.
//!
//! Reads and watches without an instance id (plain HTTP, SSE) never see a candidate; a read that
//! names one ([`INSTANCE_HEADER`], HTTP header or gRPC metadata) answers as that instance sees it
//! ([`snapshot_for`]). The session plumbing (merging this with the watch in revision order) is in [`crate::session`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use setpoint_core::ConfigPath;
use setpoint_core::Revision;
use setpoint_core::effective_watch::{EnvView, covers};
use setpoint_core::rollout::{self, Assignment, Rollout};
use setpoint_core::snapshot::{Entry, Event, EventKind, Snapshot};

use crate::Edge;
use crate::error::ApiError;
use crate::watch::{ResetState, WatchBatch, WatchMessage};

/// The header (HTTP) or metadata key (gRPC) naming the application instance a read is for.
pub const INSTANCE_HEADER: &str = "x-setpoint-instance";

/// The snapshot a read answers from: as `instance` sees it when one is named (the candidates of
/// its rollout stages; its labels from its session on this edge, if it has one), else the
/// edge's own.
pub fn snapshot_for(edge: &Edge, instance: Option<&str>) -> Result<Seen, ApiError> {
    let Some(instance) = instance else {
        return Ok(Seen::Current(edge.holder().load()));
    };
    let snapshot = edge.holder().current();
    if instance.is_empty()
        || instance.len() > setpoint_core::clients::MAX_FIELD_BYTES
        || instance.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "{INSTANCE_HEADER} must be 1-{} bytes without control characters",
            setpoint_core::clients::MAX_FIELD_BYTES
        )));
    }
    let labels = edge
        .clients()
        .get(instance)
        .map(|record| record.labels)
        .unwrap_or_default();
    Ok(Seen::Instance(rollout::as_seen_by(
        &snapshot, instance, &labels,
    )))
}

/// The snapshot one read answers from (see [`snapshot_for`]).
pub enum Seen {
    /// The edge's own, borrowed for the request.
    Current(arc_swap::Guard<Arc<Snapshot>>),
    /// As one instance sees it through the rollouts it is in.
    Instance(Snapshot),
}

impl std::ops::Deref for Seen {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        match self {
            Seen::Current(guard) => guard,
            Seen::Instance(snapshot) => snapshot,
        }
    }
}

/// One session's view of the rollouts.
#[derive(Debug)]
pub struct SessionRollouts {
    instance: String,
    labels: BTreeMap<String, String>,
    prefixes: Vec<ConfigPath>,
    view: Option<EnvView>,
    /// Every rollout record this edge holds, by id.
    records: HashMap<String, Rollout>,
    /// The paths (as the session sees them) it holds on candidate: the candidate entry given.
    held: BTreeMap<ConfigPath, Arc<Entry>>,
}

impl SessionRollouts {
    pub fn new(
        instance: String,
        labels: BTreeMap<String, String>,
        prefixes: Vec<ConfigPath>,
        view: Option<EnvView>,
    ) -> SessionRollouts {
        SessionRollouts {
            instance,
            labels,
            prefixes,
            view,
            records: HashMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// The prefix a session watches the records under.
    pub fn records_prefix() -> ConfigPath {
        rollout::records_root()
    }

    /// Whether the session holds any path on candidate.
    pub fn holds_candidates(&self) -> bool {
        !self.held.is_empty()
    }

    /// The value this session sees at `path` in `snapshot`, as its watch shows values.
    fn stable(&self, snapshot: &Snapshot, path: &ConfigPath) -> Option<Arc<Entry>> {
        match &self.view {
            None => snapshot.get(path).cloned(),
            Some(view) => view.entry(snapshot, &view.chain(snapshot), path),
        }
    }

    /// The entry `rollout`'s candidate gives this session at the base path it touches, when the
    /// instance is a member and it changes what the session sees there.
    fn candidate(
        &self,
        snapshot: &Snapshot,
        rollout: &Rollout,
        revision: Revision,
    ) -> Option<(ConfigPath, Arc<Entry>)> {
        if rollout.assigns(&self.instance, &self.labels) != Assignment::Candidate {
            return None;
        }
        let target = ConfigPath::parse(&rollout.path).ok()?;
        let (env, base) = match setpoint_core::env::split_override(&target) {
            Some((env, base)) => (Some(env.to_owned()), base),
            None => (None, target.clone()),
        };
        if !self.prefixes.iter().any(|p| covers(p, &base)) {
            return None;
        }
        // A plain session sees base values only: an override's candidate is not for it.
        if env.is_some() && self.view.as_ref().is_none_or(|v| v.env.is_none()) {
            return None;
        }
        let value = rollout.candidate().ok()?;
        let entry = Arc::new(Entry {
            path: target,
            value,
            version: rollout.stable_version + 1,
            revision,
            updated_at: String::new(),
        });
        let given = match &self.view {
            None => entry,
            Some(view) => {
                let with = snapshot.with_entry(entry);
                view.entry(&with, &view.chain(&with), &base)?
            }
        };
        let stable = self.stable(snapshot, &base);
        if stable
            .as_ref()
            .is_some_and(|s| s.value.structured() == given.value.structured())
        {
            return None;
        }
        Some((base, given))
    }

    /// What the session should hold on candidate now: path → entry.
    fn assigned(&self, snapshot: &Snapshot) -> BTreeMap<ConfigPath, Arc<Entry>> {
        let mut out = BTreeMap::new();
        let mut records: Vec<&Rollout> = self.records.values().collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        for record in records {
            let revision = snapshot
                .get(&rollout::record_path(&record.id).unwrap_or_else(ConfigPath::root))
                .map_or(snapshot.revision(), |e| e.revision);
            if let Some((path, entry)) = self.candidate(snapshot, record, revision) {
                out.insert(path, entry);
            }
        }
        out
    }

    /// Takes in the records of a rollouts-prefix message (a reset replaces them all).
    fn take_records(&mut self, message: &WatchMessage) -> Vec<String> {
        let mut completed = Vec::new();
        match message {
            WatchMessage::Reset(reset) => {
                self.records = reset
                    .entries
                    .iter()
                    .filter(|e| rollout::is_record(&e.path))
                    .filter_map(|e| Rollout::from_value(e.value.structured()))
                    .map(|r| (r.id.clone(), r))
                    .collect();
            }
            WatchMessage::Batch(batch) => {
                for event in batch.events.iter().filter(|e| rollout::is_record(&e.path)) {
                    let Some(id) = event.path.segments().last().map(str::to_owned) else {
                        continue;
                    };
                    match event
                        .new
                        .as_ref()
                        .and_then(|e| Rollout::from_value(e.value.structured()))
                    {
                        Some(record) => {
                            if record.status == rollout::Status::Completed {
                                completed.push(record.path.clone());
                            }
                            self.records.insert(id, record);
                        }
                        None => {
                            self.records.remove(&id);
                        }
                    }
                }
            }
        }
        completed
    }

    /// A message of the session's rollouts watcher: the records changed. Returns the events for
    /// the paths whose assignment changed (at the message's revision), if any. A path whose
    /// rollout completed is left to the commit that completed it (same revision, same value).
    pub fn on_records(
        &mut self,
        message: &WatchMessage,
        snapshot: &Snapshot,
    ) -> Option<WatchMessage> {
        let completed = self.take_records(message);
        let revision = message.revision();
        let now = self.assigned(snapshot);
        let mut events = Vec::new();
        for (path, entry) in &now {
            let same = self
                .held
                .get(path)
                .is_some_and(|held| held.value.structured() == entry.value.structured());
            if !same {
                events.push(Event {
                    kind: EventKind::Put,
                    path: path.clone(),
                    old: self
                        .held
                        .get(path)
                        .cloned()
                        .or_else(|| self.stable(snapshot, path)),
                    new: Some(entry.clone()),
                    version: entry.version,
                    revision,
                });
            }
        }
        for (path, given) in &self.held {
            if now.contains_key(path) {
                continue;
            }
            let completing = completed.iter().any(|p| {
                ConfigPath::parse(p).is_ok_and(|p| {
                    setpoint_core::env::split_override(&p).map_or(p.clone(), |(_, b)| b) == *path
                })
            });
            if completing {
                continue;
            }
            let stable = self.stable(snapshot, path);
            events.push(Event {
                kind: if stable.is_some() {
                    EventKind::Put
                } else {
                    EventKind::Delete
                },
                path: path.clone(),
                old: Some(given.clone()),
                version: stable.as_ref().map_or(given.version, |s| s.version),
                new: stable,
                revision,
            });
        }
        self.held = now;
        if events.is_empty() {
            return None;
        }
        events.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        Some(WatchMessage::Batch(Arc::new(WatchBatch::new(
            revision, events,
        ))))
    }

    /// The events a resumed session needs at once: the candidate for every path it holds on
    /// candidate (it may have left before it got them; giving the same value again is harmless).
    pub fn on_resume(&self, revision: Revision) -> Option<WatchMessage> {
        if self.held.is_empty() {
            return None;
        }
        let events = self
            .held
            .iter()
            .map(|(path, entry)| Event {
                kind: EventKind::Put,
                path: path.clone(),
                old: None,
                new: Some(entry.clone()),
                version: entry.version,
                revision,
            })
            .collect();
        Some(WatchMessage::Batch(Arc::new(WatchBatch::new(
            revision, events,
        ))))
    }

    /// A message of the session's own watch, as this instance should see it: a reset carries the
    /// candidates it holds; a batch drops the changes of paths it holds on candidate. `None` when
    /// nothing is left to send.
    pub fn on_watch(&self, message: WatchMessage) -> Option<WatchMessage> {
        if self.held.is_empty() {
            return Some(message);
        }
        match &message {
            WatchMessage::Reset(reset) => {
                let mut entries: BTreeMap<&str, Arc<Entry>> = reset
                    .entries
                    .iter()
                    .map(|e| (e.path.as_str(), e.clone()))
                    .collect();
                for (path, entry) in &self.held {
                    let mut entry = (**entry).clone();
                    entry.path = path.clone();
                    entries.insert(path.as_str(), Arc::new(entry));
                }
                Some(WatchMessage::Reset(Arc::new(ResetState {
                    revision: reset.revision,
                    entries: entries.into_values().collect(),
                })))
            }
            WatchMessage::Batch(batch) => {
                if !batch.events.iter().any(|e| self.held.contains_key(&e.path)) {
                    return Some(message);
                }
                let events: Vec<Event> = batch
                    .events
                    .iter()
                    .filter(|e| !self.held.contains_key(&e.path))
                    .cloned()
                    .collect();
                (!events.is_empty())
                    .then(|| WatchMessage::Batch(Arc::new(WatchBatch::new(batch.revision, events))))
            }
        }
    }
}

//! The in-memory config set an edge serves from, and how a commit batch changes it.
//!
//! A [`Snapshot`] is a persistent ordered map (imbl) of every live path's current [`Entry`] plus
//! the revision it reflects. Cloning is O(1) and [`Snapshot::apply`] shares everything it does
//! not change, so a holder can build the next snapshot beside the current one and swap a pointer.
//! Applying a [`Batch`] yields the [`Event`]s watchers see — with old and new values — so the
//! event stream and the snapshot can never disagree.
//!
//! The events carry old entries, so [`Snapshot::undo`] rebuilds the snapshot before a batch
//! from the one after it (and [`Snapshot::redo`] goes forward again): environment-aware watches
//! compare the two without the holder keeping old snapshots.
//!
//! Pure: no I/O, no clock. Property-tested: applying batches one by one equals rebuilding from
//! the final state; undo and redo invert apply.

use std::sync::Arc;

use imbl::OrdMap;

use crate::{ConfigPath, ParsedValue, Revision, Version};

/// One live config as an edge holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub path: ConfigPath,
    pub value: ParsedValue,
    pub version: Version,
    /// Revision of the commit that wrote this version.
    pub revision: Revision,
    /// RFC 3339.
    pub updated_at: String,
}

impl Entry {
    /// About how much memory the entry holds: its stored text, the parsed value (counted as
    /// much again), the path and the fixed parts. For byte budgets, not accounting.
    pub fn approx_bytes(&self) -> usize {
        2 * self.value.stored().len() + self.path.as_str().len() + self.updated_at.len() + 96
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Put { value: ParsedValue },
    Delete,
}

/// One path's change within a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: ConfigPath,
    pub version: Version,
    pub updated_at: String,
    pub kind: ChangeKind,
}

/// Every change of one committed store transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub revision: Revision,
    /// When the writer saw the commit, unix microseconds (informational; propagation is measured
    /// by the writer from its own clock, so it is skew-free).
    pub committed_at_micros: i64,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// What a watcher sees of one change.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub path: ConfigPath,
    pub old: Option<Arc<Entry>>,
    /// `None` for a delete.
    pub new: Option<Arc<Entry>>,
    pub version: Version,
    pub revision: Revision,
}

/// A batch as applied: its events in the batch's order.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedBatch {
    pub revision: Revision,
    pub committed_at_micros: i64,
    pub events: Vec<Event>,
}

impl AppliedBatch {
    /// About how much memory keeping this batch holds (old and new values of every event).
    pub fn approx_bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| {
                e.old.as_ref().map_or(0, |x| x.approx_bytes())
                    + e.new.as_ref().map_or(0, |x| x.approx_bytes())
                    + 64
            })
            .sum::<usize>()
            + 64
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("batch revision {batch} is not after the snapshot's revision {snapshot}")]
    OutOfOrder { batch: Revision, snapshot: Revision },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    revision: Revision,
    entries: OrdMap<String, Arc<Entry>>,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot::default()
    }

    pub fn from_entries(revision: Revision, entries: impl IntoIterator<Item = Entry>) -> Snapshot {
        let entries = entries
            .into_iter()
            .map(|e| (e.path.as_str().to_owned(), Arc::new(e)))
            .collect();
        Snapshot { revision, entries }
    }

    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &ConfigPath) -> Option<&Arc<Entry>> {
        self.entries.get(path.as_str())
    }

    /// Every entry in path order.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.values()
    }

    /// The entry at `prefix` (if any) and every entry below it, in path order.
    pub fn below<'a>(
        &'a self,
        prefix: &'a ConfigPath,
    ) -> Box<dyn Iterator<Item = &'a Arc<Entry>> + 'a> {
        if prefix.is_root() {
            return Box::new(self.entries.values());
        }
        // `/a` itself, then exactly the keys starting with `/a/` (a contiguous range).
        let below = format!("{}/", prefix.as_str());
        let exact = self.entries.get(prefix.as_str()).into_iter();
        let rest = self
            .entries
            .range(below.clone()..)
            .take_while(move |(key, _)| key.starts_with(&below))
            .map(|(_, entry)| entry);
        Box::new(exact.chain(rest))
    }

    /// Names of the immediate children of `prefix` that hold a value or have descendants that do.
    pub fn children(&self, prefix: &ConfigPath) -> Vec<String> {
        let depth = prefix.segments().count();
        let names: std::collections::BTreeSet<&str> = self
            .below(prefix)
            .filter_map(|entry| entry.path.segments().nth(depth))
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// The snapshot after `batch`, and the events it produced.
    pub fn apply(&self, batch: &Batch) -> Result<(Snapshot, AppliedBatch), ApplyError> {
        if batch.revision <= self.revision {
            return Err(ApplyError::OutOfOrder {
                batch: batch.revision,
                snapshot: self.revision,
            });
        }
        let mut entries = self.entries.clone();
        let mut events = Vec::with_capacity(batch.changes.len());
        for change in &batch.changes {
            let key = change.path.as_str().to_owned();
            let (kind, old, new) = match &change.kind {
                ChangeKind::Put { value } => {
                    let entry = Arc::new(Entry {
                        path: change.path.clone(),
                        value: value.clone(),
                        version: change.version,
                        revision: batch.revision,
                        updated_at: change.updated_at.clone(),
                    });
                    let old = entries.insert(key, entry.clone());
                    (EventKind::Put, old, Some(entry))
                }
                ChangeKind::Delete => (EventKind::Delete, entries.remove(&key), None),
            };
            events.push(Event {
                kind,
                path: change.path.clone(),
                old,
                new,
                version: change.version,
                revision: batch.revision,
            });
        }
        let next = Snapshot {
            revision: batch.revision,
            entries,
        };
        let applied = AppliedBatch {
            revision: batch.revision,
            committed_at_micros: batch.committed_at_micros,
            events,
        };
        Ok((next, applied))
    }

    /// The snapshot before `applied`, rebuilt from this one (the snapshot `applied` led to) by
    /// putting back every event's old entry, last event first. `revision` is the earlier
    /// snapshot's revision, which an [`AppliedBatch`] does not carry. Lets a watch compare the
    /// state before and after a batch it got from a ring without keeping old snapshots.
    pub fn undo(&self, applied: &AppliedBatch, revision: Revision) -> Snapshot {
        let mut entries = self.entries.clone();
        for event in applied.events.iter().rev() {
            set(&mut entries, &event.path, event.old.as_ref());
        }
        Snapshot { revision, entries }
    }

    /// This snapshot with `entry` put at its path (same revision): what a read would see if that
    /// entry were committed — e.g. a rollout's candidate, to compute an effective value with it.
    pub fn with_entry(&self, entry: Arc<Entry>) -> Snapshot {
        let mut entries = self.entries.clone();
        let path = entry.path.clone();
        set(&mut entries, &path, Some(&entry));
        Snapshot {
            revision: self.revision,
            entries,
        }
    }

    /// This snapshot without the entry at `path` (same revision).
    pub fn without(&self, path: &ConfigPath) -> Snapshot {
        let mut entries = self.entries.clone();
        set(&mut entries, path, None);
        Snapshot {
            revision: self.revision,
            entries,
        }
    }

    /// The snapshot after `applied`, rebuilt from this one (the snapshot before it) with the
    /// events' new entries: what [`Snapshot::apply`] gave, without the batch.
    pub fn redo(&self, applied: &AppliedBatch) -> Snapshot {
        let mut entries = self.entries.clone();
        for event in &applied.events {
            set(&mut entries, &event.path, event.new.as_ref());
        }
        Snapshot {
            revision: applied.revision,
            entries,
        }
    }
}

/// Puts `entry` at `path`, or removes the path when there is none.
fn set(entries: &mut OrdMap<String, Arc<Entry>>, path: &ConfigPath, entry: Option<&Arc<Entry>>) {
    match entry {
        Some(entry) => {
            entries.insert(path.as_str().to_owned(), entry.clone());
        }
        None => {
            entries.remove(path.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;
    use proptest::prelude::*;

    fn path(p: &str) -> ConfigPath {
        ConfigPath::parse(p).unwrap()
    }

    fn put(p: &str, version: Version, value: &str) -> Change {
        Change {
            path: path(p),
            version,
            updated_at: "2026-01-01T00:00:00Z".into(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_stored(Format::Text, value).unwrap(),
            },
        }
    }

    fn delete(p: &str, version: Version) -> Change {
        Change {
            path: path(p),
            version,
            updated_at: "2026-01-01T00:00:00Z".into(),
            kind: ChangeKind::Delete,
        }
    }

    #[test]
    fn apply_reports_old_and_new_values_and_keeps_the_original() {
        let base = Snapshot::empty();
        let (one, applied) = base
            .apply(&Batch {
                revision: 2,
                committed_at_micros: 0,
                changes: vec![put("/a/b", 1, "x")],
            })
            .unwrap();
        assert!(applied.events[0].old.is_none());
        let (two, applied) = one
            .apply(&Batch {
                revision: 3,
                committed_at_micros: 0,
                changes: vec![put("/a/b", 2, "y"), delete("/a/c", 1)],
            })
            .unwrap();
        assert_eq!(applied.events[0].old.as_ref().unwrap().value.stored(), "x");
        assert_eq!(applied.events[0].new.as_ref().unwrap().value.stored(), "y");
        assert_eq!(applied.events[1].kind, EventKind::Delete);
        assert_eq!(
            one.get(&path("/a/b")).unwrap().version,
            1,
            "the old snapshot is untouched"
        );
        assert_eq!(two.revision(), 3);
        assert!(matches!(
            two.apply(&Batch {
                revision: 3,
                committed_at_micros: 0,
                changes: vec![]
            }),
            Err(ApplyError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn below_and_children_respect_segments() {
        let snap = Snapshot::from_entries(
            5,
            ["/a", "/a/b", "/a/b/c", "/a-b", "/a.b/x", "/ab", "/b"]
                .iter()
                .map(|p| Entry {
                    path: path(p),
                    value: ParsedValue::from_stored(Format::Text, "v").unwrap(),
                    version: 1,
                    revision: 5,
                    updated_at: String::new(),
                }),
        );
        let a = path("/a");
        let below: Vec<&str> = snap.below(&a).map(|e| e.path.as_str()).collect();
        assert_eq!(below, vec!["/a", "/a/b", "/a/b/c"]);
        assert_eq!(snap.children(&path("/a")), vec!["b"]);
        assert_eq!(
            snap.children(&ConfigPath::root()),
            vec!["a", "a-b", "a.b", "ab", "b"]
        );
        assert_eq!(snap.below(&ConfigPath::root()).count(), 7);
    }

    proptest! {
        #[test]
        fn applying_batches_equals_rebuilding(ops in proptest::collection::vec((0usize..6, any::<bool>(), "[a-z]{0,3}"), 1..60)) {
            let names = ["/a", "/a/b", "/a/c", "/b", "/b/x/y", "/c"];
            let mut snap = Snapshot::empty();
            let mut model: std::collections::BTreeMap<String, (Version, String, Revision)> = Default::default();
            let mut versions = [0u64; 6];
            for (i, (which, is_put, value)) in ops.into_iter().enumerate() {
                let revision = i as Revision + 2;
                versions[which] += 1;
                let p = names[which];
                let change = if is_put { put(p, versions[which], &value) } else { delete(p, versions[which]) };
                let (next, _) = snap.apply(&Batch { revision, committed_at_micros: 0, changes: vec![change] }).unwrap();
                snap = next;
                if is_put { model.insert(p.to_owned(), (versions[which], value, revision)); } else { model.remove(p); }
            }
            let got: Vec<(String, Version, String, Revision)> = snap.entries().map(|e| (e.path.to_string(), e.version, e.value.stored().to_owned(), e.revision)).collect();
            let want: Vec<(String, Version, String, Revision)> = model.into_iter().map(|(p, (v, s, r))| (p, v, s, r)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn undo_and_redo_invert_apply(
            start in proptest::collection::vec((0usize..6, "[a-z]{0,2}"), 0..6),
            batch in proptest::collection::vec((0usize..6, any::<bool>(), "[a-z]{0,2}"), 0..8),
        ) {
            let names = ["/a", "/a/b", "/a/c", "/b", "/b/x/y", "/c"];
            let mut versions = [0u64; 6];
            let mut changes = Vec::new();
            for (which, value) in start {
                versions[which] += 1;
                changes.push(put(names[which], versions[which], &value));
            }
            let (before, _) = Snapshot::empty().apply(&Batch { revision: 3, committed_at_micros: 0, changes }).unwrap();
            // A batch may change one path several times; undo must still restore the first old.
            let changes = batch.into_iter().map(|(which, is_put, value)| {
                versions[which] += 1;
                if is_put { put(names[which], versions[which], &value) } else { delete(names[which], versions[which]) }
            }).collect();
            let (after, applied) = before.apply(&Batch { revision: 7, committed_at_micros: 0, changes }).unwrap();
            prop_assert_eq!(&after.undo(&applied, before.revision()), &before);
            prop_assert_eq!(&before.redo(&applied), &after);
        }
    }
}

//! The client's view of the configuration: entries by path and the revision they are at, and
//! how an update from the edge changes them. Pure (no I/O, no clock): it turns a batch or a
//! reset into the list of [`Event`]s the watches must see, diffing a reset against what the
//! client held so a change revealed by a reset is still reported.

use std::collections::BTreeMap;

use setpoint_proto::edge::v1 as pb;

use crate::value::{Event, Value, decode};

#[derive(Debug, Default)]
pub(crate) struct Store {
    entries: BTreeMap<String, Value>,
    /// The revision of the last applied update (or of the loaded cache file).
    revision: Option<i64>,
    /// Whether `entries` is a state the application has already seen (a sync happened, or a
    /// cache file was loaded). Until then the first reset is the initial state and fires no
    /// callbacks; afterwards a reset is diffed and every difference is an event.
    seen: bool,
}

impl Store {
    /// A store holding what a cache file held.
    pub fn from_cache(revision: i64, entries: BTreeMap<String, Value>) -> Store {
        Store {
            entries,
            revision: Some(revision),
            seen: true,
        }
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        self.entries.get(path)
    }

    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// True once there is a state to answer `get` from (a sync or a cache file).
    pub fn holds_state(&self) -> bool {
        self.seen
    }

    pub fn entries(&self) -> &BTreeMap<String, Value> {
        &self.entries
    }

    /// Applies one update and returns the changes it made, in order.
    pub fn apply(&mut self, update: &pb::WatchResponse) -> Vec<Event> {
        let events = if update.reset {
            self.reset(update)
        } else {
            update
                .events
                .iter()
                .map(|event| self.apply_event(event, update.revision))
                .collect()
        };
        self.revision = Some(update.revision);
        self.seen = true;
        events
    }

    fn apply_event(&mut self, event: &pb::Event, batch_revision: i64) -> Event {
        let revision = if event.revision > 0 {
            event.revision
        } else {
            batch_revision
        };
        let deleted = event.r#type == pb::event::Type::Delete as i32;
        let previous = if deleted {
            self.entries.remove(&event.path)
        } else {
            let value = Value {
                value: event.new_value.as_deref().map(decode).unwrap_or_default(),
                format: event.format.clone(),
                version: event.version,
                revision,
            };
            self.entries.insert(event.path.clone(), value)
        };
        // The edge's old value is authoritative; what the client held is the fallback for an
        // edge that leaves it out.
        let old_value = match &event.old_value {
            Some(text) => Some(decode(text)),
            None => previous.map(|v| v.value),
        };
        Event {
            path: event.path.clone(),
            value: if deleted {
                None
            } else {
                Some(event.new_value.as_deref().map(decode).unwrap_or_default())
            },
            old_value,
            version: event.version,
            revision,
            deleted,
            format: event.format.clone(),
        }
    }

    /// Replaces everything with the reset's state; when the previous state was already seen,
    /// every path whose value, version or format differs (or that appeared or vanished) is an
    /// event, in path order.
    fn reset(&mut self, update: &pb::WatchResponse) -> Vec<Event> {
        let fresh: BTreeMap<String, Value> = update
            .state
            .iter()
            .map(|entry| {
                let value = Value {
                    value: decode(&entry.value),
                    format: entry.format.clone(),
                    version: entry.version,
                    revision: if entry.revision > 0 {
                        entry.revision
                    } else {
                        update.revision
                    },
                };
                (entry.path.clone(), value)
            })
            .collect();
        let old = std::mem::replace(&mut self.entries, fresh);
        if !self.seen {
            return Vec::new();
        }
        let mut events = diff(&old, &self.entries, update.revision);
        events.sort_by(|a, b| a.path.cmp(&b.path));
        events
    }
}

/// The events that turn `old` into `new`: puts for new or changed paths, deletes for vanished
/// ones (those carry the reset's revision, as nothing else dates them).
fn diff(
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
    reset_revision: i64,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (path, value) in new {
        let before = old.get(path);
        // The revision alone may differ (a cache file dates entries as the edge did): no change.
        if before.is_some_and(|b| {
            b.value == value.value && b.version == value.version && b.format == value.format
        }) {
            continue;
        }
        events.push(Event {
            path: path.clone(),
            value: Some(value.value.clone()),
            old_value: before.map(|b| b.value.clone()),
            version: value.version,
            revision: value.revision,
            deleted: false,
            format: value.format.clone(),
        });
    }
    for (path, value) in old {
        if !new.contains_key(path) {
            events.push(Event {
                path: path.clone(),
                value: None,
                old_value: Some(value.value.clone()),
                version: value.version,
                revision: reset_revision,
                deleted: true,
                format: value.format.clone(),
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(path: &str, value: &str, version: u64, revision: i64) -> pb::Entry {
        pb::Entry {
            path: path.into(),
            value: value.into(),
            format: "json".into(),
            version,
            revision,
            updated_at: String::new(),
        }
    }

    fn reset(revision: i64, state: Vec<pb::Entry>) -> pb::WatchResponse {
        pb::WatchResponse {
            revision,
            events: Vec::new(),
            reset: true,
            state,
        }
    }

    fn put(path: &str, old: Option<&str>, new: &str, version: u64, revision: i64) -> pb::Event {
        pb::Event {
            r#type: pb::event::Type::Put as i32,
            path: path.into(),
            old_value: old.map(Into::into),
            new_value: Some(new.into()),
            version,
            revision,
            format: "json".into(),
        }
    }

    /// (path, value, old value, deleted) of each event: what a test compares.
    fn summary(
        events: &[Event],
    ) -> Vec<(
        String,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
        bool,
    )> {
        events
            .iter()
            .map(|e| {
                (
                    e.path.clone(),
                    e.value.clone(),
                    e.old_value.clone(),
                    e.deleted,
                )
            })
            .collect()
    }

    #[test]
    fn first_reset_is_the_initial_state_and_fires_nothing() {
        let mut store = Store::default();
        assert!(!store.holds_state());
        let events = store.apply(&reset(5, vec![entry("/a/b", "1", 1, 4)]));
        assert!(events.is_empty());
        assert!(store.holds_state());
        assert_eq!(store.revision(), Some(5));
        assert_eq!(store.get("/a/b").map(|v| v.value.clone()), Some(json!(1)));
        assert_eq!(store.get("/a/b").map(|v| v.revision), Some(4));
    }

    #[test]
    fn batch_applies_in_order_with_old_values() {
        let mut store = Store::default();
        store.apply(&reset(5, vec![entry("/a", "1", 1, 4)]));
        let batch = pb::WatchResponse {
            revision: 6,
            events: vec![
                put("/a", Some("1"), "2", 2, 6),
                put("/b", None, r#""x""#, 1, 6),
                pb::Event {
                    r#type: pb::event::Type::Delete as i32,
                    path: "/a".into(),
                    old_value: None,
                    new_value: None,
                    version: 2,
                    revision: 6,
                    format: String::new(),
                },
            ],
            reset: false,
            state: Vec::new(),
        };
        let events = store.apply(&batch);
        assert_eq!(
            summary(&events),
            vec![
                ("/a".into(), Some(json!(2)), Some(json!(1)), false),
                ("/b".into(), Some(json!("x")), None, false),
                // The edge left the delete's old value out: the held value fills it in.
                ("/a".into(), None, Some(json!(2)), true),
            ]
        );
        assert_eq!(store.get("/a"), None);
        assert_eq!(store.get("/b").map(|v| v.version), Some(1));
        assert_eq!(store.revision(), Some(6));
    }

    #[test]
    fn reset_after_a_seen_state_reports_the_differences() {
        let cached = BTreeMap::from([
            (
                "/same".to_owned(),
                Value {
                    value: json!(1),
                    format: "json".into(),
                    version: 1,
                    revision: 2,
                },
            ),
            (
                "/changed".to_owned(),
                Value {
                    value: json!("old"),
                    format: "json".into(),
                    version: 1,
                    revision: 2,
                },
            ),
            (
                "/gone".to_owned(),
                Value {
                    value: json!(true),
                    format: "json".into(),
                    version: 3,
                    revision: 3,
                },
            ),
        ]);
        let mut store = Store::from_cache(3, cached);
        let events = store.apply(&reset(
            9,
            vec![
                entry("/changed", r#""new""#, 2, 8),
                entry("/new", "[1]", 1, 7),
                entry("/same", "1", 1, 2),
            ],
        ));
        assert_eq!(
            summary(&events),
            vec![
                (
                    "/changed".into(),
                    Some(json!("new")),
                    Some(json!("old")),
                    false
                ),
                ("/gone".into(), None, Some(json!(true)), true),
                ("/new".into(), Some(json!([1])), None, false),
            ]
        );
        assert_eq!(events[0].revision, 8);
        assert_eq!(
            events[1].revision, 9,
            "a vanished path is dated by the reset"
        );
        assert_eq!(store.entries().len(), 3);
    }
}

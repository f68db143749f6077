//! A history checker for fault tests, in the spirit of etcd's robustness tests: every write the
//! writer acknowledged, and every watcher's stream (SSE or gRPC, as received, across reconnects),
//! are checked against the rules the README promises:
//!
//! - a stream never moves backwards: revisions never decrease, a reset included;
//! - per path, versions strictly increase with no gap, except across a reset (which replaces
//!   what the watcher holds with the edge's state);
//! - no acknowledged write is lost: each appears in the stream as its own update, or is covered
//!   by a reset at a revision at or after it that came when the stream had not yet seen it;
//! - the stream converges: what it holds at the end is the writer's final state.
//!
//! Writes that failed (503, a connection lost) may or may not have committed; they are not
//! acknowledged, so only their effects' shape (no gap, no reorder) is checked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use setpoint_proto::edge::v1::{WatchRequest, edge_client::EdgeClient};
use tokio::task::JoinHandle;

use crate::sse::SseEvent;

/// One thing a watcher received, transport aside.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The watcher's state replaced by `state` (path → version) at `revision`.
    Reset {
        revision: i64,
        state: BTreeMap<String, u64>,
    },
    /// A change of `path` to `version` (`deleted` for a delete) committed at `revision`.
    Change {
        revision: i64,
        path: String,
        version: u64,
        deleted: bool,
    },
}

/// An acknowledged write: the writer answered success with this version and revision.
#[derive(Debug, Clone)]
pub struct Ack {
    pub path: String,
    pub version: u64,
    pub revision: i64,
}

/// The SSE events of a [`crate::sse::SseWatcher`] as items (errors and heartbeats dropped).
pub fn from_sse(events: &[SseEvent]) -> Vec<Item> {
    events
        .iter()
        .filter_map(|e| {
            let revision = e.data["revision"].as_i64()?;
            match e.data["type"].as_str()? {
                "reset" => Some(Item::Reset {
                    revision,
                    state: e.data["state"]
                        .as_array()?
                        .iter()
                        .filter_map(|entry| {
                            Some((
                                entry["path"].as_str()?.to_owned(),
                                entry["version"].as_u64()?,
                            ))
                        })
                        .collect(),
                }),
                kind @ ("update" | "delete") => Some(Item::Change {
                    revision,
                    path: e.data["path"].as_str()?.to_owned(),
                    version: e.data["version"].as_u64().unwrap_or(0),
                    deleted: kind == "delete",
                }),
                _ => None,
            }
        })
        .collect()
}

/// What a stream came to: how many items and resets, and the state it holds at the end.
#[derive(Debug)]
pub struct Summary {
    pub items: usize,
    pub resets: usize,
    pub acks_seen_as_updates: usize,
    pub acks_covered_by_resets: usize,
    pub state: BTreeMap<String, u64>,
}

/// Checks one stream against the acknowledged writes and the writer's final state
/// (path → version; a path absent there must be absent from the stream's end state).
pub fn check(
    items: &[Item],
    acks: &[Ack],
    final_state: &BTreeMap<String, u64>,
) -> Result<Summary, String> {
    let mut state: BTreeMap<String, u64> = BTreeMap::new();
    let mut high = i64::MIN;
    let mut resets = 0;
    // For each path, the versions delivered as updates; and each reset's (revision, high before).
    let mut updates: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut reset_windows: Vec<(i64, i64)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            Item::Reset {
                revision,
                state: new,
            } => {
                if *revision < high {
                    return Err(format!(
                        "item {index}: reset at revision {revision} after revision {high}: moved backwards"
                    ));
                }
                reset_windows.push((*revision, high));
                resets += 1;
                high = *revision;
                state = new.clone();
            }
            Item::Change {
                revision,
                path,
                version,
                deleted,
            } => {
                if *revision < high {
                    return Err(format!(
                        "item {index}: {path} v{version} at revision {revision} after revision {high}: reordered or repeated"
                    ));
                }
                high = *revision;
                if *deleted {
                    state.remove(path);
                    continue;
                }
                if let Some(&held) = state.get(path) {
                    if *version <= held {
                        return Err(format!(
                            "item {index}: {path} v{version} after v{held}: duplicate or reorder"
                        ));
                    }
                    if *version != held + 1 {
                        return Err(format!(
                            "item {index}: {path} v{version} after v{held}: a gap with no reset"
                        ));
                    }
                }
                state.insert(path.clone(), *version);
                updates.entry(path.as_str()).or_default().push(*version);
            }
        }
    }
    let (mut seen, mut covered) = (0, 0);
    for ack in acks {
        if updates
            .get(ack.path.as_str())
            .is_some_and(|versions| versions.contains(&ack.version))
        {
            seen += 1;
        } else if reset_windows
            .iter()
            .any(|&(at, before)| before < ack.revision && ack.revision <= at)
        {
            covered += 1;
        } else {
            return Err(format!(
                "acknowledged write lost: {} v{} at revision {} is neither in the stream nor covered by a reset",
                ack.path, ack.version, ack.revision
            ));
        }
    }
    if &state != final_state {
        return Err(format!(
            "did not converge: the stream holds {state:?}, the writer {final_state:?}"
        ));
    }
    Ok(Summary {
        items: items.len(),
        resets,
        acks_seen_as_updates: seen,
        acks_covered_by_resets: covered,
        state,
    })
}

/// A resuming gRPC watcher, as an SDK without sessions would be: it reconnects after any error
/// with `from_revision` set to the last revision it received, and records every message.
pub struct GrpcWatcher {
    items: Arc<Mutex<Vec<Item>>>,
    connects: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl GrpcWatcher {
    /// Watches `prefix` on the edge at `base` (`http://host:port`), sending `key` as a Bearer
    /// token, until dropped.
    pub fn start(base: String, prefix: String, key: String) -> GrpcWatcher {
        let items: Arc<Mutex<Vec<Item>>> = Arc::default();
        let connects: Arc<Mutex<usize>> = Arc::default();
        let (store, count) = (items.clone(), connects.clone());
        let task = tokio::spawn(async move {
            let mut last: Option<i64> = None;
            loop {
                if let Ok(mut client) = EdgeClient::connect(base.clone()).await {
                    let mut request = tonic::Request::new(WatchRequest {
                        prefixes: vec![prefix.clone()],
                        from_revision: last,
                        instance_id: "history-checker".into(),
                        env: None,
                        resolve: false,
                    });
                    if let Ok(value) = format!("Bearer {key}").parse() {
                        request.metadata_mut().insert("authorization", value);
                    }
                    if let Ok(response) = client.watch(request).await {
                        *count.lock().expect("lock") += 1;
                        let mut stream = response.into_inner();
                        while let Ok(Some(message)) = stream.message().await {
                            last = Some(message.revision);
                            let mut received = store.lock().expect("lock");
                            if message.reset {
                                received.push(Item::Reset {
                                    revision: message.revision,
                                    state: message
                                        .state
                                        .iter()
                                        .map(|e| (e.path.clone(), e.version))
                                        .collect(),
                                });
                            }
                            for event in &message.events {
                                received.push(Item::Change {
                                    revision: event.revision,
                                    path: event.path.clone(),
                                    version: event.version,
                                    deleted: event.r#type
                                        == setpoint_proto::edge::v1::event::Type::Delete as i32,
                                });
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        GrpcWatcher {
            items,
            connects,
            task,
        }
    }

    pub fn items(&self) -> Vec<Item> {
        self.items.lock().expect("lock").clone()
    }

    /// How many times a stream was opened.
    pub fn connects(&self) -> usize {
        *self.connects.lock().expect("lock")
    }
}

impl Drop for GrpcWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: i64, path: &str, version: u64) -> Item {
        Item::Change {
            revision,
            path: path.into(),
            version,
            deleted: false,
        }
    }

    fn ack(path: &str, version: u64, revision: i64) -> Ack {
        Ack {
            path: path.into(),
            version,
            revision,
        }
    }

    fn end(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(p, v)| ((*p).to_owned(), *v)).collect()
    }

    #[test]
    fn a_clean_stream_passes_and_each_defect_is_named() {
        let acks = [ack("/a", 1, 10), ack("/a", 2, 11), ack("/b", 1, 12)];
        let clean = [
            change(10, "/a", 1),
            change(11, "/a", 2),
            change(12, "/b", 1),
        ];
        let summary = check(&clean, &acks, &end(&[("/a", 2), ("/b", 1)])).unwrap();
        assert_eq!(summary.acks_seen_as_updates, 3);

        let backwards = [
            change(10, "/a", 1),
            change(11, "/a", 2),
            Item::Reset {
                revision: 10,
                state: end(&[("/a", 1)]),
            },
        ];
        let error = check(&backwards, &[], &end(&[("/a", 1)])).unwrap_err();
        assert!(error.contains("moved backwards"), "{error}");

        let gap = [change(10, "/a", 1), change(12, "/a", 3)];
        let error = check(&gap, &[], &end(&[("/a", 3)])).unwrap_err();
        assert!(error.contains("gap"), "{error}");

        let duplicate = [change(10, "/a", 1), change(10, "/a", 1)];
        let error = check(&duplicate, &[], &end(&[("/a", 1)])).unwrap_err();
        assert!(error.contains("duplicate"), "{error}");

        let lost = [change(10, "/a", 1)];
        let error = check(&lost, &acks[..2], &end(&[("/a", 1)])).unwrap_err();
        assert!(error.contains("lost"), "{error}");

        let error = check(&clean, &acks, &end(&[("/a", 2)])).unwrap_err();
        assert!(error.contains("converge"), "{error}");
    }

    #[test]
    fn a_reset_covers_what_it_skipped_and_only_that() {
        let acks = [ack("/a", 1, 10), ack("/a", 2, 11), ack("/a", 3, 12)];
        let items = [
            change(10, "/a", 1),
            Item::Reset {
                revision: 12,
                state: end(&[("/a", 3)]),
            },
        ];
        let summary = check(&items, &acks, &end(&[("/a", 3)])).unwrap();
        assert_eq!(
            (summary.acks_seen_as_updates, summary.acks_covered_by_resets),
            (1, 2)
        );
        // A write after the reset's revision is not covered by it.
        let later = [ack("/a", 4, 13)];
        let error = check(&items, &later, &end(&[("/a", 3)])).unwrap_err();
        assert!(error.contains("lost"), "{error}");
    }
}

//! Watches: the registry of callbacks by prefix, the [`WatchHandle`] that removes one, and
//! dispatch — running the callbacks an update triggers, in event order, one at a time, turning
//! each error or panic into the NACK the receipt carries. Dispatch runs on the session task, so a
//! watch's callbacks never overlap and the receipt follows them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use setpoint_proto::edge::v1::Nack;

use crate::value::Event;

pub(crate) type Callback = dyn Fn(&Event) -> Result<(), String> + Send + Sync;

#[derive(Clone)]
struct Watch {
    id: u64,
    prefix: String,
    callback: Arc<Callback>,
    active: Arc<AtomicBool>,
}

#[derive(Default)]
pub(crate) struct Registry {
    next_id: u64,
    watches: Vec<Watch>,
}

pub(crate) type SharedRegistry = Arc<Mutex<Registry>>;

/// Keeps a watch alive: [`WatchHandle::stop`] or dropping it removes the watch. A callback already
/// running finishes; no later event reaches it.
#[must_use = "dropping a WatchHandle stops the watch"]
pub struct WatchHandle {
    id: u64,
    active: Arc<AtomicBool>,
    registry: Weak<Mutex<Registry>>,
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle")
            .field("id", &self.id)
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl WatchHandle {
    /// Stops the watch. Idempotent.
    pub fn stop(&self) {
        self.active.store(false, Ordering::Release);
        if let Some(registry) = self.registry.upgrade() {
            lock(&registry).watches.retain(|w| w.id != self.id);
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn add(
    registry: &SharedRegistry,
    prefix: String,
    callback: Arc<Callback>,
) -> WatchHandle {
    let active = Arc::new(AtomicBool::new(true));
    let mut guard = lock(registry);
    guard.next_id += 1;
    let id = guard.next_id;
    guard.watches.push(Watch {
        id,
        prefix,
        callback,
        active: active.clone(),
    });
    WatchHandle {
        id,
        active,
        registry: Arc::downgrade(registry),
    }
}

/// Removes every watch (on close): handles dropped later find nothing to remove.
pub(crate) fn clear(registry: &SharedRegistry) {
    for watch in lock(registry).watches.drain(..) {
        watch.active.store(false, Ordering::Release);
    }
}

/// Runs the callbacks `events` trigger and returns one NACK per failed callback. The registry is
/// copied first and not held while callbacks run, so a callback may add or stop watches (or call
/// `get`) without deadlocking.
pub(crate) fn dispatch(registry: &SharedRegistry, events: &[Event]) -> Vec<Nack> {
    if events.is_empty() {
        return Vec::new();
    }
    let watches = lock(registry).watches.clone();
    let mut failures = Vec::new();
    for event in events {
        for watch in watches.iter().filter(|w| covers(&w.prefix, &event.path)) {
            if !watch.active.load(Ordering::Acquire) {
                continue;
            }
            if let Err(error) = run(watch.callback.as_ref(), event) {
                tracing::warn!(path = %event.path, %error, "watch callback failed; NACKed");
                failures.push(Nack {
                    path: event.path.clone(),
                    error,
                });
            }
        }
    }
    failures
}

fn run(callback: &Callback, event: &Event) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| callback(event))) {
        Ok(result) => result,
        Err(panic) => Err(match panic.downcast_ref::<&str>() {
            Some(message) => format!("panic: {message}"),
            None => match panic.downcast_ref::<String>() {
                Some(message) => format!("panic: {message}"),
                None => "panic".to_owned(),
            },
        }),
    }
}

/// Whether a watch of `prefix` sees `path`: the prefix itself or anything below it (`/a` covers
/// `/a/b`, not `/ab`).
pub(crate) fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    // A panic while holding the lock cannot leave the list half-edited (push/retain/clone).
    registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str) -> Event {
        Event {
            path: path.into(),
            value: Some(serde_json::json!(1)),
            old_value: None,
            version: 1,
            revision: 2,
            deleted: false,
            format: "json".into(),
        }
    }

    #[test]
    fn prefixes_cover_whole_segments() {
        assert!(covers("/", "/a"));
        assert!(covers("/a", "/a"));
        assert!(covers("/a", "/a/b/c"));
        assert!(!covers("/a", "/ab"));
        assert!(!covers("/a/b", "/a"));
    }

    #[test]
    fn failures_and_panics_become_nacks_and_stopped_watches_see_nothing() {
        let registry = SharedRegistry::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let _all = add(
            &registry,
            "/a".into(),
            Arc::new(move |e: &Event| {
                log.lock().map_err(|e| e.to_string())?.push(e.path.clone());
                Ok(())
            }),
        );
        let _failing = add(
            &registry,
            "/a/bad".into(),
            Arc::new(|e: &Event| Err(format!("injected failure at {}", e.path))),
        );
        let _panicking = add(
            &registry,
            "/a/boom".into(),
            Arc::new(|_: &Event| -> Result<(), String> { panic!("kaboom") }),
        );
        let stopped = add(
            &registry,
            "/".into(),
            Arc::new(|_: &Event| Err("must not run".into())),
        );
        stopped.stop();

        let nacks = dispatch(
            &registry,
            &[
                event("/a/x"),
                event("/a/bad"),
                event("/a/boom"),
                event("/b"),
            ],
        );
        assert_eq!(
            nacks,
            vec![
                Nack {
                    path: "/a/bad".into(),
                    error: "injected failure at /a/bad".into()
                },
                Nack {
                    path: "/a/boom".into(),
                    error: "panic: kaboom".into()
                },
            ]
        );
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen, vec!["/a/x", "/a/bad", "/a/boom"]);
    }
}

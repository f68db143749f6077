//! A resuming SSE client, the way an application would watch an edge over HTTP: it reconnects
//! after any disconnect with `Last-Event-ID` set to the last id it saw, and records every event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

/// One received SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub event: Option<String>,
    pub data: Value,
}

pub struct SseWatcher {
    events: Arc<Mutex<Vec<SseEvent>>>,
    connects: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl SseWatcher {
    /// Watches `url` (e.g. `http://127.0.0.1:P/api/config/myapp?watch=true`), reconnecting
    /// forever with `Last-Event-ID` until dropped. Sends no key (for `setpoint dev` on loopback).
    pub fn start(url: String) -> SseWatcher {
        SseWatcher::start_with_key(url, None)
    }

    /// Like [`SseWatcher::start`], sending `key` as `Authorization: Bearer` on every connect.
    pub fn start_with_key(url: String, key: Option<String>) -> SseWatcher {
        let events: Arc<Mutex<Vec<SseEvent>>> = Arc::default();
        let connects: Arc<Mutex<usize>> = Arc::default();
        let (store, count) = (events.clone(), connects.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut last_id: Option<i64> = None;
            loop {
                let mut request = http.get(&url);
                if let Some(key) = &key {
                    request = request.bearer_auth(key);
                }
                if let Some(id) = last_id {
                    request = request.header("Last-Event-ID", id.to_string());
                }
                if let Ok(response) = request.send().await
                    && response.status().is_success()
                {
                    *count.lock().expect("lock") += 1;
                    let mut body = response.bytes_stream();
                    let mut buffer = String::new();
                    while let Some(Ok(chunk)) = body.next().await {
                        buffer.push_str(&String::from_utf8_lossy(&chunk));
                        while let Some(end) = buffer.find("\n\n") {
                            let raw: String = buffer.drain(..end + 2).collect();
                            if let Some(event) = parse(&raw) {
                                if let Some(id) = event.id {
                                    last_id = Some(id);
                                }
                                store.lock().expect("lock").push(event);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        SseWatcher {
            events,
            connects,
            task,
        }
    }

    pub fn events(&self) -> Vec<SseEvent> {
        self.events.lock().expect("lock").clone()
    }

    /// How many times a stream was opened.
    pub fn connects(&self) -> usize {
        *self.connects.lock().expect("lock")
    }

    /// `(revision, path, version)` of every update and delete, in arrival order.
    pub fn changes(&self) -> Vec<(i64, String, u64)> {
        self.events()
            .iter()
            .filter(|e| matches!(e.data["type"].as_str(), Some("update" | "delete")))
            .map(|e| {
                (
                    e.data["revision"].as_i64().unwrap_or(-1),
                    e.data["path"].as_str().unwrap_or_default().to_owned(),
                    e.data["version"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}

impl Drop for SseWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse(raw: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = None;
    let mut data = String::new();
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    if data.is_empty() {
        return None; // a comment (heartbeat)
    }
    Some(SseEvent {
        id,
        event,
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
    })
}

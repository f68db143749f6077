//! The edge test harness: a real edge on `127.0.0.1:0`, driven by commit batches applied to its
//! holder directly (replication is tested elsewhere), plus an SSE reader and `wait_until`.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use setpoint_core::snapshot::{Batch, Change, ChangeKind};
use setpoint_core::{ConfigPath, Format, ParsedValue, Revision};
use setpoint_edge_node::auth::AuthMode;
use setpoint_edge_node::{Edge, EdgeConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Polls `predicate` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut predicate: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if predicate().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long a test waits for one message of a stream (gRPC or SSE) or for a shutdown before it
/// fails: generous for a loaded machine, short enough that a silent stream fails the test
/// instead of hanging it.
pub const STREAM_WAIT: Duration = Duration::from_secs(10);

/// The next message of a gRPC stream; fails the test when the stream ends, fails, or stays
/// silent for [`STREAM_WAIT`].
pub async fn next_message<T>(stream: &mut tonic::Streaming<T>) -> T {
    match next_result(stream).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("the gRPC stream ended where a message was expected"),
        Err(status) => panic!("the gRPC stream failed where a message was expected: {status:?}"),
    }
}

/// The next item of a gRPC stream as it came (a message, the end, or the status it failed
/// with); fails the test when nothing comes within [`STREAM_WAIT`].
pub async fn next_result<T>(stream: &mut tonic::Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(STREAM_WAIT, stream.message())
        .await
        .unwrap_or_else(|_| panic!("nothing on the gRPC stream within {STREAM_WAIT:?}"))
}

pub enum Op {
    Put(&'static str, Value),
    Text(&'static str, &'static str),
    Delete(&'static str),
}

pub struct TestEdge {
    pub edge: Edge,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    versions: Mutex<(Revision, HashMap<String, u64>)>,
}

/// An edge configured as in `setpoint dev`: requests from loopback need no key (these tests
/// are about reads and watches; `auth.rs` is about keys).
pub fn anonymous() -> EdgeConfig {
    EdgeConfig {
        auth: AuthMode::AnonymousLoopback,
        ..EdgeConfig::default()
    }
}

impl TestEdge {
    pub async fn start() -> TestEdge {
        TestEdge::start_with(anonymous()).await
    }

    pub async fn start_with(config: EdgeConfig) -> TestEdge {
        let edge = Edge::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let edge = edge.clone();
            async move {
                setpoint_edge_node::run(listener, edge, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        let revision = edge.holder().revision();
        TestEdge {
            edge,
            addr,
            stop: Some(stop),
            task: Some(task),
            versions: Mutex::new((revision, HashMap::new())),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The `/metrics` text (anonymous: the harness's default configuration).
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Applies one commit batch; returns its revision.
    pub fn commit(&self, ops: Vec<Op>) -> Revision {
        let mut guard = self.versions.lock().unwrap();
        let (revision, versions) = &mut *guard;
        *revision += 1;
        let changes = ops
            .into_iter()
            .map(|op| {
                let (path, kind) = match op {
                    Op::Put(path, value) => (
                        path,
                        ChangeKind::Put {
                            value: ParsedValue::from_request(value, Some(Format::Json)).unwrap(),
                        },
                    ),
                    Op::Text(path, text) => (
                        path,
                        ChangeKind::Put {
                            value: ParsedValue::from_stored(Format::Text, text).unwrap(),
                        },
                    ),
                    Op::Delete(path) => (path, ChangeKind::Delete),
                };
                let version = versions.entry(path.to_owned()).or_default();
                *version += 1;
                Change {
                    path: ConfigPath::parse(path).unwrap(),
                    version: *version,
                    updated_at: "2026-11-01T00:00:00Z".into(),
                    kind,
                }
            })
            .collect();
        self.edge
            .holder()
            .apply(&Batch {
                revision: *revision,
                committed_at_micros: 0,
                changes,
            })
            .unwrap();
        *revision
    }

    /// Waits until the hub has `count` watchers.
    pub async fn wait_for_watchers(&self, count: usize) {
        let hub = self.edge.hub().clone();
        assert!(
            wait_until(Duration::from_secs(10), || {
                let hub = hub.clone();
                async move { hub.watcher_count() == count }
            })
            .await,
            "expected {count} watchers, have {}",
            self.edge.hub().watcher_count()
        );
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STREAM_WAIT, task)
                .await
                .expect("the edge shuts down")
                .unwrap();
        }
    }
}

/// One SSE event as received.
#[derive(Debug, Clone, Default)]
pub struct SseFrame {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseFrame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads SSE frames from a response body (comments are skipped).
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub async fn open(url: &str, last_event_id: Option<&str>) -> SseReader {
        SseReader::open_with_key(url, last_event_id, None).await
    }

    /// Like [`SseReader::open`], sending `key` as `Authorization: Bearer`.
    pub async fn open_with_key(
        url: &str,
        last_event_id: Option<&str>,
        key: Option<&str>,
    ) -> SseReader {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "opening {url}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    pub async fn next(&mut self) -> SseFrame {
        tokio::time::timeout(STREAM_WAIT, self.next_inner())
            .await
            .unwrap_or_else(|_| panic!("no SSE event within {STREAM_WAIT:?}"))
    }

    /// Waits ([`STREAM_WAIT`] at most) for the server to end the stream; true when it did.
    pub async fn wait_for_end(&mut self) -> bool {
        tokio::time::timeout(STREAM_WAIT, async {
            while let Ok(Some(_)) = self.response.chunk().await {}
        })
        .await
        .is_ok()
    }

    async fn next_inner(&mut self) -> SseFrame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = SseFrame::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(rest) = line.strip_prefix("data:") {
                        data.push(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
                    } else if let Some(rest) = line.strip_prefix("id:") {
                        frame.id = Some(rest.trim().to_owned());
                    } else if let Some(rest) = line.strip_prefix("event:") {
                        frame.event = Some(rest.trim().to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a heartbeat comment
                }
                frame.data = data.join("\n");
                return frame;
            }
            let chunk = self.response.chunk().await.unwrap().expect("stream open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

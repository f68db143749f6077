//! The edge's HTTP API against a real edge on a loopback socket: reads, SSE watches, resumption,
//! slow consumers, operations endpoints.

// Helpers outside #[test] functions unwrap too: a failure here is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Op, SseReader, TestEdge, wait_until};
use serde_json::{Value, json};
use setpoint_core::ConfigPath;
use setpoint_edge_node::EdgeConfig;
use setpoint_edge_node::watch::WatchMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// A request with the path exactly as given (no client-side dot-segment normalization).
async fn raw_status(edge: &TestEdge, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn reads_match_the_writer_shapes() {
    let edge = TestEdge::start().await;
    let (status, _, _) = get(&edge.url("/readyz")).await;
    assert_eq!(status, 503, "not ready before any snapshot");
    edge.commit(vec![
        Op::Put("/app/db/host", json!("db1")),
        Op::Put("/app/db/port", json!(5432)),
        Op::Text("/app/name", "shop"),
    ]);
    let revision = edge.commit(vec![Op::Put("/app/db/host", json!("db2"))]);

    let (status, headers, body) = get(&edge.url("/api/config/app/db/host")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"path": "/app/db/host", "value": "db2", "format": "json", "version": 2,
               "revision": revision, "updated_at": "2026-11-01T00:00:00Z"})
    );
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(
        headers["x-setpoint-revision"],
        revision.to_string().as_str()
    );
    assert_eq!(
        headers["x-setpoint-stale"], "true",
        "never heard from a writer"
    );

    let (_, _, body) = get(&edge.url("/api/config/app/name")).await;
    assert_eq!(body["value"], "shop");
    assert_eq!(body["format"], "text");

    let (status, _, body) = get(&edge.url("/api/config/app")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"path": "/app", "children": ["db", "name"], "revision": revision})
    );
    let (_, _, body) = get(&edge.url("/api/config/app?list=true&recursive=true")).await;
    let listed: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec!["/app/db/host", "/app/db/port", "/app/name"]);
    for root in ["/api/config", "/api/config/"] {
        let (status, _, body) = get(&edge.url(root)).await;
        assert_eq!(status, 200);
        assert_eq!(body["children"], json!(["app"]));
    }

    let (status, _, body) = get(&edge.url("/api/config/app/db/host?version=2")).await;
    assert_eq!((status, body["value"].clone()), (200, json!("db2")));
    let (status, _, body) = get(&edge.url("/api/config/app/db/host?version=1")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only the current version")
    );

    let (status, _, body) = get(&edge.url("/api/config/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _, body) = get(&edge.url("/api/config/a//b")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_path");
    let raw = raw_status(&edge, "/api/config/a/../b").await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("invalid_path"), "{raw}");
    let (status, _, _) = get(&edge.url("/api/config/app?recursive=maybe")).await;
    assert_eq!(status, 400);
    let (status, _, body) = get(&edge.url("/api/config/app?env=prod")).await;
    assert_eq!(
        status, 404,
        "no environment is defined on this edge: {body}"
    );
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _, body) = get(&edge.url("/api/config/app?watch=true&env=prod")).await;
    assert_eq!(
        status, 404,
        "watching an unknown environment is refused like reading it"
    );
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _, body) = get(&edge.url("/api/config/app?format=toml")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");

    let not_modified = reqwest::Client::new()
        .get(edge.url("/api/config/app/db/host"))
        .header("If-None-Match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    // If-None-Match as the writer reads it (setpoint_serving::conditional): a list over several
    // header lines, weak tags compared weakly, tags compared as text.
    for (lines, expected) in [
        (&["\"1\"", "W/\"2\""][..], 304),
        (&["\"1\", \"3\""][..], 200),
        (&["\"02\""][..], 200),
        (&["*"][..], 304),
    ] {
        let mut request = reqwest::Client::new().get(edge.url("/api/config/app/db/host"));
        for line in lines {
            request = request.header("If-None-Match", *line);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "If-None-Match {lines:?}");
        assert_eq!(response.headers()["etag"], "\"2\"");
    }

    let (status, _, body) = get(&edge.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&edge.url("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["stale"], true);
    assert_eq!(body["revision"], revision);
    edge.edge.holder().set_connected(true);
    let (_, headers, body) = get(&edge.url("/api/config/app/db/host")).await;
    assert!(headers.get("x-setpoint-stale").is_none());
    assert_eq!(body["version"], 2);
    let (_, _, health) = get(&edge.url("/healthz")).await;
    assert_eq!(
        (health["stale"].clone(), health["staleness_seconds"].clone()),
        (json!(false), json!(0.0))
    );

    let metrics = edge.metrics().await;
    for name in [
        &format!("setpoint_edge_applied_revision {revision}"),
        "setpoint_edge_staleness_seconds 0",
        "setpoint_edge_watchers 0",
        "setpoint_edge_events_sent_total",
        "setpoint_edge_watchers_reset_total",
        "setpoint_edge_http_requests_total{method=\"GET\",route=\"/api/config/{*path}\",status=\"200\"}",
        "setpoint_edge_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
    edge.stop().await;
}

#[tokio::test]
async fn sse_by_path_and_prefix_carries_updates_deletes_and_ids() {
    let edge = TestEdge::start().await;
    let mut by_path = SseReader::open(&edge.url("/api/config/app/db/host?watch=true"), None).await;
    let mut by_prefix = SseReader::open(&edge.url("/api/config/app?watch=true"), None).await;
    edge.wait_for_watchers(2).await;

    let first = edge.commit(vec![Op::Put("/app/db/host", json!("db1"))]);
    let second = edge.commit(vec![Op::Put("/app/db/host", json!("db2"))]);
    let other = edge.commit(vec![Op::Put("/app/cache", json!({"ttl": 5}))]);
    edge.commit(vec![Op::Put("/elsewhere", json!(1))]);
    let deleted = edge.commit(vec![Op::Delete("/app/db/host")]);

    let frame = by_path.next().await;
    assert_eq!(frame.id, Some(first.to_string()));
    assert_eq!(
        frame.json(),
        json!({"type": "update", "path": "/app/db/host", "value": "db1", "format": "json",
               "version": 1, "revision": first})
    );
    let frame = by_path.next().await;
    assert_eq!(frame.json()["old_value"], "db1");
    assert_eq!(frame.json()["value"], "db2");
    assert_eq!(frame.id, Some(second.to_string()));
    let frame = by_path.next().await;
    assert_eq!(
        frame.json(),
        json!({"type": "delete", "path": "/app/db/host", "old_value": "db2", "version": 3,
               "revision": deleted})
    );
    assert_eq!(frame.id, Some(deleted.to_string()));

    let ids: Vec<(String, Option<String>)> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            let frame = by_prefix.next().await;
            out.push((frame.json()["path"].as_str().unwrap().to_owned(), frame.id));
        }
        out
    };
    assert_eq!(
        ids,
        vec![
            ("/app/db/host".to_owned(), Some(first.to_string())),
            ("/app/db/host".to_owned(), Some(second.to_string())),
            ("/app/cache".to_owned(), Some(other.to_string())),
            ("/app/db/host".to_owned(), Some(deleted.to_string())),
        ]
    );
    edge.stop().await;
}

#[tokio::test]
async fn one_batch_is_one_group_of_events_with_one_id() {
    let edge = TestEdge::start().await;
    let mut sse = SseReader::open(&edge.url("/api/config/app?watch=true"), None).await;
    edge.wait_for_watchers(1).await;
    let revision = edge.commit(vec![
        Op::Put("/app/a", json!(1)),
        Op::Put("/other", json!(2)),
        Op::Put("/app/b", json!(3)),
        Op::Put("/app/c", json!(4)),
    ]);
    let frames = [sse.next().await, sse.next().await, sse.next().await];
    let paths: Vec<Value> = frames.iter().map(|f| f.json()["path"].clone()).collect();
    assert_eq!(
        paths,
        vec![json!("/app/a"), json!("/app/b"), json!("/app/c")]
    );
    let ids: Vec<Option<String>> = frames.iter().map(|f| f.id.clone()).collect();
    assert_eq!(ids, vec![None, None, Some(revision.to_string())]);
    assert!(frames.iter().all(|f| f.json()["revision"] == revision));
    edge.stop().await;
}

#[tokio::test]
async fn a_thousand_rapid_batches_arrive_in_order() {
    let edge = TestEdge::start_with(EdgeConfig {
        watcher_queue: 2048,
        ..harness::anonymous()
    })
    .await;
    let mut sse = SseReader::open(&edge.url("/api/config/load?watch=true"), None).await;
    edge.wait_for_watchers(1).await;
    let mut expected = Vec::new();
    for i in 0..1000 {
        expected.push(edge.commit(vec![Op::Put("/load/key", json!(i))]));
    }
    for (i, revision) in expected.iter().enumerate() {
        let frame = sse.next().await;
        assert_eq!(frame.id, Some(revision.to_string()));
        assert_eq!(frame.json()["value"], i);
    }
    assert_eq!(edge.edge.hub().counters().resets.get(), 0);
    edge.stop().await;
}

#[tokio::test]
async fn last_event_id_replays_exactly_what_was_missed() {
    let edge = TestEdge::start().await;
    let url = edge.url("/api/config/app?watch=true");
    let mut sse = SseReader::open(&url, None).await;
    edge.wait_for_watchers(1).await;
    let seen = edge.commit(vec![Op::Put("/app/a", json!(1))]);
    assert_eq!(sse.next().await.id, Some(seen.to_string()));
    drop(sse);
    edge.wait_for_watchers(0).await;

    let missed_one = edge.commit(vec![
        Op::Put("/app/a", json!(2)),
        Op::Put("/app/b", json!(1)),
    ]);
    edge.commit(vec![Op::Put("/unrelated", json!(1))]);
    let missed_two = edge.commit(vec![Op::Delete("/app/a")]);

    let mut resumed = SseReader::open(&url, Some(&seen.to_string())).await;
    let frames = [
        resumed.next().await,
        resumed.next().await,
        resumed.next().await,
    ];
    let got: Vec<(Value, Option<String>)> = frames
        .iter()
        .map(|f| (f.json()["path"].clone(), f.id.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("/app/a"), None),
            (json!("/app/b"), Some(missed_one.to_string())),
            (json!("/app/a"), Some(missed_two.to_string())),
        ]
    );
    let live = edge.commit(vec![Op::Put("/app/c", json!(1))]);
    let frame = resumed.next().await;
    assert_eq!(
        (frame.json()["path"].clone(), frame.id),
        (json!("/app/c"), Some(live.to_string()))
    );

    // The query parameter works like the header.
    let mut by_query = SseReader::open(&format!("{url}&from_revision={missed_two}"), None).await;
    let next = edge.commit(vec![Op::Put("/app/d", json!(1))]);
    let frame = by_query.next().await;
    assert_eq!(frame.json()["path"], "/app/c");
    assert_eq!(frame.id, Some(live.to_string()));
    assert_eq!(by_query.next().await.id, Some(next.to_string()));
    edge.stop().await;
}

#[tokio::test]
async fn resuming_ahead_of_the_edge_waits_for_it_and_never_goes_backwards() {
    let edge = TestEdge::start_with(EdgeConfig {
        resume_wait: Duration::from_secs(2),
        ..harness::anonymous()
    })
    .await;
    let seen = edge.commit(vec![Op::Put("/app/a", json!(1))]);
    let url = edge.url("/api/config/app?watch=true");
    // A client that already has two revisions this edge has not applied yet (it came from a
    // newer edge, or this one restarted from an older disk snapshot).
    let ahead = seen + 2;
    let opening = tokio::spawn({
        let url = url.clone();
        async move { SseReader::open(&url, Some(&ahead.to_string())).await }
    });
    edge.commit(vec![Op::Put("/app/b", json!(1))]);
    edge.commit(vec![Op::Put("/app/c", json!(1))]);
    let next = edge.commit(vec![Op::Put("/app/d", json!(1))]);
    let mut resumed = opening.await.unwrap();
    let frame = resumed.next().await;
    assert_eq!(frame.event, None, "no reset to an older state: {frame:?}");
    assert_eq!(frame.json()["path"], "/app/d");
    assert_eq!(frame.id, Some(next.to_string()));

    // Too far ahead for the wait: a retryable refusal, never older state.
    let response = reqwest::Client::new()
        .get(&url)
        .header("Last-Event-ID", (next + 50).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "behind", "{body}");
    edge.stop().await;
}

/// Issue 14: a plain read is answered before the router (`http::fast`); it must answer and be
/// counted exactly as the full path, which a query forces.
#[tokio::test]
async fn the_read_fast_path_answers_and_counts_like_the_full_path() {
    let edge = TestEdge::start().await;
    edge.commit(vec![Op::Put("/fast/a", json!({"x": 1}))]);
    let revision = edge.commit(vec![Op::Put("/fast/a", json!({"x": 2}))]);
    let client = reqwest::Client::new();
    let fetch = |url: String, etag: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut request = client.get(url);
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let mut headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .filter(|(name, _)| *name != "date")
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            headers.sort();
            (status, headers, response.bytes().await.unwrap())
        }
    };
    // The same read, fast and (with a query that changes nothing) full.
    let fast = fetch(edge.url("/api/config/fast/a"), None).await;
    let full = fetch(edge.url("/api/config/fast/a?version=2"), None).await;
    assert_eq!(fast.0, 200);
    assert_eq!(fast, full, "the fast path answers as the full path");
    assert!(
        fast.1
            .contains(&("x-setpoint-revision".to_owned(), revision.to_string()))
    );
    let fast = fetch(edge.url("/api/config/fast/a"), Some("\"2\"")).await;
    let full = fetch(edge.url("/api/config/fast/a?watch=false"), Some("\"2\"")).await;
    assert_eq!(fast.0, 304);
    assert_eq!(fast, full);
    // What the fast path leaves to the full path still gets its answer there.
    assert_eq!(
        fetch(edge.url("/api/config/fast"), None).await.0,
        200,
        "a listing"
    );
    assert_eq!(fetch(edge.url("/api/config/fast/none"), None).await.0, 404);
    assert_eq!(
        fetch(edge.url("/api/config/fast/%61"), None).await.0,
        200,
        "decoded"
    );

    let metrics = edge.metrics().await;
    let count = |status: u16| {
        let series = format!(
            "setpoint_edge_http_requests_total{{method=\"GET\",route=\"/api/config/{{*path}}\",status=\"{status}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(
        count(200),
        Some(4),
        "two plain reads, a listing and a percent-encoded read\n{metrics}"
    );
    assert_eq!(count(304), Some(2), "{metrics}");
    assert_eq!(count(404), Some(1), "{metrics}");
    edge.stop().await;
}

#[tokio::test]
async fn list_is_answered_like_on_the_writer() {
    // Issue 11, finding 9: the edge answered `LIST` with 405.
    let edge = TestEdge::start().await;
    edge.commit(vec![
        Op::Put("/app/a", json!(1)),
        Op::Put("/app/b/c", json!(2)),
    ]);
    let list = reqwest::Method::from_bytes(b"LIST").unwrap();
    let response = reqwest::Client::new()
        .request(list, edge.url("/api/config/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["children"], json!(["a", "b"]), "{body}");
    edge.stop().await;
}

#[tokio::test]
async fn resuming_past_the_ring_starts_with_a_reset() {
    let edge = TestEdge::start_with(EdgeConfig {
        ring_capacity: 2,
        ..harness::anonymous()
    })
    .await;
    let first = edge.commit(vec![Op::Put("/app/a", json!(1))]);
    edge.commit(vec![Op::Put("/app/b", json!(2))]);
    edge.commit(vec![Op::Put("/zzz", json!(0))]);
    let last = edge.commit(vec![Op::Delete("/app/a")]);
    let url = edge.url("/api/config/app?watch=true");
    let mut sse = SseReader::open(&url, Some(&(first - 1).to_string())).await;
    let frame = sse.next().await;
    assert_eq!(frame.event.as_deref(), Some("reset"));
    assert_eq!(frame.id, Some(last.to_string()));
    let body = frame.json();
    assert_eq!(body["type"], "reset");
    assert_eq!(body["revision"], last);
    let state: Vec<Value> = body["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(state, vec![json!("/app/b")]);
    let live = edge.commit(vec![Op::Put("/app/c", json!(3))]);
    assert_eq!(sse.next().await.id, Some(live.to_string()));
    edge.stop().await;
}

#[tokio::test]
async fn a_watcher_that_never_reads_holds_bounded_memory_and_others_are_unaffected() {
    let edge = TestEdge::start_with(EdgeConfig {
        watcher_queue: 8,
        ..harness::anonymous()
    })
    .await;
    // In-process watcher that never reads, and an HTTP one that never reads its body.
    let stuck = edge
        .edge
        .hub()
        .subscribe(vec![ConfigPath::parse("/app").unwrap()], None);
    let stuck_sse = reqwest::get(edge.url("/api/config/app?watch=true"))
        .await
        .unwrap();
    let mut reader = SseReader::open(&edge.url("/api/config/app?watch=true"), None).await;
    edge.wait_for_watchers(3).await;
    let big = "x".repeat(64 * 1024);
    let big: &'static str = Box::leak(big.into_boxed_str());
    let mut revisions = Vec::new();
    for _ in 0..400 {
        revisions.push(edge.commit(vec![Op::Text("/app/blob", big)]));
        // The reading watcher keeps up; the others fall behind.
        let frame = reader.next().await;
        assert_eq!(frame.id, Some(revisions[revisions.len() - 1].to_string()));
    }
    let counters = edge.edge.hub().counters().clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let counters = counters.clone();
            async move { counters.caught_up.get() >= 2 }
        })
        .await,
        "both stuck watchers stopped receiving, got {}",
        counters.caught_up.get()
    );
    // What they hold is their queue's bound, not the 400 batches (about 50 MiB of values).
    let queued = counters.queued_bytes.get();
    assert!(
        queued <= 2 * (setpoint_edge_node::watch::QUEUE_BYTES as i64 + (1 << 20)),
        "{queued} bytes queued"
    );
    // The stuck in-process watcher, when it finally reads, drains its queue and then, the ring
    // no longer holding everything after it (64 MiB of 64 KiB values), gets a reset at the
    // current revision.
    let mut stuck = stuck;
    let mut drained = Vec::new();
    let reset = loop {
        match tokio::time::timeout(Duration::from_secs(5), stuck.next()).await {
            Ok(Some(WatchMessage::Batch(batch))) => drained.push(batch.revision),
            Ok(Some(WatchMessage::Reset(reset))) => break reset,
            other => panic!("expected batches then a reset, got {other:?}"),
        }
    };
    assert_eq!(
        drained,
        revisions[..drained.len()].to_vec(),
        "in order, from the start"
    );
    assert!(drained.len() <= 8, "at most its queue: {}", drained.len());
    assert_eq!(reset.revision, *revisions.last().unwrap());
    assert_eq!(reset.entries.len(), 1);
    assert!(counters.cut_off.get() >= 1);
    drop(stuck_sse);
    edge.stop().await;
}

/// Issue 14: SSE watches are served without hyper's per-connection buffers
/// (`setpoint_serving::server`'s raw event-stream path). A watch whose head arrives two bytes at
/// a time streams its events as chunks and closes at its end; a watcher that leaves while idle
/// frees its connection slot and its hub subscription.
#[tokio::test]
async fn a_watch_sent_in_small_pieces_streams_and_leaving_frees_its_connection() {
    let edge = TestEdge::start().await;
    let open = edge.edge.metrics().connections.open.clone();
    let mut tcp = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let head = "GET /api/config/app?watch=true HTTP/1.1\r\nHost: edge\r\n\
                Accept: text/event-stream\r\n\r\n";
    for piece in head.as_bytes().chunks(2) {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    edge.wait_for_watchers(1).await;
    let revision = edge.commit(vec![Op::Put("/app/x", json!(1))]);
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    let last = format!("id: {revision}\n\n");
    while !text.contains(&last) {
        let n = tokio::time::timeout(harness::STREAM_WAIT, tcp.read(&mut buffer))
            .await
            .expect("the event arrives")
            .unwrap();
        assert!(n > 0, "closed early: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    for line in [
        "content-type: text/event-stream\r\n",
        "transfer-encoding: chunked\r\n",
        "connection: close\r\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(
        text.contains(r#"data: {"format":"json","path":"/app/x""#),
        "{text}"
    );
    assert_eq!(open.get(), 1);
    drop(tcp);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let open = open.clone();
            async move { open.get() == 0 }
        })
        .await,
        "the connection slot is freed"
    );
    edge.wait_for_watchers(0).await;
    edge.stop().await;
}

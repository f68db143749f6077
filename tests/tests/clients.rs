//! Client sessions seen from the writer: a session opened on the edge of a real `setpoint dev`
//! appears in `GET /api/clients` with what it watches, what it applied and its NACKs; filters,
//! rights and disconnects.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use setpoint_tests::binary::SetpointProcess;
use setpoint_tests::session::{Hello, Session};
use setpoint_tests::wait_until;

async fn get(http: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = http.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put(http: &reqwest::Client, base: &str, path: &str, value: Value) -> i64 {
    let response = http
        .put(format!("{base}/api/config{path}"))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body: Value = response.json().await.unwrap();
    body["revision"].as_i64().unwrap()
}

#[tokio::test]
async fn sessions_appear_in_api_clients_with_receipts_nacks_filters_and_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev =
        SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir.path()).await;
    let base = dev.base();
    let http = reqwest::Client::new();
    let first = put(&http, &base, "/myapp/db/host", json!("db1")).await;

    let hello = Hello {
        instance_id: "app-1",
        env: None,
        prefixes: &["/myapp"],
        labels: &[("zone", "eu-1")],
    };
    let mut session = Session::open(&base, hello, None).await;
    let synced = session.sync_to(first).await;
    session.receipt(synced, None).await;
    let clients = format!("{base}/api/clients");
    let listed = wait_until(Duration::from_secs(10), || async {
        let (_, body) = get(&http, &clients, None).await;
        body.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert!(
        listed,
        "the session reaches /api/clients within the report interval"
    );
    let (status, body) = get(&http, &clients, None).await;
    assert_eq!(status, 200);
    let client = &body[0];
    assert_eq!(client["id"], "app-1");
    assert_eq!(client["watching"], json!(["/myapp"]));
    assert_eq!(client["edge"], "dev-edge");
    assert_eq!(client["status"], "connected");
    assert_eq!(client["sdk"], "test/0.0.1");
    assert_eq!(client["labels"], json!({"zone": "eu-1"}));
    assert_eq!(client["last_error"], Value::Null);
    assert!(client["connected_at"].as_str().unwrap().starts_with("20"));

    // A change is delivered; the client applies it but one callback fails.
    let revision = put(&http, &base, "/myapp/db/host", json!("db2")).await;
    let update = session.update().await;
    assert_eq!(update.revision, revision);
    session
        .receipt(
            revision,
            Some(("/myapp/db/host", "cannot reconnect the pool")),
        )
        .await;
    let one = format!("{clients}/app-1");
    let nacked = wait_until(Duration::from_secs(10), || async {
        get(&http, &one, None).await.1["applied_revision"] == revision
    })
    .await;
    assert!(nacked);
    let (_, client) = get(&http, &one, None).await;
    assert_eq!(client["lag"], 0);
    assert_eq!(client["nacks"], 1);
    assert_eq!(client["last_error"]["path"], "/myapp/db/host");
    assert_eq!(client["last_error"]["error"], "cannot reconnect the pool");
    assert!(client["propagation_ms"].as_f64().unwrap() >= 0.0);

    // Filters.
    for (query, expected) in [
        ("?label=zone=eu-1", 1),
        ("?label=zone=us-1", 0),
        ("?prefix=/myapp/db", 1),
        ("?prefix=/other", 0),
        ("?status=connected", 1),
        ("?status=disconnected", 0),
        ("?env=prod", 0),
    ] {
        let (status, body) = get(&http, &format!("{clients}{query}"), None).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(body.as_array().unwrap().len(), expected, "{query}: {body}");
    }
    for bad in [
        "?status=gone",
        "?label=novalue",
        "?prefix=/a/../b",
        "?color=red",
    ] {
        let (status, body) = get(&http, &format!("{clients}{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    assert_eq!(get(&http, &format!("{clients}/nobody"), None).await.0, 404);

    // Rights: an account that can read only /other does not see a client of /myapp.
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let created = http
        .post(format!("{base}/api/accounts"))
        .bearer_auth(key.trim())
        .body(
            json!({"id": "other-reader", "grants": [{"prefix": "/other", "actions": ["read"]}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let reader: Value = created.json().await.unwrap();
    let reader = reader["key"].as_str().unwrap();
    let (status, body) = get(&http, &clients, Some(reader)).await;
    assert_eq!((status, body), (200, json!([])));
    assert_eq!(get(&http, &one, Some(reader)).await.0, 404);

    // The app goes away: shown disconnected, with the time.
    drop(session);
    let gone = wait_until(Duration::from_secs(10), || async {
        get(&http, &one, None).await.1["status"] == "disconnected"
    })
    .await;
    assert!(gone);
    let (_, client) = get(&http, &one, None).await;
    assert!(
        client["disconnected_at"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    let (_, listed) = get(&http, &format!("{clients}?status=disconnected"), None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("setpoint_clients{status=\"disconnected\"} 1"),
        "{metrics}"
    );
    dev.terminate();
}

#[tokio::test]
async fn sse_streams_with_an_instance_id_are_clients_and_acknowledge_over_http() {
    use setpoint_tests::sse::SseWatcher;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev =
        SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir.path()).await;
    let base = dev.base();
    let http = reqwest::Client::new();
    let watcher = SseWatcher::start(format!(
        "{base}/api/config/sseapp?watch=true&env=prod&instance_id=sse-1&labels=zone=eu-1,tier=web"
    ));
    let one = format!("{base}/api/clients/sse-1");
    let listed = wait_until(Duration::from_secs(10), || async {
        get(&http, &one, None).await.0 == 200
    })
    .await;
    assert!(listed, "the SSE client reaches /api/clients");
    let (_, client) = get(&http, &one, None).await;
    assert_eq!(client["kind"], "sse");
    assert_eq!(client["env"], "prod");
    assert_eq!(client["watching"], json!(["/sseapp"]));
    assert_eq!(client["labels"], json!({"zone": "eu-1", "tier": "web"}));

    let revision = put(&http, &base, "/sseapp/flag", json!(true)).await;
    let seen = wait_until(Duration::from_secs(10), || async {
        watcher.changes().iter().any(|c| c.0 == revision)
    })
    .await;
    assert!(seen, "events: {:?}", watcher.events());
    let lagging = wait_until(Duration::from_secs(10), || async {
        get(&http, &one, None).await.1["lag"] == 1
    })
    .await;
    assert!(lagging, "delivered, not yet acknowledged");

    let receipts = format!("{base}/api/receipts");
    let acked = http
        .post(&receipts)
        .body(
            json!({"instance_id": "sse-1", "revision": revision,
                   "failures": [{"path": "/sseapp/flag", "error": "feature flag rejected"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 204);
    let applied = wait_until(Duration::from_secs(10), || async {
        let (_, client) = get(&http, &one, None).await;
        client["applied_revision"] == revision && client["lag"] == 0
    })
    .await;
    assert!(applied);
    let (_, client) = get(&http, &one, None).await;
    assert_eq!(client["last_error"]["error"], "feature flag rejected");

    for (body, status) in [
        (json!({"instance_id": "nobody", "revision": 1}), 404),
        (json!({"instance_id": "sse-1"}), 400),
        (
            json!({"instance_id": "sse-1", "revision": 1, "extra": 1}),
            400,
        ),
    ] {
        let response = http
            .post(&receipts)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
    }
    let response = http.post(&receipts).body("not json").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);

    drop(watcher);
    let gone = wait_until(Duration::from_secs(10), || async {
        get(&http, &one, None).await.1["status"] == "disconnected"
    })
    .await;
    assert!(gone, "the stream's end disconnects the client");
    dev.terminate();
}

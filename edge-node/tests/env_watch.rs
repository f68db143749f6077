//! Watches in an environment against a real edge on a loopback socket, over SSE and gRPC: events
//! carry effective values at base paths exactly as `GET ?env=` answers them before and after each
//! commit, commits that change no effective value send nothing, and resumption, resets, `resolve`
//! and permissions behave as for base watches.

// Helpers outside #[test] functions unwrap too: a failure here is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{Op, SseReader, TestEdge, anonymous};
use serde_json::{Value, json};
use setpoint_core::auth::{Account, Action, Grant, new_key};
use setpoint_edge_node::EdgeConfig;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use tonic::Code;

/// prod (HOST=db1) with prod-eu below it; `/myapp/db/host` and `/myapp/url` in the base.
fn seed(edge: &TestEdge) -> i64 {
    edge.commit(vec![
        Op::Put("/env/prod", json!({"variables": {"HOST": "db1"}})),
        Op::Put("/env/prod-eu", json!({"parent": "prod"})),
        Op::Put("/myapp/db/host", json!("localhost")),
        Op::Put("/myapp/url", json!("pg://${HOST}/${secret:db-password}")),
    ])
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Reads SSE frames until one carries an `id:` (the last event of a commit batch); returns the
/// batch's payloads and its id.
async fn batch(sse: &mut SseReader) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    loop {
        let frame = sse.next().await;
        events.push(frame.json());
        if let Some(id) = frame.id {
            return (events, id);
        }
    }
}

#[tokio::test]
async fn sse_env_watch_streams_effective_changes_and_resumes() {
    let edge = TestEdge::start().await;
    seed(&edge);
    let url = edge.url("/api/config/myapp?watch=true&env=prod-eu");
    let mut sse = SseReader::open(&url, None).await;
    edge.wait_for_watchers(1).await;

    // An override in an ancestor: one event for the base path, old and new effective values.
    let r1 = edge.commit(vec![Op::Put("/env/prod/myapp/db/host", json!("prod-db"))]);
    let (events, id) = batch(&mut sse).await;
    assert_eq!(id, r1.to_string());
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["type"], "update");
    assert_eq!(event["path"], "/myapp/db/host");
    assert_eq!(event["old_value"], "localhost");
    assert_eq!(event["value"], "prod-db");
    // What GET ?env= answers now is what the event said.
    let read = get_json(&edge.url("/api/config/myapp/db/host?env=prod-eu")).await;
    assert_eq!(read["value"], event["value"]);
    assert_eq!(read["version"], event["version"]);

    // A base change the override hides, and another environment: nothing. Then a change that
    // shows proves nothing was sent in between.
    edge.commit(vec![Op::Put("/myapp/db/host", json!("other"))]);
    edge.commit(vec![Op::Put("/env/dev", json!({}))]);
    edge.commit(vec![Op::Put("/env/dev/myapp/db/host", json!("dev-db"))]);
    let r2 = edge.commit(vec![
        Op::Put("/env/prod-eu/myapp/db/host", json!("eu-db")),
        Op::Put("/myapp/new", json!(1)),
    ]);
    let (events, id) = batch(&mut sse).await;
    assert_eq!(id, r2.to_string());
    let paths: Vec<&str> = events.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/myapp/db/host", "/myapp/new"]);
    drop(sse);

    // Deleting the override in prod-eu falls back to prod's. Resume after r1: the replay shows
    // r2 then the delete, with the same effective values as live.
    let r3 = edge.commit(vec![Op::Delete("/env/prod-eu/myapp/db/host")]);
    let mut resumed = SseReader::open(&url, Some(&r1.to_string())).await;
    let (events, id) = batch(&mut resumed).await;
    assert_eq!(id, r2.to_string());
    assert_eq!(events[0]["value"], "eu-db");
    let (events, id) = batch(&mut resumed).await;
    assert_eq!(id, r3.to_string());
    assert_eq!(events[0]["type"], "update");
    assert_eq!(
        (&events[0]["old_value"], &events[0]["value"]),
        (&json!("eu-db"), &json!("prod-db"))
    );

    // A removing override deletes the effective value.
    let r4 = edge.commit(vec![Op::Put("/env/prod-eu/myapp/new", Value::Null)]);
    let (events, id) = batch(&mut resumed).await;
    assert_eq!(id, r4.to_string());
    assert_eq!(events[0]["type"], "delete");
    assert_eq!(events[0]["path"], "/myapp/new");
    assert_eq!(events[0]["old_value"], 1);
    edge.stop().await;
}

#[tokio::test]
async fn sse_env_watch_resets_with_the_effective_state_and_resolves_variables() {
    let edge = TestEdge::start_with(EdgeConfig {
        ring_capacity: 2,
        ..anonymous()
    })
    .await;
    seed(&edge);
    edge.commit(vec![Op::Put("/env/prod/myapp/db/host", json!("prod-db"))]);
    edge.commit(vec![Op::Put("/env/prod/myapp/only", json!("o"))]);
    let head = edge.commit(vec![Op::Put("/other", json!(1))]);

    let url = edge.url("/api/config/myapp?watch=true&env=prod&resolve=true");
    let mut sse = SseReader::open(&url, Some("1")).await;
    let reset = sse.next().await;
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(reset.id, Some(head.to_string()));
    let state: Vec<(String, Value)> = reset.json()["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_owned(), e["value"].clone()))
        .collect();
    assert_eq!(
        state,
        [
            ("/myapp/db/host".to_owned(), json!("prod-db")),
            ("/myapp/only".to_owned(), json!("o")),
            // ${VAR} substituted, the secret left as a reference.
            (
                "/myapp/url".to_owned(),
                json!("pg://db1/${secret:db-password}")
            ),
        ]
    );
    edge.wait_for_watchers(1).await;
    // A variable changes: with resolve, the values using it change.
    let revision = edge.commit(vec![Op::Put(
        "/env/prod",
        json!({"variables": {"HOST": "db2"}}),
    )]);
    let (events, id) = batch(&mut sse).await;
    assert_eq!(id, revision.to_string());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["path"], "/myapp/url");
    assert_eq!(events[0]["value"], "pg://db2/${secret:db-password}");

    let (status, body) = {
        let response = reqwest::get(edge.url("/api/config/myapp?watch=true&env=nope"))
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\" does not exist"),
        "{body}"
    );
    let response = reqwest::get(edge.url("/api/config/env/prod?watch=true&env=prod"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    edge.stop().await;
}

fn watch(prefix: &str, env: &str, from_revision: Option<i64>) -> pb::WatchRequest {
    pb::WatchRequest {
        prefixes: vec![prefix.to_owned()],
        from_revision,
        instance_id: "env-test".to_owned(),
        env: Some(env.to_owned()),
        resolve: false,
    }
}

#[tokio::test]
async fn grpc_env_watch_streams_effective_changes_and_resumes() {
    let edge = TestEdge::start().await;
    let start = seed(&edge);
    let mut client = EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap();
    let mut stream = client
        .watch(watch("/myapp", "prod", None))
        .await
        .unwrap()
        .into_inner();
    edge.wait_for_watchers(1).await;
    edge.commit(vec![Op::Put("/env/prod-eu/myapp/db/host", json!("eu"))]);
    let revision = edge.commit(vec![Op::Put(
        "/env/prod/myapp/db/host",
        json!({"h": "prod-db"}),
    )]);
    let message = harness::next_message(&mut stream).await;
    assert_eq!(
        message.revision, revision,
        "prod-eu's override is not prod's"
    );
    assert!(!message.reset);
    let event = &message.events[0];
    assert_eq!(event.path, "/myapp/db/host");
    assert_eq!(event.old_value.as_deref(), Some("\"localhost\""));
    assert_eq!(event.new_value.as_deref(), Some("{\"h\":\"prod-db\"}"));
    assert_eq!(event.format, "json");
    assert_eq!(
        event.version, 1,
        "the override's version, as Get with env answers"
    );
    let got = client
        .get(pb::GetRequest {
            path: "/myapp/db/host".into(),
            env: Some("prod".into()),
            version: None,
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(Some(got.value), event.new_value);
    assert_eq!(got.version, event.version);

    let mut resumed = client
        .watch(watch("/myapp", "prod", Some(start)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(harness::next_message(&mut resumed).await, message);

    let status = client
        .watch(watch("/myapp", "nope", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    edge.stop().await;
}

fn account(id: &str, key: &setpoint_core::auth::NewKey, prefixes: &[&str]) -> Value {
    serde_json::to_value(Account {
        id: id.into(),
        description: None,
        grants: prefixes
            .iter()
            .map(|prefix| Grant {
                prefix: (*prefix).into(),
                actions: [Action::Read].into(),
            })
            .collect(),
        keys: vec![key.record.clone()],
        disabled: false,
    })
    .unwrap()
}

/// Issue 11, finding 6: a watch in an environment needs what reading in it needs — `read` on
/// the base paths *and* on their overrides in every environment of the chain; a grant on the
/// base path alone, or on the override alone, watches nothing there.
#[tokio::test]
async fn an_env_watch_needs_what_reading_with_env_needs() {
    let edge = TestEdge::start_with(EdgeConfig::default()).await;
    let reader = new_key(&[2; 32], &[2; 9], 0, None);
    let base_only = new_key(&[3; 32], &[3; 9], 0, None);
    let env_only = new_key(&[4; 32], &[4; 9], 0, None);
    edge.commit(vec![
        Op::Put(
            "/_setpoint/accounts/reader",
            account("reader", &reader, &["/myapp/db", "/env/prod/myapp/db"]),
        ),
        Op::Put(
            "/_setpoint/accounts/base-only",
            account("base-only", &base_only, &["/myapp/db"]),
        ),
        Op::Put(
            "/_setpoint/accounts/env-only",
            account("env-only", &env_only, &["/env/prod/myapp/db"]),
        ),
    ]);
    seed(&edge);
    let status = |path: &'static str, token: &str| {
        let url = edge.url(path);
        let token = token.to_owned();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (reader_key, base_key, env_key) = (&reader.token, &base_only.token, &env_only.token);
    assert_eq!(
        status("/api/config/myapp/db/host?env=prod", reader_key).await,
        200
    );
    assert_eq!(
        status("/api/config/myapp/url?env=prod", reader_key).await,
        403
    );
    assert_eq!(
        status("/api/config/myapp?watch=true&env=prod", reader_key).await,
        403
    );
    // prod-eu's chain is prod-eu, prod: the reader has no grant on prod-eu's layer.
    assert_eq!(
        status("/api/config/myapp/db?watch=true&env=prod-eu", reader_key).await,
        403
    );
    for key in [base_key, env_key] {
        assert_eq!(status("/api/config/myapp/db/host?env=prod", key).await, 403);
        assert_eq!(
            status("/api/config/myapp/db?watch=true&env=prod", key).await,
            403
        );
    }
    // Without an environment, the base grant decides as before.
    assert_eq!(
        status("/api/config/myapp/db?watch=true", base_key).await,
        200
    );
    let mut grpc = EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap();
    for (key, allowed) in [(reader_key, true), (base_key, false), (env_key, false)] {
        let mut request = tonic::Request::new(watch("/myapp/db", "prod", None));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        let result = grpc.watch(request).await;
        match allowed {
            true => assert!(result.is_ok(), "{result:?}"),
            false => assert_eq!(result.unwrap_err().code(), Code::PermissionDenied),
        }
    }
    let mut sse = SseReader::open_with_key(
        &edge.url("/api/config/myapp/db?watch=true&env=prod"),
        None,
        Some(reader_key),
    )
    .await;
    // Registered before the answer's head was sent (other watches of this test may still be
    // closing, so no count to wait for).
    let revision = edge.commit(vec![Op::Put("/env/prod/myapp/db/host", json!("p"))]);
    let frame = sse.next().await;
    assert_eq!(frame.id, Some(revision.to_string()));
    assert_eq!(frame.json()["value"], "p");
    edge.stop().await;
}

/// An open watch in an environment ends, before it shows a value from there, when its
/// environment is given a parent whose layer the caller may not read — at once, not at the next
/// periodic check: the hierarchy is part of the rule.
#[tokio::test]
async fn an_env_watch_ends_when_its_chain_gains_a_layer_the_caller_may_not_read() {
    let edge = TestEdge::start_with(EdgeConfig::default()).await;
    let reader = new_key(&[5; 32], &[5; 9], 0, None);
    edge.commit(vec![Op::Put(
        "/_setpoint/accounts/reader",
        account("reader", &reader, &["/myapp", "/env/staging/myapp"]),
    )]);
    seed(&edge);
    edge.commit(vec![
        Op::Put("/env/staging", json!({})),
        Op::Put("/env/shared", json!({})),
        Op::Put("/env/shared/myapp/db/host", json!("shared-db")),
    ]);
    let mut sse = SseReader::open_with_key(
        &edge.url("/api/config/myapp?watch=true&env=staging"),
        None,
        Some(&reader.token),
    )
    .await;
    edge.wait_for_watchers(1).await;
    let revision = edge.commit(vec![Op::Put("/env/staging/myapp/db/host", json!("s"))]);
    let frame = sse.next().await;
    assert_eq!(frame.id, Some(revision.to_string()));
    assert_eq!(frame.json()["value"], "s");
    // staging gets shared as its parent: the batch would show shared's layer, so the watch ends
    // instead — checked on the change of the hierarchy itself, whenever the periodic recheck is
    // due.
    edge.commit(vec![
        Op::Delete("/env/staging/myapp/db/host"),
        Op::Put("/env/staging", json!({"parent": "shared"})),
    ]);
    let last = sse.next().await;
    assert_eq!(last.event.as_deref(), Some("error"), "{}", last.data);
    assert_eq!(last.json()["error"]["code"], "forbidden");
    assert!(!last.data.contains("shared-db"), "{}", last.data);
    assert!(sse.wait_for_end().await, "the SSE stream ends");
    edge.stop().await;
}

//! The writer's REST API over real HTTP, against both stores (a real etcd, and the embedded
//! store). Each case is written once and instantiated per backend by `both_stores!`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use setpoint_tests::writer::{Backend, TestWriter};
use setpoint_writer::WriterConfig;

setpoint_tests::both_stores!(
    seed_demo,
    crud_list_history_and_versions,
    delete_then_recreate_continues_versions,
    diff_json_patch_and_unified,
    batch_is_one_revision_all_or_nothing,
    validation_schema_types_formats_required,
    validation_custom_validators,
    prefix_schemas_govern_everything_below,
    concurrent_puts_get_consecutive_versions,
    if_match_lets_exactly_one_racer_win,
    bad_input_is_rejected_and_nothing_stored,
    retention_keeps_the_current_version,
    restart_keeps_everything,
    history_is_paginated,
    etag_and_conditional_requests,
    list_method_and_recursive_listing,
    operations_endpoints,
);

async fn put(w: &TestWriter, path: &str, body: Value) -> (StatusCode, Value) {
    let response = w
        .http
        .put(w.config_url(path))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(w: &TestWriter, path_and_query: &str) -> (StatusCode, Value) {
    let response = w
        .http
        .get(w.config_url(path_and_query))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(w: &TestWriter, path: &str) -> (StatusCode, Value) {
    let response = w.http.delete(w.config_url(path)).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn versions(history: &Value) -> Vec<u64> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect()
}

async fn seed_demo(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let path = "/myapp/database/connection_string";
    let (status, body) = put(
        &w,
        path,
        json!({"value": "postgres://localhost:5432/mydb", "description": "Primary database connection",
               "schema": {"type": "string", "format": "uri"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["path"], path);
    assert_eq!(body["version"], 1);
    assert!(body["revision"].as_i64().unwrap() > 0);

    let (status, body) = get(&w, path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], "postgres://localhost:5432/mydb");
    assert_eq!(body["version"], 1);
    assert_eq!(body["description"], "Primary database connection");
    assert!(body["updated_at"].as_str().unwrap().contains('T'));

    let (status, body) = put(&w, path, json!({"value": "postgres://newhost:5432/mydb"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    // Metadata and schema carry over when a write leaves them out.
    let (_, current) = get(&w, path).await;
    assert_eq!(current["description"], "Primary database connection");
    let (status, _) = put(&w, path, json!({"value": "not a uri"})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the stored schema still applies"
    );

    let (status, history) = get(&w, &format!("{path}/history")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions(&history), vec![2, 1]);
    assert_eq!(history[0]["value"], "postgres://newhost:5432/mydb");
    assert_eq!(history[1]["value"], "postgres://localhost:5432/mydb");

    let (status, old) = get(&w, &format!("{path}?version=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(old["value"], "postgres://localhost:5432/mydb");
    assert_eq!(old["version"], 1);

    put(&w, "/myapp/database/pool_size", json!({"value": 10})).await;
    put(&w, "/myapp/database/timeout", json!({"value": "30s"})).await;
    let (status, listing) = get(&w, "/myapp/database").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listing["children"],
        json!(["connection_string", "pool_size", "timeout"])
    );
}

async fn crud_list_history_and_versions(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let (status, first) = put(
        &w,
        "/shop/cart/limits",
        json!({"value": {"max_items": 10, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, second) = put(
        &w,
        "/shop/cart/limits",
        json!({"value": {"max_items": 20, "currency": "EUR"}}),
    )
    .await;
    assert!(
        second["revision"].as_i64() > first["revision"].as_i64(),
        "revisions grow"
    );
    put(
        &w,
        "/shop/cart/flags",
        json!({"value": "beta: true\nregions: [eu, us]\n", "format": "yaml"}),
    )
    .await;
    put(
        &w,
        "/shop/motd",
        json!({"value": "hello\nworld", "format": "text"}),
    )
    .await;

    let (_, limits) = get(&w, "/shop/cart/limits").await;
    assert_eq!(limits["value"], json!({"max_items": 20, "currency": "EUR"}));
    assert_eq!(limits["format"], "json");
    let (_, flags) = get(&w, "/shop/cart/flags").await;
    assert_eq!(flags["format"], "yaml");
    assert_eq!(
        flags["value"], "beta: true\nregions: [eu, us]\n",
        "YAML comes back as written"
    );
    let (_, motd) = get(&w, "/shop/motd").await;
    assert_eq!(motd["value"], "hello\nworld");

    let (_, shop) = get(&w, "/shop").await;
    assert_eq!(shop["children"], json!(["cart", "motd"]));
    let (_, root) = get(&w, "/").await;
    // `env` holds the default environments' definitions (/env/dev, /env/staging, /env/prod).
    assert_eq!(root["children"], json!(["env", "shop"]));
    let (status, _) = get(&w, "/shop/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, deleted) = delete(&w, "/shop/motd").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["version"], 2);
    assert_eq!(deleted["deleted"], true);
    let (status, err) = get(&w, "/shop/motd").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    let (_, shop) = get(&w, "/shop").await;
    assert_eq!(
        shop["children"],
        json!(["cart"]),
        "deleted configs leave listings"
    );
    let (_, history) = get(&w, "/shop/motd/history").await;
    assert_eq!(versions(&history), vec![2, 1]);
    assert_eq!(history[0]["deleted"], true);
    let (status, _) = get(&w, "/shop/motd?version=1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&w, "/shop/motd?version=2").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a tombstone version has no value"
    );
    let (status, _) = delete(&w, "/shop/motd").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice");
}

async fn delete_then_recreate_continues_versions(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/a/b", json!({"value": 1})).await;
    put(&w, "/a/b", json!({"value": 2})).await;
    delete(&w, "/a/b").await;
    let (status, body) = put(&w, "/a/b", json!({"value": 4})).await;
    assert_eq!(status, StatusCode::CREATED, "re-create");
    assert_eq!(body["version"], 4);
    let (_, history) = get(&w, "/a/b/history").await;
    assert_eq!(versions(&history), vec![4, 3, 2, 1]);
}

async fn diff_json_patch_and_unified(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(
        &w,
        "/svc/conf",
        json!({"value": {"port": 80, "hosts": ["a"]}}),
    )
    .await;
    put(
        &w,
        "/svc/conf",
        json!({"value": {"port": 8080, "hosts": ["a", "b"]}}),
    )
    .await;
    let (status, diff) = get(&w, "/svc/conf/diff?from=1&to=2").await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(diff["kind"], "json_patch");
    let patch: json_patch::Patch = serde_json::from_value(diff["patch"].clone()).unwrap();
    let mut doc = json!({"port": 80, "hosts": ["a"]});
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc, json!({"port": 8080, "hosts": ["a", "b"]}));

    put(
        &w,
        "/svc/notes",
        json!({"value": "one\ntwo\n", "format": "text"}),
    )
    .await;
    put(
        &w,
        "/svc/notes",
        json!({"value": "one\nthree\n", "format": "text"}),
    )
    .await;
    let (_, diff) = get(&w, "/svc/notes/diff?from=1&to=2").await;
    assert_eq!(diff["kind"], "unified");
    let text = diff["text"].as_str().unwrap();
    assert!(text.contains("-two") && text.contains("+three"), "{text}");
    let (status, _) = get(&w, "/svc/notes/diff?from=1&to=9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn batch_is_one_revision_all_or_nothing(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/b/old", json!({"value": "x"})).await;
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(
            json!({"changes": [
                {"op": "put", "path": "/b/one", "value": 1},
                {"op": "put", "path": "/b/two", "value": {"k": "v"}},
                {"op": "delete", "path": "/b/old"}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let revision = body["revision"].as_i64().unwrap();
    for path in ["/b/one", "/b/two"] {
        let (_, entry) = get(&w, path).await;
        assert_eq!(
            entry["revision"].as_i64().unwrap(),
            revision,
            "{path} committed at the batch's revision"
        );
    }
    let (_, history) = get(&w, "/b/old/history").await;
    assert_eq!(history[0]["revision"].as_i64().unwrap(), revision);

    // One invalid change rejects the whole batch.
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(
            json!({"changes": [
                {"op": "put", "path": "/b/three", "value": 3},
                {"op": "put", "path": "/b/bad", "value": "x", "schema": {"type": "integer"}}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = get(&w, "/b/three").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of a rejected batch is written"
    );

    // Too many changes for one store transaction is a clear 413, not a store error.
    let changes: Vec<Value> = (0..64)
        .map(|i| json!({"op": "put", "path": format!("/b/many/k{i}"), "value": i}))
        .collect();
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(json!({ "changes": changes }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let changes: Vec<Value> = (0..63)
        .map(|i| json!({"op": "put", "path": format!("/b/many/k{i}"), "value": i}))
        .collect();
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(json!({ "changes": changes }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "63 changes (and the audit record) fit etcd's default 128 operations"
    );

    // A failed if_match rejects it too, and names the change.
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(
            json!({"changes": [
                {"op": "put", "path": "/b/three", "value": 3},
                {"op": "put", "path": "/b/one", "value": 5, "if_match": 7}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["details"]["index"], 1);
    let (status, _) = get(&w, "/b/three").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn validation_schema_types_formats_required(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let (status, err) = put(
        &w,
        "/v/url",
        json!({"value": "not a uri", "schema": {"type": "string", "format": "uri"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "validation_failed");
    assert_eq!(err["error"]["details"]["violations"][0]["pointer"], "");
    let (status, _) = get(&w, "/v/url").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");

    let schema = json!({
        "type": "object",
        "required": ["host", "port"],
        "properties": {"host": {"type": "string"}, "port": {"type": "integer", "minimum": 1}}
    });
    let (status, err) = put(
        &w,
        "/v/db",
        json!({"value": {"port": "eighty"}, "schema": schema}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let violations = err["error"]["details"]["violations"].as_array().unwrap();
    assert_eq!(
        violations.len(),
        2,
        "every violation listed: {violations:?}"
    );
    assert!(violations.iter().any(|v| v["pointer"] == "/port"));
    assert!(
        violations
            .iter()
            .any(|v| v["pointer"] == "" && v["message"].as_str().unwrap().contains("host"))
    );

    let (status, _) = put(
        &w,
        "/v/db",
        json!({"value": {"host": "h", "port": 5432}, "schema": schema}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = put(&w, "/v/db", json!({"value": {"host": "h", "port": 0}})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema enforced on later writes"
    );
    // YAML is validated after parsing.
    let (status, _) = put(
        &w,
        "/v/db",
        json!({"value": "host: h\nport: nope\n", "format": "yaml"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = put(
        &w,
        "/v/db",
        json!({"value": "host: h\nport: 6543\n", "format": "yaml"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A new schema must accept the value written with it; null clears the schema.
    let (status, _) = put(
        &w,
        "/v/db",
        json!({"value": {"host": "h"}, "schema": {"type": "array"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = put(&w, "/v/db", json!({"value": [1, 2], "schema": null})).await;
    assert_eq!(status, StatusCode::OK);
    // An invalid schema is a 400.
    let (status, err) = put(
        &w,
        "/v/other",
        json!({"value": 1, "schema": {"type": "no-such-type"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_schema");
}

async fn validation_custom_validators(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let validators = json!([{"regex": "^[a-z]+-[0-9]+$"}, {"enum": ["web-1", "web-2"]}]);
    let (status, err) = put(
        &w,
        "/c/host",
        json!({"value": "Web-3", "validators": validators}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let sources: Vec<&str> = err["error"]["details"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, vec!["validator:regex", "validator:enum"]);
    let (status, _) = put(
        &w,
        "/c/host",
        json!({"value": "web-2", "validators": validators}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = put(&w, "/c/host", json!({"value": "web-9"})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validators persist"
    );
    let (status, err) = put(
        &w,
        "/c/other",
        json!({"value": "x", "validators": [{"regex": "("}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = put(
        &w,
        "/c/other",
        json!({"value": "x", "validators": [{"shape": "round"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn prefix_schemas_govern_everything_below(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/p/svc/port", json!({"value": 8080})).await;
    let schema_url = w.url("/api/schemas/p/svc");
    // A schema that existing values violate is refused, with every violation listed.
    let response = w
        .http
        .put(&schema_url)
        .body(json!({"schema": {"type": "string"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["details"]["violations"][0]["path"],
        "/p/svc/port"
    );

    let response = w
        .http
        .put(&schema_url)
        .body(json!({"schema": {"type": "integer", "maximum": 65535}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, err) = put(&w, "/p/svc/deep/er", json!({"value": 70000})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        err["error"]["details"]["violations"][0]["source"],
        "schema:/p/svc"
    );
    let (status, _) = put(&w, "/env/prod/p/svc/port", json!({"value": "x"})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "overrides are governed too"
    );
    let (status, _) = put(&w, "/p/other", json!({"value": "free"})).await;
    assert_eq!(status, StatusCode::CREATED, "outside the prefix");
    let (status, _) = put(&w, "/p/svcx", json!({"value": "free"})).await;
    assert_eq!(status, StatusCode::CREATED, "prefixes match by segment");

    let listed: Value = w
        .http
        .get(w.url("/api/schemas"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["schemas"][0]["prefix"], "/p/svc");
    let response = w.http.delete(&schema_url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = put(&w, "/p/svc/deep/er", json!({"value": 70000})).await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn concurrent_puts_get_consecutive_versions(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = w.http.clone();
        let url = w.config_url("/race/counter");
        tasks.push(tokio::spawn(async move {
            let response = http
                .put(url)
                .body(json!({"value": i}).to_string())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let body: Value = response.json().await.unwrap();
            body["version"].as_u64().unwrap()
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=100).collect::<Vec<u64>>(),
        "each version exactly once"
    );
    let (_, history) = get(&w, "/race/counter/history?limit=1000").await;
    assert_eq!(history.as_array().unwrap().len(), 100);
}

async fn if_match_lets_exactly_one_racer_win(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/race/guarded", json!({"value": 0})).await;
    for version in 1..=5u64 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let http = w.http.clone();
            let url = w.config_url("/race/guarded");
            tasks.push(tokio::spawn(async move {
                http.put(url)
                    .header("If-Match", format!("\"{version}\""))
                    .body(json!({"value": i}).to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        let wins = statuses.iter().filter(|s| s.is_success()).count();
        let lost = statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count();
        assert_eq!((wins, lost), (1, 7), "version {version}: {statuses:?}");
    }
    let (_, current) = get(&w, "/race/guarded").await;
    assert_eq!(current["version"], 6);
}

async fn bad_input_is_rejected_and_nothing_stored(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let cases: Vec<(&str, String, Option<&str>, StatusCode)> = vec![
        (
            "/bad/json",
            "{not json".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        ("/bad/json", "".to_owned(), None, StatusCode::BAD_REQUEST),
        (
            "/bad/json",
            json!({"valu": 1}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/json",
            json!({"value": 1, "extra": true}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/yaml",
            json!({"value": "a: [1, 2", "format": "yaml"}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/yaml",
            json!({"value": {"a": 1}, "format": "yaml"}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/format",
            json!({"value": 1, "format": "toml"}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/ctype",
            "hello".to_owned(),
            Some("text/plain"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/ctype",
            "<x/>".to_owned(),
            Some("application/xml"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad//empty",
            json!({"value": 1}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/sp%20ace",
            json!({"value": 1}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/bad/history",
            json!({"value": 1}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/env/prod",
            json!({"value": 1}).to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, content_type, expected) in cases {
        let mut request = w
            .http
            .put(w.url(&format!("/api/config{path}")))
            .body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let error: Value = response.json().await.unwrap();
        assert_eq!(status, expected, "PUT {path} {body:?}: {error}");
        assert!(
            error["error"]["code"].is_string() && error["error"]["message"].is_string(),
            "{error}"
        );
    }
    // HTTP clients normalise `..` away before sending, so send it raw, and through a batch.
    assert_eq!(
        raw_put(&w, "/api/config/bad/../etc", "{\"value\": 1}").await,
        400
    );
    assert_eq!(
        raw_put(&w, "/api/config/bad/./etc", "{\"value\": 1}").await,
        400
    );
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(json!({"changes": [{"op": "put", "path": "/bad/../etc", "value": 1}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let too_large = "x".repeat((1 << 20) + 1);
    let (status, error) = put(
        &w,
        "/bad/large",
        json!({"value": too_large, "format": "text"}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576"),
        "{error}"
    );
    // Exactly 1 MiB fits, on etcd too.
    let (status, body) = put(
        &w,
        "/big/value",
        json!({"value": "y".repeat(1 << 20), "format": "text"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, big) = get(&w, "/big/value").await;
    assert_eq!(big["value"].as_str().unwrap().len(), 1 << 20);

    let (status, root) = get(&w, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        root["children"],
        json!(["big", "env"]),
        "nothing of the bad requests was stored"
    );
    // Bad query parameters and bad If-Match are clear 400s too.
    let (status, _) = get(&w, "/big/value?version=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = w
        .http
        .put(w.config_url("/big/value"))
        .header("If-Match", "yesterday")
        .body("{\"value\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // And the process still serves.
    let (status, _) = get(&w, "/big/value").await;
    assert_eq!(status, StatusCode::OK);
}

/// Sends one PUT exactly as written (no client-side path normalisation); returns the status.
async fn raw_put(w: &TestWriter, target: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = w.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        setpoint_tests::writer::test_admin_key(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A clock that can be moved forward: versions are written at real time, then aged past a
/// retention policy's `days` at once.
struct AgingClock(std::sync::atomic::AtomicI64);

impl setpoint_writer::model::Clock for AgingClock {
    fn now(&self) -> time::OffsetDateTime {
        let ahead = self.0.load(std::sync::atomic::Ordering::SeqCst);
        time::OffsetDateTime::now_utc() + time::Duration::seconds(ahead)
    }
}

/// Issue 10: this test used `keep:3`, which keeps the newest version by itself, so it would pass
/// with retention free to remove the current one; and its delete targeted a path never written.
/// `days:1` with every version aged two days would remove everything but for the rule that the
/// current version — a value or a tombstone — always stays.
async fn retention_keeps_the_current_version(backend: Backend) {
    let clock = Arc::new(AgingClock(std::sync::atomic::AtomicI64::new(0)));
    let mut config = WriterConfig::new(backend.spec());
    config.retention = vec![setpoint_core::retention::Rule::parse("/kept=days:1").unwrap()];
    config.compaction_interval = Duration::from_millis(200);
    config.clock = setpoint_writer::model::SharedClock(clock.clone());
    let w = TestWriter::start_with(config).await;
    for i in 0..5 {
        put(&w, "/kept/a", json!({"value": i})).await;
        put(&w, "/kept/gone", json!({"value": i})).await;
        put(&w, "/free/a", json!({"value": i})).await;
    }
    let (status, body) = delete(&w, "/kept/gone").await;
    assert!(status.is_success(), "{status}: {body}");
    // Young versions are kept whatever their number (the job runs every 200 ms).
    let (_, history) = get(&w, "/kept/a/history").await;
    assert_eq!(versions(&history), vec![5, 4, 3, 2, 1]);

    clock
        .0
        .store(2 * 86_400, std::sync::atomic::Ordering::SeqCst);
    let trimmed = setpoint_tests::wait_until(Duration::from_secs(20), || async {
        let (_, a) = get(&w, "/kept/a/history").await;
        let (_, gone) = get(&w, "/kept/gone/history").await;
        a.as_array().is_some_and(|h| h.len() == 1) && gone.as_array().is_some_and(|h| h.len() == 1)
    })
    .await;
    let (_, history) = get(&w, "/kept/a/history").await;
    assert!(
        trimmed,
        "retention did not age out the old versions: {history}"
    );
    assert_eq!(
        versions(&history),
        vec![5],
        "only the current version stays"
    );
    let (status, current) = get(&w, "/kept/a").await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert_eq!(
        (&current["version"], &current["value"]),
        (&json!(5), &json!(4))
    );
    let (status, _) = get(&w, "/kept/a?version=4").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "removed by retention");
    // A deleted path keeps its tombstone as its current version: still deleted, and a new
    // write continues after it.
    let (_, history) = get(&w, "/kept/gone/history").await;
    assert_eq!(versions(&history), vec![6], "{history}");
    let (status, _) = get(&w, "/kept/gone").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "still deleted");
    let (status, body) = put(&w, "/kept/gone", json!({"value": "back"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 7, "{body}");
    let (_, untouched) = get(&w, "/free/a/history").await;
    assert_eq!(
        versions(&untouched),
        vec![5, 4, 3, 2, 1],
        "no rule, full history"
    );
}

async fn restart_keeps_everything(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/durable/a", json!({"value": {"x": 1}})).await;
    put(&w, "/durable/a", json!({"value": {"x": 2}})).await;
    w.stop().await;
    let w = TestWriter::start(&backend).await;
    let (status, entry) = get(&w, "/durable/a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entry["value"], json!({"x": 2}));
    let (status, next) = put(&w, "/durable/a", json!({"value": {"x": 3}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next["version"], 3);
}

async fn history_is_paginated(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    for i in 0..7 {
        put(&w, "/pages/a", json!({"value": i})).await;
    }
    let response = w
        .http
        .get(w.config_url("/pages/a/history?limit=3"))
        .send()
        .await
        .unwrap();
    let link = response
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let page: Value = response.json().await.unwrap();
    assert_eq!(versions(&page), vec![7, 6, 5]);
    assert!(
        link.contains("before=5") && link.contains("rel=\"next\""),
        "{link}"
    );
    let (_, page) = get(&w, "/pages/a/history?limit=3&before=5").await;
    assert_eq!(versions(&page), vec![4, 3, 2]);
    let response = w
        .http
        .get(w.config_url("/pages/a/history?limit=3&before=2"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("link").is_none(),
        "last page has no next link"
    );
    let page: Value = response.json().await.unwrap();
    assert_eq!(versions(&page), vec![1]);
    let (status, _) = get(&w, "/pages/never/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&w, "/pages/a/history?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn etag_and_conditional_requests(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let response = w
        .http
        .put(w.config_url("/tag/a"))
        .body("{\"value\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let response = w.http.get(w.config_url("/tag/a")).send().await.unwrap();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let response = w
        .http
        .get(w.config_url("/tag/a"))
        .header("If-None-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    // If-None-Match as the edges read it (setpoint_serving::conditional): a list over several
    // header lines, weak tags compared weakly, tags compared as text.
    for (lines, expected) in [
        (&["\"7\"", "W/\"1\""][..], StatusCode::NOT_MODIFIED),
        (&["\"2\", \"3\""][..], StatusCode::OK),
        (&["\"01\""][..], StatusCode::OK),
        (&["*"][..], StatusCode::NOT_MODIFIED),
    ] {
        let mut request = w.http.get(w.config_url("/tag/a"));
        for line in lines {
            request = request.header("If-None-Match", *line);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "If-None-Match {lines:?}");
        assert_eq!(response.headers()["etag"], "\"1\"");
    }
    for (if_match, expected) in [
        ("\"2\"", StatusCode::PRECONDITION_FAILED),
        ("1", StatusCode::OK),
        ("*", StatusCode::OK),
    ] {
        let response = w
            .http
            .put(w.config_url("/tag/a"))
            .header("If-Match", if_match)
            .body("{\"value\": 2}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "If-Match {if_match}");
    }
    let response = w
        .http
        .put(w.config_url("/tag/new"))
        .header("If-Match", "*")
        .body("{\"value\": 2}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::PRECONDITION_FAILED,
        "* needs an existing value"
    );
    let response = w
        .http
        .put(w.config_url("/tag/new"))
        .header("If-Match", "0")
        .body("{\"value\": 2}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "0 means must not exist"
    );
    let response = w
        .http
        .delete(w.config_url("/tag/a"))
        .header("If-Match", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let response = w
        .http
        .delete(w.config_url("/tag/a"))
        .header("If-Match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn list_method_and_recursive_listing(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/l/a", json!({"value": 1})).await;
    put(&w, "/l/a/deep", json!({"value": 2})).await;
    put(&w, "/l/b/c/d", json!({"value": 3})).await;
    // `/l/a-b` sorts between `/l/a` and `/l/a/deep` in key order; `a` is still listed once.
    put(&w, "/l/a-b", json!({"value": 4})).await;
    let list = Method::from_bytes(b"LIST").unwrap();
    let response = w
        .http
        .request(list.clone(), w.config_url("/l"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["children"], json!(["a", "a-b", "b"]));
    let response = w
        .http
        .request(list, w.config_url("/l?recursive=true"))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let paths: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["/l/a", "/l/a-b", "/l/a/deep", "/l/b/c/d"]);
    // A path with a value and children: GET gives the value, list=true the children.
    let (_, value) = get(&w, "/l/a").await;
    assert_eq!(value["value"], 1);
    let (_, children) = get(&w, "/l/a?list=true").await;
    assert_eq!(children["children"], json!(["deep"]));
    let (status, empty) = get(&w, "/nothing/here?list=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty["children"], json!([]));
}

async fn operations_endpoints(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/ops/a", json!({"value": 1})).await;
    let health: Value = w
        .http
        .get(w.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["store"], backend.name());
    let metrics = w
        .http
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "setpoint_http_requests_total{method=\"PUT\",route=\"/api/config/{*path}\",status=\"201\"} 1",
        "setpoint_http_request_duration_seconds_bucket",
        "setpoint_store_operation_duration_seconds_bucket{op=\"txn\",outcome=\"ok\"",
        // The three default environments, the admin account, then the PUT.
        "setpoint_commits_total 5",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    let openapi: Value = w
        .http
        .get(w.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for route in [
        "/api/config/{path}",
        "/api/config/{path}/history",
        "/api/config/{path}/diff",
        "/api/batch",
        "/api/schemas/{prefix}",
        "/api/config/{path}/rollout",
        "/api/rollouts/{id}/{action}",
        "/readyz",
    ] {
        assert!(openapi["paths"][route].is_object(), "openapi lacks {route}");
    }
    // The read schemas are the types the writer and the edges serialize: every field a GET or
    // a listing answers is one the document describes.
    let schemas = &openapi["components"]["schemas"];
    let (_, entry) = get(&w, "/ops/a").await;
    let (_, listing) = get(&w, "/ops?list=true&recursive=true").await;
    for (schema, body) in [("EntryBody", &entry), ("ListingBody", &listing)] {
        let described = &schemas[schema]["properties"];
        assert!(described.is_object(), "openapi lacks the {schema} schema");
        for field in body.as_object().unwrap().keys() {
            assert!(
                described[field].is_object(),
                "{schema} lacks {field}: {body}"
            );
        }
    }
    let response = w.http.get(w.url("/no/such/route")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// Where a watch of the whole store from `from` says the log was compacted: `Some(compacted)`,
/// or `None` while `from` is still in the log.
async fn compacted_at(store: &setpoint_writer::store::etcd::EtcdStore, from: i64) -> Option<i64> {
    use futures::StreamExt;
    use setpoint_writer::store::{Store, StoreError};
    match store.watch("", from).await {
        Err(StoreError::Compacted { compacted, .. }) => Some(compacted),
        Err(other) => panic!("watch from {from}: {other}"),
        // etcd reports compaction as the stream's first item.
        Ok(mut stream) => {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(Err(StoreError::Compacted { compacted, .. }))) => Some(compacted),
                Ok(Some(Ok(_))) => None,
                other => panic!("watch from {from}: {other:?}"),
            }
        }
    }
}

/// The README's claim that the writer compacts the store's revision log (etcd's would grow
/// without bound): after more writes than `keep_store_revisions`, the leader's compaction job
/// has compacted it — an old revision is refused as compacted — while keeping at least the
/// newest `keep_store_revisions` revisions. (The embedded store's compaction is the same call,
/// covered by `store_conformance`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_compacts_the_stores_revision_log() {
    let etcd = setpoint_tests::etcd::EtcdServer::start();
    let endpoint = etcd.endpoint();
    let backend = Backend::Etcd(etcd);
    let mut config = WriterConfig::new(backend.spec());
    config.keep_store_revisions = 10;
    config.compaction_interval = Duration::from_millis(200);
    let w = TestWriter::start_with(config).await;
    let store =
        setpoint_writer::store::etcd::EtcdStore::connect(&[endpoint], Duration::from_secs(2))
            .await
            .unwrap();
    assert_eq!(compacted_at(&store, 2).await, None, "nothing compacted yet");
    for i in 0..40 {
        let (status, body) = put(&w, "/log/k", json!({"value": i})).await;
        assert!(status.is_success(), "{body}");
    }
    let compacted = setpoint_tests::wait_until(Duration::from_secs(20), || async {
        compacted_at(&store, 2).await.is_some()
    })
    .await;
    assert!(compacted, "the writer never compacted the store's log");
    let compacted = compacted_at(&store, 2).await.unwrap();
    let current = setpoint_writer::store::Store::current_revision(&store)
        .await
        .unwrap();
    assert!(
        compacted > 2 && compacted <= current - 10,
        "compacted to {compacted}; the newest 10 of {current} must stay"
    );
}

/// Issue 11, finding 8: the OpenAPI document describes the API. Statically: every operation
/// but health names the `bearer` scheme and answers 401 and 429; every error answer is one of
/// the shared ones; every JSON answer has a schema. Against reality: one call of each operation
/// (and its usual failures) on a running writer answers a status the document lists for it,
/// with a content type it lists, and a JSON body its schema accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_8_the_openapi_document_describes_every_answer() {
    let w = TestWriter::start(&Backend::embedded()).await;
    let doc: Value = w
        .http
        .get(w.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "spk_<id>_<secret>",
               "description": "An API key: `Authorization: Bearer spk_<id>_<secret>`"})
    );
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let name = format!("{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            if !matches!(path.as_str(), "/healthz" | "/readyz") {
                assert!(
                    operation["security"]
                        .as_array()
                        .is_some_and(|s| s.contains(&json!({"bearer": []}))),
                    "{name} names no security"
                );
                for status in ["401", "429"] {
                    assert!(responses.contains_key(status), "{name} lacks {status}");
                }
            }
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{name} has no success answer"
            );
            for (status, response) in responses {
                let shared = response["$ref"].as_str();
                if status.starts_with('4') || status.starts_with('5') && path != "/readyz" {
                    assert!(
                        shared.is_some_and(|r| r.starts_with("#/components/responses/")),
                        "{name} {status} is not a shared error answer: {response}"
                    );
                }
                let response = resolve(&doc, response);
                if let Some(json) = response["content"].get("application/json") {
                    assert!(json["schema"].is_object(), "{name} {status} has no schema");
                }
            }
        }
    }
    assert!(operations >= 42, "{operations} operations");
    let mut references = Vec::new();
    collect_refs(&doc, &mut references);
    for reference in references {
        assert!(
            doc.pointer(reference.trim_start_matches('#')).is_some(),
            "dangling {reference}"
        );
    }

    // Reality: each call and the operation it is (method, documented path).
    let key_holder = "/api/accounts/doc-probe";
    let calls: Vec<(Method, &str, String, Option<Value>)> = vec![
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/a".into(),
            Some(json!({"value": {"n": 1}, "description": "d"})),
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/a".into(),
            Some(json!({"value": {"n": 2}})),
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/t".into(),
            Some(json!({"value": "x", "format": "text"})),
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/t".into(),
            None,
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/n".into(),
            Some(json!({"value": 5, "schema": true})),
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/n".into(),
            None,
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/bad".into(),
            Some(json!({"value": 1, "nope": 1})),
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/s".into(),
            Some(json!({"value": 5, "schema": {"type": "string"}})),
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/env/prod/doc/a".into(),
            Some(json!({"value": {"n": 3}})),
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/a".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/a?version=1".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/a?version=9".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc?list=true&recursive=true".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/a?env=prod&explain=true".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc?env=prod".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc?resolve=true".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc?format=yaml".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc?format=dotenv".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/doc/a?list=maybe".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}",
            "/api/config/nothing/here".into(),
            None,
        ),
        (Method::GET, "/api/config", "/api/config".into(), None),
        (
            Method::GET,
            "/api/config",
            "/api/config?format=json".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}/history",
            "/api/config/doc/a/history".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}/history",
            "/api/config/doc/a/history?limit=0".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}/diff",
            "/api/config/doc/a/diff".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}/diff",
            "/api/config/doc/t/diff?from=0&to=1".into(),
            None,
        ),
        (
            Method::GET,
            "/api/config/{path}/diff",
            "/api/config/doc/a/diff?to=7".into(),
            None,
        ),
        (
            Method::POST,
            "/api/batch",
            "/api/batch".into(),
            Some(json!({"changes": [
            {"op": "put", "path": "/doc/b", "value": [1]}, {"op": "delete", "path": "/doc/t"}]})),
        ),
        (
            Method::POST,
            "/api/batch",
            "/api/batch".into(),
            Some(json!({"changes": [{"op": "delete", "path": "/doc/none"}]})),
        ),
        (
            Method::POST,
            "/api/preview",
            "/api/preview".into(),
            Some(json!({"changes": [{"op": "put", "path": "/doc/a", "value": {"n": 3}}]})),
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/doc/scalar?dry_run=true".into(),
            Some(json!({"value": false})),
        ),
        (
            Method::POST,
            "/api/preview",
            "/api/preview".into(),
            Some(json!({"changes": [{"op": "delete", "path": "/doc/none"}]})),
        ),
        (
            Method::DELETE,
            "/api/config/{path}",
            "/api/config/doc/b".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/config/{path}",
            "/api/config/doc/b".into(),
            None,
        ),
        (
            Method::PUT,
            "/api/schemas/{prefix}",
            "/api/schemas/doc".into(),
            Some(json!({"schema": {"type": ["object", "string", "array"]}})),
        ),
        (
            Method::PUT,
            "/api/schemas/{prefix}",
            "/api/schemas/doc".into(),
            Some(json!({"schema": {"type": "boolean"}})),
        ),
        (Method::GET, "/api/schemas", "/api/schemas".into(), None),
        (
            Method::GET,
            "/api/schemas/{prefix}",
            "/api/schemas/doc".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/schemas/{prefix}",
            "/api/schemas/doc".into(),
            None,
        ),
        (
            Method::GET,
            "/api/schemas/{prefix}",
            "/api/schemas/doc".into(),
            None,
        ),
        (
            Method::PUT,
            "/api/environments/{name}",
            "/api/environments/qa".into(),
            Some(json!({"parent": "dev", "variables": {"A": "1"}})),
        ),
        (
            Method::PUT,
            "/api/environments/{name}",
            "/api/environments/qa2".into(),
            Some(json!({"parent": "nowhere"})),
        ),
        (
            Method::GET,
            "/api/environments",
            "/api/environments".into(),
            None,
        ),
        (
            Method::GET,
            "/api/environments/{name}",
            "/api/environments/qa".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/environments/{name}",
            "/api/environments/prod".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/environments/{name}",
            "/api/environments/qa".into(),
            None,
        ),
        (
            Method::GET,
            "/api/environments/{name}",
            "/api/environments/qa".into(),
            None,
        ),
        (
            Method::POST,
            "/api/accounts",
            "/api/accounts".into(),
            Some(json!({"id": "doc-probe", "grants": [{"prefix": "/doc", "actions": ["read"]}]})),
        ),
        (
            Method::POST,
            "/api/accounts",
            "/api/accounts".into(),
            Some(json!({"id": "doc-probe", "grants": []})),
        ),
        (Method::GET, "/api/accounts", "/api/accounts".into(), None),
        (Method::GET, "/api/accounts/{id}", key_holder.into(), None),
        (
            Method::PUT,
            "/api/accounts/{id}/grants",
            format!("{key_holder}/grants"),
            Some(json!({"grants": [{"prefix": "/doc", "actions": ["read", "write"]}]})),
        ),
        (
            Method::POST,
            "/api/accounts/{id}/keys",
            format!("{key_holder}/keys"),
            Some(json!({"grace_secs": 0})),
        ),
        // The body is optional: none keeps the defaults.
        (
            Method::POST,
            "/api/accounts/{id}/keys",
            format!("{key_holder}/keys"),
            None,
        ),
        (
            Method::DELETE,
            "/api/accounts/{id}/keys/{key}",
            format!("{key_holder}/keys/nokey"),
            None,
        ),
        (
            Method::DELETE,
            "/api/accounts/{id}",
            key_holder.into(),
            None,
        ),
        (Method::GET, "/api/accounts/{id}", key_holder.into(), None),
        (
            Method::PUT,
            "/api/policies/{prefix}",
            "/api/policies/gated".into(),
            Some(json!({"approvals_required": 1})),
        ),
        (
            Method::PUT,
            "/api/config/{path}",
            "/api/config/gated/x".into(),
            Some(json!({"value": 1})),
        ),
        (
            Method::GET,
            "/api/changes",
            "/api/changes?status=pending".into(),
            None,
        ),
        (
            Method::GET,
            "/api/changes",
            "/api/changes?status=bogus".into(),
            None,
        ),
        (
            Method::GET,
            "/api/changes/{id}",
            "/api/changes/none".into(),
            None,
        ),
        (
            Method::POST,
            "/api/changes/{id}/reject",
            "/api/changes/none/reject".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/policies/{prefix}",
            "/api/policies/gated".into(),
            None,
        ),
        (
            Method::DELETE,
            "/api/policies/{prefix}",
            "/api/policies/gated".into(),
            None,
        ),
        (
            Method::GET,
            "/api/audit",
            "/api/audit?limit=2&outcome=ok".into(),
            None,
        ),
        (
            Method::GET,
            "/api/audit",
            "/api/audit?since=yesterday".into(),
            None,
        ),
        (
            Method::GET,
            "/api/audit/verify",
            "/api/audit/verify".into(),
            None,
        ),
        (Method::GET, "/api/edges", "/api/edges".into(), None),
        (Method::GET, "/api/alerts", "/api/alerts".into(), None),
        (
            Method::GET,
            "/api/clients",
            "/api/clients?status=connected".into(),
            None,
        ),
        (
            Method::GET,
            "/api/clients",
            "/api/clients?status=sideways".into(),
            None,
        ),
        (
            Method::GET,
            "/api/clients/{id}",
            "/api/clients/nobody".into(),
            None,
        ),
        (
            Method::POST,
            "/api/config/{path}/rollout",
            "/api/config/doc/roll/rollout?dry_run=true".into(),
            Some(json!({"value": 1, "stages": [50, 100]})),
        ),
        (
            Method::POST,
            "/api/config/{path}/rollout",
            "/api/config/doc/roll/rollout".into(),
            Some(json!({"value": 1, "stages": [50, 100]})),
        ),
        (
            Method::POST,
            "/api/config/{path}/rollout",
            "/api/config/doc/roll/rollout".into(),
            Some(json!({"value": 1, "stages": [50, 100]})),
        ),
        (
            Method::POST,
            "/api/config/{path}/rollout",
            "/api/config/doc/roll2/rollout".into(),
            Some(json!({"value": 1, "stages": [50]})),
        ),
        (Method::GET, "/api/rollouts", "/api/rollouts".into(), None),
        (
            Method::GET,
            "/api/rollouts",
            "/api/rollouts?status=sideways".into(),
            None,
        ),
        (
            Method::GET,
            "/api/rollouts/{id}",
            "/api/rollouts/roll_none".into(),
            None,
        ),
        (
            Method::POST,
            "/api/rollouts/{id}/{action}",
            "/api/rollouts/roll_none/advance".into(),
            None,
        ),
        (Method::GET, "/healthz", "/healthz".into(), None),
        (Method::GET, "/readyz", "/readyz".into(), None),
        (Method::GET, "/metrics", "/metrics".into(), None),
        (
            Method::GET,
            "/api/openapi.json",
            "/api/openapi.json".into(),
            None,
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (index, (method, template, url, body)) in calls.iter().enumerate() {
        let mut request = w.http.request(method.clone(), w.url(url));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        check_answer(&doc, method, template, url, response).await;
        seen.insert((method.as_str().to_lowercase(), *template));
        // The door: the same call without a key, each from its own loopback address so the
        // failure limit (20 a minute per address) never turns the 401 into a 429.
        if !matches!(*template, "/healthz" | "/readyz") {
            let source = std::net::Ipv4Addr::new(127, 0, 1, u8::try_from(index + 1).unwrap());
            let anonymous = reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(source))
                .build()
                .unwrap();
            let response = anonymous
                .request(method.clone(), w.url(url))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {url}"
            );
            check_answer(&doc, method, template, url, response).await;
        }
    }
    // The change request the gated put made: read, approved by its own author, cancelled.
    let pending: Value = w
        .http
        .get(w.url("/api/changes?status=pending"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = pending["changes"][0]["id"].as_str().unwrap().to_owned();
    for (method, template, url, status) in [
        (
            Method::GET,
            "/api/changes/{id}",
            format!("/api/changes/{id}"),
            200,
        ),
        (
            Method::POST,
            "/api/changes/{id}/approve",
            format!("/api/changes/{id}/approve"),
            403,
        ),
        (
            Method::POST,
            "/api/changes/{id}/cancel",
            format!("/api/changes/{id}/cancel"),
            200,
        ),
        (
            Method::POST,
            "/api/changes/{id}/cancel",
            format!("/api/changes/{id}/cancel"),
            409,
        ),
        (
            Method::POST,
            "/api/changes/{id}/approve",
            "/api/changes/none/approve".to_owned(),
            404,
        ),
    ] {
        let response = w
            .http
            .request(method.clone(), w.url(&url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {url}");
        check_answer(&doc, &method, template, &url, response).await;
        seen.insert((method.as_str().to_lowercase(), template));
    }

    // The rollout made above: read, then steered.
    let listed: Value = w
        .http
        .get(w.url("/api/rollouts?path=/doc/roll"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = listed["rollouts"][0]["rollout_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, template, url, status) in [
        (
            Method::GET,
            "/api/rollouts/{id}",
            format!("/api/rollouts/{id}"),
            200,
        ),
        (
            Method::POST,
            "/api/rollouts/{id}/{action}",
            format!("/api/rollouts/{id}/pause"),
            200,
        ),
        (
            Method::POST,
            "/api/rollouts/{id}/{action}",
            format!("/api/rollouts/{id}/pause"),
            409,
        ),
    ] {
        let response = w
            .http
            .request(method.clone(), w.url(&url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {url}");
        check_answer(&doc, &method, template, &url, response).await;
        seen.insert((method.as_str().to_lowercase(), template));
    }

    // Every operation the document names was called.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                seen.contains(&(method.clone(), path.as_str())),
                "no call of {method} {path}"
            );
        }
    }
}

/// Every `$ref` in `value`.
fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                into.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

/// A response component's definition, for a `$ref` to one.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {reference}")),
        None => response,
    }
}

/// Checks one real answer against the document: its status is listed for the operation, its
/// content type too, and a JSON body validates against the listed schema.
async fn check_answer(
    doc: &Value,
    method: &Method,
    template: &str,
    url: &str,
    response: reqwest::Response,
) {
    let name = format!("{method} {url}");
    let status = response.status().as_u16().to_string();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    let operation = &doc["paths"][template][method.as_str().to_lowercase()];
    assert!(
        operation.is_object(),
        "{name}: the document has no {template}"
    );
    let documented = operation["responses"].get(&status).unwrap_or_else(|| {
        panic!(
            "{name} answered {status}, undocumented: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let documented = resolve(doc, documented);
    let Some(content_type) = content_type else {
        assert!(bytes.is_empty(), "{name}: a body without a content type");
        return;
    };
    let media = content_type.split(';').next().unwrap().trim();
    let content = &documented["content"][media];
    assert!(
        content.is_object(),
        "{name} {status}: content type {content_type} undocumented ({documented})"
    );
    if media == "application/json" {
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        // The schema with the document's components at its root, so its `$ref`s resolve.
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [content["schema"]],
            "components": doc["components"],
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path().as_str()))
            .collect();
        assert!(errors.is_empty(), "{name} {status}: {errors:?}\n{body}");
    }
}

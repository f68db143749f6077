//! Impact previews (`POST /api/preview`, issue 12): what a batch would do — versions, effective
//! values per environment with a diff, the environments and clients it reaches — decided as the
//! commit decides it, and nothing written.
#![allow(clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use setpoint_tests::writer::{Backend, TestWriter};

async fn send(
    w: &TestWriter,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = w.http.request(method, w.url(path));
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ok(w: &TestWriter, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, body) = send(w, method, path, body).await;
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn preview(w: &TestWriter, changes: Value) -> (StatusCode, Value) {
    send(
        w,
        Method::POST,
        "/api/preview",
        Some(json!({ "changes": changes })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_shows_versions_and_effective_values_per_environment_and_writes_nothing() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    ok(
        &w,
        Method::PUT,
        "/api/config/myapp/db",
        Some(json!({"value": {"host": "a", "port": 5432}})),
    )
    .await;
    ok(&w, Method::PUT, "/api/environments/prod", Some(json!({}))).await;
    ok(
        &w,
        Method::PUT,
        "/api/environments/staging",
        Some(json!({})),
    )
    .await;
    // (dev, staging and prod exist from the start.) staging overrides the port only, prod the
    // host: a base change of the host reaches dev and staging but not prod.
    ok(
        &w,
        Method::PUT,
        "/api/config/env/staging/myapp/db",
        Some(json!({"value": {"port": 6543}})),
    )
    .await;
    ok(
        &w,
        Method::PUT,
        "/api/config/env/prod/myapp/db",
        Some(json!({"value": {"host": "prod-db"}})),
    )
    .await;
    let before = ok(&w, Method::GET, "/api/config/myapp/db", None).await;

    let (status, body) = preview(
        &w,
        json!([{"op": "put", "path": "/myapp/db", "value": {"host": "b", "port": 5432}}]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], json!(true));
    assert_eq!(body["would"], json!("commit"));
    assert_eq!(body["changes"][0]["version"], json!(2), "{body}");
    let effective: Vec<(Value, Value, Value)> = body["effective"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["env"].clone(),
                e["before"]["host"].clone(),
                e["after"]["host"].clone(),
            )
        })
        .collect();
    assert_eq!(
        effective,
        vec![
            (Value::Null, json!("a"), json!("b")),
            (json!("dev"), json!("a"), json!("b")),
            (json!("staging"), json!("a"), json!("b")),
        ],
        "{body}"
    );
    // prod's own host wins there: the base change does not reach it.
    assert_eq!(body["environments"], json!(["dev", "staging"]));
    let diff = &body["effective"][0]["diff"];
    assert_eq!(
        diff,
        &json!([{"op": "replace", "path": "/host", "value": "b"}]),
        "{body}"
    );
    assert_eq!(body["clients"]["total"], json!(0));

    // Nothing was written.
    assert_eq!(
        ok(&w, Method::GET, "/api/config/myapp/db", None).await,
        before
    );

    // Refusals are the commit's own: a schema violation is a 422 listing it; a delete of nothing
    // a 404; a failing If-Match a 412.
    ok(
        &w,
        Method::PUT,
        "/api/config/myapp/limit",
        Some(json!({"value": 5, "schema": {"type": "integer"}})),
    )
    .await;
    let (status, body) = preview(
        &w,
        json!([{"op": "put", "path": "/myapp/limit", "value": "x"}]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = preview(&w, json!([{"op": "delete", "path": "/myapp/nothing"}])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = preview(
        &w,
        json!([{"op": "put", "path": "/myapp/limit", "value": 6, "if_match": 7}]),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    // Under an approval policy the commit would wait; the preview says so and still validates.
    ok(
        &w,
        Method::PUT,
        "/api/policies/myapp",
        Some(json!({"approvals_required": 2})),
    )
    .await;
    let (status, body) = preview(
        &w,
        json!([{"op": "put", "path": "/myapp/limit", "value": 7}]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["would"], json!("await_approval"));
    assert_eq!(body["approvals_required"], json!(2));
    let (_, changes) = send(&w, Method::GET, "/api/changes", None).await;
    assert_eq!(
        changes["changes"],
        json!([]),
        "a preview files no change request"
    );
    w.stop().await;
}

/// A preview shows only the effective values of the environments whose every layer the caller
/// may read; a caller without write on a path cannot preview a change to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_needs_write_and_shows_only_readable_layers() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    ok(
        &w,
        Method::PUT,
        "/api/config/myapp/x",
        Some(json!({"value": 1})),
    )
    .await;
    ok(&w, Method::PUT, "/api/environments/prod", Some(json!({}))).await;
    let account = ok(
        &w,
        Method::POST,
        "/api/accounts",
        Some(json!({"id": "dev", "grants": [{"prefix": "/myapp", "actions": ["read", "write"]}]})),
    )
    .await;
    let key = account["key"].as_str().unwrap();
    let dev = setpoint_tests::writer::client_with_key(key);
    let answer = |path: &str| {
        dev.post(w.url("/api/preview"))
            .body(json!({"changes": [{"op": "put", "path": path, "value": 2}]}).to_string())
            .send()
    };
    let response = answer("/myapp/x").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let envs: Vec<&Value> = body["effective"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["env"])
        .collect();
    assert_eq!(
        envs,
        vec![&Value::Null],
        "no environment's layer is readable: {body}"
    );
    assert_eq!(
        body["environments"],
        json!(["dev", "prod", "staging"]),
        "{body}"
    );
    let response = answer("/other/x").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    w.stop().await;
}

/// `?dry_run=true` on a PUT, a DELETE and a batch answers the preview instead of writing; a
/// path under an active rollout is refused as the write would be, unless `?force=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_on_writes_answers_the_preview_and_writes_nothing() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    ok(
        &w,
        Method::PUT,
        "/api/config/app/a",
        Some(json!({"value": 1})),
    )
    .await;
    let before = ok(&w, Method::GET, "/api/config/app/a", None).await;

    let put = ok(
        &w,
        Method::PUT,
        "/api/config/app/a?dry_run=true",
        Some(json!({"value": 2})),
    )
    .await;
    assert_eq!(put["dry_run"], json!(true), "{put}");
    assert_eq!(put["changes"][0]["version"], json!(2), "{put}");
    assert_eq!(put["effective"][0]["after"], json!(2), "{put}");
    let delete = ok(&w, Method::DELETE, "/api/config/app/a?dry_run=true", None).await;
    assert_eq!(delete["changes"][0]["deleted"], json!(true), "{delete}");
    assert_eq!(delete["effective"][0]["after"], Value::Null, "{delete}");
    let batch = ok(
        &w,
        Method::POST,
        "/api/batch?dry_run=true",
        Some(json!({"changes": [{"op": "put", "path": "/app/b", "value": 3}]})),
    )
    .await;
    assert_eq!(batch["changes"][0]["created"], json!(true), "{batch}");
    assert_eq!(ok(&w, Method::GET, "/api/config/app/a", None).await, before);
    let (status, _) = send(&w, Method::GET, "/api/config/app/b", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the dry run wrote nothing");

    // Under an active rollout a write is a 409 unless forced; its dry run says the same.
    ok(
        &w,
        Method::POST,
        "/api/config/app/a/rollout",
        Some(json!({"value": 9, "stages": [100]})),
    )
    .await;
    let (status, body) = send(
        &w,
        Method::PUT,
        "/api/config/app/a?dry_run=true",
        Some(json!({"value": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let forced = ok(
        &w,
        Method::PUT,
        "/api/config/app/a?dry_run=true&force=true",
        Some(json!({"value": 2})),
    )
    .await;
    assert_eq!(forced["would"], json!("commit"), "{forced}");
    let (status, _) = send(
        &w,
        Method::PUT,
        "/api/config/app/a?dry_run=maybe",
        Some(json!({"value": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ok(&w, Method::GET, "/api/config/app/a", None).await, before);
    w.stop().await;
}

/// A preview is what the commit then does: the same versions, and each effective value it shows
/// afterwards is what reads in that environment then answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_does_what_its_preview_said() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    ok(
        &w,
        Method::PUT,
        "/api/config/svc/cfg",
        Some(json!({"value": {"a": 1, "b": 2}})),
    )
    .await;
    ok(
        &w,
        Method::PUT,
        "/api/config/env/prod/svc/cfg",
        Some(json!({"value": {"b": 20}})),
    )
    .await;
    ok(
        &w,
        Method::PUT,
        "/api/config/svc/gone",
        Some(json!({"value": true})),
    )
    .await;
    let changes = json!([
        {"op": "put", "path": "/svc/cfg", "value": {"a": 5, "b": 2, "c": 3}},
        {"op": "put", "path": "/env/staging/svc/cfg", "value": {"c": 30}},
        {"op": "delete", "path": "/svc/gone"},
    ]);
    let (status, preview) = preview(&w, changes.clone()).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let committed = ok(
        &w,
        Method::POST,
        "/api/batch",
        Some(json!({"changes": changes})),
    )
    .await;
    let versions = |body: &Value, key: &str| -> Vec<Value> {
        body[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["path"], r["version"], r["deleted"]]))
            .collect()
    };
    assert_eq!(
        versions(&preview, "changes"),
        versions(&committed, "results")
    );
    let shown = preview["effective"].as_array().unwrap();
    assert!(shown.len() >= 4, "base, dev, staging, prod: {preview}");
    for effective in shown {
        let path = effective["path"].as_str().unwrap();
        let url = match effective["env"].as_str() {
            Some(env) => format!("/api/config{path}?env={env}"),
            None => format!("/api/config{path}"),
        };
        let (status, read) = send(&w, Method::GET, &url, None).await;
        match &effective["after"] {
            Value::Null => assert_eq!(status, StatusCode::NOT_FOUND, "{url}: {read}"),
            after => assert_eq!(&read["value"], after, "{url}"),
        }
    }
    w.stop().await;
}

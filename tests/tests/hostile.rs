//! Hostile input: each finding of the attack probe (issue 11) as a regression test, named after
//! it, against a real writer.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use setpoint_tests::writer::{Backend, TestWriter};

/// `depth` levels of `allOf` over two `$ref`s to the level below, ending in `maxLength: 1`: the
/// schema of the probe that made a 1.3 KB PUT answer 26 MB of violations.
fn doubling_schema(depth: usize) -> Value {
    let mut defs = serde_json::Map::new();
    defs.insert("l0".into(), json!({"maxLength": 1}));
    for level in 1..=depth {
        let below = format!("#/$defs/l{}", level - 1);
        defs.insert(
            format!("l{level}"),
            json!({"allOf": [{"$ref": below}, {"$ref": below}]}),
        );
    }
    json!({"$defs": defs, "$ref": format!("#/$defs/l{depth}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_cannot_exhaust_memory() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;

    // The exponential schema is refused as a bad request, before any evaluation.
    let body = json!({"value": "a value of many characters", "schema": doubling_schema(18)});
    let response = w
        .http
        .put(w.config_url("/hostile/nested"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{answer}"
    );

    // A flat allOf of 1,000 maxLength:1 over a 500 KB value: a short 422, not 500 MB.
    let many: Vec<Value> = (0..1_000).map(|_| json!({"maxLength": 1})).collect();
    let body = json!({"value": "x".repeat(500_000), "schema": {"allOf": many}});
    let response = w
        .http
        .put(w.config_url("/hostile/flat"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = response.text().await.unwrap();
    assert!(text.len() < 100_000, "a {} byte answer", text.len());
    let answer: Value = serde_json::from_str(&text).unwrap();
    let details = &answer["error"]["details"];
    assert_eq!(details["truncated"], true, "{answer}");
    assert_eq!(details["violations"].as_array().unwrap().len(), 100);
    assert!(
        !text.contains("xxxxxxxxxxxxxxxx"),
        "the value is never echoed"
    );

    // Nothing was written, and the writer keeps serving.
    let missing = w
        .http
        .get(w.config_url("/hostile/flat"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let ok = w
        .http
        .put(w.config_url("/hostile/fine"))
        .body(json!({"value": "y", "schema": {"maxLength": 1}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    w.stop().await;
}

async fn send(
    w: &TestWriter,
    method: reqwest::Method,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_lock_everyone_out() {
    use reqwest::Method;
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    let (status, admin) = send(&w, Method::GET, "/api/accounts/admin", None).await;
    assert_eq!(status, StatusCode::OK, "{admin}");
    let key_id = admin["keys"][0]["id"].as_str().unwrap().to_owned();

    // Alone, the admin can neither drop its grants nor revoke its only key.
    let no_grants = json!({"grants": [{"prefix": "/app", "actions": ["read"]}]});
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/accounts/admin/grants".to_owned(),
            Some(no_grants.clone()),
        ),
        (
            Method::DELETE,
            format!("/api/accounts/admin/keys/{key_id}"),
            None,
        ),
    ] {
        let (status, body) = send(&w, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("administer"),
            "{body}"
        );
    }
    let (status, body) = send(&w, Method::DELETE, "/api/accounts/admin", None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "no account deletes itself: {body}"
    );
    let (status, _) = send(&w, Method::GET, "/api/accounts", None).await;
    assert_eq!(status, StatusCode::OK, "the key still works");

    // With a second root admin, the first may step down.
    let (status, body) = send(
        &w,
        Method::POST,
        "/api/accounts",
        Some(json!({"id": "second", "grants": [{"prefix": "/", "actions": ["admin"]}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(
        &w,
        Method::PUT,
        "/api/accounts/admin/grants",
        Some(no_grants),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_request_to_delete_nothing_is_refused() {
    use reqwest::Method;
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    let (status, body) = send(
        &w,
        Method::PUT,
        "/api/policies/pay",
        Some(json!({"approvals_required": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&w, Method::DELETE, "/api/config/pay/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A violation is refused at request time too; a valid change still waits for approval.
    let (status, body) = send(
        &w,
        Method::PUT,
        "/api/config/pay/limit",
        Some(json!({"value": "x", "schema": {"type": "integer"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = send(
        &w,
        Method::PUT,
        "/api/config/pay/limit",
        Some(json!({"value": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, changes) = send(&w, Method::GET, "/api/changes", None).await;
    assert_eq!(changes["changes"].as_array().unwrap().len(), 1, "{changes}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_requests_cannot_grow_the_store_without_limit() {
    use reqwest::Method;
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    let (status, body) = send(
        &w,
        Method::POST,
        "/api/accounts",
        Some(json!({"id": "reader", "grants": [{"prefix": "/app", "actions": ["read"]}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["key"].as_str().unwrap().to_owned();
    let reader = setpoint_tests::writer::client_with_key(&token);
    // 2,000 refused writes from one caller, and 200 from callers naming other paths.
    let mut requests = Vec::new();
    for n in 0..2_200 {
        let path = if n < 2_000 {
            "/app/locked".to_owned()
        } else {
            format!("/app/other{n}")
        };
        let reader = reader.clone();
        let url = w.config_url(&path);
        requests.push(tokio::spawn(async move {
            reader
                .put(url)
                .body(json!({"value": 1}).to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
        if requests.len() == 64 {
            for request in requests.drain(..) {
                assert_eq!(request.await.unwrap(), StatusCode::FORBIDDEN);
            }
        }
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::FORBIDDEN);
    }
    let (status, audit) = send(
        &w,
        Method::GET,
        "/api/audit?outcome=denied&limit=1000",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let records = audit["records"].as_array().unwrap();
    assert!(
        !records.is_empty()
            && records.len() <= 2 * setpoint_writer::model::denials::RECORDS_PER_MINUTE as usize,
        "{} denial records for 2,200 denials",
        records.len()
    );
    assert!(
        records
            .iter()
            .any(|r| r["actor"] == "reader" && r["path"] == "/app/locked"),
        "the first denial is on record"
    );
    w.stop().await;
}

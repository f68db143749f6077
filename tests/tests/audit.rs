//! The audit log against a real etcd: every mutation type leaves exactly one record with the
//! right fields, denied and refused attempts are recorded, the hash chain verifies — and stops
//! verifying when a record is altered directly in etcd — and retention keeps it verifiable.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use setpoint_tests::etcd::EtcdServer;
use setpoint_tests::wait_until;
use setpoint_tests::writer::{Backend, TestWriter, client_with_key};
use setpoint_writer::WriterConfig;
use setpoint_writer::store::{RangeRequest, Store, Txn, TxnOp};

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
    request_id: &str,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url).header("x-request-id", request_id);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn config(backend: &Backend) -> WriterConfig {
    let mut config = WriterConfig::new(backend.spec());
    // Seals follow after twice the store timeout: keep it short so the test is quick.
    config.store_timeout = Duration::from_millis(500);
    config.audit_seal_interval = Duration::from_millis(100);
    config
}

async fn records(w: &TestWriter, query: &str) -> Vec<Value> {
    let (status, body) = call(
        &w.http,
        Method::GET,
        w.url(&format!("/api/audit?{query}")),
        None,
        "q",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["records"].as_array().unwrap().clone()
}

async fn one_record(w: &TestWriter, request_id: &str) -> Value {
    let all = records(w, "limit=1000").await;
    let found: Vec<&Value> = all
        .iter()
        .filter(|r| r["request_id"] == request_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one record for {request_id}: {all:#?}"
    );
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_leaves_one_record_and_the_chain_detects_tampering() {
    let etcd = EtcdServer::start();
    let backend = Backend::Etcd(etcd);
    let w = TestWriter::start_with(config(&backend)).await;
    let http = &w.http;
    let ok = |(status, body): (StatusCode, Value)| {
        assert!(status.is_success(), "{status}: {body}");
        body
    };

    ok(call(
        http,
        Method::PUT,
        w.config_url("/shop/a"),
        Some(json!({"value": 1})),
        "put-1",
    )
    .await);
    ok(call(
        http,
        Method::PUT,
        w.config_url("/shop/a"),
        Some(json!({"value": 2})),
        "put-2",
    )
    .await);
    ok(call(
        http,
        Method::DELETE,
        w.config_url("/shop/a"),
        None,
        "delete-1",
    )
    .await);
    ok(call(
        http,
        Method::POST,
        w.url("/api/batch"),
        Some(json!({"changes": [{"op": "put", "path": "/shop/b", "value": 1}, {"op": "put", "path": "/shop/c", "value": 2}]})),
        "batch-1",
    )
    .await);
    ok(call(
        http,
        Method::PUT,
        w.url("/api/schemas/shop"),
        Some(json!({"schema": {}})),
        "schema-put",
    )
    .await);
    ok(call(
        http,
        Method::DELETE,
        w.url("/api/schemas/shop"),
        None,
        "schema-delete",
    )
    .await);
    ok(call(
        http,
        Method::PUT,
        w.url("/api/environments/qa"),
        Some(json!({"parent": "staging"})),
        "env-put",
    )
    .await);
    ok(call(
        http,
        Method::DELETE,
        w.url("/api/environments/qa"),
        None,
        "env-delete",
    )
    .await);
    let created = ok(call(
        http,
        Method::POST,
        w.url("/api/accounts"),
        Some(json!({"id": "reader", "grants": [{"prefix": "/shop", "actions": ["read"]}]})),
        "account-create",
    )
    .await);
    ok(call(
        http,
        Method::PUT,
        w.url("/api/accounts/reader/grants"),
        Some(json!({"grants": [{"prefix": "/shop/b", "actions": ["read"]}]})),
        "account-grants",
    )
    .await);

    for (request_id, action, path, before, after) in [
        ("put-1", "config.put", Some("/shop/a"), None, Some(1)),
        ("put-2", "config.put", Some("/shop/a"), Some(1), Some(2)),
        (
            "delete-1",
            "config.delete",
            Some("/shop/a"),
            Some(2),
            Some(3),
        ),
        ("batch-1", "config.batch", None, None, None),
        ("schema-put", "schema.put", Some("/shop"), None, None),
        ("schema-delete", "schema.delete", Some("/shop"), None, None),
        ("env-put", "environment.put", Some("/env/qa"), None, Some(1)),
        (
            "env-delete",
            "environment.delete",
            Some("/env/qa"),
            Some(1),
            Some(2),
        ),
        (
            "account-create",
            "account.put",
            Some("/_setpoint/accounts/reader"),
            None,
            Some(1),
        ),
        (
            "account-grants",
            "account.put",
            Some("/_setpoint/accounts/reader"),
            Some(1),
            Some(2),
        ),
    ] {
        let record = one_record(&w, request_id).await;
        assert_eq!(record["action"], action, "{record}");
        assert_eq!(record["path"].as_str(), path, "{record}");
        assert_eq!(record["version_before"].as_u64(), before, "{record}");
        assert_eq!(record["version_after"].as_u64(), after, "{record}");
        assert_eq!(record["actor"], "admin", "{record}");
        assert_eq!(record["outcome"], "ok");
        assert!(
            record["source"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{record}"
        );
        assert!(record["time"].is_string());
    }
    let batch = one_record(&w, "batch-1").await;
    assert!(
        batch["detail"].as_str().unwrap().contains("/shop/c"),
        "{batch}"
    );

    // Denied (403) and refused (401) attempts are recorded too; the key never is.
    let reader = client_with_key(created["key"].as_str().unwrap());
    let (status, _) = call(
        &reader,
        Method::PUT,
        w.config_url("/shop/b"),
        Some(json!({"value": 9})),
        "denied-1",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let denied = one_record(&w, "denied-1").await;
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["actor"], "reader");
    assert_eq!(denied["path"], "/shop/b");
    let (status, _) = call(
        &client_with_key("spk_nokey_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Method::GET,
        w.config_url("/shop/b"),
        None,
        "refused-1",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused = one_record(&w, "refused-1").await;
    assert_eq!(refused["action"], "auth.refused");
    assert_eq!(refused["outcome"], "denied");
    let everything = serde_json::to_string(&records(&w, "limit=1000").await).unwrap();
    assert!(
        !everything.contains(created["key"].as_str().unwrap()),
        "a key in the audit log"
    );

    // Filters.
    let by_path = records(&w, "path=/shop/a").await;
    assert_eq!(by_path.len(), 3, "{by_path:#?}");
    assert_eq!(records(&w, "action=config.delete").await.len(), 1);
    assert_eq!(records(&w, "actor=reader").await.len(), 1);
    let first_page = call(http, Method::GET, w.url("/api/audit?limit=2"), None, "q")
        .await
        .1;
    assert_eq!(first_page["records"].as_array().unwrap().len(), 2);
    let next = first_page["next"].as_str().unwrap();
    let second = records(&w, &format!("limit=2&after={next}")).await;
    assert_ne!(second[0]["id"], first_page["records"][1]["id"]);
    let (status, _) = call(&reader, Method::GET, w.url("/api/audit"), None, "q").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only admins read the audit log"
    );

    // Once sealed, the chain verifies…
    let total = records(&w, "limit=1000").await.len() as u64;
    let sealed = wait_until(Duration::from_secs(15), || async {
        let report = call(http, Method::GET, w.url("/api/audit/verify"), None, "v")
            .await
            .1;
        report["ok"] == true && report["sealed"].as_u64() >= Some(total)
    })
    .await;
    assert!(
        sealed,
        "{}",
        call(http, Method::GET, w.url("/api/audit/verify"), None, "v")
            .await
            .1
    );

    // …and a record altered directly in etcd breaks it, at that record.
    let Backend::Etcd(etcd) = &backend else {
        unreachable!()
    };
    let store = setpoint_writer::store::etcd::EtcdStore::connect(
        &[etcd.endpoint()],
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let all = store
        .range(RangeRequest::prefix("/setpoint/l"))
        .await
        .unwrap();
    let victim = all
        .kvs
        .iter()
        .find(|kv| String::from_utf8_lossy(&kv.value).contains("put-2"))
        .unwrap();
    let forged = String::from_utf8_lossy(&victim.value).replace("\"admin\"", "\"someone-else\"");
    store
        .txn(Txn {
            compares: vec![],
            writes: vec![TxnOp::Put {
                key: victim.key.clone(),
                value: forged.into_bytes(),
            }],
        })
        .await
        .unwrap();
    let report = call(http, Method::GET, w.url("/api/audit/verify"), None, "v")
        .await
        .1;
    assert_eq!(report["ok"], false, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["key"] == victim.key.as_str()
            && p["message"].as_str().unwrap().contains("altered")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_chain_verifiable() {
    let backend = Backend::etcd();
    let mut config = config(&backend);
    config.audit_retention = Some(Duration::from_secs(2));
    config.compaction_interval = Duration::from_millis(300);
    let w = TestWriter::start_with(config).await;
    for i in 0..5 {
        let (status, _) = call(
            &w.http,
            Method::PUT,
            w.config_url("/r/a"),
            Some(json!({"value": i})),
            &format!("r{i}"),
        )
        .await;
        assert!(status.is_success());
    }
    // The early records (defaults, admin, the puts) age out once sealed; later ones stay.
    let trimmed = wait_until(Duration::from_secs(20), || async {
        records(&w, "limit=1000")
            .await
            .iter()
            .all(|r| r["request_id"] != "r0")
    })
    .await;
    assert!(trimmed, "old records were not removed");
    let (status, _) = call(
        &w.http,
        Method::PUT,
        w.config_url("/r/a"),
        Some(json!({"value": 9})),
        "after",
    )
    .await;
    assert!(status.is_success());
    let verified = wait_until(Duration::from_secs(15), || async {
        let report = call(&w.http, Method::GET, w.url("/api/audit/verify"), None, "v")
            .await
            .1;
        report["ok"] == true && report["sealed"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        verified,
        "{}",
        call(&w.http, Method::GET, w.url("/api/audit/verify"), None, "v")
            .await
            .1
    );
}

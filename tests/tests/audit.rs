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
use setpoint_writer::store::{RangeRequest, Read, Store, Txn, TxnOp};

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
    config.audit_retention = Some(Duration::from_secs(4));
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

    // A record written now is young: it must survive. The writer stops right after it, so no
    // retention runs while the store is inspected (4 s of retention leave ample time to stop).
    let (status, _) = call(
        &w.http,
        Method::PUT,
        w.config_url("/r/a"),
        Some(json!({"value": 10})),
        "fresh",
    )
    .await;
    assert!(status.is_success());
    let Backend::Etcd(etcd) = &backend else {
        unreachable!("an etcd backend")
    };
    let endpoint = etcd.endpoint();
    w.stop().await;

    // In the store, read at one revision: an anchor names the last removed seal, and the chain
    // goes on from it — the first surviving seal follows it in sequence and hashes onto it.
    let store =
        setpoint_writer::store::etcd::EtcdStore::connect(&[endpoint], Duration::from_secs(2))
            .await
            .unwrap();
    let read = store
        .read(vec![
            Read::Get("/setpoint/Aa".into()),
            Read::Range(RangeRequest::prefix("/setpoint/L")),
            Read::Range(RangeRequest::prefix("/setpoint/l")),
        ])
        .await
        .unwrap();
    let anchor = read.results[0].first().expect("retention leaves an anchor");
    let anchor: Value = serde_json::from_slice(&anchor.value).unwrap();
    let seals: Vec<Value> = read.results[1]
        .iter()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
        .collect();
    let first = seals.first().expect("seals after the anchor");
    assert_eq!(
        first["seq"].as_u64(),
        anchor["seq"].as_u64().map(|seq| seq + 1),
        "anchor {anchor}, first seal {first}"
    );
    assert_eq!(
        first["prev"], anchor["hash"],
        "anchor {anchor}, first seal {first}"
    );
    assert!(
        anchor["seq"].as_u64() >= Some(5),
        "at least the five early puts went: {anchor}"
    );
    // The survivors: every surviving seal's record, nothing older than the first of them (what
    // went was the oldest), and the young records.
    let stored: Vec<(&str, String)> = read.results[2]
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    let first_key = first["key"].as_str().unwrap();
    for seal in &seals {
        let key = seal["key"].as_str().unwrap();
        assert!(
            stored.iter().any(|(k, _)| *k == key),
            "sealed record {key} survives"
        );
    }
    assert!(
        stored.iter().all(|(k, _)| *k >= first_key),
        "a record older than the first surviving seal ({first_key}) is left"
    );
    let kept = |request_id: &str| {
        stored
            .iter()
            .any(|(_, record)| record.contains(&format!("\"request_id\":\"{request_id}\"")))
    };
    assert!(
        kept("fresh"),
        "the record written just before stopping survives"
    );
    assert!((0..5).all(|i| !kept(&format!("r{i}"))), "the old puts went");
}

/// The README's claim that a commit carries its own audit record in the same transaction: in
/// etcd, the record's key was created at exactly the commit's revision (a record written in a
/// transaction of its own, before or after, would carry another revision) — for a single put,
/// a batch and a delete alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_record_is_written_in_the_commits_own_transaction() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let backend = Backend::Etcd(etcd);
    let w = TestWriter::start_with(config(&backend)).await;
    let mut commits = Vec::new();
    let (status, body) = call(
        &w.http,
        Method::PUT,
        w.config_url("/t/a"),
        Some(json!({"value": 1})),
        "txn-put",
    )
    .await;
    assert!(status.is_success(), "{body}");
    commits.push(("txn-put", body["revision"].as_i64().unwrap()));
    let (status, body) = call(
        &w.http,
        Method::POST,
        w.url("/api/batch"),
        Some(json!({"changes": [
            {"op": "put", "path": "/t/b", "value": 2},
            {"op": "put", "path": "/t/c", "value": 3}
        ]})),
        "txn-batch",
    )
    .await;
    assert!(status.is_success(), "{body}");
    commits.push(("txn-batch", body["revision"].as_i64().unwrap()));
    let (status, body) = call(
        &w.http,
        Method::DELETE,
        w.config_url("/t/a"),
        None,
        "txn-delete",
    )
    .await;
    assert!(status.is_success(), "{body}");
    commits.push(("txn-delete", body["revision"].as_i64().unwrap()));

    let store =
        setpoint_writer::store::etcd::EtcdStore::connect(&[endpoint], Duration::from_secs(2))
            .await
            .unwrap();
    let stored = store
        .range(RangeRequest::prefix("/setpoint/l"))
        .await
        .unwrap()
        .kvs;
    for (request_id, revision) in commits {
        let marker = format!("\"request_id\":\"{request_id}\"");
        let records: Vec<_> = stored
            .iter()
            .filter(|kv| String::from_utf8_lossy(&kv.value).contains(&marker))
            .collect();
        assert!(!records.is_empty(), "no audit record for {request_id}");
        for record in records {
            assert_eq!(
                (record.create_revision, record.mod_revision),
                (revision, revision),
                "{request_id}'s record {} is not of its commit's transaction (revision {revision})",
                record.key
            );
        }
    }
}

//! The approval workflow over real HTTP on a real etcd: a write under a policy becomes a change
//! request (202), self-approval is refused, the last approval commits it as one ordinary
//! version, a conflicting newer version makes it fail with 409, and pending requests expire.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use setpoint_tests::wait_until;
use setpoint_tests::writer::{Backend, TestWriter, client_with_key};

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn account(w: &TestWriter, id: &str, grants: Value) -> reqwest::Client {
    let (status, body) = call(
        &w.http,
        Method::POST,
        w.url("/api/accounts"),
        Some(json!({"id": id, "grants": grants})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    client_with_key(body["key"].as_str().unwrap())
}

async fn approve(w: &TestWriter, client: &reqwest::Client, id: &str) -> (StatusCode, Value) {
    call(
        client,
        Method::POST,
        w.url(&format!("/api/changes/{id}/approve")),
        None,
    )
    .await
}

struct Team {
    author: reqwest::Client,
    alice: reqwest::Client,
    bob: reqwest::Client,
    outsider: reqwest::Client,
}

async fn team(w: &TestWriter) -> Team {
    Team {
        author: account(
            w,
            "author",
            json!([{"prefix": "/pay", "actions": ["read", "write", "delete", "approve"]}]),
        )
        .await,
        alice: account(
            w,
            "alice",
            json!([{"prefix": "/pay", "actions": ["read", "approve"]}]),
        )
        .await,
        bob: account(
            w,
            "bob",
            json!([{"prefix": "/pay", "actions": ["read", "approve"]}]),
        )
        .await,
        outsider: account(
            w,
            "outsider",
            json!([{"prefix": "/pay", "actions": ["read"]}]),
        )
        .await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_commit_a_change_and_the_author_cannot_approve() {
    let backend = Backend::etcd();
    let w = TestWriter::start(&backend).await;
    let t = team(&w).await;
    let (status, _) = call(
        &w.http,
        Method::PUT,
        w.config_url("/pay/limit"),
        Some(json!({"value": 100})),
    )
    .await;
    assert!(status.is_success());
    let (status, body) = call(
        &w.http,
        Method::PUT,
        w.url("/api/policies/pay"),
        Some(json!({"approvals_required": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The write becomes a change request with a diff against the current value.
    let (status, body) = call(
        &t.author,
        Method::PUT,
        w.config_url("/pay/limit"),
        Some(json!({"value": 500})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let change = &body["change"];
    let id = change["id"].as_str().unwrap().to_owned();
    assert_eq!(change["status"], "pending");
    assert_eq!(change["author"], "author");
    assert_eq!(change["diffs"][0]["path"], "/pay/limit");
    assert_eq!(
        change["diffs"][0]["patch"],
        json!([{"op": "replace", "path": "", "value": 500}])
    );
    let (_, current) = call(&w.http, Method::GET, w.config_url("/pay/limit"), None).await;
    assert_eq!(current["value"], 100, "nothing committed yet");
    let (_, pending) = call(
        &t.alice,
        Method::GET,
        w.url("/api/changes?status=pending"),
        None,
    )
    .await;
    assert_eq!(pending["changes"].as_array().unwrap().len(), 1, "{pending}");

    // The author cannot approve; an account without `approve` cannot either.
    let (status, body) = approve(&w, &t.author, &id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = approve(&w, &t.outsider, &id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // First approval: still pending; the same approver twice is refused.
    let (status, body) = approve(&w, &t.alice, &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["approvals"], json!(["alice"]));
    let (status, _) = approve(&w, &t.alice, &id).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The last approval commits it as one ordinary version, by the author.
    let (status, body) = approve(&w, &t.bob, &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "committed");
    let (_, current) = call(&w.http, Method::GET, w.config_url("/pay/limit"), None).await;
    assert_eq!(current["value"], 500);
    assert_eq!(current["version"], 2);
    assert_eq!(current["updated_by"], "author");
    let (status, _) = approve(&w, &t.alice, &id).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a committed request takes no more decisions"
    );

    // Batches and deletes go through approval too; the author may cancel, others reject.
    let (status, body) = call(&t.author, Method::DELETE, w.config_url("/pay/limit"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let delete_id = body["change"]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &t.alice,
        Method::POST,
        w.url(&format!("/api/changes/{delete_id}/cancel")),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only the author or an admin cancels"
    );
    let (status, body) = call(
        &t.author,
        Method::POST,
        w.url(&format!("/api/changes/{delete_id}/cancel")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    let (status, body) = call(
        &t.author,
        Method::POST,
        w.url("/api/batch"),
        Some(json!({"changes": [{"op": "put", "path": "/pay/a", "value": 1}, {"op": "put", "path": "/other/b", "value": 2}]})),
    )
    .await;
    // The author has no write on /other: refused before any request is made.
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(
        &t.author,
        Method::POST,
        w.url("/api/batch"),
        Some(json!({"changes": [{"op": "put", "path": "/pay/a", "value": 1}, {"op": "put", "path": "/pay/b", "value": 2}]})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let batch_id = body["change"]["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &t.bob,
        Method::POST,
        w.url(&format!("/api/changes/{batch_id}/reject")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "rejected");
    let (status, _) = call(&w.http, Method::GET, w.config_url("/pay/a"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every step is in the audit log, by whom it was taken, in order: each request, decision
    // and refusal after the policy was set — and the approved change itself committed by its
    // last approver, naming the request.
    let (_, audit) = call(&w.http, Method::GET, w.url("/api/audit?limit=1000"), None).await;
    let records = audit["records"].as_array().unwrap();
    let policy_set = records
        .iter()
        .position(|r| r["action"] == "policy.put")
        .unwrap_or_else(|| panic!("no policy.put record: {audit}"));
    let steps: Vec<(&str, &str, &str)> = records[policy_set + 1..]
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("?"),
                r["action"].as_str().unwrap_or("?"),
                r["path"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    let request = |id: &str| format!("/_setpoint/changes/{id}");
    let (limit_request, delete_request, batch_request) =
        (request(&id), request(&delete_id), request(&batch_id));
    assert_eq!(
        steps,
        vec![
            ("author", "change.put", limit_request.as_str()),
            ("outsider", "access.denied", "/pay/limit"),
            ("alice", "change.put", limit_request.as_str()),
            ("bob", "config.put", "/pay/limit"),
            ("author", "change.put", delete_request.as_str()),
            ("alice", "access.denied", "/"),
            ("author", "change.put", delete_request.as_str()),
            ("author", "access.denied", "/other/b"),
            ("author", "change.put", batch_request.as_str()),
            ("bob", "change.put", batch_request.as_str()),
        ],
        "{audit}"
    );
    let committed = &records[policy_set + 4];
    assert_eq!(committed["outcome"], "ok", "{committed}");
    let detail: Value = serde_json::from_str(committed["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["change_request"], id.as_str(), "{committed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_makes_the_change_fail_and_pending_requests_expire() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    let t = team(&w).await;
    call(
        &w.http,
        Method::PUT,
        w.config_url("/pay/rate"),
        Some(json!({"value": 1})),
    )
    .await;
    call(
        &w.http,
        Method::PUT,
        w.url("/api/policies/pay"),
        Some(json!({"approvals_required": 1})),
    )
    .await;
    let (status, body) = call(
        &t.author,
        Method::PUT,
        w.config_url("/pay/rate"),
        Some(json!({"value": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["change"]["id"].as_str().unwrap().to_owned();

    // Someone changes the path meanwhile (the admin, with no policy exemption: via a prefix
    // without one is impossible here, so lift the policy, write, restore it).
    call(&w.http, Method::DELETE, w.url("/api/policies/pay"), None).await;
    let (status, _) = call(
        &w.http,
        Method::PUT,
        w.config_url("/pay/rate"),
        Some(json!({"value": 3})),
    )
    .await;
    assert!(status.is_success());
    call(
        &w.http,
        Method::PUT,
        w.url("/api/policies/pay"),
        Some(json!({"approvals_required": 1, "expires_in_secs": 2})),
    )
    .await;
    let (status, body) = call(
        &t.alice,
        Method::POST,
        w.url(&format!("/api/changes/{id}/approve")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, request) = call(
        &t.alice,
        Method::GET,
        w.url(&format!("/api/changes/{id}")),
        None,
    )
    .await;
    assert_eq!(request["status"], "failed", "{request}");
    let (_, current) = call(&w.http, Method::GET, w.config_url("/pay/rate"), None).await;
    assert_eq!(current["value"], 3, "the newer version stands");

    // Expiry: this policy gives requests 2 s.
    let (status, body) = call(
        &t.author,
        Method::PUT,
        w.config_url("/pay/rate"),
        Some(json!({"value": 4})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["change"]["id"].as_str().unwrap().to_owned();
    // Waits for the expiry itself (generous bound), not a sleep guessed past it.
    let expired = wait_until(Duration::from_secs(20), || async {
        let (_, pending) = call(
            &t.alice,
            Method::GET,
            w.url("/api/changes?status=pending"),
            None,
        )
        .await;
        pending["changes"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(expired, "the request is still pending");
    let (status, body) = call(
        &t.alice,
        Method::POST,
        w.url(&format!("/api/changes/{id}/approve")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    let (_, current) = call(&w.http, Method::GET, w.config_url("/pay/rate"), None).await;
    assert_eq!(current["value"], 3);
}

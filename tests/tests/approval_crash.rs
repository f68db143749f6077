//! A writer that dies in the middle of an approval leaves exactly one outcome: the last approval
//! commits the change and the request's status in one transaction, so a crash before it leaves
//! the request pending and nothing changed, and a crash after it leaves both done — never a
//! committed change with a pending request, or the reverse. The real binary, crashed at a
//! test-only fault point (`SETPOINT_FAULT_POINTS`), restarted on its data.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use setpoint_tests::binary::SetpointProcess;

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    actor: &str,
    body: Option<Value>,
) -> reqwest::Result<(StatusCode, Value)> {
    let mut request = http
        .request(method, url)
        .header("x-setpoint-actor", actor)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn ok(
    http: &reqwest::Client,
    method: Method,
    url: String,
    actor: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(http, method, url, actor, body).await.unwrap()
}

struct Node {
    addr: String,
    data: String,
    dir: tempfile::TempDir,
}

impl Node {
    async fn start(&self, fault: Option<&str>) -> SetpointProcess {
        let env: Vec<(&str, &str)> = fault
            .map(|f| ("SETPOINT_FAULT_POINTS", f))
            .into_iter()
            .collect();
        SetpointProcess::start_with_env(
            &["dev", "--data-dir", &self.data],
            &env,
            &self.addr,
            self.dir.path(),
        )
        .await
    }

    fn url(&self, rest: &str) -> String {
        format!("http://{}{rest}", self.addr)
    }
}

/// Asks for a change under the policy; returns the request's id.
async fn request_change(http: &reqwest::Client, node: &Node, value: i64) -> String {
    let (status, body) = ok(
        http,
        Method::PUT,
        node.url("/api/config/pay/limit"),
        "author",
        Some(json!({ "value": value })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["change"]["id"].as_str().unwrap().to_owned()
}

/// Approves through a writer armed to crash; the call gets no answer.
async fn approve_and_crash(
    http: &reqwest::Client,
    node: &Node,
    process: SetpointProcess,
    id: &str,
) {
    let answer = call(
        http,
        Method::POST,
        node.url(&format!("/api/changes/{id}/approve")),
        "approver",
        None,
    )
    .await;
    assert!(answer.is_err(), "the armed writer answered: {answer:?}");
    assert!(
        process.log_text().contains("fault point"),
        "it died elsewhere: {}",
        process.log_text()
    );
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_around_the_last_approval_leaves_exactly_one_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node {
        addr: format!("127.0.0.1:{}", setpoint_tests::free_port()),
        data: dir.path().join("data").to_str().unwrap().to_owned(),
        dir,
    };
    let http = reqwest::Client::new();

    // A crash right after the commit: change and status are both there.
    let process = node.start(Some("approve.after_commit")).await;
    let (status, body) = ok(
        &http,
        Method::PUT,
        node.url("/api/policies/pay"),
        "admin",
        Some(json!({ "approvals_required": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = request_change(&http, &node, 100).await;
    approve_and_crash(&http, &node, process, &first).await;
    let process = node.start(None).await;
    let (_, request) = ok(
        &http,
        Method::GET,
        node.url(&format!("/api/changes/{first}")),
        "admin",
        None,
    )
    .await;
    assert_eq!(request["status"], "committed", "{request}");
    let (_, entry) = ok(
        &http,
        Method::GET,
        node.url("/api/config/pay/limit"),
        "admin",
        None,
    )
    .await;
    assert_eq!(
        (entry["value"].clone(), entry["version"].clone()),
        (json!(100), json!(1))
    );
    assert_eq!(request["revision"], entry["revision"], "one transaction");
    let (status, body) = ok(
        &http,
        Method::POST,
        node.url(&format!("/api/changes/{first}/approve")),
        "other",
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "approving again commits nothing: {body}"
    );
    process.terminate();

    // A crash right before the commit: nothing happened; approving again commits it once.
    let process = node.start(Some("approve.before_commit")).await;
    let second = request_change(&http, &node, 200).await;
    approve_and_crash(&http, &node, process, &second).await;
    let process = node.start(None).await;
    let (_, request) = ok(
        &http,
        Method::GET,
        node.url(&format!("/api/changes/{second}")),
        "admin",
        None,
    )
    .await;
    assert_eq!(request["status"], "pending", "{request}");
    assert_eq!(request["approvals"], json!([]), "{request}");
    let (_, entry) = ok(
        &http,
        Method::GET,
        node.url("/api/config/pay/limit"),
        "admin",
        None,
    )
    .await;
    assert_eq!(
        (entry["value"].clone(), entry["version"].clone()),
        (json!(100), json!(1))
    );
    let (status, body) = ok(
        &http,
        Method::POST,
        node.url(&format!("/api/changes/{second}/approve")),
        "approver",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "committed");
    let (_, entry) = ok(
        &http,
        Method::GET,
        node.url("/api/config/pay/limit"),
        "admin",
        None,
    )
    .await;
    assert_eq!(
        (entry["value"].clone(), entry["version"].clone()),
        (json!(200), json!(2))
    );
    process.terminate();
}

//! Staged rollouts on a real writer (in-process, over real HTTP, on both stores): stages advance
//! by a short interval and completion commits the candidate as the path's next version with its
//! audit record; manual steering; rollback; one active rollout per path; a plain write to a path
//! under rollout is a 409 unless forced; a writer restart mid-rollout resumes its clock; the
//! candidate is validated like a PUT; access needs the `rollout` action; hostile input is a 400.
//! Health gates with real client sessions are in `rollout_health.rs`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use setpoint_tests::wait_until;
use setpoint_tests::writer::{Backend, TestWriter, client_with_key};

setpoint_tests::both_stores!(
    stages_advance_by_interval_and_completion_commits_the_candidate,
    steering_by_hand_pause_resume_advance,
    rollback_one_active_per_path_and_forced_writes,
    a_writer_restart_resumes_the_stage_clock,
    the_candidate_is_validated_like_a_put,
);

/// Generous: two loaded cores, stages of one second.
const SETTLE: Duration = Duration::from_secs(30);

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

async fn put(w: &TestWriter, path: &str, value: Value) -> (StatusCode, Value) {
    call(
        &w.http,
        Method::PUT,
        w.config_url(path),
        Some(json!({ "value": value })),
    )
    .await
}

async fn start(w: &TestWriter, path: &str, body: Value) -> (StatusCode, Value) {
    call(
        &w.http,
        Method::POST,
        w.config_url(&format!("{path}/rollout")),
        Some(body),
    )
    .await
}

async fn rollout(w: &TestWriter, id: &str) -> Value {
    let (status, body) = call(
        &w.http,
        Method::GET,
        w.url(&format!("/api/rollouts/{id}")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn steer(w: &TestWriter, id: &str, action: &str) -> (StatusCode, Value) {
    call(
        &w.http,
        Method::POST,
        w.url(&format!("/api/rollouts/{id}/{action}")),
        None,
    )
    .await
}

async fn wait_status(w: &TestWriter, id: &str, status: &str) -> Value {
    let reached = wait_until(SETTLE, || async {
        rollout(w, id).await["status"] == status
    })
    .await;
    let body = rollout(w, id).await;
    assert!(reached, "rollout {id} never became {status}: {body:#}");
    body
}

fn id_of(body: &Value) -> String {
    body["rollout_id"].as_str().unwrap().to_owned()
}

async fn stages_advance_by_interval_and_completion_commits_the_candidate(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let (status, _) = put(&w, "/myapp/database/host", json!("old-host.internal")).await;
    assert!(status.is_success());
    let (status, created) = start(
        &w,
        "/myapp/database/host",
        json!({"value": "new-host.internal", "stages": [10, 50, 100], "interval": "1s"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(id_of(&created).starts_with("roll_"), "{created}");
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["stage"], 1);
    assert_eq!(created["percent"], 10);
    assert_eq!(created["stable_version"], 1);
    let id = id_of(&created);

    // Until completion, a plain read sees the stable value.
    let (_, entry) = call(
        &w.http,
        Method::GET,
        w.config_url("/myapp/database/host"),
        None,
    )
    .await;
    assert_eq!(entry["value"], "old-host.internal");

    let done = wait_status(&w, &id, "completed").await;
    assert_eq!(done["completed_version"], 2, "{done:#}");
    assert_eq!(done["progress"], 100.0);
    let steps: Vec<(u64, &str)> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["stage"].as_u64().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, "in_progress"),
            (2, "in_progress"),
            (3, "in_progress"),
            (3, "completed")
        ],
        "{done:#}"
    );
    let times: Vec<i64> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["at_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|p| p[1] - p[0] >= 1_000),
        "each stage lasts at least its interval: {times:?}"
    );

    // The candidate is the path's next version, through the ordinary commit path.
    let (_, entry) = call(
        &w.http,
        Method::GET,
        w.config_url("/myapp/database/host"),
        None,
    )
    .await;
    assert_eq!(entry["value"], "new-host.internal");
    assert_eq!(entry["version"], 2);
    assert_eq!(
        entry["updated_by"], "admin",
        "its author is the rollout's creator"
    );

    // Audited: the creation, each advance and the completion (the config's new version).
    let (_, audit) = call(&w.http, Method::GET, w.url("/api/audit?limit=1000"), None).await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .filter(|a| a.starts_with("rollout."))
        .collect();
    assert_eq!(
        actions,
        vec![
            "rollout.create",
            "rollout.advance",
            "rollout.advance",
            "rollout.complete"
        ],
        "{audit:#}"
    );
    let complete = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "rollout.complete")
        .unwrap();
    assert_eq!(complete["path"], "/myapp/database/host", "{complete}");
    assert_eq!(complete["version_after"], 2, "{complete}");

    // Listing filters by status and path; a completed rollout can no longer be steered.
    let (_, listed) = call(
        &w.http,
        Method::GET,
        w.url("/api/rollouts?status=completed&path=/myapp/database/host"),
        None,
    )
    .await;
    assert_eq!(listed["rollouts"].as_array().unwrap().len(), 1, "{listed}");
    let (_, none) = call(
        &w.http,
        Method::GET,
        w.url("/api/rollouts?status=in_progress"),
        None,
    )
    .await;
    assert!(none["rollouts"].as_array().unwrap().is_empty(), "{none}");
    let (status, _) = steer(&w, &id, "rollback").await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The path is free again: a plain write goes through.
    let (status, body) = put(&w, "/myapp/database/host", json!("third")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.stop().await;
}

async fn steering_by_hand_pause_resume_advance(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    // No interval: stages move only by hand.
    let (status, created) = start(
        &w,
        "/shop/banner",
        json!({"value": {"text": "sale"}, "stages": [25, 100], "canary": {"instances": ["app-1"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["stable_version"], 0, "the path held no value");
    assert_eq!(created["stages"][0]["canary"], true, "{created}");
    let id = id_of(&created);

    let (status, body) = steer(&w, &id, "pause").await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("paused"))
    );
    let (status, _) = steer(&w, &id, "pause").await;
    assert_eq!(status, StatusCode::CONFLICT, "already paused");
    let (status, body) = steer(&w, &id, "resume").await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("in_progress"))
    );
    let (status, _) = steer(&w, &id, "resume").await;
    assert_eq!(status, StatusCode::CONFLICT, "not paused");
    for stage in [2, 3] {
        let (status, body) = steer(&w, &id, "advance").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], stage);
    }
    let (status, body) = steer(&w, &id, "advance").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["completed_version"], 1);
    let (_, entry) = call(&w.http, Method::GET, w.config_url("/shop/banner"), None).await;
    assert_eq!(entry["value"], json!({"text": "sale"}));
    // Nothing advances a rollout without an interval: it stayed where the hand put it.
    assert_eq!(
        rollout(&w, &id).await["transitions"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    w.stop().await;
}

async fn rollback_one_active_per_path_and_forced_writes(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/svc/limit", json!(10)).await;
    let body = json!({"value": 20, "stages": [50, 100]});
    let (status, created) = start(&w, "/svc/limit", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);

    let (status, second) = start(&w, "/svc/limit", body.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{second}");
    assert_eq!(
        second["error"]["details"]["rollout"],
        id.as_str(),
        "{second}"
    );

    // Plain writes to the path are refused; another path is not affected.
    let (status, refused) = put(&w, "/svc/limit", json!(30)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains(&id),
        "{refused}"
    );
    let (status, _) = call(&w.http, Method::DELETE, w.config_url("/svc/limit"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, refused) = call(
        &w.http,
        Method::POST,
        w.url("/api/batch"),
        Some(json!({"changes": [
            {"op": "put", "path": "/svc/other", "value": 1},
            {"op": "put", "path": "/svc/limit", "value": 31},
        ]})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["details"]["index"], 1, "{refused}");
    let (status, _) = put(&w, "/svc/other", json!(1)).await;
    assert!(status.is_success());

    // ?force=true writes anyway.
    let (status, forced) = call(
        &w.http,
        Method::PUT,
        w.config_url("/svc/limit?force=true"),
        Some(json!({"value": 11})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert_eq!(forced["version"], 2);
    let (status, _) = call(
        &w.http,
        Method::PUT,
        w.config_url("/svc/limit?force=maybe"),
        Some(json!({"value": 12})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Rollback ends it: the value stays the stable one, the path is free again.
    let (status, back) = steer(&w, &id, "rollback").await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["status"], "rolled_back");
    let (_, entry) = call(&w.http, Method::GET, w.config_url("/svc/limit"), None).await;
    assert_eq!(
        (entry["value"].clone(), entry["version"].clone()),
        (json!(11), json!(2))
    );
    for action in ["advance", "pause", "resume", "rollback"] {
        let (status, _) = steer(&w, &id, action).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action} after rollback");
    }
    let (status, _) = put(&w, "/svc/limit", json!(12)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = start(&w, "/svc/limit", body).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let (_, listed) = call(
        &w.http,
        Method::GET,
        w.url("/api/rollouts?path=/svc/limit"),
        None,
    )
    .await;
    let statuses: Vec<&str> = listed["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["in_progress", "rolled_back"], "newest first");
    let (_, audit) = call(
        &w.http,
        Method::GET,
        w.url("/api/audit?action=rollout.rollback&limit=100"),
        None,
    )
    .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    w.stop().await;
}

async fn a_writer_restart_resumes_the_stage_clock(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    put(&w, "/resume/flag", json!(false)).await;
    let (status, created) = start(
        &w,
        "/resume/flag",
        json!({"value": true, "stages": [50, 100], "interval": "1s"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    w.stop().await;

    // A new writer on the same store knows nothing but the record, and carries on.
    let w = TestWriter::start(&backend).await;
    let done = wait_status(&w, &id, "completed").await;
    assert_eq!(done["completed_version"], 2, "{done:#}");
    let (_, entry) = call(&w.http, Method::GET, w.config_url("/resume/flag"), None).await;
    assert_eq!(entry["value"], true);
    w.stop().await;
}

async fn the_candidate_is_validated_like_a_put(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let (status, body) = call(
        &w.http,
        Method::PUT,
        w.config_url("/v/port"),
        Some(json!({"value": 80, "schema": {"type": "integer", "maximum": 65535}})),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = start(&w, "/v/port", json!({"value": 70000, "stages": [100]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = start(
        &w,
        "/v/port",
        json!({"value": "x", "format": "yaml!", "stages": [100]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // An override needs its environment to exist.
    let (status, body) = start(
        &w,
        "/env/nowhere/v/port",
        json!({"value": 1, "stages": [100]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A policy gates the path: a rollout cannot carry approvals.
    let (status, body) = call(
        &w.http,
        Method::PUT,
        w.url("/api/policies/v"),
        Some(json!({"approvals_required": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = start(&w, "/v/port", json!({"value": 81, "stages": [100]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approval"),
        "{body}"
    );
    let (_, listed) = call(&w.http, Method::GET, w.url("/api/rollouts"), None).await;
    assert!(
        listed["rollouts"].as_array().unwrap().is_empty(),
        "nothing stored: {listed}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rollout_input_is_a_clear_400() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    let cases = [
        json!({"stages": [100]}),
        json!({"value": 1}),
        json!({"value": 1, "stages": []}),
        json!({"value": 1, "stages": [10, 50]}),
        json!({"value": 1, "stages": [50, 10, 100]}),
        json!({"value": 1, "stages": [0, 100]}),
        json!({"value": 1, "stages": [300]}),
        json!({"value": 1, "stages": [-5, 100]}),
        json!({"value": 1, "stages": [10.5, 100]}),
        json!({"value": 1, "stages": "10,100"}),
        json!({"value": 1, "stages": [100], "interval": "5 parsecs"}),
        json!({"value": 1, "stages": [100], "interval": "99999999999999999999d"}),
        json!({"value": 1, "stages": [100], "interval": -3}),
        json!({"value": 1, "stages": [100], "interval": "31d"}),
        json!({"value": 1, "stages": [100], "interval": [1]}),
        json!({"value": 1, "stages": [100], "canary": {}}),
        json!({"value": 1, "stages": [100], "canary": {"instances": [""]}}),
        json!({"value": 1, "stages": [100], "canary": {"hosts": ["a"]}}),
        json!({"value": 1, "stages": [100], "health": {"max_error_rate": 1.5}}),
        json!({"value": 1, "stages": [100], "health": {"max_error_rate": -0.1}}),
        json!({"value": 1, "stages": [100], "health": {"on_unhealthy": "explode"}}),
        json!({"value": 1, "stages": [100], "health": {"ack_timeout": "1ms"}}),
        json!({"value": 1, "stages": [100], "health": {"ack_timeout": "30s", "extra": 1}}),
        json!({"value": 1, "stages": [100], "surprise": true}),
        json!({"value": "a: [", "format": "yaml", "stages": [100]}),
    ];
    for case in cases {
        let (status, body) = start(&w, "/h/x", case.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case} → {body}");
        assert!(body["error"]["message"].is_string(), "{case} → {body}");
    }
    let (status, _) = call(&w.http, Method::POST, w.config_url("/h/x/rollout"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty body");
    let (status, _) = call(&w.http, Method::POST, w.config_url("/h/x"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "POST without /rollout");
    let (status, _) = start(
        &w,
        "/_setpoint/accounts/admin",
        json!({"value": 1, "stages": [100]}),
    )
    .await;
    assert!(
        status.is_client_error(),
        "system records are not rolled out"
    );
    for id in ["roll_nope", "nope", "roll_a%2Fb", "roll_%00"] {
        let (status, _) = call(
            &w.http,
            Method::GET,
            w.url(&format!("/api/rollouts/{id}")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }
    let (status, created) = start(&w, "/h/x", json!({"value": 1, "stages": [100]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = steer(&w, &id_of(&created), "explode").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for query in ["status=done", "path=not a path", "colour=red"] {
        let (status, _) = call(
            &w.http,
            Method::GET,
            w.url(&format!("/api/rollouts?{query}")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_steering_need_the_rollout_action() {
    let backend = Backend::embedded();
    let w = TestWriter::start(&backend).await;
    let account = |id: &'static str, actions: Value| {
        let w = &w;
        async move {
            let (status, body) = call(
                &w.http,
                Method::POST,
                w.url("/api/accounts"),
                Some(json!({"id": id, "grants": [{"prefix": "/team", "actions": actions}]})),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            client_with_key(body["key"].as_str().unwrap())
        }
    };
    let writer = account("writer", json!(["read", "write"])).await;
    let roller = account("roller", json!(["read", "rollout"])).await;
    let reader = account("reader", json!(["read"])).await;
    let url = w.config_url("/team/x/rollout");
    let body = json!({"value": 1, "stages": [100]});

    let (status, _) = call(&writer, Method::POST, url.clone(), Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "write is not rollout");
    let (status, created) = call(&roller, Method::POST, url.clone(), Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    let (status, _) = call(
        &roller,
        Method::POST,
        w.config_url("/elsewhere/rollout"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only on its prefix");

    let (status, seen) = call(
        &reader,
        Method::GET,
        w.url(&format!("/api/rollouts/{id}")),
        None,
    )
    .await;
    assert_eq!(
        (status, seen["rollout_id"].clone()),
        (StatusCode::OK, json!(id.clone()))
    );
    for action in ["advance", "pause", "rollback"] {
        let (status, _) = call(
            &reader,
            Method::POST,
            w.url(&format!("/api/rollouts/{id}/{action}")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action} needs rollout");
    }
    let (status, _) = call(
        &roller,
        Method::POST,
        w.url(&format!("/api/rollouts/{id}/rollback")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The denials are audited.
    let (_, audit) = call(
        &w.http,
        Method::GET,
        w.url("/api/audit?outcome=denied&limit=100"),
        None,
    )
    .await;
    assert!(!audit["records"].as_array().unwrap().is_empty(), "{audit}");
    // Someone who cannot read the path does not see the rollout in the listing.
    let outsider = {
        let (status, body) = call(
            &w.http,
            Method::POST,
            w.url("/api/accounts"),
            Some(json!({"id": "outsider", "grants": [{"prefix": "/other", "actions": ["read"]}]})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        client_with_key(body["key"].as_str().unwrap())
    };
    let (_, listed) = call(&outsider, Method::GET, w.url("/api/rollouts"), None).await;
    assert!(
        listed["rollouts"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    let (status, _) = call(
        &outsider,
        Method::GET,
        w.url(&format!("/api/rollouts/{id}")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    w.stop().await;
}

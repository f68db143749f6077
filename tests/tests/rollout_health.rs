//! Rollouts with real clients: the seed's demo verbatim with `curl` against a real
//! `setpoint dev` while Rust SDK clients are connected (members see the candidate, the rest the
//! stable value, the status counts them, rollback brings everyone back), and the health gates —
//! an SDK whose callback fails halts the rollout (rolled back, the instance named), a session
//! that never acknowledges halts it (paused, the instance named); a dry run lists each stage's
//! instances, and a rollout started under its id holds exactly those.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as Up;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_sdk::{Client, Options, WatchHandle};
use setpoint_tests::binary::SetpointProcess;
use setpoint_tests::wait_until;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Generous: two loaded cores; edges report their clients every second.
const SETTLE: Duration = Duration::from_secs(30);

async fn dev() -> (tempfile::TempDir, SetpointProcess) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev =
        SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir.path()).await;
    (dir, dev)
}

async fn put(base: &str, path: &str, value: Value) {
    let response = reqwest::Client::new()
        .put(format!("{base}/api/config{path}"))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn get_json(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `curl` as a user types it; its standard output as JSON.
fn curl(args: &[&str]) -> Value {
    let output = std::process::Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .expect("run curl");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("curl {args:?} printed no JSON ({e}): {output:?}"))
}

/// SDK clients `app-0..n` watching `/myapp`; `failing` ones NACK every change of `path`.
async fn clients(
    base: &str,
    n: usize,
    path: &'static str,
    failing: &[usize],
) -> (Vec<Client>, Vec<WatchHandle>) {
    let mut out = Vec::new();
    let mut watches = Vec::new();
    for i in 0..n {
        let client = Client::new(
            base,
            Options {
                prefixes: vec!["/myapp".into()],
                instance_id: Some(format!("app-{i}")),
                ..Options::default()
            },
        )
        .unwrap();
        client.wait_ready(SETTLE).await.unwrap();
        let fails = failing.contains(&i);
        let watch = client
            .watch("/myapp", move |event| {
                if fails && event.path == path {
                    Err("the new host is unreachable")
                } else {
                    Ok(())
                }
            })
            .unwrap();
        watches.push(watch);
        out.push(client);
    }
    (out, watches)
}

fn holds(client: &Client, path: &str) -> String {
    client
        .get(path)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_demo_verbatim_with_sdk_clients_connected() {
    let (_dir, dev) = dev().await;
    let base = dev.base();
    put(&base, "/myapp/database/host", json!("old-host.internal")).await;
    let (apps, _watches) = clients(&base, 10, "/myapp/database/host", &[]).await;

    // The demo, as the seed writes it (against this dev's address).
    let created = curl(&[
        "-X",
        "POST",
        &format!("{base}/api/config/myapp/database/host/rollout"),
        "-d",
        r#"{"value": "new-host.internal", "stages": [10, 50, 100], "interval": "5m"}"#,
    ]);
    assert!(
        created["rollout_id"].as_str().unwrap().starts_with("roll_"),
        "{created}"
    );
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["stage"], 1);
    let id = created["rollout_id"].as_str().unwrap().to_owned();
    // Stage 2 by hand (the demo's interval is 5 minutes).
    let (status, advanced) = post(format!("{base}/api/rollouts/{id}/advance"), json!({})).await;
    assert_eq!(status, 200, "{advanced}");

    // Members hold the candidate, the others the stable value; the status counts them.
    let settled = wait_until(SETTLE, || async {
        let status = curl(&[&format!("{base}/api/rollouts/{id}")]);
        status["stage"] == 2
            && status["matching"] == 10
            && status["acked"] == status["members"]
            && status["members"].as_u64().unwrap() > 0
    })
    .await;
    let status = curl(&[&format!("{base}/api/rollouts/{id}")]);
    assert!(settled, "{status:#}");
    assert_eq!(status["healthy"], true, "{status:#}");
    let members = status["members"].as_u64().unwrap() as usize;
    let progress = status["progress"].as_f64().unwrap();
    assert!(
        (progress - members as f64 * 10.0).abs() < 1e-9,
        "progress is the share of the 10 that applied the candidate: {status:#}"
    );
    let on_candidate = apps
        .iter()
        .filter(|c| holds(c, "/myapp/database/host") == "new-host.internal")
        .count();
    assert_eq!(on_candidate, members, "{status:#}");
    // A read without an instance id sees the stable value.
    let plain = get_json(format!("{base}/api/config/myapp/database/host")).await;
    assert_eq!(plain["value"], "old-host.internal");

    // Rollback, as the demo does: everyone is back on the stable value.
    let back = curl(&["-X", "POST", &format!("{base}/api/rollouts/{id}/rollback")]);
    assert_eq!(back["status"], "rolled_back", "{back}");
    let reverted = wait_until(SETTLE, || async {
        apps.iter()
            .all(|c| holds(c, "/myapp/database/host") == "old-host.internal")
    })
    .await;
    assert!(reverted, "every client returns to the stable value");
    for app in &apps {
        app.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_whose_callback_fails_halts_the_rollout() {
    let (_dir, dev) = dev().await;
    let base = dev.base();
    put(&base, "/myapp/flag", json!("off")).await;
    let (apps, _watches) = clients(&base, 4, "/myapp/flag", &[2]).await;
    let (status, created) = post(
        format!("{base}/api/config/myapp/flag/rollout"),
        json!({"value": "on", "stages": [100], "interval": "1h",
               "health": {"ack_timeout": "30s", "max_error_rate": 0.01, "on_unhealthy": "rollback"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["rollout_id"].as_str().unwrap().to_owned();
    let halted = wait_until(SETTLE, || async {
        get_json(format!("{base}/api/rollouts/{id}")).await["status"] == "rolled_back"
    })
    .await;
    let status = get_json(format!("{base}/api/rollouts/{id}")).await;
    assert!(halted, "{status:#}");
    assert_eq!(
        status["halted"]["instances"],
        json!(["app-2"]),
        "{status:#}"
    );
    assert!(
        status["halted"]["reason"]
            .as_str()
            .unwrap()
            .contains("NACK"),
        "{status:#}"
    );
    assert_eq!(status["healthy"], false);
    let last = status["transitions"].as_array().unwrap().last().unwrap();
    assert_eq!(last["status"], "rolled_back");
    assert_eq!(last["by"], "setpoint", "the stage clock did it: {last}");
    let reverted = wait_until(SETTLE, || async {
        apps.iter().all(|c| holds(c, "/myapp/flag") == "off")
    })
    .await;
    assert!(reverted, "the rollback reaches every client");
    let audit = get_json(format!("{base}/api/audit?action=rollout.halt")).await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    for app in &apps {
        app.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_never_acknowledges_pauses_the_rollout() {
    let (_dir, dev) = dev().await;
    let base = dev.base();
    put(&base, "/myapp/limit", json!(1)).await;
    // A raw session that reads its updates and never sends a receipt.
    let mut grpc = EdgeClient::connect(base.clone()).await.unwrap();
    let (up, rx) = mpsc::channel(16);
    up.send(pb::ClientMessage {
        kind: Some(Up::Hello(pb::ClientHello {
            instance_id: "silent-1".into(),
            env: None,
            prefixes: vec!["/myapp".into()],
            labels: Default::default(),
            sdk: "test".into(),
            sdk_version: "0.0.1".into(),
            from_revision: None,
            resolve: false,
        })),
    })
    .await
    .unwrap();
    let mut down = grpc
        .session(tonic::Request::new(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    let received = Arc::new(Mutex::new(0usize));
    let counter = received.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(_)) = down.message().await {
            *counter.lock().unwrap() += 1;
        }
    });
    let seen = wait_until(SETTLE, || async {
        let clients = get_json(format!("{base}/api/clients?status=connected")).await;
        clients.as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    assert!(seen, "the session reaches the writer's fleet view");

    let (status, created) = post(
        format!("{base}/api/config/myapp/limit/rollout"),
        json!({"value": 2, "stages": [100],
               "health": {"ack_timeout": "2s", "on_unhealthy": "pause"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["rollout_id"].as_str().unwrap().to_owned();
    let paused = wait_until(SETTLE, || async {
        get_json(format!("{base}/api/rollouts/{id}")).await["status"] == "paused"
    })
    .await;
    let status = get_json(format!("{base}/api/rollouts/{id}")).await;
    assert!(paused, "{status:#}");
    assert_eq!(
        status["halted"]["instances"],
        json!(["silent-1"]),
        "{status:#}"
    );
    assert!(
        status["halted"]["reason"]
            .as_str()
            .unwrap()
            .contains("did not acknowledge"),
        "{status:#}"
    );
    assert!(
        *received.lock().unwrap() > 0,
        "the session was sent updates"
    );
    drop(up);
    reader.abort();
}

/// The writer counts as members only the clients an edge delivers the candidate to: a client in
/// `prod`, whose own override hides the base path being rolled out, is not waited for — before
/// this, it counted as a member that never acknowledged and paused every such rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_override_hides_the_path_is_not_a_member() {
    let (_dir, dev) = dev().await;
    let base = dev.base();
    put(&base, "/myapp/db/host", json!("stable")).await;
    put(&base, "/env/prod/myapp/db/host", json!("prod-host")).await;
    let mut apps = Vec::new();
    for (id, env) in [("in-dev", "dev"), ("in-prod", "prod")] {
        let client = Client::new(
            &base,
            Options {
                prefixes: vec!["/myapp".into()],
                instance_id: Some(id.into()),
                environment: Some(env.into()),
                ..Options::default()
            },
        )
        .unwrap();
        client.wait_ready(SETTLE).await.unwrap();
        apps.push(client);
    }
    let (status, created) = post(
        format!("{base}/api/config/myapp/db/host/rollout"),
        json!({"value": "candidate", "stages": [100],
               "health": {"ack_timeout": "2s", "on_unhealthy": "pause"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["rollout_id"].as_str().unwrap().to_owned();
    let url = format!("{base}/api/rollouts/{id}");
    let settled = wait_until(SETTLE, || async {
        let status = get_json(url.clone()).await;
        status["members"] == 1 && status["acked"] == 1
    })
    .await;
    let status = get_json(url.clone()).await;
    assert!(settled, "{status:#}");
    assert_eq!(holds(&apps[0], "/myapp/db/host"), "candidate");
    assert_eq!(holds(&apps[1], "/myapp/db/host"), "prod-host");
    // Well past the ack timeout, still healthy and in progress.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = get_json(url).await;
    assert_eq!(status["status"], "in_progress", "{status:#}");
    assert_eq!(status["healthy"], true, "{status:#}");
    assert_eq!(status["matching"], 1, "{status:#}");
    for app in &apps {
        app.close().await;
    }
}

/// The ids a dry run's stage lists, as a set.
fn listed(stage: &Value) -> std::collections::BTreeSet<String> {
    stage["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_each_stages_instances_and_starting_with_its_id_keeps_them() {
    let (_dir, dev) = dev().await;
    let base = dev.base();
    put(&base, "/myapp/database/host", json!("old-host.internal")).await;
    let (apps, _watches) = clients(&base, 10, "/myapp/database/host", &[]).await;
    let url = format!("{base}/api/config/myapp/database/host/rollout");
    let body = json!({"value": "new-host.internal", "stages": [30, 100],
                      "canary": {"instances": ["app-7"]}});

    // The fleet learns of the sessions from the edge's reports: wait until the draft sees all.
    let dry_run = || async {
        let (status, answer) = post(format!("{url}?dry_run=true"), body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let known = wait_until(SETTLE, || async { dry_run().await["matching"] == 10 }).await;
    let draft = dry_run().await;
    assert!(known, "{draft:#}");
    assert_eq!(draft["dry_run"], true);
    let id = draft["rollout_id"].as_str().unwrap().to_owned();
    let stages = draft["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3, "canary, 30 %, 100 %: {draft:#}");
    assert_eq!(stages[0]["kind"], "canary");
    assert_eq!(listed(&stages[0]), ["app-7".to_owned()].into());
    assert_eq!(stages[1]["percent"], 30);
    assert!(listed(&stages[0]).is_subset(&listed(&stages[1])));
    assert_eq!(stages[2]["count"], 10);
    // The candidate's impact: the next version, the value before and after, the 10 reached.
    let preview = &draft["preview"];
    assert_eq!(preview["changes"][0]["version"], 2, "{preview:#}");
    assert_eq!(preview["effective"][0]["before"], "old-host.internal");
    assert_eq!(preview["effective"][0]["after"], "new-host.internal");
    assert_eq!(preview["clients"]["total"], 10, "{preview:#}");

    // Nothing was written: no rollout, the value unchanged, every client on the stable value.
    let listing = get_json(format!("{base}/api/rollouts")).await;
    assert_eq!(listing["rollouts"], json!([]), "{listing}");
    let plain = get_json(format!("{base}/api/config/myapp/database/host")).await;
    assert_eq!(plain["version"], 1);
    assert!(
        apps.iter()
            .all(|c| holds(c, "/myapp/database/host") == "old-host.internal")
    );

    // Started under the draft's id, each stage holds exactly the instances the draft listed.
    let mut with_id = body.clone();
    with_id["id"] = json!(id);
    let (status, created) = post(url.clone(), with_id.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["rollout_id"], id.as_str());
    for (index, stage) in stages.iter().enumerate().take(2) {
        if index > 0 {
            let (status, moved) =
                post(format!("{base}/api/rollouts/{id}/advance"), json!({})).await;
            assert_eq!(status, 200, "{moved}");
        }
        let expected = listed(stage);
        let holding = || {
            apps.iter()
                .enumerate()
                .filter(|(_, c)| holds(c, "/myapp/database/host") == "new-host.internal")
                .map(|(i, _)| format!("app-{i}"))
                .collect::<std::collections::BTreeSet<String>>()
        };
        let matched = wait_until(SETTLE, || async { holding() == expected }).await;
        assert!(
            matched,
            "stage {}: the draft listed {expected:?}, the candidate reached {:?}",
            index + 1,
            holding()
        );
    }

    // The id starts one rollout; a malformed one is a 400.
    let (status, again) = post(url.clone(), with_id).await;
    assert_eq!(status, 409, "{again}");
    let mut bad = body.clone();
    bad["id"] = json!("not-a-rollout-id");
    let (status, refused) = post(format!("{url}?dry_run=true"), bad).await;
    assert_eq!(status, 400, "{refused}");
    for app in &apps {
        app.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_rollout_counts_the_clients_of_environments_inheriting_it() {
    let (_dir, dev) = dev().await;
    let base = dev.base();
    let http = reqwest::Client::new();
    for (name, body) in [
        ("prod", json!({})),
        ("prod-eu", json!({"parent": "prod"})),
        ("staging", json!({})),
    ] {
        let response = http
            .put(format!("{base}/api/environments/{name}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
    }
    put(&base, "/myapp/flag", json!("off")).await;
    // Two clients inherit prod's override, one is in prod; staging and a plain client never
    // see it.
    let mut apps = Vec::new();
    for (id, env) in [
        ("eu-1", Some("prod-eu")),
        ("eu-2", Some("prod-eu")),
        ("prod-1", Some("prod")),
        ("staging-1", Some("staging")),
        ("plain-1", None),
    ] {
        let client = Client::new(
            &base,
            Options {
                prefixes: vec!["/myapp".into()],
                instance_id: Some(id.into()),
                environment: env.map(str::to_owned),
                ..Options::default()
            },
        )
        .unwrap();
        client.wait_ready(SETTLE).await.unwrap();
        apps.push((id, client));
    }
    let (status, created) = post(
        format!("{base}/api/config/env/prod/myapp/flag/rollout"),
        json!({"value": "on", "stages": [100]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["rollout_id"].as_str().unwrap().to_owned();
    let settled = wait_until(SETTLE, || async {
        let status = get_json(format!("{base}/api/rollouts/{id}")).await;
        status["matching"] == 3 && status["acked"] == 3
    })
    .await;
    let status = get_json(format!("{base}/api/rollouts/{id}")).await;
    assert!(
        settled,
        "prod and prod-eu's three clients are members: {status:#}"
    );
    assert_eq!(status["members"], 3, "{status:#}");
    assert_eq!(status["healthy"], true, "{status:#}");
    for (id, client) in &apps {
        let expected = if id.starts_with("eu-") || id.starts_with("prod-") {
            "on"
        } else {
            "off"
        };
        assert_eq!(holds(client, "/myapp/flag"), expected, "{id}");
    }
    for (_, app) in &apps {
        app.close().await;
    }
}

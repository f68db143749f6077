//! The real `setpoint` binary: the README's seed demo run verbatim with curl against
//! `setpoint dev`, restart durability, graceful SIGTERM, and `--help`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;
use setpoint_tests::binary::{SetpointProcess, setpoint_bin};

fn curl(args: &[&str]) -> Value {
    let output = Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "curl {args:?} gave non-JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The status and JSON body of `curl args`.
fn curl_status(args: &[&str]) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn seed_demo_runs_verbatim_against_setpoint_dev() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev =
        SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir.path()).await;
    let url = format!("{}/api/config/myapp/database/connection_string", dev.base());

    // The README's commands, with only the host:port changed. curl -d labels the body as a form.
    let created = curl(&[
        "-X",
        "PUT",
        &url,
        "-d",
        r#"{"value": "postgres://localhost:5432/mydb", "description": "Primary database connection",
       "schema": {"type": "string", "format": "uri"}}"#,
    ]);
    assert_eq!(created["path"], "/myapp/database/connection_string");
    assert_eq!(created["version"], 1);
    let read = curl(&[&url]);
    assert_eq!(read["value"], "postgres://localhost:5432/mydb");
    assert_eq!(read["version"], 1);
    assert!(read["updated_at"].is_string());
    let updated = curl(&[
        "-X",
        "PUT",
        &url,
        "-d",
        r#"{"value": "postgres://newhost:5432/mydb"}"#,
    ]);
    assert_eq!(updated["version"], 2);
    let history = curl(&[&format!("{url}/history")]);
    assert_eq!(history[0]["version"], 2);
    assert_eq!(history[0]["value"], "postgres://newhost:5432/mydb");
    assert!(history[0]["updated_at"].is_string());
    assert_eq!(history[1]["version"], 1);
    let old = curl(&[&format!("{url}?version=1")]);
    assert_eq!(old["value"], "postgres://localhost:5432/mydb");
    let bad = curl(&["-X", "PUT", &url, "-d", r#"{"value": "not a uri"}"#]);
    assert_eq!(bad["error"]["code"], "validation_failed");

    let base = format!("{}/api/config/myapp/database", dev.base());
    curl(&[
        "-X",
        "PUT",
        &format!("{base}/pool_size"),
        "-d",
        r#"{"value": 20}"#,
    ]);
    curl(&[
        "-X",
        "PUT",
        &format!("{base}/timeout"),
        "-d",
        r#"{"value": "30s"}"#,
    ]);
    let children = curl(&[&base]);
    assert_eq!(
        children["children"],
        serde_json::json!(["connection_string", "pool_size", "timeout"])
    );

    // The same demo with the dev admin key as a Bearer token; a bad token is a 401 even from
    // loopback, on the writer's routes and the edge's.
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let bearer = format!("Authorization: Bearer {}", key.trim());
    let edge_url = format!(
        "{}/edge/api/config/myapp/database/connection_string",
        dev.base()
    );
    let (status, read) = curl_status(&["-H", &bearer, &url]);
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["value"], "postgres://newhost:5432/mydb");
    let (status, written) = curl_status(&[
        "-X",
        "PUT",
        "-H",
        &bearer,
        &format!("{base}/pool_size"),
        "-d",
        r#"{"value": 25}"#,
    ]);
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["version"], 2);
    let served = setpoint_tests::wait_until(std::time::Duration::from_secs(5), || async {
        curl_status(&["-H", &bearer, &edge_url]).1["value"] == "postgres://newhost:5432/mydb"
    })
    .await;
    assert!(served, "the edge serves the key's reads");
    for target in [&url, &edge_url] {
        let (status, body) = curl_status(&["-H", "Authorization: Bearer garbage", target]);
        assert_eq!(status, 401, "{target}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }

    // SIGTERM stops it gracefully; a new process on the same data serves everything.
    let status = dev.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let dev =
        SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir.path()).await;
    let url = format!("{}/api/config/myapp/database/connection_string", dev.base());
    let read = curl(&[&url]);
    assert_eq!(read["value"], "postgres://newhost:5432/mydb");
    assert_eq!(read["version"], 2);
    let next = curl(&[
        "-X",
        "PUT",
        &url,
        "-d",
        r#"{"value": "postgres://third:5432/mydb"}"#,
    ]);
    assert_eq!(next["version"], 3, "versions continue after a restart");
}

#[test]
fn help_explains_every_subcommand_and_env_var() {
    let output = Command::new(setpoint_bin())
        .args(["writer", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--store",
        "SETPOINT_STORE",
        "--store-prefix",
        "--listen",
        "--retention",
        "etcd://",
    ] {
        assert!(
            help.contains(needle),
            "writer --help lacks {needle}:\n{help}"
        );
    }
    let output = Command::new(setpoint_bin())
        .args(["dev", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("--data-dir") && help.contains("SETPOINT_DATA_DIR"),
        "{help}"
    );
    let output = Command::new(setpoint_bin())
        .args(["writer", "--store", "mysql://x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown store"));
}

#[tokio::test]
async fn dev_serves_rest_sse_and_grpc_on_its_one_port() {
    use setpoint_proto::edge::v1::{GetRequest, WatchRequest, edge_client::EdgeClient};
    use setpoint_tests::sse::SseWatcher;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev =
        SetpointProcess::start(&["dev", "--data-dir", data.to_str().unwrap()], dir.path()).await;
    let watcher = SseWatcher::start(format!("{}/api/config/myapp?watch=true", dev.base()));
    let mut grpc = EdgeClient::connect(dev.base()).await.unwrap();
    let mut stream = grpc
        .watch(WatchRequest {
            prefixes: vec!["/myapp".into()],
            from_revision: None,
            instance_id: "t".into(),
            env: None,
            resolve: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        setpoint_tests::wait_until(std::time::Duration::from_secs(10), || async {
            watcher.connects() > 0
        })
        .await
    );

    let url = format!("{}/api/config/myapp/database/host", dev.base());
    let first = curl(&["-X", "PUT", &url, "-d", r#"{"value": "old-host"}"#]);
    let second = curl(&["-X", "PUT", &url, "-d", r#"{"value": "new-host"}"#]);
    let revision = second["revision"].as_i64().unwrap();

    // SSE on the shared port: the update carries path, old and new value, version, revision.
    let seen = setpoint_tests::wait_until(std::time::Duration::from_secs(5), || async {
        watcher.changes().iter().any(|c| c.0 == revision)
    })
    .await;
    assert!(seen, "SSE events: {:?}", watcher.events());
    let event = watcher
        .events()
        .into_iter()
        .find(|e| e.data["revision"] == revision)
        .unwrap();
    assert_eq!(event.data["type"], "update");
    assert_eq!(event.data["path"], "/myapp/database/host");
    assert_eq!(event.data["value"], "new-host");
    assert_eq!(event.data["old_value"], "old-host");
    assert_eq!(event.data["version"], 2);
    assert_eq!(event.id, Some(revision));

    // gRPC on the same port: the watch saw both commits in order, and Get serves the value.
    let mut revisions = Vec::new();
    while revisions.len() < 2 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if !message.events.is_empty() {
            revisions.push(message.revision);
        }
    }
    assert_eq!(
        revisions,
        vec![first["revision"].as_i64().unwrap(), revision]
    );
    let got = grpc
        .get(GetRequest {
            path: "/myapp/database/host".into(),
            env: None,
            version: None,
        })
        .await
        .unwrap()
        .into_inner();
    let entry = got.entry.unwrap();
    assert_eq!(entry.value, "\"new-host\"");
    assert_eq!(entry.version, 2);
    // With a key, gRPC gets that key's rights; a bad key is refused even from loopback.
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    for (token, ok) in [(key.trim(), true), ("garbage", false)] {
        let mut request = tonic::Request::new(GetRequest {
            path: "/myapp/database/host".into(),
            env: None,
            version: None,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        match grpc.get(request).await {
            Ok(reply) => assert!(ok, "{reply:?}"),
            Err(status) => {
                assert!(!ok, "{status:?}");
                assert_eq!(status.code(), tonic::Code::Unauthenticated);
            }
        }
    }
    // The edge's own HTTP routes are under /edge.
    let edge = curl(&[&format!(
        "{}/edge/api/config/myapp/database/host",
        dev.base()
    )]);
    assert_eq!(edge["value"], "new-host");
}

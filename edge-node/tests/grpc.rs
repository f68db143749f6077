//! The edge's gRPC API against a real edge on a loopback socket (h2c on the shared port).

// Helpers outside #[test] functions unwrap too: a failure here is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{Op, TestEdge};
use serde_json::json;
use setpoint_edge_node::EdgeConfig;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use tonic::Code;
use tonic::transport::Channel;

async fn client(edge: &TestEdge) -> EdgeClient<Channel> {
    EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap()
}

fn get(path: &str) -> pb::GetRequest {
    pb::GetRequest {
        path: path.to_owned(),
        env: None,
        version: None,
    }
}

fn watch(prefixes: &[&str], from_revision: Option<i64>) -> pb::WatchRequest {
    pb::WatchRequest {
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        from_revision,
        instance_id: "test".to_owned(),
        env: None,
        resolve: false,
    }
}

#[tokio::test]
async fn get_and_list_with_bad_inputs() {
    let edge = TestEdge::start().await;
    let revision = edge.commit(vec![
        Op::Put("/app/db/host", json!("db1")),
        Op::Text("/app/name", "shop"),
    ]);
    let mut client = client(&edge).await;

    let got = client.get(get("/app/db/host")).await.unwrap().into_inner();
    let entry = got.entry.unwrap();
    assert_eq!(entry.value, "\"db1\"");
    assert_eq!(entry.format, "json");
    assert_eq!((entry.version, entry.revision), (1, revision));
    assert_eq!(got.revision, revision);
    assert!(got.stale);
    let text = client.get(get("app/name")).await.unwrap().into_inner();
    assert_eq!(text.entry.unwrap().value, "\"shop\"");

    for (path, code) in [
        ("", Code::InvalidArgument),
        ("/a/../b", Code::InvalidArgument),
        ("/a//b", Code::InvalidArgument),
        ("/missing", Code::NotFound),
    ] {
        let status = client.get(get(path)).await.unwrap_err();
        assert_eq!(status.code(), code, "{path:?}: {status:?}");
    }
    let mut with_env = get("/app/db/host");
    with_env.env = Some("prod".into());
    let status = client.get(with_env).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status
            .message()
            .contains("environment \"prod\" does not exist"),
        "{status:?}"
    );
    let mut old = get("/app/db/host");
    old.version = Some(7);
    assert_eq!(client.get(old).await.unwrap_err().code(), Code::NotFound);

    let listed = client
        .list(pb::ListRequest {
            prefix: "/app".into(),
            recursive: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.children, vec!["db", "name"]);
    let paths: Vec<&str> = listed.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/app/db/host", "/app/name"]);
    assert_eq!(listed.revision, revision);
    let status = client
        .list(pb::ListRequest {
            prefix: "/a/..".into(),
            recursive: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    edge.stop().await;
}

#[tokio::test]
async fn watch_delivers_batches_in_order_and_refuses_bad_requests() {
    let edge = TestEdge::start_with(EdgeConfig {
        watcher_queue: 2048,
        ..harness::anonymous()
    })
    .await;
    let mut client = client(&edge).await;
    let status = client.watch(watch(&[], None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // Issue 11, finding 5: a watch of 100k prefixes is refused at once; 1,000 are fine.
    let many: Vec<String> = (0..100_000).map(|n| format!("/p{n}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let status = client.watch(watch(&many, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at most 1000"), "{status:?}");
    let status = client.watch(watch(&["/a/../b"], None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut stream = client
        .watch(watch(&["/load", "/app"], None))
        .await
        .unwrap()
        .into_inner();
    edge.wait_for_watchers(1).await;
    let first = edge.commit(vec![
        Op::Put("/app/a", json!({"on": true})),
        Op::Put("/load/k", json!(0)),
        Op::Put("/other", json!(0)),
    ]);
    let message = harness::next_message(&mut stream).await;
    assert_eq!(message.revision, first);
    assert!(!message.reset);
    let paths: Vec<&str> = message.events.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/app/a", "/load/k"]);
    assert_eq!(
        message.events[0].new_value.as_deref(),
        Some("{\"on\":true}")
    );
    assert_eq!(message.events[0].old_value, None);

    let mut expected = Vec::new();
    for i in 1..=1000 {
        expected.push(edge.commit(vec![Op::Put("/load/k", json!(i))]));
    }
    for (i, revision) in expected.iter().enumerate() {
        let message = harness::next_message(&mut stream).await;
        assert_eq!(message.revision, *revision);
        assert_eq!(message.events.len(), 1);
        let event = &message.events[0];
        assert_eq!(
            event.new_value.as_deref(),
            Some((i + 1).to_string().as_str())
        );
        assert_eq!(event.old_value.as_deref(), Some(i.to_string().as_str()));
    }
    let deleted = edge.commit(vec![Op::Delete("/app/a")]);
    let message = harness::next_message(&mut stream).await;
    assert_eq!(message.revision, deleted);
    assert_eq!(message.events[0].r#type, pb::event::Type::Delete as i32);
    assert_eq!(message.events[0].new_value, None);
    edge.stop().await;
}

#[tokio::test]
async fn watch_resumes_from_a_revision_or_resets() {
    let edge = TestEdge::start_with(EdgeConfig {
        ring_capacity: 3,
        ..harness::anonymous()
    })
    .await;
    let mut client = client(&edge).await;
    let revisions: Vec<i64> = (0..5)
        .map(|i| edge.commit(vec![Op::Put("/app/k", json!(i))]))
        .collect();
    let mut resumed = client
        .watch(watch(&["/app"], Some(revisions[2])))
        .await
        .unwrap()
        .into_inner();
    for revision in &revisions[3..] {
        assert_eq!(
            harness::next_message(&mut resumed).await.revision,
            *revision
        );
    }
    let mut reset = client
        .watch(watch(&["/app"], Some(revisions[0])))
        .await
        .unwrap()
        .into_inner();
    let first = harness::next_message(&mut reset).await;
    assert!(first.reset);
    assert_eq!(first.revision, revisions[4]);
    assert_eq!(first.state.len(), 1);
    assert_eq!(first.state[0].value, "4");
    edge.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let edge = TestEdge::start().await;
    let channel = Channel::from_shared(format!("http://{}", edge.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, 1, "SERVING");
    let edge_service = health
        .check(HealthCheckRequest {
            service: "setpoint.edge.v1.Edge".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edge_service.status, 1, "SERVING");
    let services = reflected_services(channel).await;
    assert!(
        services.iter().any(|s| s == "setpoint.edge.v1.Edge"),
        "{services:?}"
    );
    // An unknown HTTP path is the JSON 404.
    let response = reqwest::get(edge.url("/no/such/thing")).await.unwrap();
    assert_eq!(response.status(), 404);
    edge.stop().await;
}

async fn reflected_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = harness::next_message(&mut responses).await;
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

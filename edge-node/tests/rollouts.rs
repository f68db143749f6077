//! Rollouts at the edge, over real `Session` streams on a loopback socket: the records are
//! committed to the edge as the writer would replicate them, and each session must see exactly
//! what its instance is assigned — the candidate in its stage, the stable value outside it and
//! after a rollback, the committed version on completion — in revision order.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{Op, TestEdge};
use serde_json::{Value, json};
use setpoint_core::Format;
use setpoint_core::rollout::{Canary, Health, Rollout, Status};
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as Up;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_proto::edge::v1::server_message::Kind as Down;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const RECORD: &str = "/_setpoint/rollouts/roll_t";
const SECOND: &str = "/_setpoint/rollouts/roll_u";

struct Client {
    _up: mpsc::Sender<pb::ClientMessage>,
    down: tonic::Streaming<pb::ServerMessage>,
}

async fn open(edge: &TestEdge, id: &str, from_revision: Option<i64>) -> Client {
    let mut grpc = EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap();
    let (up, rx) = mpsc::channel(16);
    up.send(pb::ClientMessage {
        kind: Some(Up::Hello(pb::ClientHello {
            instance_id: id.into(),
            env: None,
            prefixes: vec!["/app".into()],
            labels: [("zone".to_owned(), "eu-1".to_owned())].into(),
            sdk: "test".into(),
            sdk_version: "0.0.1".into(),
            from_revision,
            resolve: false,
        })),
    })
    .await
    .unwrap();
    let down = grpc
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    Client { _up: up, down }
}

impl Client {
    /// The next update within `wait`, skipping heartbeats and the start; `None` if none came.
    async fn update_within(&mut self, wait: Duration) -> Option<pb::WatchResponse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.down.message()).await;
            match message {
                Err(_) => return None,
                Ok(message) => match message.unwrap().and_then(|m| m.kind) {
                    Some(Down::Update(update)) => return Some(update),
                    Some(Down::Heartbeat(_) | Down::Started(_)) => {}
                    None => panic!("the session ended"),
                },
            }
        }
    }

    async fn update(&mut self) -> pb::WatchResponse {
        self.update_within(Duration::from_secs(5))
            .await
            .expect("an update within 5 s")
    }

    /// No update arrives within a second (the edge delivers in milliseconds; a second is a wide
    /// margin for "nothing is coming").
    async fn nothing(&mut self) {
        if let Some(update) = self.update_within(Duration::from_secs(1)).await {
            panic!("expected nothing, got {update:?}");
        }
    }
}

/// `(path, new value)` of an update's events.
fn events(update: &pb::WatchResponse) -> Vec<(String, Option<Value>)> {
    update
        .events
        .iter()
        .map(|e| {
            let value = e
                .new_value
                .as_deref()
                .map(|v| serde_json::from_str(v).unwrap());
            (e.path.clone(), value)
        })
        .collect()
}

/// `/app/db/host` over HTTP, as `instance` when given.
async fn read(edge: &TestEdge, instance: Option<&str>) -> Value {
    let mut request = reqwest::Client::new().get(edge.url("/api/config/app/db/host"));
    if let Some(instance) = instance {
        request = request.header("X-Setpoint-Instance", instance);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    body["value"].clone()
}

/// `/app/db/host` over gRPC `Get`, as `instance` when given (metadata `x-setpoint-instance`).
async fn get(edge: &TestEdge, instance: Option<&str>) -> Value {
    let mut grpc = EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::GetRequest {
        path: "/app/db/host".into(),
        env: None,
        version: None,
    });
    if let Some(instance) = instance {
        request
            .metadata_mut()
            .insert("x-setpoint-instance", instance.parse().unwrap());
    }
    let entry = grpc.get(request).await.unwrap().into_inner().entry.unwrap();
    serde_json::from_str(&entry.value).unwrap()
}

fn record(id: &str, stage: usize, status: Status) -> Value {
    serde_json::to_value(Rollout {
        id: id.into(),
        path: "/app/db/host".into(),
        value: json!("candidate"),
        format: Format::Json,
        stable_version: 1,
        canary: Some(Canary {
            instances: vec!["canary-1".into()],
            labels: BTreeMap::new(),
        }),
        stages: vec![50, 100],
        interval_ms: 60_000,
        health: Health::default(),
        status,
        stage,
        stage_started_ms: 0,
        created_at_ms: 0,
        created_by: "admin".into(),
        transitions: Vec::new(),
        halted: None,
    })
    .unwrap()
}

/// An instance id in (or out of) the 50 % stage of rollout `id`.
fn instance(id: &str, member: bool) -> String {
    let at_50: Rollout = serde_json::from_value(record(id, 2, Status::InProgress)).unwrap();
    (0..)
        .map(|i| format!("app-{i}"))
        .find(|name| at_50.member(name, &BTreeMap::new()) == member)
        .unwrap()
}

#[tokio::test]
async fn each_session_sees_what_its_stage_assigns_through_rollback() {
    let edge = TestEdge::start().await;
    edge.commit(vec![Op::Put("/app/db/host", json!("stable"))]);
    let (member, outsider) = (instance("roll_t", true), instance("roll_t", false));
    let mut canary = open(&edge, "canary-1", None).await;
    let mut inside = open(&edge, &member, None).await;
    let mut outside = open(&edge, &outsider, None).await;
    for client in [&mut canary, &mut inside, &mut outside] {
        assert!(client.update().await.reset);
    }

    // Stage 1, the canary: only the canary gets the candidate, at the record's revision.
    let started = edge.commit(vec![Op::Put(
        RECORD,
        record("roll_t", 1, Status::InProgress),
    )]);
    let update = canary.update().await;
    assert_eq!(update.revision, started);
    assert_eq!(
        events(&update),
        vec![("/app/db/host".into(), Some(json!("candidate")))]
    );
    assert_eq!(update.events[0].old_value.as_deref(), Some("\"stable\""));
    inside.nothing().await;
    outside.nothing().await;

    // Stage 2, 50 %: the member joins; the canary already has it.
    edge.commit(vec![Op::Put(
        RECORD,
        record("roll_t", 2, Status::InProgress),
    )]);
    assert_eq!(
        events(&inside.update().await),
        vec![("/app/db/host".into(), Some(json!("candidate")))]
    );
    canary.nothing().await;
    outside.nothing().await;

    // Reads naming an instance answer as its session delivers; reads naming none, stable.
    for (who, want) in [
        (Some(member.as_str()), "candidate"),
        (Some(outsider.as_str()), "stable"),
        (None, "stable"),
    ] {
        assert_eq!(read(&edge, who).await, json!(want), "HTTP read as {who:?}");
        assert_eq!(get(&edge, who).await, json!(want), "gRPC Get as {who:?}");
    }

    // A fresh session of a member starts with the candidate; a resumed one gets it again.
    let mut late = open(&edge, &member, None).await;
    let reset = late.update().await;
    let held: Vec<(&str, &str)> = reset
        .state
        .iter()
        .map(|e| (e.path.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(held, vec![("/app/db/host", "\"candidate\"")]);

    // The stable value changes underneath: outsiders get it, members keep the candidate.
    edge.commit(vec![Op::Put("/app/db/host", json!("stable-2"))]);
    assert_eq!(
        events(&outside.update().await),
        vec![("/app/db/host".into(), Some(json!("stable-2")))]
    );
    inside.nothing().await;
    canary.nothing().await;

    // Rollback: every member is back on the stable value in one event; outsiders hear nothing.
    let rolled_back = edge.commit(vec![Op::Put(
        RECORD,
        record("roll_t", 2, Status::RolledBack),
    )]);
    for client in [&mut canary, &mut inside, &mut late] {
        let update = client.update().await;
        assert_eq!(update.revision, rolled_back);
        assert_eq!(
            events(&update),
            vec![("/app/db/host".into(), Some(json!("stable-2")))]
        );
    }
    outside.nothing().await;
}

#[tokio::test]
async fn completion_delivers_the_committed_version_once_and_a_resumed_member_catches_up() {
    let edge = TestEdge::start().await;
    let first = edge.commit(vec![Op::Put("/app/db/host", json!("stable"))]);
    let member = instance("roll_u", true);
    let mut inside = open(&edge, &member, None).await;
    let mut outside = open(&edge, &instance("roll_u", false), None).await;
    assert!(inside.update().await.reset);
    assert!(outside.update().await.reset);
    edge.commit(vec![Op::Put(
        SECOND,
        record("roll_u", 2, Status::InProgress),
    )]);
    assert_eq!(
        events(&inside.update().await),
        vec![("/app/db/host".into(), Some(json!("candidate")))]
    );

    // A member that resumes from before the rollout began gets the candidate after its replay.
    let mut resumed = open(&edge, &member, Some(first)).await;
    let update = resumed.update().await;
    assert!(!update.reset);
    assert_eq!(
        events(&update),
        vec![("/app/db/host".into(), Some(json!("candidate")))]
    );

    // Completion: the candidate committed as the next version and the record, in one batch.
    let completed = edge.commit(vec![
        Op::Put("/app/db/host", json!("candidate")),
        Op::Put(SECOND, record("roll_u", 3, Status::Completed)),
    ]);
    for client in [&mut inside, &mut outside, &mut resumed] {
        let update = client.update().await;
        assert_eq!(update.revision, completed);
        assert_eq!(
            events(&update),
            vec![("/app/db/host".into(), Some(json!("candidate")))],
            "one event: the committed version"
        );
        assert_eq!(update.events[0].version, 2);
        client.nothing().await;
    }
}

//! Client sessions (`Session` RPC) against a real edge on a loopback socket: hello, reset,
//! updates, receipts and NACKs in the registry, resumption, bad hellos, silent clients, and how
//! a session ends or hears of the edge's state (staleness, shutdown, a second hello).

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Op, TestEdge, wait_until};
use serde_json::json;
use setpoint_edge_node::EdgeConfig;
use setpoint_edge_node::session::SessionConfig;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as Up;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_proto::edge::v1::server_message::Kind as Down;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

struct Client {
    up: mpsc::Sender<pb::ClientMessage>,
    down: tonic::Streaming<pb::ServerMessage>,
}

fn hello(id: &str, prefixes: &[&str], from_revision: Option<i64>) -> pb::ClientMessage {
    pb::ClientMessage {
        kind: Some(Up::Hello(pb::ClientHello {
            instance_id: id.into(),
            env: None,
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            labels: [("zone".to_owned(), "eu-1".to_owned())].into(),
            sdk: "test".into(),
            sdk_version: "0.0.1".into(),
            from_revision,
            resolve: false,
        })),
    }
}

async fn open(edge: &TestEdge, first: pb::ClientMessage) -> Result<Client, tonic::Status> {
    let mut grpc = EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap();
    let (up, rx) = mpsc::channel(16);
    up.send(first).await.unwrap();
    let down = grpc.session(ReceiverStream::new(rx)).await?.into_inner();
    Ok(Client { up, down })
}

impl Client {
    async fn next(&mut self) -> Result<Down, tonic::Status> {
        let message = tokio::time::timeout(Duration::from_secs(5), self.down.message())
            .await
            .expect("a server message within 5 s")?;
        Ok(message
            .and_then(|m| m.kind)
            .expect("a message, not the end"))
    }

    /// The status the session ends with, skipping every message before it.
    async fn ended(&mut self) -> tonic::Status {
        loop {
            if let Err(status) = self.next().await {
                return status;
            }
        }
    }

    /// The next heartbeat, skipping anything else.
    async fn heartbeat(&mut self) -> pb::Heartbeat {
        loop {
            if let Down::Heartbeat(beat) = self.next().await.unwrap() {
                return beat;
            }
        }
    }

    /// The next update, skipping heartbeats.
    async fn update(&mut self) -> pb::WatchResponse {
        loop {
            match self.next().await.unwrap() {
                Down::Update(update) => return update,
                Down::Heartbeat(_) => {}
                Down::Started(_) => panic!("a second SessionStarted"),
            }
        }
    }

    async fn receipt(&self, revision: i64, failures: &[(&str, &str)]) {
        let failures = failures
            .iter()
            .map(|(path, error)| pb::Nack {
                path: (*path).into(),
                error: (*error).into(),
            })
            .collect();
        self.up
            .send(pb::ClientMessage {
                kind: Some(Up::Receipt(pb::Receipt { revision, failures })),
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_session_starts_with_a_reset_then_streams_updates_and_records_receipts() {
    let edge = TestEdge::start().await;
    edge.commit(vec![
        Op::Put("/app/db/host", json!("db1")),
        Op::Put("/other/x", json!(1)),
    ]);
    let mut client = open(&edge, hello("app-1", &["/app"], None)).await.unwrap();
    let Down::Started(started) = client.next().await.unwrap() else {
        panic!("SessionStarted first");
    };
    assert_eq!(started.edge_id, "edge");
    assert_eq!(started.heartbeat_interval_ms, 5000);
    let reset = client.update().await;
    assert!(reset.reset);
    let paths: Vec<&str> = reset.state.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/app/db/host"]);
    client.receipt(reset.revision, &[]).await;

    let revision = edge.commit(vec![
        Op::Put("/app/db/host", json!("db2")),
        Op::Put("/app/db/port", json!(5432)),
        Op::Put("/other/x", json!(2)),
    ]);
    let batch = client.update().await;
    assert!(!batch.reset);
    assert_eq!(batch.revision, revision);
    let events: Vec<(&str, Option<&str>)> = batch
        .events
        .iter()
        .map(|e| (e.path.as_str(), e.old_value.as_deref()))
        .collect();
    assert_eq!(
        events,
        vec![("/app/db/host", Some("\"db1\"")), ("/app/db/port", None)]
    );
    client
        .receipt(revision, &[("/app/db/port", "injected failure")])
        .await;
    let registry = edge.edge.clients().clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let registry = registry.clone();
            async move {
                registry
                    .get("app-1")
                    .is_some_and(|r| r.applied_revision == revision)
            }
        })
        .await
    );
    let record = registry.get("app-1").unwrap();
    assert!(record.is_connected());
    assert_eq!(record.prefixes, vec!["/app"]);
    assert_eq!(record.labels.get("zone").map(String::as_str), Some("eu-1"));
    assert_eq!((record.sdk.as_str(), record.nacks), ("test", 1));
    assert_eq!(record.lag_revisions(), 0);
    assert!(record.propagation_ms.is_some());
    let error = record.last_error.unwrap();
    assert_eq!(
        (error.path.as_str(), error.error.as_str()),
        ("/app/db/port", "injected failure")
    );
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains("setpoint_edge_clients_connected 1"),
        "{metrics}"
    );
    assert!(metrics.contains("setpoint_edge_client_nacks_total{prefix=\"/app\"} 1"));

    drop(client);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let registry = registry.clone();
            async move { registry.get("app-1").is_some_and(|r| !r.is_connected()) }
        })
        .await,
        "a closed session is marked disconnected"
    );
}

#[tokio::test]
async fn an_edge_without_a_snapshot_refuses_sessions_until_it_has_one() {
    let edge = TestEdge::start().await;
    let refused = match open(&edge, hello("early", &["/"], None)).await {
        Err(status) => status,
        Ok(mut client) => client.next().await.unwrap_err(),
    };
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    edge.commit(vec![Op::Put("/a", json!(1))]);
    let mut client = open(&edge, hello("early", &["/"], None)).await.unwrap();
    assert!(matches!(client.next().await.unwrap(), Down::Started(_)));
    assert_eq!(client.update().await.state.len(), 1);
}

#[tokio::test]
async fn a_session_resumes_from_its_revision_without_a_reset() {
    let edge = TestEdge::start().await;
    let first = edge.commit(vec![Op::Put("/app/a", json!(1))]);
    let second = edge.commit(vec![Op::Put("/app/a", json!(2))]);
    let mut client = open(&edge, hello("app-2", &["/app"], Some(first)))
        .await
        .unwrap();
    assert!(matches!(client.next().await.unwrap(), Down::Started(_)));
    let replayed = client.update().await;
    assert!(!replayed.reset);
    assert_eq!(replayed.revision, second);
    assert_eq!(replayed.events[0].new_value.as_deref(), Some("2"));
    assert!(
        matches!(client.next().await.unwrap(), Down::Heartbeat(_)),
        "a heartbeat marks the end of the catch-up"
    );
    // The edge regains its writer: the client hears it at once, not at the next interval.
    edge.edge.holder().set_connected(true);
    let heard = tokio::time::timeout(Duration::from_secs(1), client.next()).await;
    assert!(
        matches!(heard, Ok(Ok(Down::Heartbeat(ref beat))) if !beat.stale),
        "{heard:?}"
    );
}

#[tokio::test]
async fn bad_hellos_are_refused_with_invalid_argument() {
    let edge = TestEdge::start().await;
    let receipt_first = pb::ClientMessage {
        kind: Some(Up::Receipt(pb::Receipt {
            revision: 1,
            failures: vec![],
        })),
    };
    for (first, what) in [
        (hello("", &["/app"], None), "empty instance id"),
        (hello("a", &[], None), "no prefixes"),
        (hello("a", &["/a/../b"], None), "a bad prefix"),
        (
            hello(&"x".repeat(300), &["/app"], None),
            "a long instance id",
        ),
        (receipt_first, "a receipt before the hello"),
    ] {
        let refused = match open(&edge, first).await {
            Err(status) => status,
            Ok(mut client) => client.next().await.unwrap_err(),
        };
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
    }
    assert!(edge.edge.clients().records().is_empty());
}

#[tokio::test]
async fn a_silent_client_is_closed_after_three_heartbeats() {
    let edge = TestEdge::start_with(EdgeConfig {
        session: SessionConfig {
            heartbeat: Duration::from_millis(100),
        },
        ..harness::anonymous()
    })
    .await;
    edge.commit(vec![Op::Put("/a", json!(1))]);
    let mut client = open(&edge, hello("quiet", &["/"], None)).await.unwrap();
    let ended = client.ended().await;
    assert_eq!(ended.code(), Code::DeadlineExceeded);
    let registry = edge.edge.clients().clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let registry = registry.clone();
            async move { registry.get("quiet").is_some_and(|r| !r.is_connected()) }
        })
        .await
    );
}

#[tokio::test]
async fn updates_stand_in_for_heartbeats_and_a_quiet_session_gets_them_again() {
    let heartbeat = Duration::from_millis(1000);
    let edge = TestEdge::start_with(EdgeConfig {
        session: SessionConfig { heartbeat },
        ..harness::anonymous()
    })
    .await;
    edge.commit(vec![Op::Put("/busy/n", json!(0))]);
    let mut client = open(&edge, hello("busy", &["/busy"], None)).await.unwrap();
    let Down::Started(_) = client.next().await.unwrap() else {
        panic!("SessionStarted first");
    };
    let reset = client.update().await;
    client.receipt(reset.revision, &[]).await;
    // Three intervals of updates every tenth of one: they prove the edge alive, no heartbeat
    // rides along (one is allowed for a stalled machine).
    let (mut beats, mut updates) = (0, 0);
    for n in 1..=30 {
        let revision = edge.commit(vec![Op::Put("/busy/n", json!(n))]);
        loop {
            match client.next().await.unwrap() {
                Down::Update(update) => {
                    updates += 1;
                    client.receipt(update.revision, &[]).await;
                    if update.revision >= revision {
                        break;
                    }
                }
                Down::Heartbeat(_) => beats += 1,
                Down::Started(_) => panic!("a second SessionStarted"),
            }
        }
        tokio::time::sleep(heartbeat / 10).await;
    }
    assert!(updates >= 30);
    assert!(beats <= 1, "{beats} heartbeats among {updates} updates");
    // Quiet again: heartbeats come back within about an interval.
    let quiet = tokio::time::Instant::now();
    loop {
        if let Down::Heartbeat(_) = client.next().await.unwrap() {
            break;
        }
    }
    assert!(quiet.elapsed() < heartbeat * 3, "{:?}", quiet.elapsed());
}

#[tokio::test]
async fn a_message_of_another_type_ends_that_call_and_the_edge_keeps_serving() {
    let edge = TestEdge::start().await;
    edge.commit(vec![Op::Put("/a", json!(1))]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", edge.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // A Heartbeat where a ClientMessage belongs: field 1 arrives as a varint, not as the hello
    // message it must be — bytes that do not decode.
    let codec = tonic_prost::ProstCodec::<pb::Heartbeat, pb::ServerMessage>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/setpoint.edge.v1.Edge/Session");
    let request = tonic::Request::new(futures::stream::iter(vec![pb::Heartbeat {
        revision: 5,
        stale: true,
    }]));
    let refused = match grpc.streaming(request, path, codec).await {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match harness::next_result(&mut stream).await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the session went on after bytes that do not decode"),
                    Err(status) => break status,
                }
            }
        }
    };
    assert_ne!(refused.code(), Code::Ok);
    assert!(edge.edge.clients().records().is_empty());
    let mut client = open(&edge, hello("after-garbage", &["/"], None))
        .await
        .unwrap();
    assert!(matches!(client.next().await.unwrap(), Down::Started(_)));
}

#[tokio::test]
async fn a_session_hears_at_once_when_the_edge_loses_and_regains_its_writer() {
    // Heartbeats a minute apart: any heartbeat within the test comes from the change itself.
    let edge = TestEdge::start_with(EdgeConfig {
        session: SessionConfig {
            heartbeat: Duration::from_secs(60),
        },
        ..harness::anonymous()
    })
    .await;
    edge.commit(vec![Op::Put("/a", json!(1))]);
    let holder = edge.edge.holder().clone();
    holder.set_connected(true);
    let mut client = open(&edge, hello("watching", &["/"], None)).await.unwrap();
    let Down::Started(started) = client.next().await.unwrap() else {
        panic!("SessionStarted first");
    };
    assert!(!started.stale);
    client.update().await;
    // The catch-up's closing heartbeat.
    assert!(!client.heartbeat().await.stale);

    holder.set_connected(false);
    let lost = tokio::time::timeout(Duration::from_secs(2), client.heartbeat())
        .await
        .expect("a heartbeat as soon as the writer is lost");
    assert!(lost.stale);
    holder.set_connected(true);
    let back = tokio::time::timeout(Duration::from_secs(2), client.heartbeat())
        .await
        .expect("a heartbeat as soon as the writer is back");
    assert!(!back.stale);
}

#[tokio::test]
async fn sessions_end_unavailable_when_the_edge_shuts_down() {
    let edge = TestEdge::start().await;
    edge.commit(vec![Op::Put("/a", json!(1))]);
    let mut clients = Vec::new();
    for n in 0..3 {
        let mut client = open(&edge, hello(&format!("c{n}"), &["/"], None))
            .await
            .unwrap();
        assert!(matches!(client.next().await.unwrap(), Down::Started(_)));
        client.update().await;
        clients.push(client);
    }
    edge.edge.close();
    for mut client in clients {
        let ended = client.ended().await;
        assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    }
}

#[tokio::test]
async fn a_second_hello_ends_the_session_with_invalid_argument() {
    let edge = TestEdge::start().await;
    edge.commit(vec![Op::Put("/a", json!(1))]);
    let mut client = open(&edge, hello("twice", &["/"], None)).await.unwrap();
    assert!(matches!(client.next().await.unwrap(), Down::Started(_)));
    client.update().await;
    client.up.send(hello("twice", &["/"], None)).await.unwrap();
    let ended = client.ended().await;
    assert_eq!(ended.code(), Code::InvalidArgument, "{ended:?}");
    assert!(ended.message().contains("one hello"), "{ended:?}");
}

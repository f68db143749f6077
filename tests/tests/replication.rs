//! The writer → edge replication link end to end: a real writer (embedded store or a real etcd)
//! serving QUIC with mutual TLS on 127.0.0.1, and real edge subscribers feeding snapshot holders.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::ConfigPath;
use setpoint_core::snapshot::Snapshot;
use setpoint_edge_node::holder::{HubMessage, SnapshotHolder};
use setpoint_edge_node::subscriber::{self, SubscriberConfig};
use setpoint_proto::frames::{self, Frame};
use setpoint_tests::wait_until;
use setpoint_tests::writer::{Backend, TestWriter};
use setpoint_writer::WriterConfig;
use setpoint_writer::replication::ReplicationConfig;
use setpoint_writer::replication::feed::FeedLimits;
use setpoint_writer::replication::server;
use tokio::sync::{broadcast, oneshot};

const WAIT: Duration = Duration::from_secs(15);

struct Certs {
    _dir: tempfile::TempDir,
    writer: TlsFiles,
    edge: TlsFiles,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let (writer, edge) = tls::generate_dev_certs(dir.path(), &[]).unwrap();
    Certs {
        _dir: dir,
        writer,
        edge,
    }
}

fn free_udp_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

fn writer_config(backend: &Backend, certs: &Certs, listen: SocketAddr) -> WriterConfig {
    let mut config = WriterConfig::new(backend.spec());
    config.replication = Some(ReplicationConfig::new(listen, certs.writer.clone()));
    config
}

struct TestEdge {
    holder: Arc<SnapshotHolder>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestEdge {
    fn start(id: &str, writer: SocketAddr, tls: &TlsFiles, initial: Snapshot) -> TestEdge {
        let holder = SnapshotHolder::new(initial, true);
        let mut config = SubscriberConfig::new(writer.to_string(), tls.clone(), id);
        config.region = "test-region".into();
        config.http_addr = format!("127.0.0.1:1{}", id.len());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(subscriber::run(config, holder.clone(), async move {
            let _ = stopped.await;
        }));
        TestEdge {
            holder,
            stop: Some(stop),
            task: tokio::spawn(async move {
                task.await.unwrap().unwrap();
            }),
        }
    }

    async fn stop(mut self) -> Arc<SnapshotHolder> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("the edge's subscriber did not stop within {WAIT:?}"))
            .unwrap();
        self.holder.clone()
    }

    fn value(&self, path: &str) -> Option<String> {
        let path = ConfigPath::parse(path).unwrap();
        self.holder
            .current()
            .get(&path)
            .map(|e| e.value.stored().to_owned())
    }

    async fn wait_for_revision(&self, revision: i64) {
        let holder = self.holder.clone();
        let reached = wait_until(WAIT, || {
            let holder = holder.clone();
            async move { holder.revision() >= revision }
        })
        .await;
        assert!(
            reached,
            "edge reached revision {} of {revision}",
            self.holder.revision()
        );
    }
}

async fn put(w: &TestWriter, path: &str, value: Value) -> i64 {
    let response = w
        .http
        .put(w.config_url(path))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "PUT {path}");
    let body: Value = response.json().await.unwrap();
    body["revision"].as_i64().unwrap()
}

async fn edges(w: &TestWriter) -> Value {
    w.http
        .get(w.url("/api/edges"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Drains the hub into (revision, number of changes) per batch; resets as (revision, -1).
/// Drains until the message at `revision` is in (the holder publishes a batch just after making
/// its revision visible, so a reader that saw the revision may be a moment early).
async fn drain_until(rx: &mut broadcast::Receiver<HubMessage>, revision: i64) -> Vec<(i64, i64)> {
    let mut out = drain(rx);
    let deadline = Instant::now() + WAIT;
    while out.last().map(|m| m.0) != Some(revision) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        out.extend(drain(rx));
    }
    out
}

fn drain(rx: &mut broadcast::Receiver<HubMessage>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    while let Ok(message) = rx.try_recv() {
        out.push(match message {
            HubMessage::Batch { batch, .. } => (batch.revision, batch.events.len() as i64),
            HubMessage::Reset { revision } => (revision, -1),
        });
    }
    out
}

async fn snapshot_then_live_batches(backend: Backend) {
    let certs = certs();
    let addr = free_udp_addr();
    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    put(&w, "/app/one", json!(1)).await;
    let before = put(&w, "/app/two", json!({"k": "v"})).await;

    let edge = TestEdge::start("edge-a", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(before).await;
    assert_eq!(edge.value("/app/one").as_deref(), Some("1"));
    assert!(!edge.holder.is_stale());

    let mut hub = edge.holder.subscribe();
    let live = put(&w, "/app/three", json!("x")).await;
    edge.wait_for_revision(live).await;
    assert_eq!(edge.value("/app/three").as_deref(), Some("\"x\""));
    assert_eq!(
        drain_until(&mut hub, live).await,
        vec![(live, 1)],
        "one live batch, no reset"
    );

    // Deletes replicate as deletes.
    let response = w
        .http
        .delete(w.config_url("/app/one"))
        .send()
        .await
        .unwrap();
    let deleted: Value = response.json().await.unwrap();
    edge.wait_for_revision(deleted["revision"].as_i64().unwrap())
        .await;
    assert_eq!(edge.value("/app/one"), None);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_snapshot_then_live_batches() {
    snapshot_then_live_batches(Backend::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshot_then_live_batches() {
    snapshot_then_live_batches(Backend::etcd()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_three_changes_arrives_as_one_batch() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    let start = put(&w, "/b/old", json!("x")).await;
    let edge = TestEdge::start("edge-b", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(start).await;
    let mut hub = edge.holder.subscribe();
    let response = w
        .http
        .post(w.url("/api/batch"))
        .body(
            json!({"changes": [
                {"op": "put", "path": "/b/one", "value": 1},
                {"op": "put", "path": "/b/two", "value": {"k": "v"}},
                {"op": "delete", "path": "/b/old"}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let revision = response.json::<Value>().await.unwrap()["revision"]
        .as_i64()
        .unwrap();
    edge.wait_for_revision(revision).await;
    assert_eq!(drain_until(&mut hub, revision).await, vec![(revision, 3)]);
    assert_eq!(edge.value("/b/one").as_deref(), Some("1"));
    assert_eq!(edge.value("/b/old"), None);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rapid_writes_arrive_in_order_and_complete() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let w = Arc::new(TestWriter::start_with(writer_config(&backend, &certs, addr)).await);
    let edge = TestEdge::start("edge-c", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(1).await;
    let mut hub = edge.holder.subscribe();
    let mut writers = Vec::new();
    for worker in 0..8 {
        let w = w.clone();
        writers.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..125 {
                last = last.max(put(&w, &format!("/load/w{worker}/k{i}"), json!(i)).await);
            }
            last
        }));
    }
    let mut last = 0;
    for writer in writers {
        last = last.max(writer.await.unwrap());
    }
    edge.wait_for_revision(last).await;
    let batches = drain_until(&mut hub, last).await;
    assert_eq!(batches.len(), 1000, "one batch per commit");
    assert!(
        batches.windows(2).all(|p| p[0].0 < p[1].0),
        "strictly increasing revisions"
    );
    let snapshot = edge.holder.current();
    let below = ConfigPath::parse("/load").unwrap();
    assert_eq!(snapshot.below(&below).count(), 1000);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_resumes_by_delta_or_by_snapshot_when_too_far_behind() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let mut config = writer_config(&backend, &certs, addr);
    if let Some(replication) = config.replication.as_mut() {
        replication.limits = FeedLimits {
            ring_batches: 5,
            ..FeedLimits::default()
        };
    }
    let w = TestWriter::start_with(config).await;
    let first = put(&w, "/r/a", json!(1)).await;
    let edge = TestEdge::start("edge-d", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(first).await;
    let old = edge.stop().await.current();

    // Within the ring: deltas only.
    let mut last = 0;
    for i in 0..3 {
        last = put(&w, &format!("/r/b{i}"), json!(i)).await;
    }
    let edge = TestEdge::start("edge-d", addr, &certs.edge, (*old).clone());
    let mut hub = edge.holder.subscribe();
    edge.wait_for_revision(last).await;
    let got = drain_until(&mut hub, last).await;
    assert_eq!(got.len(), 3, "three deltas: {got:?}");
    assert!(got.iter().all(|(_, n)| *n == 1), "no reset: {got:?}");
    edge.stop().await;

    // Past the ring (5 batches): a snapshot.
    for i in 0..8 {
        last = put(&w, &format!("/r/c{i}"), json!(i)).await;
    }
    let edge = TestEdge::start("edge-d", addr, &certs.edge, (*old).clone());
    let mut hub = edge.holder.subscribe();
    edge.wait_for_revision(last).await;
    assert_eq!(drain(&mut hub).first().map(|m| m.1), Some(-1), "a reset");
    assert_eq!(edge.value("/r/c7").as_deref(), Some("7"));
    assert_eq!(edge.value("/r/b2").as_deref(), Some("2"));
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_reconnects_and_catches_up_after_a_writer_restart() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    let first = put(&w, "/w/a", json!(1)).await;
    let edge = TestEdge::start("edge-e", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(first).await;
    w.stop().await;
    let holder = edge.holder.clone();
    assert!(
        wait_until(WAIT, || {
            let holder = holder.clone();
            async move { holder.is_stale() }
        })
        .await,
        "the edge notices the writer is gone"
    );
    assert_eq!(edge.value("/w/a").as_deref(), Some("1"), "still serving");

    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    let next = put(&w, "/w/b", json!(2)).await;
    edge.wait_for_revision(next).await;
    assert_eq!(edge.value("/w/b").as_deref(), Some("2"));
    assert!(!edge.holder.is_stale());
    edge.stop().await;
}

async fn metrics(w: &TestWriter) -> String {
    w.http
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// How a connection was closed by the writer: its application code and reason.
async fn closed_by_writer(connection: &quinn::Connection) -> (quinn::VarInt, String) {
    match tokio::time::timeout(WAIT, connection.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => (
            close.error_code,
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("the writer closes the connection within {WAIT:?}: {other:?}"),
    }
}

/// Issue 10: this test passed on the hello deadline alone, which closed a silent peer with the
/// same code as garbage. Garbage now has its own close code and counter, and it is seen as
/// garbage while a silent peer opened before it is still waiting out its hello deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_a_peer_closes_only_its_connection() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    let edge = TestEdge::start("edge-f", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(1).await;

    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config(&certs.edge).unwrap());
    // A peer that connects and says nothing: only the hello deadline (5 s) ends it.
    let silent = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    for garbage in [
        // A length prefix far over the frame limit.
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        // A plausible length with a body that does not decode.
        vec![0, 0, 0, 6, 0, 1, 0xff, 0xff, 0xff, 0xff],
    ] {
        let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut send, _recv) = connection.open_bi().await.unwrap();
        send.write_all(&garbage).await.unwrap();
        let (code, reason) = closed_by_writer(&connection).await;
        assert_eq!(code, server::CLOSE_UNDECODABLE, "{garbage:?}: {reason}");
        assert!(reason.contains("undecodable frame"), "{reason}");
    }
    assert!(
        silent.close_reason().is_none(),
        "garbage is told apart before the silent peer's hello deadline ends it"
    );
    let counted = metrics(&w).await;
    assert!(
        counted.contains("setpoint_replication_undecodable_frames_total 2"),
        "{counted}"
    );

    // A well-formed but wrong first frame is a protocol violation, not garbage.
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    frames::write_frame(&mut send, &Frame::Ack { revision: 1 })
        .await
        .unwrap();
    let (code, reason) = closed_by_writer(&connection).await;
    assert_eq!(code, server::CLOSE_PROTOCOL, "{reason}");
    assert!(reason.contains("first frame must be Hello"), "{reason}");

    // The silent peer is closed by the deadline, with the protocol code and its own reason.
    let (code, reason) = closed_by_writer(&silent).await;
    assert_eq!(code, server::CLOSE_PROTOCOL, "{reason}");
    assert!(reason.contains("no Hello"), "{reason}");
    let counted = metrics(&w).await;
    assert!(
        counted.contains("setpoint_replication_undecodable_frames_total 2"),
        "neither the wrong frame nor silence counts as garbage: {counted}"
    );

    let revision = put(&w, "/g/after", json!(true)).await;
    edge.wait_for_revision(revision).await;
    assert_eq!(edge.value("/g/after").as_deref(), Some("true"));
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_is_measured_and_edges_are_listed() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    let edge = TestEdge::start("edge-g", addr, &certs.edge, Snapshot::empty());
    edge.wait_for_revision(1).await;

    // Every commit reaches the edge (within `WAIT`); how fast is `loadtest`'s to measure, not a
    // test's on a loaded machine.
    let mut revision = 0;
    for i in 0..20 {
        revision = put(&w, "/p/key", json!(i)).await;
        edge.wait_for_revision(revision).await;
    }

    let writer: &TestWriter = &w;
    let listed = wait_until(WAIT, move || {
        let w = writer;
        async move {
            let body = edges(w).await;
            body["edges"][0]["applied_revision"].as_i64() == Some(revision)
        }
    })
    .await;
    let body = edges(&w).await;
    assert!(
        listed,
        "/api/edges shows the edge's applied revision: {body}"
    );
    let edge_json = &body["edges"][0];
    assert_eq!(edge_json["id"], "edge-g");
    assert_eq!(edge_json["state"], "alive");
    assert_eq!(edge_json["replication"], "connected");
    assert_eq!(edge_json["region"], "test-region");
    assert_eq!(edge_json["lag"], 0);
    assert_eq!(body["revision"].as_i64(), Some(revision));

    let metrics = metrics(&w).await;
    assert!(metrics.contains("setpoint_replication_propagation_seconds_count{edge=\"edge-g\"}"));
    assert!(metrics.contains(&format!(
        "setpoint_edge_applied_revision{{edge=\"edge-g\"}} {revision}"
    )));
    assert!(metrics.contains("setpoint_replication_edges_connected 1"));

    edge.stop().await;
    let gone = wait_until(WAIT, move || {
        let w = writer;
        async move { edges(w).await["edges"][0]["replication"] == "disconnected" }
    })
    .await;
    assert!(gone, "a stopped edge is listed as disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_a_certificate_from_another_ca_is_refused() {
    let backend = Backend::embedded();
    let certs = certs();
    let strangers = self::certs();
    let addr = free_udp_addr();
    let w = TestWriter::start_with(writer_config(&backend, &certs, addr)).await;
    let revision = put(&w, "/s/a", json!(1)).await;
    // Trusts the real CA, but presents a certificate from its own.
    let stranger = TlsFiles {
        ca: certs.edge.ca.clone(),
        ..strangers.edge.clone()
    };
    let edge = TestEdge::start("stranger", addr, &stranger, Snapshot::empty());
    let honest = TestEdge::start("honest", addr, &certs.edge, Snapshot::empty());
    honest.wait_for_revision(revision).await;
    // The honest edge got everything in that time; the stranger got nothing.
    assert_eq!(edge.holder.revision(), 0);
    assert!(edge.holder.is_stale());
    let body = edges(&w).await;
    let ids: Vec<&str> = body["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["honest"]);
    edge.stop().await;
    honest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_stops_reading_is_cut_off() {
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let mut config = writer_config(&backend, &certs, addr);
    if let Some(replication) = config.replication.as_mut() {
        replication.limits = FeedLimits {
            session_queue: 4,
            send_timeout: Duration::from_secs(1),
            ..FeedLimits::default()
        };
    }
    let w = TestWriter::start_with(config).await;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config(&certs.edge).unwrap());
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let hello = Frame::Hello {
        node_id: "sloth".into(),
        region: String::new(),
        revision: 0,
        http_addr: String::new(),
    };
    frames::write_frame(&mut send, &hello).await.unwrap();
    // Never read: more than the stream's flow-control window piles up at the writer.
    let big = "x".repeat(64 << 10);
    for i in 0..40 {
        put(&w, &format!("/slow/k{i}"), json!(big)).await;
    }
    let closed = tokio::time::timeout(WAIT, connection.closed()).await;
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code, server::CLOSE_TOO_SLOW, "{close:?}");
        }
        other => panic!("the writer cuts the slow edge off: {other:?}"),
    }
    let writer: &TestWriter = &w;
    let gone = wait_until(WAIT, move || async move {
        edges(writer).await["edges"][0]["replication"] == "disconnected"
    })
    .await;
    assert!(gone, "the slow edge is listed as disconnected");
}

/// Issue 10: the README says secret values never travel on the replication stream, and no test
/// looked. A raw replication client records every frame — its snapshot, then live batches — while
/// values referencing a real OpenBao secret are written and resolved on the writer (so the
/// writer holds the secret's value); the reference travels, the value never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_travel_on_the_replication_stream() {
    use setpoint_secrets::{SecretValue, Vault, VaultAuth, VaultConfig};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};
    const SECRET: &str = "never-replicated-5d1e8b";
    let bao = setpoint_tests::bao::BaoServer::start();
    bao.put_secret("setpoint/prod/db", json!({ "value": SECRET }))
        .await;
    let backend = Backend::embedded();
    let certs = certs();
    let addr = free_udp_addr();
    let mut config = writer_config(&backend, &certs, addr);
    let vault = Vault::new(VaultConfig::new(
        bao.address(),
        VaultAuth::Token(SecretValue::new(bao.root_token().to_owned())),
    ))
    .unwrap();
    config.secrets = setpoint_secrets::serve::SecretAccess {
        provider: Arc::new(vault),
        allowed: true,
    };
    let w = TestWriter::start_with(config).await;
    let reference = "postgres://app:${secret:db}@db/app";
    put(&w, "/app/before", json!(reference)).await;

    // The spy: a replication peer with an edge certificate, recording every frame it gets.
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config(&certs.edge).unwrap());
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Frame::Hello {
        node_id: "spy".into(),
        region: String::new(),
        revision: 0,
        http_addr: String::new(),
    };
    frames::write_frame(&mut send, &hello).await.unwrap();
    let frames_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let reached = Arc::new(AtomicI64::new(0));
    let reader = tokio::spawn({
        let (frames_seen, reached) = (frames_seen.clone(), reached.clone());
        async move {
            while let Ok(Some(frame)) = frames::read_frame(&mut recv).await {
                match &frame {
                    Frame::SnapshotEnd { revision } => {
                        reached.fetch_max(*revision, Ordering::SeqCst);
                    }
                    Frame::Batch(batch) => {
                        reached.fetch_max(batch.revision, Ordering::SeqCst);
                    }
                    _ => {}
                }
                frames_seen.lock().unwrap().push(format!("{frame:?}"));
            }
        }
    });

    // The writer resolves the secret (it fetches the value), then more references are written.
    let resolved: Value = w
        .http
        .get(w.config_url("/app/before?env=prod&resolve=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resolved["value"],
        format!("postgres://app:{SECRET}@db/app"),
        "the writer resolves the secret: {resolved}"
    );
    put(&w, "/app/after", json!({ "dsn": reference })).await;
    let last = put(&w, "/app/before", json!(format!("{reference}?v=2"))).await;
    let delivered = wait_until(WAIT, || {
        let reached = reached.clone();
        async move { reached.load(Ordering::SeqCst) >= last }
    })
    .await;
    assert!(
        delivered,
        "the spy received everything up to revision {last}"
    );

    let seen = frames_seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|f| f.starts_with("SnapshotChunk"))
            && seen.iter().filter(|f| f.starts_with("Batch")).count() >= 2,
        "a snapshot and live batches were recorded: {seen:#?}"
    );
    assert!(
        seen.iter().any(|f| f.contains("${secret:db}")),
        "the reference travels: {seen:#?}"
    );
    for frame in &seen {
        assert!(
            !frame.contains(SECRET),
            "the secret's value travelled on the replication stream: {frame}"
        );
    }
    reader.abort();
    connection.close(0u32.into(), b"done");
}

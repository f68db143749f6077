//! Fault tests with real processes: what the failure model in the README promises, checked by
//! breaking things — etcd members killed under writes, (more scenarios join this file as the
//! fault-tolerance work lands). Each scenario stops everything it starts, by PID.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use setpoint_tests::etcd_cluster::EtcdCluster;
use setpoint_tests::writer::TestWriter;
use setpoint_writer::{StoreSpec, WriterConfig};

async fn put(w: &TestWriter, path: &str, value: Value) -> (StatusCode, Value) {
    let response = w
        .http
        .put(w.config_url(path))
        .timeout(Duration::from_secs(15))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A 3-member etcd cluster exists to survive one member's death: with a quorum, every write
/// succeeds, whichever member died; without one, writes fail fast (503 within the store timeout,
/// nothing half-written); when the quorum returns, the same writer commits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_succeeds_while_an_etcd_quorum_holds() {
    let mut cluster = EtcdCluster::start(3);
    let mut config = WriterConfig::new(StoreSpec::Etcd {
        endpoints: cluster.endpoints(),
    });
    config.store_timeout = Duration::from_secs(2);
    let w = TestWriter::start_with(config).await;
    for i in 0..5 {
        let (status, body) = put(&w, &format!("/q/warm{i}"), json!(i)).await;
        assert!(status.is_success(), "{status} {body}");
    }

    // A follower dies: every one of 60 writes succeeds.
    let leader = cluster.leader().expect("a raft leader");
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let started = Instant::now();
    for i in 0..60 {
        let (status, body) = put(&w, &format!("/q/a{}", i % 6), json!(i)).await;
        assert!(
            status.is_success(),
            "write {i} with a follower down: {status} {body}"
        );
    }
    println!("60 writes with a follower down: {:?}", started.elapsed());

    // The leader dies too: no quorum, each write fails within the store timeout (plus margin).
    cluster.kill(leader);
    let started = Instant::now();
    let (status, body) = put(&w, "/q/lost", json!(1)).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(elapsed < Duration::from_secs(6), "503 took {elapsed:?}");

    // Quorum back: the same writer commits again, and the failed write left nothing.
    cluster.restart(follower);
    let back = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        put(&w, "/q/back", json!(1)).await.0.is_success()
    })
    .await;
    assert!(
        back,
        "no successful write within 30 s of the quorum's return"
    );
    let lost = w
        .http
        .get(w.config_url("/q/lost"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(lost, StatusCode::NOT_FOUND);
}

/// A writer on a real etcd and one edge following it, as real processes with mutual TLS.
struct Stack {
    _etcd: setpoint_tests::etcd::EtcdServer,
    dir: tempfile::TempDir,
    writer_addr: String,
    writer_args: Vec<String>,
    edge_addr: String,
    edge_args: Vec<String>,
    http: reqwest::Client,
}

impl Stack {
    fn new() -> Stack {
        use setpoint_tests::binary::Certs;
        use setpoint_tests::writer::{client_with_key, test_admin_key};
        let etcd = setpoint_tests::etcd::EtcdServer::start();
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::make(dir.path());
        let key_file = dir.path().join("admin.key");
        std::fs::write(&key_file, test_admin_key()).unwrap();
        let writer_addr = format!("127.0.0.1:{}", setpoint_tests::free_port());
        let mut writer_args: Vec<String> = vec![
            "writer".into(),
            "--store".into(),
            format!("etcd://{}", etcd.endpoint()),
            "--replication-listen".into(),
            writer_addr.clone(),
            "--admin-key-file".into(),
            key_file.to_str().unwrap().into(),
        ];
        writer_args.extend(certs.args("writer"));
        let mut edge_args: Vec<String> = vec![
            "edge".into(),
            "--id".into(),
            "edge-1".into(),
            "--writer".into(),
            writer_addr.clone(),
            "--data-dir".into(),
            dir.path().join("edge").to_str().unwrap().into(),
        ];
        edge_args.extend(certs.args("edge"));
        Stack {
            _etcd: etcd,
            dir,
            writer_addr,
            writer_args,
            edge_addr: format!("127.0.0.1:{}", setpoint_tests::free_port()),
            edge_args,
            http: client_with_key(&test_admin_key()),
        }
    }

    async fn writer(&self) -> setpoint_tests::binary::SetpointProcess {
        let args: Vec<&str> = self.writer_args.iter().map(String::as_str).collect();
        setpoint_tests::binary::SetpointProcess::start_on(&args, &self.writer_addr, self.dir.path())
            .await
    }

    async fn edge(&self) -> setpoint_tests::binary::SetpointProcess {
        let args: Vec<&str> = self.edge_args.iter().map(String::as_str).collect();
        setpoint_tests::binary::SetpointProcess::start_on(&args, &self.edge_addr, self.dir.path())
            .await
    }

    async fn put(&self, path: &str, value: Value) -> Value {
        let response = self
            .http
            .put(format!("http://{}/api/config{path}", self.writer_addr))
            .body(json!({ "value": value }).to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }
}

/// An edge killed (SIGKILL) right after a burst of writes restarts from a disk snapshot that may
/// be behind what its watchers already have (it saves at most once a second). A watcher resuming
/// there must never be moved backwards: the edge waits until it has caught up (or answers
/// `behind`), and the watcher ends with every version exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resuming_at_a_restarted_edge_never_goes_backwards() {
    let stack = Stack::new();
    let _writer = stack.writer().await;
    let edge = stack.edge().await;
    let url = format!("http://{}/api/config/w?watch=true", stack.edge_addr);
    let watcher = setpoint_tests::sse::SseWatcher::start_with_key(
        url,
        Some(setpoint_tests::writer::test_admin_key()),
    );
    let first = stack.put("/w/k", json!(0)).await;
    let seen = |revision: i64| {
        let events = watcher.changes();
        async move { events.iter().any(|(r, _, _)| *r >= revision) }
    };
    let first_revision = first["revision"].as_i64().unwrap();
    assert!(setpoint_tests::wait_until(Duration::from_secs(20), || seen(first_revision)).await);
    // A burst, the watcher keeps up, then the edge dies before its next save.
    let mut last = 0;
    for n in 1..=30 {
        last = stack.put("/w/k", json!(n)).await["revision"]
            .as_i64()
            .unwrap();
    }
    assert!(setpoint_tests::wait_until(Duration::from_secs(20), || seen(last)).await);
    edge.kill();
    let restarted = stack.edge().await;
    let loaded = restarted
        .log_text()
        .lines()
        .find(|l| l.contains("loaded the disk snapshot"))
        .map(str::to_owned);
    println!("watcher saw revision {last}; restarted edge: {loaded:?}");
    let mut final_revision = 0;
    for n in 31..=35 {
        final_revision = stack.put("/w/k", json!(n)).await["revision"]
            .as_i64()
            .unwrap();
    }
    assert!(
        setpoint_tests::wait_until(Duration::from_secs(30), || seen(final_revision)).await,
        "the watcher never got the writes made after the edge's restart"
    );
    // History check: no event older than one already seen, and versions 1..=36 exactly once.
    let events = watcher.events();
    let mut high = 0;
    for event in &events {
        let revision = event.data["revision"].as_i64().unwrap_or(0);
        assert!(
            revision >= high,
            "moved backwards: {} at revision {revision} after {high}; all: {:?}",
            event.data["type"],
            events
                .iter()
                .map(|e| (e.id, e.data["type"].clone()))
                .collect::<Vec<_>>()
        );
        high = revision;
    }
    let versions: Vec<u64> = watcher.changes().iter().map(|(_, _, v)| *v).collect();
    assert_eq!(
        versions,
        (1..=36).collect::<Vec<u64>>(),
        "every version once, in order"
    );
    println!(
        "watcher: {} events over {} connections",
        events.len(),
        watcher.connects()
    );
}

/// The writer dies (SIGKILL) and comes back on the same address: the edge says it is stale
/// within about 3 s of the writer's silence (application heartbeats, not the transport's 10 s
/// idle timeout), keeps serving what it has meanwhile, and is caught up again about a second
/// after the writer's return — including a write acknowledged right after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_is_stale_within_3_s_of_a_dead_writer_and_catches_up_on_its_return() {
    let stack = Stack::new();
    let writer = stack.writer().await;
    let edge = stack.edge().await;
    let writer_addr = stack.writer_addr.clone();
    let http = stack.http.clone();
    let put = |value: i64| {
        let http = http.clone();
        let url = format!("http://{writer_addr}/api/config/f/a");
        async move {
            let response = http
                .put(url)
                .body(json!({ "value": value }).to_string())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    let serves = |want: i64| {
        let http = http.clone();
        let url = format!("{}/api/config/f/a", edge.base());
        async move {
            let Ok(response) = http.get(url).send().await else {
                return false;
            };
            response
                .json::<Value>()
                .await
                .is_ok_and(|body| body["value"] == json!(want))
        }
    };
    let health = || {
        let url = format!("{}/healthz", edge.base());
        async move {
            let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            body["stale"].as_bool().unwrap()
        }
    };
    put(1).await;
    assert!(setpoint_tests::wait_until(Duration::from_secs(20), || serves(1)).await);
    assert!(!health().await, "fresh while the writer is up");

    let killed = Instant::now();
    writer.kill();
    assert!(
        setpoint_tests::wait_until(Duration::from_secs(15), health).await,
        "the edge never said it was stale"
    );
    let noticed = killed.elapsed();
    println!("edge stale {noticed:?} after the writer's SIGKILL");
    assert!(
        noticed < Duration::from_millis(4_500),
        "stale only after {noticed:?}"
    );
    assert!(
        serves(1).await,
        "still serving the last value while the writer is away"
    );

    let writer = stack.writer().await;
    let back = Instant::now();
    put(2).await;
    assert!(
        setpoint_tests::wait_until(Duration::from_secs(15), || serves(2)).await,
        "the edge never caught up"
    );
    let caught_up = back.elapsed();
    assert!(!health().await, "fresh again");
    println!("edge caught up {caught_up:?} after the writer's return");
    assert!(
        caught_up < Duration::from_secs(3),
        "caught up only after {caught_up:?}"
    );
    drop(writer);
    drop(edge);
}

/// A hung store — etcd SIGSTOPped: connections stay open, nothing answers — is not a killed one
/// (refused at once): every call still ends within the store timeout as a 503, the process keeps
/// serving, and once etcd runs again the same writer commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_answers_503_within_the_store_timeout() {
    let cluster = EtcdCluster::start(1);
    let mut config = WriterConfig::new(StoreSpec::Etcd {
        endpoints: cluster.endpoints(),
    });
    config.store_timeout = Duration::from_secs(2);
    let w = TestWriter::start_with(config).await;
    let (status, body) = put(&w, "/hung/a", json!(1)).await;
    assert!(status.is_success(), "{status} {body}");

    cluster.pause(0);
    for attempt in 0..2 {
        let started = Instant::now();
        let (status, body) = put(&w, "/hung/a", json!(2)).await;
        let elapsed = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        // The store timeout, plus a margin for a loaded machine; never a hang.
        assert!(
            elapsed < Duration::from_secs(5),
            "attempt {attempt}: 503 after {elapsed:?}"
        );
        println!("hung store: 503 after {elapsed:?}");
    }
    let health = w.http.get(w.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the process itself serves");

    cluster.resume(0);
    let back = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        put(&w, "/hung/a", json!(3)).await.0.is_success()
    })
    .await;
    assert!(
        back,
        "no successful write within 30 s of etcd running again"
    );
    let current: Value = w
        .http
        .get(w.config_url("/hung/a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["value"], json!(3));
    assert_eq!(
        current["version"],
        json!(2),
        "the refused writes left nothing"
    );
}

/// SIGTERM drains: a request already in flight when the writer is told to stop still gets its
/// answer (here a slow one — the store hangs — answered 503 at the store timeout), and only then
/// does the process exit; a new connection after the signal is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight() {
    use setpoint_tests::binary::SetpointProcess;
    use setpoint_tests::writer::{client_with_key, test_admin_key};
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, test_admin_key()).unwrap();
    let store = cluster.store_url();
    let key = key_file.to_str().unwrap().to_owned();
    let writer = SetpointProcess::start(
        &["writer", "--store", &store, "--admin-key-file", &key],
        dir.path(),
    )
    .await;
    let http = client_with_key(&test_admin_key());
    let url = format!("{}/api/config/drain/a", writer.base());
    let first = http
        .put(&url)
        .body(json!({"value": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert!(first.status().is_success(), "{}", first.status());

    // A request that will take the whole store timeout, then SIGTERM while it is in flight.
    cluster.pause(0);
    let slow = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move {
            http.put(url)
                .body(json!({"value": 2}).to_string())
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exit = tokio::task::spawn_blocking(move || writer.terminate());
    let answered = slow.await.unwrap();
    assert_eq!(
        answered.expect("the in-flight request got an answer, not a dropped connection"),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let status = exit.await.unwrap();
    assert!(status.success(), "clean exit after draining: {status}");
    cluster.resume(0);
}

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

/// A writer on a real etcd (one member, or a cluster) and edges following it, as real processes
/// with mutual TLS.
struct Stack {
    _etcd: Option<setpoint_tests::etcd::EtcdServer>,
    dir: tempfile::TempDir,
    writer_addr: String,
    writer_args: Vec<String>,
    edge_addr: String,
    edge_tls: Vec<String>,
    http: reqwest::Client,
}

impl Stack {
    fn new() -> Stack {
        let etcd = setpoint_tests::etcd::EtcdServer::start();
        let store = format!("etcd://{}", etcd.endpoint());
        Stack::on(store, Some(etcd))
    }

    /// A stack on the store at `store` (`etcd://A,B,C`).
    fn on(store: String, etcd: Option<setpoint_tests::etcd::EtcdServer>) -> Stack {
        use setpoint_tests::binary::Certs;
        use setpoint_tests::writer::{client_with_key, test_admin_key};
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::make(dir.path());
        let key_file = dir.path().join("admin.key");
        std::fs::write(&key_file, test_admin_key()).unwrap();
        let writer_addr = format!("127.0.0.1:{}", setpoint_tests::free_port());
        let mut writer_args: Vec<String> = vec![
            "writer".into(),
            "--store".into(),
            store,
            "--replication-listen".into(),
            writer_addr.clone(),
            "--admin-key-file".into(),
            key_file.to_str().unwrap().into(),
        ];
        writer_args.extend(certs.args("writer"));
        Stack {
            _etcd: etcd,
            dir,
            writer_addr,
            writer_args,
            edge_addr: format!("127.0.0.1:{}", setpoint_tests::free_port()),
            edge_tls: certs.args("edge"),
            http: client_with_key(&test_admin_key()),
        }
    }

    async fn writer(&self) -> setpoint_tests::binary::SetpointProcess {
        let args: Vec<&str> = self.writer_args.iter().map(String::as_str).collect();
        setpoint_tests::binary::SetpointProcess::start_on(&args, &self.writer_addr, self.dir.path())
            .await
    }

    async fn edge(&self) -> setpoint_tests::binary::SetpointProcess {
        self.edge_at("edge-1", &self.edge_addr.clone()).await
    }

    /// Edge `id` listening on `addr`, its disk snapshot in its own directory (kept across
    /// restarts of the same id).
    async fn edge_at(&self, id: &str, addr: &str) -> setpoint_tests::binary::SetpointProcess {
        let data = if id == "edge-1" {
            self.dir.path().join("edge")
        } else {
            self.dir.path().join(id)
        };
        let mut args: Vec<String> = vec![
            "edge".into(),
            "--id".into(),
            id.into(),
            "--writer".into(),
            self.writer_addr.clone(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
        ];
        args.extend(self.edge_tls.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        setpoint_tests::binary::SetpointProcess::start_on(&args, addr, self.dir.path()).await
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
    // A watch without Last-Event-ID starts at the edge's present: connect before writing.
    let connected =
        setpoint_tests::wait_until(Duration::from_secs(20), || async { watcher.connects() > 0 })
            .await;
    assert!(connected, "the watcher never connected");
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

/// Sends `signal` (`-STOP`, `-CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// The whole failure model at once, judged by a history checker (`setpoint_tests::history`):
/// writers keep writing while an etcd follower dies and returns, the writer is SIGKILLed and
/// restarted, one edge is SIGKILLed and restarted from its disk snapshot, the other is frozen
/// (SIGSTOP) and thawed, and the etcd leader dies and returns. Resuming SSE and gRPC watchers on
/// both edges must end with no acknowledged write lost, no gap, duplicate or reorder outside a
/// reset, never a step backwards, and the writer's final state; both edges must serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_and_every_watch_stream_survive_each_fault_in_turn() {
    use setpoint_tests::history::{self, Ack, GrpcWatcher};
    use setpoint_tests::sse::SseWatcher;
    use setpoint_tests::writer::test_admin_key;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut cluster = EtcdCluster::start(3);
    let stack = Stack::on(cluster.store_url(), None);
    let mut writer = stack.writer().await;
    let second_addr = format!("127.0.0.1:{}", setpoint_tests::free_port());
    let mut edges = [
        stack.edge().await,
        stack.edge_at("edge-2", &second_addr).await,
    ];
    let key = test_admin_key();
    let sse: Vec<SseWatcher> = edges
        .iter()
        .map(|e| {
            SseWatcher::start_with_key(
                format!("{}/api/config/h?watch=true", e.base()),
                Some(key.clone()),
            )
        })
        .collect();
    let grpc: Vec<GrpcWatcher> = edges
        .iter()
        .map(|e| GrpcWatcher::start(e.base(), "/h".into(), key.clone()))
        .collect();
    let all_connected = setpoint_tests::wait_until(Duration::from_secs(20), || async {
        sse.iter().all(|w| w.connects() > 0) && grpc.iter().all(|w| w.connects() > 0)
    })
    .await;
    assert!(all_connected, "the watchers never connected");

    // Three writers, each on its own keys, as fast as the writer answers (with a breath between).
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0usize));
    let running = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for t in 0..3 {
        let (acks, failed, running) = (acks.clone(), failed.clone(), running.clone());
        let (http, base) = (stack.http.clone(), format!("http://{}", stack.writer_addr));
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let path = format!("/h/k{}", (t * 2) + (n % 2));
                let answer = http
                    .put(format!("{base}/api/config{path}"))
                    .timeout(Duration::from_secs(5))
                    .body(json!({ "value": n }).to_string())
                    .send()
                    .await;
                let body = match answer {
                    Ok(response) if response.status().is_success() => {
                        response.json::<Value>().await.ok()
                    }
                    _ => None,
                };
                match body {
                    Some(body) => acks.lock().unwrap().push(Ack {
                        path,
                        version: body["version"].as_u64().unwrap(),
                        revision: body["revision"].as_i64().unwrap(),
                    }),
                    // Not acknowledged: it may or may not have committed.
                    None => *failed.lock().unwrap() += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let acked = || acks.lock().unwrap().len();
    let pause = |seconds: u64| tokio::time::sleep(Duration::from_secs(seconds));
    let mut timeline: Vec<String> = Vec::new();
    let mut mark = |what: &str, acked: usize| timeline.push(format!("{what} ({acked} acks)"));

    pause(2).await;
    let leader = cluster.leader().expect("a raft leader");
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    mark("etcd follower killed", acked());
    pause(3).await;
    cluster.restart(follower);
    mark("etcd follower back", acked());
    pause(2).await;

    writer.kill();
    mark("writer SIGKILLed", acked());
    writer = stack.writer().await;
    mark("writer back", acked());
    pause(2).await;

    let [first, second] = edges;
    first.kill();
    mark("edge-1 SIGKILLed", acked());
    let first = stack.edge().await;
    mark("edge-1 back", acked());
    pause(2).await;

    let frozen = second.pid().unwrap();
    signal(frozen, "-STOP");
    mark("edge-2 frozen", acked());
    pause(3).await;
    signal(frozen, "-CONT");
    mark("edge-2 thawed", acked());
    edges = [first, second];
    pause(2).await;

    let leader = cluster.leader().expect("a raft leader");
    cluster.kill(leader);
    mark("etcd leader killed", acked());
    pause(3).await;
    cluster.restart(leader);
    mark("etcd leader back", acked());
    pause(2).await;

    running.store(false, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    let failed = *failed.lock().unwrap();
    println!("timeline: {timeline:#?}");
    println!(
        "{} acknowledged writes, {failed} not acknowledged",
        acks.len()
    );
    assert!(acks.len() > 100, "too few writes to judge: {}", acks.len());

    // The writer's final state: every acknowledged write is there or superseded.
    let mut final_state: BTreeMap<String, u64> = BTreeMap::new();
    for k in 0..6 {
        let path = format!("/h/k{k}");
        let response = stack
            .http
            .get(format!("{}/api/config{path}", writer.base()))
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            let body: Value = response.json().await.unwrap();
            final_state.insert(path, body["version"].as_u64().unwrap());
        }
    }
    for ack in &acks {
        let held = final_state.get(&ack.path).copied().unwrap_or(0);
        assert!(
            held >= ack.version,
            "the writer lost {} v{}: holds v{held}",
            ack.path,
            ack.version
        );
    }

    // Both edges converge on it.
    for edge in &edges {
        let converged = setpoint_tests::wait_until(Duration::from_secs(30), || async {
            let mut all = true;
            for (path, version) in &final_state {
                let body: Option<Value> = match stack
                    .http
                    .get(format!("{}/api/config{path}", edge.base()))
                    .send()
                    .await
                {
                    Ok(response) => response.json().await.ok(),
                    Err(_) => None,
                };
                all &= body.is_some_and(|b| b["version"].as_u64() == Some(*version));
            }
            all
        })
        .await;
        assert!(converged, "edge {} never served the final state", edge.addr);
    }

    // Every watcher's stream, once it has reached the end.
    let reached_end =
        |items: Vec<history::Item>| history::check(&items, &acks, &final_state).is_ok();
    let done = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        sse.iter()
            .all(|w| reached_end(history::from_sse(&w.events())))
            && grpc.iter().all(|w| reached_end(w.items()))
    })
    .await;
    let streams = sse
        .iter()
        .enumerate()
        .map(|(i, w)| {
            (
                format!("SSE on edge-{}", i + 1),
                history::from_sse(&w.events()),
                w.connects(),
            )
        })
        .chain(
            grpc.iter()
                .enumerate()
                .map(|(i, w)| (format!("gRPC on edge-{}", i + 1), w.items(), w.connects())),
        );
    for (name, items, connects) in streams {
        match history::check(&items, &acks, &final_state) {
            Ok(summary) => println!(
                "{name}: {} items over {connects} connections, {} resets, acks {} as updates + {} in resets",
                summary.items,
                summary.resets,
                summary.acks_seen_as_updates,
                summary.acks_covered_by_resets
            ),
            Err(defect) => panic!("{name} ({connects} connections): {defect}"),
        }
    }
    assert!(done, "some stream never reached the final state");
    drop(edges);
    drop(writer);
}

/// What the edge at `stack` answers instance `instance` for `path` (its rollout view).
async fn seen_by(stack: &Stack, instance: &str, path: &str) -> Option<String> {
    let response = stack
        .http
        .get(format!("http://{}/api/config{path}", stack.edge_addr))
        .header("X-Setpoint-Instance", instance)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["value"].as_str().map(str::to_owned)
}

/// An edge restarted in mid-rollout evaluates it from its disk snapshot alone (the writer down):
/// every instance sees exactly what it saw before the restart; once the writer is back, the next
/// stage and the rollback reach the restarted edge like any record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_restarted_mid_rollout_keeps_each_instances_view_from_its_snapshot() {
    let stack = Stack::new();
    let writer = stack.writer().await;
    let edge = stack.edge().await;
    stack.put("/myapp/flag", json!("off")).await;
    let response = stack
        .http
        .post(format!(
            "http://{}/api/config/myapp/flag/rollout",
            stack.writer_addr
        ))
        .body(json!({"value": "on", "stages": [50, 100]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["rollout_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let instances: Vec<String> = (0..40).map(|i| format!("app-{i}")).collect();
    let views = || async {
        let mut views = Vec::new();
        for instance in &instances {
            views.push(seen_by(&stack, instance, "/myapp/flag").await);
        }
        views
    };
    // The edge has the record once some instance sees the candidate (half of 40 do, about).
    let applied = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        views().await.iter().any(|v| v.as_deref() == Some("on"))
    })
    .await;
    assert!(applied, "the edge never applied the rollout record");
    let before = views().await;
    let members = before.iter().filter(|v| v.as_deref() == Some("on")).count();
    assert!(
        (5..=35).contains(&members),
        "about half of 40 at 50 %: {members}"
    );

    // The edge stops (saving its snapshot), the writer dies, the edge comes back from disk.
    assert!(edge.terminate().success());
    writer.kill();
    let edge = stack.edge().await;
    let after = views().await;
    assert_eq!(
        after, before,
        "each instance's view, from the disk snapshot alone"
    );

    // The writer returns; the next stage (100 %) and then the rollback reach the restarted edge.
    let writer = stack.writer().await;
    let steer = |action: &'static str| {
        let url = format!("http://{}/api/rollouts/{id}/{action}", stack.writer_addr);
        let http = stack.http.clone();
        async move { http.post(url).send().await.unwrap().status() }
    };
    assert_eq!(steer("advance").await, StatusCode::OK);
    let everyone = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        views().await.iter().all(|v| v.as_deref() == Some("on"))
    })
    .await;
    assert!(
        everyone,
        "100 % through the restarted edge: {:?}",
        views().await
    );
    assert_eq!(steer("rollback").await, StatusCode::OK);
    let reverted = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        views().await.iter().all(|v| v.as_deref() == Some("off"))
    })
    .await;
    assert!(
        reverted,
        "rollback through the restarted edge: {:?}",
        views().await
    );
    drop((edge, writer));
}

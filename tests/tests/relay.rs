//! Regional caches with the real binaries: a writer (embedded store), a regional edge serving the
//! replication protocol (`--replication-listen`) and leaf edges following it with the writer as
//! their fallback (`--upstream REGIONAL,WRITER`). A commit reaches a leaf through the regional
//! edge; the regional edge SIGKILLed, the leaf fails over to the writer without losing or
//! repeating an event to its watchers (the history checker) and returns to the regional edge
//! once it is back; an upstream behind the leaf is refused, never moving it backwards; with the
//! writer down, a leaf catches up from a more advanced regional edge found by gossip; a relay cut
//! off from the writer makes the edges below it stale, and they move to a fresher upstream. Every
//! process is stopped by its PID (guards kill on failure).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use setpoint_tests::binary::{Certs, SetpointProcess};
use setpoint_tests::history::{self, Ack, GrpcWatcher};
use setpoint_tests::writer::{client_with_key, test_admin_key};
use setpoint_tests::{free_port, wait_until};

fn admin_key_file(dir: &Path) -> String {
    let file = dir.join("admin.key");
    std::fs::write(&file, test_admin_key()).unwrap();
    file.to_str().unwrap().to_owned()
}

/// A node of the tree: its HTTP address, the UDP address it serves replication on (writer and
/// regional edges), its arguments (to restart it where it was) and the process.
struct Node {
    process: Option<SetpointProcess>,
    addr: String,
    replication: String,
    args: Vec<String>,
}

impl Node {
    async fn writer(certs: &Certs, dir: &Path) -> Node {
        Node::writer_with(certs, dir, Vec::new()).await
    }

    /// A writer with `extra` arguments.
    async fn writer_with(certs: &Certs, dir: &Path, extra: Vec<String>) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "writer".into(),
            "--store".into(),
            format!("embedded://{}", dir.join("writer-data").display()),
            "--replication-listen".into(),
            addr.clone(),
            "--admin-key-file".into(),
            admin_key_file(dir),
            // Edges gone for a second are an alert, judged five times a second.
            "--alert-edge-grace".into(),
            "1s".into(),
            "--alert-interval".into(),
            "200ms".into(),
        ];
        args.extend(certs.args("writer"));
        args.extend(extra);
        Node::start(args, addr.clone(), addr, dir).await
    }

    /// An edge following `upstreams` in order; `regional` also serves replication (with its own
    /// certificate from `setpoint certs --regional`).
    async fn edge(id: &str, upstreams: &[&str], regional: bool, certs: &Certs, dir: &Path) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let replication = format!("127.0.0.1:{}", free_port());
        Node::start(
            edge_args(id, upstreams, regional.then_some(&replication), certs, dir),
            addr,
            replication,
            dir,
        )
        .await
    }

    async fn start(args: Vec<String>, addr: String, replication: String, dir: &Path) -> Node {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = SetpointProcess::start_on(&refs, &addr, dir).await;
        Node {
            process: Some(process),
            addr,
            replication,
            args,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        self.process
            .as_ref()
            .map(SetpointProcess::log_text)
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    async fn restart(&mut self, dir: &Path) {
        assert!(self.process.is_none(), "stop it first");
        let refs: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.process = Some(SetpointProcess::start_on(&refs, &self.addr, dir).await);
    }
}

fn edge_args(
    id: &str,
    upstreams: &[&str],
    replication: Option<&String>,
    certs: &Certs,
    dir: &Path,
) -> Vec<String> {
    let data: PathBuf = dir.join(id);
    let mut args: Vec<String> = vec![
        "edge".into(),
        "--id".into(),
        id.into(),
        "--upstream".into(),
        upstreams.join(","),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
        "--region".into(),
        "loopback-1".into(),
    ];
    match replication {
        // A regional edge shows its own certificate (`setpoint certs --regional`, valid for
        // 127.0.0.1) to the edges it serves and to its upstream.
        Some(listen) => {
            certs.regional(id);
            args.extend(certs.args(id));
            args.extend(["--replication-listen".into(), listen.clone()]);
        }
        None => args.extend(certs.args("edge")),
    }
    args
}

async fn healthz(node: &Node) -> Value {
    match reqwest::get(format!("{}/healthz", node.base())).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Waits until `edge` follows `upstream` (its replication address) and is not stale.
async fn wait_following(edge: &Node, upstream: &Node, within: Duration) -> bool {
    wait_until(within, || async {
        let health = healthz(edge).await;
        health["upstream"] == json!(upstream.replication) && health["stale"] == json!(false)
    })
    .await
}

async fn put(http: &reqwest::Client, writer: &Node, path: &str, value: Value) -> Ack {
    let response = http
        .put(format!("{}/api/config{path}", writer.base()))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "PUT {path}: {}",
        response.status()
    );
    let body: Value = response.json().await.unwrap();
    Ack {
        path: path.to_owned(),
        version: body["version"].as_u64().unwrap(),
        revision: body["revision"].as_i64().unwrap(),
    }
}

async fn value_at(http: &reqwest::Client, node: &Node, path: &str) -> Option<Value> {
    let response = http
        .get(format!("{}/api/config{path}", node.base()))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(response.json::<Value>().await.ok()?["value"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reaches_a_leaf_through_a_regional_edge() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let writer = Node::writer(&certs, dir.path()).await;
    let regional = Node::edge("regional", &[&writer.replication], true, &certs, dir.path()).await;
    let leaf = Node::edge(
        "leaf",
        &[&regional.replication, &writer.replication],
        false,
        &certs,
        dir.path(),
    )
    .await;
    assert!(
        wait_following(&leaf, &regional, Duration::from_secs(20)).await,
        "the leaf never followed the regional edge: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );
    put(&http, &writer, "/relay/a", json!({"n": 1})).await;
    let arrived = wait_until(Duration::from_secs(10), || async {
        value_at(&http, &leaf, "/relay/a").await == Some(json!({"n": 1}))
    })
    .await;
    assert!(
        arrived,
        "the commit never reached the leaf:\n{}",
        leaf.log()
    );
    assert!(
        healthz(&leaf).await["upstream"] == json!(regional.replication),
        "the leaf left the regional edge: {}",
        healthz(&leaf).await
    );
}

/// Writes `/relay/k0..k2` in turn until `stop` is set, recording each acknowledged write.
fn spawn_writes(
    http: reqwest::Client,
    writer_base: String,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let path = format!("/relay/k{}", i % 3);
            let response = http
                .put(format!("{writer_base}/api/config{path}"))
                .body(json!({ "value": i }).to_string())
                .send()
                .await;
            if let Ok(response) = response
                && response.status().is_success()
                && let Ok(body) = response.json::<Value>().await
            {
                acks.lock().unwrap().push(Ack {
                    path,
                    version: body["version"].as_u64().unwrap(),
                    revision: body["revision"].as_i64().unwrap(),
                });
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_fails_over_to_the_writer_when_its_regional_edge_dies_and_returns_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let writer = Node::writer(&certs, dir.path()).await;
    let mut regional =
        Node::edge("regional", &[&writer.replication], true, &certs, dir.path()).await;
    let leaf = Node::edge(
        "leaf",
        &[&regional.replication, &writer.replication],
        false,
        &certs,
        dir.path(),
    )
    .await;
    put(&http, &writer, "/relay/k0", json!("start")).await;
    assert!(
        wait_following(&leaf, &regional, Duration::from_secs(20)).await,
        "the leaf never followed the regional edge: {}",
        healthz(&leaf).await
    );
    let watcher = GrpcWatcher::start(leaf.base(), "/relay".into(), test_admin_key());
    assert!(
        wait_until(Duration::from_secs(10), || async { watcher.connects() > 0 }).await,
        "the watcher never opened its stream"
    );

    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = spawn_writes(http.clone(), writer.base(), acks.clone(), stop.clone());
    let acked = |n: usize| {
        let acks = acks.clone();
        async move { acks.lock().unwrap().len() >= n }
    };
    assert!(wait_until(Duration::from_secs(10), || acked(5)).await);

    regional.kill();
    assert!(
        wait_following(&leaf, &writer, Duration::from_secs(20)).await,
        "the leaf never failed over to the writer: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );
    let before_restart = acks.lock().unwrap().len();
    assert!(wait_until(Duration::from_secs(10), || acked(before_restart + 5)).await);

    regional.restart(dir.path()).await;
    assert!(
        wait_following(&leaf, &regional, Duration::from_secs(30)).await,
        "the leaf never returned to the regional edge: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );
    let back = acks.lock().unwrap().len();
    assert!(wait_until(Duration::from_secs(10), || acked(back + 5)).await);
    stop.store(true, Ordering::Relaxed);
    writes.await.unwrap();

    let acks = acks.lock().unwrap().clone();
    let mut final_state: BTreeMap<String, u64> = BTreeMap::new();
    for ack in &acks {
        let held = final_state.entry(ack.path.clone()).or_default();
        *held = (*held).max(ack.version);
    }
    let last = acks.iter().map(|a| a.revision).max().unwrap();
    let converged = wait_until(Duration::from_secs(15), || async {
        watcher.items().iter().any(|item| match item {
            history::Item::Change { revision, .. } | history::Item::Reset { revision, .. } => {
                *revision >= last
            }
        })
    })
    .await;
    assert!(converged, "the watcher never saw revision {last}");
    let summary = history::check(&watcher.items(), &acks, &final_state)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", watcher.items()));
    // Both hand-overs were by delta: the watcher never got a reset, and every acknowledged
    // write reached it as its own event.
    assert_eq!(summary.resets, 0, "{summary:?}");
    assert_eq!(summary.acks_seen_as_updates, acks.len(), "{summary:?}");
    assert_eq!(watcher.connects(), 1, "the leaf's watch stream never broke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_behind_the_leaf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let writer = Node::writer(&certs, dir.path()).await;
    put(&http, &writer, "/relay/old", json!(1)).await;
    let mut regional =
        Node::edge("regional", &[&writer.replication], true, &certs, dir.path()).await;
    assert!(wait_following(&regional, &writer, Duration::from_secs(20)).await);
    // Stopped gracefully, so its disk snapshot holds what it had; then the writer moves on.
    regional.process.take().unwrap().terminate();
    let mut last = put(&http, &writer, "/relay/new", json!(1)).await;
    for n in 2..5 {
        last = put(&http, &writer, "/relay/new", json!(n)).await;
    }
    let mut leaf = Node::edge("leaf", &[&writer.replication], false, &certs, dir.path()).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            healthz(&leaf).await["revision"].as_i64() >= Some(last.revision)
        })
        .await
    );
    leaf.process.take().unwrap().terminate();

    // The regional edge comes back from its disk, behind, with no upstream to catch up from.
    let nowhere = format!("127.0.0.1:{}", free_port());
    regional.args = edge_args(
        "regional",
        &[&nowhere],
        Some(&regional.replication),
        &certs,
        dir.path(),
    );
    regional.restart(dir.path()).await;
    // The leaf prefers it, but it is behind: the leaf goes on to the writer.
    leaf.args = edge_args(
        "leaf",
        &[&regional.replication, &writer.replication],
        None,
        &certs,
        dir.path(),
    );
    leaf.restart(dir.path()).await;
    let lowest = AtomicI64::new(i64::MAX);
    let followed = wait_until(Duration::from_secs(20), || async {
        let health = healthz(&leaf).await;
        if let Some(revision) = health["revision"].as_i64() {
            lowest.fetch_min(revision, Ordering::Relaxed);
        }
        health["upstream"] == json!(writer.replication) && health["stale"] == json!(false)
    })
    .await;
    let lowest = lowest.load(Ordering::Relaxed);
    assert!(
        followed,
        "the leaf never went on to the writer:\n{}",
        leaf.log()
    );
    // A probe of the preferred regional edge later is refused the same way.
    let refused_twice = wait_until(Duration::from_secs(15), || async {
        regional.log().matches("behind:").count() >= 2
    })
    .await;
    assert!(
        refused_twice,
        "the regional edge never said behind twice:\n{}",
        regional.log()
    );
    let health = healthz(&leaf).await;
    assert_eq!(health["upstream"], json!(writer.replication), "{health}");
    assert!(
        lowest >= last.revision && health["revision"].as_i64() >= Some(last.revision),
        "the leaf moved backwards: lowest {lowest}, expected ≥ {}",
        last.revision
    );
    assert_eq!(value_at(&http, &leaf, "/relay/new").await, Some(json!(4)));
}

/// `args` with gossip on a fresh loopback port, joining `seeds`; returns the gossip address too.
fn with_gossip(mut args: Vec<String>, seeds: &[&str]) -> (Vec<String>, String) {
    let gossip = format!("127.0.0.1:{}", free_port());
    args.extend(["--gossip".into(), gossip.clone()]);
    if !seeds.is_empty() {
        args.extend(["--join".into(), seeds.join(",")]);
    }
    (args, gossip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_writer_down_a_leaf_catches_up_from_a_more_advanced_peer_found_by_gossip() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let (gossip, writer_gossip) = with_gossip(Vec::new(), &[]);
    let mut writer = Node::writer_with(&certs, dir.path(), gossip).await;

    // A regional edge and a leaf of the same region, both following the writer directly.
    let replication = format!("127.0.0.1:{}", free_port());
    let (args, regional_gossip) = with_gossip(
        edge_args(
            "regional",
            &[&writer.replication],
            Some(&replication),
            &certs,
            dir.path(),
        ),
        &[&writer_gossip],
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let regional = Node::start(args, addr, replication, dir.path()).await;
    let (args, _) = with_gossip(
        edge_args("leaf", &[&writer.replication], None, &certs, dir.path()),
        &[&writer_gossip, &regional_gossip],
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let mut leaf = Node::start(args, addr, String::new(), dir.path()).await;
    let first = put(&http, &writer, "/peer/a", json!(1)).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            healthz(&leaf).await["revision"].as_i64() >= Some(first.revision)
        })
        .await,
        "the leaf never got the first write: {}",
        leaf.log()
    );

    // The leaf stops (its disk keeps revision `first`); the regional edge gets three more
    // commits; then the writer dies.
    leaf.process.take().unwrap().terminate();
    let mut last = first.clone();
    for n in 1..=3 {
        last = put(&http, &writer, "/peer/b", json!(n)).await;
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            healthz(&regional).await["revision"].as_i64() >= Some(last.revision)
        })
        .await
    );
    writer.kill();

    // Back with only the dead writer as its upstream, the leaf finds the regional edge by
    // gossip, catches up from it and says so; it never goes below what its disk held.
    leaf.restart(dir.path()).await;
    let lowest = AtomicI64::new(i64::MAX);
    let caught_up = wait_until(Duration::from_secs(40), || async {
        let health = healthz(&leaf).await;
        if let Some(revision) = health["revision"].as_i64() {
            lowest.fetch_min(revision, Ordering::Relaxed);
        }
        // The peer lost the writer too, and says so: the leaf is as stale as the peer.
        health["upstream_peer"] == json!("regional")
            && health["upstream"] == json!(regional.replication)
            && health["revision"].as_i64() >= Some(last.revision)
            && health["stale"] == json!(true)
    })
    .await;
    assert!(
        caught_up,
        "the leaf never caught up from its peer: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );
    assert!(lowest.load(Ordering::Relaxed) >= first.revision);
    assert_eq!(value_at(&http, &leaf, "/peer/b").await, Some(json!(3)));

    // The writer back, the leaf returns to it and leaves the peer.
    writer.restart(dir.path()).await;
    let returned = wait_until(Duration::from_secs(30), || async {
        let health = healthz(&leaf).await;
        health["upstream"] == json!(writer.replication)
            && health["upstream_peer"].is_null()
            && health["stale"] == json!(false)
    })
    .await;
    assert!(
        returned,
        "the leaf never returned to the writer: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );
    let after = put(&http, &writer, "/peer/c", json!(1)).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            value_at(&http, &leaf, "/peer/c").await == Some(json!(1))
        })
        .await,
        "a commit after the return never reached the leaf (revision {})",
        after.revision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_below_a_relay_cut_off_from_the_writer_is_stale_and_moves_to_a_fresher_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let writer = Node::writer(&certs, dir.path()).await;
    // writer → top → mid → leaf; the leaf also lists the writer, after mid.
    let mut top = Node::edge("top", &[&writer.replication], true, &certs, dir.path()).await;
    let mid = Node::edge("mid", &[&top.replication], true, &certs, dir.path()).await;
    let leaf = Node::edge(
        "leaf",
        &[&mid.replication, &writer.replication],
        false,
        &certs,
        dir.path(),
    )
    .await;
    assert!(
        wait_following(&leaf, &mid, Duration::from_secs(30)).await,
        "the leaf never followed mid: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );

    // Mid loses its only upstream: it keeps serving the leaf (heartbeats), but says it is stale.
    top.kill();
    let mid_stale = wait_until(Duration::from_secs(20), || async {
        healthz(&mid).await["stale"] == json!(true)
    })
    .await;
    assert!(mid_stale, "mid never noticed top was gone:\n{}", mid.log());
    let moved = wait_until(Duration::from_secs(30), || async {
        let health = healthz(&leaf).await;
        health["upstream"] == json!(writer.replication) && health["stale"] == json!(false)
    })
    .await;
    assert!(
        moved,
        "the leaf stayed on a stale relay: {}\n{}",
        healthz(&leaf).await,
        leaf.log()
    );
    assert!(
        leaf.log().contains("upstream is stale itself")
            || leaf.log().contains("moving to an upstream that serves"),
        "the leaf moved for another reason:\n{}",
        leaf.log()
    );
    put(&http, &writer, "/fresh/a", json!(1)).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            value_at(&http, &leaf, "/fresh/a").await == Some(json!(1))
        })
        .await
    );
    // Mid, with nowhere to go, stays stale and says so, counting from its last word from top.
    let health = healthz(&mid).await;
    assert_eq!(health["stale"], json!(true), "{health}");
    assert!(health["staleness_seconds"].as_f64() > Some(0.0), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_gone_longer_than_the_retention_is_forgotten_with_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let retention = vec!["--client-retention".to_owned(), "2s".to_owned()];
    let writer = Node::writer_with(&certs, dir.path(), retention).await;
    let mut edge = Node::edge("passing", &[&writer.replication], false, &certs, dir.path()).await;
    assert!(wait_following(&edge, &writer, Duration::from_secs(20)).await);
    put(&http, &writer, "/passing/a", json!(1)).await;
    let series = "edge=\"passing\"";
    let metrics = || async {
        http.get(format!("{}/metrics", writer.base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            metrics().await.contains(series)
        })
        .await
    );
    edge.kill();
    let listed_gone = wait_until(Duration::from_secs(20), || async {
        let body = get_json(&http, format!("{}/api/edges", writer.base())).await;
        by_id(&body["edges"], "passing")["replication"] == json!("disconnected")
    })
    .await;
    assert!(listed_gone, "the writer never saw the edge go");
    let forgotten = wait_until(Duration::from_secs(20), || async {
        let body = get_json(&http, format!("{}/api/edges", writer.base())).await;
        body["edges"]
            .as_array()
            .is_some_and(|list| list.iter().all(|e| e["id"] != json!("passing")))
            && !metrics().await.contains(series)
    })
    .await;
    assert!(
        forgotten,
        "the edge or its series outlived the retention: {}",
        metrics().await
    );
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    match http.get(url).send().await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The entry of `id` in `list` (an array of objects with an `id`).
fn by_id(list: &Value, id: &str) -> Value {
    list.as_array()
        .and_then(|items| items.iter().find(|item| item["id"] == id))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_shows_the_tree_of_edges_and_the_clients_of_a_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let http = client_with_key(&test_admin_key());
    let writer = Node::writer(&certs, dir.path()).await;
    let regional = Node::edge("regional", &[&writer.replication], true, &certs, dir.path()).await;
    let mut leaf = Node::edge(
        "leaf",
        &[&regional.replication, &writer.replication],
        false,
        &certs,
        dir.path(),
    )
    .await;
    assert!(wait_following(&leaf, &regional, Duration::from_secs(20)).await);
    put(&http, &writer, "/relay/a", json!(1)).await;
    let app = setpoint_tests::sse::SseWatcher::start_with_key(
        format!(
            "{}/api/config/relay?watch=true&instance_id=app-leaf",
            leaf.base()
        ),
        Some(test_admin_key()),
    );

    let edges_url = format!("{}/api/edges", writer.base());
    let tree = wait_until(Duration::from_secs(15), || async {
        let body = get_json(&http, edges_url.clone()).await;
        let (regional, leaf) = (
            by_id(&body["edges"], "regional"),
            by_id(&body["edges"], "leaf"),
        );
        regional["upstream"] == body["writer"]["id"]
            && regional["replication"] == "connected"
            && leaf["upstream"] == "regional"
            && leaf["replication"] == "connected"
            && leaf["applied_revision"].as_i64() >= body["revision"].as_i64().map(|r| r - 1)
    })
    .await;
    assert!(
        tree,
        "/api/edges never showed writer → regional → leaf: {}",
        get_json(&http, edges_url.clone()).await
    );

    let clients_url = format!("{}/api/clients", writer.base());
    let listed = wait_until(Duration::from_secs(15), || async {
        let app = by_id(&get_json(&http, clients_url.clone()).await, "app-leaf");
        app["edge"] == "leaf" && app["status"] == "connected"
    })
    .await;
    assert!(
        listed,
        "/api/clients never showed the leaf's client: {}",
        get_json(&http, clients_url.clone()).await
    );
    // Once announced whole, a client travels as progress (leaf → relay → writer).
    let ack = put(&http, &writer, "/relay/a", json!(2)).await;
    let progressed = wait_until(Duration::from_secs(15), || async {
        let app = by_id(&get_json(&http, clients_url.clone()).await, "app-leaf");
        app["delivered_revision"].as_i64() >= Some(ack.revision)
    })
    .await;
    assert!(
        progressed,
        "the writer never heard the delivery of {}: {}",
        ack.revision,
        get_json(&http, clients_url.clone()).await
    );

    // The leaf dies: the regional edge tells the writer, which loses the leaf's clients.
    drop(app);
    leaf.kill();
    let lost = wait_until(Duration::from_secs(20), || async {
        let edges = get_json(&http, edges_url.clone()).await;
        let app = by_id(&get_json(&http, clients_url.clone()).await, "app-leaf");
        by_id(&edges["edges"], "leaf")["replication"] == "disconnected"
            && app["status"] == "disconnected"
    })
    .await;
    assert!(
        lost,
        "the writer never saw the leaf go: {}\n{}",
        get_json(&http, edges_url).await,
        get_json(&http, clients_url).await
    );
    // An edge below a relay is watched like a direct one: its loss is an alert at the writer.
    let alerts_url = format!("{}/api/alerts", writer.base());
    let fired = wait_until(Duration::from_secs(20), || async {
        get_json(&http, alerts_url.clone()).await["alerts"]
            .as_array()
            .is_some_and(|alerts| {
                alerts
                    .iter()
                    .any(|a| a["name"] == "EdgeDisconnected" && a["key"] == "leaf")
            })
    })
    .await;
    assert!(
        fired,
        "no EdgeDisconnected for the leaf: {}",
        get_json(&http, alerts_url.clone()).await
    );
    let alerts = get_json(&http, alerts_url).await;
    assert!(
        !alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "EdgeDisconnected" && a["key"] == "regional"),
        "the regional edge is still connected: {alerts}"
    );
}

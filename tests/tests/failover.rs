//! Standby writers with the real binaries on one real etcd: one leader by lease, standbys
//! redirect writes (307), a SIGKILLed leader is replaced within the lease TTL with no
//! acknowledged write lost, an edge given both replicas keeps receiving in revision order (and,
//! listing the standby first, moves to the leader and follows a takeover), a
//! paused (SIGSTOP) or overtaken leader commits nothing, a rollout is carried to completion by
//! the standby after the leader is killed, and a second process on one embedded store directory
//! is refused. Every process is stopped by its PID (guards kill on failure).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, LOCATION};
use serde_json::{Value, json};
use setpoint_tests::binary::{Certs, SetpointProcess, setpoint_bin};
use setpoint_tests::etcd::EtcdServer;
use setpoint_tests::sse::SseWatcher;
use setpoint_tests::writer::test_admin_key;
use setpoint_tests::{free_port, wait_until};
use setpoint_writer::store::etcd::EtcdStore;
use setpoint_writer::store::{Store, Txn, TxnOp};

/// Short enough for a quick test, at etcd's minimum.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// What a takeover may take beyond the TTL: etcd checks lease expiry every 500 ms, then the
/// standby's watch, campaign and first commit, and the client's retry.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(3);

fn admin_key_file(dir: &Path) -> String {
    let file = dir.join("admin.key");
    std::fs::write(&file, test_admin_key()).unwrap();
    file.to_str().unwrap().to_owned()
}

/// A client that sends the admin key and does not follow redirects (the tests look at them).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn bearer() -> String {
    format!("Bearer {}", test_admin_key())
}

struct Writer {
    process: SetpointProcess,
    /// The replication endpoint (UDP; the same port number as HTTP).
    addr: String,
}

impl Writer {
    async fn start(id: &str, etcd: &EtcdServer, certs: Option<&Certs>, dir: &Path) -> Writer {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "writer".into(),
            "--id".into(),
            id.into(),
            "--store".into(),
            format!("etcd://{}", etcd.endpoint()),
            "--lease-ttl".into(),
            format!("{}ms", LEASE_TTL.as_millis()),
            "--admin-key-file".into(),
            admin_key_file(dir),
            "--bootstrap-key-file".into(),
            dir.join(format!("{id}-generated.key"))
                .to_str()
                .unwrap()
                .into(),
        ];
        if let Some(certs) = certs {
            args.extend(["--replication-listen".into(), addr.clone()]);
            args.extend(certs.args("writer"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = SetpointProcess::start_on(&args, &addr, dir).await;
        Writer { process, addr }
    }

    fn base(&self) -> String {
        self.process.base()
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.pid().unwrap().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

/// An edge replicating from `writers`, in that order of preference.
async fn start_edge(id: &str, writers: [&Writer; 2], certs: &Certs, dir: &Path) -> SetpointProcess {
    let mut args: Vec<String> = vec![
        "edge".into(),
        "--id".into(),
        id.into(),
        "--writer".into(),
        format!("{},{}", writers[0].addr, writers[1].addr),
        "--data-dir".into(),
        dir.join("edge").to_str().unwrap().into(),
    ];
    args.extend(certs.args("edge"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let addr = format!("127.0.0.1:{}", free_port());
    SetpointProcess::start_on(&args, &addr, dir).await
}

async fn readyz(http: &reqwest::Client, base: &str) -> Value {
    match http.get(format!("{base}/readyz")).send().await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn wait_role(http: &reqwest::Client, writer: &Writer, role: &str, within: Duration) -> bool {
    wait_until(within, || async {
        readyz(http, &writer.base()).await["role"] == role
    })
    .await
}

/// Both writers started; returns (leader, standby) once each knows its role.
async fn elect(http: &reqwest::Client, a: Writer, b: Writer) -> (Writer, Writer) {
    let decided = wait_until(Duration::from_secs(10), || async {
        let roles = [
            readyz(http, &a.base()).await["role"].clone(),
            readyz(http, &b.base()).await["role"].clone(),
        ];
        roles.contains(&json!("leader")) && roles.contains(&json!("standby"))
    })
    .await;
    assert!(
        decided,
        "no single leader: a {} b {}",
        readyz(http, &a.base()).await,
        readyz(http, &b.base()).await
    );
    if readyz(http, &a.base()).await["role"] == "leader" {
        (a, b)
    } else {
        (b, a)
    }
}

async fn put(http: &reqwest::Client, url: &str, value: Value) -> reqwest::Response {
    http.put(url)
        .header(AUTHORIZATION, bearer())
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = http
        .get(url)
        .header(AUTHORIZATION, bearer())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .header(AUTHORIZATION, bearer())
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Every version of `path`, oldest first (from any replica: reads are served locally).
async fn history(http: &reqwest::Client, base: &str, path: &str) -> Vec<Value> {
    let (status, body) =
        get_json(http, &format!("{base}/api/config{path}/history?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut versions = body.as_array().cloned().unwrap_or_default();
    versions.reverse();
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_the_standby_redirects_writes_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let http = http();
    let a = Writer::start("writer-a", &etcd, None, dir.path()).await;
    let b = Writer::start("writer-b", &etcd, None, dir.path()).await;
    let (leader, standby) = elect(&http, a, b).await;

    let ready = readyz(&http, &standby.base()).await;
    assert_eq!(ready["ready"], true, "a standby serves reads: {ready}");
    assert_eq!(ready["leader"], json!(leader.base()), "{ready}");
    assert_eq!(
        readyz(&http, &leader.base()).await["leader"],
        json!(leader.base())
    );
    assert_eq!(
        metric(&http, &leader.base(), "setpoint_writer_leader").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&http, &standby.base(), "setpoint_writer_leader").await,
        Some(0.0)
    );
    let (_, edges) = get_json(&http, &format!("{}/api/edges", standby.base())).await;
    assert_eq!(edges["writer"]["role"], "standby", "{edges}");
    assert_eq!(edges["writer"]["leader"], json!(leader.base()), "{edges}");

    // A write to the standby: 307 to the same path and query on the leader, nothing committed.
    let target = "/api/config/app/limit?note=1";
    let response = put(&http, &format!("{}{target}", standby.base()), json!(5)).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}{target}", leader.base()));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_leader", "{body}");
    assert_eq!(body["error"]["details"]["leader"], json!(leader.base()));
    // Deletes and other write methods are redirected the same way.
    let delete = http
        .delete(format!("{}/api/environments/dev", standby.base()))
        .header(AUTHORIZATION, bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::TEMPORARY_REDIRECT);

    // Following the redirect commits on the leader; the standby then reads it from the store.
    let committed = put(&http, &location, json!(5)).await;
    let status = committed.status();
    let version: Value = committed.json().await.unwrap();
    assert!(status.is_success(), "{status}: {version}");
    assert_eq!(version["version"], 1);
    let seen = wait_until(Duration::from_secs(5), || async {
        let (status, body) =
            get_json(&http, &format!("{}/api/config/app/limit", standby.base())).await;
        status == StatusCode::OK && body["value"] == 5
    })
    .await;
    assert!(seen, "the standby serves what the leader committed");
}

/// One acknowledged write of the load loop.
#[derive(Debug, Clone)]
struct Ack {
    value: u64,
    version: u64,
    at: Instant,
}

/// Writes 1, 2, 3… to `path` until `stop`: follows 307s, moves to the other replica on a
/// connection error or a 503, and records every acknowledged write. A write whose answer was
/// lost (the leader died mid-request) is not acknowledged; the next attempt writes a new value.
async fn write_loop(
    bases: [String; 2],
    path: &str,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let http = http();
    let mut target = 0usize;
    let mut url: Option<String> = None;
    let mut value = 0u64;
    while !stop.load(Ordering::SeqCst) {
        value += 1;
        let at = url
            .take()
            .unwrap_or_else(|| format!("{}/api/config{path}", bases[target]));
        let response = http
            .put(&at)
            .header(AUTHORIZATION, bearer())
            .timeout(Duration::from_secs(3))
            .body(json!({ "value": value }).to_string())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let body: Value = response.json().await.unwrap();
                acks.lock().unwrap().push(Ack {
                    value,
                    version: body["version"].as_u64().unwrap(),
                    at: Instant::now(),
                });
            }
            Ok(response) if response.status() == StatusCode::TEMPORARY_REDIRECT => {
                url = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_owned);
            }
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                target = 1 - target;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(response) => panic!(
                "unexpected answer {} from {at}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ),
            Err(_) => {
                target = 1 - target;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let certs = Certs::make(dir.path());
    let http = http();
    let a = Writer::start("writer-a", &etcd, Some(&certs), dir.path()).await;
    let b = Writer::start("writer-b", &etcd, Some(&certs), dir.path()).await;
    let (leader, standby) = elect(&http, a, b).await;

    // An edge given both replicas, the leader first.
    let edge = start_edge("edge-failover", [&leader, &standby], &certs, dir.path()).await;
    let edge_ready = wait_until(Duration::from_secs(20), || async {
        reqwest::get(format!("{}/readyz", edge.base()))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(edge_ready, "edge never ready:\n{}", edge.log_text());
    let watcher = SseWatcher::start_with_key(
        format!("{}/api/config/load?watch=true", edge.base()),
        Some(test_admin_key()),
    );
    assert!(wait_until(Duration::from_secs(10), || async { watcher.connects() > 0 }).await);

    let path = "/load/counter";
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let writing = tokio::spawn(write_loop(
        [leader.base(), standby.base()],
        path,
        stop.clone(),
        acks.clone(),
    ));
    let warmed = wait_until(Duration::from_secs(10), || async {
        acks.lock().unwrap().len() >= 20
    })
    .await;
    assert!(warmed, "the load loop commits through the leader");

    let standby_base = standby.base();
    // `kill` returns once the process is gone, so an answer after this came from the standby.
    leader.process.kill();
    let killed_at = Instant::now();
    let resumed = wait_until(
        LEASE_TTL + TAKEOVER_MARGIN + Duration::from_secs(5),
        || async {
            acks.lock()
                .unwrap()
                .last()
                .is_some_and(|a| a.at > killed_at)
        },
    )
    .await;
    let first_after = acks
        .lock()
        .unwrap()
        .iter()
        .find(|a| a.at > killed_at)
        .cloned();
    assert!(resumed, "writes never resumed after the leader died");
    let takeover = first_after.unwrap().at - killed_at;
    println!(
        "takeover: the first write acknowledged {takeover:?} after SIGKILL of the leader (lease TTL {LEASE_TTL:?})"
    );
    assert!(
        takeover <= LEASE_TTL + TAKEOVER_MARGIN,
        "takeover took {takeover:?}, more than the TTL {LEASE_TTL:?} + {TAKEOVER_MARGIN:?}"
    );
    assert_eq!(readyz(&http, &standby_base).await["role"], "leader");
    // Keep writing through the new leader for a moment, then stop.
    let count = acks.lock().unwrap().len();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            acks.lock().unwrap().len() >= count + 20
        })
        .await
    );
    stop.store(true, Ordering::SeqCst);
    writing.await.unwrap();
    let acks = acks.lock().unwrap().clone();

    // No acknowledged write lost, versions 1..n without a gap.
    let versions = history(&http, &standby_base, path).await;
    let numbers: Vec<u64> = versions
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as u64).collect::<Vec<_>>(),
        "versions have a gap"
    );
    for ack in &acks {
        let stored = &versions[usize::try_from(ack.version - 1).unwrap()];
        assert_eq!(
            stored["value"], ack.value,
            "acknowledged write {ack:?} is not in the history as acknowledged"
        );
    }
    println!(
        "{} writes acknowledged, {} versions in the history",
        acks.len(),
        versions.len()
    );

    // The edge moved to the surviving replica and has every batch, in revision order.
    let last = acks.last().unwrap().clone();
    let caught_up = wait_until(Duration::from_secs(20), || async {
        watcher
            .changes()
            .last()
            .is_some_and(|(_, p, version)| p == path && *version == last.version)
    })
    .await;
    assert!(
        caught_up,
        "the edge's watcher never got version {} (last {:?}); edge log:\n{}",
        last.version,
        watcher.changes().last(),
        edge.log_text()
    );
    let mut revisions: Vec<i64> = watcher.changes().iter().map(|c| c.0).collect();
    revisions.dedup();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {revisions:?}"
    );
    let mut seen: Vec<u64> = watcher.changes().iter().map(|c| c.2).collect();
    seen.dedup();
    assert_eq!(seen, numbers, "the watcher missed versions");
    let (status, body) = get_json(&http, &format!("{}/api/config{path}", edge.base())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], versions.last().unwrap()["value"]);
}

/// An edge that lists a standby first serves from it but moves to the leader, so the leader's
/// fleet view (rollout health gates, alerts) holds it and its clients; when the leader dies it
/// follows the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_listing_the_standby_first_moves_to_the_leader_and_follows_a_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let certs = Certs::make(dir.path());
    let http = http();
    let a = Writer::start("writer-a", &etcd, Some(&certs), dir.path()).await;
    let b = Writer::start("writer-b", &etcd, Some(&certs), dir.path()).await;
    let (leader, standby) = elect(&http, a, b).await;
    let edge = start_edge(
        "edge-standby-first",
        [&standby, &leader],
        &certs,
        dir.path(),
    )
    .await;
    let health = || async {
        match reqwest::get(format!("{}/healthz", edge.base())).await {
            Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    // The edge follows `addr`, not as a standby's follower, and is fresh.
    let settled_on = |addr: String| async move {
        let health = health().await;
        health["upstream"] == json!(addr)
            && health["upstream_standby"] == json!(false)
            && health["stale"] == json!(false)
    };
    let on_leader = wait_until(Duration::from_secs(30), || settled_on(leader.addr.clone())).await;
    assert!(
        on_leader,
        "the edge never moved to the leader: {}\n{}",
        health().await,
        edge.log_text()
    );
    assert!(
        edge.log_text()
            .contains("moving to an upstream that serves"),
        "the edge did not start on the standby it lists first:\n{}",
        edge.log_text()
    );
    let listed = wait_until(Duration::from_secs(10), || async {
        let (_, body) = get_json(&http, &format!("{}/api/edges", leader.base())).await;
        body["edges"].as_array().is_some_and(|edges| {
            edges.iter().any(|e| {
                e["id"] == json!("edge-standby-first") && e["replication"] == json!("connected")
            })
        })
    })
    .await;
    assert!(listed, "the leader does not hold the edge");

    // The leader dies: the standby takes over and the edge follows it, no longer as a standby.
    leader.process.kill();
    assert!(wait_role(&http, &standby, "leader", LEASE_TTL + TAKEOVER_MARGIN).await);
    let followed = wait_until(Duration::from_secs(30), || settled_on(standby.addr.clone())).await;
    assert!(
        followed,
        "the edge never settled on the new leader: {}\n{}",
        health().await,
        edge.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_commits_nothing_after_its_lease_and_steps_down() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let http = http();
    let a = Writer::start("writer-a", &etcd, None, dir.path()).await;
    let b = Writer::start("writer-b", &etcd, None, dir.path()).await;
    let (leader, standby) = elect(&http, a, b).await;

    // Writes flow to the leader only (no redirects followed) while it is paused, so one is in
    // flight inside it when it stops and resumes.
    let stop = Arc::new(AtomicBool::new(false));
    let loop_statuses = Arc::new(Mutex::new(Vec::<StatusCode>::new()));
    let loading = tokio::spawn({
        let (url, stop, statuses) = (
            format!("{}/api/config/paused/load", leader.base()),
            stop.clone(),
            loop_statuses.clone(),
        );
        async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if let Ok(response) = http
                    .put(&url)
                    .header(AUTHORIZATION, bearer())
                    .body(json!({ "value": n }).to_string())
                    .send()
                    .await
                {
                    statuses.lock().unwrap().push(response.status());
                }
            }
        }
    });
    assert!(
        wait_until(Duration::from_secs(10), || async {
            loop_statuses
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.is_success())
                .count()
                >= 5
        })
        .await,
        "writes to the leader commit before the pause"
    );

    leader.signal("-STOP");
    let took_over = wait_role(&http, &standby, "leader", LEASE_TTL + TAKEOVER_MARGIN).await;
    if !took_over {
        leader.signal("-CONT");
    }
    assert!(
        took_over,
        "the standby did not take over from a paused leader"
    );

    // A write sent to the paused process sits in its socket until SIGCONT.
    let url = format!("{}/api/config/paused/write", leader.base());
    let sent = tokio::spawn({
        let http = http.clone();
        async move { put(&http, &url, json!("from-the-paused-leader")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    leader.signal("-CONT");
    let response = sent.await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status == StatusCode::TEMPORARY_REDIRECT || status == StatusCode::SERVICE_UNAVAILABLE,
        "the paused leader answered {status}: {body}"
    );
    assert!(body.contains("not_leader"), "{body}");

    let stepped_down = wait_until(Duration::from_secs(5), || async {
        let ready = readyz(&http, &leader.base()).await;
        ready["role"] == "standby" && ready["leader"] == json!(standby.base())
    })
    .await;
    assert!(stepped_down, "{}", readyz(&http, &leader.base()).await);
    // The in-flight and later writes of the load failed too: every version of that path was
    // committed before the new leader's term began (the revision of its leader key).
    let resumed_at = loop_statuses.lock().unwrap().len();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            loop_statuses.lock().unwrap().len() >= resumed_at + 3
        })
        .await
    );
    stop.store(true, Ordering::SeqCst);
    loading.await.unwrap();
    let store = EtcdStore::connect(&[etcd.endpoint()], Duration::from_secs(2))
        .await
        .unwrap();
    let term = store
        .get("/setpoint/Wleader")
        .await
        .unwrap()
        .expect("the new leader's key")
        .mod_revision;
    let versions = history(&http, &standby.base(), "/paused/load").await;
    let late: Vec<&Value> = versions
        .iter()
        .filter(|v| v["revision"].as_i64().unwrap() > term)
        .collect();
    assert!(
        late.is_empty(),
        "the paused leader committed after losing its lease (new term at {term}): {late:?}"
    );
    let statuses = loop_statuses.lock().unwrap().clone();
    println!("paused leader's load: {statuses:?}");
    assert!(
        statuses[resumed_at..].iter().all(|s| !s.is_success()),
        "the resumed former leader acknowledged a write: {statuses:?}"
    );

    // Its write never reached the store: not on either replica.
    for base in [leader.base(), standby.base()] {
        let (status, body) =
            get_json(&http, &format!("{base}/api/config/paused/write/history")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // The new leader commits as usual.
    let committed = put(
        &http,
        &format!("{}/api/config/paused/write", standby.base()),
        json!("from-the-new-leader"),
    )
    .await;
    assert!(committed.status().is_success(), "{}", committed.status());
}

/// The fence itself, not the lease clock: the leader's key is taken while its lease is alive
/// and renewing, so only the compare in its own transaction can stop its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_key_was_taken_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let http = http();
    let a = Writer::start("writer-a", &etcd, None, dir.path()).await;
    let b = Writer::start("writer-b", &etcd, None, dir.path()).await;
    let (leader, standby) = elect(&http, a, b).await;
    let committed = put(
        &http,
        &format!("{}/api/config/fenced/value", leader.base()),
        json!(1),
    )
    .await;
    assert!(committed.status().is_success(), "{}", committed.status());

    // Delete the leader key behind the leader's back: the standby takes it over at once.
    let store = EtcdStore::connect(&[etcd.endpoint()], Duration::from_secs(2))
        .await
        .unwrap();
    let deleted = store
        .txn(Txn {
            compares: vec![],
            writes: vec![TxnOp::Delete {
                key: "/setpoint/Wleader".into(),
            }],
        })
        .await
        .unwrap();
    assert!(deleted.succeeded);
    assert!(
        wait_role(&http, &standby, "leader", Duration::from_secs(5)).await,
        "the standby did not take the freed key"
    );
    assert_eq!(
        readyz(&http, &leader.base()).await["role"],
        "leader",
        "the old leader still believes it leads (its lease is alive)"
    );

    let refused = put(
        &http,
        &format!("{}/api/config/fenced/value", leader.base()),
        json!(2),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key(reqwest::header::RETRY_AFTER));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_leader", "{body}");
    // Nothing landed, and the fenced writer stepped down and now redirects.
    let versions = history(&http, &standby.base(), "/fenced/value").await;
    assert_eq!(versions.len(), 1, "{versions:?}");
    let again = put(
        &http,
        &format!("{}/api/config/fenced/value", leader.base()),
        json!(3),
    )
    .await;
    assert_eq!(again.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        again.headers()[LOCATION].to_str().unwrap(),
        format!("{}/api/config/fenced/value", standby.base())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_one_embedded_store_exits_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("embedded://{}", dir.path().join("data").display());
    let key = admin_key_file(dir.path());
    let first = SetpointProcess::start(
        &["writer", "--store", &store, "--admin-key-file", &key],
        dir.path(),
    )
    .await;
    let mut second = Command::new(setpoint_bin())
        .args(["writer", "--store", &store, "--admin-key-file", &key])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second writer on the same embedded store kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "the second writer succeeded:\n{stderr}");
    assert!(
        stderr.contains("in use by another process"),
        "unclear error:\n{stderr}"
    );
    // The first one is unharmed.
    let (status, _) = get_json(&http(), &format!("{}/readyz", first.base())).await;
    assert_eq!(status, StatusCode::OK);
}

/// A rollout's stage clock runs on the leader from the record's stored times: killing the
/// leader mid-rollout, the standby that takes over carries it to completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_carries_on_after_the_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let http = http();
    let a = Writer::start("writer-a", &etcd, None, dir.path()).await;
    let b = Writer::start("writer-b", &etcd, None, dir.path()).await;
    let (leader, standby) = elect(&http, a, b).await;
    let response = put(
        &http,
        &format!("{}/api/config/roll/flag", leader.base()),
        json!("old"),
    )
    .await;
    assert!(response.status().is_success(), "{}", response.status());
    let response = http
        .post(format!("{}/api/config/roll/flag/rollout", leader.base()))
        .header(AUTHORIZATION, bearer())
        .body(json!({"value": "new", "stages": [50, 100], "interval": "2s"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = created["rollout_id"].as_str().unwrap().to_owned();
    leader.process.kill();

    assert!(
        wait_role(&http, &standby, "leader", LEASE_TTL + TAKEOVER_MARGIN).await,
        "the standby takes over"
    );
    let status_url = format!("{}/api/rollouts/{id}", standby.base());
    let done = wait_until(Duration::from_secs(30), || async {
        let response = http
            .get(&status_url)
            .header(AUTHORIZATION, bearer())
            .send()
            .await;
        match response {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null)["status"] == "completed",
            Err(_) => false,
        }
    })
    .await;
    let (_, status) = get_json(&http, &status_url).await;
    assert!(done, "the new leader completes the rollout: {status:#}");
    let (_, entry) = get_json(&http, &format!("{}/api/config/roll/flag", standby.base())).await;
    assert_eq!(
        (entry["value"].clone(), entry["version"].clone()),
        (json!("new"), json!(2))
    );
}

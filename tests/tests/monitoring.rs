//! Monitoring, held to the binaries: `deploy/prometheus/alerts.yml` passes `promtool test rules`
//! on synthetic series; the live `/metrics` of a real writer (on a real etcd) and a real edge pass
//! `promtool check metrics`, and every metric name the alert rules and the Grafana dashboard
//! (`deploy/grafana/setpoint.json`) query is one of them — so neither can rot silently. The
//! writer's own alerts (`GET /api/alerts`, `--alert-webhook`) are checked against a webhook
//! receiver on a real socket: firing, retried after a refusal, resolved.
//!
//! `promtool` is Debian's `prometheus` package (`scripts/ensure-tools`); `SETPOINT_PROMTOOL_BIN`
//! names another. Without it these tests fail, never skip.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use setpoint_tests::binary::{Certs, SetpointProcess};
use setpoint_tests::etcd::EtcdServer;
use setpoint_tests::session::{Hello, Session};
use setpoint_tests::writer::{client_with_key, test_admin_key};
use setpoint_tests::{free_port, wait_until};

/// Generous for two loaded cores.
const PATIENCE: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn promtool() -> PathBuf {
    if let Some(bin) = std::env::var_os("SETPOINT_PROMTOOL_BIN") {
        return PathBuf::from(bin);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    found
        .expect("promtool is not installed: run scripts/ensure-tools (Debian's prometheus package)")
}

/// Runs promtool with `args` (and `stdin`), answering (success, stdout + stderr).
fn run_promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn promtool_checks_the_alert_rules_and_runs_their_tests() {
    let (ok, out) = run_promtool(&["check", "rules", "deploy/prometheus/alerts.yml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    let rules = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "rules")
        .and_then(|w| w[0].parse::<usize>().ok())
        .unwrap_or(0);
    assert!(rules >= 15, "every rule loads: {out}");
    let (ok, out) = run_promtool(
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
        None,
    );
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert rule of alerts.yml has a test in alerts_test.yml.
#[test]
fn every_alert_rule_is_tested() {
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let tests: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/prometheus/alerts_test.yml")).unwrap(),
    )
    .unwrap();
    let tested: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|t| t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|t| t["alertname"].as_str().unwrap())
        .collect();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(
                tested.contains(name),
                "{name} has no test that makes it fire"
            );
        }
    }
}

/// Metric names in PromQL text: `setpoint_…` identifiers.
fn queried_metrics(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while let Some(at) = promql[i..].find("setpoint_") {
        let start = i + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(promql[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The sample names of a text exposition (`_bucket`, `_sum`, `_count` included).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every PromQL expression of the dashboard (`targets[].expr`, rows' panels included).
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// A session of instance `id` in environment `prod`, watching `prefixes`.
fn prod<'a>(id: &'a str, prefixes: &'a [&'a str]) -> Hello<'a> {
    Hello {
        instance_id: id,
        env: Some("prod"),
        prefixes,
        labels: &[],
    }
}

async fn put(http: &reqwest::Client, base: &str, path: &str, value: Value) -> i64 {
    let response = http
        .put(format!("{base}/api/config{path}"))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "PUT {path}");
    let body: Value = response.json().await.unwrap();
    body["revision"].as_i64().unwrap()
}

async fn text(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    assert!(response.status().is_success(), "GET {url}");
    response.text().await.unwrap()
}

async fn alerts(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let body: Value = http
        .get(format!("{base}/api/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["alerts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn live_metrics_pass_promtool_and_hold_every_metric_the_rules_and_dashboard_query() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start();
    let certs = Certs::make(dir.path());
    let key_file = dir.path().join("admin.key");
    std::fs::write(&key_file, test_admin_key()).unwrap();
    let writer_addr = format!("127.0.0.1:{}", free_port());
    let mut writer_args: Vec<String> = vec![
        "writer".into(),
        "--store".into(),
        format!("etcd://{}", etcd.endpoint()),
        "--replication-listen".into(),
        writer_addr.clone(),
        "--admin-key-file".into(),
        key_file.to_str().unwrap().into(),
        "--alert-edge-grace".into(),
        "1s".into(),
        "--alert-interval".into(),
        "200ms".into(),
    ];
    writer_args.extend(certs.args("writer"));
    let args: Vec<&str> = writer_args.iter().map(String::as_str).collect();
    let writer = SetpointProcess::start_on(&args, &writer_addr, dir.path()).await;
    let edge_addr = format!("127.0.0.1:{}", free_port());
    let mut edge_args: Vec<String> = vec![
        "edge".into(),
        "--id".into(),
        "edge-mon".into(),
        "--writer".into(),
        writer_addr.clone(),
        "--data-dir".into(),
        dir.path().join("edge").to_str().unwrap().into(),
    ];
    edge_args.extend(certs.args("edge"));
    let args: Vec<&str> = edge_args.iter().map(String::as_str).collect();
    let edge = SetpointProcess::start_on(&args, &edge_addr, dir.path()).await;
    let (wbase, ebase) = (writer.base(), edge.base());
    let http = client_with_key(&test_admin_key());
    let key = test_admin_key();

    // What makes every labelled metric appear: a commit the edge acknowledges, a client session
    // that applies one change and refuses another, refused keys on both, an audit verification.
    let first = put(&http, &wbase, "/mon/db/host", json!("db1")).await;
    let mut session = Session::open(&ebase, prod("mon-app-1", &["/mon"]), Some(&key)).await;
    let synced = session.sync_to(first).await;
    session.receipt(synced, None).await;
    let revision = put(&http, &wbase, "/mon/db/host", json!("db2")).await;
    let update = session.update().await;
    assert_eq!(update.revision, revision);
    session
        .receipt(revision, Some(("/mon/db/host", "pool refused it")))
        .await;
    let stranger = reqwest::Client::new();
    for base in [&wbase, &ebase] {
        let refused = stranger
            .get(format!("{base}/api/config/mon/db/host"))
            .bearer_auth("spk_nobody_nothing")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }
    let verify: Value = http
        .get(format!("{wbase}/api/audit/verify"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["ok"], true, "{verify}");

    let exprs: Vec<String> = {
        let dashboard: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("deploy/grafana/setpoint.json")).unwrap(),
        )
        .unwrap();
        dashboard_exprs(&dashboard)
    };
    assert!(exprs.len() >= 20, "the dashboard has its panels' queries");
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut wanted: BTreeSet<String> = exprs.iter().flat_map(|e| queried_metrics(e)).collect();
    let from_rules = queried_metrics(&rules);
    assert!(from_rules.len() >= 15, "{from_rules:?}");
    wanted.extend(from_rules);

    // The edge reports its clients every second or so; the writer folds them in.
    let missing = Mutex::new(BTreeSet::new());
    let complete = wait_until(PATIENCE, || async {
        let mut have = exported(&text(&http, &format!("{wbase}/metrics")).await);
        have.extend(exported(&text(&http, &format!("{ebase}/metrics")).await));
        let gap: BTreeSet<String> = wanted.difference(&have).cloned().collect();
        let done = gap.is_empty();
        *missing.lock().unwrap() = gap;
        done
    })
    .await;
    assert!(
        complete,
        "queried by the rules or the dashboard but exported by neither binary: {:?}",
        missing.lock().unwrap()
    );

    for (who, url) in [("writer", &wbase), ("edge", &ebase)] {
        let metrics = text(&http, &format!("{url}/metrics")).await;
        let (ok, out) = run_promtool(&["check", "metrics"], Some(&metrics));
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics on the {who}:\n{out}"
        );
    }

    // The writer's own rules: the edge's link ends → EdgeDisconnected past the grace, with its
    // gauge at 0; the client it served is disconnected with it.
    edge.kill();
    let fired = wait_until(PATIENCE, || async {
        alerts(&http, &wbase)
            .await
            .iter()
            .any(|a| a["name"] == "EdgeDisconnected" && a["edges"] == json!(["edge-mon"]))
    })
    .await;
    assert!(
        fired,
        "EdgeDisconnected fires: {:?}",
        alerts(&http, &wbase).await
    );
    let metrics = text(&http, &format!("{wbase}/metrics")).await;
    assert!(
        metrics.contains("setpoint_replication_edge_connected{edge=\"edge-mon\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("setpoint_alerts_firing{alert=\"EdgeDisconnected\"} 1"));
    assert!(metrics.contains(
        "setpoint_fleet_clients{edge=\"edge-mon\",env=\"prod\",status=\"disconnected\"} 1"
    ));
    writer.kill();
}

/// What the receiver got: (status, body) per request, refusing the first `refuse` with a 503.
#[derive(Default)]
struct Received {
    requests: Vec<Value>,
    refuse: usize,
}

/// A webhook receiver on a real socket (HTTP/1.1, one request per connection is enough for
/// reqwest's pool too: it answers `Connection: close`).
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (url, serve(listener, None))
}

/// A session `id` watching `/shop` on `base`, its first update acknowledged, once the writer
/// lists it as connected.
async fn listed_session(http: &reqwest::Client, base: &str, id: &str, since: i64) -> Session {
    let mut session = Session::open(base, prod(id, &["/shop"]), None).await;
    let synced = session.sync_to(since).await;
    session.receipt(synced, None).await;
    let listed = wait_until(PATIENCE, || async {
        let body: Value = http
            .get(format!("{base}/api/clients/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        body["status"] == "connected"
    })
    .await;
    assert!(listed, "the session reaches the writer");
    session
}

/// The same receiver over https, its certificate (for `127.0.0.1`) issued by the CA of
/// `setpoint certs` in `dir`: the URL and the CA's PEM file.
async fn tls_receiver(dir: &std::path::Path) -> (String, Arc<Mutex<Received>>, std::path::PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    setpoint_tests::binary::Certs::make(dir);
    let certs = dir.join("certs");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("writer.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("writer.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    (url, serve(listener, Some(acceptor)), certs.join("ca.pem"))
}

/// Accepts connections (TLS first, with `tls`) and records each request's JSON body.
fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Arc<Mutex<Received>> {
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => answer(socket, state).await,
                    Some(acceptor) => {
                        if let Ok(socket) = acceptor.accept(socket).await {
                            answer(socket, state).await;
                        }
                    }
                }
            });
        }
    });
    received
}

/// Reads one request (head, then exactly Content-Length bytes of body), records its body and
/// answers 503 while refusals are left, else 200.
async fn answer<S>(mut socket: S, state: Arc<Mutex<Received>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            break buffer[end + 4..end + 4 + length].to_vec();
        }
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = {
        let mut state = state.lock().unwrap();
        state.requests.push(value);
        if state.refuse > 0 {
            state.refuse -= 1;
            "503 Service Unavailable"
        } else {
            "200 OK"
        }
    };
    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Real receivers speak https: `--alert-webhook https://…` with `--alert-webhook-ca-cert`
/// (a private CA) delivers over TLS; a writer without the CA never delivers to that receiver
/// (its certificate is refused) and counts the failure.
#[tokio::test]
async fn the_webhook_speaks_https_verified_against_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (url, received, ca) = tls_receiver(dir.path()).await;
    let start = |name: &str, ca: Option<&std::path::Path>| {
        let data = dir.path().join(name);
        let mut args: Vec<String> = [
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--alert-webhook",
            &url,
            "--alert-client-gone",
            "1s",
            "--alert-interval",
            "200ms",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(ca) = ca {
            args.extend([
                "--alert-webhook-ca-cert".to_owned(),
                ca.to_str().unwrap().to_owned(),
            ]);
        }
        let log = dir.path().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            SetpointProcess::start(&args, &log).await
        }
    };
    // A client comes and goes: ClientDisconnected fires and is sent to the webhook.
    let fire = |base: String| async move {
        let http = reqwest::Client::new();
        let written = put(&http, &base, "/shop/flags", json!({"on": false})).await;
        let session = listed_session(&http, &base, "shop-1", written).await;
        drop(session);
        let fired = wait_until(PATIENCE, || async {
            alerts(&http, &base)
                .await
                .iter()
                .any(|a| a["name"] == "ClientDisconnected")
        })
        .await;
        assert!(fired, "ClientDisconnected fires");
    };

    let untrusting = start("untrusting", None).await;
    fire(untrusting.base()).await;
    let http = reqwest::Client::new();
    let failed = wait_until(PATIENCE, || async {
        let metrics = http
            .get(format!("{}/metrics", untrusting.base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics.lines().any(|l| {
            l.starts_with("setpoint_alert_notifications_total{outcome=\"failed\"}")
                && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(failed, "without the CA the delivery fails and is counted");
    assert!(
        received.lock().unwrap().requests.is_empty(),
        "nothing reached the receiver past the TLS handshake"
    );
    drop(untrusting);

    let trusting = start("trusting", Some(&ca)).await;
    fire(trusting.base()).await;
    let delivered = wait_until(PATIENCE, || async {
        received
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r["status"] == "firing" && r["alert"]["name"] == "ClientDisconnected")
    })
    .await;
    assert!(delivered, "the firing alert arrives over https");
}

#[tokio::test]
async fn a_client_gone_past_the_grace_fires_to_the_webhook_with_retries_and_resolves_on_return() {
    let (url, received) = receiver().await;
    // The first delivery is refused: the notification must come again.
    received.lock().unwrap().refuse = 1;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev = SetpointProcess::start(
        &[
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--alert-webhook",
            &url,
            "--alert-client-gone",
            "1s",
            "--alert-interval",
            "200ms",
        ],
        dir.path(),
    )
    .await;
    let base = dev.base();
    let http = reqwest::Client::new();
    let written = put(&http, &base, "/shop/flags", json!({"new_cart": false})).await;

    let session = listed_session(&http, &base, "shop-1", written).await;
    assert!(
        alerts(&http, &base).await.is_empty(),
        "nothing fires while it is connected"
    );

    drop(session);
    let fired = wait_until(PATIENCE, || async {
        alerts(&http, &base)
            .await
            .iter()
            .any(|a| a["name"] == "ClientDisconnected" && a["clients"] == json!(["shop-1"]))
    })
    .await;
    assert!(
        fired,
        "ClientDisconnected fires once the client is gone past 1 s"
    );
    let alert = alerts(&http, &base)
        .await
        .into_iter()
        .find(|a| a["name"] == "ClientDisconnected")
        .unwrap();
    assert_eq!(alert["key"], "dev-edge");
    assert_eq!(alert["edges"], json!(["dev-edge"]));
    assert_eq!(alert["clients_total"], 1);
    assert!(alert["since"].as_str().unwrap().starts_with("20"));
    assert!(alert["summary"].as_str().unwrap().contains("disconnected"));

    // Refused once, delivered on the retry: the same firing notification twice.
    let delivered = wait_until(PATIENCE, || async {
        received.lock().unwrap().requests.len() >= 2
    })
    .await;
    assert!(delivered, "the webhook is retried after a 503");
    {
        let got = received.lock().unwrap();
        assert_eq!(
            got.requests[0], got.requests[1],
            "the retry sends the same body"
        );
        let first = &got.requests[0];
        assert_eq!(first["status"], "firing");
        assert_eq!(first["alert"]["name"], "ClientDisconnected");
        assert_eq!(first["alert"]["clients"], json!(["shop-1"]));
        assert!(first["writer"].as_str().is_some_and(|w| !w.is_empty()));
    }

    // The instance comes back: the alert resolves, and the webhook hears it.
    let mut back = Session::open(&base, prod("shop-1", &["/shop"]), None).await;
    let synced = back.sync_to(0).await;
    back.receipt(synced, None).await;
    let resolved = wait_until(PATIENCE, || async {
        received
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r["status"] == "resolved" && r["alert"]["name"] == "ClientDisconnected")
    })
    .await;
    assert!(
        resolved,
        "a resolved notification follows the client's return"
    );
    assert!(alerts(&http, &base).await.is_empty());
    let requests = received.lock().unwrap().requests.clone();
    let resolved = requests.iter().find(|r| r["status"] == "resolved").unwrap();
    assert!(resolved["resolved_at"].as_str().unwrap().starts_with("20"));
    let statuses: Vec<&str> = requests
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["firing", "firing", "resolved"],
        "in order, once each"
    );
    let metrics = text(&http, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains("setpoint_alert_notifications_total{outcome=\"delivered\"} 2"),
        "{metrics}"
    );
}

/// The fleet's gauges follow the fleet: a count that falls to 0 reads 0 while the client is
/// listed, and its series go once the client is forgotten (never a stale count, and never a
/// moment with no series while it is counted — the rules' `for:` would restart).
#[tokio::test]
async fn fleet_gauges_read_zero_while_listed_and_go_when_the_client_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev = SetpointProcess::start(
        &[
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--client-retention",
            "2s",
        ],
        dir.path(),
    )
    .await;
    let base = dev.base();
    let http = reqwest::Client::new();
    let written = put(&http, &base, "/gauge/a", json!(1)).await;
    let connected = "setpoint_fleet_clients{edge=\"dev-edge\",env=\"prod\",status=\"connected\"}";
    let disconnected =
        "setpoint_fleet_clients{edge=\"dev-edge\",env=\"prod\",status=\"disconnected\"}";
    let prefix = "setpoint_fleet_prefix_clients{prefix=\"/gauge\"}";
    let metrics = || async { text(&http, &format!("{base}/metrics")).await };

    let mut session = Session::open(&base, prod("gauge-1", &["/gauge"]), None).await;
    let synced = session.sync_to(written).await;
    session.receipt(synced, None).await;
    let counted = wait_until(PATIENCE, || async {
        let m = metrics().await;
        m.contains(&format!("{connected} 1"))
            && m.contains(&format!("{disconnected} 0"))
            && m.contains(&format!("{prefix} 1"))
    })
    .await;
    assert!(counted, "{}", metrics().await);

    drop(session);
    let fell = wait_until(PATIENCE, || async {
        let m = metrics().await;
        m.contains(&format!("{connected} 0")) && m.contains(&format!("{disconnected} 1"))
    })
    .await;
    assert!(fell, "{}", metrics().await);

    // Past the retention a listing prunes it: its series go.
    let forgotten = wait_until(PATIENCE, || async {
        let listed: Value = http
            .get(format!("{base}/api/clients"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = metrics().await;
        listed.as_array().is_some_and(Vec::is_empty)
            && !m.contains("setpoint_fleet_clients{")
            && !m.contains("setpoint_fleet_prefix_clients{")
    })
    .await;
    assert!(forgotten, "{}", metrics().await);
}

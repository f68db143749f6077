//! The SDK conformance runner: the scenarios of `tests/conformance/scenarios/*.json`, written
//! once, run against every SDK's driver (see `tests/conformance/README.md`) on real servers.
//!
//! A scenario is a list of steps. Server steps change the configs over REST or stop and start
//! processes; client steps send the driver a command; `expect_*` steps check what the SDK saw
//! (answers, callback events, staleness) or what the writer's `/api/clients` says about it.
//! A failing step panics with the scenario, the step, the driver's stderr and the server logs.

pub mod cluster;
pub mod driver;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use cluster::{Cluster, Mode};
use driver::{Driver, Launch};

/// The repository root (the workspace of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The SDKs, by the name their folder under `sdk/` has.
pub const SDKS: [&str; 4] = ["rust", "go", "python", "node"];

/// How to start `sdk`'s driver: `sdk/<sdk>/conformance-driver`, prepared (built, installed) once
/// per test process with `--prepare`. A driver that cannot be prepared fails the test.
pub fn launch(sdk: &'static str) -> Launch {
    static PREPARED: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let program = repo_root().join("sdk").join(sdk).join("conformance-driver");
    assert!(
        program.exists(),
        "{} is missing: every SDK ships its conformance driver launcher",
        program.display()
    );
    let prepared = PREPARED.get_or_init(|| Mutex::new(Vec::new()));
    let mut prepared = prepared.lock().unwrap_or_else(|e| e.into_inner());
    if !prepared.contains(&sdk) {
        let output = std::process::Command::new(&program)
            .arg("--prepare")
            .current_dir(repo_root())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --prepare: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} --prepare failed:\n{}\n{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        prepared.push(sdk);
    }
    Launch {
        sdk,
        program,
        args: Vec::new(),
    }
}

/// Every scenario file, by name.
pub fn scenarios() -> Vec<(String, Value)> {
    let dir = repo_root().join("tests/conformance/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read a scenario");
            let scenario: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, scenario)
        })
        .collect()
}

/// Runs every scenario meant for `mode` against `sdk`; returns what each measured (the
/// propagation lines).
pub async fn run_all(sdk: &'static str, mode: Mode) -> Vec<String> {
    let launch = launch(sdk);
    let mut report = Vec::new();
    // For working on some scenarios: SETPOINT_CONFORMANCE_ONLY=03,07 runs the scenarios whose
    // names contain one of those.
    let only = std::env::var("SETPOINT_CONFORMANCE_ONLY").ok();
    for (name, scenario) in scenarios() {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|part| name.contains(part)))
        {
            continue;
        }
        let modes = scenario["modes"].as_array();
        if modes.is_some_and(|m| !m.iter().any(|x| x == mode.name())) {
            continue;
        }
        let started = std::time::Instant::now();
        let measured = run_scenario(&launch, mode, &name, &scenario).await;
        eprintln!(
            "conformance {sdk}/{}: {name} passed in {:.1} s",
            mode.name(),
            started.elapsed().as_secs_f64()
        );
        report.extend(measured);
    }
    report
}

struct Run<'a> {
    launch: &'a Launch,
    mode: Mode,
    scenario: &'a str,
    cluster: Cluster,
    driver: Driver,
    dir: PathBuf,
    http: reqwest::Client,
    measured: Vec<String>,
    /// The revision of the last write this scenario made.
    written: i64,
    /// The id of the last rollout this scenario started.
    rollout: Option<String>,
}

async fn run_scenario(launch: &Launch, mode: Mode, name: &str, scenario: &Value) -> Vec<String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("setpoint-conformance-{}-", launch.sdk))
        .tempdir()
        .expect("a scenario directory");
    let cluster = Cluster::start(mode, dir.path()).await;
    let http = match cluster.token() {
        Some(token) => crate::writer::client_with_key(&token),
        None => reqwest::Client::new(),
    };
    let driver = Driver::start(launch, dir.path());
    let mut run = Run {
        launch,
        mode,
        scenario: name,
        cluster,
        driver,
        dir: dir.path().to_path_buf(),
        http,
        measured: Vec::new(),
        written: 0,
        rollout: None,
    };
    let steps = scenario["steps"].as_array().cloned().unwrap_or_default();
    for (index, step) in steps.iter().enumerate() {
        let outcome = tokio::time::timeout(Duration::from_secs(120), run.step(step)).await;
        if let Err(failure) = outcome
            .map_err(|_| "the step took over 120 s".to_owned())
            .and_then(|r| r)
        {
            panic!(
                "conformance {}/{}: scenario {name}, step {index} {step}: {failure}\n\
                 --- driver stderr\n{}\n--- servers\n{}",
                launch.sdk,
                mode.name(),
                run.driver.log_text(),
                run.cluster.logs()
            );
        }
    }
    let Run {
        driver,
        cluster,
        measured,
        ..
    } = run;
    driver.stop().await;
    cluster.shutdown();
    measured
}

/// `a.b.c` in `value`.
fn dotted<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(value, |v, key| &v[key])
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Whether `event` has every field `expected` names (`watch` is the event's `watch_id`).
fn event_matches(event: &Value, expected: &Value) -> bool {
    let Some(fields) = expected.as_object() else {
        return false;
    };
    fields.iter().all(|(key, want)| {
        let key = if key == "watch" {
            "watch_id"
        } else {
            key.as_str()
        };
        match key {
            "deleted" => event[key].as_bool().unwrap_or(false) == want.as_bool().unwrap_or(false),
            _ => &event[key] == want,
        }
    })
}

impl Run<'_> {
    fn within(step: &Value, default_ms: u64) -> tokio::time::Instant {
        let ms = step["within_ms"].as_u64().unwrap_or(default_ms);
        tokio::time::Instant::now() + Duration::from_millis(ms)
    }

    /// Waits until the edge holds the scenario's last write: a client opened after that sees
    /// it in its first state, not as a change.
    async fn edge_caught_up(&self) -> Result<(), String> {
        let url = self.cluster.edge_health_url();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let health: Value = match self.http.get(&url).send().await {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if health["revision"]
                .as_i64()
                .is_some_and(|r| r >= self.written)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the edge did not reach revision {} within 10 s: {health}",
                    self.written
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn rest(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.cluster.writer_base());
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{method} {path} answered {status}: {body}"));
        }
        if let Some(revision) = body["revision"].as_i64() {
            self.written = self.written.max(revision);
        }
        Ok(body)
    }

    async fn step(&mut self, step: &Value) -> Result<(), String> {
        use reqwest::Method;
        if let Some(path) = step["put"].as_str() {
            let body = json!({ "value": step["value"] });
            self.rest(Method::PUT, &format!("/api/config{path}"), Some(body))
                .await?;
        } else if let Some(path) = step["delete"].as_str() {
            self.rest(Method::DELETE, &format!("/api/config{path}"), None)
                .await?;
        } else if let Some(changes) = step.get("batch") {
            self.rest(
                Method::POST,
                "/api/batch",
                Some(json!({ "changes": changes })),
            )
            .await?;
        } else if let Some(name) = step["environment"].as_str() {
            let path = format!("/api/environments/{name}");
            self.rest(Method::PUT, &path, Some(step["body"].clone()))
                .await?;
        } else if let Some(path) = step["rollout"].as_str() {
            let body = self
                .rest(
                    Method::POST,
                    &format!("/api/config{path}/rollout"),
                    Some(step["body"].clone()),
                )
                .await?;
            let id = body["rollout_id"].as_str().ok_or("no rollout_id")?;
            self.rollout = Some(id.to_owned());
        } else if let Some(action) = step["rollout_action"].as_str() {
            let id = self.rollout.clone().ok_or("no rollout started yet")?;
            self.rest(Method::POST, &format!("/api/rollouts/{id}/{action}"), None)
                .await?;
        } else if let Some(fields) = step.get("expect_rollout") {
            let id = self.rollout.clone().ok_or("no rollout started yet")?;
            let deadline = Run::within(step, 10_000);
            let url = format!("/api/rollouts/{id}");
            loop {
                let rollout = self.rest(Method::GET, &url, None).await?;
                let all = fields
                    .as_object()
                    .is_some_and(|f| f.iter().all(|(k, v)| dotted(&rollout, k) == v));
                if all {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("{url} is {rollout}, expected {fields}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else if let Some(open) = step.get("open") {
            self.open(open).await?;
        } else if step.get("wait_ready").is_some() {
            let command = json!({"cmd": "wait_ready", "timeout_ms": step["wait_ready"]});
            let answer = self.driver.call(command).await;
            self.expect_answer(&answer, step["error"].as_str())?;
        } else if let Some(prefix) = step["watch"].as_str() {
            let fail = step.get("fail_paths").cloned().unwrap_or(json!([]));
            let command = json!({"cmd": "watch", "watch_id": step["id"], "prefix": prefix, "fail_paths": fail});
            self.driver.ok(command).await;
        } else if let Some(id) = step["unwatch"].as_str() {
            self.driver
                .ok(json!({"cmd": "unwatch", "watch_id": id}))
                .await;
        } else if step.get("close").is_some() {
            self.driver.ok(json!({"cmd": "close"})).await;
        } else if let Some(path) = step["expect_get"].as_str() {
            // With `within_ms`, asks again until the answer is the expected one.
            let deadline = Run::within(step, 0);
            loop {
                let answer = self.driver.call(json!({"cmd": "get", "path": path})).await;
                let checked = self
                    .expect_answer(&answer, step["error"].as_str())
                    .and_then(|()| {
                        for field in ["value", "version"] {
                            if step.get(field).is_some() && answer[field] != step[field] {
                                return Err(format!(
                                    "get {path} gave {answer}, expected {field} {}",
                                    step[field]
                                ));
                            }
                        }
                        Ok(())
                    });
                match checked {
                    Ok(()) => break,
                    Err(failure) if tokio::time::Instant::now() >= deadline => return Err(failure),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        } else if let Some(expected) = step["expect_events"].as_array() {
            self.expect_events(expected, step).await?;
        } else if let Some(ms) = step["expect_no_events"].as_u64() {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
            if let Some(event) = self.driver.next_event(deadline).await {
                return Err(format!("an unexpected callback: {event}"));
            }
        } else if let Some(stale) = step["expect_stale"].as_bool() {
            let deadline = Run::within(step, 0);
            loop {
                let answer = self.driver.ok(json!({"cmd": "is_stale"})).await;
                if answer["stale"].as_bool() == Some(stale) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("is_stale answered {answer}, expected {stale}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else if let Some(id) = step["expect_client"].as_str() {
            self.expect_client(id, &step["fields"], Run::within(step, 10_000))
                .await?;
        } else if step.get("kill_edge").is_some() {
            self.cluster.kill_edge();
        } else if let Some(start) = step.get("start_edge") {
            self.cluster
                .start_edge(start["fresh"].as_bool().unwrap_or(false))
                .await;
        } else if step.get("stop_writer").is_some() {
            self.cluster.stop_writer();
        } else if step.get("start_writer").is_some() {
            self.cluster.start_writer().await;
        } else if step.get("stop_all").is_some() {
            self.cluster.stop_all();
        } else if step.get("restart_driver").is_some() {
            let fresh = Driver::start(self.launch, &self.dir);
            std::mem::replace(&mut self.driver, fresh).stop().await;
        } else if let Some(auth) = step.get("expect_auth_failures") {
            let during = auth["during_ms"].as_u64().unwrap_or(3000);
            tokio::time::sleep(Duration::from_millis(during)).await;
            let failures = self.auth_failures().await?;
            let at_most = auth["at_most"].as_f64().unwrap_or(3.0);
            if failures > at_most {
                return Err(format!(
                    "the edge counted {failures} refused authentications: a retry storm (at most {at_most})"
                ));
            }
        } else if let Some(propagation) = step.get("propagation") {
            self.propagation(propagation).await?;
        } else {
            return Err("unknown step".into());
        }
        Ok(())
    }

    async fn open(&mut self, open: &Value) -> Result<(), String> {
        // A scenario that stopped its servers opens from the cache file alone.
        if open["cache"].as_bool() != Some(true) || self.cluster.is_up() {
            self.edge_caught_up().await?;
        }
        let token = match open.get("token") {
            Some(token) => token.clone(),
            None => self.cluster.token().map_or(Value::Null, Value::String),
        };
        let cache = open["cache"]
            .as_bool()
            .unwrap_or(false)
            .then(|| self.dir.join("setpoint-cache.json"));
        let command = json!({
            "cmd": "open",
            "address": self.cluster.edge_addr(),
            "env": open.get("env").cloned().unwrap_or(Value::Null),
            "prefixes": open.get("prefixes").cloned().unwrap_or(json!(["/"])),
            "cache_path": cache.map(|p| p.to_string_lossy().into_owned()),
            "instance_id": open["instance_id"],
            "token": token,
            "labels": open.get("labels").cloned().unwrap_or(json!({})),
        });
        self.driver.ok(command).await;
        Ok(())
    }

    fn expect_answer(&self, answer: &Value, error: Option<&str>) -> Result<(), String> {
        match error {
            None if answer["ok"] == json!(true) => Ok(()),
            None => Err(format!("answered {answer}, expected ok")),
            Some(kind) if answer["ok"] == json!(false) && answer["error"]["kind"] == kind => Ok(()),
            Some(kind) => Err(format!("answered {answer}, expected the error {kind}")),
        }
    }

    async fn expect_events(&mut self, expected: &[Value], step: &Value) -> Result<(), String> {
        let deadline = Run::within(step, 5_000);
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            match self.driver.next_event(deadline).await {
                Some(event) => seen.push(event),
                None => {
                    return Err(format!(
                        "saw {} of {} callbacks in time: {seen:?}",
                        seen.len(),
                        expected.len()
                    ));
                }
            }
        }
        if step["any_order"].as_bool().unwrap_or(false) {
            let mut left: Vec<&Value> = seen.iter().collect();
            for want in expected {
                let Some(at) = left.iter().position(|e| event_matches(e, want)) else {
                    return Err(format!("no callback matches {want}; saw {seen:?}"));
                };
                left.remove(at);
            }
        } else {
            for (got, want) in seen.iter().zip(expected) {
                if !event_matches(got, want) {
                    return Err(format!(
                        "callback {got} does not match {want}; all: {seen:?}"
                    ));
                }
            }
        }
        if step["same_revision"].as_bool().unwrap_or(false)
            && seen.iter().any(|e| e["revision"] != seen[0]["revision"])
        {
            return Err(format!(
                "the callbacks of one commit carry different revisions: {seen:?}"
            ));
        }
        let revisions: Vec<i64> = seen.iter().filter_map(|e| e["revision"].as_i64()).collect();
        let ordered = revisions.windows(2).all(|w| w[0] <= w[1]);
        if !ordered && !step["any_order"].as_bool().unwrap_or(false) {
            return Err(format!("callbacks out of revision order: {seen:?}"));
        }
        Ok(())
    }

    async fn expect_client(
        &mut self,
        id: &str,
        fields: &Value,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        let url = format!("/api/clients/{id}");
        let mut last = Value::Null;
        loop {
            if let Ok(client) = self.rest(reqwest::Method::GET, &url, None).await {
                let all = fields
                    .as_object()
                    .is_some_and(|f| f.iter().all(|(k, v)| dotted(&client, k) == v));
                if all {
                    return Ok(());
                }
                last = client;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("/api/clients/{id} is {last}, expected {fields}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn auth_failures(&self) -> Result<f64, String> {
        let text = self
            .http
            .get(self.cluster.edge_metrics_url())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("setpoint_edge_auth_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// PUT → callback, measured per write from just before the PUT to the callback's clock (one
    /// machine, one clock).
    async fn propagation(&mut self, spec: &Value) -> Result<(), String> {
        let path = spec["path"].as_str().unwrap_or("/prop/x").to_owned();
        let writes = spec["writes"].as_u64().unwrap_or(20);
        let max_ms = spec["max_ms"].as_f64().unwrap_or(1000.0);
        let mut latencies = Vec::new();
        for i in 0..writes {
            let value = json!(format!("v{i}"));
            let sent = unix_ms();
            self.rest(
                reqwest::Method::PUT,
                &format!("/api/config{path}"),
                Some(json!({ "value": value })),
            )
            .await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let Some(event) = self.driver.next_event(deadline).await else {
                    return Err(format!("no callback for write {i} of {path} within 5 s"));
                };
                if event["path"] == path && event["value"] == value {
                    let at = event["at_ms"].as_f64().ok_or("a callback without at_ms")?;
                    latencies.push(at - sent);
                    break;
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        let p50 = latencies[latencies.len() / 2];
        let max = latencies[latencies.len() - 1];
        let line = format!(
            "conformance {}/{}: PUT → callback over {writes} writes: p50 {p50:.1} ms, max {max:.1} ms",
            self.launch.sdk,
            self.mode.name()
        );
        eprintln!("{line}");
        self.measured.push(line);
        if max > max_ms {
            return Err(format!(
                "propagation {max:.1} ms is over {max_ms} ms ({})",
                self.scenario
            ));
        }
        Ok(())
    }
}

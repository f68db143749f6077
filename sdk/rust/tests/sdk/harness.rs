//! Test harness: a real `setpoint dev` on a free loopback port (binary from `SETPOINT_BIN`, else
//! `<repo>/target/debug/setpoint`; a missing binary fails the test, never skips it), its REST
//! API for the server-side steps, an event recorder, and `wait_until` instead of sleeps.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use setpoint_sdk::Event;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub fn binary() -> PathBuf {
    let path = match std::env::var_os("SETPOINT_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/setpoint"),
    };
    assert!(
        path.is_file(),
        "no setpoint binary at {} (set SETPOINT_BIN or run `cargo build -p setpoint-cli`)",
        path.display()
    );
    path
}

/// A running `setpoint dev`. Killed (by its own PID, via the child handle) when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    pub async fn start() -> Server {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Server::start_on(free_port(), data_dir).await
    }

    /// Starts on `port` with `data_dir` (a restart keeps both).
    pub async fn start_on(port: u16, data_dir: tempfile::TempDir) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(binary())
            .args([
                "dev",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn setpoint dev");
        let server = Server {
            child: Some(child),
            port,
            data_dir,
            http: reqwest::Client::new(),
        };
        let ready = format!("{}/readyz", server.base());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = server.http.get(&ready).send().await
                && response.status().is_success()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "setpoint dev not ready: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILLs the server and hands back its data dir for a restart.
    pub fn kill(mut self) -> (u16, tempfile::TempDir) {
        self.stop_child();
        let port = self.port;
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        (port, dir)
    }

    fn stop_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Json {
        let response = request.send().await.expect("REST call");
        let status = response.status();
        let body: Json = response.json().await.unwrap_or(Json::Null);
        assert!(status.is_success(), "REST call answered {status}: {body}");
        body
    }

    /// PUT a value; returns the commit's revision.
    pub async fn put(&self, path: &str, value: Json) -> i64 {
        let url = format!("{}/api/config{path}", self.base());
        let body = self
            .send(self.http.put(url).json(&json!({"value": value})))
            .await;
        let revision = body["revision"]
            .as_i64()
            .expect("revision in the PUT answer");
        self.edge_reaches(revision).await;
        revision
    }

    /// Waits until the edge has applied `revision`: the writer acknowledges a commit a moment
    /// before its edge applies it, and the SDK reads from the edge.
    pub async fn edge_reaches(&self, revision: i64) {
        let url = format!("{}/edge/healthz", self.base());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reached = match self.http.get(&url).send().await {
                Ok(response) => response
                    .json::<Json>()
                    .await
                    .is_ok_and(|body| body["revision"].as_i64().unwrap_or(0) >= revision),
                Err(_) => false,
            };
            if reached {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the edge did not apply revision {revision} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn delete(&self, path: &str) -> i64 {
        let url = format!("{}/api/config{path}", self.base());
        let body = self.send(self.http.delete(url)).await;
        let revision = body["revision"].as_i64().unwrap_or_default();
        self.edge_reaches(revision).await;
        revision
    }

    /// POST /api/batch with `changes`; returns the batch's revision.
    pub async fn batch(&self, changes: Json) -> i64 {
        let url = format!("{}/api/batch", self.base());
        let body = self
            .send(self.http.post(url).json(&json!({"changes": changes})))
            .await;
        let revision = body["revision"]
            .as_i64()
            .expect("revision in the batch answer");
        self.edge_reaches(revision).await;
        revision
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process, by its PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The writer's registry entry of the session with instance id `id`.
    pub async fn client(&self, id: &str) -> Option<Json> {
        let clients = self.clients().await;
        clients.as_array()?.iter().find(|c| c["id"] == id).cloned()
    }

    /// PUT /api/environments/{name} with `body` (parent, variables).
    pub async fn put_environment(&self, name: &str, body: Json) {
        let url = format!("{}/api/environments/{name}", self.base());
        self.send(self.http.put(url).json(&body)).await;
    }

    /// GET /api/clients: the writer's view of every session.
    pub async fn clients(&self) -> Json {
        let url = format!("{}/api/clients", self.base());
        let response = self.http.get(url).send().await.expect("GET /api/clients");
        response.json().await.unwrap_or(Json::Null)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_child();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 10 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`], for checks that need I/O (the REST API).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects the events a watch callback receives.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub fn push(&self, event: &Event) {
        self.0.lock().expect("recorder").push(event.clone());
    }

    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("recorder").clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.path).collect()
    }

    /// Waits until an event for `path` arrived and returns the last one.
    pub async fn wait_for(&self, path: &str) -> Event {
        wait_until(
            &format!("an event for {path}"),
            Duration::from_secs(10),
            || self.events().iter().any(|e| e.path == path),
        )
        .await;
        self.events()
            .into_iter()
            .rev()
            .find(|e| e.path == path)
            .expect("just seen")
    }
}

//! The Rust SDK's conformance driver: speaks the line protocol of `tests/conformance/README.md`
//! on stdin/stdout so the orchestrator can run the shared scenarios against this SDK. One JSON
//! command per input line, exactly one answer line per command (same `seq`), plus one
//! asynchronous line per callback invocation. Stdout carries only protocol lines; logs go to
//! stderr (`RUST_LOG`). Exits when stdin closes.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use serde_json::{Value as Json, json};
use setpoint_sdk::{Client, Error, Event, Options, WatchHandle};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A command failed: its protocol error kind and message.
struct Failure {
    kind: &'static str,
    message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        kind: "invalid",
        message: message.into(),
    }
}

#[derive(Default)]
struct Driver {
    client: Option<Client>,
    watches: HashMap<String, WatchHandle>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut driver = Driver::default();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error) => {
                eprintln!("stdin: {error}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (seq, outcome) = match serde_json::from_str::<Json>(&line) {
            Ok(command) => (
                command.get("seq").cloned().unwrap_or(Json::Null),
                driver.run(&command).await,
            ),
            Err(error) => (Json::Null, Err(invalid(format!("not JSON: {error}")))),
        };
        let answer = match outcome {
            Ok(Json::Object(mut fields)) => {
                fields.insert("seq".into(), seq);
                fields.insert("ok".into(), Json::Bool(true));
                Json::Object(fields)
            }
            Ok(_) => json!({"seq": seq, "ok": true}),
            Err(failure) => json!({"seq": seq, "ok": false,
                                   "error": {"kind": failure.kind, "message": failure.message}}),
        };
        emit(&answer);
    }
    if let Some(client) = driver.client.take() {
        driver.watches.clear();
        client.close().await;
    }
}

impl Driver {
    async fn run(&mut self, command: &Json) -> Result<Json, Failure> {
        let cmd = command
            .get("cmd")
            .and_then(Json::as_str)
            .unwrap_or_default();
        match cmd {
            "open" => self.open(command),
            "wait_ready" => {
                let millis = command
                    .get("timeout_ms")
                    .and_then(Json::as_u64)
                    .unwrap_or(5000);
                self.client()?
                    .wait_ready(Duration::from_millis(millis))
                    .await?;
                Ok(json!({}))
            }
            "get" => {
                let value = self.client()?.get(string(command, "path")?)?;
                Ok(json!({"value": value.value, "version": value.version}))
            }
            "watch" => self.watch(command),
            "unwatch" => {
                let id = string(command, "watch_id")?;
                match self.watches.remove(id) {
                    Some(handle) => {
                        handle.stop();
                        Ok(json!({}))
                    }
                    None => Err(invalid(format!("no watch {id}"))),
                }
            }
            "is_stale" => Ok(json!({"stale": self.client()?.is_stale()})),
            "close" => {
                let client = self.client()?;
                client.close().await;
                self.watches.clear();
                Ok(json!({}))
            }
            other => Err(invalid(format!("unknown command {other:?}"))),
        }
    }

    fn client(&self) -> Result<&Client, Failure> {
        self.client
            .as_ref()
            .ok_or_else(|| invalid("no client: send open first"))
    }

    fn open(&mut self, command: &Json) -> Result<Json, Failure> {
        if self.client.is_some() {
            return Err(invalid("a client is already open"));
        }
        let text = |key: &str| command.get(key).and_then(Json::as_str).map(str::to_owned);
        let prefixes = command
            .get("prefixes")
            .and_then(Json::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let labels = command
            .get("labels")
            .and_then(Json::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let options = Options {
            environment: text("env"),
            prefixes,
            cache_path: text("cache_path").map(Into::into),
            instance_id: text("instance_id"),
            labels,
            token: text("token"),
            tls: None,
        };
        self.client = Some(Client::new(string(command, "address")?, options)?);
        Ok(json!({}))
    }

    fn watch(&mut self, command: &Json) -> Result<Json, Failure> {
        let id = string(command, "watch_id")?.to_owned();
        let prefix = string(command, "prefix")?;
        let fail: HashSet<String> = command
            .get("fail_paths")
            .and_then(Json::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let watch_id = id.clone();
        let handle = self.client()?.watch(prefix, move |event: &Event| {
            emit(&json!({
                "event": "change",
                "watch_id": watch_id,
                "path": event.path,
                "value": event.value,
                "old_value": event.old_value,
                "version": event.version,
                "revision": event.revision,
                "deleted": event.deleted,
                "at_ms": now_ms(),
            }));
            if fail.contains(&event.path) {
                return Err(format!("injected failure at {}", event.path));
            }
            Ok(())
        })?;
        self.watches.insert(id, handle);
        Ok(json!({}))
    }
}

fn string<'a>(command: &'a Json, key: &str) -> Result<&'a str, Failure> {
    command
        .get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| invalid(format!("missing string field {key:?}")))
}

/// One protocol line, written whole under the stdout lock (callbacks run on the session task,
/// answers on the main task).
fn emit(line: &Json) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        // The orchestrator went away; nothing left to tell it.
        std::process::exit(0);
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

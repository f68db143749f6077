//! One SDK's conformance driver process: commands on its stdin, answers and callback events on
//! its stdout (the line protocol of `tests/conformance/README.md`), stderr to a log file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long a command may take to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How an SDK's driver is started: a program and its arguments, run from the repository root.
#[derive(Debug, Clone)]
pub struct Launch {
    pub sdk: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
}

pub struct Driver {
    sdk: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    seq: u64,
    /// Callback events read while waiting for an answer, oldest first.
    events: VecDeque<Value>,
    log: PathBuf,
}

impl Driver {
    pub fn start(launch: &Launch, log_dir: &Path) -> Driver {
        let log = log_dir.join(format!("driver-{}-{}.log", launch.sdk, crate::free_port()));
        let log_file = std::fs::File::create(&log).expect("create the driver log");
        let mut child = Command::new(&launch.program)
            .args(&launch.args)
            .current_dir(crate::conformance::repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the {} driver {}: {e}",
                    launch.sdk,
                    launch.program.display()
                )
            });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let sdk = launch.sdk;
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Err(_) => panic!("the {sdk} driver printed a non-protocol line: {line}"),
                }
            }
        });
        Driver {
            sdk,
            child,
            stdin,
            lines,
            seq: 0,
            events: VecDeque::new(),
            log,
        }
    }

    pub fn sdk(&self) -> &'static str {
        self.sdk
    }

    /// The driver's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `command` (an object with `cmd`) and returns the answer line.
    pub async fn call(&mut self, mut command: Value) -> Value {
        self.seq += 1;
        let seq = self.seq;
        command["seq"] = json!(seq);
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{} driver stdin: {e}\n{}", self.sdk, self.log_text()));
        self.stdin.flush().await.ok();
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} driver did not answer {command} within {ANSWER_TIMEOUT:?}\n{}",
                        self.sdk,
                        self.log_text()
                    )
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} driver exited while answering {command}\n{}",
                        self.sdk,
                        self.log_text()
                    )
                });
            if line.get("event").is_some() {
                self.events.push_back(line);
            } else if line["seq"] == json!(seq) {
                return line;
            } else {
                panic!(
                    "{} driver answered out of turn: {line} (waiting for {seq})",
                    self.sdk
                );
            }
        }
    }

    /// Like [`Driver::call`], and the answer must be `ok`.
    pub async fn ok(&mut self, command: Value) -> Value {
        let answer = self.call(command.clone()).await;
        assert_eq!(
            answer["ok"],
            json!(true),
            "{}: {command} answered {answer}\n{}",
            self.sdk,
            self.log_text()
        );
        answer
    }

    /// The next callback event, waiting until `deadline`.
    pub async fn next_event(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        let line = tokio::time::timeout_at(deadline, self.lines.recv())
            .await
            .ok()??;
        assert!(
            line.get("event").is_some(),
            "{} driver printed an answer nobody asked for: {line}",
            self.sdk
        );
        Some(line)
    }

    /// Closes stdin and waits for the driver to exit (killing it after 5 s).
    pub async fn stop(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

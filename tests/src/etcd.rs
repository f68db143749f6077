//! A real etcd server for tests: one member on free loopback ports with its data in a temporary
//! directory, started from the Debian binary (or `SETPOINT_ETCD_BIN`). It owns the process and
//! its directory; it speaks only plain HTTP (`/health`, `/metrics`), never etcd's gRPC API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct EtcdServer {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers `/health`. Panics with the log tail otherwise.
    pub fn start() -> EtcdServer {
        let dir = tempfile::Builder::new()
            .prefix("setpoint-etcd-")
            .tempdir()
            .expect("create etcd tempdir");
        let mut server = EtcdServer {
            dir,
            client_port: crate::free_port(),
            peer_port: crate::free_port(),
            child: None,
        };
        server.spawn();
        server
    }

    /// `127.0.0.1:PORT`, the form `EtcdStore::connect` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Kills the process (SIGKILL, by its PID) and waits for it. The data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub(crate) fn binary() -> PathBuf {
        if let Some(bin) = std::env::var_os("SETPOINT_ETCD_BIN") {
            return PathBuf::from(bin);
        }
        let debian = PathBuf::from("/usr/bin/etcd");
        if debian.exists() {
            debian
        } else {
            PathBuf::from("etcd")
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open etcd log file");
        let log_err = log.try_clone().expect("clone etcd log handle");
        let binary = Self::binary();
        let child = Command::new(&binary)
            .arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd binary {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.healthy() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                panic!(
                    "etcd exited during start-up ({status}); log tail:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "etcd did not serve within {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of one unlabelled Prometheus metric from etcd's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = self.http_get("/metrics")?;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// etcd answers `{"health":"true"}` on `/health` once it serves requests.
    fn healthy(&self) -> bool {
        self.http_get("/health")
            .is_some_and(|body| body.contains("\"health\":\"true\""))
    }

    fn http_get(&self, path: &str) -> Option<String> {
        http_get(self.client_port, path)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One raw HTTP/1.0 GET to etcd's client port (no chunked encoding to undo); the whole response,
/// headers included.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

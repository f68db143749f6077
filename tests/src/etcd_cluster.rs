//! A real multi-member etcd cluster for fault tests: N members on free loopback ports, each with
//! its data in one temporary directory, started together (they need each other for a quorum).
//! Members can be killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT), and restarted, each by
//! its PID; dropping the cluster kills every member.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::etcd::EtcdServer;

const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    dir: TempDir,
    members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one answers `/health`.
    pub fn start(size: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("setpoint-etcd-cluster-")
            .tempdir()
            .expect("create etcd cluster tempdir");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: crate::free_port(),
                peer_port: crate::free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            members,
            initial_cluster,
        };
        for index in 0..size {
            cluster.spawn(index);
        }
        for index in 0..size {
            cluster.wait_healthy(index);
        }
        cluster
    }

    /// Every member's `127.0.0.1:PORT`, the form `EtcdStore::connect` and `etcd://` take.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// `etcd://A,B,C` for `setpoint writer --store`.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// The member that is raft leader now (from each member's `etcd_server_is_leader`).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && metric(self.members[i].client_port, "etcd_server_is_leader") == Some(1.0)
        })
    }

    /// SIGKILL one member, by its PID, and reap it. Its data stays for a restart.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP one member: a hung member (connections open, no answers).
    pub fn pause(&self, index: usize) {
        self.signal(index, "-STOP");
    }

    /// SIGCONT a paused member.
    pub fn resume(&self, index: usize) {
        self.signal(index, "-CONT");
    }

    /// Starts a killed member again on its data and ports, and waits until it is healthy.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
        self.wait_healthy(index);
    }

    /// True when the member answers `/health` with `true` (it is part of a quorum).
    pub fn healthy(&self, index: usize) -> bool {
        crate::etcd::http_get(self.members[index].client_port, "/health")
            .is_some_and(|body| body.contains("\"health\":\"true\""))
    }

    fn signal(&self, index: usize, signal: &str) {
        if let Some(child) = &self.members[index].child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal} member {index}");
        }
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[index].name))
    }

    fn spawn(&mut self, index: usize) {
        let member = &self.members[index];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let data = self.dir.path().join(&member.name);
        let state = if data.exists() { "existing" } else { "new" };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(index))
            .expect("open etcd member log");
        let log_err = log.try_clone().expect("clone etcd member log");
        let binary = EtcdServer::binary();
        let child = Command::new(&binary)
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=setpoint-test")
            // Loopback: elections in a fraction of a second keep fault tests short.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd binary {}: {e}", binary.display()));
        self.members[index].child = Some(child);
    }

    fn wait_healthy(&mut self, index: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.healthy(index) {
            if let Some(Ok(Some(status))) = self.members[index].child.as_mut().map(|c| c.try_wait())
            {
                self.members[index].child = None;
                panic!(
                    "etcd member {index} exited during start-up ({status}); log tail:\n{}",
                    self.log_tail(index)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd member {index} not healthy within {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(index)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self, index: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let body = crate::etcd::http_get(port, "/metrics")?;
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            // SIGKILL ends a stopped (SIGSTOP) member too.
            self.kill(index);
        }
    }
}

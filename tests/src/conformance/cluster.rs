//! The servers a scenario runs against: a `setpoint dev` process, or a real etcd with a writer
//! and an edge (the real binaries, mutual TLS between them, API keys required).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::binary::{Certs, SetpointProcess};
use crate::etcd::EtcdServer;
use crate::writer::test_admin_key;
use crate::{free_port, wait_until};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `setpoint dev`: writer and edge in one process, anonymous from loopback.
    Dev,
    /// etcd + `setpoint writer` + `setpoint edge`, keys required.
    Etcd,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Etcd => "etcd",
        }
    }
}

pub enum Cluster {
    Dev {
        process: Option<SetpointProcess>,
        addr: String,
        args: Vec<String>,
        dir: PathBuf,
    },
    Etcd {
        etcd: EtcdServer,
        writer: Option<SetpointProcess>,
        writer_addr: String,
        writer_args: Vec<String>,
        edge: Option<SetpointProcess>,
        edge_addr: String,
        edge_args: Vec<String>,
        dir: PathBuf,
    },
}

async fn start(args: &[String], addr: &str, dir: &Path) -> SetpointProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    SetpointProcess::start_on(&args, addr, dir).await
}

async fn wait_ready(addr: &str, what: &str) {
    let url = format!("http://{addr}/readyz");
    let ready = wait_until(Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    assert!(ready, "{what} at {addr} never became ready");
}

impl Cluster {
    pub async fn start(mode: Mode, dir: &Path) -> Cluster {
        match mode {
            Mode::Dev => {
                let addr = format!("127.0.0.1:{}", free_port());
                let data = dir.join("dev-data");
                let args = vec![
                    "dev".to_owned(),
                    "--data-dir".into(),
                    data.to_string_lossy().into_owned(),
                ];
                let process = start(&args, &addr, dir).await;
                wait_ready(&addr, "setpoint dev").await;
                Cluster::Dev {
                    process: Some(process),
                    addr,
                    args,
                    dir: dir.to_path_buf(),
                }
            }
            Mode::Etcd => {
                let etcd = EtcdServer::start();
                let certs = Certs::make(dir);
                let key_file = dir.join("admin.key");
                std::fs::write(&key_file, test_admin_key()).expect("write the admin key");
                let writer_addr = format!("127.0.0.1:{}", free_port());
                let mut writer_args: Vec<String> = vec![
                    "writer".into(),
                    "--store".into(),
                    format!("etcd://{}", etcd.endpoint()),
                    "--replication-listen".into(),
                    writer_addr.clone(),
                    "--admin-key-file".into(),
                    key_file.to_string_lossy().into_owned(),
                ];
                writer_args.extend(certs.args("writer"));
                let writer = start(&writer_args, &writer_addr, dir).await;
                let edge_addr = format!("127.0.0.1:{}", free_port());
                let mut edge_args: Vec<String> = vec![
                    "edge".into(),
                    "--id".into(),
                    "conformance-edge".into(),
                    "--writer".into(),
                    writer_addr.clone(),
                    "--data-dir".into(),
                    dir.join("edge-data").to_string_lossy().into_owned(),
                    "--metrics-public".into(),
                    "--heartbeat-ms".into(),
                    "1000".into(),
                ];
                edge_args.extend(certs.args("edge"));
                let edge = start(&edge_args, &edge_addr, dir).await;
                wait_ready(&edge_addr, "the edge").await;
                Cluster::Etcd {
                    etcd,
                    writer: Some(writer),
                    writer_addr,
                    writer_args,
                    edge: Some(edge),
                    edge_addr,
                    edge_args,
                    dir: dir.to_path_buf(),
                }
            }
        }
    }

    /// The writer's REST base URL.
    pub fn writer_base(&self) -> String {
        match self {
            Cluster::Dev { addr, .. } => format!("http://{addr}"),
            Cluster::Etcd { writer_addr, .. } => format!("http://{writer_addr}"),
        }
    }

    /// Where the SDK connects (`host:port`).
    pub fn edge_addr(&self) -> String {
        match self {
            Cluster::Dev { addr, .. } => addr.clone(),
            Cluster::Etcd { edge_addr, .. } => edge_addr.clone(),
        }
    }

    /// The edge's health document (`revision`, `stale`).
    pub fn edge_health_url(&self) -> String {
        match self {
            Cluster::Dev { addr, .. } => format!("http://{addr}/edge/healthz"),
            Cluster::Etcd { edge_addr, .. } => format!("http://{edge_addr}/healthz"),
        }
    }

    /// The edge's metrics.
    pub fn edge_metrics_url(&self) -> String {
        match self {
            Cluster::Dev { addr, .. } => format!("http://{addr}/edge/metrics"),
            Cluster::Etcd { edge_addr, .. } => format!("http://{edge_addr}/metrics"),
        }
    }

    /// The key SDKs and REST calls send (`None`: anonymous loopback).
    pub fn token(&self) -> Option<String> {
        match self {
            Cluster::Dev { .. } => None,
            Cluster::Etcd { .. } => Some(test_admin_key()),
        }
    }

    pub fn kill_edge(&mut self) {
        match self {
            Cluster::Etcd { edge, .. } => edge.take().expect("the edge is running").kill(),
            Cluster::Dev { .. } => panic!("kill_edge needs the etcd mode (scenario `modes`)"),
        }
    }

    /// Starts the edge again; `fresh`: without its disk snapshot (a replaced node), so it serves
    /// only once the writer sent it a whole snapshot.
    pub async fn start_edge(&mut self, fresh: bool) {
        match self {
            Cluster::Etcd {
                edge,
                edge_addr,
                edge_args,
                dir,
                ..
            } => {
                if fresh {
                    let _ = std::fs::remove_dir_all(dir.join("edge-data"));
                }
                *edge = Some(start(edge_args, edge_addr, dir).await);
                wait_ready(edge_addr, "the restarted edge").await;
            }
            Cluster::Dev { .. } => panic!("start_edge needs the etcd mode (scenario `modes`)"),
        }
    }

    /// SIGKILLs the writer (in dev mode: the whole process).
    pub fn stop_writer(&mut self) {
        match self {
            Cluster::Etcd { writer, .. } => writer.take().expect("the writer is running").kill(),
            Cluster::Dev { process, .. } => process.take().expect("dev is running").kill(),
        }
    }

    pub async fn start_writer(&mut self) {
        match self {
            Cluster::Etcd {
                writer,
                writer_addr,
                writer_args,
                dir,
                ..
            } => *writer = Some(start(writer_args, writer_addr, dir).await),
            Cluster::Dev {
                process,
                addr,
                args,
                dir,
            } => {
                *process = Some(start(args, addr, dir).await);
                wait_ready(addr, "setpoint dev").await;
            }
        }
    }

    /// Whether the edge the SDKs talk to runs.
    pub fn is_up(&self) -> bool {
        match self {
            Cluster::Dev { process, .. } => process.is_some(),
            Cluster::Etcd { edge, .. } => edge.is_some(),
        }
    }

    /// Every server down (the edge and the writer).
    pub fn stop_all(&mut self) {
        match self {
            Cluster::Etcd { writer, edge, .. } => {
                if let Some(edge) = edge.take() {
                    edge.kill();
                }
                if let Some(writer) = writer.take() {
                    writer.kill();
                }
            }
            Cluster::Dev { process, .. } => {
                if let Some(process) = process.take() {
                    process.kill();
                }
            }
        }
    }

    /// Every server's log, for a failure message.
    pub fn logs(&self) -> String {
        let text = |p: &Option<SetpointProcess>| p.as_ref().map(SetpointProcess::log_text);
        match self {
            Cluster::Dev { process, .. } => text(process).unwrap_or_default(),
            Cluster::Etcd { writer, edge, .. } => format!(
                "--- writer\n{}\n--- edge\n{}",
                text(writer).unwrap_or_default(),
                text(edge).unwrap_or_default()
            ),
        }
    }

    /// Stops everything (processes by PID; etcd when dropped).
    pub fn shutdown(mut self) {
        self.stop_all();
        if let Cluster::Etcd { mut etcd, .. } = self {
            etcd.stop();
        }
    }
}

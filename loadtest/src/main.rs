//! `setpoint-loadtest`: drives a live Setpoint and prints a report. A benchmark, not a test: it
//! asserts nothing and prints what it measured. Every request goes only to the given targets
//! (loopback in practice), and every run is bounded in count and time.
//!
//! Scenarios: `writer` (commit throughput and latency), `edge` (reads, watchers, propagation),
//! `sessions` (N Rust SDK clients on one edge: memory per session, PUT → callback), `ceiling`
//! (a bare server to measure the edge's reads against), `etcd` (etcd's own rate for the writer's
//! transaction shape), `coldstart` (an edge serving from a large disk snapshot), `fanout` (N
//! simulated edges on a replication endpoint, the writer's or a regional edge's) — see
//! `loadtest/README.md` for how to run each against a live system and the figures measured.
//!
//! Writers and edges require an API key: `--api-key-file` (or `SETPOINT_API_KEY_FILE`) names a
//! file holding one (the writer's bootstrap admin key, or a key with read and write on
//! `/loadtest`); it is sent with every request, HTTP and gRPC alike.

mod ceiling;
mod coldstart;
mod drive;
mod edge;
mod etcd;
mod fanout;
mod h2wire;
mod lean;
mod process;
mod report;
mod sessions;
mod writer;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Benchmark a live Setpoint")]
struct Cli {
    /// File holding the API key sent with every request (`Authorization: Bearer`).
    #[arg(long, env = "SETPOINT_API_KEY_FILE", global = true)]
    api_key_file: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

/// The API key sent with every request, when one is given.
#[derive(Clone, Default)]
pub struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ApiKey([redacted])"
        } else {
            "ApiKey(none)"
        })
    }
}

impl ApiKey {
    fn load(file: Option<&Path>) -> anyhow::Result<ApiKey> {
        let Some(file) = file else {
            return Ok(ApiKey::default());
        };
        let key = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the API key file {}", file.display()))?;
        let value = format!("Bearer {}", key.trim())
            .parse()
            .with_context(|| format!("{} does not hold an API key", file.display()))?;
        Ok(ApiKey(Some(value)))
    }

    /// An HTTP client builder that sends the key with every request.
    pub fn http(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = &self.0 {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(value.to_str()?)?,
            );
        }
        Ok(reqwest::Client::builder().default_headers(headers))
    }

    /// The key itself (for SDK clients, which send it as their token).
    pub fn token(&self) -> Option<String> {
        let value = self.0.as_ref()?.to_str().ok()?;
        Some(value.trim_start_matches("Bearer ").to_owned())
    }

    /// `message` as a gRPC request carrying the key in its metadata.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Commits/s and latency through the writer's REST API, then GETs on the writer.
    Writer(writer::WriterArgs),
    /// Edge reads at fixed rates and saturation, watcher fan-out, propagation.
    Edge(edge::EdgeArgs),
    /// SDK sessions on one edge: memory per session and PUT → callback latency.
    Sessions(sessions::SessionsArgs),
    /// A bare server with the edge's Get call and GET route over a HashMap, to measure against.
    Ceiling(ceiling::CeilingArgs),
    /// etcd's own commit rate for the writer's transaction shape.
    Etcd(etcd::EtcdArgs),
    /// An edge starting from a large disk snapshot: time to serve, file size, memory.
    Coldstart(coldstart::ColdstartArgs),
    /// N simulated edges on one replication endpoint (writer or regional edge): commit → last
    /// edge applied, CPU and memory per edge.
    Fanout(fanout::FanoutArgs),
}

/// Checks `/readyz` and returns the store kind it reports.
async fn ready_store(http: &reqwest::Client, target: &str) -> anyhow::Result<String> {
    let ready = http
        .get(format!("{target}/readyz"))
        .send()
        .await
        .context("writer unreachable")?;
    if !ready.status().is_success() {
        bail!(
            "writer not ready: {}",
            ready.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = ready.json().await.unwrap_or_default();
    Ok(body["store"].as_str().unwrap_or("unknown").to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let key = ApiKey::load(cli.api_key_file.as_deref())?;
    match cli.scenario {
        Scenario::Writer(args) => writer::run(args, &key).await,
        Scenario::Edge(args) => edge::run(args, &key).await,
        Scenario::Sessions(args) => sessions::run(args, &key).await,
        Scenario::Ceiling(args) => ceiling::run(args).await,
        Scenario::Etcd(args) => etcd::run(args).await,
        Scenario::Coldstart(args) => coldstart::run(args).await,
        Scenario::Fanout(args) => fanout::run(args, &key).await,
    }
}

//! `setpoint-loadtest`: drives a live Setpoint and prints a report. A benchmark, not a test: it
//! asserts nothing and prints what it measured. Every request goes only to the given targets
//! (loopback in practice), and every run is bounded in count and time.
//!
//! Scenarios: `writer` (commit throughput and latency), `edge` (reads, watchers, propagation) — see `loadtest/README.md` for how to run
//! each against a live system and the figures measured.

mod drive;
mod edge;
mod report;
mod writer;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Benchmark a live Setpoint")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Commits/s and latency through the writer's REST API, then GETs on the writer.
    Writer(writer::WriterArgs),
    /// Edge reads at fixed rates and saturation, watcher fan-out, propagation.
    Edge(edge::EdgeArgs),
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
    match Cli::parse().scenario {
        Scenario::Writer(args) => writer::run(args).await,
        Scenario::Edge(args) => edge::run(args).await,
    }
}

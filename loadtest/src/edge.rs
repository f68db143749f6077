//! `edge` scenario, against a live writer + edge:
//! 1. seeds `--paths` configs through the writer and waits until the edge serves them;
//! 2. edge reads (HTTP GET, and gRPC Get when `--grpc` is given) at each fixed offered rate
//!    (open loop) and at saturation (closed loop);
//! 3. `--watchers` SSE watchers on one prefix; `--watch-writes` writes, one at a time: for each,
//!    the time from sending the PUT to the last watcher notified; and the edge's resident memory
//!    per watcher (from `/proc/<edge-pid>/status` when `--edge-pid` is given). With
//!    `--watch-env E` the watchers watch effective values in environment `E` (which must exist)
//!    and every other write adds an override in `E` instead of changing the base value, so both
//!    kinds of change are timed;
//! 4. commit → edge applied: the writer's own propagation histogram (measured from the commit
//!    to the edge's ack on the writer's clock), read from its `/metrics`.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::ApiKey;
use crate::drive::{closed_loop, open_loop};
use crate::process::{CpuMark, rss_kib};
use crate::report::Report;

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// Writer base URL (for seeding and the propagation histogram).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub writer: String,
    /// Edge HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub edge: String,
    /// Distinct configs seeded and read.
    #[arg(long, default_value_t = 1_000)]
    pub paths: usize,
    /// Offered read rates (requests/s), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000")]
    pub rates: Vec<u64>,
    /// Seconds per fixed-rate run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Connections (and workers) for reads.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Requests in the saturation run.
    #[arg(long, default_value_t = 200_000)]
    pub saturation_requests: usize,
    /// SSE watchers on one prefix (0 skips the watcher test).
    #[arg(long, default_value_t = 10_000)]
    pub watchers: usize,
    /// Writes observed by the watchers.
    #[arg(long, default_value_t = 100)]
    pub watch_writes: usize,
    /// PID of the edge process, to report resident memory per watcher.
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// Edge gRPC endpoint (e.g. http://127.0.0.1:8000); enables the gRPC Get runs.
    #[arg(long)]
    pub grpc: Option<String>,
    /// gRPC channels (HTTP/2 connections) for the gRPC runs. The edge allows 10,000 concurrent
    /// streams per connection (`setpoint_serving::server::Limits`), so N gRPC watchers need at
    /// least N / 10,000 channels.
    #[arg(long, default_value_t = 8)]
    pub grpc_channels: usize,
    /// How watchers connect: `sse` (one HTTP/1.1 connection each) or `grpc` (streams
    /// multiplexed over --grpc-channels connections; needed for 100,000 watchers).
    #[arg(long, default_value = "sse")]
    pub watch_via: String,
    /// Watch effective values in this environment (SSE `&env=`, gRPC `WatchRequest.env`); it
    /// must exist (`setpoint writer` defines dev, staging and prod).
    #[arg(long)]
    pub watch_env: Option<String>,
}

pub async fn run(args: EdgeArgs, key: &ApiKey) -> anyhow::Result<()> {
    let http = key
        .http()?
        .pool_max_idle_per_host(args.connections)
        .tcp_nodelay(true)
        .build()?;
    let store = crate::ready_store(&http, &args.writer).await?;
    let run = std::process::id();
    println!(
        "edge benchmark: writer {} (store {store}), edge {}, {} paths, run {run}",
        args.writer, args.edge, args.paths
    );
    seed(&http, &args, run).await?;

    let paths = args.paths.max(1);
    for &rate in &args.rates {
        let (h, edge) = (http.clone(), args.edge.clone());
        let mut report = open_loop(
            rate,
            Duration::from_secs(args.seconds),
            args.connections,
            move |i| {
                get(
                    h.clone(),
                    format!("{edge}/api/config/loadtest/e{run}/p{}", i % paths),
                )
            },
        )
        .await;
        report.print(&format!("HTTP GET @ {rate}/s"));
    }
    let (h, edge) = (http.clone(), args.edge.clone());
    let mut report = closed_loop(args.saturation_requests, args.connections, move |i| {
        get(
            h.clone(),
            format!("{edge}/api/config/loadtest/e{run}/p{}", i % paths),
        )
    })
    .await;
    report.print("HTTP GET saturation");

    if let Some(grpc) = &args.grpc {
        let channels = grpc_channels(grpc, args.grpc_channels).await?;
        for &rate in &args.rates {
            let (channels, key) = (channels.clone(), key.clone());
            let mut report = open_loop(
                rate,
                Duration::from_secs(args.seconds),
                args.connections,
                move |i| {
                    grpc_get(
                        channels[i % channels.len()].clone(),
                        key.grpc(setpoint_proto::edge::v1::GetRequest {
                            path: format!("/loadtest/e{run}/p{}", i % paths),
                            env: None,
                            version: None,
                        }),
                    )
                },
            )
            .await;
            report.print(&format!("gRPC Get @ {rate}/s"));
        }
        let (channels, key) = (channels.clone(), key.clone());
        let mut report = closed_loop(args.saturation_requests, args.connections, move |i| {
            grpc_get(
                channels[i % channels.len()].clone(),
                key.grpc(setpoint_proto::edge::v1::GetRequest {
                    path: format!("/loadtest/e{run}/p{}", i % paths),
                    env: None,
                    version: None,
                }),
            )
        })
        .await;
        report.print("gRPC Get saturation");
    }

    if args.watchers > 0 {
        watchers(&http, &args, run, key).await?;
    }
    propagation(&http, &args.writer).await;
    Ok(())
}

type EdgeClient = setpoint_proto::edge::v1::edge_client::EdgeClient<tonic::transport::Channel>;

async fn grpc_channels(endpoint: &str, count: usize) -> anyhow::Result<Vec<EdgeClient>> {
    let mut out = Vec::new();
    for _ in 0..count.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        out.push(EdgeClient::new(channel));
    }
    Ok(out)
}

async fn grpc_get(
    mut client: EdgeClient,
    request: tonic::Request<setpoint_proto::edge::v1::GetRequest>,
) -> bool {
    client.get(request).await.is_ok()
}

async fn get(http: reqwest::Client, url: String) -> bool {
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

/// Writes the read set through the writer in batches, then waits for the edge to serve the last.
async fn seed(http: &reqwest::Client, args: &EdgeArgs, run: u32) -> anyhow::Result<()> {
    let paths: Vec<usize> = (0..args.paths.max(1)).collect();
    for chunk in paths.chunks(50) {
        let changes: Vec<serde_json::Value> = chunk
            .iter()
            .map(|i| serde_json::json!({"op": "put", "path": format!("/loadtest/e{run}/p{i}"), "value": {"n": i, "host": "db.internal", "port": 5432}}))
            .collect();
        let response = http
            .post(format!("{}/api/batch", args.writer))
            .body(serde_json::json!({"changes": changes}).to_string())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "seeding failed: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let last = format!(
        "{}/api/config/loadtest/e{run}/p{}",
        args.edge,
        args.paths.max(1) - 1
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(http.clone(), last.clone()).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the edge did not serve the seeded configs within 30 s")
}

/// Opens the SSE watchers, then writes one config at a time and times the last notification.
async fn watchers(
    http: &reqwest::Client,
    args: &EdgeArgs,
    run: u32,
    key: &ApiKey,
) -> anyhow::Result<()> {
    let prefix = format!("/loadtest/w{run}");
    let before = args.edge_pid.and_then(rss_kib);
    // Every watcher reports (revision, arrival) for each update it sees.
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let sse = key.http()?.pool_max_idle_per_host(0).build()?;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let grpc_watch = args.watch_via == "grpc";
    let channels = match (&args.grpc, grpc_watch) {
        (Some(endpoint), true) => grpc_channels(endpoint, args.grpc_channels).await?,
        (None, true) => anyhow::bail!("--watch-via grpc needs --grpc"),
        _ => Vec::new(),
    };
    // At most this many watches opening at once: 100,000 opened together time out on two
    // cores before the edge has answered them all.
    let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(1_000));
    for w in 0..args.watchers {
        if grpc_watch {
            let (mut client, tx, ready) = (
                channels[w % channels.len()].clone(),
                tx.clone(),
                ready_tx.clone(),
            );
            let opening = opening.clone();
            let request = key.grpc(setpoint_proto::edge::v1::WatchRequest {
                prefixes: vec![prefix.clone()],
                from_revision: None,
                instance_id: format!("loadtest-{run}-{w}"),
                env: args.watch_env.clone(),
                resolve: false,
            });
            tokio::spawn(async move {
                let Ok(permit) = opening.acquire().await else {
                    let _ = ready.send(false);
                    return;
                };
                let opened =
                    tokio::time::timeout(Duration::from_secs(30), client.watch(request)).await;
                drop(permit);
                let mut stream = match opened {
                    Ok(Ok(response)) => response.into_inner(),
                    _ => {
                        let _ = ready.send(false);
                        return;
                    }
                };
                let _ = ready.send(true);
                while let Ok(Some(message)) = stream.message().await {
                    let _ = tx.send((message.revision, Instant::now()));
                }
            });
            continue;
        }
        let (sse, tx, ready) = (sse.clone(), tx.clone(), ready_tx.clone());
        let url = match &args.watch_env {
            Some(env) => format!("{}/api/config{prefix}?watch=true&env={env}", args.edge),
            None => format!("{}/api/config{prefix}?watch=true", args.edge),
        };
        tokio::spawn(async move {
            let opened = tokio::time::timeout(Duration::from_secs(30), sse.get(url).send()).await;
            let response = match opened.ok().and_then(Result::ok) {
                Some(r) if r.status().is_success() => r,
                _ => {
                    let _ = ready.send(false);
                    return;
                }
            };
            let _ = ready.send(true);
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    if let Some(revision) = event
                        .lines()
                        .find_map(|l| l.strip_prefix("id:"))
                        .and_then(|r| r.trim().parse().ok())
                    {
                        let _ = tx.send((revision, Instant::now()));
                    }
                }
            }
        });
    }
    drop(ready_tx);
    let (mut opened, mut failed) = (0, 0);
    // Each watcher task keeps its sender for its whole life: count answers, not channel close.
    while opened + failed < args.watchers {
        match ready_rx.recv().await {
            Some(true) => opened += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = args.edge_pid.and_then(rss_kib);
    let kind = match (grpc_watch, &args.watch_env) {
        (true, None) => "gRPC".to_owned(),
        (false, None) => "SSE".to_owned(),
        (true, Some(env)) => format!("gRPC env={env}"),
        (false, Some(env)) => format!("SSE env={env}"),
    };
    println!("{kind} watchers: {opened} open, {failed} failed to open");
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "edge RSS {b} KiB -> {a} KiB: {:.2} KiB per {kind} watcher",
            (a.saturating_sub(b)) as f64 / opened.max(1) as f64
        );
    }

    let mut lasts = Vec::new();
    let mut notified_counts = Vec::new();
    let cpu_before = CpuMark::now(args.edge_pid);
    for i in 0..args.watch_writes {
        let sent = Instant::now();
        // In an environment, odd writes add an override (of a key of their own, so that no
        // override hides the base key the even writes change).
        let target = match &args.watch_env {
            Some(env) if i % 2 == 1 => format!("/env/{env}{prefix}/o{i}"),
            _ => format!("{prefix}/k"),
        };
        let response = http
            .put(format!("{}/api/config{target}", args.writer))
            .body(serde_json::json!({"value": i}).to_string())
            .send()
            .await?;
        let body: serde_json::Value = response.json().await?;
        let revision = body["revision"].as_i64().unwrap_or(-1);
        let mut seen = 0;
        let mut last = sent;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen < opened {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((r, at))) if r == revision => {
                    seen += 1;
                    last = last.max(at);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        notified_counts.push(seen);
        lasts.push(last - sent);
    }
    let cpu_after = CpuMark::now(args.edge_pid);
    let mut report = Report {
        ok: lasts.len(),
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: lasts,
    };
    report.latencies.sort_unstable();
    let complete = notified_counts.iter().filter(|c| **c == opened).count();
    println!(
        "PUT -> last of {opened} {kind} watchers notified, over {} writes ({complete} reached every watcher): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        report.ok,
        Report::percentile_ms(&report.latencies, 0.5),
        Report::percentile_ms(&report.latencies, 0.99),
        Report::percentile_ms(&report.latencies, 1.0),
    );
    // Where the two cores went during the writes: the edge's share is what a fleet whose
    // clients run elsewhere would see; the watchers' own decoding runs in this process.
    let (edge_cpu, client_cpu) = cpu_before.per(&cpu_after, args.watch_writes);
    println!(
        "CPU per write: edge {edge_cpu}, loadtest client ({opened} watchers' side) {client_cpu}"
    );
    Ok(())
}

/// Reads the writer's commit → edge ack histogram and prints its estimated quantiles.
async fn propagation(http: &reqwest::Client, writer: &str) {
    let Ok(response) = http.get(format!("{writer}/metrics")).send().await else {
        return;
    };
    let Ok(text) = response.text().await else {
        return;
    };
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("setpoint_replication_propagation_seconds_bucket"))
    {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some(entry) => entry.1 += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(_, total)) = buckets.last() else {
        println!("commit -> edge applied: the writer exposes no propagation histogram");
        return;
    };
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map_or(f64::NAN, |(le, _)| *le * 1000.0)
    };
    println!(
        "commit -> edge applied (writer's histogram, {total} acks, bucket upper bounds): p50 <= {:.1} ms  p99 <= {:.1} ms",
        quantile(0.5),
        quantile(0.99)
    );
}

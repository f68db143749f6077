//! SDK sessions at scale: N clients of the Rust SDK (`setpoint-sdk`, one gRPC `Session` each)
//! on one edge, all watching one prefix. Measures the edge's memory per session (its RSS before
//! and after the sessions open) and PUT → callback latency: for every timed write, the time
//! from just before the PUT to each client's callback, and to the last of them. With
//! `--rollbacks N`, N rounds of a rollout reaching every client (a single 100 % stage) and its
//! rollback, each timed from just before the call to the last client's callback — the figure
//! issue 12 asks for (goal under 1 s for 10,000 members).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use setpoint_sdk::{Client, Options};

use crate::ApiKey;
use crate::process::{CpuMark, rss_kib};

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// The writer's REST base URL (writes go there).
    #[arg(long)]
    pub writer: String,
    /// The edge the clients connect to, `HOST:PORT`.
    #[arg(long)]
    pub edge: String,
    /// The edge's PID, to read its memory.
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// The writer's PID, to read its CPU (it merges the client reports the edge sends it).
    #[arg(long)]
    pub writer_pid: Option<u32>,
    /// How many SDK clients (sessions).
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Timed writes after every client is ready.
    #[arg(long, default_value_t = 50)]
    pub writes: usize,
    /// Clients connecting at once while the fleet opens.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// The watched prefix.
    #[arg(long, default_value = "/bench/sessions")]
    pub prefix: String,
    /// Share this many HTTP/2 connections between the clients (`Client::with_channel`; the
    /// edge allows 10,000 streams per connection); 0: every client its own connection, as
    /// separate app processes have.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Lean protocol clients instead of the SDK (`loadtest/src/lean.rs`): hello, a receipt per
    /// update and heartbeats over HTTP/2 directly, sharing `--connections` connections — the
    /// edge's cost without the SDK's beside it on the same cores.
    #[arg(long)]
    pub lean: bool,
    /// After the writes: rollouts to every client (one 100 % stage) and their rollbacks, each
    /// timed from the call to every client's callback.
    #[arg(long, default_value_t = 0)]
    pub rollbacks: usize,
    /// Pad each written value to this many bytes (a text value: `v7xxxx…`), to weigh what a
    /// larger config costs the fan-out.
    #[arg(long, default_value_t = 0)]
    pub value_bytes: usize,
}

/// Arrival times of one write's callbacks: recorded by every client without a lock (a shared
/// mutex per arrival, on two cores, cost the load generator more than the arrivals themselves).
pub(crate) struct Write {
    pub(crate) value: String,
    /// `value` as the JSON text updates carry it.
    pub(crate) json: String,
    pub(crate) sent: Instant,
    /// Microseconds after `sent` + 1 (0: not yet stored), in arrival order.
    arrivals: Vec<AtomicU64>,
    arrived: AtomicUsize,
}

impl Write {
    fn new(value: String, clients: usize) -> Write {
        Write {
            json: serde_json::Value::String(value.clone()).to_string(),
            value,
            sent: Instant::now(),
            arrivals: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            arrived: AtomicUsize::new(0),
        }
    }

    /// One client saw the write now.
    pub(crate) fn arrive(&self) {
        let micros = u64::try_from(self.sent.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        let slot = self.arrived.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.arrivals.get(slot) {
            slot.store(micros + 1, Ordering::Relaxed);
        }
    }

    fn count(&self) -> usize {
        self.arrived.load(Ordering::Relaxed)
    }

    /// The arrivals so far.
    fn recorded(&self) -> Vec<Duration> {
        self.arrivals
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&m| m > 0)
            .map(|m| Duration::from_micros(m - 1))
            .collect()
    }
}

/// The write the clients look for.
pub(crate) type Current = Arc<arc_swap::ArcSwapOption<Write>>;

/// The clients under measurement.
enum Clients {
    Sdk(Vec<Client>),
    /// Lean protocol clients ([`crate::lean`]): how many, and a task per connection.
    Lean {
        sessions: usize,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    },
}

impl Clients {
    fn len(&self) -> usize {
        match self {
            Clients::Sdk(clients) => clients.len(),
            Clients::Lean { sessions, .. } => *sessions,
        }
    }

    async fn close(self) {
        match self {
            Clients::Sdk(clients) => {
                futures::future::join_all(clients.iter().map(Client::close)).await;
            }
            Clients::Lean { tasks, .. } => tasks.iter().for_each(|t| t.abort()),
        }
    }
}

/// Opens `args.sessions` lean sessions over `args.connections` connections, at most
/// `args.connect_concurrency` opening at once, and waits until every one is synced.
async fn open_lean(
    args: &SessionsArgs,
    token: Option<String>,
    current: &Current,
) -> anyhow::Result<Clients> {
    if args.connections == 0 {
        bail!("--lean needs --connections (the lean clients share HTTP/2 connections)");
    }
    let fleet = Arc::new(crate::lean::Fleet {
        edge: args.edge.clone(),
        authorization: format!("Bearer {}", token.unwrap_or_default()),
        prefix: args.prefix.clone(),
        current: current.clone(),
        opening: args.connect_concurrency.div_ceil(args.connections),
        ready: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
    });
    let tasks = (0..args.connections)
        .map(|c| {
            let indices: Vec<usize> = (c..args.sessions).step_by(args.connections).collect();
            let fleet = fleet.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::lean::connection(fleet, indices).await {
                    eprintln!("lean connection {c}: {error:#}");
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while fleet.ready.load(Ordering::Relaxed) < args.sessions {
        if fleet.ended.load(Ordering::Relaxed) > 0 {
            bail!(
                "{} lean sessions ended before they were synced",
                fleet.ended.load(Ordering::Relaxed)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "only {} of {} lean sessions synced within 120 s",
                fleet.ready.load(Ordering::Relaxed),
                args.sessions
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Clients::Lean {
        sessions: args.sessions,
        tasks,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn run(args: SessionsArgs, key: &ApiKey) -> anyhow::Result<()> {
    let http = key.http()?.build()?;
    let token = key.token();
    let path = format!("{}/value", args.prefix.trim_end_matches('/'));
    let url = format!("{}/api/config{path}", args.writer);
    put(&http, &url, "start").await?;
    let current: Current = Current::default();
    let before = args.edge_pid.and_then(rss_kib);

    let opened = Instant::now();
    let clients = if args.lean {
        open_lean(&args, token, &current).await?
    } else {
        let channels: Vec<tonic::transport::Channel> = (0..args.connections)
            .map(|_| {
                tonic::transport::Endpoint::from_shared(format!("http://{}", args.edge))
                    .map(|e| e.connect_lazy())
            })
            .collect::<Result<_, _>>()
            .context("the edge address")?;
        let ready = Arc::new(AtomicUsize::new(0));
        let clients: Vec<Client> = futures::stream::iter(0..args.sessions)
            .map(|i| {
                let channel = (!channels.is_empty()).then(|| channels[i % channels.len()].clone());
                let (edge, token, prefix, current, ready) = (
                    args.edge.clone(),
                    token.clone(),
                    args.prefix.clone(),
                    current.clone(),
                    ready.clone(),
                );
                async move {
                    let options = Options {
                        prefixes: vec![prefix.clone()],
                        instance_id: Some(format!("bench-{i}")),
                        token,
                        ..Options::default()
                    };
                    let client = match channel {
                        Some(channel) => Client::with_channel(&edge, channel, options),
                        None => Client::new(&edge, options),
                    }
                    .context("client options")?;
                    client
                        .wait_ready(Duration::from_secs(120))
                        .await
                        .with_context(|| format!("client {i} never became ready"))?;
                    let watch = client.watch(&prefix, move |event: &setpoint_sdk::Event| {
                        if let Some(write) = current.load().as_ref()
                            && event.value.as_ref().and_then(|v| v.as_str()) == Some(&write.value)
                        {
                            write.arrive();
                        }
                        Ok::<(), String>(())
                    })?;
                    // The watch lives as long as the client: its handle must not stop it.
                    std::mem::forget(watch);
                    ready.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok(client)
                }
            })
            .buffer_unordered(args.connect_concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Clients::Sdk(clients)
    };
    let open_secs = opened.elapsed().as_secs_f64();
    // Let the edge settle (first reports, allocator) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.edge_pid.and_then(rss_kib);
    let sharing = if args.connections == 0 {
        "each its own HTTP/2 connection".to_owned()
    } else {
        format!("sharing {} HTTP/2 connections", args.connections)
    };
    let kind = if args.lean {
        "lean protocol clients (loadtest/src/lean.rs)"
    } else {
        "Rust SDK clients"
    };
    println!(
        "## SDK sessions: {} {kind} on one edge, one Session each, {sharing}",
        clients.len()
    );
    println!("opened and synced in {open_secs:.1} s");
    if let (Some(before), Some(after)) = (before, after) {
        let per = (after.saturating_sub(before)) as f64 / clients.len().max(1) as f64;
        println!("edge RSS {before} KiB → {after} KiB: {per:.1} KiB per session (goal < 16 KiB)");
    }

    let mut last = Vec::new();
    let mut all = Vec::new();
    let mut missed = 0usize;
    let mut stable = "start".to_owned();
    let cpu_before = CpuMark::now(args.edge_pid);
    let writer_before = CpuMark::now(args.writer_pid);
    for w in 0..args.writes {
        stable = format!("v{w}");
        let padding = args.value_bytes.saturating_sub(stable.len());
        stable.extend(std::iter::repeat_n('x', padding));
        let write = Arc::new(Write::new(stable.clone(), clients.len()));
        current.store(Some(write.clone()));
        put(&http, &url, &write.value).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while write.count() < clients.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let arrivals = write.recorded();
        missed += clients.len() - arrivals.len();
        if let Some(max) = arrivals.iter().max() {
            last.push(max.as_secs_f64() * 1000.0);
        }
        all.extend(arrivals.iter().map(|d| d.as_secs_f64() * 1000.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_after = CpuMark::now(args.edge_pid);
    let writer_after = CpuMark::now(args.writer_pid);
    last.sort_by(f64::total_cmp);
    all.sort_by(f64::total_cmp);
    println!(
        "PUT → callback, every client, {} writes: p50 {:.1} ms, p99 {:.1} ms (all {} deliveries)",
        args.writes,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.len()
    );
    let goal = if clients.len() > 10_000 {
        "goal p99 < 1 s for 100,000"
    } else {
        "goal p99 < 250 ms for 10,000"
    };
    println!(
        "PUT → last of {} callbacks: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({goal})",
        clients.len(),
        percentile(&last, 50.0),
        percentile(&last, 99.0),
        last.last().copied().unwrap_or(f64::NAN)
    );
    // The writes pause 100 ms after each: that idle time (heartbeats, reports) counts too.
    let (edge_cpu, client_cpu) = cpu_before.per(&cpu_after, args.writes);
    let (writer_cpu, _) = writer_before.per(&writer_after, args.writes);
    println!("CPU per write: edge {edge_cpu}, loadtest clients {client_cpu}, writer {writer_cpu}");
    if missed > 0 {
        println!("MISSED: {missed} callbacks did not arrive within 10 s of their write");
    }
    if args.rollbacks > 0 {
        missed += rollbacks(&args, &http, &path, &stable, &current, clients.len()).await?;
    }
    let closing = Instant::now();
    clients.close().await;
    println!("closed in {:.1} s", closing.elapsed().as_secs_f64());
    if missed > 0 {
        bail!("{missed} callbacks missing");
    }
    Ok(())
}

/// Sets `value` as what the clients' callbacks are awaited for, runs `call`, and waits (10 s at
/// most) until every one of `clients` has seen it: the time to the last callback, and how many
/// never came.
async fn timed<F, Fut>(
    current: &Current,
    value: &str,
    clients: usize,
    call: F,
) -> anyhow::Result<(f64, usize)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let write = Arc::new(Write::new(value.to_owned(), clients));
    current.store(Some(write.clone()));
    call().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if write.count() >= clients || Instant::now() >= deadline {
            let arrivals = write.recorded();
            let max = arrivals
                .iter()
                .max()
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
            return Ok((max, clients - arrivals.len()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Rollout → every client on the candidate, then rollback → every client back on `stable`.
async fn rollbacks(
    args: &SessionsArgs,
    http: &reqwest::Client,
    path: &str,
    stable: &str,
    current: &Current,
    clients: usize,
) -> anyhow::Result<usize> {
    let (mut reach, mut back, mut missed) = (Vec::new(), Vec::new(), 0);
    for round in 0..args.rollbacks {
        let candidate = format!("candidate-{round}");
        let mut id = String::new();
        let (ms, lost) = timed(current, &candidate, clients, || async {
            let response = http
                .post(format!("{}/api/config{path}/rollout", args.writer))
                .body(
                    serde_json::json!({"value": candidate, "stages": [100], "interval": "1h"})
                        .to_string(),
                )
                .send()
                .await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if !status.is_success() {
                bail!("creating a rollout: {status} {body}");
            }
            id = body["rollout_id"].as_str().unwrap_or_default().to_owned();
            Ok(())
        })
        .await?;
        reach.push(ms);
        missed += lost;
        let (ms, lost) = timed(current, stable, clients, || async {
            let response = http
                .post(format!("{}/api/rollouts/{id}/rollback", args.writer))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("rollback {id}: {}", response.status());
            }
            Ok(())
        })
        .await?;
        back.push(ms);
        missed += lost;
    }
    reach.sort_by(f64::total_cmp);
    back.sort_by(f64::total_cmp);
    println!(
        "rollout (one 100 % stage) call → last of {clients} callbacks, {} rounds: p50 {:.1} ms, max {:.1} ms",
        reach.len(),
        percentile(&reach, 50.0),
        reach.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "rollback call → last of {clients} callbacks back on the stable value, {} rounds: p50 {:.1} ms, max {:.1} ms (goal < 1 s)",
        back.len(),
        percentile(&back, 50.0),
        back.last().copied().unwrap_or(f64::NAN)
    );
    if missed > 0 {
        println!("MISSED: {missed} rollout/rollback callbacks did not arrive within 10 s");
    }
    Ok(missed)
}

async fn put(http: &reqwest::Client, url: &str, value: &str) -> anyhow::Result<()> {
    let response = http
        .put(url)
        .body(serde_json::json!({ "value": value }).to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("PUT {url}: {}", response.status());
    }
    Ok(())
}

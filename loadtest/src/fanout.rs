//! `fanout`: N edges simulated as lightweight replication subscribers in this one process — real
//! QUIC connections with mutual TLS, the real frames, hello, snapshot, batches and acks — on the
//! writer's replication endpoint, or a regional edge's. Commits go through the writer's REST API;
//! each subscriber notes when each batch reached it. Reports commit → last edge applied (p50,
//! p99, max) and, for the processes named with `--pid`, CPU and resident memory per connected
//! edge (idle, and per commit).
//!
//! A subscriber decodes every frame (as an edge would) but keeps no snapshot: what is measured
//! is the serving side's fan-out, not this process's memory.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_proto::frames::{self, Frame};
use tokio::io::BufReader;

use crate::ApiKey;
use crate::process;
use crate::report::Report;

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The writer's REST base URL (commits go there).
    #[arg(long)]
    writer: String,
    /// The replication endpoint the simulated edges follow: the writer's, or a regional edge's.
    #[arg(long)]
    upstream: String,
    /// The name its certificate carries (default: the host of --upstream).
    #[arg(long)]
    server_name: Option<String>,
    #[arg(long)]
    ca: PathBuf,
    /// An edge's client certificate and key.
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// How many edges to simulate.
    #[arg(long, default_value_t = 100)]
    edges: usize,
    /// How many commits to time.
    #[arg(long, default_value_t = 50)]
    commits: usize,
    /// Pause between commits, milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Connections per client endpoint (one UDP socket and one driver task each).
    #[arg(long, default_value_t = 50)]
    per_endpoint: usize,
    /// Processes whose CPU and memory to report, `NAME=PID` (repeatable).
    #[arg(long = "pid", value_parser = parse_pid)]
    pids: Vec<(String, u32)>,
}

fn parse_pid(arg: &str) -> Result<(String, u32), String> {
    let (name, pid) = arg.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid.parse().map_err(|e| format!("{pid}: {e}"))?;
    Ok((name.to_owned(), pid))
}

/// When each revision reached how many subscribers, and the last arrival.
#[derive(Default)]
struct Arrivals {
    by_revision: HashMap<i64, (usize, Instant)>,
    synced: usize,
}

/// CPU seconds (user + system) and resident KiB of a process, from /proc.
fn usage(pid: u32) -> Option<(f64, u64)> {
    Some((process::cpu_seconds(pid)?, process::rss_kib(pid)?))
}

fn usages(pids: &[(String, u32)]) -> Vec<Option<(f64, u64)>> {
    pids.iter().map(|(_, pid)| usage(*pid)).collect()
}

pub async fn run(args: FanoutArgs, key: &ApiKey) -> anyhow::Result<()> {
    let http = key.http()?.build()?;
    let client = tls::client_config(&TlsFiles {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
    })?;
    let addr: SocketAddr = tokio::net::lookup_host(&args.upstream)
        .await?
        .next()
        .context("cannot resolve --upstream")?;
    let server_name = args
        .server_name
        .clone()
        .unwrap_or_else(|| addr.ip().to_string());
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();

    let baseline = usages(&args.pids);
    let started = Instant::now();
    let mut endpoints = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.edges {
        if i % args.per_endpoint.max(1) == 0 {
            let mut endpoint = quinn::Endpoint::client((Ipv4Addr::LOCALHOST, 0).into())?;
            endpoint.set_default_client_config(client.clone());
            endpoints.push(endpoint);
        }
        let endpoint = endpoints.last().context("an endpoint")?.clone();
        let (arrivals, server_name) = (arrivals.clone(), server_name.clone());
        tasks.push(tokio::spawn(async move {
            // A real edge reconnects: a handshake lost in a burst of a thousand is tried again.
            let mut synced = false;
            for attempt in 1..=3 {
                let endpoint = endpoint.clone();
                match subscribe(endpoint, addr, &server_name, i, &arrivals, &mut synced).await {
                    Ok(()) => return,
                    Err(err) if attempt == 3 => eprintln!("edge {i}: {err:#}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().map(|a| a.synced).unwrap_or(0) < args.edges {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} edges synced within 60 s",
                arrivals.lock().map(|a| a.synced).unwrap_or(0),
                args.edges
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{} edges connected and synced in {:.2} s",
        args.edges,
        started.elapsed().as_secs_f64()
    );
    // Idle: heartbeats only.
    let connected = usages(&args.pids);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = usages(&args.pids);

    let mut report = Report {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    let run_started = Instant::now();
    for n in 0..args.commits {
        let sent = Instant::now();
        let response = http
            .put(format!("{}/api/config/loadtest/fanout", args.writer))
            .body(serde_json::json!({ "value": { "n": n } }).to_string())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT answered {}", response.status());
        }
        let body: serde_json::Value = response.json().await?;
        let revision = body["revision"]
            .as_i64()
            .context("no revision in the answer")?;
        let wait = Instant::now() + Duration::from_secs(5);
        let last = loop {
            let seen = arrivals
                .lock()
                .ok()
                .and_then(|a| a.by_revision.get(&revision).copied());
            match seen {
                Some((count, last)) if count >= args.edges => break Some(last),
                _ if Instant::now() > wait => break None,
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        match last {
            Some(last) => {
                report.ok += 1;
                report.latencies.push(last.saturating_duration_since(sent));
            }
            None => report.errors += 1,
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    report.elapsed = run_started.elapsed();
    let after = usages(&args.pids);
    report.print(&format!("commit → last of {} edges", args.edges));

    for (i, (name, _)) in args.pids.iter().enumerate() {
        let (Some(base), Some(conn), Some(idle), Some(after)) =
            (baseline[i], connected[i], idle[i], after[i])
        else {
            println!("{name}: /proc unreadable");
            continue;
        };
        let edges = args.edges as f64;
        println!(
            "{name}: RSS {} → {} kB ({:+.1} kB per edge); idle CPU {:.2} ms/s ({:.4} ms/s per edge); \
             {:.3} ms CPU per commit ({:.4} ms per commit per edge)",
            base.1,
            conn.1,
            (conn.1 as f64 - base.1 as f64) / edges,
            (idle.0 - conn.0) * 1000.0 / 5.0,
            (idle.0 - conn.0) * 1000.0 / 5.0 / edges,
            (after.0 - idle.0) * 1000.0 / args.commits as f64,
            (after.0 - idle.0) * 1000.0 / args.commits as f64 / edges,
        );
    }
    for task in tasks {
        task.abort();
    }
    for endpoint in endpoints {
        endpoint.close(0u32.into(), b"done");
    }
    Ok(())
}

/// One simulated edge: hello at revision 0, then every frame decoded and acked; the arrival of
/// each batch noted.
async fn subscribe(
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    index: usize,
    arrivals: &Mutex<Arrivals>,
    synced: &mut bool,
) -> anyhow::Result<()> {
    let connection = endpoint.connect(addr, server_name)?.await?;
    let (mut send, recv) = connection.open_bi().await?;
    let hello = Frame::Hello {
        node_id: format!("fanout-{index}"),
        region: "loadtest".into(),
        revision: 0,
        http_addr: String::new(),
    };
    frames::write_frame(&mut send, &hello).await?;
    let mut recv = BufReader::with_capacity(64 << 10, recv);
    // Synced: a snapshot ended, or a heartbeat came (the catch-up by delta, if any, is done);
    // counted once per edge, whatever its reconnects.
    let mark_synced = |synced: &mut bool| {
        if !*synced {
            *synced = true;
            if let Ok(mut a) = arrivals.lock() {
                a.synced += 1;
            }
        }
    };
    loop {
        let Some(frame) = frames::read_frame(&mut recv).await? else {
            bail!("the upstream closed the stream");
        };
        let applied = match frame {
            Frame::SnapshotEnd { revision } => {
                mark_synced(synced);
                Some(revision)
            }
            Frame::Heartbeat { .. } => {
                mark_synced(synced);
                None
            }
            Frame::Batch(batch) => {
                let now = Instant::now();
                if let Ok(mut a) = arrivals.lock() {
                    let entry = a.by_revision.entry(batch.revision).or_insert((0, now));
                    entry.0 += 1;
                    entry.1 = now;
                }
                Some(batch.revision)
            }
            Frame::Goodbye { reason } => bail!("goodbye: {reason}"),
            _ => None,
        };
        if let Some(revision) = applied
            && recv.buffer().is_empty()
        {
            frames::write_frame(&mut send, &Frame::Ack { revision }).await?;
        }
    }
}

//! `setpoint-loadtest`: drives a live writer over HTTP and prints a report. A benchmark, not a
//! test: it asserts nothing and prints what it measured.
//!
//! `writer` scenario: `--commits` PUTs spread over `--paths` paths by `--concurrency` clients
//! (commits/s, p50/p99/p99.9 commit latency), then `--reads` GETs of those paths (reads/s and
//! latency). Requests are bounded in number and go only to `--target` (loopback in practice).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Benchmark a live Setpoint writer")]
struct Args {
    /// Writer base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    target: String,
    /// Total PUTs.
    #[arg(long, default_value_t = 20_000)]
    commits: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct paths written (writes to one path serialize; spread them).
    #[arg(long, default_value_t = 1_000)]
    paths: usize,
    /// Total GETs after the writes.
    #[arg(long, default_value_t = 50_000)]
    reads: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
}

struct Report {
    count: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&self, what: &str) {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let pct = |p: f64| -> f64 {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
        };
        println!(
            "{what:<8} {:>7} ok {:>5} errors in {:>6.2} s = {:>8.0}/s   p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>6.2} ms",
            self.count - self.errors,
            self.errors,
            self.elapsed.as_secs_f64(),
            (self.count - self.errors) as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(0.999),
            pct(1.0),
        );
    }
}

/// Runs `total` requests over `concurrency` workers; `request(i)` sends request number `i`.
async fn drive<F, Fut>(total: usize, concurrency: usize, request: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                let ok = request(i).await;
                latencies.push(t.elapsed());
                errors += usize::from(!ok);
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Report {
        count: latencies.len(),
        errors,
        elapsed: started.elapsed(),
        latencies,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let ready = http
        .get(format!("{}/readyz", args.target))
        .send()
        .await
        .context("writer unreachable")?;
    if !ready.status().is_success() {
        bail!(
            "writer not ready: {}",
            ready.text().await.unwrap_or_default()
        );
    }
    let store = ready_store(&http, &args.target).await;
    println!(
        "setpoint writer benchmark: target {} (store {store}), {} commits over {} paths by {} clients, {} B values, {} reads",
        args.target, args.commits, args.paths, args.concurrency, args.value_bytes, args.reads
    );
    let run = std::process::id();
    let filler = "x".repeat(args.value_bytes);
    let paths = args.paths.max(1);

    let (h, target) = (http.clone(), args.target.clone());
    let writes = drive(args.commits, args.concurrency, move |i| {
        let body =
            serde_json::json!({ "value": format!("{i}-{filler}"), "format": "text" }).to_string();
        let url = format!("{target}/api/config/loadtest/r{run}/p{}", i % paths);
        let h = h.clone();
        async move {
            h.put(url)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    writes.print("commits");

    let (h, target) = (http.clone(), args.target.clone());
    let reads = drive(args.reads, args.concurrency, move |i| {
        let url = format!("{target}/api/config/loadtest/r{run}/p{}", i % paths);
        let h = h.clone();
        async move {
            match h.get(url).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await;
    reads.print("GET");
    Ok(())
}

async fn ready_store(http: &reqwest::Client, target: &str) -> String {
    let body: serde_json::Value = match http.get(format!("{target}/readyz")).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    body["store"].as_str().unwrap_or("unknown").to_owned()
}

//! Two ways to offer load: closed loop (N workers back to back: saturation) and open loop at a
//! fixed rate (each request has a scheduled start; latency counts from the schedule, so a slow
//! server cannot hide queueing — no coordinated omission).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::report::Report;

/// `total` requests by `concurrency` workers, each sending its next request as soon as the
/// previous one is answered.
pub async fn closed_loop<F, Fut>(total: usize, concurrency: usize, request: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, request) = (next.clone(), request.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let t = Instant::now();
                    if request(i).await {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    collect(workers, started).await
}

/// `rate` requests per second for `duration`, spread over `workers` tasks (request i is due at
/// `i / rate` seconds). A worker that falls behind sends late; the lateness counts as latency.
pub async fn open_loop<F, Fut>(rate: u64, duration: Duration, workers: usize, request: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let request = Arc::new(request);
    let workers = workers.max(1);
    let started = Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut i = w;
                while i < total {
                    let due = started + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                    if request(i).await {
                        latencies.push(due.elapsed());
                    } else {
                        errors += 1;
                    }
                    i += workers;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut report = collect(tasks, Instant::now()).await;
    report.elapsed = started.elapsed();
    report
}

async fn collect(
    workers: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    started: Instant,
) -> Report {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Report {
        ok: latencies.len(),
        errors,
        elapsed: started.elapsed(),
        latencies,
    }
}

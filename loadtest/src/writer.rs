//! `writer` scenario: commits/s and commit latency through the REST API, then GETs on the
//! writer (which read the store: this is the writer's own read path, not the edge's).

use clap::Args;

use crate::drive::closed_loop;

#[derive(Debug, Args)]
pub struct WriterArgs {
    /// Writer base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub target: String,
    /// Total PUTs.
    #[arg(long, default_value_t = 20_000)]
    pub commits: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Distinct paths written (writes to one path serialize; spread them).
    #[arg(long, default_value_t = 1_000)]
    pub paths: usize,
    /// Total GETs after the writes.
    #[arg(long, default_value_t = 50_000)]
    pub reads: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
}

pub async fn run(args: WriterArgs, key: &crate::ApiKey) -> anyhow::Result<()> {
    let http = key
        .http()?
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let store = crate::ready_store(&http, &args.target).await?;
    println!(
        "writer benchmark: target {} (store {store}), {} commits over {} paths by {} clients, {} B values, {} reads",
        args.target, args.commits, args.paths, args.concurrency, args.value_bytes, args.reads
    );
    let run = std::process::id();
    let filler = "x".repeat(args.value_bytes);
    let paths = args.paths.max(1);

    let (h, target) = (http.clone(), args.target.clone());
    let mut writes = closed_loop(args.commits, args.concurrency, move |i| {
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
    writes.print("commits (PUT)");

    let (h, target) = (http.clone(), args.target.clone());
    let mut reads = closed_loop(args.reads, args.concurrency, move |i| {
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
    reads.print("writer GET");
    Ok(())
}

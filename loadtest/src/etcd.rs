//! `etcd` scenario: etcd's own commit rate for the writer's transaction shape, to judge the
//! writer's commits/s against on the same machine in the same run.
//!
//! Each commit does what a writer's PUT of one path asks of etcd (`writer/src/model.rs`,
//! `model/plan.rs`, `audit.rs`): one read transaction (the path's pointer, the schema,
//! approval-policy and rollout-guard ranges, at one revision), then one write transaction
//! with the writer's compares (its leader key unchanged, no policy, schema or rollout guard
//! changed since the read, the pointer unchanged) and its three puts (pointer, version record,
//! audit record). Client `c` writes only paths `c`, `c + concurrency`, …, so compares fail only
//! if something else writes these keys; failed commits are counted, not retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use crate::report::Report;

#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// etcd client URL.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub endpoint: String,
    /// Total commits.
    #[arg(long, default_value_t = 20_000)]
    pub commits: usize,
    /// Concurrent clients (the writer benchmark's default).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Distinct paths written.
    #[arg(long, default_value_t = 1_000)]
    pub paths: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
}

/// Keys of this run, apart from the writer's (`/sp/…`).
const ROOT: &str = "/loadtest-etcd";

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn range(prefix: &str) -> TxnOp {
    TxnOp::get(
        prefix,
        Some(GetOptions::new().with_range(prefix_end(prefix))),
    )
}

fn unchanged_since(prefix: &str, revision: i64) -> Compare {
    Compare::mod_revision(prefix, CompareOp::Less, revision + 1).with_range(prefix_end(prefix))
}

pub async fn run(args: EtcdArgs) -> anyhow::Result<()> {
    let client = Client::connect([args.endpoint.as_str()], None)
        .await
        .context("cannot reach etcd")?;
    let leader = format!("{ROOT}/leader");
    let fence = client
        .kv_client()
        .put(leader.as_str(), "bench", None)
        .await?
        .header()
        .map_or(0, |h| h.revision());
    println!(
        "etcd benchmark: {} commits (read txn + write txn: 5 compares, 3 puts) over {} paths by {} clients, {} B values",
        args.commits, args.paths, args.concurrency, args.value_bytes
    );
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..args.concurrency.max(1) {
        let (next, failed, leader) = (next.clone(), failed.clone(), leader.clone());
        let mut kv = client.kv_client();
        let (paths, concurrency) = (args.paths.max(1), args.concurrency.max(1));
        let (commits, value) = (args.commits, "x".repeat(args.value_bytes));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut round = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= commits {
                    break;
                }
                // This client's own paths: c, c + concurrency, … below `paths`.
                let own = paths
                    .saturating_sub(client_index)
                    .div_ceil(concurrency)
                    .max(1);
                let path = (client_index + (round % own) * concurrency) % paths;
                round += 1;
                let began = Instant::now();
                match commit(&mut kv, &leader, fence, path, i, &value).await {
                    Ok(true) => latencies.push(began.elapsed()),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let mut report = Report {
        ok: latencies.len(),
        errors: failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    };
    report.print("etcd commits (writer shape)");
    Ok(())
}

/// One commit of path `path`: the read, then the fenced transaction. `Ok(false)`: a compare
/// failed.
async fn commit(
    kv: &mut etcd_client::KvClient,
    leader: &str,
    fence: i64,
    path: usize,
    i: usize,
    value: &str,
) -> anyhow::Result<bool> {
    let pointer = format!("{ROOT}/c/p{path}");
    let (schemas, policies, guards) = (
        format!("{ROOT}/s/"),
        format!("{ROOT}/c/_setpoint/policies/"),
        format!("{ROOT}/g/"),
    );
    let read = Txn::new().and_then(vec![
        TxnOp::get(pointer.as_str(), None),
        range(&schemas),
        range(&policies),
        range(&guards),
    ]);
    let read = kv.txn(read).await?;
    let revision = read.header().map_or(0, |h| h.revision());
    let (pointer_revision, version) = match read.op_responses().first() {
        Some(TxnOpResponse::Get(get)) => get
            .kvs()
            .first()
            .map_or((0, 1), |kv| (kv.mod_revision(), kv.version() + 1)),
        _ => (0, 1),
    };
    let now = format!("{:?}", std::time::SystemTime::now());
    let pointer_value = format!(
        r#"{{"version":{version},"deleted":false,"format":"text","meta":{{"updated_at":"{now}","updated_by":"admin"}}}}"#
    );
    let record = format!(
        r#"{{"version":{version},"deleted":false,"format":"text","meta":{{"updated_at":"{now}"}}}}
{i}-{value}"#
    );
    let audit = format!(
        r#"{{"time":"{now}","actor":"admin","action":"config.put","path":"/loadtest/p{path}","version_after":{version},"request_id":"bench-{i}","source":"127.0.0.1","outcome":"ok"}}"#
    );
    let write = Txn::new()
        .when(vec![
            Compare::mod_revision(leader, CompareOp::Equal, fence),
            unchanged_since(&policies, revision),
            unchanged_since(&guards, revision),
            Compare::mod_revision(pointer.as_str(), CompareOp::Equal, pointer_revision),
            unchanged_since(&schemas, revision),
        ])
        .and_then(vec![
            TxnOp::put(pointer.as_str(), pointer_value, None),
            TxnOp::put(format!("{ROOT}/v/p{path}/{version:020}"), record, None),
            TxnOp::put(format!("{ROOT}/audit/{i:020}"), audit, None),
        ]);
    Ok(kv.txn(write).await?.succeeded())
}

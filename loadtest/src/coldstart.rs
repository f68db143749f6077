//! `coldstart` scenario: how soon an edge serves from its disk snapshot after it starts, and what
//! the snapshot costs on disk and in memory.
//!
//! Writes a `snapshot.bin` of `--entries` configs (`/bench/cold/{i}`, JSON values of about
//! `--value-bytes`) plus one service account that may read them, with the edge's own encoder;
//! then starts `setpoint edge` (the command after `--`, with `--data-dir` added) and times from
//! the spawn to the first answer of an authenticated GET of the last entry, polling every 5 ms.
//! The edge needs no writer for this: it serves its disk snapshot (stale) until one answers.
//! Prints the file size, the time to serve and the edge's resident memory once serving, then
//! stops the edge (by PID).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use setpoint_core::auth::{Account, Action, Grant, new_key};
use setpoint_core::snapshot::{Entry, Snapshot};
use setpoint_core::{ConfigPath, Format, ParsedValue};

use crate::process::rss_kib;

#[derive(Debug, Args)]
pub struct ColdstartArgs {
    /// Configs in the snapshot.
    #[arg(long, default_value_t = 100_000)]
    pub entries: usize,
    /// About how large each value is.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// The edge's data directory (made; its snapshot is replaced).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The edge's HTTP address, as the edge command's `--listen` gives it.
    #[arg(long)]
    pub edge: String,
    /// Longest wait for the first answer.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// The edge command (`setpoint edge …` without `--data-dir`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn entry(path: &str, value: serde_json::Value) -> anyhow::Result<Entry> {
    Ok(Entry {
        path: ConfigPath::parse(path).with_context(|| format!("{path} is not a config path"))?,
        value: ParsedValue::from_request(value, Some(Format::Json)).context("value")?,
        version: 1,
        revision: 1,
        updated_at: "2026-01-01T00:00:00Z".to_owned(),
    })
}

pub async fn run(args: ColdstartArgs) -> anyhow::Result<()> {
    let key = new_key(&rand_bytes::<32>(), &rand_bytes::<9>(), 0, None);
    let account = Account {
        id: "coldstart".into(),
        description: None,
        grants: vec![Grant {
            prefix: "/bench".into(),
            actions: [Action::Read].into(),
        }],
        keys: vec![key.record.clone()],
        disabled: false,
    };
    let filler = "x".repeat(args.value_bytes.saturating_sub(40));
    let built = Instant::now();
    let mut entries = Vec::with_capacity(args.entries + 1);
    entries.push(entry(
        "/_setpoint/accounts/coldstart",
        serde_json::to_value(&account)?,
    )?);
    for i in 0..args.entries {
        entries.push(entry(
            &format!("/bench/cold/{i}"),
            serde_json::json!({ "i": i, "host": "db.internal", "pad": filler }),
        )?);
    }
    let snapshot = Snapshot::from_entries(1, entries);
    setpoint_edge_node::disk::save(&args.data_dir, &snapshot)?;
    let file = setpoint_edge_node::disk::snapshot_path(&args.data_dir);
    let size = std::fs::metadata(&file)?.len();
    println!(
        "cold start: {} entries, snapshot {:.1} MiB ({} B/entry), written in {:.2} s",
        args.entries,
        size as f64 / (1 << 20) as f64,
        size / args.entries.max(1) as u64,
        built.elapsed().as_secs_f64()
    );
    drop(snapshot);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!(
        "{}/api/config/bench/cold/{}",
        args.edge,
        args.entries.saturating_sub(1)
    );
    let (program, rest) = args.command.split_first().context("no edge command")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = child.id().context("the edge exited at once")?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let served = loop {
        if let Ok(response) = http.get(&url).bearer_auth(&key.token).send().await
            && response.status().is_success()
        {
            break started.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the edge exited before serving: {status}");
        }
        if Instant::now() > deadline {
            bail!(
                "the edge did not serve {url} within {} s",
                args.timeout_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let rss = rss_kib(pid).unwrap_or(0);
    println!(
        "cold start: first authenticated read answered {:.0} ms after the spawn; edge RSS {:.1} MiB ({} B/entry)",
        served.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0,
        rss * 1024 / args.entries.max(1) as u64
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}

/// Bytes for a throwaway key (the benchmark's own, gone with its edge): from the clock and the
/// process id through xorshift — it only has to be well-formed.
fn rand_bytes<const N: usize>() -> [u8; N] {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    let mut out = [0u8; N];
    let mut x = seed | 1;
    for byte in &mut out {
        // xorshift
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = (x & 0xff) as u8;
    }
    out
}

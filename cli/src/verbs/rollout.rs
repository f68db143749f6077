//! `setpoint rollout start | status | advance | pause | resume | rollback`: progressive
//! delivery of a new value through the writer's rollout API (`POST /api/config/{path}/rollout`,
//! `GET /api/rollouts[/{id}]`, `POST /api/rollouts/{id}/{action}`). `--wait` follows a rollout
//! until it completes, rolls back or pauses, redrawing one progress line on a terminal and
//! printing one line per change elsewhere. The stages, health gates and timing are the
//! server's; this only asks and shows.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::Outcome;
use super::config::{Format, encode_value};
use super::http::{Api, Conn, Failure, config_url};
use super::show;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start rolling a new value out to a growing share of the clients.
    Start(StartArgs),
    /// One rollout's state (`--wait`: follow it to its end); without an id, every rollout.
    Status(StatusArgs),
    /// Move to the next stage now.
    Advance(ActionArgs),
    /// Hold at the current stage (members keep the new value).
    Pause(ActionArgs),
    /// Continue a paused rollout.
    Resume(ActionArgs),
    /// Put everyone back on the stable value.
    Rollback(ActionArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The config path.
    pub path: String,
    /// The new value (else -f FILE or stdin), read as `setpoint put` reads it.
    pub value: Option<String>,
    #[arg(short, long, conflicts_with = "value")]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub format: Option<Format>,
    /// Percentages of clients per stage, increasing, the last 100.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub stages: Vec<u8>,
    /// Time between stages while healthy (`5m`, `30s`); without it stages move only by hand
    /// (`setpoint rollout advance`).
    #[arg(long)]
    pub interval: Option<String>,
    /// A canary instance that gets the value first (repeatable).
    #[arg(long = "canary-instance")]
    pub canary_instances: Vec<String>,
    /// Canary by label, `KEY=VALUE` (repeatable; every one must match).
    #[arg(long = "canary-label")]
    pub canary_labels: Vec<String>,
    /// Health gate: every member acknowledges within this long of its stage's start (`30s`).
    #[arg(long)]
    pub ack_timeout: Option<String>,
    /// Health gate: the share of members failing (NACK or disconnect) allowed, 0 to 1.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// What an unhealthy stage does: `rollback` (default) or `pause`.
    #[arg(long, value_parser = ["rollback", "pause"])]
    pub on_unhealthy: Option<String>,
    /// Follow the rollout until it completes, rolls back or pauses.
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// Start nothing: show the id it would have, the instances each stage would hold now and
    /// what the value changes (start it with `--id` to keep those stages).
    #[arg(long)]
    pub dry_run: bool,
    /// The rollout id to start under: the one a `--dry-run` showed.
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: Option<String>,
    /// Without an id: only rollouts in this state.
    #[arg(long, conflicts_with = "id", value_parser = ["in_progress", "paused", "completed", "rolled_back"])]
    pub status: Option<String>,
    /// Without an id: only rollouts of this path.
    #[arg(long, conflicts_with = "id")]
    pub path: Option<String>,
    /// Follow until it completes (exit 0), rolls back or pauses (exit 1).
    #[arg(long, requires = "id")]
    pub wait: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn run(command: RolloutCommand) -> Outcome {
    match command {
        RolloutCommand::Start(args) => start(args).await,
        RolloutCommand::Status(args) => status(args).await,
        RolloutCommand::Advance(args) => action(args, "advance").await,
        RolloutCommand::Pause(args) => action(args, "pause").await,
        RolloutCommand::Resume(args) => action(args, "resume").await,
        RolloutCommand::Rollback(args) => action(args, "rollback").await,
    }
}

fn start_body(args: &StartArgs) -> Result<Value, Failure> {
    let text = match (&args.value, &args.file) {
        (Some(value), _) => value.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|err| Failure::usage(format!("cannot read {}: {err}", file.display())))?,
        (None, None) => {
            return Err(Failure::usage(
                "no value: give it as an argument or with -f FILE",
            ));
        }
    };
    let (value, format) = encode_value(&text, args.format)?;
    let mut body = json!({
        "value": value,
        "format": format,
        "stages": args.stages,
    });
    if let Some(interval) = &args.interval {
        body["interval"] = json!(interval);
    }
    if !args.canary_instances.is_empty() || !args.canary_labels.is_empty() {
        let mut labels = serde_json::Map::new();
        for label in &args.canary_labels {
            let (key, value) = label.split_once('=').ok_or_else(|| {
                Failure::usage(format!("--canary-label {label:?} is not KEY=VALUE"))
            })?;
            labels.insert(key.to_owned(), json!(value));
        }
        body["canary"] = json!({"instances": args.canary_instances, "labels": labels});
    }
    let mut health = serde_json::Map::new();
    if let Some(timeout) = &args.ack_timeout {
        health.insert("ack_timeout".into(), json!(timeout));
    }
    if let Some(rate) = args.max_error_rate {
        health.insert("max_error_rate".into(), json!(rate));
    }
    if let Some(action) = &args.on_unhealthy {
        health.insert("on_unhealthy".into(), json!(action));
    }
    if !health.is_empty() {
        body["health"] = Value::Object(health);
    }
    if let Some(id) = &args.id {
        body["id"] = json!(id);
    }
    Ok(body)
}

async fn start(args: StartArgs) -> Outcome {
    let body = start_body(&args)?;
    let api = Api::new(&args.conn)?;
    let url = format!("{}/rollout", config_url(&args.path));
    let query: &[(&str, String)] = if args.dry_run {
        &[("dry_run", "true".to_owned())]
    } else {
        &[]
    };
    let (_, answer) = api
        .json(api.request(Method::POST, &url, query)?.json(&body))
        .await?;
    if args.dry_run {
        if args.conn.json() {
            show::json(&answer);
        } else {
            print_draft(&answer);
        }
        return Ok(());
    }
    let id = rollout_id(&answer);
    if args.conn.json() && !args.wait {
        show::json(&answer);
        return Ok(());
    }
    if !args.conn.json() {
        println!(
            "started rollout {id} of {}",
            args.path.trim_end_matches('/')
        );
        print_rollout(&answer);
    }
    if args.wait {
        return follow(&api, &id, args.conn.json()).await;
    }
    Ok(())
}

/// A dry run for a person: the id, each stage's instances, what the value would change.
fn print_draft(draft: &Value) {
    println!(
        "would start rollout {} of {} (nothing started; --id {} starts it with these stages)",
        rollout_id(draft),
        draft["path"].as_str().unwrap_or("?"),
        rollout_id(draft)
    );
    println!(
        "{} connected instances watch the path",
        draft["matching"].as_u64().unwrap_or(0)
    );
    for stage in draft["stages"].as_array().into_iter().flatten() {
        let label = match stage["percent"].as_u64() {
            Some(percent) => format!("{percent} %"),
            None => "canary".to_owned(),
        };
        let names: Vec<&str> = stage["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "  stage {} ({label}): {} instances {}",
            stage["stage"].as_u64().unwrap_or(0),
            stage["count"].as_u64().unwrap_or(0),
            names.join(", ")
        );
    }
    let preview = &draft["preview"];
    for change in preview["effective"].as_array().into_iter().flatten() {
        println!(
            "  at 100 %: {} {}: {} -> {}",
            change["env"].as_str().unwrap_or("(base)"),
            change["path"].as_str().unwrap_or("?"),
            change["before"],
            change["after"]
        );
    }
}

async fn status(args: StatusArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let Some(id) = &args.id else {
        let mut query = Vec::new();
        if let Some(status) = &args.status {
            query.push(("status", status.clone()));
        }
        if let Some(path) = &args.path {
            query.push(("path", path.clone()));
        }
        let body = api.get("/api/rollouts", &query).await?;
        if args.conn.json() {
            show::json(&body);
            return Ok(());
        }
        let list = body
            .as_array()
            .or_else(|| body["rollouts"].as_array())
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|r| {
                vec![
                    rollout_id(r),
                    show::cell(&r["path"]),
                    show::cell(&r["status"]),
                    stage_text(r),
                    format!("{}%", show::cell(&r["progress"])),
                    show::cell(&r["created_at"]),
                ]
            })
            .collect();
        show::table(
            &["ID", "PATH", "STATUS", "STAGE", "APPLIED", "CREATED_AT"],
            &rows,
        );
        return Ok(());
    };
    if args.wait {
        return follow(&api, id, args.conn.json()).await;
    }
    let body = api.get(&format!("/api/rollouts/{id}"), &[]).await?;
    if args.conn.json() {
        show::json(&body);
    } else {
        print_rollout(&body);
    }
    Ok(())
}

async fn action(args: ActionArgs, action: &str) -> Outcome {
    let api = Api::new(&args.conn)?;
    let url = format!("/api/rollouts/{}/{action}", args.id);
    let (_, answer) = api
        .json(api.request(Method::POST, &url, &[])?.json(&json!({})))
        .await?;
    if args.conn.json() {
        show::json(&answer);
    } else {
        print_rollout(&answer);
    }
    Ok(())
}

/// Polls the rollout until it ends or pauses, showing its progress.
async fn follow(api: &Api, id: &str, json: bool) -> Outcome {
    let mut progress = show::Progress::new();
    loop {
        let body = api.get(&format!("/api/rollouts/{id}"), &[]).await?;
        let status = body["status"].as_str().unwrap_or("unknown").to_owned();
        let percent = percent(&body).unwrap_or(0);
        progress.update(&format!(
            "{id}  {}  {}  {status}  applied by {}% of {} instance(s)",
            show::bar(percent),
            stage_text(&body),
            show::cell(&body["progress"]),
            show::cell(&body["matching"])
        ));
        let end = match status.as_str() {
            "completed" => Some(Ok(())),
            "rolled_back" | "paused" => Some(Err(Failure::error(format!(
                "rollout {id} {}{}",
                status.replace('_', " "),
                halt_text(&body)
            )))),
            _ => None,
        };
        if let Some(end) = end {
            progress.finish();
            if json {
                show::json(&body);
            } else {
                print_rollout(&body);
            }
            return end;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn rollout_id(body: &Value) -> String {
    show::cell(body.get("rollout_id").unwrap_or(&body["id"]))
}

/// The share of instances the current stage puts on the candidate (the server's `percent`).
fn percent(body: &Value) -> Option<u64> {
    body["percent"].as_u64()
}

/// `stage 2/3 (50%)`, or `stage 1/4 (canary)`. `stages` lists every stage, the canary's too.
fn stage_text(body: &Value) -> String {
    let stages = body["stages"].as_array().cloned().unwrap_or_default();
    let stage = body["stage"].as_u64().unwrap_or(0);
    let current = stages.iter().find(|s| s["stage"].as_u64() == Some(stage));
    let share = match current {
        Some(s) if s["canary"] == Value::Bool(true) => "canary".to_owned(),
        _ => percent(body).map_or_else(|| "?".to_owned(), |p| format!("{p}%")),
    };
    format!("stage {stage}/{} ({share})", stages.len())
}

fn halt_text(body: &Value) -> String {
    match body["halted"]["reason"].as_str() {
        Some(reason) => format!(": {reason}"),
        None => String::new(),
    }
}

fn print_rollout(body: &Value) {
    println!(
        "{}  {}  {}  {}",
        rollout_id(body),
        show::cell(&body["path"]),
        show::cell(&body["status"]),
        stage_text(body)
    );
    if body.get("progress").is_some() {
        println!(
            "progress {}% of {} matching instance(s): {} member(s), {} acked, {} pending, {} nacked, {} disconnected; {}",
            show::cell(&body["progress"]),
            show::cell(&body["matching"]),
            show::cell(&body["members"]),
            show::cell(&body["acked"]),
            show::cell(&body["pending"]),
            show::cell(&body["nacked"]),
            show::cell(&body["disconnected"]),
            if body["healthy"] == Value::Bool(false) {
                "unhealthy"
            } else {
                "healthy"
            }
        );
    }
    if let Some(at) = body["next_stage_at"].as_str() {
        println!("next stage at {at}");
    }
    if let Some(version) = body["completed_version"].as_u64() {
        println!("completed as version {version}");
    }
    if let Some(halted) = body["halted"].as_object() {
        println!(
            "halted: {} ({})",
            show::cell(&halted["reason"]),
            show::brief(&halted["instances"], 120)
        );
    }
}

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
    /// Time between stages while healthy (`5m`, `30s`).
    #[arg(long, default_value = "5m")]
    pub interval: String,
    /// A canary instance that gets the value first (repeatable).
    #[arg(long = "canary-instance")]
    pub canary_instances: Vec<String>,
    /// Canary by label, `KEY=VALUE` (repeatable; every one must match).
    #[arg(long = "canary-label")]
    pub canary_labels: Vec<String>,
    /// The health gates as the API takes them (a JSON object).
    #[arg(long)]
    pub health: Option<String>,
    /// Follow the rollout until it completes, rolls back or pauses.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: Option<String>,
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
        "interval": args.interval,
    });
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
    if let Some(health) = &args.health {
        body["health"] = serde_json::from_str(health)
            .map_err(|err| Failure::usage(format!("--health is not JSON: {err}")))?;
    }
    Ok(body)
}

async fn start(args: StartArgs) -> Outcome {
    let body = start_body(&args)?;
    let api = Api::new(&args.conn)?;
    let url = format!("{}/rollout", config_url(&args.path));
    let (_, answer) = api
        .json(api.request(Method::POST, &url, &[])?.json(&body))
        .await?;
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

async fn status(args: StatusArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let Some(id) = &args.id else {
        let body = api.get("/api/rollouts", &[]).await?;
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
                ]
            })
            .collect();
        show::table(&["ID", "PATH", "STATUS", "STAGE"], &rows);
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
            "{id}  {}  {}  {status}",
            show::bar(percent),
            stage_text(&body)
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

/// The share of clients on the new value: the server's `percent`, or the current stage's.
fn percent(body: &Value) -> Option<u64> {
    if let Some(percent) = body["percent"].as_u64() {
        return Some(percent);
    }
    let stages = body["stages"].as_array()?;
    let stage = usize::try_from(body["stage"].as_u64()?).ok()?;
    let canary = usize::from(has_canary(body));
    let index = stage.checked_sub(1 + canary)?;
    stages.get(index).and_then(Value::as_u64)
}

fn has_canary(body: &Value) -> bool {
    body["canary"].is_object()
}

/// `stage 2/3 (50%)`, or `canary`.
fn stage_text(body: &Value) -> String {
    let total = body["stages"].as_array().map_or(0, Vec::len) + usize::from(has_canary(body));
    let stage = show::cell(&body["stage"]);
    match percent(body) {
        Some(percent) => format!("stage {stage}/{total} ({percent}%)"),
        None if has_canary(body) && body["stage"] == json!(1) => {
            format!("stage 1/{total} (canary)")
        }
        None => format!("stage {stage}/{total}"),
    }
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
    if let Some(halted) = body["halted"].as_object() {
        println!(
            "halted: {} ({})",
            show::cell(&halted["reason"]),
            show::brief(&halted["instances"], 120)
        );
    }
}

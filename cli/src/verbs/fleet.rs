//! The verbs about the system rather than one config: `env` (environments), `clients`
//! (application instances the edges report), `edges` and `audit verify`. Read-only: each is one
//! GET, printed as a table or as the API's JSON.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Outcome;
use super::http::{Api, Conn, Failure};
use super::show;

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Show this environment (parent, description, variables); without it, list them all.
    pub name: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn env(args: EnvArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let Some(name) = &args.name else {
        let body = api.get("/api/environments", &[]).await?;
        if args.conn.json() {
            show::json(&body);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = body["environments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                vec![
                    show::cell(&e["name"]),
                    show::cell(&e["parent"]),
                    e["variables"]
                        .as_object()
                        .map_or(0, |v| v.len())
                        .to_string(),
                    show::cell(&e["description"]),
                ]
            })
            .collect();
        show::table(&["NAME", "PARENT", "VARIABLES", "DESCRIPTION"], &rows);
        return Ok(());
    };
    let body = api.get(&format!("/api/environments/{name}"), &[]).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    for field in ["name", "parent", "description", "version", "updated_at"] {
        println!("{:<12} {}", format!("{field}:"), show::cell(&body[field]));
    }
    println!("variables:");
    for (key, value) in body["variables"].as_object().into_iter().flatten() {
        println!("  {key}={}", show::cell(value));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// One client, by instance id (all its fields).
    pub id: Option<String>,
    /// Only clients watching at or below this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    #[arg(long)]
    pub env: Option<String>,
    /// `connected` or `disconnected`.
    #[arg(long)]
    pub status: Option<String>,
    /// `KEY=VALUE`, repeatable (every one must match).
    #[arg(long)]
    pub label: Vec<String>,
    /// Only clients of this edge.
    #[arg(long)]
    pub edge: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn clients(args: ClientsArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    if let Some(id) = &args.id {
        let body = api.get(&format!("/api/clients/{id}"), &[]).await?;
        if args.conn.json() {
            show::json(&body);
        } else {
            for (key, value) in body.as_object().into_iter().flatten() {
                println!("{:<18} {}", format!("{key}:"), show::brief(value, 200));
            }
        }
        return Ok(());
    }
    let mut query = Vec::new();
    for (name, value) in [
        ("prefix", &args.prefix),
        ("env", &args.env),
        ("status", &args.status),
        ("edge", &args.edge),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    for label in &args.label {
        if !label.contains('=') {
            return Err(Failure::usage(format!(
                "--label {label:?} is not KEY=VALUE"
            )));
        }
        query.push(("label", label.clone()));
    }
    let body = api.get("/api/clients", &query).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    let list = body
        .as_array()
        .or_else(|| body["clients"].as_array())
        .cloned()
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let labels = c["labels"]
                .as_object()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}={}", show::cell(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                show::cell(&c["id"]),
                show::cell(&c["status"]),
                show::cell(&c["edge"]),
                show::cell(&c["env"]),
                show::cell(&c["applied_revision"]),
                show::cell(&c["lag"]),
                show::cell(&c["propagation_ms"]),
                show::cell(&c["nacks"]),
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels
                },
                show::brief(&c["last_error"]["error"], 40),
            ]
        })
        .collect();
    show::table(
        &[
            "ID",
            "STATUS",
            "EDGE",
            "ENV",
            "APPLIED",
            "LAG",
            "PROPAGATION_MS",
            "NACKS",
            "LABELS",
            "LAST_ERROR",
        ],
        &rows,
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct EdgesArgs {
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn edges(args: EdgesArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let body = api.get("/api/edges", &[]).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    let writer = &body["writer"];
    println!(
        "writer {} ({}) at revision {}",
        show::cell(&writer["id"]),
        show::cell(&writer["role"]),
        show::cell(&body["revision"])
    );
    let rows: Vec<Vec<String>> = body["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                show::cell(&e["id"]),
                show::cell(&e["address"]),
                show::cell(&e["region"]),
                show::cell(&e["state"]),
                show::cell(&e["replication"]),
                show::cell(&e["applied_revision"]),
                show::cell(&e["lag"]),
            ]
        })
        .collect();
    show::table(
        &[
            "ID",
            "ADDRESS",
            "REGION",
            "STATE",
            "REPLICATION",
            "APPLIED",
            "LAG",
        ],
        &rows,
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain; exits 1 when it does not verify.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn audit(command: AuditCommand) -> Outcome {
    let AuditCommand::Verify(args) = command;
    let api = Api::new(&args.conn)?;
    let body = api.get("/api/audit/verify", &[]).await?;
    let ok = body["ok"] == Value::Bool(true);
    if args.conn.json() {
        show::json(&body);
    } else if ok {
        println!(
            "audit chain verifies: {} sealed record(s)",
            show::cell(&body["sealed"])
        );
    } else {
        println!("audit chain does NOT verify:");
        for problem in body["problems"].as_array().into_iter().flatten() {
            println!("  {}", show::value_text(problem));
        }
    }
    if ok {
        Ok(())
    } else {
        // The report is on stdout already; the exit code is what a script checks.
        Err(Failure::error(String::new()))
    }
}

//! The verbs on config paths: `get`, `put`, `delete`, `ls`, `history`, `diff`, `export`. Each
//! is one REST call (`/api/config/…`); `put` also decides where the value comes from (an
//! argument, `-f FILE`, stdin) and how it is sent (`--format`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::Outcome;
use super::http::{Api, Conn, Failure, config_url};
use super::show;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// A config path (`/myapp/database/host`) or a prefix.
    pub path: String,
    /// The effective value in this environment (overrides merged).
    #[arg(long)]
    pub env: Option<String>,
    /// With --env: substitute `${VAR}` and `${secret:…}` (needs `secrets:read` for secrets).
    #[arg(long, requires = "env")]
    pub resolve: bool,
    /// With --env: show which layer each key came from.
    #[arg(long, requires = "env")]
    pub explain: bool,
    /// An old version.
    #[arg(long, conflicts_with = "env")]
    pub version: Option<u64>,
    /// Print the metadata (version, format, who and when) along with the value.
    #[arg(short, long)]
    pub detailed: bool,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn get(args: GetArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let mut query = Vec::new();
    if let Some(env) = &args.env {
        query.push(("env", env.clone()));
    }
    if args.resolve {
        query.push(("resolve", "true".to_owned()));
    }
    if args.explain {
        query.push(("explain", "true".to_owned()));
    }
    if let Some(version) = args.version {
        query.push(("version", version.to_string()));
    }
    let body = api.get(&config_url(&args.path), &query).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    if let Some(children) = body.get("children").and_then(Value::as_array)
        && body.get("value").is_none()
    {
        for child in children {
            println!("{}", show::cell(child));
        }
        return Ok(());
    }
    if body.get("value").is_none() {
        // A resolved subtree is one object of values.
        println!("{}", show::value_text(&body));
        return Ok(());
    }
    if args.detailed {
        let fields = [
            "path",
            "version",
            "format",
            "revision",
            "updated_at",
            "updated_by",
            "description",
            "owner",
            "source",
            "environment",
        ];
        for field in fields {
            if let Some(value) = body.get(field).filter(|v| !v.is_null()) {
                println!("{:<12} {}", format!("{field}:"), show::cell(value));
            }
        }
        if let Some(schema) = body.get("schema").filter(|v| !v.is_null()) {
            println!("{:<12} {schema}", "schema:");
        }
        println!("value:");
    }
    println!(
        "{}",
        show::value_text(&body["value"]).trim_end_matches('\n')
    );
    if let Some(provenance) = body.get("provenance").and_then(Value::as_object) {
        println!();
        let rows: Vec<Vec<String>> = provenance
            .iter()
            .map(|(pointer, from)| {
                vec![
                    if pointer.is_empty() { "/" } else { pointer }.to_owned(),
                    show::cell(&from["path"]),
                    show::cell(&from["version"]),
                    show::cell(&from["environment"]),
                ]
            })
            .collect();
        show::table(&["KEY", "FROM", "VERSION", "ENV"], &rows);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
    Text,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// A config path.
    pub path: String,
    /// The value. Without it, the value is read from -f FILE or stdin.
    pub value: Option<String>,
    /// Read the value from this file (`-` for stdin).
    #[arg(short, long, conflicts_with = "value")]
    pub file: Option<PathBuf>,
    /// How to read the value: `json` (must parse as JSON), `yaml` or `text` (sent as written).
    /// Default: JSON when it parses as JSON (`5`, `true`, `{"a": 1}`), else a JSON string; a
    /// `.yaml`/`.yml` file is YAML.
    #[arg(long)]
    pub format: Option<Format>,
    /// Only if the current version is this one (`*`: only if it exists); else exit 4.
    #[arg(long)]
    pub if_match: Option<String>,
    /// What the config is for (kept by later versions until replaced).
    #[arg(long)]
    pub description: Option<String>,
    /// Who owns it, e.g. a team (kept by later versions until replaced).
    #[arg(long)]
    pub owner: Option<String>,
    /// A JSON Schema (2020-12) enforced on this and later writes.
    #[arg(long)]
    pub schema: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// The value's text and the format it was read in.
fn read_input(
    value: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<(String, Option<Format>), Failure> {
    if let Some(value) = value {
        return Ok((value.to_owned(), None));
    }
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let text = std::fs::read_to_string(path)
                .map_err(|err| Failure::usage(format!("cannot read {}: {err}", path.display())))?;
            let by_extension = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml" | "yml") => Some(Format::Yaml),
                Some("json") => Some(Format::Json),
                _ => None,
            };
            return Ok((text, by_extension));
        }
        Some(_) => {}
        None if std::io::stdin().is_terminal() => return Err(no_value()),
        None => {}
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| Failure::usage(format!("cannot read stdin: {err}")))?;
    // Nothing at all on an implicit stdin is a forgotten argument, not an empty value
    // (`-f -` says an empty value is meant).
    if text.is_empty() && file.is_none() {
        return Err(no_value());
    }
    Ok((text, None))
}

fn no_value() -> Failure {
    Failure::usage("no value: give it as an argument, with -f FILE, or on stdin")
}

/// The `value` and `format` fields of a PUT body.
pub fn encode_value(text: &str, format: Option<Format>) -> Result<(Value, &'static str), Failure> {
    match format {
        Some(Format::Json) => serde_json::from_str(text)
            .map(|value| (value, "json"))
            .map_err(|err| {
                Failure::usage(format!(
                    "the value is not JSON ({err}); use --format text for a plain string"
                ))
            }),
        Some(Format::Yaml) => Ok((Value::String(text.to_owned()), "yaml")),
        Some(Format::Text) => Ok((Value::String(text.to_owned()), "text")),
        // Values typed on a command line or piped from `echo` end with a newline nobody meant.
        None => Ok((
            serde_json::from_str(text)
                .unwrap_or_else(|_| Value::String(text.trim_end_matches(['\n', '\r']).to_owned())),
            "json",
        )),
    }
}

pub async fn put(args: PutArgs) -> Outcome {
    let (text, read_as) = read_input(args.value.as_deref(), args.file.as_ref())?;
    let (value, format) = encode_value(&text, args.format.or(read_as))?;
    let mut body = json!({"value": value, "format": format});
    if let Some(description) = args.description {
        body["description"] = json!(description);
    }
    if let Some(owner) = args.owner {
        body["owner"] = json!(owner);
    }
    if let Some(schema) = &args.schema {
        body["schema"] = serde_json::from_str(schema)
            .map_err(|err| Failure::usage(format!("--schema is not JSON: {err}")))?;
    }
    let api = Api::new(&args.conn)?;
    let mut request = api
        .request(Method::PUT, &config_url(&args.path), &[])?
        .json(&body);
    if let Some(version) = &args.if_match {
        request = request.header("If-Match", version);
    }
    let (status, answer) = api.json(request).await?;
    if args.conn.json() {
        show::json(&answer);
    } else {
        print_written(status, &answer, "wrote");
    }
    Ok(())
}

/// One line for a write: its version and revision, or the change request awaiting approval.
fn print_written(status: StatusCode, answer: &Value, verb: &str) {
    if status == StatusCode::ACCEPTED {
        println!(
            "change request {} awaits approval ({} needed)",
            show::cell(&answer["id"]),
            show::cell(&answer["approvals_required"])
        );
    } else {
        println!(
            "{verb} {} version {} (revision {})",
            show::cell(&answer["path"]),
            show::cell(&answer["version"]),
            show::cell(&answer["revision"])
        );
    }
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub path: String,
    /// Only if the current version is this one; else exit 4.
    #[arg(long)]
    pub if_match: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn delete(args: DeleteArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let mut request = api.request(Method::DELETE, &config_url(&args.path), &[])?;
    if let Some(version) = &args.if_match {
        request = request.header("If-Match", version);
    }
    let (status, answer) = api.json(request).await?;
    if args.conn.json() {
        show::json(&answer);
    } else {
        print_written(status, &answer, "deleted");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The prefix (default `/`).
    #[arg(default_value = "/")]
    pub prefix: String,
    /// Every live path below, with its version.
    #[arg(short, long)]
    pub recursive: bool,
    /// The children that exist in this environment.
    #[arg(long)]
    pub env: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn ls(args: LsArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let mut query = vec![("list", "true".to_owned())];
    if args.recursive {
        query.push(("recursive", "true".to_owned()));
    }
    if let Some(env) = &args.env {
        query.push(("env", env.clone()));
    }
    let url = if args.prefix.trim_matches('/').is_empty() {
        "/api/config/".to_owned()
    } else {
        config_url(&args.prefix)
    };
    let body = api.get(&url, &query).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    if let Some(entries) = body.get("entries").and_then(Value::as_array) {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| vec![show::cell(&e["path"]), show::cell(&e["version"])])
            .collect();
        show::table(&["PATH", "VERSION"], &rows);
    } else {
        for child in body["children"].as_array().into_iter().flatten() {
            println!("{}", show::cell(child));
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub path: String,
    /// At most this many versions.
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn history(args: HistoryArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let mut query = Vec::new();
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let url = format!("{}/history", config_url(&args.path));
    let body = api.get(&url, &query).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let value = if v["deleted"] == Value::Bool(true) {
                "(deleted)".to_owned()
            } else {
                show::brief(&v["value"], 60)
            };
            vec![
                show::cell(&v["version"]),
                show::cell(&v["updated_at"]),
                show::cell(&v["updated_by"]),
                value,
            ]
        })
        .collect();
    show::table(&["VERSION", "UPDATED_AT", "BY", "VALUE"], &rows);
    Ok(())
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub path: String,
    /// The older version.
    pub from: u64,
    /// The newer version.
    pub to: u64,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn diff(args: DiffArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let url = format!("{}/diff", config_url(&args.path));
    let query = [("from", args.from.to_string()), ("to", args.to.to_string())];
    let body = api.get(&url, &query).await?;
    if args.conn.json() {
        show::json(&body);
        return Ok(());
    }
    if let Some(text) = body["text"].as_str() {
        print!("{text}");
        if !text.ends_with('\n') && !text.is_empty() {
            println!();
        }
        return Ok(());
    }
    for op in body["patch"].as_array().into_iter().flatten() {
        // The empty JSON pointer is the whole value.
        let path = match op["path"].as_str() {
            Some("") | None => "(value)".to_owned(),
            Some(pointer) => pointer.to_owned(),
        };
        match op["op"].as_str().unwrap_or("") {
            "add" => println!("+ {path}: {}", show::brief(&op["value"], 200)),
            "remove" => println!("- {path}"),
            "replace" => println!("~ {path}: {}", show::brief(&op["value"], 200)),
            other => println!("{other} {path} {}", op),
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The prefix to export.
    pub prefix: String,
    /// The environment whose effective values are exported.
    #[arg(long)]
    pub env: String,
    /// `dotenv`, `json`, `yaml`, `k8s-configmap` or `k8s-secret`.
    #[arg(long, default_value = "dotenv")]
    pub format: String,
    /// The Kubernetes object's name (default: from the prefix).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// The bundle exactly as the server wrote it (`-o` does not apply: the format is the output).
pub async fn export(args: ExportArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let mut query = vec![("env", args.env.clone()), ("format", args.format.clone())];
    if let Some(name) = &args.name {
        query.push(("name", name.clone()));
    }
    let response = api
        .send(api.request(Method::GET, &config_url(&args.prefix), &query)?)
        .await?;
    let bytes = response.bytes().await.map_err(|err| api.unreachable(err))?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|err| Failure::error(format!("cannot write the bundle: {err}")))
}

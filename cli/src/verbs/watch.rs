//! `setpoint watch PREFIX`: follows `GET /api/config/{prefix}?watch=true` (SSE) and prints every
//! event as it arrives, one line each. After a disconnect it reconnects with `Last-Event-ID` =
//! the last revision seen, so it resumes after the last whole commit it printed (or the server
//! sends a reset with the current state). It stops only when killed or on a refusal (a
//! revoked key, a removed grant, an unknown environment).

use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Outcome;
use super::http::{Api, Conn, Failure, config_url, refusal};
use super::show;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The prefix to watch (`/` for everything readable).
    #[arg(default_value = "/")]
    pub prefix: String,
    /// Effective values in this environment.
    #[arg(long)]
    pub env: Option<String>,
    /// With --env: substitute `${VAR}` (secrets are never streamed resolved).
    #[arg(long, requires = "env")]
    pub resolve: bool,
    /// Start after this revision (replays what followed it), instead of now.
    #[arg(long)]
    pub from_revision: Option<i64>,
    #[command(flatten)]
    pub conn: Conn,
}

/// One SSE event as read off the stream.
#[derive(Debug, Default)]
struct Event {
    name: Option<String>,
    id: Option<String>,
    data: String,
}

/// Splits an SSE byte stream into events (fields per the HTML spec; comments ignored).
#[derive(Default)]
struct Parser {
    line: Vec<u8>,
    event: Event,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for &byte in bytes {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let raw = std::mem::take(&mut self.line);
            let line = String::from_utf8_lossy(&raw);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                let event = std::mem::take(&mut self.event);
                if !event.data.is_empty() || event.name.is_some() {
                    out.push(event);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                }
                "event" => self.event.name = Some(value.to_owned()),
                "id" => self.event.id = Some(value.to_owned()),
                _ => {} // a comment (heartbeat) or a field we do not use
            }
        }
    }
}

pub async fn run(args: WatchArgs) -> Outcome {
    let api = Api::new(&args.conn)?;
    let mut query = vec![("watch", "true".to_owned())];
    if let Some(env) = &args.env {
        query.push(("env", env.clone()));
    }
    if args.resolve {
        query.push(("resolve", "true".to_owned()));
    }
    if let Some(revision) = args.from_revision {
        query.push(("from_revision", revision.to_string()));
    }
    let url = if args.prefix.trim_matches('/').is_empty() {
        "/api/config/".to_owned()
    } else {
        config_url(&args.prefix)
    };
    let mut progress = show::Progress::new();
    let mut last_id: Option<String> = None;
    let mut connected_once = false;
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut request = api
            .stream_request(Method::GET, &url, &query)?
            .header("Accept", "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let mut response = match request.send().await {
            Ok(response) if response.status().is_success() => response,
            // Overloaded or behind: the next attempt (or another edge) will do.
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let failure = refusal(response).await;
                notice(&mut progress, &format!("{}; retrying", failure.message));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Ok(response) => return Err(refusal(response).await),
            Err(err) if connected_once => {
                notice(
                    &mut progress,
                    &format!("{}; retrying", api.unreachable(err).message),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(err) => return Err(api.unreachable(err)),
        };
        if progress.terminal() {
            let from = last_id
                .as_deref()
                .map_or_else(String::new, |id| format!(" after revision {id}"));
            progress.update(&format!(
                "watching {} at {}{from} (Ctrl-C to stop)",
                args.prefix,
                api.base()
            ));
            progress.finish();
        }
        connected_once = true;
        backoff = Duration::from_millis(250);
        let mut parser = Parser::default();
        let mut events = Vec::new();
        // Any error reading the body is a disconnect like any other: resume.
        while let Ok(Some(chunk)) = response.chunk().await {
            parser.feed(&chunk, &mut events);
            for event in events.drain(..) {
                if let Some(id) = &event.id {
                    last_id = Some(id.clone());
                }
                print_event(&event, args.conn.json())?;
            }
        }
        let after = last_id.as_deref().map_or_else(
            || "from now".to_owned(),
            |id| format!("after revision {id}"),
        );
        notice(&mut progress, &format!("stream ended; resuming {after}"));
    }
}

/// A line about the connection, on stderr (stdout holds only events).
fn notice(progress: &mut show::Progress, line: &str) {
    progress.update(line);
    progress.finish();
}

fn print_event(event: &Event, json: bool) -> Outcome {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    if event.name.as_deref() == Some("error") {
        let error = &data["error"];
        return Err(Failure::error(format!(
            "the watch was ended: {} {}",
            show::cell(&error["code"]),
            show::cell(&error["message"])
        )));
    }
    if json {
        // One event per line (NDJSON), the server's own JSON.
        println!("{}", data);
        return Ok(());
    }
    match data["type"].as_str() {
        Some("reset") => {
            let state = data["state"].as_array().map_or(0, Vec::len);
            println!(
                "rev {}  reset   {state} path(s), the current state follows",
                show::cell(&data["revision"])
            );
            for entry in data["state"].as_array().into_iter().flatten() {
                println!(
                    "rev {}  state   {} = {} (v{})",
                    show::cell(&data["revision"]),
                    show::cell(&entry["path"]),
                    show::brief(&entry["value"], 120),
                    show::cell(&entry["version"])
                );
            }
        }
        Some("delete") => println!(
            "rev {}  delete  {} (v{})",
            show::cell(&data["revision"]),
            show::cell(&data["path"]),
            show::cell(&data["version"])
        ),
        Some(kind) => println!(
            "rev {}  {kind:<6}  {} = {} (v{})",
            show::cell(&data["revision"]),
            show::cell(&data["path"]),
            show::brief(&data["value"], 120),
            show::cell(&data["version"])
        ),
        None => println!("{}", event.data),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<Event> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk.as_bytes(), &mut out);
        }
        out
    }

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let events = parse(&[
            "data: {\"a\"",
            ":1}\nid: 7\n\n: heartbeat\n\nevent: reset\r\ndata: x\r\ndata: y\r\n\r\n",
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].name.as_deref(), Some("reset"));
        assert_eq!(events[1].data, "x\ny");
    }
}

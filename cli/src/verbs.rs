//! The client verbs (`setpoint get | put | … | rollout | audit verify`): each parses its
//! arguments, calls the REST API of a writer (or `setpoint dev`) and prints the answer for a
//! person, or as JSON with `-o json`. It owns the mapping of outcomes to exit codes; it must
//! not hold any server logic — every decision (validation, access, versions) is the server's.
//!
//! Layout: `http.rs` (the connection flags and the one HTTP client, errors → exit codes),
//! `show.rs` (tables, values, progress on a terminal), `config.rs` (get, put, delete, ls,
//! history, diff, export), `watch.rs` (SSE with resumption), `fleet.rs` (env, clients, edges,
//! audit verify), `rollout.rs`.

use std::process::ExitCode;

use clap::Subcommand;

mod config;
mod fleet;
mod http;
mod rollout;
mod show;
mod watch;

pub use http::Failure;

/// What a verb's run ends with: an exit code (0 ok, 1 error, 2 usage, 3 not found, 4 conflict
/// or precondition failed) and, unless 0, the message printed on stderr.
pub type Outcome = Result<(), Failure>;

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Print a config's value (`--detailed` for its metadata); on a prefix, its children.
    Get(config::GetArgs),
    /// Write a new version of a config from an argument, a file (-f) or stdin.
    Put(config::PutArgs),
    /// Delete a config (a tombstone version; history stays).
    Delete(config::DeleteArgs),
    /// List the children of a prefix (`-r`: every path below, with versions).
    Ls(config::LsArgs),
    /// A config's versions, newest first.
    History(config::HistoryArgs),
    /// The difference between two versions of a config.
    Diff(config::DiffArgs),
    /// Stream changes below a prefix as they are committed (SSE, resumed after a disconnect).
    Watch(watch::WatchArgs),
    /// List environments, or show one.
    Env(fleet::EnvArgs),
    /// Export a prefix as a bundle: dotenv, json, yaml, k8s-configmap, k8s-secret.
    Export(config::ExportArgs),
    /// Application instances connected to the edges (or one, by id).
    Clients(fleet::ClientsArgs),
    /// The edges this writer knows, with replication state and lag.
    Edges(fleet::EdgesArgs),
    /// Progressive rollouts of a value: start, status, advance, pause, resume, rollback.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// The audit log's hash chain.
    #[command(subcommand)]
    Audit(fleet::AuditCommand),
}

/// Runs a verb on its own runtime, printing a failure on stderr.
pub fn run(verb: Verb) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async move {
        match verb {
            Verb::Get(args) => config::get(args).await,
            Verb::Put(args) => config::put(args).await,
            Verb::Delete(args) => config::delete(args).await,
            Verb::Ls(args) => config::ls(args).await,
            Verb::History(args) => config::history(args).await,
            Verb::Diff(args) => config::diff(args).await,
            Verb::Export(args) => config::export(args).await,
            Verb::Watch(args) => watch::run(args).await,
            Verb::Env(args) => fleet::env(args).await,
            Verb::Clients(args) => fleet::clients(args).await,
            Verb::Edges(args) => fleet::edges(args).await,
            Verb::Audit(command) => fleet::audit(command).await,
            Verb::Rollout(command) => rollout::run(command).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.exit as u8)
        }
    }
}

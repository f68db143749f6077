//! The `setpoint` binary: parses flags (and `SETPOINT_*` environment variables) into each
//! service's typed config, sets up logging and signals, and runs the service. No service logic
//! lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use setpoint_core::retention::Rule;
use setpoint_writer::{StoreSpec, WriterConfig};

#[derive(Debug, Parser)]
#[command(
    name = "setpoint",
    version,
    about = "Versioned configuration, written centrally, read locally."
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `setpoint_writer=debug`.
    #[arg(long, global = true, env = "SETPOINT_LOG", default_value = "info")]
    log: String,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        global = true,
        env = "SETPOINT_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything on this machine: the writer on an embedded store in --data-dir. No other
    /// service needed.
    Dev(DevArgs),
    /// The writer, on etcd (`--store etcd://HOST:PORT[,...]`) or an embedded store
    /// (`--store embedded://DIR`).
    Writer(WriterArgs),
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Address to serve the REST API on.
    #[arg(long, env = "SETPOINT_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "SETPOINT_DATA_DIR", default_value = "./.setpoint")]
    data_dir: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct WriterArgs {
    /// `etcd://HOST:PORT[,HOST:PORT...]` or `embedded://DIR`.
    #[arg(long, env = "SETPOINT_STORE", value_parser = StoreSpec::parse)]
    store: StoreSpec,
    /// Key prefix under which all Setpoint data lives in the store.
    #[arg(long, env = "SETPOINT_STORE_PREFIX", default_value = "/setpoint/")]
    store_prefix: String,
    /// Address to serve the REST API on.
    #[arg(long, env = "SETPOINT_LISTEN", default_value = "0.0.0.0:8000")]
    listen: SocketAddr,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// History retention per prefix, repeatable: `PREFIX=keep:N`, `PREFIX=days:D` or both
    /// (`/myapp=keep:50,days:30`). A version is removed only when outside every limit given;
    /// the current version is never removed. In the environment, separate rules with `;`.
    #[arg(long = "retention", env = "SETPOINT_RETENTION", value_delimiter = ';', value_parser = parse_rule)]
    retention: Vec<Rule>,
    /// Seconds between history retention passes.
    #[arg(long, env = "SETPOINT_COMPACTION_INTERVAL", default_value_t = 60)]
    compaction_interval_secs: u64,
    /// Deadline of each store call in milliseconds; past it a request answers 503.
    #[arg(long, env = "SETPOINT_STORE_TIMEOUT_MS", default_value_t = 2000)]
    store_timeout_ms: u64,
}

fn parse_rule(input: &str) -> Result<Rule, String> {
    Rule::parse(input).map_err(|e| e.to_string())
}

impl CommonArgs {
    fn apply(self, config: &mut WriterConfig) {
        config.retention = self.retention;
        config.compaction_interval = Duration::from_secs(self.compaction_interval_secs.max(1));
        config.store_timeout = Duration::from_millis(self.store_timeout_ms.max(1));
    }
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

async fn serve(listen: SocketAddr, config: WriterConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    setpoint_writer::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format)?;
    match cli.command {
        Command::Dev(args) => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
            let mut config = WriterConfig::new(StoreSpec::Embedded { dir: args.data_dir });
            args.common.apply(&mut config);
            serve(args.listen, config).await
        }
        Command::Writer(args) => {
            let mut config = WriterConfig::new(args.store);
            config.store_prefix = args.store_prefix;
            args.common.apply(&mut config);
            serve(args.listen, config).await
        }
    }
}

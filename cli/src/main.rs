//! The `setpoint` binary: parses flags (and `SETPOINT_*` environment variables) into each
//! service's typed config, sets up logging and signals, and runs the service; the client verbs
//! (`get`, `put`, `watch`, `rollout`, …) are dispatched to [`verbs`]. No service logic lives
//! here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod dev;
mod edge;
mod notify;
mod secrets;
mod verbs;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use setpoint_cluster::gossip::{GossipConfig, NodeInfo, Role};
use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_core::retention::Rule;
use setpoint_secrets::serve::SecretAccess;
use setpoint_writer::replication::ReplicationConfig;
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

// Parsed once at startup and consumed at once: the variants' sizes cost nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Everything on this machine in one process: the writer on an embedded store in
    /// --data-dir and one edge, on one port. No other service needed.
    Dev(dev::DevArgs),
    /// The writer, on etcd (`--store etcd://HOST:PORT[,...]`) or an embedded store
    /// (`--store embedded://DIR`); serves edges over QUIC when given --ca/--cert/--key.
    Writer(WriterArgs),
    /// An edge node: follows a writer over QUIC, serves reads and watches (HTTP, SSE, gRPC).
    Edge(edge::EdgeArgs),
    /// Writes a dev CA plus writer and edge certificates for mutual TLS.
    Certs(CertsArgs),
    #[command(flatten)]
    Verb(verbs::Verb),
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory to write ca.pem, writer.pem/.key and edge.pem/.key into.
    #[arg(long)]
    out: PathBuf,
    /// Extra names the writer's (or, with --regional, the regional edge's) certificate is
    /// valid for (besides localhost, 127.0.0.1, ::1).
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
    /// Instead of a new CA: sign a regional edge's certificate NAME.pem/NAME.key with the CA
    /// already in --out (serving other edges under --hostname names, and a client of its
    /// upstream): its --cert/--key, or --replication-cert/--replication-key.
    #[arg(long, value_name = "NAME")]
    regional: Option<String>,
}

/// The mutual-TLS material of a writer or an edge.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) that peers' certificates chain to.
    #[arg(long, env = "SETPOINT_CA")]
    ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    #[arg(long, env = "SETPOINT_CERT")]
    cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "SETPOINT_KEY")]
    key: Option<PathBuf>,
}

impl TlsArgs {
    /// All three files, or none (`Ok(None)`); a partial set is an error.
    fn optional(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, None) => Ok(None),
            _ => anyhow::bail!("--ca, --cert and --key go together"),
        }
    }

    pub fn files(&self) -> anyhow::Result<TlsFiles> {
        self.optional()?.context("missing --ca, --cert and --key")
    }
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
    /// UDP address of the QUIC endpoint edges replicate from (default: --listen's address).
    #[arg(long, env = "SETPOINT_REPLICATION_LISTEN")]
    replication_listen: Option<SocketAddr>,
    /// UDP address for gossip membership (a concrete IP; edges --join it).
    #[arg(long, env = "SETPOINT_GOSSIP")]
    gossip: Option<SocketAddr>,
    /// Gossip seeds to join, comma-separated.
    #[arg(long, env = "SETPOINT_JOIN", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// Region reported to the fleet.
    #[arg(long, env = "SETPOINT_REGION", default_value = "default")]
    region: String,
    /// This writer's id among replicas on one store (default: writer-HOST:PORT of --advertise).
    #[arg(long, env = "SETPOINT_ID")]
    id: Option<String>,
    /// The URL other replicas redirect writes to while this writer leads (default: http:// +
    /// --listen, with the host name for a wildcard address).
    #[arg(long, env = "SETPOINT_ADVERTISE")]
    advertise: Option<String>,
    /// Lifetime of the leader's etcd lease (`5s`, `2500ms`): a dead leader is replaced within
    /// about this long. Renewed every third of it. etcd's minimum is about 2 s.
    #[arg(long, env = "SETPOINT_LEASE_TTL", default_value = "5s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// On a store without accounts, where the generated admin API key is written (mode 0600).
    #[arg(
        long,
        env = "SETPOINT_BOOTSTRAP_KEY_FILE",
        default_value = "setpoint-admin.key"
    )]
    bootstrap_key_file: std::path::PathBuf,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
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
    /// Environments created on first start (a deleted one is not re-created), comma-separated.
    #[arg(
        long,
        env = "SETPOINT_ENVIRONMENTS",
        value_delimiter = ',',
        default_value = "dev,staging,prod"
    )]
    environments: Vec<String>,
    #[command(flatten)]
    pub secrets: secrets::SecretArgs,
    /// On a store without accounts, take the admin's API key from this file (instead of
    /// generating one).
    #[arg(long, env = "SETPOINT_ADMIN_KEY_FILE")]
    admin_key_file: Option<std::path::PathBuf>,
    /// Serve /metrics without an API key.
    #[arg(long, env = "SETPOINT_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Remove audit records older than this many days (sealed ones; an anchor keeps the chain
    /// verifiable). Default: keep everything.
    #[arg(long, env = "SETPOINT_AUDIT_RETENTION_DAYS")]
    audit_retention_days: Option<u64>,
    /// How long a disconnected client stays listed in /api/clients (and an edge whose link
    /// ended in /api/edges, with its metric series): `24h`, `30m`, `90s` or seconds.
    #[arg(long, env = "SETPOINT_CLIENT_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub client_retention: std::time::Duration,
    /// POST each alert the writer evaluates (clients or edges gone, lagging, dropping) to this
    /// URL (https:// or http://) as JSON when it fires and when it resolves, with retries.
    #[arg(long, env = "SETPOINT_ALERT_WEBHOOK")]
    alert_webhook: Option<String>,
    /// PEM file of a private CA trusted (besides the system's roots) for an https:// webhook.
    #[arg(
        long,
        env = "SETPOINT_ALERT_WEBHOOK_CACERT",
        requires = "alert_webhook"
    )]
    alert_webhook_ca_cert: Option<std::path::PathBuf>,
    /// A client disconnected this long is an alert (ClientDisconnected).
    #[arg(long, env = "SETPOINT_ALERT_CLIENT_GONE", default_value = "5m", value_parser = parse_duration)]
    alert_client_gone: std::time::Duration,
    /// An edge without a replication link, or behind the writer, this long is an alert
    /// (EdgeDisconnected, EdgeLagging).
    #[arg(long, env = "SETPOINT_ALERT_EDGE_GRACE", default_value = "1m", value_parser = parse_duration)]
    alert_edge_grace: std::time::Duration,
    /// How often the writer evaluates its alerts.
    #[arg(long, env = "SETPOINT_ALERT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    alert_interval: std::time::Duration,
}

/// `24h`, `30m`, `90s`, `250ms` or plain seconds (the API's durations, e.g. a rollout's
/// interval, read the same).
fn parse_duration(input: &str) -> Result<std::time::Duration, String> {
    setpoint_core::rollout::parse_duration_ms(input).map(std::time::Duration::from_millis)
}

fn parse_rule(input: &str) -> Result<Rule, String> {
    Rule::parse(input).map_err(|e| e.to_string())
}

impl CommonArgs {
    /// Applies the flags; `secrets_allowed` says whether reads may resolve secrets.
    pub fn apply(self, config: &mut WriterConfig, secrets_allowed: bool) -> anyhow::Result<()> {
        if let Some(url) = &self.alert_webhook
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            anyhow::bail!("--alert-webhook {url:?}: use an https:// (or http://) URL");
        }
        if let Some(path) = &self.alert_webhook_ca_cert {
            let pem = setpoint_secrets::https::read_ca(path).map_err(anyhow::Error::msg)?;
            // Refuse a bad CA file now, not at the first alert.
            let _checked = setpoint_secrets::https::client_builder(Some(&pem))
                .map_err(|e| anyhow::anyhow!("--alert-webhook-ca-cert {}: {e}", path.display()))?;
            config.alerts.webhook_ca_pem = Some(pem);
        }
        config.alerts.webhook = self.alert_webhook;
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        config.alerts.rules.client_gone_ms = ms(self.alert_client_gone);
        config.alerts.rules.edge_down_ms = ms(self.alert_edge_grace);
        config.alerts.rules.edge_lag_ms = ms(self.alert_edge_grace);
        config.alerts.interval = self.alert_interval;
        config.admin_key_file = self.admin_key_file;
        config.metrics_public = self.metrics_public;
        config.audit_retention = self
            .audit_retention_days
            .map(|days| Duration::from_secs(days.saturating_mul(86_400)));
        config.secrets = SecretAccess {
            provider: self.secrets.provider()?,
            allowed: secrets_allowed,
        };
        config.default_environments = self
            .environments
            .into_iter()
            .filter(|e| !e.trim().is_empty())
            .collect();
        config.retention = self.retention;
        config.compaction_interval = Duration::from_secs(self.compaction_interval_secs.max(1));
        config.store_timeout = Duration::from_millis(self.store_timeout_ms.max(1));
        Ok(())
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
pub async fn shutdown_signal() {
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

/// `shutdown`, telling systemd (`STOPPING=1`) when it resolves, so `systemctl status` shows the
/// service draining rather than hung.
pub async fn stopping(shutdown: impl std::future::Future<Output = ()>) {
    shutdown.await;
    notify::tell("STOPPING=1");
}

async fn writer(args: WriterArgs) -> anyhow::Result<()> {
    let mut config = WriterConfig::new(args.store);
    config.store_prefix = args.store_prefix;
    // Every caller needs a key here; `secrets:read` decides who may resolve secrets.
    let client_retention = args.common.client_retention;
    args.common.apply(&mut config, true)?;
    config.bootstrap_key_path = args.bootstrap_key_file.clone();
    config.id = args.id;
    config.advertise = args.advertise;
    config.lease_ttl = args.lease_ttl;
    if let Some(tls) = args.tls.optional()? {
        let mut replication =
            ReplicationConfig::new(args.replication_listen.unwrap_or(args.listen), tls);
        replication.client_retention = client_retention;
        config.replication = Some(replication);
    }
    if let Some(bind) = args.gossip {
        config.gossip = Some(GossipConfig {
            bind,
            join: args.join,
            info: NodeInfo {
                id: format!("writer-{}", args.listen),
                role: Role::Writer,
                region: args.region,
                http_addr: args.listen.to_string(),
                replication_addr: None,
            },
        });
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    setpoint_writer::run_with_ready(listener, config, stopping(shutdown_signal()), || {
        notify::tell("READY=1\nSTATUS=serving");
    })
    .await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // The client verbs print their own outcome and choose their exit code; the services'
        // log lines would only clutter a terminal or a script's stderr.
        Command::Verb(verb) => return verbs::run(verb),
        command => command,
    };
    match serve(command, &cli.log, cli.log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:?}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(command: Command, log: &str, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log, log_format)?;
    match command {
        Command::Dev(args) => dev::run(args).await,
        Command::Writer(args) => writer(args).await,
        Command::Edge(args) => edge::run(args).await,
        Command::Certs(args) if args.regional.is_some() => {
            let name = args.regional.as_deref().unwrap_or_default();
            let regional = tls::issue_regional_cert(&args.out, name, &args.hostnames)?;
            println!("CA:       {}", regional.ca.display());
            println!(
                "regional: {} {}",
                regional.cert.display(),
                regional.key.display()
            );
            Ok(())
        }
        Command::Certs(args) => {
            let (writer, edge) = tls::generate_dev_certs(&args.out, &args.hostnames)?;
            println!("CA:     {}", writer.ca.display());
            println!("writer: {} {}", writer.cert.display(), writer.key.display());
            println!("edge:   {} {}", edge.cert.display(), edge.key.display());
            Ok(())
        }
        Command::Verb(_) => anyhow::bail!("a client verb is not a service"),
    }
}

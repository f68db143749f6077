//! The Setpoint writer: the one process that commits configuration changes.
//!
//! Layout:
//! - [`store`]: the revisioned key-value store trait and its two implementations (etcd, embedded).
//! - [`model`]: the versioned config model on a store — commits, reads, history, schemas,
//!   retention. Knows nothing of HTTP.
//! - [`api`]: the REST API (axum) over the model, plus health, readiness, metrics and OpenAPI.
//! - [`metrics`]: the Prometheus registry and the store-timing wrapper.
//! - [`replication`]: the QUIC link to edge nodes, fed by the store's watch.
//! - [`leader`]: which replica leads (an etcd lease on one key) and the fence on every commit.
//! - [`jobs`]: the jobs only the leader runs (bootstrap, audit sealer, retention, compaction,
//!   the rollouts' stage clock), and the periodic audit chain verification every replica runs.
//! - [`rollouts`]: the stage clock — rollouts moved by time and the fleet's health.
//! - [`alerts`]: the writer's own alert rules over its fleet view, and their webhook.
//! - [`console`]: the web console's files (`writer/ui/`), embedded and served at `/ui`.
//! - [`error`]: the one error vocabulary (code → HTTP status).
//!
//! [`run`] serves a writer on a listener until a shutdown future resolves.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod console;
pub mod error;
pub mod fault;
pub mod jobs;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod replication;
pub mod rollouts;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use setpoint_core::retention::Rule;
use tokio::net::TcpListener;

use setpoint_cluster::gossip::{Gossip, GossipConfig, GossipError};

pub use crate::api::auth::AuthMode;
use crate::leader::fence::FencedStore;
use crate::leader::{LeaderInfo, Leadership, Role};
use crate::metrics::{MeteredStore, Metrics};
use crate::model::{Configs, SharedClock};
use crate::replication::{ReplicationConfig, ReplicationError, ReplicationServer};
use crate::store::{Store, StoreError};

/// Where the writer keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `etcd://HOST:PORT[,HOST:PORT...]`
    Etcd { endpoints: Vec<String> },
    /// `embedded://DIR`
    Embedded { dir: PathBuf },
}

impl StoreSpec {
    pub fn parse(input: &str) -> Result<StoreSpec, String> {
        if let Some(rest) = input.strip_prefix("etcd://") {
            let endpoints: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            if endpoints.is_empty() {
                return Err(format!(
                    "{input:?} names no etcd endpoint: expected etcd://HOST:PORT[,HOST:PORT...]"
                ));
            }
            return Ok(StoreSpec::Etcd { endpoints });
        }
        if let Some(dir) = input.strip_prefix("embedded://") {
            if dir.is_empty() {
                return Err("embedded:// needs a directory: embedded://DIR".to_owned());
            }
            return Ok(StoreSpec::Embedded {
                dir: PathBuf::from(dir),
            });
        }
        Err(format!(
            "unknown store {input:?}: expected etcd://HOST:PORT[,...] or embedded://DIR"
        ))
    }
}

/// Environments a new store starts with.
pub const DEFAULT_ENVIRONMENTS: &[&str] = &["dev", "staging", "prod"];

/// Everything a writer needs, already validated.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub store: StoreSpec,
    /// Key prefix of all Setpoint data in the store.
    pub store_prefix: String,
    /// Deadline of each store call; past it the request is a 503.
    pub store_timeout: Duration,
    pub retention: Vec<Rule>,
    /// How often history retention and store compaction run.
    pub compaction_interval: Duration,
    /// Store revisions kept for watch resumption when compacting the store's own log.
    pub keep_store_revisions: i64,
    /// The QUIC endpoint edges replicate from; `None` serves no edges.
    pub replication: Option<ReplicationConfig>,
    /// Gossip membership; `None` runs without (`/api/edges` then shows replication state only).
    pub gossip: Option<GossipConfig>,
    /// Environments created on first start (when none of that name was ever defined).
    pub default_environments: Vec<String>,
    /// The secret provider for `${secret:…}` and whether reads may resolve secrets.
    pub secrets: setpoint_secrets::serve::SecretAccess,
    /// Whether callers need a key ([`AuthMode::AnonymousLoopback`] only for `setpoint dev`).
    pub auth_mode: AuthMode,
    /// On a store without accounts: the admin's key is read from here (instead of generated).
    pub admin_key_file: Option<PathBuf>,
    /// On a store without accounts: where the generated admin key is written (mode 0600).
    pub bootstrap_key_path: PathBuf,
    /// Serve `/metrics` without a key.
    pub metrics_public: bool,
    /// Audit records older than this are removed (sealed ones only; an anchor keeps the rest of
    /// the chain verifiable). `None` keeps them all.
    pub audit_retention: Option<Duration>,
    /// How often the audit sealer runs.
    pub audit_seal_interval: Duration,
    /// This writer's id among replicas (default: `writer-` + the advertised host:port).
    pub id: Option<String>,
    /// The URL standbys send clients to when this writer leads (default: `http://` + the
    /// listen address, filled in by [`run`]).
    pub advertise: Option<String>,
    /// Lifetime of the leader's etcd lease: a dead leader is replaced within about this long.
    pub lease_ttl: Duration,
    /// Where the model's "now" comes from (version and audit times, retention by age).
    pub clock: SharedClock,
    /// The writer's own alert rules over its fleet view and their webhook (with replication).
    pub alerts: alerts::AlertConfig,
    /// How often every replica verifies the audit chain (`setpoint_audit_chain_problems`);
    /// `None`: only on `GET /api/audit/verify`.
    pub audit_verify_interval: Option<Duration>,
}

impl WriterConfig {
    pub fn new(store: StoreSpec) -> WriterConfig {
        WriterConfig {
            store,
            store_prefix: "/setpoint/".to_owned(),
            store_timeout: Duration::from_secs(2),
            retention: Vec::new(),
            compaction_interval: Duration::from_secs(60),
            keep_store_revisions: 100_000,
            replication: None,
            gossip: None,
            default_environments: DEFAULT_ENVIRONMENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            secrets: setpoint_secrets::serve::SecretAccess::none(),
            auth_mode: AuthMode::Required,
            admin_key_file: None,
            bootstrap_key_path: PathBuf::from("setpoint-admin.key"),
            metrics_public: false,
            audit_retention: None,
            audit_seal_interval: Duration::from_millis(500),
            id: None,
            advertise: None,
            lease_ttl: leader::DEFAULT_LEASE_TTL,
            clock: SharedClock::default(),
            alerts: alerts::AlertConfig::default(),
            audit_verify_interval: Some(Duration::from_secs(3600)),
        }
    }

    /// Who this writer is in the leader key.
    fn identity(&self) -> LeaderInfo {
        let url = self.advertise.clone().unwrap_or_default();
        let id = self.id.clone().unwrap_or_else(|| {
            let host = url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .trim_end_matches('/');
            format!("writer-{host}")
        });
        LeaderInfo { id, url }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("cannot start gossip: {0}")]
    Gossip(#[from] GossipError),
    #[error("cannot create the default environments: {0}")]
    Environments(error::Error),
    #[error("cannot create the admin account: {0}")]
    Bootstrap(error::Error),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

pub async fn open_store(spec: &StoreSpec, timeout: Duration) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match spec {
        StoreSpec::Etcd { endpoints } => {
            Arc::new(store::etcd::EtcdStore::connect(endpoints, timeout).await?)
        }
        StoreSpec::Embedded { dir } => Arc::new(store::embedded::EmbeddedStore::open(dir)?),
    })
}

/// A started writer: store, model, background tasks, replication endpoint and gossip member.
/// [`Writer::router`] is its REST API, to serve alone ([`run`]) or beside an edge (`setpoint dev`).
pub struct Writer {
    state: api::AppState,
    /// Starts the leader-only jobs (audit sealer, retention, compaction, bootstrap) on each
    /// term and stops them when it ends.
    leader_jobs: tokio::task::JoinHandle<()>,
    stop_leader_jobs: tokio::sync::oneshot::Sender<()>,
    /// The campaign loop (`None` on the embedded store, whose writer is the sole leader).
    campaign: Option<tokio::task::JoinHandle<()>>,
    /// The unfenced store, to resign leadership on shutdown.
    raw_store: Arc<dyn Store>,
    replication: Option<ReplicationServer>,
    feed: tokio::task::JoinHandle<()>,
    /// Alert evaluation, its webhook sender and the audit chain check: aborted on shutdown.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Writer {
    pub async fn start(config: WriterConfig) -> Result<Writer, RunError> {
        let metrics = Arc::new(Metrics::new()?);
        let raw_store = open_store(&config.store, config.store_timeout).await?;
        let identity = config.identity();
        // The embedded store admits one process (it locks its file), so its writer leads alone;
        // on etcd the replicas elect one by a lease (see `leader`).
        let (leadership, campaign) = match &config.store {
            StoreSpec::Embedded { .. } => (Leadership::sole(&config.store_prefix, identity), None),
            StoreSpec::Etcd { .. } => {
                let (leadership, task) = Leadership::campaign(
                    raw_store.clone(),
                    &config.store_prefix,
                    identity,
                    config.lease_ttl,
                );
                (leadership, Some(task))
            }
        };
        let metered: Arc<dyn Store> =
            Arc::new(MeteredStore::new(raw_store.clone(), metrics.clone()));
        // Every transaction the writer makes goes through the fence; the feed only reads.
        let store: Arc<dyn Store> = Arc::new(FencedStore::new(metered.clone(), leadership.clone()));
        // The writer's read model: every config in memory, fed by the store's watch. It serves
        // environment-aware reads here and the replication stream to edges.
        let limits = config
            .replication
            .as_ref()
            .map(|r| r.limits)
            .unwrap_or_default();
        let (feed, feed_task) = replication::feed::start(metered, &config.store_prefix, limits);
        let replication = match &config.replication {
            Some(replication) => Some(ReplicationServer::start(
                replication,
                feed.clone(),
                metrics.clone(),
                campaign.is_some().then(|| standby_flag(&leadership)),
            )?),
            None => None,
        };
        let gossip = match &config.gossip {
            Some(gossip) => Some(Arc::new(Gossip::start(gossip.clone()).await?)),
            None => None,
        };
        let configs = Arc::new(Configs::new(
            store,
            &config.store_prefix,
            config.clock.0.clone(),
        ));
        // The store may still be starting (etcd launched beside us): wait for the first election
        // round as long as startup writes are retried.
        if tokio::time::timeout(STARTUP_RETRY, leadership.settled())
            .await
            .is_err()
        {
            tracing::warn!("no leader decided yet; starting as a standby");
        }
        // Leading from the start: bootstrap now, so a broken admin key file still stops the
        // start. A standby bootstraps (in the background) when it becomes leader.
        let bootstrapped = match leadership.status() {
            status if status.role() == Role::Leader => {
                jobs::bootstrap(&configs, &config).await?;
                Some(status.term_revision())
            }
            _ => None,
        };
        let (stop_leader_jobs, stop) = tokio::sync::oneshot::channel();
        let leader_jobs = tokio::spawn(jobs::leader_jobs(
            leadership.clone(),
            configs.clone(),
            replication.as_ref().map(|r| r.replication().clone()),
            metrics.clone(),
            config.clone(),
            bootstrapped,
            stop,
        ));
        let mut background = Vec::new();
        let alerts = replication.as_ref().map(|r| {
            let (alerts, tasks) = alerts::Alerts::start(
                &config.alerts,
                r.replication().clone(),
                metrics.clone(),
                leadership.me().id.clone(),
            );
            background.extend(tasks);
            alerts
        });
        if let Some(every) = config.audit_verify_interval {
            background.push(tokio::spawn(jobs::verify_audit_chain(
                configs.clone(),
                metrics.clone(),
                every,
            )));
        }
        let state = api::AppState {
            configs,
            metrics,
            alerts,
            replication: replication.as_ref().map(|r| r.replication().clone()),
            gossip,
            feed,
            secrets: config.secrets.clone(),
            leadership: leadership.clone(),
            auth: Arc::new(api::auth::AuthState::new(
                config.auth_mode,
                config.metrics_public,
            )),
        };
        if config.auth_mode == AuthMode::AnonymousLoopback {
            tracing::warn!(
                "anonymous access from loopback addresses is allowed (setpoint dev): requests \
                 without a key from 127.0.0.0/8 or ::1 get every right"
            );
        }
        tracing::info!(store = ?config.store, id = leadership.me().id, role = leadership.status().role().as_str(), "writer started");
        Ok(Writer {
            state,
            leader_jobs,
            stop_leader_jobs,
            campaign,
            raw_store,
            replication,
            feed: feed_task,
            background,
        })
    }

    /// The connection counters its server reports in `/metrics`.
    pub fn connection_metrics(&self) -> setpoint_serving::server::ConnectionMetrics {
        self.state.metrics.connections.clone()
    }

    /// The REST API (with `LIST` mapped to `GET …?list=true`).
    pub fn router(&self) -> axum::Router {
        // The rewrite must run before routing (axum routes only standard methods), so the whole
        // router goes behind it as one service.
        let inner = api::router(self.state.clone());
        axum::Router::new().fallback_service(tower::util::MapRequest::new(
            inner,
            api::rewrite_list_method,
        ))
    }

    /// Stops the background tasks, the replication endpoint and gossip; returns once the store
    /// is released (the embedded store can be opened again right away).
    pub async fn shutdown(self) {
        let Writer {
            state,
            leader_jobs,
            stop_leader_jobs,
            campaign,
            raw_store,
            replication,
            feed,
            background,
        } = self;
        for task in &background {
            task.abort();
        }
        for task in background {
            let _ = task.await;
        }
        // It stops its jobs and waits for them, so nothing holds the store afterwards.
        let _ = stop_leader_jobs.send(());
        let _ = leader_jobs.await;
        if let Some(campaign) = campaign {
            campaign.abort();
            let _ = campaign.await;
            // Hand over now rather than after the lease's TTL.
            state.leadership.resign(raw_store.as_ref()).await;
        }
        if let Some(replication) = replication {
            replication.shutdown().await;
        }
        feed.abort();
        let _ = feed.await;
        if let Some(gossip) = state.gossip
            && let Ok(gossip) = Arc::try_unwrap(gossip)
        {
            gossip.shutdown().await;
        }
        tracing::info!("writer stopped");
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c, with the connection limits of
/// `setpoint_serving::server`) until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    connections: setpoint_serving::server::ConnectionMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    setpoint_serving::server::serve(
        listener,
        router,
        shutdown,
        setpoint_serving::server::Limits::default(),
        connections,
    )
    .await
}

/// Serves a writer on `listener` until `shutdown` resolves, then drains in-flight requests and
/// stops it.
pub async fn run(
    listener: TcpListener,
    config: WriterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_ready(listener, config, shutdown, || {}).await
}

/// [`run`], calling `ready` once the writer has opened its store and is about to serve (the
/// binary tells systemd then).
pub async fn run_with_ready(
    listener: TcpListener,
    config: WriterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(),
) -> Result<(), RunError> {
    let mut config = config;
    if config.advertise.is_none() {
        config.advertise = Some(default_advertise(listener.local_addr()?));
    }
    let writer = Writer::start(config).await?;
    ready();
    let served = serve(
        listener,
        writer.router(),
        writer.connection_metrics(),
        shutdown,
    )
    .await;
    writer.shutdown().await;
    Ok(served?)
}

/// `http://` + the listen address; a wildcard address (`0.0.0.0`) is replaced by the host's
/// name, which other machines can resolve, unlike the wildcard.
pub fn default_advertise(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("http://{host}:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// How long a starting writer keeps retrying its first store writes.
pub(crate) const STARTUP_RETRY: Duration = Duration::from_secs(30);

/// Runs `step` until it succeeds, retrying store outages with backoff for [`STARTUP_RETRY`].
pub(crate) async fn startup_with_retries<T, F, Fut>(mut step: F) -> Result<T, RunError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RunError>>,
{
    let deadline = tokio::time::Instant::now() + STARTUP_RETRY;
    let mut backoff = Duration::from_millis(200);
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(RunError::Environments(e) | RunError::Bootstrap(e))
                if e.code == error::ErrorCode::StoreUnavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "store not reachable yet; retrying startup");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(other) => return Err(other),
        }
    }
}

pub(crate) async fn compaction_loop(
    configs: Arc<Configs>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
) {
    let mut ticker = tokio::time::interval(config.compaction_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut compacted_to = 0;
    loop {
        ticker.tick().await;
        match configs.compact_history(&config.retention).await {
            Ok(removed) => metrics.history_removed.inc_by(removed as u64),
            Err(err) => tracing::warn!(%err, "history retention pass failed; will retry"),
        }
        if let Some(keep) = config.audit_retention {
            match configs
                .audit()
                .compact(configs.store().as_ref(), keep)
                .await
            {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "audit retention removed old records"),
                Err(err) => tracing::warn!(%err, "audit retention pass failed; will retry"),
            }
        }
        match configs
            .compact_store(config.keep_store_revisions, compacted_to)
            .await
        {
            Ok(Some(revision)) => compacted_to = revision,
            Ok(None) => {}
            Err(err) => tracing::debug!(%err, "store compaction skipped"),
        }
    }
}

/// Whether this writer stands by, as a flag replication sessions pass on to edges (so they look
/// for the leader); follows the leadership until the writer stops.
fn standby_flag(leadership: &Leadership) -> tokio::sync::watch::Receiver<bool> {
    let mut status = leadership.subscribe();
    let standby = |status: &leader::Status| status.role() == Role::Standby;
    let (flag, receiver) = tokio::sync::watch::channel(standby(&status.borrow_and_update()));
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let now = standby(&status.borrow_and_update());
            flag.send_if_modified(|held| std::mem::replace(held, now) != now);
            if flag.is_closed() {
                return;
            }
        }
    });
    receiver
}

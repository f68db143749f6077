//! The Setpoint edge node: holds every config in memory and serves reads and watches.
//!
//! Layout:
//! - [`holder`]: the current [`setpoint_core::snapshot::Snapshot`] behind an atomic pointer, the
//!   ring of recent applied batches, staleness, and the broadcast of applied batches.
//! - [`disk`]: the on-disk snapshot (atomic save, validated load) and the persister task.
//! - [`watch`]: the watch hub — prefix index, shared per-prefix event lists, bounded per-watcher
//!   queues with cut-off and reset, resumption from the holder's ring.
//! - [`http`]: `/api/config` reads and SSE watches, `/healthz`, `/readyz`, `/metrics`.
//! - [`grpc`]: the `setpoint.edge.v1.Edge` service (Get, List, Watch), health and reflection.
//! - [`session`]: the `Session` RPC of the SDKs; [`clients`]: the registry of connected
//!   application instances (deliveries, receipts, NACKs), reported to the writer.
//! - [`auth`]: who is calling — API keys checked against the accounts in the snapshot, the
//!   [`auth::Caller`] every handler asks per path and action, the per-source failure limit.
//! - [`error`]: the one error vocabulary both APIs answer with; [`metrics`]: the registry.
//!
//! [`Edge`] owns a holder, a hub and the metrics; [`run`] serves HTTP and gRPC (h2c) on one
//! listener. The replication subscriber (another module) drives the holder.
//! - [`subscriber`]: the QUIC link to the writer that feeds the holder (snapshot, then batches).
//! - [`relay`]: with `--replication-listen`, this edge serves the same protocol to other edges
//!   (`setpoint-replication`'s sessions, fed from the holder).
//!
//! Architecture invariant: the edge never talks to etcd; everything it serves comes from the
//! writer's replication stream (or its own disk snapshot after a restart) — including the
//! accounts it checks keys against.

pub mod auth;
pub mod clients;
pub mod disk;
pub mod error;
pub mod grpc;
pub mod holder;
pub mod http;
pub mod metrics;
pub mod rollouts;
pub mod session;
pub mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use setpoint_core::snapshot::Snapshot;
use tokio::net::TcpListener;

use crate::holder::{HolderOptions, SnapshotHolder};
use crate::metrics::Metrics;
use crate::watch::{HubCounters, WatchHub};

/// How an edge is set up.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Where `snapshot.bin` lives; `None` keeps nothing on disk.
    pub data_dir: Option<PathBuf>,
    /// Applied batches kept for watch resumption.
    pub ring_capacity: usize,
    /// About how many bytes of values those batches may hold (the oldest go first).
    pub ring_bytes: usize,
    /// Messages a watcher's queue holds before it is cut off with a reset.
    pub watcher_queue: usize,
    /// The secret provider for `${secret:…}` and whether reads may resolve secrets (then for
    /// callers with `secrets:read` only).
    pub secrets: setpoint_secrets::serve::SecretAccess,
    /// Whether callers need a key ([`auth::AuthMode::AnonymousLoopback`] only in `setpoint dev`).
    pub auth: auth::AuthMode,
    /// Serve `/metrics` without a key.
    pub metrics_public: bool,
    /// This edge's id, as the writer, `/api/edges` and `/api/clients` show it.
    pub node_id: String,
    /// Client sessions (heartbeats).
    pub session: session::SessionConfig,
    /// How long a watch resuming from a revision this edge has not reached waits for it before
    /// answering "behind" (503 / UNAVAILABLE); it never answers with older state.
    pub resume_wait: std::time::Duration,
}

impl Default for EdgeConfig {
    fn default() -> EdgeConfig {
        EdgeConfig {
            data_dir: None,
            ring_capacity: holder::DEFAULT_RING_CAPACITY,
            ring_bytes: holder::DEFAULT_RING_BYTES,
            watcher_queue: watch::DEFAULT_QUEUE_CAPACITY,
            secrets: setpoint_secrets::serve::SecretAccess::none(),
            auth: auth::AuthMode::Required,
            metrics_public: false,
            node_id: "edge".into(),
            session: session::SessionConfig::default(),
            resume_wait: watch::RESUME_WAIT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("cannot set up the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

struct Inner {
    config: EdgeConfig,
    holder: Arc<SnapshotHolder>,
    hub: WatchHub,
    metrics: Arc<Metrics>,
    auth: auth::AuthState,
    clients: Arc<clients::ClientRegistry>,
    /// Flips to true when [`run`] starts shutting down: watch streams end so connections drain.
    closing: tokio::sync::watch::Sender<bool>,
    /// Moves when the staleness or the closing flag changed ([`Edge::signals`]).
    signals: Arc<std::sync::atomic::AtomicU64>,
}

/// One edge: its holder, watch hub and metrics. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

/// Moves [`Edge::signals`] and wakes every watcher when the staleness or the closing flag
/// changed; ends with the edge.
async fn nudge_on_signals(
    mut staleness: tokio::sync::watch::Receiver<bool>,
    mut closing: tokio::sync::watch::Receiver<bool>,
    signals: Arc<std::sync::atomic::AtomicU64>,
    hub: watch::Nudger,
) {
    loop {
        let changed = tokio::select! {
            changed = staleness.changed() => changed,
            changed = closing.changed() => changed,
        };
        if changed.is_err() {
            return;
        }
        signals.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if !hub.nudge_all() {
            return;
        }
    }
}

impl Edge {
    /// An edge starting from its disk snapshot when `data_dir` holds a valid one (marked stale
    /// and ready), else empty (stale, not ready). Needs a tokio runtime (starts the hub task).
    pub fn new(config: EdgeConfig) -> Result<Edge, EdgeError> {
        let loaded = config.data_dir.as_deref().and_then(disk::load_or_log);
        let ready = loaded.is_some();
        let holder = SnapshotHolder::with_options(
            loaded.unwrap_or_else(Snapshot::empty),
            true,
            HolderOptions {
                ring_capacity: config.ring_capacity,
                ring_bytes: config.ring_bytes,
                ready,
            },
        );
        Edge::with_holder(config, holder)
    }

    /// An edge around an existing holder (`config.data_dir` and `ring_capacity` are then only
    /// used by [`run`]'s persister).
    pub fn with_holder(config: EdgeConfig, holder: Arc<SnapshotHolder>) -> Result<Edge, EdgeError> {
        let counters = HubCounters::new()?;
        let client_counters = clients::ClientCounters::new()?;
        let metrics = Arc::new(Metrics::new(&counters, &client_counters)?);
        let clients = Arc::new(clients::ClientRegistry::new(
            config.node_id.clone(),
            client_counters,
        ));
        let hub = WatchHub::start(holder.clone(), config.watcher_queue, counters);
        let auth = auth::AuthState::new(config.auth, config.metrics_public);
        let closing = tokio::sync::watch::channel(false).0;
        let signals = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(nudge_on_signals(
            holder.staleness(),
            closing.subscribe(),
            signals.clone(),
            hub.nudger(),
        ));
        Ok(Edge {
            inner: Arc::new(Inner {
                config,
                auth,
                clients,
                holder,
                hub,
                metrics,
                closing,
                signals,
            }),
        })
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.inner.config
    }

    pub fn holder(&self) -> &Arc<SnapshotHolder> {
        &self.inner.holder
    }

    pub fn hub(&self) -> &WatchHub {
        &self.inner.hub
    }

    /// The client registry: sessions and SSE streams that named their instance.
    pub fn clients(&self) -> &Arc<clients::ClientRegistry> {
        &self.inner.clients
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The auth mode, the accounts cache and the failure limiter.
    pub fn auth(&self) -> &auth::AuthState {
        &self.inner.auth
    }

    /// The secret provider and whether reads may resolve secrets.
    pub fn secrets(&self) -> &setpoint_secrets::serve::SecretAccess {
        &self.inner.config.secrets
    }

    /// Completes when the edge starts shutting down; long-lived streams end with it.
    pub fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.inner.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// True once the edge started shutting down.
    pub fn is_closing(&self) -> bool {
        *self.inner.closing.borrow()
    }

    /// A number that moves whenever the staleness or the closing flag changed, with every
    /// watcher woken after it moved: a session checks both flags only when it did, instead of
    /// polling two futures of its own on every wake-up.
    pub fn signals(&self) -> u64 {
        self.inner
            .signals
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Ends every watch stream (what [`run`] does when its shutdown signal completes).
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// HTTP reads, SSE watches and operations endpoints, with a JSON 404 fallback, behind the
    /// authentication layer.
    pub fn http_router(&self) -> Router {
        self.authenticated(http::routes(self.clone()).fallback(http::not_found))
    }

    /// The gRPC services: `setpoint.edge.v1.Edge`, `grpc.health.v1.Health` and reflection.
    /// Without the authentication layer (see [`Edge::router`]): every `Edge` call then answers
    /// `UNAUTHENTICATED`.
    pub fn grpc_routes(&self) -> tonic::service::Routes {
        grpc::routes(self.clone())
    }

    /// HTTP and gRPC together, for one port, behind the authentication layer. Unknown gRPC
    /// methods answer `UNIMPLEMENTED`, other unknown paths the JSON 404. Serve it with connect
    /// info (`into_make_service_with_connect_info::<SocketAddr>`, as [`run`] does): failures are
    /// counted per source address, and anonymous loopback access needs the peer.
    pub fn router(&self) -> Router {
        let inner = self.authenticated(
            http::routes(self.clone())
                .merge(self.grpc_routes().into_axum_router())
                .fallback(fallback),
        );
        // `LIST` (as on the writer) becomes `GET …?list=true` before routing; a plain read of
        // an entry is answered before all that (`http::fast`).
        let listed =
            tower::util::MapRequest::new(inner, setpoint_serving::listing::rewrite_list_method);
        Router::new().fallback_service(http::fast::FastRead::new(self.clone(), listed))
    }

    fn authenticated(&self, router: Router) -> Router {
        router.layer(auth::Authenticate::new(self.clone()))
    }
}

async fn fallback(request: Request) -> Response {
    if auth::is_grpc(request.headers()) {
        tonic::Status::unimplemented("no such gRPC method on this edge").into_http()
    } else {
        http::not_found().await.into_response()
    }
}

/// Serves `edge.router()` on `listener` with each connection's peer address (HTTP/1.1 and h2c,
/// with the connection limits of `setpoint_serving::server`)
/// until `shutdown` completes, then drains connections. With a `data_dir`, also runs the
/// persister, which saves once more after the server stops.
pub async fn run(
    listener: TcpListener,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EdgeError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let persister = edge.config().data_dir.clone().map(|dir| {
        let mut stopped = stopped.clone();
        tokio::spawn(disk::persist(edge.holder().clone(), dir, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let closing = edge.clone();
    let served = setpoint_serving::server::serve(
        listener,
        edge.router(),
        async move {
            shutdown.await;
            closing.close();
        },
        setpoint_serving::server::Limits::default(),
        edge.metrics().connections.clone(),
    )
    .await;
    let _ = stop.send(true);
    if let Some(persister) = persister
        && let Err(error) = persister.await
    {
        tracing::error!(%error, "the persister task failed");
    }
    Ok(served?)
}
pub mod relay;
pub mod subscriber;

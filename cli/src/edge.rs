//! `setpoint edge`: flags → an edge node following its upstreams over QUIC (and, regional,
//! serving other edges), with gossip.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use std::sync::Arc;

use setpoint_cluster::gossip::{Gossip, GossipConfig, NodeInfo, Role, catch_up_peers};
use setpoint_cluster::tls::TlsFiles;
use setpoint_edge_node::auth::AuthMode;
use setpoint_edge_node::holder::SnapshotHolder;
use setpoint_edge_node::relay::{RelayConfig, RelayServer};
use setpoint_edge_node::subscriber::{self, Peer, PeerFinder, SubscriberConfig};
use setpoint_edge_node::{Edge, EdgeConfig};
use setpoint_replication::feed::FeedLimits;
use tokio_util::sync::CancellationToken;

use crate::{TlsArgs, shutdown_signal};

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// The upstreams to replicate from (QUIC over UDP), `HOST:PORT[,HOST:PORT...]`, in order of
    /// preference: regional edges first, the writer (or its replicas) last. After a failure
    /// the edge tries the next one.
    #[arg(
        long,
        visible_alias = "upstream",
        env = "SETPOINT_WRITER",
        value_delimiter = ',',
        required = true
    )]
    writer: Vec<String>,
    /// Name every upstream's certificate must carry (default: the host part of each --writer).
    #[arg(long, env = "SETPOINT_WRITER_NAME")]
    writer_name: Option<String>,
    /// Also serve the replication protocol to other edges on this UDP address (a regional
    /// edge): the same frames as the writer, from this edge's memory.
    #[arg(long, env = "SETPOINT_REPLICATION_LISTEN")]
    replication_listen: Option<SocketAddr>,
    /// The server certificate this edge shows downstream edges (default: --cert; it must be
    /// valid for serving, for the name those edges dial).
    #[arg(long, env = "SETPOINT_REPLICATION_CERT", requires = "replication_key")]
    replication_cert: Option<PathBuf>,
    /// The key of --replication-cert.
    #[arg(long, env = "SETPOINT_REPLICATION_KEY", requires = "replication_cert")]
    replication_key: Option<PathBuf>,
    /// Address to serve HTTP, SSE and gRPC on (one port).
    #[arg(long, env = "SETPOINT_LISTEN", default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Where the edge keeps its snapshot, so a restart serves at once.
    #[arg(long, env = "SETPOINT_DATA_DIR", default_value = "./.setpoint-edge")]
    data_dir: PathBuf,
    /// This edge's id in the fleet (default: edge-<listen address>).
    #[arg(long, env = "SETPOINT_ID")]
    id: Option<String>,
    /// Region reported to the writer and the fleet.
    #[arg(long, env = "SETPOINT_REGION", default_value = "default")]
    region: String,
    /// UDP address for gossip membership (a concrete IP; peers reach this node there). With
    /// gossip, an edge whose upstreams are all unreachable catches up from the most advanced
    /// live regional edge (one with --replication-listen) of its --region.
    #[arg(long, env = "SETPOINT_GOSSIP")]
    gossip: Option<SocketAddr>,
    /// Gossip seeds to join, comma-separated (usually the writer's --gossip address).
    #[arg(long, env = "SETPOINT_JOIN", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// Serve /metrics without an API key.
    #[arg(long, env = "SETPOINT_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Heartbeat interval of client sessions, in milliseconds; a client silent for three
    /// intervals is disconnected.
    #[arg(long, env = "SETPOINT_HEARTBEAT_MS", default_value_t = 5000)]
    heartbeat_ms: u64,
    /// Applied batches kept in memory so watchers and sessions can resume by delta; a client
    /// further behind gets a reset (the full state of its prefixes).
    #[arg(long, env = "SETPOINT_RING_CAPACITY", default_value_t = setpoint_edge_node::holder::DEFAULT_RING_CAPACITY)]
    ring_capacity: usize,
    /// About how many bytes of values those batches may hold; the oldest go first.
    #[arg(long, env = "SETPOINT_RING_BYTES", default_value_t = setpoint_edge_node::holder::DEFAULT_RING_BYTES)]
    ring_bytes: usize,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    secrets: crate::secrets::SecretArgs,
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("edge-{}", args.listen));
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let tls = args
        .tls
        .files()
        .context("an edge needs --ca, --cert and --key (see `setpoint certs`)")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Every caller needs a key here; `secrets:read` decides who may resolve secrets.
    let secrets = setpoint_secrets::serve::SecretAccess {
        provider: args.secrets.provider()?,
        allowed: true,
    };
    let edge = Edge::new(EdgeConfig {
        data_dir: Some(args.data_dir.clone()),
        secrets,
        auth: AuthMode::Required,
        metrics_public: args.metrics_public,
        node_id: id.clone(),
        ring_capacity: args.ring_capacity.max(1),
        ring_bytes: args.ring_bytes,
        session: setpoint_edge_node::session::SessionConfig {
            heartbeat: std::time::Duration::from_millis(args.heartbeat_ms.max(100)),
        },
        ..EdgeConfig::default()
    })?;
    let gossip = match args.gossip {
        Some(bind) => Some(Arc::new(
            Gossip::start(GossipConfig {
                bind,
                join: args.join.clone(),
                info: NodeInfo {
                    id: id.clone(),
                    role: Role::Edge,
                    region: args.region.clone(),
                    http_addr: args.listen.to_string(),
                    replication_addr: args
                        .replication_listen
                        .map(|listen| advertised(listen, bind).to_string()),
                },
            })
            .await
            .context("cannot start gossip")?,
        )),
        None => None,
    };
    // Only a regional edge's revision is news to the fleet (peers catch up from regional edges
    // only): at 100,000 hosts, every leaf gossiping its revision would crowd the regional edges'
    // statuses out of the packets.
    let revisions = gossip
        .as_ref()
        .filter(|_| args.replication_listen.is_some())
        .map(|gossip| tokio::spawn(tell_revisions(edge.holder().clone(), gossip.clone())));
    let relay = match args.replication_listen {
        Some(listen) => {
            let mut files = tls.clone();
            if let (Some(cert), Some(key)) = (&args.replication_cert, &args.replication_key) {
                files.cert = cert.clone();
                files.key = key.clone();
            }
            let config = RelayConfig {
                listen,
                tls: files,
                limits: FeedLimits::default(),
                node_id: id.clone(),
            };
            let registry = edge.metrics().registry();
            Some(
                RelayServer::start(&config, edge.holder().clone(), registry)
                    .context("cannot serve replication to other edges")?,
            )
        }
        None => None,
    };
    let stop = CancellationToken::new();
    let mut config = subscriber_config(
        &args.writer,
        args.writer_name.clone(),
        tls,
        &id,
        &args.region,
        args.listen,
    );
    config.relay = relay.as_ref().map(|r| r.relay().clone());
    config.peers = gossip
        .as_ref()
        .map(|gossip| peer_finder(gossip.clone(), args.region.clone()));
    let follower = spawn_subscriber(config, &edge, &stop);
    tracing::info!(%id, listen = %args.listen, writers = ?args.writer, "edge starting");
    // systemd (Type=notify) learns the edge is ready when it has a snapshot to serve.
    let readiness = {
        let holder = edge.holder().clone();
        tokio::spawn(async move {
            crate::notify::edge_ready(&holder).await;
            tracing::info!(revision = holder.revision(), "edge ready");
            crate::notify::tell("READY=1\nSTATUS=serving");
        })
    };
    let served = setpoint_edge_node::run(listener, edge, crate::stopping(shutdown_signal())).await;
    readiness.abort();
    stop.cancel();
    let _ = follower.await;
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    if let Some(revisions) = revisions {
        revisions.abort();
    }
    if let Some(gossip) = gossip.and_then(|gossip| Arc::try_unwrap(gossip).ok()) {
        gossip.shutdown().await;
    }
    Ok(served?)
}

/// Where peers dial this edge's relay: the listen address, or the gossip IP with its port when
/// it listens on every interface.
fn advertised(listen: SocketAddr, gossip: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(gossip.ip(), listen.port())
    } else {
        listen
    }
}

/// Tells the fleet every revision this regional edge applies (gossip coalesces them).
async fn tell_revisions(holder: Arc<SnapshotHolder>, gossip: Arc<Gossip>) {
    let mut changes = holder.changes();
    loop {
        gossip.set_revision(holder.revision());
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The regional edges of `region` gossip says hold at least this edge's revision.
fn peer_finder(gossip: Arc<Gossip>, region: String) -> PeerFinder {
    PeerFinder::new(move |revision| {
        catch_up_peers(&gossip.members(), &region, revision)
            .into_iter()
            .filter_map(|member| {
                Some(Peer {
                    addr: member.info.replication_addr?,
                    id: member.info.id,
                })
            })
            .collect()
    })
}

pub fn subscriber_config(
    writers: &[String],
    writer_name: Option<String>,
    tls: TlsFiles,
    id: &str,
    region: &str,
    http_addr: SocketAddr,
) -> SubscriberConfig {
    let mut config = SubscriberConfig::new("", tls, id);
    config.upstreams = writers
        .iter()
        .map(|w| w.trim().to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    config.server_name = writer_name;
    config.region = region.to_owned();
    config.http_addr = http_addr.to_string();
    config
}

pub fn spawn_subscriber(
    config: SubscriberConfig,
    edge: &Edge,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (holder, stop) = (edge.holder().clone(), stop.clone());
    let mut config = config;
    config.clients = Some(edge.clients().clone());
    tokio::spawn(async move {
        if let Err(err) = subscriber::run(config, holder, stop.cancelled_owned()).await {
            tracing::error!(%err, "the replication subscriber stopped");
        }
    })
}

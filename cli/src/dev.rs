//! `setpoint dev`: the writer (embedded store) and one edge in one process, on one port.
//!
//! TCP `--listen` serves the writer's REST API; `GET …?watch=true` (SSE), `POST /api/receipts`
//! (SSE clients' acknowledgements) and gRPC go to the edge,
//! and the edge's own HTTP routes are under `/edge/…` (e.g. `/edge/api/config/…`,
//! `/edge/healthz`, `/edge/metrics`). The edge follows the writer over real QUIC with mutual TLS
//! on UDP at the same address, with dev certificates generated into `DATA_DIR/certs`.
//!
//! Writer and edge both run in anonymous-loopback mode: a request without a key from a loopback
//! address gets every right; a request with a key (e.g. `DATA_DIR/admin.key`) gets that key's
//! grants, and a bad key is a 401 even from loopback. The server passes each connection's peer
//! address to both.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::header;
use clap::Args;
use setpoint_cluster::tls::{self, TlsFiles};
use setpoint_edge_node::auth::AuthMode;
use setpoint_edge_node::{Edge, EdgeConfig};
use setpoint_writer::replication::ReplicationConfig;
use setpoint_writer::{StoreSpec, Writer, WriterConfig};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{CommonArgs, shutdown_signal};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to serve on: REST, SSE and gRPC on TCP, replication on UDP.
    #[arg(long, env = "SETPOINT_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Directory of the embedded store, the dev certificates and the edge's snapshot.
    #[arg(long, env = "SETPOINT_DATA_DIR", default_value = "./.setpoint")]
    data_dir: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

/// Writer and edge certificates in `dir`, generated on first use.
fn dev_certs(dir: &std::path::Path) -> anyhow::Result<(TlsFiles, TlsFiles)> {
    let files = |role: &str| TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{role}.pem")),
        key: dir.join(format!("{role}.key")),
    };
    let (writer, edge) = (files("writer"), files("edge"));
    if [&writer.ca, &writer.cert, &writer.key, &edge.cert, &edge.key]
        .iter()
        .all(|p| p.exists())
    {
        return Ok((writer, edge));
    }
    Ok(tls::generate_dev_certs(dir, &[])?)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let (writer_tls, edge_tls) =
        dev_certs(&args.data_dir.join("certs")).context("cannot make dev certificates")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut config = WriterConfig::new(StoreSpec::Embedded {
        dir: args.data_dir.clone(),
    });
    // Anonymous callers from loopback get every right here, `secrets:read` included, and it
    // says so; callers with a key get their grants (writer and edge alike).
    let client_retention = args.common.client_retention;
    args.common.apply(&mut config, true)?;
    config.auth_mode = setpoint_writer::AuthMode::AnonymousLoopback;
    config.bootstrap_key_path = args.data_dir.join("admin.key");
    if config.secrets.provider.kind() != "none" {
        tracing::warn!(
            provider = config.secrets.provider.kind(),
            "setpoint dev resolves ${{secret:…}} references for every caller without a key on loopback (anonymous access in dev mode)"
        );
    }
    let secrets = config.secrets.clone();
    let metrics_public = config.metrics_public;
    let mut replication = ReplicationConfig::new(args.listen, writer_tls);
    replication.client_retention = client_retention;
    config.replication = Some(replication);
    config.advertise = Some(setpoint_writer::default_advertise(args.listen));
    let writer = Writer::start(config).await?;

    let edge = Edge::new(EdgeConfig {
        data_dir: Some(args.data_dir.join("edge")),
        secrets,
        auth: AuthMode::AnonymousLoopback,
        metrics_public,
        node_id: "dev-edge".into(),
        ..EdgeConfig::default()
    })?;
    let loopback = if args.listen.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), args.listen.port())
    } else {
        args.listen
    };
    let stop = CancellationToken::new();
    let follower = crate::edge::spawn_subscriber(
        crate::edge::subscriber_config(
            &[loopback.to_string()],
            None,
            edge_tls,
            "dev-edge",
            "dev",
            args.listen,
        ),
        &edge,
        &stop,
    );
    let persister = edge_persister(&edge, &args.data_dir.join("edge"), &stop);

    let app = compose(writer.router(), &edge);
    tracing::info!(
        listen = %args.listen,
        data_dir = %args.data_dir.display(),
        console = %format!("http://{}/ui", args.listen),
        "setpoint dev: writer + edge"
    );
    let closing = edge.clone();
    let served = setpoint_writer::serve(listener, app, writer.connection_metrics(), async move {
        shutdown_signal().await;
        closing.close();
    })
    .await;
    stop.cancel();
    let _ = follower.await;
    let _ = persister.await;
    writer.shutdown().await;
    Ok(served?)
}

fn edge_persister(
    edge: &Edge,
    dir: &std::path::Path,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (holder, dir, stop) = (edge.holder().clone(), dir.to_path_buf(), stop.clone());
    tokio::spawn(setpoint_edge_node::disk::persist(
        holder,
        dir,
        stop.cancelled_owned(),
    ))
}

/// One router for the shared port: gRPC and `?watch=true` to the edge, `/edge/…` to the edge's
/// HTTP routes, everything else to the writer.
fn compose(writer: Router, edge: &Edge) -> Router {
    let edge_all = edge.router();
    let edge_http = Router::new().nest("/edge", edge.http_router());
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let target = if is_grpc(&request) || is_watch(&request) || is_receipt(&request) {
            edge_all.clone()
        } else if request.uri().path().starts_with("/edge/") {
            edge_http.clone()
        } else {
            writer.clone()
        };
        target.oneshot(request)
    }))
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `POST /api/receipts`: SSE clients acknowledging to the edge that serves their stream.
fn is_receipt(request: &Request) -> bool {
    request.uri().path() == "/api/receipts"
}

fn is_watch(request: &Request) -> bool {
    request.method() == axum::http::Method::GET
        && request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch"))
}

//! `ceiling` scenario: a server to measure the edge against. It answers the edge's `Edge/Get`
//! gRPC call and its `GET /api/config/{path}` route with the same bodies, built per request by
//! the same code the edge uses (`entry_message`, `EntryBody`, the ETag and revision headers),
//! over a plain `HashMap` — no API key check, no request metrics, no snapshot, no rollout view —
//! on the same server loop (`setpoint_serving::server`, same limits). What an edge reaches as a
//! share of this server's rate on the same machine, in the same run, is what its serving
//! machinery costs; the rest is hyper, h2, tonic and the load generator.
//!
//! Every other `Edge` method answers `UNIMPLEMENTED`. It serves until killed (the benchmark
//! script stops it by PID).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use futures::Stream;
use setpoint_core::ConfigPath;
use setpoint_core::snapshot::Entry;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_server::{Edge as EdgeApi, EdgeServer};
use setpoint_serving::body::EntryBody;
use tonic::{Request, Status};

#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Address to listen on (HTTP/1.1 and h2c on one port, like an edge).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The entry every benchmark reads.
    #[arg(long, default_value = "/bench/key")]
    pub path: String,
    /// Its JSON value.
    #[arg(long, default_value = r#"{"host": "db.internal", "port": 5432}"#)]
    pub value: String,
    /// Further entries (`/bench/fill/{i}`), so the map is not trivially small.
    #[arg(long, default_value_t = 1_000)]
    pub entries: usize,
}

type Map = Arc<HashMap<String, Arc<Entry>>>;

const REVISION_HEADER: HeaderName = HeaderName::from_static("x-setpoint-revision");
const REVISION: i64 = 1;

fn entry(path: &str, value: serde_json::Value) -> anyhow::Result<Entry> {
    Ok(Entry {
        path: ConfigPath::parse(path).with_context(|| format!("{path} is not a config path"))?,
        value: setpoint_core::ParsedValue::from_request(value, None)
            .context("the value is not a config value")?,
        version: 1,
        revision: REVISION,
        updated_at: "2026-01-01T00:00:00Z".to_owned(),
    })
}

pub async fn run(args: CeilingArgs) -> anyhow::Result<()> {
    let value: serde_json::Value =
        serde_json::from_str(&args.value).context("--value is not JSON")?;
    let mut map = HashMap::with_capacity(args.entries + 1);
    for i in 0..args.entries {
        let path = format!("/bench/fill/{i}");
        map.insert(path.clone(), Arc::new(entry(&path, value.clone())?));
    }
    map.insert(args.path.clone(), Arc::new(entry(&args.path, value)?));
    let map: Map = Arc::new(map);

    let grpc = tonic::service::Routes::from(Router::new())
        .add_service(EdgeServer::new(Ceiling { map: map.clone() }))
        .into_axum_router();
    let router = Router::new()
        .route("/api/config/{*path}", get(http_get))
        .with_state(map)
        .merge(grpc);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    let registry = prometheus::Registry::new();
    let connections = setpoint_serving::server::ConnectionMetrics::register(&registry, "ceiling")?;
    setpoint_serving::server::serve(
        listener,
        router,
        std::future::pending(),
        setpoint_serving::server::Limits::default(),
        connections,
    )
    .await?;
    Ok(())
}

/// The edge's answer to a plain GET of an entry: the entry body, its ETag, the revision.
async fn http_get(
    State(map): State<Map>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let key = format!("/{path}");
    let Some(entry) = map.get(&key) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = axum::Json(EntryBody::of(entry)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        setpoint_serving::conditional::etag(entry.version),
    );
    headers.insert(REVISION_HEADER, HeaderValue::from(REVISION));
    response
}

struct Ceiling {
    map: Map,
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl EdgeApi for Ceiling {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<tonic::Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        let entry = self
            .map
            .get(&request.path)
            .ok_or_else(|| Status::not_found("no such entry"))?;
        Ok(tonic::Response::new(pb::GetResponse {
            entry: Some(setpoint_edge_node::grpc::entry_message(entry)),
            revision: REVISION,
            stale: false,
        }))
    }

    async fn list(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<tonic::Response<pb::ListResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    async fn resolve(
        &self,
        _: Request<pb::ResolveRequest>,
    ) -> Result<tonic::Response<pb::ResolveResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    async fn export(
        &self,
        _: Request<pb::ExportRequest>,
    ) -> Result<tonic::Response<pb::ExportResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    type WatchStream = Streamed<pb::WatchResponse>;

    async fn watch(
        &self,
        _: Request<pb::WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    type SessionStream = Streamed<pb::ServerMessage>;

    async fn session(
        &self,
        _: Request<tonic::Streaming<pb::ClientMessage>>,
    ) -> Result<tonic::Response<Self::SessionStream>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }
}

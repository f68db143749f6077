//! The gRPC API: `setpoint.edge.v1.Edge` (Get, List, Watch) over the same snapshot and watch hub
//! as HTTP, plus `grpc.health.v1.Health` and server reflection.
//!
//! Values travel as JSON text of what the REST API shows (`to_api_value()`), so both APIs agree
//! byte for byte on meaning. Errors come from [`crate::error`]: a bad path is `INVALID_ARGUMENT`,
//! a missing one `NOT_FOUND`, an environment `UNIMPLEMENTED` until environments land. Watch maps
//! hub messages one to one: one `WatchResponse` per commit batch, or a reset with the state.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use setpoint_core::ConfigPath;
use setpoint_core::snapshot::{Entry, Event, EventKind};
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_server::{Edge as EdgeApi, EdgeServer};
use tonic::{Request, Response, Status};

use crate::Edge;
use crate::error::ApiError;
use crate::watch::WatchMessage;

/// The gRPC routes, without a fallback (see [`crate::Edge::router`]).
pub fn routes(edge: Edge) -> tonic::service::Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        reporter.set_serving::<EdgeServer<Service>>().await;
    });
    let mut routes = tonic::service::Routes::from(axum::Router::new())
        .add_service(EdgeServer::new(Service { edge }))
        .add_service(health);
    match tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(setpoint_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
    {
        Ok(reflection) => routes = routes.add_service(reflection),
        Err(error) => tracing::error!(%error, "gRPC reflection is unavailable"),
    }
    routes
}

pub struct Service {
    edge: Edge,
}

fn parse_path(raw: &str, what: &str) -> Result<ConfigPath, Status> {
    if raw.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    ConfigPath::parse(raw).map_err(|e| ApiError::from(e).into())
}

fn json_text(value: &setpoint_core::ParsedValue) -> String {
    // Serializing a JSON value or a string cannot fail.
    serde_json::to_string(&value.api_value()).unwrap_or_default()
}

pub fn entry_message(entry: &Entry) -> pb::Entry {
    pb::Entry {
        path: entry.path.as_str().to_owned(),
        value: json_text(&entry.value),
        format: entry.value.format().as_str().to_owned(),
        version: entry.version,
        revision: entry.revision,
        updated_at: entry.updated_at.clone(),
    }
}

fn event_message(event: &Event) -> pb::Event {
    let kind = match event.kind {
        EventKind::Put => pb::event::Type::Put,
        EventKind::Delete => pb::event::Type::Delete,
    };
    pb::Event {
        r#type: kind as i32,
        path: event.path.as_str().to_owned(),
        old_value: event.old.as_ref().map(|e| json_text(&e.value)),
        new_value: event.new.as_ref().map(|e| json_text(&e.value)),
        version: event.version,
        revision: event.revision,
        format: event
            .new
            .as_ref()
            .or(event.old.as_ref())
            .map(|e| e.value.format().as_str().to_owned())
            .unwrap_or_default(),
    }
}

pub fn watch_response(message: &WatchMessage) -> pb::WatchResponse {
    match message {
        WatchMessage::Batch(batch) => pb::WatchResponse {
            revision: batch.revision,
            events: batch
                .grpc
                .get_or_init(|| batch.events.iter().map(event_message).collect())
                .to_vec(),
            reset: false,
            state: Vec::new(),
        },
        WatchMessage::Reset(reset) => pb::WatchResponse {
            revision: reset.revision,
            events: Vec::new(),
            reset: true,
            state: reset.entries.iter().map(|e| entry_message(e)).collect(),
        },
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EdgeApi for Service {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        if request.env.is_some() {
            return Err(ApiError::environments_unsupported().into());
        }
        let path = parse_path(&request.path, "path")?;
        let snapshot = self.edge.holder().current();
        let entry = snapshot
            .get(&path)
            .ok_or_else(|| Status::from(ApiError::not_found(format!("{path} holds no value"))))?;
        if let Some(version) = request.version
            && version != entry.version
        {
            return Err(ApiError::version_not_held(path.as_str(), version).into());
        }
        Ok(Response::new(pb::GetResponse {
            entry: Some(entry_message(entry)),
            revision: snapshot.revision(),
            stale: self.edge.holder().is_stale(),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let request = request.into_inner();
        let prefix = if request.prefix.trim().is_empty() || request.prefix == "/" {
            ConfigPath::root()
        } else {
            parse_path(&request.prefix, "prefix")?
        };
        let snapshot = self.edge.holder().current();
        let children = snapshot.children(&prefix);
        if children.is_empty() && !prefix.is_root() {
            return Err(ApiError::not_found(format!("{prefix} has no children")).into());
        }
        let entries = if request.recursive {
            snapshot
                .below(&prefix)
                .filter(|e| e.path != prefix)
                .map(|e| entry_message(e))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::ListResponse {
            children,
            entries,
            revision: snapshot.revision(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let request = request.into_inner();
        if request.env.is_some() {
            return Err(ApiError::environments_unsupported().into());
        }
        if request.prefixes.is_empty() {
            return Err(Status::invalid_argument(
                "prefixes is empty: name at least one prefix (\"/\" for everything)",
            ));
        }
        let prefixes = request
            .prefixes
            .iter()
            .map(|p| {
                if p == "/" {
                    Ok(ConfigPath::root())
                } else {
                    parse_path(p, "a prefix")
                }
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let watcher = self.edge.hub().subscribe(prefixes, request.from_revision);
        let stream = watcher
            .into_stream()
            .take_until(self.edge.closing())
            .map(|message| Ok(watch_response(&message)));
        Ok(Response::new(Box::pin(stream)))
    }
}

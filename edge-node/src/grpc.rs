//! The gRPC API: `setpoint.edge.v1.Edge` (Get, List, Resolve, Export, Watch) over the same snapshot and watch hub
//! as HTTP, plus `grpc.health.v1.Health` and server reflection.
//!
//! Values travel as JSON text of what the REST API shows (`to_api_value()`), so both APIs agree
//! byte for byte on meaning. Errors come from [`crate::error`]: a bad path is `INVALID_ARGUMENT`,
//! a missing one `NOT_FOUND`; `Resolve` and `Export` answer what the HTTP API answers
//! (the same [`setpoint_core::read`] plan). Watch maps hub messages one to one: one
//! `WatchResponse` per commit batch, or a reset with the state; with `env` the events and the
//! state are effective values at base paths (`resolve`: `${VAR}` substituted, secrets left as
//! references), and an unknown environment is `NOT_FOUND` as for `Get`.
//!
//! Every call is for the [`Caller`] the authentication layer attached (metadata
//! `authorization: Bearer <key>`): `Get` needs `read` on the path (`PERMISSION_DENIED`
//! otherwise), `List` shows only what the caller can read, `Resolve` and `Export` plan with the
//! caller's grants, and `Watch` needs `read` on everything below each prefix; with `env`, `Get`
//! and `Watch` need it on every layer too — the base path and its override in each environment
//! of the chain, as `GET ?env=` checks it (`setpoint_core::auth::EffectiveGrants`); an open
//! watch ends with `UNAUTHENTICATED` or `PERMISSION_DENIED` when its key or grant goes away.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use setpoint_core::ConfigPath;
use setpoint_core::auth::{Action, EffectiveGrants};
use setpoint_core::env::Environments;
use setpoint_core::export::ExportFormat;
use setpoint_core::read::ReadQuery;
use setpoint_core::resolve;
use setpoint_core::snapshot::{Entry, Event, EventKind, Snapshot};
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_server::{Edge as EdgeApi, EdgeServer};
use tonic::{Request, Response, Status};

use crate::Edge;
use crate::auth::{Caller, WatchGuard};
use crate::error::{ApiError, ErrorCode};
use crate::watch::{WatchMessage, WatchSpec};

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

/// The value at `path` as the REST API shows it (account records without key hashes).
fn json_text(path: &ConfigPath, value: &setpoint_core::ParsedValue) -> String {
    // Serializing a JSON value or a string cannot fail.
    serde_json::to_string(&setpoint_core::auth::shown_value(path, value)).unwrap_or_default()
}

pub fn entry_message(entry: &Entry) -> pb::Entry {
    pb::Entry {
        path: entry.path.as_str().to_owned(),
        value: json_text(&entry.path, &entry.value),
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
        old_value: event.old.as_ref().map(|e| json_text(&e.path, &e.value)),
        new_value: event.new.as_ref().map(|e| json_text(&e.path, &e.value)),
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

/// A prefix: `""` and `"/"` are the root.
fn parse_prefix(raw: &str, what: &str) -> Result<ConfigPath, Status> {
    if raw.trim().is_empty() || raw == "/" {
        Ok(ConfigPath::root())
    } else {
        parse_path(raw, what)
    }
}

/// The prefixes of a `Watch` or a `Session`: at least one, `"/"` for everything.
pub(crate) fn watched_prefixes(raw: &[String]) -> Result<Vec<ConfigPath>, Status> {
    if raw.is_empty() {
        return Err(Status::invalid_argument(
            "prefixes is empty: name at least one prefix (\"/\" for everything)",
        ));
    }
    if raw.len() > crate::watch::MAX_PREFIXES {
        return Err(Status::invalid_argument(format!(
            "{} prefixes: one watch takes at most {}; watch a common prefix instead",
            raw.len(),
            crate::watch::MAX_PREFIXES
        )));
    }
    raw.iter()
        .map(|p| {
            if p == "/" {
                Ok(ConfigPath::root())
            } else {
                parse_path(p, "a prefix")
            }
        })
        .collect()
}

impl Service {
    /// `Get` with an environment: the effective value, without substitution, for a caller who
    /// may read every layer of it (`GET ?env=`'s rule, [`EffectiveGrants`]).
    fn get_in_environment(
        &self,
        caller: &Caller,
        snapshot: &Snapshot,
        path: &ConfigPath,
        env: &str,
        version: Option<u64>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        if version.is_some() {
            return Err(Status::invalid_argument(
                "version and env together are not supported: an effective value has no single version",
            ));
        }
        if setpoint_core::env::is_reserved(path) {
            return Err(Status::invalid_argument(format!(
                "{path} is under /env: ask for the base path with env set"
            )));
        }
        setpoint_core::read::plain_only(path).map_err(ApiError::from)?;
        let chain = Environments::from_snapshot(snapshot)
            .chain(env)
            .map_err(|e| ApiError::from(setpoint_core::read::Failure::from(e)))?;
        if let Some(missing) =
            EffectiveGrants::new(caller.grants(), &chain).missing(path, Action::Read)
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "account {} may not read {path} in environment {env}: that needs read on {path} and on its override in every environment of the chain; {missing} is not granted",
                    caller.principal.account
                ),
            )
            .into());
        }
        let effective = resolve::effective(snapshot, &chain, path).ok_or_else(|| {
            Status::from(ApiError::not_found(format!(
                "{path} holds no value in environment {env}"
            )))
        })?;
        let top = effective.sources.first();
        let entry = pb::Entry {
            path: path.as_str().to_owned(),
            value: serde_json::to_string(&effective.api_value()).unwrap_or_default(),
            format: effective.format.as_str().to_owned(),
            version: top.map_or(0, |s| s.version),
            revision: top.map_or(0, |s| s.revision),
            updated_at: top.map(|s| s.updated_at.clone()).unwrap_or_default(),
        };
        Ok(Response::new(pb::GetResponse {
            entry: Some(entry),
            revision: snapshot.revision(),
            stale: self.edge.holder().is_stale(),
        }))
    }
}

impl Service {
    /// The snapshot a call answers from: as the instance named in its `x-setpoint-instance`
    /// metadata sees it (see [`crate::rollouts::snapshot_for`]), else the edge's own.
    fn snapshot_for<T>(&self, request: &Request<T>) -> Result<crate::rollouts::Seen, Status> {
        let instance = match request.metadata().get(crate::rollouts::INSTANCE_HEADER) {
            Some(value) => Some(value.to_str().map_err(|_| {
                Status::invalid_argument(format!(
                    "{} is not ASCII",
                    crate::rollouts::INSTANCE_HEADER
                ))
            })?),
            None => None,
        };
        crate::rollouts::snapshot_for(&self.edge, instance).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl EdgeApi for Service {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let caller = Caller::of_grpc(&request)?;
        let snapshot = self.snapshot_for(&request)?;
        let request = request.into_inner();
        let path = parse_path(&request.path, "path")?;
        caller.require(&path, Action::Read)?;
        if let Some(env) = request.env.as_deref().filter(|e| !e.is_empty()) {
            return self.get_in_environment(&caller, &snapshot, &path, env, request.version);
        }
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
        let caller = Caller::of_grpc(&request)?;
        let request = request.into_inner();
        let prefix = if request.prefix.trim().is_empty() || request.prefix == "/" {
            ConfigPath::root()
        } else {
            parse_path(&request.prefix, "prefix")?
        };
        caller.require_some_below(&prefix)?;
        let grants = caller.grants();
        let snapshot = self.edge.holder().current();
        let mut children = snapshot.children(&prefix);
        setpoint_serving::listing::retain_visible_children(&mut children, &prefix, grants);
        // The listing rule as a plain HTTP GET of a prefix applies it (List has always answered
        // NOT_FOUND for a prefix with nothing visible below, and keeps doing so).
        setpoint_serving::listing::check_not_empty(&prefix, &children, false)?;
        let entries = if request.recursive {
            snapshot
                .below(&prefix)
                .filter(|e| {
                    e.path != prefix && setpoint_serving::listing::listable(&e.path, grants)
                })
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

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let caller = Caller::of_grpc(&request)?;
        let snapshot = self.snapshot_for(&request)?;
        let request = request.into_inner();
        let path = parse_prefix(&request.path, "path")?;
        let query = ReadQuery {
            env: request.env.filter(|e| !e.is_empty()),
            resolve: !request.raw,
            explain: request.explain,
            ..ReadQuery::default()
        };
        let rendered = setpoint_secrets::serve::read(
            self.edge.secrets(),
            &snapshot,
            &path,
            &query,
            caller.grants(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(pb::ResolveResponse {
            json: String::from_utf8_lossy(&rendered.body).into_owned(),
            revision: rendered.revision,
            stale: self.edge.holder().is_stale(),
        }))
    }

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportResponse>, Status> {
        let caller = Caller::of_grpc(&request)?;
        let snapshot = self.snapshot_for(&request)?;
        let request = request.into_inner();
        let prefix = parse_prefix(&request.prefix, "prefix")?;
        let format = ExportFormat::parse(&request.format).ok_or_else(|| {
            Status::invalid_argument(format!(
                "format {:?} is not one of json, yaml, dotenv, k8s-configmap, k8s-secret",
                request.format
            ))
        })?;
        let query = ReadQuery {
            env: request.env.filter(|e| !e.is_empty()),
            format: Some(format),
            name: request.name.filter(|n| !n.is_empty()),
            ..ReadQuery::default()
        };
        let rendered = setpoint_secrets::serve::read(
            self.edge.secrets(),
            &snapshot,
            &prefix,
            &query,
            caller.grants(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(pb::ExportResponse {
            content_type: rendered.content_type.to_owned(),
            body: rendered.body,
            revision: rendered.revision,
            stale: self.edge.holder().is_stale(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = Caller::of_grpc(&request)?;
        let request = request.into_inner();
        let prefixes = watched_prefixes(&request.prefixes)?;
        let env = request.env.filter(|e| !e.is_empty());
        let guard = WatchGuard::new(self.edge.clone(), caller, prefixes.clone(), env.clone())?;
        let spec = WatchSpec {
            prefixes,
            env,
            resolve: request.resolve,
        };
        let watcher = self
            .edge
            .hub()
            .resume(spec, request.from_revision, self.edge.config().resume_wait)
            .await
            .map_err(ApiError::from)?;
        let stream = guard
            .wrap(watcher.into_stream().take_until(self.edge.closing()))
            .map(|message| match message {
                Ok(message) => Ok(watch_response(&message)),
                Err(error) => Err(Status::from(error)),
            });
        Ok(Response::new(Box::pin(stream)))
    }

    type SessionStream = crate::session::SessionStream;

    async fn session(
        &self,
        request: Request<tonic::Streaming<pb::ClientMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let caller = Caller::of_grpc(&request)?;
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0)
            .or_else(|| request.remote_addr());
        let stream =
            crate::session::open(self.edge.clone(), caller, peer, request.into_inner()).await?;
        Ok(Response::new(stream))
    }
}

//! [`Client`]: the application's handle. Reads (`get`, `is_stale`) answer from memory and never
//! touch the network; the session task (`session.rs`) keeps that memory current.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::cache_file::CacheFile;
use crate::error::Error;
use crate::options::{Config, MAX_MESSAGE_BYTES, Options, normalize_prefix};
use crate::session::{self, Shared, Status};
use crate::store::Store;
use crate::value::{Event, Value};
use crate::watch::{self as watches, SharedRegistry, WatchHandle};

/// A Setpoint client: one session with one edge, a local copy of the configuration under its
/// prefixes, and the watches on it. Create it inside a tokio runtime; it connects in the
/// background. Dropping it stops the session too, but only [`Client::close`] waits for the cache
/// file's last write.
pub struct Client {
    shared: Arc<Shared>,
    channel: Channel,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("instance_id", &self.shared.config.instance_id)
            .field("env", &self.shared.config.env)
            .field("prefixes", &self.shared.config.prefixes)
            .field("status", &*self.shared.status.borrow())
            .finish()
    }
}

impl Client {
    /// Creates the client and starts its session task on the current tokio runtime. Usable at
    /// once: with a matching cache file, `get` serves it (stale) before any connection. Fails
    /// only on bad options or outside a tokio runtime.
    pub fn new(address: &str, options: Options) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Invalid("Client::new needs a tokio runtime".into()))?;
        let config = Config::new(address, options)?;
        let channel = {
            let _guard = runtime.enter();
            config.endpoint.connect_lazy()
        };
        Ok(Client::start(runtime, config, channel))
    }

    /// Like [`Client::new`], over an existing channel to the edge at `address`: several clients
    /// of one process (other prefixes, other environments) can share one HTTP/2 connection, each
    /// still its own session. TLS and the address in `options` are the channel's business then.
    pub fn with_channel(
        address: &str,
        channel: tonic::transport::Channel,
        options: Options,
    ) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Invalid("Client::with_channel needs a tokio runtime".into()))?;
        let config = Config::new(address, options)?;
        Ok(Client::start(runtime, config, channel))
    }

    fn start(
        runtime: tokio::runtime::Handle,
        config: Config,
        channel: tonic::transport::Channel,
    ) -> Client {
        let store = match &config.cache_path {
            Some(path) => match CacheFile::load(path, config.env.as_deref(), &config.prefixes) {
                Ok(Some(file)) => Store::from_cache(file.revision, file.entries),
                Ok(None) => Store::default(),
                Err(error) => {
                    tracing::warn!(%error, "cache file unreadable; starting empty");
                    Store::default()
                }
            },
            None => Store::default(),
        };
        let shared = Arc::new(Shared {
            config,
            store: RwLock::new(store),
            registry: SharedRegistry::default(),
            status: watch::Sender::new(Status::default()),
        });
        let cancel = CancellationToken::new();
        let task = runtime.spawn(session::run(
            shared.clone(),
            channel.clone(),
            cancel.clone(),
        ));
        Client {
            shared,
            channel,
            cancel,
            task: Mutex::new(Some(task)),
        }
    }

    /// Waits until the first sync completed (a reset, or a resumed stream, applied). Fails with
    /// [`Error::Unauthorized`] as soon as the edge refuses the token, [`Error::Timeout`] after
    /// `timeout`, [`Error::Closed`] when the client is closed meanwhile.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut status = self.shared.status.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            status.wait_for(|s| s.synced || s.refused.is_some() || s.closed),
        )
        .await;
        match waited {
            Err(_) => Err(Error::Timeout(timeout)),
            Ok(Err(_)) => Err(Error::Closed),
            Ok(Ok(s)) if s.closed => Err(Error::Closed),
            Ok(Ok(s)) if s.synced => Ok(()),
            Ok(Ok(s)) => Err(s.refused.clone().unwrap_or(Error::NotSynced)),
        }
    }

    /// The value at `path`, from memory (never a network call).
    pub fn get(&self, path: &str) -> Result<Value, Error> {
        let status = self.shared.status.borrow().clone();
        if status.closed {
            return Err(Error::Closed);
        }
        if !self.shared.config.holds(path) {
            return Err(Error::Invalid(format!(
                "{path} is outside the client's prefixes {:?}",
                self.shared.config.prefixes
            )));
        }
        let store = self.shared.store();
        if let Some(value) = store.get(path) {
            return Ok(value.clone());
        }
        if store.holds_state() {
            return Err(Error::NotFound(path.to_owned()));
        }
        Err(status.refused.unwrap_or(Error::NotSynced))
    }

    /// Calls `callback` for every change under `prefix` (which must lie under one of the
    /// client's prefixes) from now on, in revision order, one call at a time — never for the
    /// initial state. An `Err` or a panic is reported to the edge as a NACK for that path; the
    /// client and the watch go on. Callbacks run on the session task: keep them short (hand
    /// heavy work to another task), as the next update waits for them.
    pub fn watch<F, E>(&self, prefix: &str, callback: F) -> Result<WatchHandle, Error>
    where
        F: Fn(&Event) -> Result<(), E> + Send + Sync + 'static,
        E: std::fmt::Display,
    {
        if self.shared.status.borrow().closed {
            return Err(Error::Closed);
        }
        let prefix = normalize_prefix(prefix)?;
        let config = &self.shared.config;
        if !config.prefixes.iter().any(|p| watches::covers(p, &prefix)) {
            return Err(Error::Invalid(format!(
                "watch prefix {prefix} is outside the client's prefixes {:?}",
                config.prefixes
            )));
        }
        let callback = move |event: &Event| callback(event).map_err(|e| e.to_string());
        Ok(watches::add(
            &self.shared.registry,
            prefix,
            Arc::new(callback),
        ))
    }

    /// True while the values may be behind: not connected (serving a cache file, or
    /// reconnecting) or the edge reports it lost the writer.
    pub fn is_stale(&self) -> bool {
        let status = self.shared.status.borrow();
        !status.live || status.edge_stale
    }

    /// The revision of the last applied update (or of the loaded cache file).
    pub fn revision(&self) -> Option<i64> {
        self.shared.store().revision()
    }

    /// The instance id the edge knows this client by.
    pub fn instance_id(&self) -> &str {
        &self.shared.config.instance_id
    }

    /// Reads `path` through the edge's `Resolve` RPC: the effective value in the client's
    /// environment with `${VAR}` and `${secret:…}` substituted (on a prefix, the subtree as one
    /// object). The only way to read a secret: sessions never push them resolved. Answers the
    /// JSON document the HTTP API gives for `?env=…&resolve=true`.
    pub async fn resolve(&self, path: &str) -> Result<serde_json::Value, Error> {
        if self.shared.status.borrow().closed {
            return Err(Error::Closed);
        }
        let mut request = tonic::Request::new(pb::ResolveRequest {
            path: path.to_owned(),
            env: self.shared.config.env.clone(),
            raw: false,
            explain: false,
        });
        if let Some(authorization) = &self.shared.config.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        let mut client =
            EdgeClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let response = client
            .resolve(request)
            .await
            .map_err(|status| Error::from_status(&status, path))?;
        serde_json::from_str(&response.into_inner().json)
            .map_err(|e| Error::Other(format!("the edge's resolve answer is not JSON: {e}")))
    }

    /// Ends the session, stops every watch and the session task, and writes the cache file a
    /// last time. Idempotent; later calls (`get`, `watch`, ...) fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.cancel.cancel();
        let task = self.task.lock().map(|mut t| t.take()).unwrap_or_default();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "session task ended abnormally");
        }
        watches::clear(&self.shared.registry);
        self.shared.status.send_modify(|s| {
            s.closed = true;
            s.live = false;
        });
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

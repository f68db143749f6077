//! A real writer for tests: `setpoint_writer::run` in-process on `127.0.0.1:0`, on either store,
//! reached over real HTTP. Stopped (gracefully) on drop or by [`TestWriter::stop`].

use std::path::PathBuf;
use std::time::Duration;

use setpoint_writer::{StoreSpec, WriterConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::etcd::EtcdServer;

/// The store behind a test writer.
pub enum Backend {
    Embedded(tempfile::TempDir),
    Etcd(EtcdServer),
}

impl Backend {
    pub fn embedded() -> Backend {
        Backend::Embedded(tempfile::tempdir().expect("create a temp dir for the embedded store"))
    }

    pub fn etcd() -> Backend {
        Backend::Etcd(EtcdServer::start())
    }

    pub fn spec(&self) -> StoreSpec {
        match self {
            Backend::Embedded(dir) => StoreSpec::Embedded {
                dir: dir.path().to_path_buf(),
            },
            Backend::Etcd(etcd) => StoreSpec::Etcd {
                endpoints: vec![etcd.endpoint()],
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Etcd(_) => "etcd",
        }
    }

    pub fn data_dir(&self) -> Option<PathBuf> {
        match self {
            Backend::Embedded(dir) => Some(dir.path().to_path_buf()),
            Backend::Etcd(_) => None,
        }
    }
}

/// The admin key every test writer bootstraps with (the same on every start, so a writer
/// restarted on the same store still gets in). Test-only: derived from fixed bytes.
pub fn test_admin_key() -> String {
    setpoint_core::auth::new_key(&[42; 32], &[7; 9], 0, None).token
}

/// A client that sends `key` as `Authorization: Bearer`.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("header value"),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("http client")
}

pub struct TestWriter {
    pub base: String,
    /// Sends the admin key with every request.
    pub http: reqwest::Client,
    /// Keeps the admin key file alive.
    _key_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestWriter {
    /// Starts a writer with default settings on `backend`.
    pub async fn start(backend: &Backend) -> TestWriter {
        TestWriter::start_with(WriterConfig::new(backend.spec())).await
    }

    pub async fn start_with(mut config: WriterConfig) -> TestWriter {
        let key_dir = tempfile::tempdir().expect("temp dir for the admin key");
        let key_file = key_dir.path().join("admin.key");
        std::fs::write(&key_file, test_admin_key()).expect("write the admin key file");
        config.admin_key_file = Some(key_file);
        config.bootstrap_key_path = key_dir.path().join("generated.key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(err) = setpoint_writer::run(listener, config, shutdown).await {
                panic!("writer failed: {err}");
            }
        });
        let writer = TestWriter {
            base: format!("http://{addr}"),
            http: client_with_key(&test_admin_key()),
            _key_dir: key_dir,
            shutdown: Some(tx),
            task: Some(task),
        };
        let healthy = crate::wait_healthy(
            &writer.http,
            &writer.url("/healthz"),
            Duration::from_secs(10),
        )
        .await;
        assert!(
            healthy,
            "the in-process writer did not answer /healthz within 10 s"
        );
        writer
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `/api/config` + `path` (path starts with `/`).
    pub fn config_url(&self, path: &str) -> String {
        self.url(&format!("/api/config{path}"))
    }

    /// Stops the writer gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("writer task ended cleanly");
        }
    }
}

impl Drop for TestWriter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

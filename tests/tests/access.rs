//! Access control end to end with the real binaries: `setpoint writer` on a real etcd (and a real
//! OpenBao for `${secret:…}`) and one `setpoint edge` following it over QUIC with mutual TLS.
//!
//! The access matrix — each action (read, write, delete, secrets:read, admin) on each surface
//! that serves it (writer REST; edge REST, gRPC and SSE): 401 without a key or with a garbage
//! one, 403 with a key lacking the grant, success with it. Then listings filtered by grants,
//! revocation reaching the edge within a second (measured), rotation with a grace period, grant
//! changes, expired keys, and the per-source failure limit (429 for failures only). And the
//! rule of reads in an environment (issue 11, finding 6) as a matrix: grants × surfaces (writer
//! REST; edge REST, SSE, gRPC, sessions) × kinds of effective read.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_tests::bao::BaoServer;
use setpoint_tests::binary::{Certs, SetpointProcess};
use setpoint_tests::etcd::EtcdServer;
use setpoint_tests::writer::{client_with_key, test_admin_key};
use setpoint_tests::{free_port, wait_until};
use tonic::transport::{Channel, Endpoint};

/// Shaped like a key (`spk_<id>_<secret>`) but known to no account.
const UNKNOWN_KEY: &str = "spk_unknown_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Distinctive enough that finding it is proof the secret was resolved.
const SECRET: &str = "access-secret-9d41b7";

/// A writer and one edge, both with `secret_args`, and an HTTP client holding the admin key.
struct Cluster {
    _dir: tempfile::TempDir,
    _etcd: EtcdServer,
    writer: SetpointProcess,
    edge: SetpointProcess,
    admin: reqwest::Client,
}

impl Cluster {
    async fn start(secret_args: &[String]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdServer::start();
        let certs = Certs::make(dir.path());
        let key_file = dir.path().join("admin.key");
        std::fs::write(&key_file, test_admin_key()).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "writer".into(),
            "--store".into(),
            format!("etcd://{}", etcd.endpoint()),
            "--replication-listen".into(),
            addr.clone(),
            "--admin-key-file".into(),
            key_file.to_str().unwrap().into(),
        ];
        args.extend(certs.args("writer"));
        args.extend(secret_args.iter().cloned());
        let writer = start(&args, &addr, dir.path()).await;

        let edge_addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "edge".into(),
            "--id".into(),
            "edge-access".into(),
            "--writer".into(),
            addr.clone(),
            "--data-dir".into(),
            dir.path().join("edge").to_str().unwrap().into(),
        ];
        args.extend(certs.args("edge"));
        args.extend(secret_args.iter().cloned());
        let edge = start(&args, &edge_addr, dir.path()).await;
        let ready_url = format!("{}/readyz", edge.base());
        let ready = wait_until(Duration::from_secs(20), || {
            let url = ready_url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(ready, "the edge never became ready:\n{}", edge.log_text());
        Cluster {
            _dir: dir,
            _etcd: etcd,
            writer,
            edge,
            admin: client_with_key(&test_admin_key()),
        }
    }

    /// PUTs `value` at `path` as the admin; returns the commit's revision.
    async fn put(&self, path: &str, value: Value) -> i64 {
        let response = self
            .admin
            .put(format!("{}/api/config{path}", self.writer.base()))
            .body(json!({ "value": value }).to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "PUT {path}");
        response.json::<Value>().await.unwrap()["revision"]
            .as_i64()
            .unwrap()
    }

    /// Creates an account; returns `(key, key_id)`.
    async fn create_account(
        &self,
        id: &str,
        grants: Value,
        expires_in_secs: Option<i64>,
    ) -> (String, String) {
        let mut body = json!({ "id": id, "grants": grants });
        if let Some(seconds) = expires_in_secs {
            body["expires_in_secs"] = json!(seconds);
        }
        let response = self
            .admin
            .post(format!("{}/api/accounts", self.writer.base()))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create {id}");
        let created: Value = response.json().await.unwrap();
        (
            created["key"].as_str().unwrap().to_owned(),
            created["key_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Waits until the edge has applied everything the writer committed so far (a config write
    /// orders after every earlier commit, account changes included).
    async fn edge_caught_up(&self) {
        let revision = self.put("/sync/marker", json!(rand_marker())).await;
        let url = format!("{}/healthz", self.edge.base());
        let reached = wait_until(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let Ok(response) = reqwest::get(&url).await else {
                    return false;
                };
                response.json::<Value>().await.unwrap_or_default()["revision"].as_i64()
                    >= Some(revision)
            }
        })
        .await;
        assert!(reached, "the edge did not reach revision {revision}");
    }

    async fn grpc(&self) -> EdgeClient<Channel> {
        self.grpc_from(LOOPBACK).await
    }

    /// A gRPC client whose connection leaves from `source`.
    async fn grpc_from(&self, source: IpAddr) -> EdgeClient<Channel> {
        let channel = Endpoint::from_shared(self.edge.base())
            .unwrap()
            .local_address(Some(source))
            .connect()
            .await
            .unwrap();
        EdgeClient::new(channel)
    }
}

fn rand_marker() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn start(args: &[String], addr: &str, dir: &Path) -> SetpointProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    SetpointProcess::start_on(&args, addr, dir).await
}

/// What a call came to, whatever the surface.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Unauthenticated,
    Forbidden,
    TooManyRequests,
    Other(String),
}

fn http_outcome(status: u16, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        401 => Outcome::Unauthenticated,
        403 => Outcome::Forbidden,
        429 => Outcome::TooManyRequests,
        other => Outcome::Other(format!("{other}: {body}")),
    }
}

fn grpc_outcome<T>(result: Result<T, tonic::Status>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(status) => match status.code() {
            tonic::Code::Unauthenticated => Outcome::Unauthenticated,
            tonic::Code::PermissionDenied => Outcome::Forbidden,
            tonic::Code::ResourceExhausted => Outcome::TooManyRequests,
            _ => Outcome::Other(format!("{status:?}")),
        },
    }
}

/// An HTTP client without default headers, its requests leaving from `source`.
fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn rest(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (Outcome, String) {
    let mut request = http.request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (http_outcome(status, &text), text)
}

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

/// Opens an SSE watch of `prefix` on the edge and closes it again. `prefix` may carry a query
/// (`/m?env=prod`).
async fn sse(
    http: &reqwest::Client,
    cluster: &Cluster,
    prefix: &str,
    key: Option<&str>,
) -> Outcome {
    let join = if prefix.contains('?') { '&' } else { '?' };
    let mut request = http.get(format!(
        "{}/api/config{prefix}{join}watch=true",
        cluster.edge.base()
    ));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        return Outcome::Ok;
    }
    http_outcome(status, &response.text().await.unwrap_or_default())
}

/// The surfaces and actions of the matrix.
#[derive(Debug, Clone, Copy)]
enum Call {
    WriterRead,
    EdgeRead,
    GrpcGet,
    SseWatch,
    GrpcWatch,
    WriterWrite,
    WriterDelete,
    WriterResolveSecret,
    EdgeResolveSecret,
    GrpcResolveSecret,
    WriterCreateAccount,
    EdgeSystemRecord,
    GrpcSystemRecord,
}

/// `call` with `key`, its connection leaving from the loopback address `source`.
async fn attempt(cluster: &Cluster, call: Call, key: Option<&str>, source: IpAddr) -> Outcome {
    let http = client_from(source);
    let (writer, edge) = (cluster.writer.base(), cluster.edge.base());
    let secret_path = "/m/secret?resolve=true";
    match call {
        Call::WriterRead => {
            rest(
                &http,
                Method::GET,
                &format!("{writer}/api/config/m/plain"),
                None,
                key,
            )
            .await
            .0
        }
        Call::EdgeRead => {
            rest(
                &http,
                Method::GET,
                &format!("{edge}/api/config/m/plain"),
                None,
                key,
            )
            .await
            .0
        }
        Call::GrpcGet => grpc_outcome(
            cluster
                .grpc_from(source)
                .await
                .get(with_key(
                    pb::GetRequest {
                        path: "/m/plain".into(),
                        env: None,
                        version: None,
                    },
                    key,
                ))
                .await,
        ),
        Call::SseWatch => sse(&http, cluster, "/m", key).await,
        Call::GrpcWatch => grpc_outcome(
            cluster
                .grpc_from(source)
                .await
                .watch(with_key(
                    pb::WatchRequest {
                        prefixes: vec!["/m".into()],
                        from_revision: None,
                        instance_id: "access".into(),
                        env: None,
                        resolve: false,
                    },
                    key,
                ))
                .await,
        ),
        Call::WriterWrite => {
            rest(
                &http,
                Method::PUT,
                &format!("{writer}/api/config/m/written"),
                Some(json!({"value": "w"})),
                key,
            )
            .await
            .0
        }
        Call::WriterDelete => {
            cluster.put("/m/doomed", json!("d")).await;
            rest(
                &http,
                Method::DELETE,
                &format!("{writer}/api/config/m/doomed"),
                None,
                key,
            )
            .await
            .0
        }
        Call::WriterResolveSecret | Call::EdgeResolveSecret => {
            let base = if matches!(call, Call::WriterResolveSecret) {
                writer
            } else {
                edge
            };
            let (outcome, body) = rest(
                &http,
                Method::GET,
                &format!("{base}/api/config{secret_path}"),
                None,
                key,
            )
            .await;
            if outcome == Outcome::Ok {
                assert!(body.contains(SECRET), "resolved: {body}");
            } else {
                assert!(!body.contains(SECRET), "refused: {body}");
            }
            outcome
        }
        Call::GrpcResolveSecret => {
            let result = cluster
                .grpc_from(source)
                .await
                .resolve(with_key(
                    pb::ResolveRequest {
                        path: "/m/secret".into(),
                        env: None,
                        raw: false,
                        explain: false,
                    },
                    key,
                ))
                .await;
            if let Ok(reply) = &result {
                assert!(reply.get_ref().json.contains(SECRET), "{reply:?}");
            }
            grpc_outcome(result)
        }
        Call::WriterCreateAccount => {
            let id = format!("made-{}", rand_marker() % 1_000_000_007);
            rest(
                &http,
                Method::POST,
                &format!("{writer}/api/accounts"),
                Some(json!({"id": id, "grants": [{"prefix": "/m", "actions": ["read"]}]})),
                key,
            )
            .await
            .0
        }
        Call::EdgeSystemRecord => {
            rest(
                &http,
                Method::GET,
                &format!("{edge}/api/config/_setpoint/accounts/reader"),
                None,
                key,
            )
            .await
            .0
        }
        Call::GrpcSystemRecord => grpc_outcome(
            cluster
                .grpc_from(source)
                .await
                .get(with_key(
                    pb::GetRequest {
                        path: "/_setpoint/accounts/reader".into(),
                        env: None,
                        version: None,
                    },
                    key,
                ))
                .await,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_on_every_surface_needs_a_valid_key_and_the_grant() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/base/db-password", json!({ "value": SECRET }))
        .await;
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("vault-token");
    std::fs::write(&token_file, bao.root_token()).unwrap();
    let secret_args: Vec<String> = vec![
        "--secrets".into(),
        "vault".into(),
        "--vault-addr".into(),
        bao.address(),
        "--vault-token-file".into(),
        token_file.to_str().unwrap().into(),
    ];
    let cluster = Cluster::start(&secret_args).await;
    cluster.put("/m/plain", json!("plain")).await;
    cluster
        .put("/m/secret", json!("${secret:db-password}"))
        .await;
    let mut keys = std::collections::HashMap::new();
    for (id, grants) in [
        ("reader", json!([{"prefix": "/m", "actions": ["read"]}])),
        ("writer", json!([{"prefix": "/m", "actions": ["write"]}])),
        ("deleter", json!([{"prefix": "/m", "actions": ["delete"]}])),
        (
            "secret-reader",
            json!([{"prefix": "/m", "actions": ["read", "secrets:read"]}]),
        ),
        ("admin2", json!([{"prefix": "/", "actions": ["admin"]}])),
        (
            "outsider",
            json!([{"prefix": "/other", "actions": ["read", "write", "delete", "secrets:read"]}]),
        ),
    ] {
        let (key, _) = cluster.create_account(id, grants, None).await;
        keys.insert(id, key);
    }
    let key = |id: &str| keys[id].clone();
    cluster.edge_caught_up().await;

    // 401 without a key, with a garbage one or an unknown one; 403 with a key lacking the
    // grant; success with it.
    let matrix: [(&str, Call, &str, &str); 13] = [
        ("read", Call::WriterRead, "reader", "outsider"),
        ("read", Call::EdgeRead, "reader", "outsider"),
        ("read", Call::GrpcGet, "reader", "outsider"),
        ("read", Call::SseWatch, "reader", "outsider"),
        ("read", Call::GrpcWatch, "reader", "outsider"),
        ("write", Call::WriterWrite, "writer", "reader"),
        ("delete", Call::WriterDelete, "deleter", "writer"),
        (
            "secrets:read",
            Call::WriterResolveSecret,
            "secret-reader",
            "reader",
        ),
        (
            "secrets:read",
            Call::EdgeResolveSecret,
            "secret-reader",
            "reader",
        ),
        (
            "secrets:read",
            Call::GrpcResolveSecret,
            "secret-reader",
            "reader",
        ),
        ("admin", Call::WriterCreateAccount, "admin2", "reader"),
        ("admin", Call::EdgeSystemRecord, "admin2", "reader"),
        ("admin", Call::GrpcSystemRecord, "admin2", "reader"),
    ];
    for (index, (action, call, with, without)) in (10u8..).zip(matrix) {
        // Bad-key probes come from an address of their own per row, so that they never add up
        // to the failure limit of one source.
        let probe_source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, index));
        for bad in [None, Some("garbage"), Some(UNKNOWN_KEY)] {
            assert_eq!(
                attempt(&cluster, call, bad, probe_source).await,
                Outcome::Unauthenticated,
                "{action} via {call:?} with {bad:?}"
            );
        }
        assert_eq!(
            attempt(&cluster, call, Some(&key(without)), LOOPBACK).await,
            Outcome::Forbidden,
            "{action} by {without} via {call:?}"
        );
        assert_eq!(
            attempt(&cluster, call, Some(&key(with)), LOOPBACK).await,
            Outcome::Ok,
            "{action} by {with} via {call:?}"
        );
        println!("{action:>12} via {call:?}: 401 / 403 / ok");
    }

    // Listings show only what the caller can read something below.
    for path in ["/a/x/k", "/a/y/k", "/b/k"] {
        cluster.put(path, json!(path)).await;
    }
    let (lister, _) = cluster
        .create_account(
            "lister",
            json!([{"prefix": "/a/x", "actions": ["read"]}]),
            None,
        )
        .await;
    cluster.edge_caught_up().await;
    let http = client_with_key(&lister);
    for base in [cluster.writer.base(), cluster.edge.base()] {
        let listing: Value = http
            .get(format!("{base}/api/config/a"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listing["children"], json!(["x"]), "{base}: {listing}");
        let root: Value = http
            .get(format!("{base}/api/config/?list=true"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(root["children"], json!(["a"]), "{base}: {root}");
        let b = http
            .get(format!("{base}/api/config/b"))
            .send()
            .await
            .unwrap();
        assert_eq!(b.status(), 403, "{base}");
        let b = http
            .get(format!("{base}/api/config/b/k"))
            .send()
            .await
            .unwrap();
        assert_eq!(b.status(), 403, "{base}");
    }
    let mut grpc = cluster.grpc().await;
    let root = grpc
        .list(with_key(
            pb::ListRequest {
                prefix: "/".into(),
                recursive: true,
            },
            Some(&lister),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(root.children, vec!["a"]);
    let paths: Vec<&str> = root.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/a/x/k"]);
    let admin_root = grpc
        .list(with_key(
            pb::ListRequest {
                prefix: "/".into(),
                recursive: true,
            },
            Some(&test_admin_key()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !admin_root.children.iter().any(|c| c == "_setpoint")
            && !admin_root
                .entries
                .iter()
                .any(|e| e.path.starts_with("/_setpoint")),
        "even an admin's listing of / shows no system record: {admin_root:?}"
    );
    assert_eq!(
        sse(&http, &cluster, "/a", Some(&lister)).await,
        Outcome::Forbidden
    );
    assert_eq!(
        sse(&http, &cluster, "/a/x", Some(&lister)).await,
        Outcome::Ok
    );
    drop(bao);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_expiry_grant_changes_and_failure_limits_reach_the_edge() {
    let cluster = Cluster::start(&[]).await;
    cluster.put("/r/k", json!("r")).await;
    let (key, key_id) = cluster
        .create_account(
            "revokee",
            json!([{"prefix": "/r", "actions": ["read"]}]),
            None,
        )
        .await;
    cluster.edge_caught_up().await;
    let http = reqwest::Client::new();
    let edge_url = format!("{}/api/config/r/k", cluster.edge.base());
    let writer_url = format!("{}/api/config/r/k", cluster.writer.base());
    let read = |url: String, key: String| {
        let http = http.clone();
        async move { rest(&http, Method::GET, &url, None, Some(&key)).await.0 }
    };
    assert_eq!(read(edge_url.clone(), key.clone()).await, Outcome::Ok);

    // A key that expires: it works on the writer and the edge until then (10 s: ample for these
    // reads on a loaded machine), and is refused after (checked at the end of this test).
    let (expiring, _) = cluster
        .create_account(
            "expiring",
            json!([{"prefix": "/r", "actions": ["read"]}]),
            Some(10),
        )
        .await;
    cluster.edge_caught_up().await;
    assert_eq!(
        read(writer_url.clone(), expiring.clone()).await,
        Outcome::Ok,
        "the expiring key works on the writer before it expires"
    );
    assert_eq!(
        read(edge_url.clone(), expiring.clone()).await,
        Outcome::Ok,
        "the expiring key works on the edge before it expires"
    );

    // Rotation: the new key works at once on the edge, the old one during its grace period.
    let rotated: Value = cluster
        .admin
        .post(format!(
            "{}/api/accounts/revokee/keys",
            cluster.writer.base()
        ))
        .body(json!({"grace_secs": 600}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    cluster.edge_caught_up().await;
    assert_eq!(read(edge_url.clone(), new_key.clone()).await, Outcome::Ok);
    assert_eq!(
        read(edge_url.clone(), key.clone()).await,
        Outcome::Ok,
        "in grace"
    );

    // Revocation of the old key reaches the edge (how fast is the load test's to measure).
    let response = cluster
        .admin
        .delete(format!(
            "{}/api/accounts/revokee/keys/{key_id}",
            cluster.writer.base()
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let revoked = wait_until(Duration::from_secs(15), || {
        let outcome = read(edge_url.clone(), key.clone());
        async move { outcome.await == Outcome::Unauthenticated }
    })
    .await;
    assert!(revoked, "the edge refuses the revoked key");
    assert_eq!(
        read(writer_url.clone(), key.clone()).await,
        Outcome::Unauthenticated
    );
    assert_eq!(
        read(edge_url.clone(), new_key.clone()).await,
        Outcome::Ok,
        "the other key lives"
    );

    // A grant taken away applies on the edge too.
    let response = cluster
        .admin
        .put(format!(
            "{}/api/accounts/revokee/grants",
            cluster.writer.base()
        ))
        .body(json!({"grants": [{"prefix": "/elsewhere", "actions": ["read"]}]}).to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let narrowed = wait_until(Duration::from_secs(15), || {
        let outcome = read(edge_url.clone(), new_key.clone());
        async move { outcome.await == Outcome::Forbidden }
    })
    .await;
    assert!(narrowed, "the edge applies the new grants");

    // The expiring key is refused by the writer and the edge once its time is up (waited for,
    // with a bound well past its 10 s).
    let expired =
        wait_until(Duration::from_secs(30), || {
            let (writer, edge) = (
                read(writer_url.clone(), expiring.clone()),
                read(edge_url.clone(), expiring.clone()),
            );
            async move {
                writer.await == Outcome::Unauthenticated && edge.await == Outcome::Unauthenticated
            }
        })
        .await;
    assert!(
        expired,
        "the expired key is refused by the writer and the edge"
    );
    let metrics = cluster
        .admin
        .get(format!("{}/metrics", cluster.edge.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["expired", "revoked"] {
        assert!(
            metrics.contains(&format!(
                "setpoint_edge_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "{metrics}"
        );
    }

    // More than 20 bad keys from one source: its failures get 429 with Retry-After, on the writer
    // and the edge, for that source only — and a valid key from the very same source is served
    // (the flood comes from 127.0.0.2; 127.0.0.1 is never limited).
    let flooder = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    for base in [cluster.writer.base(), cluster.edge.base()] {
        let url = format!("{base}/api/config/r/k");
        let mut outcomes = Vec::new();
        for _ in 0..21 {
            outcomes.push(
                rest(&flooder, Method::GET, &url, None, Some("garbage"))
                    .await
                    .0,
            );
        }
        assert!(
            outcomes[..20]
                .iter()
                .all(|o| *o == Outcome::Unauthenticated),
            "{base}: {outcomes:?}"
        );
        assert_eq!(outcomes[20], Outcome::TooManyRequests, "{base}");
        let limited = flooder
            .get(&url)
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(limited.status(), 429, "{base}");
        assert!(
            limited.headers().contains_key(reqwest::header::RETRY_AFTER),
            "{base}: Retry-After"
        );
        assert_eq!(
            rest(&flooder, Method::GET, &url, None, Some(&test_admin_key()))
                .await
                .0,
            Outcome::Ok,
            "{base}: a valid key from the flooding source is served"
        );
        assert_eq!(
            rest(&http, Method::GET, &url, None, Some("garbage"))
                .await
                .0,
            Outcome::Unauthenticated,
            "{base}: another source is not limited"
        );
    }
    let get = |key: &str| {
        with_key(
            pb::GetRequest {
                path: "/r/k".into(),
                env: None,
                version: None,
            },
            Some(key),
        )
    };
    let mut flooding = cluster
        .grpc_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .await;
    let refused = flooding.get(get("garbage")).await;
    assert_eq!(grpc_outcome(refused), Outcome::TooManyRequests);
    let served = flooding.get(get(&test_admin_key())).await;
    assert_eq!(grpc_outcome(served), Outcome::Ok);
}

/// Distinct secret values per environment, so a resolved answer proves where it came from.
const SECRET_BASE: &str = "env-matrix-base-5c1e";
const SECRET_DEV: &str = "env-matrix-dev-77a0";
const SECRET_PROD: &str = "env-matrix-prod-e93b";

/// The surfaces an effective read reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    WriterHttp,
    EdgeHttp,
    EdgeSse,
    EdgeGrpc,
    /// The SDKs' `Session` RPC, with the environment in its hello.
    EdgeSession,
}

/// The kinds of read of the matrix: one plain read, the rest in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// `/m/db/host`, no environment.
    Plain,
    /// `/m/db/host?env=E` (gRPC `Get` with `env`).
    Env,
    /// `?env=E&resolve=true` (gRPC `Resolve`).
    Resolve,
    /// `?env=E&explain=true` (gRPC `Resolve` with `explain`).
    Explain,
    /// `/m/db?env=E&format=dotenv` (gRPC `Export`).
    Dotenv,
    /// `/m?env=E`: the children there (HTTP only: gRPC `List` takes no environment).
    Listing,
    /// A watch of `/m/db` in E (SSE, gRPC `Watch`).
    Watch,
}

impl Read {
    const ALL: [Read; 7] = [
        Read::Plain,
        Read::Env,
        Read::Resolve,
        Read::Explain,
        Read::Dotenv,
        Read::Listing,
        Read::Watch,
    ];

    fn served_by(self, surface: Surface) -> bool {
        match surface {
            Surface::WriterHttp => self != Read::Watch,
            Surface::EdgeHttp => true,
            Surface::EdgeSse | Surface::EdgeSession => self == Read::Watch,
            Surface::EdgeGrpc => self != Read::Listing,
        }
    }

    /// What an answer on `surface` holds when served: the effective value in the environment,
    /// or the base value for a plain read (`None`: nothing to look for — an SSE or gRPC watch
    /// that starts live; a session starts with the effective state).
    fn shows(self, surface: Surface) -> Option<&'static str> {
        match self {
            Read::Plain => Some("base-host"),
            Read::Listing => Some("\"db\""),
            Read::Watch if surface != Surface::EdgeSession => None,
            _ => Some("prod-host"),
        }
    }
}

/// `read` of the matrix's data on `surface` in `env`, with `key`: the outcome and the body.
async fn effective_read(
    cluster: &Cluster,
    surface: Surface,
    read: Read,
    env: &str,
    key: &str,
) -> (Outcome, String) {
    let http = client_from(LOOPBACK);
    let target = match read {
        Read::Plain => "/m/db/host".to_owned(),
        Read::Env => format!("/m/db/host?env={env}"),
        Read::Resolve => format!("/m/db/host?env={env}&resolve=true"),
        Read::Explain => format!("/m/db/host?env={env}&explain=true"),
        Read::Dotenv => format!("/m/db?env={env}&format=dotenv"),
        Read::Listing => format!("/m?env={env}"),
        Read::Watch => format!("/m/db?env={env}"),
    };
    let base = match surface {
        Surface::WriterHttp => cluster.writer.base(),
        _ => cluster.edge.base(),
    };
    match surface {
        Surface::WriterHttp | Surface::EdgeHttp => {
            let url = format!("{base}/api/config{target}");
            rest(&http, Method::GET, &url, None, Some(key)).await
        }
        Surface::EdgeSse => (sse(&http, cluster, &target, Some(key)).await, String::new()),
        Surface::EdgeGrpc => grpc_effective_read(cluster, read, env, key).await,
        Surface::EdgeSession => session_read(cluster, env, key).await,
    }
}

/// Opens a `Session` of `/m/db` in `env`: refused, or its first update (the effective state).
async fn session_read(cluster: &Cluster, env: &str, key: &str) -> (Outcome, String) {
    use setpoint_proto::edge::v1::client_message::Kind as Up;
    use setpoint_proto::edge::v1::server_message::Kind as Down;
    let hello = pb::ClientMessage {
        kind: Some(Up::Hello(pb::ClientHello {
            instance_id: format!("env-matrix-{}", rand_marker()),
            env: Some(env.to_owned()),
            prefixes: vec!["/m/db".into()],
            labels: Default::default(),
            sdk: "access-test".into(),
            sdk_version: "0".into(),
            from_revision: None,
            resolve: false,
        })),
    };
    let (up, rx) = tokio::sync::mpsc::channel(4);
    up.send(hello).await.unwrap();
    let request = with_key(tokio_stream::wrappers::ReceiverStream::new(rx), Some(key));
    let mut down = match cluster.grpc().await.session(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => {
            let message = status.message().to_owned();
            return (grpc_outcome::<()>(Err(status)), message);
        }
    };
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), down.message())
            .await
            .expect("a session message within 10 s")
            .unwrap()
            .and_then(|m| m.kind)
            .expect("a message, not the end");
        if let Down::Update(update) = message {
            drop(up);
            return (Outcome::Ok, format!("{update:?}"));
        }
    }
}

async fn grpc_effective_read(
    cluster: &Cluster,
    read: Read,
    env: &str,
    key: &str,
) -> (Outcome, String) {
    let mut grpc = cluster.grpc().await;
    let env = Some(env.to_owned());
    let resolve = |explain: bool| pb::ResolveRequest {
        path: "/m/db/host".into(),
        env: env.clone(),
        raw: false,
        explain,
    };
    let text = |result: Result<String, tonic::Status>| match result {
        Ok(body) => (Outcome::Ok, body),
        Err(status) => {
            let message = status.message().to_owned();
            (grpc_outcome::<()>(Err(status)), message)
        }
    };
    match read {
        Read::Plain | Read::Env => {
            let request = pb::GetRequest {
                path: "/m/db/host".into(),
                env: (read == Read::Env).then(|| env.clone()).flatten(),
                version: None,
            };
            text(
                grpc.get(with_key(request, Some(key)))
                    .await
                    .map(|r| format!("{:?}", r.into_inner().entry)),
            )
        }
        Read::Resolve | Read::Explain => text(
            grpc.resolve(with_key(resolve(read == Read::Explain), Some(key)))
                .await
                .map(|r| r.into_inner().json),
        ),
        Read::Dotenv => {
            let request = pb::ExportRequest {
                prefix: "/m/db".into(),
                env: env.clone(),
                format: "dotenv".into(),
                name: None,
            };
            text(
                grpc.export(with_key(request, Some(key)))
                    .await
                    .map(|r| String::from_utf8_lossy(&r.into_inner().body).into_owned()),
            )
        }
        Read::Watch => {
            let request = pb::WatchRequest {
                prefixes: vec!["/m/db".into()],
                from_revision: None,
                instance_id: "env-matrix".into(),
                env: env.clone(),
                resolve: false,
            };
            text(
                grpc.watch(with_key(request, Some(key)))
                    .await
                    .map(|_| String::new()),
            )
        }
        Read::Listing => unreachable!("gRPC List takes no environment"),
    }
}

/// `${secret:db-password}` at `/m/secret/password` resolved in `env` (`""`: none), on the
/// writer, the edge over HTTP and over gRPC (`Resolve`): the outcomes and the bodies.
async fn resolve_secret(
    cluster: &Cluster,
    env: &str,
    key: &str,
) -> Vec<(Surface, Outcome, String)> {
    let http = client_from(LOOPBACK);
    let query = if env.is_empty() {
        "resolve=true".to_owned()
    } else {
        format!("env={env}&resolve=true")
    };
    let mut answers = Vec::new();
    for (surface, base) in [
        (Surface::WriterHttp, cluster.writer.base()),
        (Surface::EdgeHttp, cluster.edge.base()),
    ] {
        let url = format!("{base}/api/config/m/secret/password?{query}");
        let (outcome, body) = rest(&http, Method::GET, &url, None, Some(key)).await;
        answers.push((surface, outcome, body));
    }
    let request = pb::ResolveRequest {
        path: "/m/secret/password".into(),
        env: (!env.is_empty()).then(|| env.to_owned()),
        raw: false,
        explain: false,
    };
    let (outcome, body) = match cluster
        .grpc()
        .await
        .resolve(with_key(request, Some(key)))
        .await
    {
        Ok(reply) => (Outcome::Ok, reply.into_inner().json),
        Err(status) => {
            let message = status.message().to_owned();
            (grpc_outcome::<()>(Err(status)), message)
        }
    };
    answers.push((Surface::EdgeGrpc, outcome, body));
    answers
}

/// Issue 11, finding 6: `read` on `/myapp` alone read prod's values through `?env=prod` on the
/// writer, the edge and gRPC; `secrets:read` on the base path resolved prod's secrets; and
/// `secrets:read` on `/env/dev/myapp` could not resolve dev's own. The rule now: an effective
/// read of base path P in environment E needs the right on P and on `/env/L` + P for every L in
/// E's chain — whichever layers hold values — on every surface and for every kind of read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_grants_apply_to_effective_reads() {
    let bao = BaoServer::start();
    for (env, value) in [
        ("base", SECRET_BASE),
        ("dev", SECRET_DEV),
        ("prod", SECRET_PROD),
    ] {
        bao.put_secret(
            &format!("setpoint/{env}/db-password"),
            json!({ "value": value }),
        )
        .await;
    }
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("vault-token");
    std::fs::write(&token_file, bao.root_token()).unwrap();
    let secret_args: Vec<String> = vec![
        "--secrets".into(),
        "vault".into(),
        "--vault-addr".into(),
        bao.address(),
        "--vault-token-file".into(),
        token_file.to_str().unwrap().into(),
    ];
    let cluster = Cluster::start(&secret_args).await;
    // prod-eu lies under prod: its chain is prod-eu, prod.
    let response = cluster
        .admin
        .put(format!(
            "{}/api/environments/prod-eu",
            cluster.writer.base()
        ))
        .body(json!({"parent": "prod"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    cluster.put("/m/db/host", json!("base-host")).await;
    cluster.put("/m/db/port", json!(5432)).await;
    cluster.put("/m/url", json!("base-url")).await;
    cluster.put("/env/prod/m/db/host", json!("prod-host")).await;
    cluster
        .put("/m/secret/password", json!("${secret:db-password}"))
        .await;

    let r = json!(["read"]);
    let rs = json!(["read", "secrets:read"]);
    let grant = |prefix: &str, actions: &Value| json!({"prefix": prefix, "actions": actions});
    let mut keys = std::collections::HashMap::new();
    for (id, grants) in [
        ("base", json!([grant("/m", &r)])),
        (
            "base-env",
            json!([grant("/m", &r), grant("/env/prod/m", &r)]),
        ),
        ("env-only", json!([grant("/env/prod/m", &r)])),
        (
            "base-env-db",
            json!([grant("/m", &r), grant("/env/prod/m/db", &r)]),
        ),
        (
            "base-env-eu",
            json!([
                grant("/m", &r),
                grant("/env/prod/m", &r),
                grant("/env/prod-eu/m", &r)
            ]),
        ),
        (
            "base-secrets",
            json!([grant("/m", &rs), grant("/env/prod/m", &r)]),
        ),
        (
            "env-secrets",
            json!([grant("/m", &r), grant("/env/dev/m", &rs)]),
        ),
        (
            "both-secrets",
            json!([grant("/m", &rs), grant("/env/dev/m", &rs)]),
        ),
    ] {
        let (key, _) = cluster.create_account(id, grants, None).await;
        keys.insert(id, key);
    }
    keys.insert("admin", test_admin_key());
    let key = |id: &str| keys[id].clone();
    cluster.edge_caught_up().await;

    // The matrix: (account, whether its env reads are served, whether its plain read is).
    let accounts = [
        ("base", false, true),
        ("base-env", true, true),
        ("env-only", false, false),
        ("admin", true, true),
    ];
    let surfaces = [
        Surface::WriterHttp,
        Surface::EdgeHttp,
        Surface::EdgeSse,
        Surface::EdgeGrpc,
        Surface::EdgeSession,
    ];
    let mut cells = 0;
    for (id, env_allowed, plain_allowed) in accounts {
        for surface in surfaces {
            for read in Read::ALL.into_iter().filter(|r| r.served_by(surface)) {
                let allowed = if read == Read::Plain {
                    plain_allowed
                } else {
                    env_allowed
                };
                let (outcome, body) =
                    effective_read(&cluster, surface, read, "prod", &key(id)).await;
                let expected = if allowed {
                    Outcome::Ok
                } else {
                    Outcome::Forbidden
                };
                assert_eq!(outcome, expected, "{id} {read:?} via {surface:?}: {body}");
                match (allowed, read.shows(surface)) {
                    (true, Some(shown)) => {
                        assert!(
                            body.contains(shown),
                            "{id} {read:?} via {surface:?}: {body}"
                        )
                    }
                    (false, _) => assert!(
                        !body.contains("prod-host") && !body.contains("base-host"),
                        "a refusal shows no value: {id} {read:?} via {surface:?}: {body}"
                    ),
                    (true, None) => {}
                }
                cells += 1;
            }
        }
    }
    println!("effective-read matrix: {cells} cells");

    // The refusal does not depend on data: /m/url has no prod override, and the base-only
    // account is refused there exactly as where one exists.
    for surface in [Surface::WriterHttp, Surface::EdgeHttp] {
        let base = if surface == Surface::WriterHttp {
            cluster.writer.base()
        } else {
            cluster.edge.base()
        };
        let http = client_from(LOOPBACK);
        let (outcome, _) = rest(
            &http,
            Method::GET,
            &format!("{base}/api/config/m/url?env=prod"),
            None,
            Some(&key("base")),
        )
        .await;
        assert_eq!(outcome, Outcome::Forbidden, "{surface:?}");
    }

    // A listing, a tree and a bundle in prod hold only what every layer grants: base-env-db
    // may read prod's layer of /m/db only.
    for base in [cluster.writer.base(), cluster.edge.base()] {
        let http = client_from(LOOPBACK);
        let who = Some(key("base-env-db"));
        let (outcome, listing) = rest(
            &http,
            Method::GET,
            &format!("{base}/api/config/m?env=prod"),
            None,
            who.as_deref(),
        )
        .await;
        assert_eq!(outcome, Outcome::Ok, "{listing}");
        assert_eq!(
            serde_json::from_str::<Value>(&listing).unwrap()["children"],
            json!(["db"]),
            "{base}"
        );
        let (outcome, tree) = rest(
            &http,
            Method::GET,
            &format!("{base}/api/config/m?env=prod&resolve=true"),
            None,
            who.as_deref(),
        )
        .await;
        assert_eq!(outcome, Outcome::Ok, "{tree}");
        assert_eq!(
            serde_json::from_str::<Value>(&tree).unwrap(),
            json!({"db": {"host": "prod-host", "port": 5432}}),
            "{base}"
        );
        let (outcome, dotenv) = rest(
            &http,
            Method::GET,
            &format!("{base}/api/config/m?env=prod&format=dotenv"),
            None,
            who.as_deref(),
        )
        .await;
        assert_eq!(outcome, Outcome::Ok, "{dotenv}");
        assert!(
            dotenv.contains("M_DB_HOST") && !dotenv.contains("M_URL"),
            "{base}: {dotenv}"
        );
    }

    // The chain: prod-eu needs prod-eu's layer and prod's.
    for surface in [
        Surface::WriterHttp,
        Surface::EdgeHttp,
        Surface::EdgeGrpc,
        Surface::EdgeSession,
    ] {
        for (id, allowed) in [("base-env", false), ("base-env-eu", true)] {
            for read in [Read::Env, Read::Watch] {
                if !read.served_by(surface) {
                    continue;
                }
                let (outcome, body) =
                    effective_read(&cluster, surface, read, "prod-eu", &key(id)).await;
                let expected = if allowed {
                    Outcome::Ok
                } else {
                    Outcome::Forbidden
                };
                assert_eq!(
                    outcome, expected,
                    "{id} {read:?} in prod-eu via {surface:?}: {body}"
                );
            }
        }
    }

    // Secrets: secrets:read on the base path alone no longer resolves prod's; on dev's layer
    // alone it does not resolve dev's; on both it does. Without an environment, the base grant.
    let secret_cases = [
        ("base-secrets", "prod", None),
        ("base-secrets", "", Some(SECRET_BASE)),
        ("env-secrets", "dev", None),
        ("both-secrets", "dev", Some(SECRET_DEV)),
        ("base-env", "prod", None),
        ("admin", "prod", Some(SECRET_PROD)),
    ];
    for (id, env, resolved) in secret_cases {
        for (surface, outcome, body) in resolve_secret(&cluster, env, &key(id)).await {
            let case = format!("{id} resolving in {env:?} via {surface:?}: {body}");
            match resolved {
                Some(secret) => {
                    assert_eq!(outcome, Outcome::Ok, "{case}");
                    assert!(body.contains(secret), "{case}");
                }
                None => assert_eq!(outcome, Outcome::Forbidden, "{case}"),
            }
            for secret in [SECRET_BASE, SECRET_DEV, SECRET_PROD] {
                assert!(
                    resolved == Some(secret) || !body.contains(secret),
                    "no other secret: {case}"
                );
            }
        }
    }
    drop(bao);
}

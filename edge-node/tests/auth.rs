//! API keys on a real edge (keys required, as `setpoint edge` runs): accounts arrive in the
//! snapshot like any config, and every surface — HTTP reads and listings, SSE, gRPC — answers
//! 401 without a valid key, 403 without the grant, and shows only what the caller may read.
//! Revocation reaches open watches; too many failures from one source get 429.

// Helpers outside #[test] functions unwrap too: a failure here is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{Op, SseReader, TestEdge};
use serde_json::{Value, json};
use setpoint_core::auth::{Account, Action, Grant, NewKey, new_key};
use setpoint_edge_node::EdgeConfig;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

fn key(n: u8) -> NewKey {
    new_key(&[n; 32], &[n; 9], 0, None)
}

fn account(id: &str, key: &NewKey, grants: &[(&str, &[Action])], revoked: bool) -> Value {
    let mut record = key.record.clone();
    record.revoked = revoked;
    serde_json::to_value(Account {
        id: id.into(),
        description: None,
        grants: grants
            .iter()
            .map(|(prefix, actions)| Grant {
                prefix: (*prefix).into(),
                actions: actions.iter().copied().collect(),
            })
            .collect(),
        keys: vec![record],
        disabled: false,
    })
    .unwrap()
}

struct Keys {
    admin: NewKey,
    reader: NewKey,
}

/// An edge that needs keys, holding `/a/x/k`, `/a/y/k`, `/b/k`, an admin and a reader of `/a/x`.
async fn edge() -> (TestEdge, Keys) {
    let edge = TestEdge::start_with(EdgeConfig::default()).await;
    let keys = Keys {
        admin: key(1),
        reader: key(2),
    };
    edge.commit(vec![
        Op::Put(
            "/_setpoint/accounts/admin",
            account("admin", &keys.admin, &[("/", &[Action::Admin])], false),
        ),
        Op::Put(
            "/_setpoint/accounts/reader",
            account("reader", &keys.reader, &[("/a/x", &[Action::Read])], false),
        ),
        Op::Put("/a/x/k", json!("x")),
        Op::Put("/a/y/k", json!("y")),
        Op::Put("/b/k", json!("b")),
    ]);
    (edge, keys)
}

async fn get(edge: &TestEdge, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(edge.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn grpc(edge: &TestEdge) -> EdgeClient<Channel> {
    EdgeClient::connect(format!("http://{}", edge.addr))
        .await
        .unwrap()
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

fn get_request(path: &str) -> pb::GetRequest {
    pb::GetRequest {
        path: path.into(),
        env: None,
        version: None,
    }
}

fn list_request(prefix: &str, recursive: bool) -> pb::ListRequest {
    pb::ListRequest {
        prefix: prefix.into(),
        recursive,
    }
}

fn watch_request(prefix: &str) -> pb::WatchRequest {
    pb::WatchRequest {
        prefixes: vec![prefix.into()],
        from_revision: None,
        instance_id: "t".into(),
        env: None,
        resolve: false,
    }
}

#[tokio::test]
async fn http_reads_need_a_key_and_show_only_what_it_may_read() {
    let (edge, keys) = edge().await;
    let reader = Some(keys.reader.token.as_str());
    let admin = Some(keys.admin.token.as_str());

    for key in [
        None,
        Some("garbage"),
        Some("spk_abc_notreallyakeybutlongenoughtolooklikeone00"),
    ] {
        let (status, body) = get(&edge, "/api/config/a/x/k", key).await;
        assert_eq!(status, 401, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    assert_eq!(get(&edge, "/healthz", None).await.0, 200);
    assert_eq!(get(&edge, "/readyz", None).await.0, 200);
    assert_eq!(get(&edge, "/metrics", None).await.0, 401, "not public");

    assert_eq!(
        get(&edge, "/api/config/a/x/k", reader).await.1["value"],
        "x"
    );
    let (status, body) = get(&edge, "/api/config/a/y/k", reader).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(get(&edge, "/api/config/b/k", reader).await.0, 403);
    assert_eq!(get(&edge, "/api/config/b/k?version=1", reader).await.0, 403);
    assert_eq!(get(&edge, "/api/config/b?list=true", reader).await.0, 403);
    assert_eq!(get(&edge, "/api/config/nothing", reader).await.0, 403);

    // Listings: only what the reader can read something below.
    let (_, listing) = get(&edge, "/api/config/a", reader).await;
    assert_eq!(listing["children"], json!(["x"]));
    let (_, root) = get(&edge, "/api/config/?list=true", reader).await;
    assert_eq!(root["children"], json!(["a"]));
    let (_, recursive) = get(&edge, "/api/config/a?list=true&recursive=true", reader).await;
    let paths: Vec<&str> = recursive["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["/a/x/k"]);
    let (status, tree) = get(&edge, "/api/config/a?resolve=true", reader).await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(
        tree,
        json!({"x": {"k": "x"}}),
        "a subtree holds only readable paths"
    );
    assert_eq!(
        get(&edge, "/api/config/a/y?resolve=true", reader).await.0,
        403
    );

    // The system namespace: never listed, served to the root admin only.
    let (_, root) = get(&edge, "/api/config/?list=true&recursive=true", admin).await;
    assert_eq!(root["children"], json!(["a", "b"]));
    assert!(
        !root.to_string().contains("_setpoint"),
        "an admin's listing of / shows no system record: {root}"
    );
    let (status, record) = get(&edge, "/api/config/_setpoint/accounts/reader", admin).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(
        get(&edge, "/api/config/_setpoint/accounts/reader", reader)
            .await
            .0,
        403
    );
    assert_eq!(get(&edge, "/metrics", admin).await.0, 200);
    let metrics = reqwest::Client::new()
        .get(edge.url("/metrics"))
        .bearer_auth(&keys.admin.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, count) in [("missing", 2), ("malformed", 1), ("unknown", 1)] {
        assert!(
            metrics.contains(&format!(
                "setpoint_edge_auth_failures_total{{reason=\"{reason}\"}} {count}"
            )),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn grpc_calls_answer_grpc_statuses_for_missing_keys_and_rights() {
    let (edge, keys) = edge().await;
    let reader = Some(keys.reader.token.as_str());
    let mut client = grpc(&edge).await;

    for key in [None, Some("Bearer-less garbage")] {
        let refused = client
            .get(with_key(get_request("/a/x/k"), key))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let refused = client
        .watch(with_key(watch_request("/a/x"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let got = client
        .get(with_key(get_request("/a/x/k"), reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.entry.unwrap().value, "\"x\"");
    for path in ["/a/y/k", "/b/k", "/_setpoint/accounts/reader"] {
        let refused = client
            .get(with_key(get_request(path), reader))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{path}");
    }
    let root = client
        .list(with_key(list_request("/", true), reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(root.children, vec!["a"]);
    let paths: Vec<String> = root.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(paths, vec!["/a/x/k"]);
    let refused = client
        .list(with_key(list_request("/b", false), reader))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = client
        .resolve(with_key(
            pb::ResolveRequest {
                path: "/b".into(),
                env: None,
                raw: false,
                explain: false,
            },
            reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let exported = client
        .export(with_key(
            pb::ExportRequest {
                prefix: "/a".into(),
                env: None,
                format: "json".into(),
                name: None,
            },
            reader,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serde_json::from_slice::<Value>(&exported.body).unwrap(),
        json!({"x": {"k": "x"}}),
        "a bundle holds only what the caller may read"
    );
    // A watch needs read on everything below its prefix.
    for prefix in ["/a", "/", "/_setpoint"] {
        let refused = client
            .watch(with_key(watch_request(prefix), reader))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{prefix}");
    }
    client
        .watch(with_key(watch_request("/a/x"), reader))
        .await
        .unwrap();

    // Health stays public (probes send no key).
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(format!("http://{}", edge.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, 1, "SERVING");
}

#[tokio::test]
async fn a_root_watch_by_an_admin_never_sees_system_records() {
    let (edge, keys) = edge().await;
    let mut reader = SseReader::open_with_key(
        &edge.url("/api/config?watch=true&from_revision=0"),
        None,
        Some(&keys.admin.token),
    )
    .await;
    // The replayed first batch: three configs, no account records.
    let mut replayed = Vec::new();
    loop {
        let frame = reader.next().await;
        replayed.push(frame.json()["path"].as_str().unwrap().to_owned());
        if frame.id.is_some() {
            assert_eq!(frame.id.as_deref(), Some("1"));
            break;
        }
    }
    assert_eq!(replayed, vec!["/a/x/k", "/a/y/k", "/b/k"]);
    let other = key(9);
    edge.commit(vec![Op::Put(
        "/_setpoint/accounts/other",
        account("other", &other, &[("/b", &[Action::Read])], false),
    )]);
    let revision = edge.commit(vec![Op::Put("/b/k", json!("b2"))]);
    let next = reader.next().await;
    assert_eq!(next.id, Some(revision.to_string()), "{}", next.data);
    assert_eq!(next.json()["path"], "/b/k");
}

#[tokio::test]
async fn revocation_refuses_the_next_request_and_ends_open_watches() {
    let (edge, keys) = edge().await;
    let token = keys.reader.token.clone();
    let mut sse =
        SseReader::open_with_key(&edge.url("/api/config/a/x?watch=true"), None, Some(&token)).await;
    let mut client = grpc(&edge).await;
    let mut stream = client
        .watch(with_key(watch_request("/a/x"), Some(&token)))
        .await
        .unwrap()
        .into_inner();
    edge.wait_for_watchers(2).await;
    let revision = edge.commit(vec![Op::Put("/a/x/k", json!("x2"))]);
    assert_eq!(sse.next().await.id, Some(revision.to_string()));
    assert_eq!(harness::next_message(&mut stream).await.revision, revision);

    edge.commit(vec![Op::Put(
        "/_setpoint/accounts/reader",
        account("reader", &keys.reader, &[("/a/x", &[Action::Read])], true),
    )]);
    let (status, body) = get(&edge, "/api/config/a/x/k", Some(&token)).await;
    assert_eq!(status, 401, "the next request is refused: {body}");
    let refused = client
        .get(with_key(get_request("/a/x/k"), Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Open watches get nothing more: the next message ends them (the account changed, so the
    // next message is checked, whenever the last check was).
    edge.commit(vec![Op::Put("/a/x/k", json!("after revocation"))]);
    let last = sse.next().await;
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["code"], "unauthenticated");
    assert!(!last.data.contains("after revocation"));
    assert!(sse.wait_for_end().await, "the SSE stream ends");
    let ended = harness::next_result(&mut stream).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_watch_ends_when_its_key_expires_though_no_account_changed() {
    let (edge, _keys) = edge().await;
    let expires_at = setpoint_edge_node::auth::unix_now() + 2;
    let short = new_key(&[7; 32], &[7; 9], 0, Some(expires_at));
    edge.commit(vec![Op::Put(
        "/_setpoint/accounts/short",
        account("short", &short, &[("/a/x", &[Action::Read])], false),
    )]);
    let mut sse = SseReader::open_with_key(
        &edge.url("/api/config/a/x?watch=true"),
        None,
        Some(&short.token),
    )
    .await;
    edge.wait_for_watchers(1).await;
    let revision = edge.commit(vec![Op::Put("/a/x/k", json!("before"))]);
    assert_eq!(sse.next().await.id, Some(revision.to_string()));
    while setpoint_edge_node::auth::unix_now() < expires_at {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    edge.commit(vec![Op::Put("/a/x/k", json!("after expiry"))]);
    let last = sse.next().await;
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["code"], "unauthenticated");
    assert!(sse.wait_for_end().await, "the SSE stream ends");
}

/// Issue 14: a watch refused on the raw event-stream path (`setpoint_serving::server`) gets the
/// same 401 and error body as through hyper, with its length, and the connection closes.
#[tokio::test]
async fn a_watch_without_a_key_is_refused_with_its_body_and_closed() {
    let (edge, _keys) = edge().await;
    let mut tcp = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    tcp.write_all(
        b"GET /api/config/a/x?watch=true HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(harness::STREAM_WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the edge answers and closes")
        .unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}\r\n", body.len())),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    assert_eq!(edge.edge.hub().watcher_count(), 0);
}

/// Issue 11, finding 2: 21 bad keys from one address made every request from it 429 for the
/// rest of the minute, the valid admin key included, with no `Retry-After`.
#[tokio::test]
async fn a_valid_key_is_never_locked_out_by_others_failures() {
    let (edge, keys) = edge().await;
    let limit = setpoint_edge_node::auth::FAILURES_PER_MINUTE;
    // Failures on both surfaces count against the one source (127.0.0.1).
    for attempt in 0..limit - 1 {
        let (status, _) = get(&edge, "/api/config/a/x/k", Some("garbage")).await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let last = grpc(&edge)
        .await
        .get(with_key(get_request("/a/x/k"), Some("garbage")))
        .await
        .unwrap_err();
    assert_eq!(last.code(), Code::Unauthenticated, "the {limit}th failure");

    // Past the limit, a failure is 429 with Retry-After (at most the window) ...
    let response = reqwest::Client::new()
        .get(edge.url("/api/config/a/x/k"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    let (status, _) = get(&edge, "/api/config/a/x/k", None).await;
    assert_eq!(status, 429, "a missing key is a failure too");
    let limited = grpc(&edge)
        .await
        .get(with_key(get_request("/a/x/k"), Some("garbage")))
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let retry_after: u64 = limited
        .metadata()
        .get("retry-after")
        .expect("retry-after in the status metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "retry-after: {retry_after}"
    );

    // ... while valid keys from the very same address are served, on every surface.
    let (status, body) = get(&edge, "/api/config/a/x/k", Some(&keys.reader.token)).await;
    assert_eq!((status, &body["value"]), (200, &json!("x")), "{body}");
    assert_eq!(
        get(&edge, "/api/config/b/k", Some(&keys.admin.token))
            .await
            .0,
        200
    );
    let served = grpc(&edge)
        .await
        .get(with_key(get_request("/a/x/k"), Some(&keys.reader.token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.entry.unwrap().value, "\"x\"");
    // Opening asserts 200 and an event stream.
    let sse = SseReader::open_with_key(
        &edge.url("/api/config/a/x?watch=true"),
        None,
        Some(&keys.reader.token),
    )
    .await;
    drop(sse);
    assert_eq!(
        get(&edge, "/healthz", None).await.0,
        200,
        "health stays open"
    );
}

/// Issue 11, finding 7: in `setpoint dev`, a malformed `Authorization` header counted as
/// anonymous; only a request without the header is.
#[tokio::test]
async fn a_malformed_authorization_header_is_refused_not_anonymous() {
    let edge = harness::TestEdge::start().await;
    edge.commit(vec![Op::Put("/a/k", json!("v"))]);
    let http = reqwest::Client::new();
    for value in [
        "Basic YWRtaW46YWRtaW4=",
        "Bearer",
        "Bearer ",
        "spk_nothing",
        "Token x",
    ] {
        let response = http
            .get(edge.url("/api/config/a/k"))
            .header(reqwest::header::AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "Authorization: {value:?}");
        let mut request = tonic::Request::new(get_request("/a/k"));
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
        let refused = grpc(&edge).await.get(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{value:?}");
    }
    let (status, body) = get(&edge, "/api/config/a/k", None).await;
    assert_eq!(
        (status, &body["value"]),
        (200, &json!("v")),
        "no header: anonymous"
    );
    let anonymous = grpc(&edge)
        .await
        .get(tonic::Request::new(get_request("/a/k")))
        .await;
    assert!(anonymous.is_ok(), "no metadata at all: anonymous on gRPC");
}

/// Issue 11, finding 7: raw reads of `/_setpoint/accounts/*` showed admins the key hashes that
/// `/api/accounts` hides; on the edge, HTTP and gRPC alike, they are hidden now.
#[tokio::test]
async fn account_reads_never_show_key_hashes() {
    let (edge, keys) = edge().await;
    let admin = Some(keys.admin.token.as_str());
    let hashes = [&keys.admin.record.hash, &keys.reader.record.hash];
    let (status, body) = get(&edge, "/api/config/_setpoint/accounts/reader", admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["value"]["keys"][0]["id"],
        keys.reader.record.id.as_str()
    );
    let text = body.to_string();
    assert!(
        !text.contains("hash") && hashes.iter().all(|h| !text.contains(h.as_str())),
        "{text}"
    );
    for query in ["env=prod", "resolve=true", "format=json"] {
        let (status, body) = get(
            &edge,
            &format!("/api/config/_setpoint/accounts/reader?{query}"),
            admin,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, body) = get(&edge, "/api/config/?format=json", admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("hash"), "{body}");

    let mut client = grpc(&edge).await;
    let entry = client
        .get(with_key(get_request("/_setpoint/accounts/admin"), admin))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert!(
        entry.value.contains(&keys.admin.record.id),
        "{}",
        entry.value
    );
    assert!(!entry.value.contains("hash"), "{}", entry.value);
    let mut in_env = get_request("/_setpoint/accounts/admin");
    in_env.env = Some("prod".into());
    let refused = client.get(with_key(in_env, admin)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}

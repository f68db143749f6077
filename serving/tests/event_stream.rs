//! The server loop's raw event-stream path against real sockets: what takes it (an event-stream
//! `GET`, however its head arrives), what it answers (the router's status, headers and body,
//! chunked, then a close), and that everything else is still hyper's (keep-alive, pipelining,
//! bad heads) — and that a watcher gone away frees its connection slot.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use setpoint_serving::server::{ConnectionMetrics, Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The senders of the streams opened so far, in order.
type Streams = Arc<Mutex<Vec<mpsc::UnboundedSender<Bytes>>>>;

struct Server {
    addr: SocketAddr,
    metrics: ConnectionMetrics,
    streams: Streams,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// `/events` streams what the test sends (401 without `Authorization`); `/who` answers the peer.
async fn start() -> Server {
    start_with(Limits {
        header_read_timeout: Duration::from_secs(5),
        ..Limits::default()
    })
    .await
}

async fn start_with(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = ConnectionMetrics::register(&Registry::new(), "test").unwrap();
    let streams = Streams::default();
    let router = Router::new()
        .route("/events", get(events))
        .route(
            "/who",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .with_state(streams.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        limits,
        metrics.clone(),
    ));
    Server {
        addr,
        metrics,
        streams,
        stop: Some(stop),
        served,
    }
}

async fn events(
    State(streams): State<Streams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !headers.contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":{"code":"unauthenticated","message":"no key"}}"#,
        )
            .into_response();
    }
    let (sender, receiver) = mpsc::unbounded_channel::<Bytes>();
    // The first event names the peer: the raw path told the router who is calling.
    sender
        .send(Bytes::from(format!("data: {peer}\n\n")))
        .unwrap();
    streams.lock().unwrap().push(sender);
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, Infallible>(chunk), receiver))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads until `text` holds `needle`; everything read.
async fn read_until(tcp: &mut TcpStream, text: &mut String, needle: &str) {
    let mut buffer = [0u8; 4096];
    while !text.contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {text:?}"))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}: {text:?}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

/// Reads until the server closes; everything read.
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut all))
        .await
        .expect("the server closes")
        .unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn an_event_stream_sent_in_small_pieces_streams_chunks_and_closes_at_its_end() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let head = "GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\
                Authorization: Bearer k\r\n\r\n";
    for piece in head.as_bytes().chunks(3) {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut text = String::new();
    let first = format!("data: {}\n\n", tcp.local_addr().unwrap());
    read_until(&mut tcp, &mut text, &first).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    for line in [
        "content-type: text/event-stream\r\n",
        "transfer-encoding: chunked\r\n",
        "connection: close\r\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text:?}");
    }
    assert!(text.contains(&format!("{:x}\r\n{first}\r\n", first.len())));
    let sender = server.streams.lock().unwrap().remove(0);
    sender.send(Bytes::from_static(b"data: two\n\n")).unwrap();
    read_until(&mut tcp, &mut text, "b\r\ndata: two\n\n\r\n").await;
    // An empty frame is no chunk (it would end the body).
    sender.send(Bytes::new()).unwrap();
    drop(sender);
    let rest = read_to_close(&mut tcp).await;
    assert_eq!(rest, "0\r\n\r\n");
}

#[tokio::test]
async fn a_refused_event_stream_gets_its_status_and_body_then_a_close() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /events?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(&mut tcp).await;
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    let body = r#"{"error":{"code":"unauthenticated","message":"no key"}}"#;
    assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
}

#[tokio::test]
async fn plain_requests_keep_their_connection_through_hyper() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let me = tcp.local_addr().unwrap().to_string();
    let mut text = String::new();
    for _ in 0..2 {
        tcp.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        text.clear();
        read_until(&mut tcp, &mut text, &me).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(!text.contains("connection: close"), "{text}");
    }
    // Pipelined, event stream first: hyper answers both, in order.
    tcp.write_all(
        b"GET /events?watch=true HTTP/1.1\r\nHost: x\r\n\r\nGET /who HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    text.clear();
    read_until(&mut tcp, &mut text, &me).await;
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(server.metrics.open.get(), 1);
}

#[tokio::test]
async fn bad_and_oversized_heads_get_hyper_answers_and_the_server_keeps_serving() {
    let server = start().await;
    let oversized = format!(
        "GET /events?watch=true HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(600 * 1024)
    );
    for (head, status) in [
        ("HELLO\r\n\r\n".to_owned(), "HTTP/1.1 400"),
        (
            "GET /events?watch=true HTTP/1.1\r\nBad Header: x\r\n\r\n".to_owned(),
            "HTTP/1.1 400",
        ),
        (oversized, "HTTP/1.1 431"),
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        // hyper may answer and close before it has read everything: a write error is fine.
        let _ = tcp.write_all(head.as_bytes()).await;
        let mut text = String::new();
        read_until(&mut tcp, &mut text, "\r\n").await;
        assert!(text.starts_with(status), "{status}: {text}");
    }
    // A head longer than the raw path reads (but within hyper's limit) is hyper's to serve.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let long = format!(
        "GET /events HTTP/1.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer k\r\n\
         X-Long: {}\r\n\r\n",
        "b".repeat(32 * 1024)
    );
    tcp.write_all(long.as_bytes()).await.unwrap();
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "data: ").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("connection: close"), "hyper's: {text}");
}

#[tokio::test]
async fn a_watcher_that_goes_away_frees_its_connection_slot() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /events?watch=true HTTP/1.1\r\nAuthorization: Bearer k\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "data: ").await;
    assert_eq!(server.metrics.open.get(), 1);
    // The client leaves while its stream is idle (no frame to write would notice).
    drop(tcp);
    let metrics = server.metrics.clone();
    wait_until("the slot is free", || metrics.open.get() == 0).await;
    let streams = server.streams.clone();
    wait_until("the body is dropped", || {
        streams.lock().unwrap()[0].is_closed()
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let mut server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /events?watch=true HTTP/1.1\r\nAuthorization: Bearer k\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    read_until(&mut tcp, &mut text, "data: ").await;
    server.stop.take().unwrap().send(()).unwrap();
    let rest = read_to_close(&mut tcp).await;
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
    tokio::time::timeout(Duration::from_secs(10), server.served)
        .await
        .expect("serve returns once the stream ended")
        .unwrap()
        .unwrap();
}

/// A connection that has sent nothing yet (a client's pool opening one ahead) waited for its
/// first byte through shutdown, and held it up for the whole first-byte timeout: a `setpoint`
/// edge then missed its 10 s to exit after SIGTERM (caught by `faults.rs`).
#[tokio::test]
async fn shutdown_is_not_held_up_by_a_connection_that_sent_nothing() {
    let mut server = start_with(Limits {
        first_byte_timeout: Duration::from_secs(600),
        header_read_timeout: Duration::from_secs(600),
        ..Limits::default()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /events?watch=true HTTP/1.1\r\n")
        .await
        .unwrap();
    let metrics = server.metrics.clone();
    wait_until("both are open", || metrics.open.get() == 2).await;
    server.stop.take().unwrap().send(()).unwrap();
    // Well within the 30 s the server gives streams to end, let alone the first-byte timeout.
    tokio::time::timeout(Duration::from_secs(20), server.served)
        .await
        .expect("serve returns without waiting for the silent connections")
        .unwrap()
        .unwrap();
    // Closed without an answer (reset when the half head was still unread).
    for tcp in [&mut silent, &mut half] {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buffer))
            .await
            .expect("the server closes it");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}

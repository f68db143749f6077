//! The real binary speaks systemd's readiness protocol (`Type=notify` in
//! `deploy/systemd/*.service`): started with `NOTIFY_SOCKET` naming a Unix datagram socket the
//! test binds — as systemd does — the writer sends `READY=1` once it serves, an edge only once
//! it holds a snapshot (its `/readyz` is 200 from then on), and both send `STOPPING=1` on
//! SIGTERM.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use setpoint_tests::binary::{Certs, SetpointProcess};
use setpoint_tests::free_port;
use tokio::net::UnixDatagram;

/// The socket systemd would pass as `NOTIFY_SOCKET`.
fn notify_socket(dir: &Path, name: &str) -> (UnixDatagram, String) {
    let path = dir.join(name);
    let socket = UnixDatagram::bind(&path).unwrap();
    (socket, path.to_str().unwrap().to_owned())
}

/// The next notification, within a generous bound.
async fn next_message(socket: &UnixDatagram, what: &str) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no notification ({what}) within 30 s"))
        .unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn assignments(message: &str) -> Vec<&str> {
    message.lines().collect()
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_tells_systemd_it_is_ready_once_it_serves_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(dir.path(), "writer-notify.sock");
    let store = format!("embedded://{}", dir.path().join("store").display());
    let key_file = dir.path().join("admin.key");
    let writer = SetpointProcess::start_with_env(
        &[
            "writer",
            "--store",
            &store,
            "--bootstrap-key-file",
            key_file.to_str().unwrap(),
        ],
        &[("NOTIFY_SOCKET", &path)],
        &format!("127.0.0.1:{}", free_port()),
        dir.path(),
    )
    .await;
    let ready = next_message(&socket, "writer READY=1").await;
    assert!(
        assignments(&ready).contains(&"READY=1"),
        "first notification: {ready:?}"
    );
    assert_eq!(status_of(&format!("{}/readyz", writer.base())).await, 200);

    let status = writer.terminate();
    assert!(status.success(), "the writer exits cleanly: {status}");
    let stopping = next_message(&socket, "writer STOPPING=1").await;
    assert!(
        assignments(&stopping).contains(&"STOPPING=1"),
        "after SIGTERM: {stopping:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_tells_systemd_it_is_ready_only_once_it_holds_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let (socket, path) = notify_socket(dir.path(), "edge-notify.sock");
    // The writer's address is chosen now and served only later: until then the edge has no
    // snapshot (an empty data dir) and must not claim readiness.
    let writer_addr = format!("127.0.0.1:{}", free_port());
    let data_dir = dir.path().join("edge-data");
    let mut edge_args: Vec<String> = vec![
        "edge".into(),
        "--writer".into(),
        writer_addr.clone(),
        "--data-dir".into(),
        data_dir.to_str().unwrap().into(),
    ];
    edge_args.extend(certs.args("edge"));
    let edge_args: Vec<&str> = edge_args.iter().map(String::as_str).collect();
    let edge = SetpointProcess::start_with_env(
        &edge_args,
        &[("NOTIFY_SOCKET", &path)],
        &format!("127.0.0.1:{}", free_port()),
        dir.path(),
    )
    .await;
    let mut buf = [0u8; 64];
    match socket.try_recv(&mut buf) {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("an edge without a snapshot notified systemd: {other:?}"),
    }
    assert_eq!(status_of(&format!("{}/readyz", edge.base())).await, 503);

    let store = format!("embedded://{}", dir.path().join("store").display());
    let key_file = dir.path().join("admin.key");
    let mut writer_args: Vec<String> = vec![
        "writer".into(),
        "--store".into(),
        store,
        "--bootstrap-key-file".into(),
        key_file.to_str().unwrap().into(),
    ];
    writer_args.extend(certs.args("writer"));
    let writer_args: Vec<&str> = writer_args.iter().map(String::as_str).collect();
    let _writer = SetpointProcess::start_on(&writer_args, &writer_addr, dir.path()).await;

    let ready = next_message(&socket, "edge READY=1").await;
    assert!(
        assignments(&ready).contains(&"READY=1"),
        "first notification: {ready:?}; edge log:\n{}",
        edge.log_text()
    );
    assert_eq!(
        status_of(&format!("{}/readyz", edge.base())).await,
        200,
        "READY=1 came before /readyz turned 200"
    );

    let status = edge.terminate();
    assert!(status.success(), "the edge exits cleanly: {status}");
    let stopping = next_message(&socket, "edge STOPPING=1").await;
    assert!(
        assignments(&stopping).contains(&"STOPPING=1"),
        "after SIGTERM: {stopping:?}"
    );
}

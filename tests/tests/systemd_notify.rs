//! The real binary speaks systemd's readiness protocol (`Type=notify` in
//! `deploy/systemd/*.service`): started with `NOTIFY_SOCKET` naming a Unix datagram socket the
//! test binds — as systemd does — the writer sends `READY=1` once it serves, an edge only once
//! it holds a snapshot (its `/readyz` is 200 from then on), and both send `STOPPING=1` on
//! SIGTERM. The units' own settings (their `Environment=` lines and the env files the package
//! installs, moved into a temporary directory) run a working writer and edge.
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

/// The settings a unit gives its process: the unit's `Environment=` lines, then its env file
/// (which wins, as `EnvironmentFile=` after `Environment=` does), comments skipped.
fn unit_settings(role: &str) -> Vec<(String, String)> {
    let dir = setpoint_tests::conformance::repo_root().join("deploy/systemd");
    let unit = std::fs::read_to_string(dir.join(format!("setpoint-{role}.service"))).unwrap();
    let file = std::fs::read_to_string(dir.join(format!("{role}.env"))).unwrap();
    let mut settings: Vec<(String, String)> = Vec::new();
    let lines = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .chain(file.lines().filter(|l| !l.trim_start().starts_with('#')));
    for line in lines {
        if let Some((key, value)) = line.trim().split_once('=') {
            settings.retain(|(k, _)| k != key);
            settings.push((key.to_owned(), value.to_owned()));
        }
    }
    settings
}

/// `settings` moved into `dir`: the package's paths under it, loopback ports of the test's.
fn relocated(
    settings: Vec<(String, String)>,
    dir: &Path,
    ports: &[(&str, String)],
) -> Vec<(String, String)> {
    let certs = dir.join("certs");
    let state = dir.join("state");
    settings
        .into_iter()
        .map(|(key, value)| {
            let mut value = value
                .replace("/etc/setpoint/tls", certs.to_str().unwrap())
                .replace("/var/lib/setpoint", state.to_str().unwrap());
            for (from, to) in ports {
                value = value.replace(from, to);
            }
            (key, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_env_files_run_a_writer_and_an_edge_that_tell_systemd_they_are_ready() {
    let dir = tempfile::tempdir().unwrap();
    // The file names the env files expect in /etc/setpoint/tls are `setpoint certs`' own.
    let _certs = Certs::make(dir.path());
    let writer_addr = format!("127.0.0.1:{}", free_port());
    let edge_addr = format!("127.0.0.1:{}", free_port());
    let ports = [
        ("0.0.0.0:8000", writer_addr.clone()),
        ("127.0.0.1:8000", writer_addr.clone()),
        ("127.0.0.1:8001", edge_addr.clone()),
    ];
    let writer_env = relocated(unit_settings("writer"), dir.path(), &ports);
    let edge_env = relocated(unit_settings("edge"), dir.path(), &ports);
    // systemd's StateDirectory= makes these before the process starts.
    std::fs::create_dir_all(dir.path().join("state/writer")).unwrap();
    std::fs::create_dir_all(dir.path().join("state/edge")).unwrap();
    for (key, value) in writer_env.iter().chain(&edge_env) {
        assert!(
            !value.contains("/etc/setpoint") && !value.contains("/var/lib/setpoint"),
            "{key}={value} names a path the test did not move"
        );
    }

    let (writer_socket, writer_notify) = notify_socket(dir.path(), "writer.sock");
    let mut env: Vec<(&str, &str)> = writer_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("NOTIFY_SOCKET", &writer_notify));
    let writer = SetpointProcess::start_with_env(&["writer"], &env, &writer_addr, dir.path()).await;
    let ready = next_message(&writer_socket, "writer READY=1").await;
    assert!(
        assignments(&ready).contains(&"READY=1"),
        "writer: {ready:?}"
    );
    assert!(
        dir.path().join("state/writer/admin.key").exists(),
        "the writer did not write its admin key into its state directory; log:\n{}",
        writer.log_text()
    );

    let (edge_socket, edge_notify) = notify_socket(dir.path(), "edge.sock");
    let mut env: Vec<(&str, &str)> = edge_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("NOTIFY_SOCKET", &edge_notify));
    let edge = SetpointProcess::start_with_env(&["edge"], &env, &edge_addr, dir.path()).await;
    let ready = next_message(&edge_socket, "edge READY=1").await;
    assert!(
        assignments(&ready).contains(&"READY=1"),
        "edge: {ready:?}; log:\n{}",
        edge.log_text()
    );
    assert_eq!(status_of(&format!("{}/readyz", edge.base())).await, 200);
    let state = dir.path().join("state/edge");
    let kept = setpoint_tests::wait_until(Duration::from_secs(20), || {
        let state = state.clone();
        async move { state.read_dir().is_ok_and(|mut d| d.next().is_some()) }
    })
    .await;
    assert!(
        kept,
        "the edge kept no snapshot in its state directory; log:\n{}",
        edge.log_text()
    );
    // JSON logs, as the env files ask.
    let log = edge.log_text();
    let first = log.lines().find(|l| l.starts_with('{')).unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "the edge does not log JSON lines: {log}"
    );
}

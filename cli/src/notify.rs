//! systemd's readiness protocol (`sd_notify`), without libsystemd: a unit with `Type=notify`
//! starts the service with `NOTIFY_SOCKET` naming a Unix datagram socket (a path, or an abstract
//! name written with a leading `@`), and the service sends `READY=1` there once it serves, so
//! `systemctl start` returns — and units ordered after it start — only then. Without
//! `NOTIFY_SOCKET` (a terminal, a container, a test) nothing is sent.
//!
//! The writer is ready once it has opened its store and bound its port; an edge once it has a
//! snapshot to serve (loaded from disk, or received from a writer) — the moment its `/readyz`
//! turns 200. `STOPPING=1` tells systemd a stop was asked for and the process is draining.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use setpoint_edge_node::holder::SnapshotHolder;

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to the socket `NOTIFY_SOCKET`
/// names. `Ok(false)` when the variable is unset or empty: not started by systemd.
pub fn notify(state: &str) -> std::io::Result<bool> {
    send(std::env::var_os("NOTIFY_SOCKET"), state)
}

/// [`notify`] with the socket given, so tests need not touch the process environment.
pub fn send(socket: Option<OsString>, state: &str) -> std::io::Result<bool> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let datagram = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // Linux's abstract namespace: the name has no file and no leading NUL in the variable.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        datagram.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        datagram.send_to(state.as_bytes(), std::path::Path::new(&socket))?;
    }
    Ok(true)
}

/// Sends `state`, logging a failure: a service that cannot tell systemd it is ready is still a
/// working service (systemd reports the start as timed out, which the log line explains).
pub fn tell(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told systemd"),
        Ok(false) => {}
        Err(err) => tracing::warn!(%err, state, "cannot notify systemd (NOTIFY_SOCKET)"),
    }
}

/// Resolves once the edge has a snapshot to serve. The holder's change signal wakes it at
/// once for a snapshot or a batch; the writer confirming an empty config set marks the holder
/// ready without a change, which the periodic look catches.
pub async fn edge_ready(holder: &SnapshotHolder) {
    let mut changes = holder.changes();
    while !holder.is_ready() {
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_sent_without_a_socket() {
        assert!(!send(None, "READY=1").expect("no socket is no error"));
        assert!(!send(Some(OsString::new()), "READY=1").expect("empty is unset"));
    }

    #[test]
    fn ready_reaches_a_socket_named_by_path() {
        let dir = std::env::temp_dir().join(format!("setpoint-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind the notify socket");
        assert!(
            send(
                Some(path.clone().into_os_string()),
                "READY=1\nSTATUS=serving"
            )
            .expect("send")
        );
        let mut buf = [0u8; 128];
        let n = listener.recv(&mut buf).expect("receive the notification");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ready_reaches_an_abstract_socket_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("setpoint-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
        assert!(send(Some(format!("@{name}").into()), "READY=1").expect("send"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("receive the notification");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error() {
        let missing = std::env::temp_dir().join("setpoint-notify-nobody-listens.sock");
        let _ = std::fs::remove_file(&missing);
        assert!(send(Some(missing.into_os_string()), "READY=1").is_err());
    }
}

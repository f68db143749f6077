//! Lean session clients: the `Session` protocol spoken straight over HTTP/2 (the `h2` crate),
//! so 100,000 of them fit on the machine beside the edge they measure.
//!
//! Each is what the edge sees of an SDK — a hello, a receipt for every update, a heartbeat
//! every interval in which it sent nothing else — with none of an SDK's work behind it (no
//! store, callbacks, cache file, reconnects) and none of tonic's plumbing in front (one task per
//! session; a receipt goes onto the stream with no channel or body task in between). The SDK's
//! own cost per update is what `sessions` without `--lean` measures; on two shared cores, 100,000
//! SDK clients take more CPU per write than the edge serving them, which is what this separates.
//!
//! Like `fanout`'s simulated edges: real connections and the real frames, decoded and answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use prost::Message;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as ClientKind;
use setpoint_proto::edge::v1::server_message::Kind as ServerKind;
use setpoint_serving::server::Coalesce;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

use crate::sessions::Current;

/// What every lean session shares.
pub struct Fleet {
    pub edge: String,
    pub authorization: String,
    pub prefix: String,
    /// The write being timed, whose value each session looks for in its updates.
    pub current: Current,
    /// Sessions synced (their reset applied) so far.
    pub ready: Arc<AtomicUsize>,
    /// Sessions that ended (refused, or the edge closed them).
    pub ended: Arc<AtomicUsize>,
}

/// Opens `count` HTTP/2 connections to the edge.
pub async fn connect(edge: &str, count: usize) -> anyhow::Result<Vec<SendRequest<Bytes>>> {
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let tcp = TcpStream::connect(edge)
            .await
            .with_context(|| format!("connecting to {edge}"))?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(Coalesce::new(tcp))
            .await
            .context("the HTTP/2 handshake")?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("lean client connection ended: {error}");
            }
        });
        senders.push(sender);
    }
    Ok(senders)
}

/// One gRPC message frame: the 5-byte prefix (uncompressed, length) and the message.
fn frame(message: &pb::ClientMessage) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message.encode_raw(&mut buf);
    buf.freeze()
}

fn message(kind: ClientKind) -> Bytes {
    frame(&pb::ClientMessage { kind: Some(kind) })
}

/// Runs session `index` until the edge ends it or the process exits.
pub async fn session(
    fleet: Arc<Fleet>,
    sender: SendRequest<Bytes>,
    index: usize,
) -> anyhow::Result<()> {
    let result = run(&fleet, sender, index).await;
    fleet.ended.fetch_add(1, Ordering::Relaxed);
    result
}

async fn run(fleet: &Fleet, sender: SendRequest<Bytes>, index: usize) -> anyhow::Result<()> {
    let mut sender = sender.ready().await.context("the connection")?;
    let request = http::Request::post(format!(
        "http://{}/setpoint.edge.v1.Edge/Session",
        fleet.edge
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", &fleet.authorization)
    .body(())?;
    let (response, mut send) = sender.send_request(request, false)?;
    let hello = pb::ClientHello {
        instance_id: format!("lean-{index}"),
        prefixes: vec![fleet.prefix.clone()],
        sdk: "loadtest-lean".into(),
        sdk_version: env!("CARGO_PKG_VERSION").into(),
        ..pb::ClientHello::default()
    };
    send.send_data(message(ClientKind::Hello(hello)), false)?;
    let response = response.await.context("the session's response")?;
    if response.status() != http::StatusCode::OK {
        bail!("session {index}: HTTP {}", response.status());
    }
    if let Some(status) = response.headers().get("grpc-status") {
        bail!("session {index} refused: grpc-status {status:?}");
    }
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    let mut heartbeat = Duration::from_secs(5);
    let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut synced = false;
    loop {
        tokio::select! {
            data = body.data() => {
                let Some(data) = data else { return Ok(()) };
                let data = data.context("the session's stream")?;
                let _ = body.flow_control().release_capacity(data.len());
                buffer.extend_from_slice(&data);
                while let Some(server) = next_message(&mut buffer)? {
                    match server.kind {
                        Some(ServerKind::Started(started)) if started.heartbeat_interval_ms > 0 => {
                            heartbeat = Duration::from_millis(u64::from(started.heartbeat_interval_ms));
                            ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
                            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        }
                        Some(ServerKind::Update(update)) => {
                            arrived(fleet, &update);
                            if update.reset && !synced {
                                synced = true;
                                fleet.ready.fetch_add(1, Ordering::Relaxed);
                            }
                            let receipt = pb::Receipt { revision: update.revision, failures: Vec::new() };
                            send.send_data(message(ClientKind::Receipt(receipt)), false)?;
                            // Something went out: the heartbeat can wait a whole interval
                            // (pushing a timer's deadline out is one atomic operation).
                            ticks.reset();
                        }
                        _ => {}
                    }
                }
            }
            _ = ticks.tick() => {
                let beat = pb::Heartbeat { revision: 0, stale: false };
                send.send_data(message(ClientKind::Heartbeat(beat)), false)?;
            }
        }
    }
}

/// The next whole message in `buffer`, if one has arrived.
fn next_message(buffer: &mut BytesMut) -> anyhow::Result<Option<pb::ServerMessage>> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + len {
        return Ok(None);
    }
    buffer.advance(5);
    let body = buffer.split_to(len);
    Ok(Some(
        pb::ServerMessage::decode(body).context("a server message")?,
    ))
}

/// Notes the arrival of the timed write, if `update` carries it.
fn arrived(fleet: &Fleet, update: &pb::WatchResponse) {
    if let Some(write) = fleet.current.load().as_ref()
        && update
            .events
            .iter()
            .any(|event| event.new_value.as_deref() == Some(write.json.as_str()))
    {
        write.arrive();
    }
}

//! Lean session clients: the `Session` protocol spoken over hand-framed HTTP/2
//! ([`crate::h2wire`]), one task per connection driving every session on it, so 100,000 of them
//! fit on the machine beside the edge they measure.
//!
//! Each session is what the edge sees of an SDK — a stream of its own, a hello, a receipt for
//! every update, a heartbeat every interval in which it sent nothing else — with none of an
//! SDK's work behind it (no store, callbacks, cache file, reconnects) and none of an HTTP/2
//! library's per-stream machinery in front: the connection's task reads a batch of frames,
//! decodes each session's messages, and answers them all in one write. The SDK's own cost per
//! update is what `sessions` without `--lean` measures; on two shared cores, 100,000 SDK clients
//! take more CPU per write than the edge serving them, which is what this separates.
//!
//! Like `fanout`'s simulated edges: real connections and the real frames, decoded and answered.
//! The edge cannot tell these sessions from any other client's: every one is its own gRPC stream
//! with its own flow control.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use setpoint_proto::edge::v1 as pb;
use setpoint_proto::edge::v1::client_message::Kind as ClientKind;
use setpoint_proto::edge::v1::server_message::Kind as ServerKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::h2wire::{self, Frame};
use crate::sessions::Current;

/// What every lean session shares.
pub struct Fleet {
    pub edge: String,
    pub authorization: String,
    pub prefix: String,
    /// The write being timed, whose value each session looks for in its updates.
    pub current: Current,
    /// Sessions opening at once on each connection (opened, not yet synced).
    pub opening: usize,
    /// Sessions synced (their reset applied) so far.
    pub ready: AtomicUsize,
    /// Sessions that ended (refused, or the edge closed them).
    pub ended: AtomicUsize,
}

const SESSION_PATH: &str = "/setpoint.edge.v1.Edge/Session";
/// The largest server message accepted, as the Rust SDK's (the rest of a longer one would
/// wait in a session's buffer).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Bytes received on a stream or the connection before the window is opened again: the windows
/// start at the maximum, so this is rarely reached.
const REFILL: u32 = 1 << 30;

/// Runs the sessions `indices` over one connection until the edge closes it or the task is
/// aborted. Every session that did not end before is counted in [`Fleet::ended`] when it returns.
pub async fn connection(fleet: Arc<Fleet>, indices: Vec<usize>) -> anyhow::Result<()> {
    let mut conn = Connection::new(&fleet, indices);
    let result = conn.run().await;
    conn.end_all();
    result
}

struct Session {
    index: usize,
    /// The start of a message split across DATA frames.
    partial: BytesMut,
    synced: bool,
    ended: bool,
    /// When the session last sent anything: a heartbeat is due an interval after.
    sent_at: Instant,
    /// What the edge lets this stream send.
    window: i64,
    /// Bytes received since this stream's window was last opened.
    received: u32,
}

struct Connection<'a> {
    fleet: &'a Fleet,
    indices: Vec<usize>,
    /// `sessions[k]` is stream `2k + 1`.
    sessions: Vec<Session>,
    opening: usize,
    out: BytesMut,
    /// Messages waiting for window: (session, the whole DATA frame's payload).
    blocked: VecDeque<(usize, Bytes)>,
    /// What the edge lets this connection send.
    window: i64,
    /// The edge's SETTINGS.
    initial_window: i64,
    max_streams: usize,
    /// Bytes received since the connection's window was last opened.
    received: u32,
    heartbeat: Duration,
    /// The clock as of the current batch of frames.
    now: Instant,
}

impl<'a> Connection<'a> {
    fn new(fleet: &'a Fleet, indices: Vec<usize>) -> Connection<'a> {
        Connection {
            fleet,
            sessions: Vec::with_capacity(indices.len()),
            indices,
            opening: 0,
            out: BytesMut::with_capacity(64 << 10),
            blocked: VecDeque::new(),
            window: h2wire::DEFAULT_WINDOW,
            initial_window: h2wire::DEFAULT_WINDOW,
            max_streams: usize::MAX,
            received: 0,
            heartbeat: Duration::from_secs(5),
            now: Instant::now(),
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let edge = &self.fleet.edge;
        let tcp = TcpStream::connect(edge)
            .await
            .with_context(|| format!("connecting to {edge}"))?;
        tcp.set_nodelay(true)?;
        let (mut read, mut write) = tcp.into_split();
        self.out.put_slice(h2wire::PREFACE);
        h2wire::put_settings(
            &mut self.out,
            &[
                (h2wire::SETTINGS_ENABLE_PUSH, 0),
                (h2wire::SETTINGS_INITIAL_WINDOW_SIZE, h2wire::MAX_WINDOW),
            ],
        );
        // The connection window starts at 65,535 bytes too: open it to the maximum.
        h2wire::put_window_update(&mut self.out, 0, h2wire::MAX_WINDOW - 65_535);
        self.open_more()?;
        let mut input = BytesMut::with_capacity(256 << 10);
        // Heartbeats are due an interval after a session last sent; checked every second.
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                // Writing first: what the edge waits for goes out before more is read.
                biased;
                written = write.write_buf(&mut self.out), if !self.out.is_empty() => {
                    written.context("writing to the edge")?;
                }
                read = read.read_buf(&mut input) => {
                    if read.context("reading from the edge")? == 0 {
                        return Ok(());
                    }
                    self.now = Instant::now();
                    // Our SETTINGS leave the frames we accept at the default size.
                    while let Some(frame) = h2wire::next_frame(&mut input, h2wire::DEFAULT_MAX_FRAME)? {
                        if !self.on_frame(frame)? {
                            return Ok(());
                        }
                    }
                    self.open_more()?;
                    input.reserve(64 << 10);
                }
                _ = ticks.tick() => {
                    self.now = Instant::now();
                    self.heartbeats();
                }
            }
        }
    }

    /// Opens sessions while fewer than [`Fleet::opening`] are opening and the edge allows more
    /// streams.
    fn open_more(&mut self) -> anyhow::Result<()> {
        while self.opening < self.fleet.opening.max(1)
            && self.sessions.len() < self.indices.len()
            && self.sessions.len() < self.max_streams
        {
            let k = self.sessions.len();
            let index = self.indices[k];
            h2wire::put_request(
                &mut self.out,
                stream_id(k),
                &self.fleet.edge,
                SESSION_PATH,
                &[
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("authorization", &self.fleet.authorization),
                ],
            )?;
            self.sessions.push(Session {
                index,
                partial: BytesMut::new(),
                synced: false,
                ended: false,
                sent_at: self.now,
                window: self.initial_window,
                received: 0,
            });
            self.opening += 1;
            let hello = pb::ClientHello {
                instance_id: format!("lean-{index}"),
                prefixes: vec![self.fleet.prefix.clone()],
                sdk: "loadtest-lean".into(),
                sdk_version: env!("CARGO_PKG_VERSION").into(),
                ..pb::ClientHello::default()
            };
            self.send(k, ClientKind::Hello(hello));
        }
        Ok(())
    }

    /// Handles one frame; `false` once the edge closed the connection.
    fn on_frame(&mut self, frame: Frame) -> anyhow::Result<bool> {
        match frame.kind {
            h2wire::DATA => self.on_data(&frame)?,
            // The response's headers are skipped; its trailers (END_STREAM) end the session.
            h2wire::HEADERS if frame.flags & h2wire::END_STREAM != 0 => self.end(frame.stream),
            h2wire::RST_STREAM => self.end(frame.stream),
            h2wire::SETTINGS if frame.flags & h2wire::ACK == 0 => {
                for (id, value) in frame.settings()? {
                    self.on_setting(id, value)?;
                }
                h2wire::put_settings_ack(&mut self.out);
            }
            h2wire::PING if frame.flags & h2wire::ACK == 0 => {
                h2wire::put_ping_ack(&mut self.out, &frame.payload);
            }
            h2wire::GOAWAY => {
                let (code, debug) = h2wire::goaway(&frame.payload)?;
                if code != 0 {
                    bail!("the edge closed the connection: GOAWAY error {code:#x} {debug:?}");
                }
                return Ok(false);
            }
            h2wire::WINDOW_UPDATE => {
                let increment = i64::from(frame.increment()?);
                match frame.stream {
                    0 => self.window += increment,
                    stream => {
                        if let Some(session) = self.session(stream) {
                            session.window += increment;
                        }
                    }
                }
                self.unblock();
            }
            _ => {}
        }
        Ok(true)
    }

    fn on_setting(&mut self, id: u16, value: u32) -> anyhow::Result<()> {
        match id {
            h2wire::SETTINGS_INITIAL_WINDOW_SIZE => {
                if value > h2wire::MAX_WINDOW {
                    bail!("the edge's initial window {value} is over the maximum");
                }
                let delta = i64::from(value) - self.initial_window;
                self.initial_window = i64::from(value);
                for session in &mut self.sessions {
                    session.window += delta;
                }
                self.unblock();
            }
            h2wire::SETTINGS_MAX_CONCURRENT_STREAMS => {
                self.max_streams = usize::try_from(value).unwrap_or(usize::MAX);
                if self.max_streams < self.indices.len() {
                    bail!(
                        "the edge allows {value} streams per connection: {} sessions need more connections",
                        self.indices.len()
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_data(&mut self, frame: &Frame) -> anyhow::Result<()> {
        // Flow control counts the whole payload, padding included.
        let len = u32::try_from(frame.payload.len()).unwrap_or(u32::MAX);
        self.received += len;
        if self.received >= REFILL {
            h2wire::put_window_update(&mut self.out, 0, self.received);
            self.received = 0;
        }
        let Some(k) = session_index(frame.stream).filter(|&k| k < self.sessions.len()) else {
            bail!(
                "DATA on stream {}, which this client never opened",
                frame.stream
            );
        };
        let data = frame.data()?;
        let session = &mut self.sessions[k];
        session.received += len;
        if session.received >= REFILL {
            h2wire::put_window_update(&mut self.out, frame.stream, session.received);
            session.received = 0;
        }
        // Whole messages straight from the frame; what a frame splits waits in `partial`.
        let mut data = if session.partial.is_empty() {
            data
        } else {
            session.partial.extend_from_slice(&data);
            session.partial.split().freeze()
        };
        let mut messages = Vec::new();
        while let Some(message) = next_message(&mut data)? {
            messages.push(message);
        }
        session.partial.extend_from_slice(&data);
        for message in messages {
            self.on_message(k, message);
        }
        if frame.flags & h2wire::END_STREAM != 0 {
            self.end(frame.stream);
        }
        Ok(())
    }

    fn on_message(&mut self, k: usize, message: pb::ServerMessage) {
        match message.kind {
            Some(ServerKind::Started(started)) if started.heartbeat_interval_ms > 0 => {
                self.heartbeat = Duration::from_millis(u64::from(started.heartbeat_interval_ms));
            }
            Some(ServerKind::Update(update)) => {
                arrived(self.fleet, &update);
                let session = &mut self.sessions[k];
                if update.reset && !session.synced {
                    session.synced = true;
                    self.opening -= 1;
                    self.fleet.ready.fetch_add(1, Ordering::Relaxed);
                }
                let receipt = pb::Receipt {
                    revision: update.revision,
                    failures: Vec::new(),
                };
                self.send(k, ClientKind::Receipt(receipt));
            }
            _ => {}
        }
    }

    /// A heartbeat from every session that sent nothing for an interval.
    fn heartbeats(&mut self) {
        for k in 0..self.sessions.len() {
            let session = &self.sessions[k];
            if !session.ended && self.now.duration_since(session.sent_at) >= self.heartbeat {
                let beat = pb::Heartbeat {
                    revision: 0,
                    stale: false,
                };
                self.send(k, ClientKind::Heartbeat(beat));
            }
        }
    }

    /// Sends `kind` on session `k`'s stream as one gRPC message in one DATA frame (a hello,
    /// receipt or heartbeat is far below the 16,384 bytes every HTTP/2 peer accepts), or queues
    /// it until the edge's windows allow it.
    fn send(&mut self, k: usize, kind: ClientKind) {
        let message = pb::ClientMessage { kind: Some(kind) };
        let len = 5 + message.encoded_len();
        debug_assert!(len <= h2wire::DEFAULT_MAX_FRAME);
        let session = &mut self.sessions[k];
        session.sent_at = self.now;
        let fits = len as i64 <= self.window.min(session.window);
        if self.blocked.is_empty() && fits {
            self.window -= len as i64;
            session.window -= len as i64;
            h2wire::put_header(&mut self.out, len, h2wire::DATA, 0, stream_id(k));
            put_message(&mut self.out, &message);
        } else {
            let mut payload = BytesMut::with_capacity(len);
            put_message(&mut payload, &message);
            self.blocked.push_back((k, payload.freeze()));
        }
    }

    /// Sends what waited for window, in order, as far as the windows now allow.
    fn unblock(&mut self) {
        while let Some((k, payload)) = self.blocked.front() {
            let (k, len) = (*k, payload.len() as i64);
            let session = &mut self.sessions[k];
            if len > self.window.min(session.window) {
                break;
            }
            self.window -= len;
            session.window -= len;
            h2wire::put_header(&mut self.out, payload.len(), h2wire::DATA, 0, stream_id(k));
            self.out.put_slice(payload);
            self.blocked.pop_front();
        }
    }

    fn session(&mut self, stream: u32) -> Option<&mut Session> {
        session_index(stream).and_then(|k| self.sessions.get_mut(k))
    }

    /// The edge ended session on `stream`.
    fn end(&mut self, stream: u32) {
        let fleet = self.fleet;
        let Some(session) = self.session(stream) else {
            return;
        };
        if session.ended {
            return;
        }
        session.ended = true;
        let synced = session.synced;
        if fleet.ended.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("lean session {}: the edge ended its stream", session.index);
        }
        if !synced {
            self.opening -= 1;
        }
    }

    /// The connection is gone: every session on it ended, and those never opened count too.
    fn end_all(&mut self) {
        let open = self.sessions.iter().filter(|s| !s.ended).count();
        let unopened = self.indices.len() - self.sessions.len();
        self.fleet
            .ended
            .fetch_add(open + unopened, Ordering::Relaxed);
    }
}

fn stream_id(k: usize) -> u32 {
    u32::try_from(2 * k + 1).unwrap_or(u32::MAX)
}

fn session_index(stream: u32) -> Option<usize> {
    (stream % 2 == 1).then_some((stream / 2) as usize)
}

/// One gRPC message: the 5-byte prefix (uncompressed, length) and the message.
fn put_message(out: &mut BytesMut, message: &pb::ClientMessage) {
    out.put_u8(0);
    out.put_u32(u32::try_from(message.encoded_len()).unwrap_or(u32::MAX));
    message.encode_raw(out);
}

/// The next whole message at the front of `data`, if it is all there.
fn next_message(data: &mut Bytes) -> anyhow::Result<Option<pb::ServerMessage>> {
    if data.len() < 5 {
        return Ok(None);
    }
    if data[0] != 0 {
        bail!("a compressed message, which the session never asked for");
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if len > MAX_MESSAGE_BYTES {
        bail!("a message of {len} bytes announced (at most {MAX_MESSAGE_BYTES})");
    }
    if data.len() < 5 + len {
        return Ok(None);
    }
    data.advance(5);
    let body = data.split_to(len);
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

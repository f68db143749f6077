//! Just enough HTTP/2 (RFC 9113) for a client that opens streams with fixed request headers and
//! exchanges DATA on them: frames read off and written into byte buffers, and an HPACK encoding
//! that uses no dynamic table (RFC 7541 literals and static-table indices only).
//!
//! Server header blocks are not decoded: the lean clients only need to know that a stream ended
//! (trailers carry END_STREAM). Everything else — flow control, SETTINGS, PING — is the caller's,
//! in [`crate::lean`].

use anyhow::bail;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What a client sends before anything else.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest payload a peer may send before SETTINGS_MAX_FRAME_SIZE says otherwise.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// The flow-control window every stream and the connection start with.
pub const DEFAULT_WINDOW: i64 = 65_535;
/// The largest window flow control allows.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;

pub const END_STREAM: u8 = 0x1;
/// SETTINGS and PING: the acknowledgement.
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;

pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

const HEADER_LEN: usize = 9;

/// One frame as read: its payload shares the read buffer's memory.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Bytes,
}

impl Frame {
    /// A DATA frame's data, its padding removed.
    pub fn data(&self) -> anyhow::Result<Bytes> {
        if self.flags & PADDED == 0 {
            return Ok(self.payload.clone());
        }
        let Some(&pad) = self.payload.first() else {
            bail!("a padded DATA frame without its pad length");
        };
        let end = self.payload.len().checked_sub(usize::from(pad));
        match end {
            Some(end) if end >= 1 => Ok(self.payload.slice(1..end)),
            _ => bail!("DATA padding longer than the frame"),
        }
    }

    /// A SETTINGS frame's (identifier, value) pairs.
    pub fn settings(&self) -> anyhow::Result<Vec<(u16, u32)>> {
        if !self.payload.len().is_multiple_of(6) {
            bail!("a SETTINGS payload of {} bytes", self.payload.len());
        }
        let mut payload = self.payload.clone();
        let mut settings = Vec::with_capacity(payload.len() / 6);
        while payload.has_remaining() {
            settings.push((payload.get_u16(), payload.get_u32()));
        }
        Ok(settings)
    }

    /// A WINDOW_UPDATE frame's increment.
    pub fn increment(&self) -> anyhow::Result<u32> {
        match <[u8; 4]>::try_from(&self.payload[..]) {
            Ok(bytes) => Ok(u32::from_be_bytes(bytes) & MAX_WINDOW),
            Err(_) => bail!("a WINDOW_UPDATE payload of {} bytes", self.payload.len()),
        }
    }
}

/// A GOAWAY payload's error code and debug data.
pub fn goaway(payload: &[u8]) -> anyhow::Result<(u32, String)> {
    if payload.len() < 8 {
        bail!("a GOAWAY payload of {} bytes", payload.len());
    }
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    Ok((code, String::from_utf8_lossy(&payload[8..]).into_owned()))
}

/// Takes the next whole frame off `buffer`, if one has arrived; a frame longer than `max` is an
/// error (the peer ignored our SETTINGS_MAX_FRAME_SIZE).
pub fn next_frame(buffer: &mut BytesMut, max: usize) -> anyhow::Result<Option<Frame>> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(buffer[0]) << 16 | usize::from(buffer[1]) << 8 | usize::from(buffer[2]);
    if len > max {
        bail!("a frame of {len} bytes (at most {max} allowed)");
    }
    if buffer.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let kind = buffer[3];
    let flags = buffer[4];
    let stream = u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & MAX_WINDOW;
    buffer.advance(HEADER_LEN);
    let payload = buffer.split_to(len).freeze();
    Ok(Some(Frame {
        kind,
        flags,
        stream,
        payload,
    }))
}

/// A frame header for a payload of `len` bytes, the payload to follow.
pub fn put_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream & MAX_WINDOW);
}

pub fn put_settings(out: &mut BytesMut, settings: &[(u16, u32)]) {
    put_header(out, settings.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in settings {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub fn put_settings_ack(out: &mut BytesMut) {
    put_header(out, 0, SETTINGS, ACK, 0);
}

pub fn put_ping_ack(out: &mut BytesMut, payload: &[u8]) {
    put_header(out, payload.len(), PING, ACK, 0);
    out.put_slice(payload);
}

pub fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_header(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment & MAX_WINDOW);
}

/// A HEADERS frame (END_HEADERS, the stream left open) for a POST of `path` to `authority` over
/// cleartext, with `headers` (lower-case names) after the pseudo-headers.
pub fn put_request(
    out: &mut BytesMut,
    stream: u32,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut block = BytesMut::with_capacity(64 + path.len() + authority.len());
    block.put_u8(0x80 | 3); // :method POST (static index 3)
    block.put_u8(0x80 | 6); // :scheme http (static index 6)
    put_literal(&mut block, 4, "", path); // :path (static name 4)
    put_literal(&mut block, 1, "", authority); // :authority (static name 1)
    for (name, value) in headers {
        put_literal(&mut block, static_name(name), name, value);
    }
    if block.len() > DEFAULT_MAX_FRAME {
        bail!(
            "request headers of {} bytes need CONTINUATION frames",
            block.len()
        );
    }
    put_header(out, block.len(), HEADERS, END_HEADERS, stream);
    out.put_slice(&block);
    Ok(())
}

/// The static table's index of a header name the lean clients send (0: not in the table).
fn static_name(name: &str) -> usize {
    match name {
        "authorization" => 23,
        "content-type" => 31,
        "user-agent" => 58,
        _ => 0,
    }
}

/// A literal header field without indexing (RFC 7541 §6.2.2): the name by static `index`, or
/// spelled out when `index` is 0; strings without Huffman coding.
fn put_literal(block: &mut BytesMut, index: usize, name: &str, value: &str) {
    put_int(block, index, 4, 0x00);
    if index == 0 {
        put_string(block, name);
    }
    put_string(block, value);
}

fn put_string(block: &mut BytesMut, text: &str) {
    put_int(block, text.len(), 7, 0x00);
    block.put_slice(text.as_bytes());
}

/// An HPACK integer (RFC 7541 §5.1) with an `prefix`-bit prefix, `high` the first byte's bits
/// above it.
fn put_int(block: &mut BytesMut, mut value: usize, prefix: u8, high: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        block.put_u8(high | value as u8);
        return;
    }
    block.put_u8(high | max as u8);
    value -= max;
    while value >= 128 {
        block.put_u8((value % 128) as u8 | 0x80);
        value /= 128;
    }
    block.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_rfc_7541_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix.
        let mut block = BytesMut::new();
        put_int(&mut block, 10, 5, 0);
        assert_eq!(&block[..], &[0x0a]);
        block.clear();
        put_int(&mut block, 1337, 5, 0);
        assert_eq!(&block[..], &[0x1f, 0x9a, 0x0a]);
        block.clear();
        put_int(&mut block, 23, 4, 0);
        assert_eq!(&block[..], &[0x0f, 0x08]);
    }

    #[test]
    fn frames_round_trip_and_partial_frames_wait() {
        let mut out = BytesMut::new();
        put_window_update(&mut out, 3, 1000);
        put_settings(&mut out, &[(SETTINGS_ENABLE_PUSH, 0)]);
        let mut input = BytesMut::from(&out[..out.len() - 1]);
        let first = next_frame(&mut input, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!((first.kind, first.stream), (WINDOW_UPDATE, 3));
        assert_eq!(first.increment().unwrap(), 1000);
        assert!(next_frame(&mut input, DEFAULT_MAX_FRAME).unwrap().is_none());
        input.put_u8(out[out.len() - 1]);
        let second = next_frame(&mut input, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(second.settings().unwrap(), vec![(SETTINGS_ENABLE_PUSH, 0)]);
        assert!(input.is_empty());
    }

    /// A real HTTP/2 server (the `h2` crate, hyper's) accepts the request `put_request` encodes
    /// and reads the DATA framed after it.
    #[tokio::test]
    async fn an_http2_server_reads_the_request() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(tcp).await.unwrap();
            let (request, _respond) = connection.accept().await.unwrap().unwrap();
            tokio::spawn(async move { while connection.accept().await.is_some() {} });
            let (parts, mut body) = request.into_parts();
            let data = body.data().await.unwrap().unwrap();
            (parts, data)
        });
        let mut out = BytesMut::new();
        out.put_slice(PREFACE);
        put_settings(&mut out, &[(SETTINGS_ENABLE_PUSH, 0)]);
        let token = format!("Bearer {}", "t".repeat(300));
        put_request(
            &mut out,
            1,
            &address,
            "/setpoint.edge.v1.Edge/Session",
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("authorization", &token),
            ],
        )
        .unwrap();
        put_header(&mut out, 3, DATA, 0, 1);
        out.put_slice(b"abc");
        let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
        tcp.write_all(&out).await.unwrap();
        let (parts, data) = server.await.unwrap();
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.uri.path(), "/setpoint.edge.v1.Edge/Session");
        assert_eq!(parts.uri.authority().unwrap().as_str(), address);
        assert_eq!(parts.headers["content-type"], "application/grpc");
        assert_eq!(parts.headers["te"], "trailers");
        assert_eq!(parts.headers["authorization"], token.as_str());
        assert_eq!(&data[..], b"abc");
    }

    #[test]
    fn goaway_gives_its_code_and_debug_data() {
        let payload = [0, 0, 0, 7, 0, 0, 0, 0xb, b'c', b'a', b'l', b'm'];
        assert_eq!(goaway(&payload).unwrap(), (0xb, "calm".to_owned()));
        assert!(goaway(&payload[..7]).is_err());
    }

    #[test]
    fn oversized_frames_and_bad_padding_are_refused() {
        let mut out = BytesMut::new();
        put_header(&mut out, 20_000, DATA, 0, 1);
        assert!(next_frame(&mut out, DEFAULT_MAX_FRAME).is_err());
        let frame = Frame {
            kind: DATA,
            flags: PADDED,
            stream: 1,
            payload: Bytes::from_static(&[5, 1, 2]),
        };
        assert!(frame.data().is_err());
        let frame = Frame {
            kind: DATA,
            flags: PADDED,
            stream: 1,
            payload: Bytes::from_static(&[1, 7, 8, 0]),
        };
        assert_eq!(&frame.data().unwrap()[..], &[7, 8]);
    }
}

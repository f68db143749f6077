//! The first request head of an HTTP/1.1 connection, read before hyper sees the connection, to
//! tell an event-stream `GET` (served by [`super::stream`] without hyper's per-connection
//! buffers) from everything else (handed to hyper untouched, through [`Rewind`]).
//!
//! Only a complete, valid HTTP/1.1 `GET` head that asks for an event stream, carries no body, asks
//! for no upgrade and is all the client has sent takes the raw path; anything else — an h2c
//! preface, another method, a head larger than [`HEAD_LIMIT`], garbage, pipelined bytes — is
//! hyper's, which answers it exactly as it would have. Must not: answer anything itself; a head it
//! cannot judge is always hyper's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The most of a head read here; a longer one is hyper's (which allows far more). Event-stream
/// requests are a request line, a key and a few headers.
pub(super) const HEAD_LIMIT: usize = 16 * 1024;

/// Headers one head may carry on the raw path; more go to hyper (its own limit is 100).
const MAX_HEADERS: usize = 64;

/// What the first head of a connection turned out to be.
pub(super) enum Sniffed {
    /// An event-stream `GET`: the whole request (no body), every byte of it consumed.
    EventStream(Box<Request<Body>>),
    /// Anything else: the bytes read so far, to be replayed to hyper.
    Other(Bytes),
    /// The client closed (or the read failed) before a decision.
    Closed,
}

/// Reads from `tcp` until the first head can be judged. The caller bounds the time.
pub(super) async fn sniff(tcp: &mut TcpStream) -> Sniffed {
    let mut buffer = BytesMut::with_capacity(1024);
    loop {
        match tcp.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return Sniffed::Closed,
            Ok(_) => {}
        }
        match judge(&buffer) {
            Judged::NeedMore if buffer.len() < HEAD_LIMIT => {
                // `read_buf` only fills spare capacity: grow it, within the limit.
                buffer.reserve((HEAD_LIMIT - buffer.len()).min(4096));
            }
            Judged::NeedMore | Judged::Other => return Sniffed::Other(buffer.freeze()),
            Judged::EventStream(request) => return Sniffed::EventStream(request),
        }
    }
}

/// The decision on the bytes read so far.
enum Judged {
    NeedMore,
    Other,
    EventStream(Box<Request<Body>>),
}

/// Judges `bytes`, the start of a connection. Synchronous, so the header array never lives in
/// the connection's future.
fn judge(bytes: &[u8]) -> Judged {
    const GET: &[u8] = b"GET ";
    let start = bytes.len().min(GET.len());
    if bytes[..start] != GET[..start] {
        // Another method, an h2c preface (`PRI * HTTP/2.0`), garbage: decided on the first bytes.
        return Judged::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(bytes) {
        Ok(httparse::Status::Partial) => Judged::NeedMore,
        // Pipelined bytes after the head are hyper's to serve in order.
        Ok(httparse::Status::Complete(length)) if length == bytes.len() => {
            match event_stream_request(&head) {
                Some(request) => Judged::EventStream(Box::new(request)),
                None => Judged::Other,
            }
        }
        Ok(httparse::Status::Complete(_)) | Err(_) => Judged::Other,
    }
}

/// The request of a parsed head when it is a bodiless HTTP/1.1 `GET` asking for an event stream.
fn event_stream_request(head: &httparse::Request<'_, '_>) -> Option<Request<Body>> {
    if head.method != Some("GET") || head.version != Some(1) {
        return None;
    }
    let uri: Uri = head.path?.parse().ok()?;
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    headers.reserve(head.headers.len());
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        headers.append(name, value);
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    // Upgrades and `Expect: 100-continue` are hyper's protocol work.
    let protocol = headers.contains_key(header::UPGRADE) || headers.contains_key(header::EXPECT);
    if has_body || protocol || !wants_event_stream(&request) {
        return None;
    }
    Some(request)
}

/// `Accept: text/event-stream`, or a true `watch` query parameter (the edge's `?watch=true`, by
/// core's flag rule; `setpoint dev` sends those to its edge).
fn wants_event_stream(request: &Request<Body>) -> bool {
    let accepts = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| contains_ignore_case(v.as_bytes(), b"text/event-stream"));
    let watch = request.uri().query().is_some_and(|query| {
        query.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            name == "watch" && setpoint_core::read::flag("watch", Some(value)) == Ok(true)
        })
    });
    accepts || watch
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// A connection whose first bytes were already read: replays them, then reads the socket, so
/// hyper sees the untouched stream.
pub(super) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    pub(super) fn new(prefix: Bytes, inner: TcpStream) -> Rewind {
        Rewind { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if !self.prefix.has_remaining() {
                // Give the bytes back now rather than with the connection.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a client sends, judging it never panics, and a head that is not all there
        /// yet is never taken for anything.
        #[test]
        fn any_bytes_are_judged_without_panicking(
            get in any::<bool>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            // Half the inputs start as an event-stream head would, so the parser sees them.
            let mut input = if get {
                b"GET /a?watch=true HTTP/1.1\r\n".to_vec()
            } else {
                Vec::new()
            };
            input.extend_from_slice(&bytes);
            let _ = judge(&input);
        }

        #[test]
        fn every_prefix_of_an_event_stream_head_waits_for_the_rest(cut in 1usize..200) {
            let head = b"GET /api/config/app?watch=true&env=prod HTTP/1.1\r\nHost: edge\r\n\
                Authorization: Bearer sp_0123456789\r\nAccept: text/event-stream\r\n\r\n";
            let cut = cut.min(head.len() - 1);
            prop_assert!(matches!(judge(&head[..cut]), Judged::NeedMore), "{cut}");
            prop_assert!(matches!(judge(head), Judged::EventStream(_)));
        }
    }

    fn is_event_stream(head: &str) -> bool {
        matches!(judge(head.as_bytes()), Judged::EventStream(_))
    }

    #[test]
    fn event_stream_gets_are_told_from_everything_else() {
        assert!(is_event_stream(
            "GET /api/config/a?watch=true HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(is_event_stream(
            "GET /api/config/a?env=prod&watch HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(is_event_stream(
            "GET /api/config/a HTTP/1.1\r\naccept: Text/Event-Stream\r\n\r\n"
        ));
        for other in [
            // Not asking for a stream.
            "GET /api/config/a HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /api/config/a?watch=false HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /api/config/a?watcher=true HTTP/1.1\r\nHost: x\r\n\r\n",
            // HTTP/1.0 has no chunked encoding.
            "GET /a?watch=true HTTP/1.0\r\n\r\n",
            // A body, an upgrade, a continue.
            "GET /a?watch=true HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "GET /a?watch=true HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a?watch=true HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
            "GET /a?watch=true HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            // Pipelined: hyper serves both in order.
            "GET /a?watch=true HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            // Other methods and protocols, garbage.
            "POST /a?watch=true HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET\0/\r\n\r\n",
            "GET /a?watch=true HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(
                matches!(judge(other.as_bytes()), Judged::Other),
                "{other:?}"
            );
        }
    }

    #[test]
    fn an_unfinished_get_head_waits_and_anything_else_is_decided_at_once() {
        assert!(matches!(judge(b"GE"), Judged::NeedMore));
        assert!(matches!(
            judge(b"GET /a?watch=true HTTP/1.1\r\nHost:"),
            Judged::NeedMore
        ));
        assert!(matches!(judge(b"P"), Judged::Other));
        assert!(matches!(judge(b"PRI * HT"), Judged::Other));
    }

    #[test]
    fn the_request_carries_the_head() {
        let Judged::EventStream(request) = judge(
            b"GET /api/config/a?watch=true HTTP/1.1\r\nAuthorization: Bearer k\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
        ) else {
            panic!("an event stream");
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/api/config/a?watch=true");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["authorization"], "Bearer k");
        assert_eq!(request.headers().get_all("x-a").iter().count(), 2);
    }
}

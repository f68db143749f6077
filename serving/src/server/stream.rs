//! The raw path of an event-stream request (see [`super::head`]): the router's answer written
//! straight to the socket, without hyper's per-connection buffers — an idle SSE watcher holds
//! its socket, its response body and this small future, nothing else.
//!
//! The response head goes out as hyper would write it, with `connection: close`; a body of known
//! length (an error's JSON) follows as is, any other body as HTTP/1.1 chunks, one per body frame,
//! each written at once with one vectored write (chunk size line, the frame's shared bytes, CRLF),
//! no buffer kept between frames. When the body ends the last chunk is written and the connection
//! closed (an SSE client reconnects with `Last-Event-ID`). The stream also ends when the client
//! goes away (a write fails, or the socket reads end-of-file or an error while waiting for the
//! next frame) and when the server shuts down. Must not: decide anything about the request —
//! auth, routes, errors and metrics are the router's.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::http::response::Parts;
use axum::http::{HeaderValue, Request, StatusCode, header};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// How long the last chunk may take to leave when the server stops.
const FAREWELL: Duration = Duration::from_secs(1);

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body at all (204, 304).
    Empty,
    /// `content-length`: the bytes as they come.
    Length,
    /// `transfer-encoding: chunked`: one chunk per frame, then the last chunk.
    Chunked,
}

/// Answers `request` through `router` on `tcp`, then closes it. `in_flight` counts it until the
/// router has answered; `stop` turning true ends the stream.
///
/// An idle watcher is this future, so what it holds across its awaits is kept small: the router
/// call and the rare steps (the last chunk, the close) are boxed, and the waits are polled by hand
/// with one stop signal shared by all of them.
pub(super) async fn serve(
    mut tcp: TcpStream,
    request: Box<Request<Body>>,
    router: Router,
    in_flight: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut stopped = std::pin::pin!(stopped(stop));
    let (body, framing) = {
        let (head, body, framing) = Box::pin(answer(request, router, in_flight)).await;
        if write_or_stop(&mut tcp, [&head, &[], &[]], stopped.as_mut()).await? == Outcome::Stopped {
            return Ok(());
        }
        (body, framing)
    };
    if framing != Framing::Empty {
        stream_body(&mut tcp, body, framing, stopped.as_mut()).await?;
    }
    // A clean close (FIN): the request was read whole, so nothing unread resets it.
    let _ = Box::pin(tokio::time::timeout(FAREWELL, tcp.shutdown())).await;
    Ok(())
}

/// Resolves once the server stops (or is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The router's response: its encoded head, its body and how the body is framed.
async fn answer(
    request: Box<Request<Body>>,
    router: Router,
    in_flight: Arc<AtomicUsize>,
) -> (Vec<u8>, Body, Framing) {
    in_flight.fetch_add(1, Ordering::AcqRel);
    let answered = super::scopeguard(|| {
        in_flight.fetch_sub(1, Ordering::AcqRel);
    });
    let Ok(response) = router.oneshot(*request).await;
    drop(answered);
    let (mut parts, body) = response.into_parts();
    let framing = frame(&mut parts, &body);
    (encode_head(&parts), body, framing)
}

/// Picks the framing and sets the headers that say it, as hyper would: `content-length` when
/// the router set it or the body's size is known, else chunked; always `connection: close`.
fn frame(parts: &mut Parts, body: &Body) -> Framing {
    let headers = &mut parts.headers;
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if !headers.contains_key(header::DATE)
        && let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now()))
    {
        headers.insert(header::DATE, date);
    }
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        headers.remove(header::TRANSFER_ENCODING);
        return Framing::Empty;
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        headers.remove(header::TRANSFER_ENCODING);
        return Framing::Length;
    }
    if let Some(length) = body.size_hint().exact() {
        headers.remove(header::TRANSFER_ENCODING);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        return Framing::Length;
    }
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    Framing::Chunked
}

/// The status line and headers, as hyper writes them (lower-case names).
fn encode_head(parts: &Parts) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// What happened while waiting for the next frame.
enum Step {
    Frame(Bytes),
    End,
    Gone,
    Stop,
}

/// Whether a write finished or the server stopped first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    Stopped,
}

/// Writes `body`'s frames until it ends, the client goes away or `stopped` resolves.
async fn stream_body(
    tcp: &mut TcpStream,
    mut body: Body,
    framing: Framing,
    mut stopped: Pin<&mut impl Future<Output = ()>>,
) -> io::Result<()> {
    loop {
        // Polled by hand, not through `select!`: an idle watcher waits here, holding the body,
        // the socket's readiness and the stop signal — no read future, frame future or buffer.
        let step = std::future::poll_fn(|cx| {
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Stop);
            }
            match Pin::new(&mut body).poll_frame(cx) {
                // Trailers (none on an event stream) are not sent.
                Poll::Ready(Some(Ok(frame))) => {
                    return Poll::Ready(Step::Frame(frame.into_data().unwrap_or_default()));
                }
                // A failed body ends the response unfinished, as hyper does: no last chunk.
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Step::Gone),
                Poll::Ready(None) => return Poll::Ready(Step::End),
                Poll::Pending => {}
            }
            if peer_gone(tcp, cx).is_ready() {
                return Poll::Ready(Step::Gone);
            }
            Poll::Pending
        })
        .await;
        match step {
            // An empty chunk would end the body.
            Step::Frame(data) if data.is_empty() => {}
            Step::Frame(data) if framing == Framing::Chunked => {
                let mut size = [0u8; 18];
                let size = chunk_size_line(&mut size, data.len());
                let chunk = [size, &data, b"\r\n"];
                if write_or_stop(tcp, chunk, stopped.as_mut()).await? == Outcome::Stopped {
                    return Ok(());
                }
            }
            Step::Frame(data) => {
                if write_or_stop(tcp, [&data, &[], &[]], stopped.as_mut()).await?
                    == Outcome::Stopped
                {
                    return Ok(());
                }
            }
            Step::End | Step::Stop => {
                if framing == Framing::Chunked {
                    let last = tokio::time::timeout(FAREWELL, tcp.write_all(b"0\r\n\r\n"));
                    let _ = Box::pin(last).await;
                }
                return Ok(());
            }
            Step::Gone => return Ok(()),
        }
    }
}

/// Ready once the client went away: the socket reads end-of-file or an error. Bytes it sends on
/// a stream it asked for are read and dropped. Pending (with the waker registered) otherwise.
fn peer_gone(tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<()> {
    let mut discard = [0u8; 256];
    loop {
        match tcp.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => match tcp.try_read(&mut discard) {
                Ok(0) => return Poll::Ready(()),
                // Read, or readiness cleared: poll again, which registers the waker.
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            },
        }
    }
}

/// Writes `parts` in order with vectored writes (one, unless the socket takes less), unless
/// `stopped` resolves first. Holds only its progress between polls.
async fn write_or_stop(
    tcp: &mut TcpStream,
    parts: [&[u8]; 3],
    mut stopped: Pin<&mut impl Future<Output = ()>>,
) -> io::Result<Outcome> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let mut written = 0;
    std::future::poll_fn(|cx| {
        while written < total {
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Outcome::Stopped));
            }
            let slices = unwritten(&parts, written);
            match Pin::new(&mut *tcp).poll_write_vectored(cx, &slices) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
            }
        }
        Poll::Ready(Ok(Outcome::Written))
    })
    .await
}

/// What is left of `parts` once `written` bytes of them went out.
fn unwritten<'a>(parts: &[&'a [u8]; 3], mut written: usize) -> [IoSlice<'a>; 3] {
    parts.map(|part| {
        let skip = written.min(part.len());
        written -= skip;
        IoSlice::new(&part[skip..])
    })
}

/// `{length:x}\r\n` in `buffer`.
fn chunk_size_line(buffer: &mut [u8; 18], length: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut count = 0;
    let mut rest = length;
    loop {
        digits[count] = HEX[rest & 0xf];
        count += 1;
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    for (index, digit) in digits[..count].iter().rev().enumerate() {
        buffer[index] = *digit;
    }
    buffer[count] = b'\r';
    buffer[count + 1] = b'\n';
    &buffer[..count + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_lower_case_hex() {
        let mut buffer = [0u8; 18];
        for (length, line) in [
            (0, "0\r\n"),
            (9, "9\r\n"),
            (26, "1a\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            assert_eq!(chunk_size_line(&mut buffer, length), line.as_bytes());
        }
    }

    #[test]
    fn a_partial_write_resumes_where_it_stopped() {
        let parts: [&[u8]; 3] = [b"5\r\n", b"hello", b"\r\n"];
        let left = |written| {
            unwritten(&parts, written)
                .iter()
                .flat_map(|slice| slice.to_vec())
                .collect::<Vec<u8>>()
        };
        assert_eq!(left(0), b"5\r\nhello\r\n");
        assert_eq!(left(1), b"\r\nhello\r\n");
        assert_eq!(left(3), b"hello\r\n");
        assert_eq!(left(6), b"lo\r\n");
        assert_eq!(left(9), b"\n");
        assert_eq!(left(10), b"");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod size {
    use super::*;

    /// An idle watcher is its task: the future waiting for the next frame must stay small (the
    /// router's future is boxed and gone by then; no buffer is held).
    #[tokio::test]
    async fn an_idle_event_stream_is_a_small_future() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_stop, stopped) = watch::channel(false);
        let request = Box::new(Request::new(Body::empty()));
        let future = serve(tcp, request, Router::new(), Arc::default(), stopped);
        let size = std::mem::size_of_val(&future);
        eprintln!("raw event stream future: {size} bytes");
        let mut tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_stop, stop) = watch::channel(false);
        let signal = std::pin::pin!(super::stopped(stop));
        let idle = stream_body(&mut tcp, Body::empty(), Framing::Chunked, signal);
        eprintln!("its body loop: {} bytes", std::mem::size_of_val(&idle));
        assert!(size <= 768, "{size} bytes");
    }
}

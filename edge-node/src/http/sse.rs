//! The SSE wire of a watch: each hub message as one chunk of `text/event-stream` bytes, and the
//! response that streams them with a heartbeat comment when idle.
//!
//! A batch's chunk (every event of the commit, the `id:` on the last) is encoded once, by the
//! first watcher that sends it, and kept in the shared [`WatchBatch`]: the 10,000th watcher of a
//! prefix sends the same `Bytes` (a reference count, no copy, one write). The bytes are what
//! axum's `Sse` wrote event by event — `data: …\n` per field in the same order, a blank line
//! after each event, `: heartbeat\n\n` after [`super::HEARTBEAT`] without an event — so clients
//! see no difference.

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use serde_json::json;

use crate::error::ApiError;
use crate::watch::{ResetState, WatchBatch, WatchMessage};

const HEARTBEAT_CHUNK: &[u8] = b": heartbeat\n\n";

/// One `name: value` line.
fn field(buffer: &mut BytesMut, name: &str, value: &[u8]) {
    buffer.put_slice(name.as_bytes());
    buffer.put_slice(b": ");
    buffer.put_slice(value);
    buffer.put_u8(b'\n');
}

/// The chunk of one hub message.
pub fn chunk(message: &WatchMessage) -> Bytes {
    match message {
        WatchMessage::Batch(batch) => batch_chunk(batch),
        WatchMessage::Reset(reset) => reset_chunk(reset),
    }
}

/// Every event of the batch, the SSE `id:` (the revision) on the last; encoded once per batch.
pub fn batch_chunk(batch: &WatchBatch) -> Bytes {
    batch
        .sse
        .get_or_init(|| {
            let payloads: Vec<String> = batch
                .events
                .iter()
                .map(|e| super::event_json(e).to_string())
                .collect();
            let size: usize = payloads.iter().map(|p| p.len() + 10).sum::<usize>() + 32;
            let mut buffer = BytesMut::with_capacity(size);
            let last = payloads.len().saturating_sub(1);
            for (index, payload) in payloads.iter().enumerate() {
                field(&mut buffer, "data", payload.as_bytes());
                if index == last {
                    field(&mut buffer, "id", batch.revision.to_string().as_bytes());
                }
                buffer.put_u8(b'\n');
            }
            buffer.freeze()
        })
        .clone()
}

/// `event: reset` with `{"type": "reset", "revision", "state": [entries]}`, `id:` = revision.
fn reset_chunk(reset: &ResetState) -> Bytes {
    let body = super::ResetBody {
        r#type: "reset",
        revision: reset.revision,
        state: reset
            .entries
            .iter()
            .map(|e| setpoint_serving::body::EntryBody::of(e))
            .collect(),
    };
    // Plain strings and numbers: serializing cannot fail.
    let data = serde_json::to_string(&body).unwrap_or_default();
    let mut buffer = BytesMut::with_capacity(data.len() + 64);
    field(&mut buffer, "event", b"reset");
    field(&mut buffer, "data", data.as_bytes());
    field(&mut buffer, "id", reset.revision.to_string().as_bytes());
    buffer.put_u8(b'\n');
    buffer.freeze()
}

/// The last event of a watch that may not go on (key revoked or expired, grant gone).
pub fn error_chunk(error: &ApiError) -> Bytes {
    // The error body every answer carries, with the event's type beside it.
    let data = json!({ "type": "error", "error": error.body().error }).to_string();
    let mut buffer = BytesMut::with_capacity(data.len() + 32);
    field(&mut buffer, "event", b"error");
    field(&mut buffer, "data", data.as_bytes());
    buffer.put_u8(b'\n');
    buffer.freeze()
}

/// A `text/event-stream` response of `chunks`, with a heartbeat after `heartbeat` without one.
pub fn response<S>(chunks: S, heartbeat: Duration) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let stream = Heartbeat {
        inner: Box::pin(chunks),
        timer: Box::pin(tokio::time::sleep(heartbeat)),
        every: heartbeat,
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `inner`'s chunks, and a heartbeat comment whenever `every` passes without one.
struct Heartbeat<S> {
    inner: Pin<Box<S>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
}

impl<S: Stream<Item = Bytes>> Stream for Heartbeat<S> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = tokio::time::Instant::now() + self.every;
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(chunk)) => {
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                std::task::ready!(self.timer.as_mut().poll(cx));
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(Bytes::from_static(HEARTBEAT_CHUNK))))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use setpoint_core::snapshot::{Entry, Event, EventKind};
    use setpoint_core::{ConfigPath, Format, ParsedValue};

    use super::*;

    fn entry(path: &str, text: &str, version: u64) -> Arc<Entry> {
        Arc::new(Entry {
            path: ConfigPath::parse(path).unwrap(),
            value: ParsedValue::from_stored(Format::Text, text).unwrap(),
            version,
            revision: 7,
            updated_at: String::new(),
        })
    }

    #[test]
    fn a_batch_is_one_shared_chunk_with_the_id_on_its_last_event() {
        let put = Event {
            kind: EventKind::Put,
            path: ConfigPath::parse("/a/x").unwrap(),
            old: None,
            new: Some(entry("/a/x", "one", 1)),
            version: 1,
            revision: 7,
        };
        let delete = Event {
            kind: EventKind::Delete,
            path: ConfigPath::parse("/a/y").unwrap(),
            old: Some(entry("/a/y", "two", 3)),
            new: None,
            version: 4,
            revision: 7,
        };
        let batch = WatchBatch::new(7, vec![put, delete]);
        let first = batch_chunk(&batch);
        assert_eq!(
            std::str::from_utf8(&first).unwrap(),
            "data: {\"format\":\"text\",\"path\":\"/a/x\",\"revision\":7,\"type\":\"update\",\"value\":\"one\",\"version\":1}\n\n\
             data: {\"old_value\":\"two\",\"path\":\"/a/y\",\"revision\":7,\"type\":\"delete\",\"version\":4}\nid: 7\n\n"
        );
        // The second watcher sends the very same bytes.
        assert_eq!(batch_chunk(&batch).as_ptr(), first.as_ptr());
    }

    #[tokio::test]
    async fn an_idle_stream_gets_heartbeat_comments_between_events() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let every = Duration::from_millis(20);
        let mut stream = Heartbeat {
            inner: Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(
                receiver,
            )),
            timer: Box::pin(tokio::time::sleep(every)),
            every,
        };
        sender.send(Bytes::from_static(b"data: x\n\n")).unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "data: x\n\n");
        assert_eq!(stream.next().await.unwrap().unwrap(), ": heartbeat\n\n");
        assert_eq!(stream.next().await.unwrap().unwrap(), ": heartbeat\n\n");
        sender.send(Bytes::from_static(b"data: y\n\n")).unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "data: y\n\n");
        drop(sender);
        assert!(stream.next().await.is_none(), "ends with its events");
    }
}

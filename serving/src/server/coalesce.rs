//! Write coalescing for HTTP/2 connections: many streams' frames in one `writev`.
//!
//! hyper's HTTP/2 connection task writes and flushes whatever frames are queued each time it
//! runs, and every stream that sends data wakes it. With tokio's LIFO slot the woken connection
//! task runs right after the stream task that woke it, so 5,000 watch streams answering one
//! commit made ~5,000 `writev`s of one small frame each (issue 14: 950,000 `writev`s in 10 s at
//! 100,000 gRPC watchers; the kernel's loopback path then took ~40 % of the edge's CPU).
//!
//! [`Coalesce`] takes the connection's writes into a buffer, and the first flush after new bytes
//! yields once instead (wakes its task and answers `Pending`): the task goes to the back of the
//! run queue, the other streams' tasks run and queue their frames, and the next flush writes
//! them all at once. An idle server pays one extra poll of the connection per flush; the bytes
//! and their order are unchanged. The buffer is given back after each flush, so an idle
//! connection holds none: to a small shared pool, as a fresh 64 KiB allocation per flush made
//! glibc consolidate its free lists each time (malloc and free were 15 % of the edge's CPU at
//! 100,000 sessions on 64 connections).

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held before they are written without waiting for a flush.
const BUFFER_LIMIT: usize = 64 * 1024;
/// Most idle buffers kept for the next connection that writes (2 MiB).
const POOL_LIMIT: usize = 32;

/// Buffers between flushes, each of [`BUFFER_LIMIT`] bytes' capacity.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for [`BUFFER_LIMIT`] bytes.
fn take_buffer() -> Vec<u8> {
    let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    pooled.unwrap_or_else(|| Vec::with_capacity(BUFFER_LIMIT))
}

/// Keeps `buffer` for the next writer, or frees it when the pool is full.
fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() != BUFFER_LIMIT {
        return;
    }
    buffer.clear();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOL_LIMIT {
        pool.push(buffer);
    }
}

pub(super) struct Coalesce<T> {
    inner: T,
    pending: Vec<u8>,
    /// Bytes of `pending` already written to `inner`.
    written: usize,
    /// The flush has yielded once for the bytes now pending.
    yielded: bool,
}

impl<T> Coalesce<T> {
    pub(super) fn new(inner: T) -> Coalesce<T> {
        Coalesce {
            inner,
            pending: Vec::new(),
            written: 0,
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes everything pending to `inner`, then frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        give_back(std::mem::take(&mut self.pending));
        self.written = 0;
        self.yielded = false;
        Poll::Ready(Ok(()))
    }

    /// Room for more: drains first when the buffer is at its limit. A buffer is taken with room
    /// for the limit at once: grown from empty, it would be copied over and over by
    /// reallocations while a commit's frames pour in.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.len() >= BUFFER_LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        if self.pending.capacity() == 0 {
            self.pending = take_buffer();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        let n = buf.len().min(BUFFER_LIMIT - this.pending.len());
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(BUFFER_LIMIT - this.pending.len());
            this.pending.extend_from_slice(&buf[..n]);
            taken += n;
            if n < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.yielded {
            // Let the other streams' tasks queue their frames first.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn every_byte_arrives_in_order_across_flushes_and_the_limit() {
        let (client, mut server) = tokio::io::duplex(4096);
        let writer = tokio::spawn(async move {
            let mut io = Coalesce::new(client);
            let mut sent = Vec::new();
            for round in 0..50u32 {
                // Small writes, vectored writes and writes past the buffer's limit.
                let small = round.to_be_bytes();
                io.write_all(&small).await.unwrap();
                let big = vec![u8::try_from(round).unwrap(); 70_000];
                io.write_all(&big).await.unwrap();
                sent.extend_from_slice(&small);
                sent.extend_from_slice(&big);
                if round % 3 == 0 {
                    io.flush().await.unwrap();
                }
            }
            io.shutdown().await.unwrap();
            sent
        });
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        let sent = writer.await.unwrap();
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the bytes arrive unchanged and in order");
    }

    #[tokio::test]
    async fn a_flush_yields_once_then_writes_and_frees_the_buffer() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut io = Coalesce::new(client);
        io.write_all(b"one frame").await.unwrap();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert_eq!(io.pending, b"one frame");
        // A second frame joins the first before the flush goes through.
        io.write_all(b", two").await.unwrap();
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(
            io.pending.capacity(),
            0,
            "an idle connection holds no buffer"
        );
        let mut got = [0u8; 14];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one frame, two");
    }
}

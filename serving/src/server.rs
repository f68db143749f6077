//! The one HTTP server loop of the writer and the edges: HTTP/1.1 and h2c on one port, each
//! request told its peer address (`ConnectInfo`), graceful shutdown — and the limits a public
//! port needs (issue 11, finding 3: 20,000 half-sent requests once exhausted the writer's file
//! descriptors):
//! - at most [`Limits::max_connections`] open connections; one more is accepted and closed at
//!   once (counted), so the listen backlog never fills with connections nobody serves;
//! - a connection that sends nothing within [`Limits::first_byte_timeout`] is closed;
//! - HTTP/1.1 request heads must arrive within [`Limits::header_read_timeout`], which also
//!   closes a keep-alive connection idle that long between requests (streams in progress — SSE
//!   watches — are not idle);
//! - HTTP/2 connections are pinged, and closed when pings go unanswered; each carries at most
//!   [`Limits::http2_max_concurrent_streams`] streams (thousands: gRPC watches and sessions).
//!
//! Shutdown stops accepting, then waits until every request in flight has its answer (at most
//! 30 s); idle keep-alive connections do not hold it up.
//!
//! Event streams (SSE watches) do not go through hyper: an idle watcher would hold hyper's 8 KiB
//! read and 8 KiB write buffers per HTTP/1.1 connection (issue 14: 21.6 KiB per watcher). The
//! first head of each connection is read here (`server/head.rs`); an event-stream `GET` is
//! answered by the same router and its response written straight to the socket
//! (`server/stream.rs`); the rest is handed to hyper with the bytes already read replayed. Event
//! streams count as connections like any other and end when the server shuts down.
//!
//! HTTP/2 connections write through `server/coalesce.rs`, which lets every stream queue its
//! frames before one `writev` carries them (one write per frame cost ~40 % of an edge's CPU at
//! 100,000 gRPC watchers).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use coalesce::Coalesce;
use head::{Rewind, Sniffed};

mod coalesce;
mod head;
mod stream;

/// How an h2c connection with prior knowledge starts (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The longest shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Bounds on what one client can hold of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub first_byte_timeout: Duration,
    pub header_read_timeout: Duration,
    /// HTTP/2 ping interval; a ping unanswered for as long closes the connection.
    pub http2_keep_alive: Duration,
    /// Streams one HTTP/2 connection may have open at once. Each gRPC watch or session is one
    /// long-lived stream: sized so one connection carries thousands of them (hyper's default of
    /// 200 made 100,000 watchers need 500 connections, each with its own buffers).
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 connection-level receive window. h2 also derives from it how many small DATA
    /// frames a connection may have buffered unread (half the window, 256 bytes each, less
    /// their size) before it sends GOAWAY `ENHANCE_YOUR_CALM` ("too_many_data_frames"): with
    /// hyper's 1 MiB that is about 2,100 — and thousands of sessions on one connection, each
    /// with a small receipt waiting while the edge is busy, passed it and lost the whole
    /// connection (issue 14, 100,000 sessions on 16 connections). 8 MiB allows about 17,000.
    pub http2_connection_window: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            first_byte_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(15),
            http2_keep_alive: Duration::from_secs(30),
            http2_max_concurrent_streams: 10_000,
            http2_connection_window: 8 << 20,
        }
    }
}

/// `{prefix}_connections` (open now) and `{prefix}_connections_refused_total` (over the cap).
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
}

impl ConnectionMetrics {
    pub fn register(
        registry: &Registry,
        prefix: &str,
    ) -> Result<ConnectionMetrics, prometheus::Error> {
        let open = IntGauge::new(
            format!("{prefix}_connections"),
            "Open HTTP/gRPC connections.",
        )?;
        let refused = IntCounter::new(
            format!("{prefix}_connections_refused_total"),
            "Connections closed at once because the server held its maximum.",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(ConnectionMetrics { open, refused })
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then stops accepting
/// and waits for the connections in flight to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
    metrics: ConnectionMetrics,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.http2_keep_alive))
        .keep_alive_timeout(limits.http2_keep_alive)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .initial_connection_window_size(limits.http2_connection_window);
    let shared = Arc::new(Shared {
        router,
        builder,
        limits,
        in_flight: Arc::new(AtomicUsize::new(0)),
    });
    // Tells the raw event streams (and connections still reading their first head) to end;
    // shutdown waits until every receiver is gone.
    let (stop, stop_receiver) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or the peer gave up: keep serving the others.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(tcp);
            continue;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            shared: shared.clone(),
            watcher: graceful.watcher(),
            stop: stop_receiver.clone(),
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            metrics.open.inc();
            let _open = scopeguard(|| metrics.open.dec());
            connection.serve(tcp, peer).await;
        });
    }
    drop(listener);
    drop(stop_receiver);
    stop.send_replace(true);
    let in_flight = shared.in_flight.clone();
    let requests_done = async {
        let started = tokio::time::Instant::now();
        while in_flight.load(Ordering::Acquire) > 0 && started.elapsed() < SHUTDOWN_GRACE {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // Every connection is told to finish; return once they have, or once no request is
    // waiting for its answer (idle keep-alive connections are then simply closed) and every
    // raw event stream has ended.
    let hyper_done = async {
        tokio::select! {
            () = graceful.shutdown() => {}
            () = requests_done => {}
        }
    };
    let raw_done = tokio::time::timeout(SHUTDOWN_GRACE, stop.closed());
    let _ = tokio::join!(hyper_done, raw_done);
    Ok(())
}

/// What every connection of one server shares.
struct Shared {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    /// Requests whose response head is not out yet: shutdown waits for these, not for idle
    /// keep-alive connections (which would hold it for a whole header timeout).
    in_flight: Arc<AtomicUsize>,
}

/// One accepted connection, before it is known whose it is: hyper's, or the raw event stream's.
struct Connection {
    shared: Arc<Shared>,
    watcher: Watcher,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(self, mut tcp: TcpStream, peer: SocketAddr) {
        let Connection {
            shared,
            watcher,
            mut stop,
        } = self;
        // Boxed: the timers and the read of the first head are large, and an idle watcher
        // needs none of them.
        let sniffed = Box::pin(first_head(&mut tcp, shared.limits, &mut stop)).await;
        match sniffed {
            Sniffed::Closed => {}
            Sniffed::EventStream(mut request) => {
                // Only hyper's connections are its graceful shutdown's to wait for.
                drop(watcher);
                request.extensions_mut().insert(ConnectInfo(peer));
                let served = stream::serve(
                    tcp,
                    request,
                    shared.router.clone(),
                    shared.in_flight.clone(),
                    stop,
                );
                if let Err(error) = served.await {
                    tracing::debug!(%error, %peer, "event stream ended");
                }
            }
            Sniffed::Other(prefix) => {
                drop(stop);
                let http2 = prefix.starts_with(H2_PREFACE);
                let io = Rewind::new(prefix, tcp);
                // Boxed: hyper's connection future is large, and only its connections need it.
                if http2 {
                    Box::pin(serve_hyper(shared, watcher, Coalesce::new(io), peer)).await;
                } else {
                    Box::pin(serve_hyper(shared, watcher, io, peer)).await;
                }
            }
        }
    }
}

/// The connection's first head, read within the limits; `Closed` also when the server stops
/// first (a connection that has sent nothing yet must not hold up shutdown).
async fn first_head(
    tcp: &mut TcpStream,
    limits: Limits,
    stop: &mut watch::Receiver<bool>,
) -> Sniffed {
    let read = async {
        let mut first = [0u8; 1];
        match tokio::time::timeout(limits.first_byte_timeout, tcp.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Sniffed::Closed,
        }
        // hyper closes a head that takes too long the same way.
        tokio::time::timeout(limits.header_read_timeout, head::sniff(tcp))
            .await
            .unwrap_or(Sniffed::Closed)
    };
    tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => Sniffed::Closed,
        sniffed = read => sniffed,
    }
}

/// Serves the connection with hyper (HTTP/1.1 with keep-alive and pipelining, or h2c).
async fn serve_hyper<I>(shared: Arc<Shared>, watcher: Watcher, io: I, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let in_flight = shared.in_flight.clone();
    let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer = router.clone().oneshot(request.map(Body::new));
        let in_flight = in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        let done = scopeguard(move || {
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        async move {
            let response = answer.await;
            drop(done);
            response
        }
    });
    let connection = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%error, %peer, "connection ended");
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start(
        limits: Limits,
    ) -> (
        SocketAddr,
        ConnectionMetrics,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ConnectionMetrics::register(&Registry::new(), "test").unwrap();
        let router = Router::new().route(
            "/who",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            router,
            async {
                let _ = stopped.await;
            },
            limits,
            metrics.clone(),
        ));
        (addr, metrics, stop)
    }

    /// Reads until the server closes the connection; how long that took.
    async fn closed_within(tcp: &mut TcpStream, bound: Duration) -> Duration {
        let started = Instant::now();
        let mut buffer = [0u8; 256];
        loop {
            match tokio::time::timeout(bound, tcp.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("the server kept the connection open past {bound:?}"),
            }
        }
    }

    #[tokio::test]
    async fn silent_half_sent_and_idle_connections_are_closed() {
        let limits = Limits {
            first_byte_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _metrics, _stop) = start(limits).await;
        // Sends nothing.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        closed_within(&mut silent, Duration::from_secs(5)).await;
        // Half a request head (slowloris).
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        closed_within(&mut half, Duration::from_secs(5)).await;
        // One whole request, then idle on keep-alive.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let n = idle.read(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("127.0.0.1"),
            "{text}"
        );
        closed_within(&mut idle, Duration::from_secs(5)).await;
    }

    /// Issue 14: an idle SSE watcher is its connection's task (plus its socket and response
    /// body), so the task's future must stay small: the first head's read, the router call and
    /// hyper's connection are boxed, and gone by the time the watcher idles.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (_stop, stop) = watch::channel(false);
        let connection = Connection {
            shared: Arc::new(Shared {
                router: Router::new(),
                builder: auto::Builder::new(TokioExecutor::new()),
                limits: Limits::default(),
                in_flight: Arc::default(),
            }),
            watcher: GracefulShutdown::new().watcher(),
            stop,
        };
        let task = connection.serve(tcp, addr);
        let size = std::mem::size_of_val(&task);
        eprintln!("connection task future: {size} bytes");
        assert!(size <= 1024, "{size} bytes");
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_refused_and_counted() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (addr, metrics, _stop) = start(limits).await;
        let _held: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        let started = Instant::now();
        while metrics.open.get() < 2 {
            assert!(started.elapsed() < Duration::from_secs(5), "two open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        closed_within(&mut third, Duration::from_secs(5)).await;
        assert_eq!(metrics.refused.get(), 1);
    }
}

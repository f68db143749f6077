//! Test harness shared by the integration tests in `tests/tests/`: starts real services (etcd)
//! on free loopback ports, stops them by PID, and waits on predicates instead of sleeping.
//! A service that cannot start fails the test loudly; nothing here ever skips.

pub mod bao;
/// Instantiates each named `async fn case(backend: Backend)` of the calling test file twice, in
/// modules `embedded` and `etcd`, so every case runs against both stores.
#[macro_export]
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case($crate::writer::Backend::embedded()).await; })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case($crate::writer::Backend::etcd()).await; })*
        }
    };
}

pub mod binary;
pub mod conformance;
pub mod etcd;
pub mod etcd_cluster;
pub mod history;
pub mod session;
pub mod sse;
pub mod writer;

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port free for both TCP and UDP, taken from below the kernel's ephemeral range
/// (32768–60999 on Linux). Setpoint binds UDP too (QUIC, gossip), and a port picked by binding
/// port 0 is exactly what the kernel next hands to some client's ephemeral socket — CI once lost
/// a gossip bind to that. Ports here are handed out once per test process (an atomic cursor
/// starting at a PID-derived offset, so concurrent test binaries start apart) and checked free
/// on both protocols before they are returned.
pub fn free_port() -> u16 {
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = CURSOR.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let offset = CURSOR.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = u16::try_from(LOW + offset).expect("port range fits u16");
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!(
        "no loopback port free for both TCP and UDP in {LOW}..{}",
        LOW + SPAN
    )
}

/// Polls `predicate` every 20 ms until it returns true; false when `timeout` passes first.
pub async fn wait_until<F, Fut>(timeout: Duration, mut predicate: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if predicate().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `url` until it answers 2xx; false when `timeout` passes first.
pub async fn wait_healthy(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    wait_until(timeout, || async move {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}

//! Test harness shared by the integration tests in `tests/tests/`: starts real services (etcd)
//! on free loopback ports, stops them by PID, and waits on predicates instead of sleeping.
//! A service that cannot start fails the test loudly; nothing here ever skips.

pub mod binary;
pub mod etcd;
pub mod sse;
pub mod writer;

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback TCP port that was free a moment ago (bound to port 0, then released). Another
/// process may take it before the caller binds it; tests accept that small race.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
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

//! Fault tests with real processes: what the failure model in the README promises, checked by
//! breaking things — etcd members killed under writes, (more scenarios join this file as the
//! fault-tolerance work lands). Each scenario stops everything it starts, by PID.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use setpoint_tests::etcd_cluster::EtcdCluster;
use setpoint_tests::writer::TestWriter;
use setpoint_writer::{StoreSpec, WriterConfig};

async fn put(w: &TestWriter, path: &str, value: Value) -> (StatusCode, Value) {
    let response = w
        .http
        .put(w.config_url(path))
        .timeout(Duration::from_secs(15))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A 3-member etcd cluster exists to survive one member's death: with a quorum, every write
/// succeeds, whichever member died; without one, writes fail fast (503 within the store timeout,
/// nothing half-written); when the quorum returns, the same writer commits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_succeeds_while_an_etcd_quorum_holds() {
    let mut cluster = EtcdCluster::start(3);
    let mut config = WriterConfig::new(StoreSpec::Etcd {
        endpoints: cluster.endpoints(),
    });
    config.store_timeout = Duration::from_secs(2);
    let w = TestWriter::start_with(config).await;
    for i in 0..5 {
        let (status, body) = put(&w, &format!("/q/warm{i}"), json!(i)).await;
        assert!(status.is_success(), "{status} {body}");
    }

    // A follower dies: every one of 60 writes succeeds.
    let leader = cluster.leader().expect("a raft leader");
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let started = Instant::now();
    for i in 0..60 {
        let (status, body) = put(&w, &format!("/q/a{}", i % 6), json!(i)).await;
        assert!(
            status.is_success(),
            "write {i} with a follower down: {status} {body}"
        );
    }
    println!("60 writes with a follower down: {:?}", started.elapsed());

    // The leader dies too: no quorum, each write fails within the store timeout (plus margin).
    cluster.kill(leader);
    let started = Instant::now();
    let (status, body) = put(&w, "/q/lost", json!(1)).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(elapsed < Duration::from_secs(6), "503 took {elapsed:?}");

    // Quorum back: the same writer commits again, and the failed write left nothing.
    cluster.restart(follower);
    let back = setpoint_tests::wait_until(Duration::from_secs(30), || async {
        put(&w, "/q/back", json!(1)).await.0.is_success()
    })
    .await;
    assert!(
        back,
        "no successful write within 30 s of the quorum's return"
    );
    let lost = w
        .http
        .get(w.config_url("/q/lost"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(lost, StatusCode::NOT_FOUND);
}

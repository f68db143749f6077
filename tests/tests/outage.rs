//! Store outages: with etcd stopped the writer answers 503 quickly (never hangs, writes nothing),
//! `/readyz` says so, and once etcd is back the same writer serves again without a restart.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use setpoint_tests::writer::{Backend, TestWriter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_is_a_quick_503_and_the_writer_reconnects() {
    let mut backend = Backend::etcd();
    let w = TestWriter::start(&backend).await;
    let url = w.config_url("/outage/a");
    let response = w
        .http
        .put(&url)
        .body(json!({"value": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let Backend::Etcd(etcd) = &mut backend else {
        unreachable!()
    };
    etcd.stop();

    let started = Instant::now();
    let response = w
        .http
        .put(&url)
        .body(json!({"value": 2}).to_string())
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert!(elapsed < Duration::from_secs(5), "503 took {elapsed:?}");
    let response = w.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = w.http.get(w.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "the process itself stays up"
    );

    etcd.restart();
    let http = w.http.clone();
    let ready_url = w.url("/readyz");
    let back = setpoint_tests::wait_until(Duration::from_secs(20), || {
        let http = http.clone();
        let url = ready_url.clone();
        async move {
            http.get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await;
    assert!(back, "writer did not reconnect to etcd within 20 s");
    let response = w
        .http
        .put(&url)
        .body(json!({"value": 3}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["version"], 2,
        "the write during the outage left nothing behind"
    );
}

/// A writer started while its etcd is not up yet (both launched together) waits for it instead
/// of exiting, then creates the default environments and the admin account as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_started_before_etcd_waits_for_it() {
    let mut backend = Backend::etcd();
    let Backend::Etcd(etcd) = &mut backend else {
        unreachable!()
    };
    etcd.stop();
    let config = setpoint_writer::WriterConfig::new(backend.spec());
    let starting = tokio::spawn(TestWriter::start_with(config));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !starting.is_finished(),
        "the writer cannot be up without its store"
    );
    let Backend::Etcd(etcd) = &mut backend else {
        unreachable!()
    };
    etcd.restart();
    let w = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("the writer came up once etcd did")
        .unwrap();
    let response = w.http.get(w.url("/api/environments")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["environments"].as_array().unwrap().len(), 3, "{body}");
}

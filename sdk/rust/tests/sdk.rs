//! The SDK against a real `setpoint dev`: sync, get, watches (changes only, batches, NACKs),
//! environments, the cache file offline, reconnects, close, a refused token, many clients.

#[path = "sdk/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{Recorder, Server, TestResult, eventually, wait_until};
use serde_json::json;
use setpoint_sdk::{Client, Error, Event, Options};

const READY: Duration = Duration::from_secs(10);

fn options(prefixes: &[&str]) -> Options {
    Options {
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        instance_id: Some("sdk-test".into()),
        ..Options::default()
    }
}

/// A watch that records every event into `recorder`.
fn recording(recorder: &Recorder) -> impl Fn(&Event) -> Result<(), String> + Send + Sync + 'static {
    let recorder = recorder.clone();
    move |event: &Event| {
        recorder.push(event);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_after_wait_ready() -> TestResult {
    let server = Server::start().await;
    server
        .put("/myapp/database/host", json!("db.internal"))
        .await;
    server
        .put("/myapp/database/pool", json!({"min": 1, "max": 5}))
        .await;
    server.put("/other/key", json!(1)).await;

    let client = Client::new(&server.address(), options(&["/myapp"]))?;
    assert_eq!(client.get("/myapp/database/host"), Err(Error::NotSynced));
    client.wait_ready(READY).await?;
    assert!(!client.is_stale());

    let host = client.get("/myapp/database/host")?;
    assert_eq!(host.value, json!("db.internal"));
    assert_eq!((host.version, host.format.as_str()), (1, "json"));
    assert_eq!(
        client.get("/myapp/database/pool")?.value,
        json!({"min": 1, "max": 5})
    );
    assert_eq!(
        client.get("/myapp/database/missing"),
        Err(Error::NotFound("/myapp/database/missing".into()))
    );
    assert_eq!(
        client.get("/other/key").map_err(|e| e.kind()),
        Err("invalid")
    );
    assert_eq!(
        client
            .watch("/other", |_: &Event| Ok::<(), String>(()))
            .err()
            .map(|e| e.kind()),
        Some("invalid")
    );

    // Default prefixes: everything the caller may read.
    let everything = Client::new(&server.address(), Options::default())?;
    everything.wait_ready(READY).await?;
    assert_eq!(everything.get("/other/key")?.value, json!(1));
    everything.close().await;
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_receives_only_changes_with_old_and_new_values() -> TestResult {
    let server = Server::start().await;
    server.put("/myapp/database/host", json!("old-host")).await;
    server.put("/myapp/feature", json!(true)).await;

    let client = Client::new(&server.address(), options(&["/"]))?;
    let recorder = Recorder::default();
    let _watch = client.watch("/myapp/database", recording(&recorder))?;
    client.wait_ready(READY).await?;

    let revision = server.put("/myapp/database/host", json!("new-host")).await;
    server.put("/myapp/feature", json!(false)).await; // outside the watch
    let deleted_at = server.delete("/myapp/database/host").await;
    recorder.wait_for("/myapp/database/host").await;
    wait_until("the delete", Duration::from_secs(10), || {
        recorder.events().len() >= 2
    })
    .await;

    // The initial state fired nothing: the first event is the change.
    let events = recorder.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let change = &events[0];
    assert_eq!(change.path, "/myapp/database/host");
    assert_eq!(change.value, Some(json!("new-host")));
    assert_eq!(change.old_value, Some(json!("old-host")));
    assert_eq!(
        (change.version, change.revision, change.deleted),
        (2, revision, false)
    );
    let delete = &events[1];
    assert!(delete.deleted && delete.value.is_none());
    assert_eq!(delete.old_value, Some(json!("new-host")));
    assert_eq!(delete.revision, deleted_at);
    assert!(matches!(
        client.get("/myapp/database/host"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(client.get("/myapp/feature")?.value, json!(false));
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_arrives_as_one_ordered_delivery() -> TestResult {
    let server = Server::start().await;
    server.put("/myapp/a", json!(0)).await;
    let client = Arc::new(Client::new(&server.address(), options(&["/myapp"]))?);
    client.wait_ready(READY).await?;

    // When the first callback of the batch runs, the whole batch must already be applied.
    let recorder = Recorder::default();
    let seen_by_first = Arc::new(std::sync::Mutex::new(None));
    let (inner, seen) = (client.clone(), seen_by_first.clone());
    let record = recording(&recorder);
    let _watch = client.watch("/myapp", move |event: &Event| {
        if event.path == "/myapp/a" {
            *seen.lock().map_err(|e| e.to_string())? = inner.get("/myapp/c").ok().map(|v| v.value);
        }
        record(event)
    })?;

    let revision = server
        .batch(json!([
            {"op": "put", "path": "/myapp/a", "value": 1},
            {"op": "put", "path": "/myapp/b", "value": "two"},
            {"op": "put", "path": "/myapp/c", "value": [3]},
        ]))
        .await;
    wait_until("three events", Duration::from_secs(10), || {
        recorder.events().len() >= 3
    })
    .await;
    let events = recorder.events();
    assert_eq!(recorder.paths(), vec!["/myapp/a", "/myapp/b", "/myapp/c"]);
    assert!(events.iter().all(|e| e.revision == revision), "{events:?}");
    assert_eq!(events[0].old_value, Some(json!(0)));
    assert_eq!(events[2].value, Some(json!([3])));
    assert_eq!(
        *seen_by_first.lock().map_err(|e| e.to_string())?,
        Some(json!([3]))
    );
    assert_eq!(client.revision(), Some(revision));
    // close() drops the watches, which breaks the callback's reference to the client.
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_clients_see_effective_values() -> TestResult {
    let server = Server::start().await;
    server.put("/myapp/db/host", json!("localhost")).await;
    server.put("/myapp/db/port", json!(5432)).await;
    server
        .put("/env/prod/myapp/db/host", json!("prod-db.internal"))
        .await;

    let client = Client::new(
        &server.address(),
        Options {
            environment: Some("prod".into()),
            ..options(&["/myapp"])
        },
    )?;
    let recorder = Recorder::default();
    let _watch = client.watch("/myapp/db", recording(&recorder))?;
    client.wait_ready(READY).await?;
    assert_eq!(
        client.get("/myapp/db/host")?.value,
        json!("prod-db.internal")
    );
    assert_eq!(client.get("/myapp/db/port")?.value, json!(5432));

    // An override change arrives under the base path, as the effective value.
    server
        .put("/env/prod/myapp/db/host", json!("prod-db-2.internal"))
        .await;
    let event = recorder.wait_for("/myapp/db/host").await;
    assert_eq!(event.value, Some(json!("prod-db-2.internal")));
    assert_eq!(event.old_value, Some(json!("prod-db.internal")));
    // A base change hidden by the override changes nothing in prod.
    server.put("/myapp/db/host", json!("localhost-2")).await;
    server.put("/myapp/db/port", json!(6432)).await;
    let port = recorder.wait_for("/myapp/db/port").await;
    assert_eq!(port.value, Some(json!(6432)));
    assert_eq!(recorder.paths(), vec!["/myapp/db/host", "/myapp/db/port"]);
    assert_eq!(
        client.get("/myapp/db/host")?.value,
        json!("prod-db-2.internal")
    );
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_callback_is_nacked_and_later_events_still_arrive() -> TestResult {
    let server = Server::start().await;
    let client = Client::new(
        &server.address(),
        Options {
            instance_id: Some("nack-test".into()),
            ..options(&["/myapp"])
        },
    )?;
    let recorder = Recorder::default();
    let record = recording(&recorder);
    let _watch = client.watch("/myapp", move |event: &Event| {
        record(event)?;
        match event.path.as_str() {
            "/myapp/bad" => Err(format!("injected failure at {}", event.path)),
            "/myapp/panics" => panic!("injected panic at {}", event.path),
            _ => Ok(()),
        }
    })?;
    client.wait_ready(READY).await?;

    server.put("/myapp/bad", json!(1)).await;
    server.put("/myapp/panics", json!(1)).await;
    server.put("/myapp/good", json!(1)).await;
    recorder.wait_for("/myapp/good").await;
    assert_eq!(
        recorder.paths(),
        vec!["/myapp/bad", "/myapp/panics", "/myapp/good"]
    );
    assert!(!client.is_stale(), "the session survived the failures");

    // The NACKs reached the edge: the writer's client registry shows the last error.
    eventually(
        "the NACK in /api/clients",
        Duration::from_secs(10),
        || async {
            server.client("nack-test").await.is_some_and(|c| {
                c["last_error"].to_string().contains("injected") && c["nacks"].as_u64() >= Some(2)
            })
        },
    )
    .await;
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_file_serves_a_restarted_client_with_no_server() -> TestResult {
    let server = Server::start().await;
    let cache = tempfile::tempdir()?;
    let cache_path = cache.path().join("cache.json");
    server.put("/myapp/db/host", json!("cached-host")).await;
    let with_cache = || Options {
        cache_path: Some(cache_path.clone()),
        ..options(&["/myapp"])
    };

    let client = Client::new(&server.address(), with_cache())?;
    client.wait_ready(READY).await?;
    let revision = server.put("/myapp/db/port", json!(5432)).await;
    wait_until("the port applied", Duration::from_secs(10), || {
        client.revision() == Some(revision)
    })
    .await;
    client.close().await;
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache_path)?)?;
    assert_eq!(file["format"], 1);
    assert_eq!(file["revision"], revision);
    assert_eq!(file["prefixes"], json!(["/myapp"]));
    assert_eq!(file["entries"]["/myapp/db/port"]["value"], 5432);
    let address = server.address();
    drop(server);

    let offline = Client::new(&address, with_cache())?;
    // Served at once from the file, flagged stale; no sync can complete.
    assert_eq!(offline.get("/myapp/db/host")?.value, json!("cached-host"));
    assert_eq!(offline.get("/myapp/db/port")?.version, 1);
    assert!(offline.is_stale());
    assert!(matches!(
        offline.get("/myapp/nothing"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        offline.wait_ready(Duration::from_millis(300)).await,
        Err(Error::Timeout(Duration::from_millis(300)))
    );
    offline.close().await;

    // A client of another environment does not serve this file.
    let other = Client::new(
        &address,
        Options {
            environment: Some("prod".into()),
            ..with_cache()
        },
    )?;
    assert_eq!(other.get("/myapp/db/host"), Err(Error::NotSynced));
    other.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_is_rejoined_and_changes_resume() -> TestResult {
    let server = Server::start().await;
    server.put("/myapp/x", json!(1)).await;
    let client = Client::new(&server.address(), options(&["/myapp"]))?;
    let recorder = Recorder::default();
    let _watch = client.watch("/myapp", recording(&recorder))?;
    client.wait_ready(READY).await?;

    let (port, dir) = server.kill();
    wait_until("stale after the edge died", Duration::from_secs(40), || {
        client.is_stale()
    })
    .await;
    assert_eq!(
        client.get("/myapp/x")?.value,
        json!(1),
        "still served while disconnected"
    );

    let server = Server::start_on(port, dir).await;
    wait_until("reconnected", Duration::from_secs(20), || {
        !client.is_stale()
    })
    .await;
    server.put("/myapp/x", json!(2)).await;
    let event = recorder.wait_for("/myapp/x").await;
    assert_eq!(
        (event.value, event.old_value),
        (Some(json!(2)), Some(json!(1)))
    );
    assert_eq!(
        recorder.events().len(),
        1,
        "the reconnect itself fired nothing"
    );
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_everything() -> TestResult {
    let server = Server::start().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();

    let client = Client::new(&server.address(), options(&["/myapp"]))?;
    let recorder = Recorder::default();
    let watch = client.watch("/myapp", recording(&recorder))?;
    client.wait_ready(READY).await?;
    assert!(metrics.num_alive_tasks() > baseline);
    client.close().await;
    client.close().await; // idempotent
    eventually(
        "the edge saw the session end",
        Duration::from_secs(10),
        || async {
            server
                .client("sdk-test")
                .await
                .is_some_and(|c| c["status"] == "disconnected")
        },
    )
    .await;

    assert_eq!(client.get("/myapp/x"), Err(Error::Closed));
    assert_eq!(client.wait_ready(READY).await, Err(Error::Closed));
    assert!(matches!(
        client.watch("/myapp", recording(&recorder)),
        Err(Error::Closed)
    ));
    assert!(client.is_stale());
    watch.stop(); // a handle outliving its client is harmless
    drop(client);
    // The session task and the connection's tasks are gone.
    wait_until("tasks released", Duration::from_secs(10), || {
        metrics.num_alive_tasks() <= baseline
    })
    .await;
    // And no callback runs any more.
    server.put("/myapp/x", json!(1)).await;
    let probe = Client::new(&server.address(), options(&["/myapp"]))?;
    probe.wait_ready(READY).await?;
    // The edge applies the write a moment after the writer acknowledged it (a loaded machine
    // can make that moment long): wait for the probe to see it before asserting silence.
    wait_until("the probe sees the write", Duration::from_secs(10), || {
        probe
            .get("/myapp/x")
            .is_ok_and(|entry| entry.value == json!(1))
    })
    .await;
    assert!(recorder.events().is_empty());
    probe.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_a_typed_error() -> TestResult {
    let server = Server::start().await;
    let client = Client::new(
        &server.address(),
        Options {
            token: Some("spk_nosuchkey_0000000000000000".into()),
            ..options(&["/myapp"])
        },
    )?;
    let refused = client.wait_ready(READY).await;
    assert!(
        matches!(refused, Err(Error::Unauthorized(_))),
        "{refused:?}"
    );
    assert!(matches!(
        client.get("/myapp/x"),
        Err(Error::Unauthorized(_))
    ));
    assert!(client.is_stale());
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_process() -> TestResult {
    let server = Server::start().await;
    server.put("/myapp/n", json!(0)).await;
    let clients: Vec<Client> = (0..200)
        .map(|i| {
            Client::new(
                &server.address(),
                Options {
                    instance_id: Some(format!("many-{i}")),
                    ..options(&["/myapp"])
                },
            )
        })
        .collect::<Result<_, _>>()?;
    for client in &clients {
        client.wait_ready(READY).await?;
    }
    let revision = server.put("/myapp/n", json!(1)).await;
    wait_until(
        "every client applied the change",
        Duration::from_secs(20),
        || clients.iter().all(|c| c.revision() == Some(revision)),
    )
    .await;
    for client in &clients {
        assert_eq!(client.get("/myapp/n")?.value, json!(1));
        client.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_edge_is_left_after_three_heartbeats_and_rejoined() -> TestResult {
    let server = Server::start().await;
    let client = Client::new(&server.address(), options(&["/myapp"]))?;
    let recorder = Recorder::default();
    let _watch = client.watch("/myapp", recording(&recorder))?;
    client.wait_ready(READY).await?;

    // A frozen edge keeps the TCP connection open: only the heartbeats can tell.
    server.signal("STOP");
    wait_until(
        "stale after three silent intervals",
        Duration::from_secs(60),
        || client.is_stale(),
    )
    .await;
    server.signal("CONT");
    wait_until("reconnected", Duration::from_secs(40), || {
        !client.is_stale()
    })
    .await;
    server.put("/myapp/after", json!("thaw")).await;
    assert_eq!(
        recorder.wait_for("/myapp/after").await.value,
        Some(json!("thaw"))
    );
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_a_cached_client_was_away_fire_on_its_return() -> TestResult {
    let server = Server::start().await;
    let cache = tempfile::tempdir()?;
    let with_cache = || Options {
        cache_path: Some(cache.path().join("cache.json")),
        ..options(&["/myapp"])
    };
    server.put("/myapp/kept", json!("same")).await;
    server.put("/myapp/changed", json!("before")).await;
    server.put("/myapp/removed", json!(1)).await;
    let first = Client::new(&server.address(), with_cache())?;
    first.wait_ready(READY).await?;
    first.close().await;

    server.put("/myapp/changed", json!("after")).await;
    server.delete("/myapp/removed").await;
    server.put("/myapp/added", json!([1])).await;
    server.put("/other/unrelated", json!(0)).await;

    let back = Client::new(&server.address(), with_cache())?;
    let recorder = Recorder::default();
    let _watch = back.watch("/myapp", recording(&recorder))?;
    back.wait_ready(READY).await?;
    wait_until("three changes", Duration::from_secs(10), || {
        recorder.events().len() >= 3
    })
    .await;
    let mut events: Vec<_> = recorder
        .events()
        .into_iter()
        .map(|e| (e.path, e.value, e.old_value, e.deleted))
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        events,
        vec![
            ("/myapp/added".into(), Some(json!([1])), None, false),
            (
                "/myapp/changed".into(),
                Some(json!("after")),
                Some(json!("before")),
                false
            ),
            ("/myapp/removed".into(), None, Some(json!(1)), true),
        ]
    );
    assert_eq!(back.get("/myapp/kept")?.value, json!("same"));
    back.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_substitutes_on_demand_in_the_clients_environment() -> TestResult {
    let server = Server::start().await;
    server
        .put_environment("staging", json!({"variables": {"REGION": "eu"}}))
        .await;
    server
        .put(
            "/myapp/db/url",
            json!("postgres://db.${REGION}.internal/app"),
        )
        .await;
    server.put("/myapp/db/host", json!("localhost")).await;
    let client = Client::new(
        &server.address(),
        Options {
            environment: Some("staging".into()),
            ..options(&["/myapp"])
        },
    )?;
    // Resolve is a call of its own: it needs no synced session.
    let url = client.resolve("/myapp/db/url").await?;
    assert_eq!(
        url["value"],
        json!("postgres://db.eu.internal/app"),
        "{url}"
    );
    let subtree = client.resolve("/myapp/db").await?;
    assert_eq!(
        subtree,
        json!({"host": "localhost", "url": "postgres://db.eu.internal/app"})
    );
    assert!(matches!(
        client.resolve("/myapp/none").await,
        Err(Error::NotFound(_))
    ));
    client.close().await;
    assert_eq!(client.resolve("/myapp/db").await, Err(Error::Closed));

    let refused = Client::new(
        &server.address(),
        Options {
            token: Some("spk_nosuchkey_0000000000000000".into()),
            ..options(&["/myapp"])
        },
    )?;
    assert!(matches!(
        refused.resolve("/myapp/db/host").await,
        Err(Error::Unauthorized(_))
    ));
    refused.close().await;
    Ok(())
}

//! The `Store` contract, checked once against both implementations: every `case_*` is written
//! against `&dyn Store` and instantiated for the embedded store (in a tempdir) and for etcd (a
//! fresh real server per test, so revisions start at 1). Tests specific to one implementation
//! (etcd outages, embedded reopen) follow the shared cases.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use setpoint_tests::etcd::EtcdServer;
use setpoint_tests::wait_until;
use setpoint_writer::store::embedded::EmbeddedStore;
use setpoint_writer::store::etcd::EtcdStore;
use setpoint_writer::store::{
    Compare, CompareOp, EventKind, RangeRequest, Read, Revision, Store, StoreError, Txn, TxnOp,
    WatchBatch, WatchStream,
};

const OP_TIMEOUT: Duration = Duration::from_secs(2);
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

struct Harness {
    store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<EtcdServer>,
}

fn embedded() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    Harness {
        store: Box::new(store),
        _dir: Some(dir),
        _etcd: None,
    }
}

async fn etcd() -> Harness {
    let server = EtcdServer::start();
    let store = EtcdStore::connect(&[server.endpoint()], OP_TIMEOUT)
        .await
        .unwrap();
    Harness {
        store: Box::new(store),
        _dir: None,
        _etcd: Some(server),
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = super::embedded();
                    tokio::time::timeout(super::CASE_TIMEOUT, super::$case(&*harness.store))
                        .await
                        .expect("case timed out");
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = super::etcd().await;
                    tokio::time::timeout(super::CASE_TIMEOUT, super::$case(&*harness.store))
                        .await
                        .expect("case timed out");
                }
            )*
        }
    };
}

conformance!(
    case_get_missing_and_present,
    case_put_sets_revisions_and_version,
    case_revision_starts_at_one_and_counts_writing_txns,
    case_txn_applies_all_writes_at_one_revision,
    case_false_compare_writes_nothing,
    case_mod_revision_zero_means_absent,
    case_delete_removes_key,
    case_delete_of_missing_key_changes_nothing,
    case_duplicate_key_in_txn_is_rejected,
    case_range_prefix_orders_and_limits,
    case_range_start_end,
    case_watch_from_now_groups_by_revision,
    case_watch_replays_then_follows_live,
    case_watch_filters_by_prefix,
    case_watch_reports_deletes,
    case_compaction_then_watch,
    case_large_value_fits_and_too_large_fails,
    case_read_is_one_revision_of_gets_and_ranges,
    case_range_compare_sees_every_key_of_the_range,
);

// ---- helpers -------------------------------------------------------------------------------

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

fn delete(key: &str) -> TxnOp {
    TxnOp::Delete {
        key: key.to_owned(),
    }
}

async fn write(store: &dyn Store, writes: Vec<TxnOp>) -> Revision {
    let outcome = store
        .txn(Txn {
            compares: vec![],
            writes,
        })
        .await
        .unwrap();
    assert!(outcome.succeeded);
    outcome.revision
}

/// How long a test waits for one item of a watch stream before it fails (rather than hangs).
const STREAM_WAIT: Duration = Duration::from_secs(10);

/// The next item of a watch stream as it came (a batch, an error, or the end); fails the test
/// when nothing comes within [`STREAM_WAIT`].
async fn next_item(stream: &mut WatchStream) -> Option<Result<WatchBatch, StoreError>> {
    tokio::time::timeout(STREAM_WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("nothing on the watch stream within {STREAM_WAIT:?}"))
}

async fn next_batch(stream: &mut WatchStream) -> WatchBatch {
    next_item(stream)
        .await
        .expect("watch stream ended")
        .expect("watch stream failed")
}

fn keys(batch: &WatchBatch) -> Vec<&str> {
    batch.events.iter().map(|e| e.kv.key.as_str()).collect()
}

/// A watch from a compacted revision fails either at once or as the stream's only item (etcd
/// reports compaction on the stream, after creating the watcher).
async fn expect_compacted_watch(
    store: &dyn Store,
    prefix: &str,
    from: Revision,
    compacted: Revision,
) {
    match store.watch(prefix, from).await {
        Err(error) => assert_eq!(
            error,
            StoreError::Compacted {
                requested: from,
                compacted
            }
        ),
        Ok(mut stream) => {
            let item = next_item(&mut stream).await;
            let expected = StoreError::Compacted {
                requested: from,
                compacted,
            };
            assert_eq!(item, Some(Err(expected)));
            assert!(
                next_item(&mut stream).await.is_none(),
                "the stream ends after the error"
            );
        }
    }
}

// ---- shared cases --------------------------------------------------------------------------

async fn case_get_missing_and_present(store: &dyn Store) {
    assert_eq!(store.get("a").await.unwrap(), None);
    write(store, vec![put("a", "1")]).await;
    let kv = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        (kv.key.as_str(), kv.value.as_slice()),
        ("a", b"1".as_slice())
    );
    assert_eq!(
        store.get("ab").await.unwrap(),
        None,
        "get is exact, not a prefix read"
    );
}

async fn case_put_sets_revisions_and_version(store: &dyn Store) {
    let first = write(store, vec![put("k", "v1")]).await;
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (first, first, 1)
    );

    let second = write(store, vec![put("k", "v2")]).await;
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (first, second, 2)
    );
    assert_eq!(kv.value, b"v2");

    write(store, vec![delete("k")]).await;
    let recreated = write(store, vec![put("k", "v3")]).await;
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (recreated, recreated, 1)
    );
}

async fn case_revision_starts_at_one_and_counts_writing_txns(store: &dyn Store) {
    assert_eq!(store.current_revision().await.unwrap(), 1);
    assert_eq!(write(store, vec![put("a", "1")]).await, 2);
    assert_eq!(write(store, vec![put("a", "2"), put("b", "1")]).await, 3);
    // No writes: succeeds without advancing.
    let empty = store.txn(Txn::default()).await.unwrap();
    assert!(empty.succeeded);
    assert_eq!(empty.revision, 3);
    // A failed compare does not advance either, and reports the current revision.
    let failed = store
        .txn(Txn {
            compares: vec![Compare::mod_revision("a", CompareOp::Equal, 2)],
            writes: vec![put("a", "x")],
        })
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, 3);
    assert_eq!(store.current_revision().await.unwrap(), 3);
    assert_eq!(write(store, vec![put("c", "1")]).await, 4);
    assert_eq!(
        store
            .range(RangeRequest::prefix(""))
            .await
            .unwrap()
            .revision,
        4
    );
}

async fn case_txn_applies_all_writes_at_one_revision(store: &dyn Store) {
    write(store, vec![put("t/gone", "x")]).await;
    let outcome = store
        .txn(Txn {
            compares: vec![
                Compare::mod_revision("t/a", CompareOp::Equal, 0),
                Compare::mod_revision("t/gone", CompareOp::Greater, 0),
            ],
            writes: vec![put("t/a", "1"), put("t/b", "2"), delete("t/gone")],
        })
        .await
        .unwrap();
    assert!(outcome.succeeded);
    for key in ["t/a", "t/b"] {
        assert_eq!(
            store.get(key).await.unwrap().unwrap().mod_revision,
            outcome.revision
        );
    }
    assert_eq!(store.get("t/gone").await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), outcome.revision);
}

async fn case_false_compare_writes_nothing(store: &dyn Store) {
    let rev = write(store, vec![put("f/a", "1")]).await;
    let outcome = store
        .txn(Txn {
            compares: vec![
                Compare::mod_revision("f/a", CompareOp::Equal, rev),
                Compare::mod_revision("f/a", CompareOp::NotEqual, rev),
            ],
            writes: vec![put("f/a", "2"), put("f/b", "2"), delete("f/c")],
        })
        .await
        .unwrap();
    assert!(!outcome.succeeded);
    assert_eq!(outcome.revision, rev);
    let kv = store.get("f/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (b"1".as_slice(), rev)
    );
    assert_eq!(store.get("f/b").await.unwrap(), None);
}

async fn case_read_is_one_revision_of_gets_and_ranges(store: &dyn Store) {
    write(
        store,
        vec![put("r/a", "1"), put("r/b/x", "2"), put("r/b/y", "3")],
    )
    .await;
    let rev = write(store, vec![put("r/c", "4")]).await;
    let set = store
        .read(vec![
            Read::Get("r/a".to_owned()),
            Read::Get("r/missing".to_owned()),
            Read::Range(RangeRequest::prefix("r/b/")),
            Read::Range(RangeRequest {
                limit: 1,
                descending: true,
                ..RangeRequest::prefix("r/")
            }),
        ])
        .await
        .unwrap();
    assert_eq!(set.revision, rev);
    let keys: Vec<Vec<&str>> = set
        .results
        .iter()
        .map(|kvs| kvs.iter().map(|kv| kv.key.as_str()).collect())
        .collect();
    assert_eq!(
        keys,
        vec![vec!["r/a"], vec![], vec!["r/b/x", "r/b/y"], vec!["r/c"]]
    );
    assert_eq!(set.results[0][0].value, b"1");
    assert!(store.read(vec![]).await.unwrap().results.is_empty());
}

async fn case_range_compare_sees_every_key_of_the_range(store: &dyn Store) {
    // "Nothing under g/ changed since revision `seen`": holds on an empty range, holds while
    // every key is older, fails once any key in the range (new or old) is written.
    let unchanged = |seen: Revision| Compare::mod_revision_prefix("g/", CompareOp::Less, seen + 1);
    let seen = write(store, vec![put("h", "0")]).await;
    let guarded = |seen: Revision, value: &str| Txn {
        compares: vec![unchanged(seen)],
        writes: vec![put("h", value)],
    };
    assert!(store.txn(guarded(seen, "1")).await.unwrap().succeeded);
    let seen = write(store, vec![put("g/a", "1"), put("g/b", "1")]).await;
    write(store, vec![put("gz", "outside the range")]).await;
    assert!(store.txn(guarded(seen, "2")).await.unwrap().succeeded);
    write(store, vec![put("g/c", "new key")]).await;
    let outcome = store.txn(guarded(seen, "3")).await.unwrap();
    assert!(
        !outcome.succeeded,
        "a key created in the range must fail the compare"
    );
    assert_eq!(store.get("h").await.unwrap().unwrap().value, b"2");
    let equal_zero = Txn {
        compares: vec![Compare::mod_revision_prefix("none/", CompareOp::Equal, 0)],
        writes: vec![put("h", "4")],
    };
    assert!(store.txn(equal_zero).await.unwrap().succeeded);
}

async fn case_mod_revision_zero_means_absent(store: &dyn Store) {
    let create = |value: &str| Txn {
        compares: vec![Compare::mod_revision("z", CompareOp::Equal, 0)],
        writes: vec![put("z", value)],
    };
    let first = store.txn(create("1")).await.unwrap();
    assert!(first.succeeded);
    assert!(
        !store.txn(create("2")).await.unwrap().succeeded,
        "z exists now"
    );
    assert_eq!(store.get("z").await.unwrap().unwrap().value, b"1");
    // The other operators see 0 for a missing key too.
    let holds = |op, revision| Txn {
        compares: vec![Compare::mod_revision("missing", op, revision)],
        writes: vec![],
    };
    assert!(
        store
            .txn(holds(CompareOp::Less, 1))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !store
            .txn(holds(CompareOp::Greater, 0))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !store
            .txn(holds(CompareOp::NotEqual, 0))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        store
            .txn(holds(CompareOp::Less, first.revision))
            .await
            .unwrap()
            .succeeded
    );
}

async fn case_delete_removes_key(store: &dyn Store) {
    write(store, vec![put("d/a", "1"), put("d/b", "1")]).await;
    let rev = write(store, vec![delete("d/a")]).await;
    assert_eq!(store.get("d/a").await.unwrap(), None);
    let range = store.range(RangeRequest::prefix("d/")).await.unwrap();
    assert_eq!(
        range
            .kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["d/b"]
    );
    assert_eq!(range.revision, rev);
}

/// etcd: deleting a key that does not exist changes nothing, so a transaction whose only write
/// is such a delete succeeds without a new revision, and makes no watch event.
async fn case_delete_of_missing_key_changes_nothing(store: &dyn Store) {
    let before = write(store, vec![put("m/a", "1")]).await;
    let mut watch = store.watch("m/", 0).await.unwrap();
    let outcome = store
        .txn(Txn {
            compares: vec![],
            writes: vec![delete("m/nothing")],
        })
        .await
        .unwrap();
    assert!(outcome.succeeded);
    assert_eq!(outcome.revision, before);
    assert_eq!(store.current_revision().await.unwrap(), before);
    // Mixed with a real write, the transaction advances and only the real write is an event.
    let mixed = write(store, vec![delete("m/nothing"), put("m/b", "1")]).await;
    assert_eq!(mixed, before + 1);
    let batch = next_batch(&mut watch).await;
    assert_eq!(batch.revision, mixed);
    assert_eq!(keys(&batch), ["m/b"]);
}

async fn case_duplicate_key_in_txn_is_rejected(store: &dyn Store) {
    let result = store
        .txn(Txn {
            compares: vec![],
            writes: vec![put("dup", "1"), put("dup", "2")],
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::Other(_))),
        "got {result:?}"
    );
    assert_eq!(store.get("dup").await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), 1);
}

async fn case_range_prefix_orders_and_limits(store: &dyn Store) {
    write(
        store,
        vec![
            put("p/b", "2"),
            put("p/a", "1"),
            put("p/c", "3"),
            put("q/a", "x"),
        ],
    )
    .await;
    write(store, vec![put("p", "root"), put("o/z", "x")]).await;
    let names = |kvs: &[setpoint_writer::store::KeyValue]| {
        kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>()
    };

    let all = store.range(RangeRequest::prefix("p/")).await.unwrap();
    assert_eq!(names(&all.kvs), ["p/a", "p/b", "p/c"]);
    assert!(!all.more);
    assert_eq!(all.revision, 3);

    let descending = RangeRequest {
        descending: true,
        ..RangeRequest::prefix("p/")
    };
    let result = store.range(descending.clone()).await.unwrap();
    assert_eq!(names(&result.kvs), ["p/c", "p/b", "p/a"]);

    let limited = store
        .range(RangeRequest {
            limit: 2,
            ..RangeRequest::prefix("p/")
        })
        .await;
    let limited = limited.unwrap();
    assert_eq!(names(&limited.kvs), ["p/a", "p/b"]);
    assert!(limited.more);

    let limited = store
        .range(RangeRequest {
            limit: 2,
            ..descending
        })
        .await
        .unwrap();
    assert_eq!(names(&limited.kvs), ["p/c", "p/b"]);
    assert!(limited.more);

    let exact = store
        .range(RangeRequest {
            limit: 3,
            ..RangeRequest::prefix("p/")
        })
        .await
        .unwrap();
    assert_eq!(exact.kvs.len(), 3);
    assert!(!exact.more, "limit equal to the count is not cut short");

    let everything = store.range(RangeRequest::prefix("")).await.unwrap();
    assert_eq!(
        names(&everything.kvs),
        ["o/z", "p", "p/a", "p/b", "p/c", "q/a"]
    );
    assert_eq!(
        store
            .range(RangeRequest::prefix("nothing/"))
            .await
            .unwrap()
            .kvs,
        vec![]
    );
}

async fn case_range_start_end(store: &dyn Store) {
    write(
        store,
        vec![put("a", "1"), put("b", "1"), put("c", "1"), put("d", "1")],
    )
    .await;
    let request = |start: &str, end: &str| RangeRequest {
        start: start.to_owned(),
        end: end.to_owned(),
        limit: 0,
        descending: false,
    };
    let names = |r: setpoint_writer::store::RangeResult| {
        r.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.range(request("b", "d")).await.unwrap()),
        ["b", "c"]
    );
    assert_eq!(
        names(store.range(request("b", "")).await.unwrap()),
        ["b", "c", "d"]
    );
    assert_eq!(
        names(store.range(request("bb", "c")).await.unwrap()),
        Vec::<String>::new()
    );
    let reverse = RangeRequest {
        descending: true,
        limit: 1,
        ..request("a", "c")
    };
    let result = store.range(reverse).await.unwrap();
    assert!(result.more);
    assert_eq!(names(result), ["b"]);
}

async fn case_watch_from_now_groups_by_revision(store: &dyn Store) {
    write(store, vec![put("w/old", "1")]).await;
    let mut watch = store.watch("w/", 0).await.unwrap();
    let first = write(store, vec![put("w/b", "1"), put("w/a", "1")]).await;
    let second = write(store, vec![put("w/c", "1")]).await;
    let batch = next_batch(&mut watch).await;
    assert_eq!(batch.revision, first);
    assert_eq!(
        keys(&batch),
        ["w/b", "w/a"],
        "events in the order the txn wrote them"
    );
    assert!(
        batch
            .events
            .iter()
            .all(|e| e.kind == EventKind::Put && e.kv.mod_revision == first)
    );
    let batch = next_batch(&mut watch).await;
    assert_eq!((batch.revision, keys(&batch)), (second, vec!["w/c"]));
    let kv = &batch.events[0].kv;
    assert_eq!(
        (kv.create_revision, kv.version, kv.value.as_slice()),
        (second, 1, b"1".as_slice())
    );
}

/// 100 commits before the watch starts (replayed), 100 while it runs (live): the watcher sees
/// every matching revision exactly once, in order.
async fn case_watch_replays_then_follows_live(store: &dyn Store) {
    let commit = |i: usize| {
        let mut writes = vec![put("r/a", &i.to_string()), put(&format!("r/{i:03}"), "x")];
        if i.is_multiple_of(3) {
            writes.push(put("other/x", &i.to_string()));
        }
        if i.is_multiple_of(5) {
            writes = vec![put("other/y", &i.to_string())];
        }
        writes
    };
    let mut matching = Vec::new();
    for i in 0..100 {
        let rev = write(store, commit(i)).await;
        if !i.is_multiple_of(5) {
            matching.push(rev);
        }
    }
    let mut watch = store.watch("r/", 2).await.unwrap();
    let writer = async {
        let mut revs = Vec::new();
        for i in 100..200 {
            let rev = write(store, commit(i)).await;
            if !i.is_multiple_of(5) {
                revs.push(rev);
            }
        }
        revs
    };
    let last = 201;
    let reader = async {
        let mut seen = Vec::new();
        while seen.last() != Some(&last) {
            let batch = next_batch(&mut watch).await;
            assert_eq!(
                batch.events.len(),
                2,
                "revision {}: {:?}",
                batch.revision,
                keys(&batch)
            );
            assert!(batch.events.iter().all(|e| e.kv.key.starts_with("r/")));
            assert!(
                batch
                    .events
                    .iter()
                    .all(|e| e.kv.mod_revision == batch.revision)
            );
            seen.push(batch.revision);
        }
        seen
    };
    let (live, seen) = tokio::join!(writer, reader);
    matching.extend(live);
    assert_eq!(matching.last(), Some(&last));
    assert_eq!(seen, matching);
}

async fn case_watch_filters_by_prefix(store: &dyn Store) {
    let mut watch = store.watch("app/", 0).await.unwrap();
    write(store, vec![put("apple", "x"), put("ap", "x")]).await;
    write(store, vec![put("other/app/x", "x")]).await;
    let wanted = write(store, vec![put("apple/1", "x"), put("app/1", "x")]).await;
    let batch = next_batch(&mut watch).await;
    assert_eq!((batch.revision, keys(&batch)), (wanted, vec!["app/1"]));
}

async fn case_watch_reports_deletes(store: &dyn Store) {
    let created = write(store, vec![put("x/a", "1"), put("x/b", "1")]).await;
    let deleted = write(store, vec![delete("x/a"), put("x/b", "2")]).await;
    let mut watch = store.watch("x/", created).await.unwrap();
    assert_eq!(next_batch(&mut watch).await.revision, created);
    let batch = next_batch(&mut watch).await;
    assert_eq!(batch.revision, deleted);
    let event = &batch.events[0];
    assert_eq!(event.kind, EventKind::Delete);
    assert_eq!(
        (event.kv.key.as_str(), event.kv.mod_revision),
        ("x/a", deleted)
    );
    assert!(event.kv.value.is_empty());
    assert_eq!(
        (event.kv.create_revision, event.kv.version),
        (0, 0),
        "as etcd reports deletes"
    );
    assert_eq!(batch.events[1].kind, EventKind::Put);
    assert_eq!(batch.events[1].kv.version, 2);
}

async fn case_compaction_then_watch(store: &dyn Store) {
    for i in 0..5 {
        write(store, vec![put("c/k", &i.to_string())]).await; // revisions 2..=6
    }
    store.compact(4).await.unwrap();
    // Values survive compaction; only history goes.
    assert_eq!(store.get("c/k").await.unwrap().unwrap().value, b"4");
    expect_compacted_watch(store, "c/", 2, 4).await;
    expect_compacted_watch(store, "c/", 3, 4).await;
    // The compaction revision itself is still watchable.
    let mut watch = store.watch("c/", 4).await.unwrap();
    assert_eq!(next_batch(&mut watch).await.revision, 4);
    assert_eq!(next_batch(&mut watch).await.revision, 5);
    assert_eq!(next_batch(&mut watch).await.revision, 6);
    // Compacting again at or below the compacted revision is etcd's "compacted" error.
    let again = store.compact(3).await;
    assert!(
        matches!(again, Err(StoreError::Compacted { .. })),
        "got {again:?}"
    );
    let future = store.compact(100).await;
    assert!(
        matches!(future, Err(StoreError::Other(_))),
        "got {future:?}"
    );
}

async fn case_large_value_fits_and_too_large_fails(store: &dyn Store) {
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let rev = write(
        store,
        vec![
            TxnOp::Put {
                key: "big/value".to_owned(),
                value: big.clone(),
            },
            put("big/record", "{\"version\":1}"),
        ],
    )
    .await;
    let kv = store.get("big/value").await.unwrap().unwrap();
    assert_eq!(kv.mod_revision, rev);
    assert!(kv.value == big, "the 1 MiB value round-trips");
    let range = store.range(RangeRequest::prefix("big/")).await.unwrap();
    assert_eq!(range.kvs.len(), 2);

    let huge = vec![7u8; 2 * 1024 * 1024];
    let result = store
        .txn(Txn {
            compares: vec![],
            writes: vec![TxnOp::Put {
                key: "big/huge".to_owned(),
                value: huge,
            }],
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::TooLarge(_))),
        "got {result:?}"
    );
    assert_eq!(store.current_revision().await.unwrap(), rev);
}

// ---- etcd only -----------------------------------------------------------------------------

async fn store_for(server: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(&[server.endpoint()], OP_TIMEOUT)
        .await
        .unwrap()
}

/// An unreachable etcd is `Unavailable` once the call's deadline passes, not after the
/// client's own (much longer) retries. The bound is generous — three deadlines — so a loaded
/// machine does not fail it; a call that ignored the deadline would take far longer.
async fn assert_unavailable_quickly(store: &dyn Store) {
    let started = Instant::now();
    let result = store.get("k").await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "got {result:?}"
    );
    assert!(elapsed < OP_TIMEOUT * 3, "took {elapsed:?}");
}

async fn recovers(store: &dyn Store) -> bool {
    wait_until(Duration::from_secs(20), || async {
        store.get("k").await.is_ok()
    })
    .await
}

#[tokio::test]
async fn etcd_down_is_unavailable_then_the_same_store_reconnects() {
    let mut server = EtcdServer::start();
    let store = store_for(&server).await;
    let rev = write(&store, vec![put("k", "v")]).await;
    let mut watch = store.watch("", 0).await.unwrap();

    server.stop();
    assert_unavailable_quickly(&store).await;
    let txn = store
        .txn(Txn {
            compares: vec![],
            writes: vec![put("k", "w")],
        })
        .await;
    assert!(
        matches!(txn, Err(StoreError::Unavailable(_))),
        "got {txn:?}"
    );
    let ended = next_item(&mut watch).await;
    assert!(
        matches!(ended, Some(Err(StoreError::Unavailable(_)))),
        "got {ended:?}"
    );

    server.restart();
    assert!(
        recovers(&store).await,
        "the store did not reconnect within 20 s"
    );
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (b"v".as_slice(), rev)
    );
    assert_eq!(write(&store, vec![put("k", "w")]).await, rev + 1);
}

#[tokio::test]
async fn etcd_down_at_connect_is_lazy() {
    let mut server = EtcdServer::start();
    server.stop();
    // Connecting succeeds with etcd down (it must not wait for etcd; generous bound for a
    // loaded machine: a connect that waited would wait out retries far past it).
    let started = Instant::now();
    let store = store_for(&server).await;
    assert!(
        started.elapsed() < OP_TIMEOUT * 3,
        "connect must not wait for etcd: took {:?}",
        started.elapsed()
    );
    assert_unavailable_quickly(&store).await;
    let watch = store.watch("", 0).await;
    assert!(
        matches!(watch, Err(StoreError::Unavailable(_))),
        "got {:?}",
        watch.err()
    );
    server.restart();
    assert!(
        recovers(&store).await,
        "the store did not connect within 20 s"
    );
    assert_eq!(store.current_revision().await.unwrap(), 1);
}

#[tokio::test]
async fn etcd_dropped_watch_streams_cancel_their_watchers() {
    let server = EtcdServer::start();
    let store = store_for(&server).await;
    let mut watches = Vec::new();
    for i in 0..5 {
        watches.push(store.watch(&format!("w{i}/"), 0).await.unwrap());
    }
    let watchers = || server.metric("etcd_debugging_mvcc_watcher_total");
    assert_eq!(watchers(), Some(5.0));
    drop(watches);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            watchers() == Some(0.0)
        })
        .await,
        "etcd still has {:?} watchers",
        watchers()
    );
}

// ---- embedded only -------------------------------------------------------------------------

#[tokio::test]
async fn embedded_reopen_keeps_data_revision_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let rev = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        write(&store, vec![put("a", "1")]).await;
        write(&store, vec![put("a", "2"), put("b", "1")]).await
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), rev);
    let kv = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.version),
        (b"2".as_slice(), 2, 2)
    );
    let mut watch = store.watch("", 2).await.unwrap();
    assert_eq!(next_batch(&mut watch).await.revision, 2);
    assert_eq!(keys(&next_batch(&mut watch).await), ["a", "b"]);
    assert_eq!(write(&store, vec![put("c", "1")]).await, rev + 1);
    assert_eq!(next_batch(&mut watch).await.revision, rev + 1);
}

#[tokio::test]
async fn embedded_lagging_watcher_ends_with_an_error() {
    let harness = embedded();
    let store = &*harness.store;
    let mut watch = store.watch("", 0).await.unwrap();
    for i in 0..1100 {
        write(store, vec![put("k", &i.to_string())]).await;
    }
    let mut delivered = 0;
    loop {
        match next_item(&mut watch).await {
            Some(Ok(_)) => delivered += 1,
            Some(Err(StoreError::Unavailable(message))) => {
                assert!(message.contains("behind"), "{message}");
                break;
            }
            other => panic!("expected a lag error, got {other:?}"),
        }
    }
    assert!(delivered < 1100);
    assert!(next_item(&mut watch).await.is_none());
}

// ---- leases: etcd only (the embedded store is single-process and refuses them) -------------

fn put_with_lease(key: &str, value: &str, lease: i64) -> TxnOp {
    TxnOp::PutWithLease {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        lease,
    }
}

#[tokio::test]
async fn etcd_lease_keeps_its_key_while_renewed_and_revoke_deletes_it() {
    let harness = etcd().await;
    let store = &*harness.store;
    let mut watch = store.watch("/lease/", 0).await.unwrap();
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    let put = write(store, vec![put_with_lease("/lease/a", "held", lease)]).await;
    assert_eq!(next_batch(&mut watch).await.revision, put);
    // Renewed past two TTLs, the key stays. The loop's sleeps are the point: time must pass
    // (more than the TTL) with the lease renewed every half TTL or so; there is no condition to
    // await instead. A loaded machine stretching them still renews well within the TTL.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        store.lease_keep_alive(lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kv = store.get("/lease/a").await.unwrap().expect("kept alive");
    assert_eq!(kv.mod_revision, put);
    store.lease_revoke(lease).await.unwrap();
    let deleted = next_batch(&mut watch).await;
    assert_eq!(deleted.events.len(), 1);
    assert_eq!(deleted.events[0].kind, EventKind::Delete);
    assert_eq!(deleted.events[0].kv.key, "/lease/a");
    assert_eq!(store.get("/lease/a").await.unwrap(), None);
    // An ended lease is gone for every call, and a put cannot attach to it.
    assert_eq!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
    assert_eq!(
        store.lease_revoke(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
    let refused = store
        .txn(Txn {
            compares: vec![],
            writes: vec![put_with_lease("/lease/b", "late", lease)],
        })
        .await;
    assert_eq!(refused, Err(StoreError::LeaseNotFound(lease)));
}

#[tokio::test]
async fn etcd_lease_expiry_deletes_its_key() {
    let harness = etcd().await;
    let store = &*harness.store;
    // Timed from before the grant, so a slow machine only makes the measured time longer: the
    // lower bound below cannot fail from load, only from a lease that ends before its TTL.
    let started = Instant::now();
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    let put = write(store, vec![put_with_lease("/lease/x", "v", lease)]).await;
    let mut watch = store.watch("/lease/", put + 1).await.unwrap();
    let deleted = next_batch(&mut watch).await;
    assert_eq!(deleted.events[0].kind, EventKind::Delete);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "deleted after {:?}, before the 2 s TTL",
        started.elapsed()
    );
    assert_eq!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
}

#[tokio::test]
async fn embedded_refuses_leases_and_a_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.lease_grant(Duration::from_secs(2)).await,
        Err(StoreError::Other(_))
    ));
    let refused = store
        .txn(Txn {
            compares: vec![],
            writes: vec![put_with_lease("/k", "v", 1)],
        })
        .await;
    assert!(matches!(refused, Err(StoreError::Other(_))), "{refused:?}");
    assert_eq!(store.get("/k").await.unwrap(), None);
    // The file is locked while open: a second handle (as a second process would) is refused
    // with a message that says why.
    let Err(second) = EmbeddedStore::open(dir.path()) else {
        panic!("a second open of a locked embedded store succeeded");
    };
    let message = second.to_string();
    assert!(message.contains("in use by another process"), "{message}");
}

//! Change control holds across writers: two independent `Configs` — each with its own etcd
//! connection, as two writer processes have, and nothing shared in memory — race on one real etcd,
//! many trials each. Every rule (approval policies, the environment hierarchy, one decision per
//! change request) must hold by the store's compares alone; no process-local lock can help here.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use setpoint_core::ConfigPath;
use setpoint_core::env::Environment;
use setpoint_tests::etcd::EtcdServer;
use setpoint_writer::error::ErrorCode;
use setpoint_writer::model::approvals::{Decision, Policy, Status};
use setpoint_writer::model::{Actor, Change, Configs, Submitted, SystemClock};
use setpoint_writer::store::etcd::EtcdStore;

const TRIALS: usize = 12;

async fn writer(etcd: &EtcdServer) -> Arc<Configs> {
    let store = EtcdStore::connect(&[etcd.endpoint()], Duration::from_secs(5))
        .await
        .unwrap();
    Arc::new(Configs::new(
        Arc::new(store),
        "/setpoint/",
        Arc::new(SystemClock),
    ))
}

fn actor(name: &str) -> Actor {
    Actor {
        name: Some(name.to_owned()),
        request_id: format!("test-{name}"),
        source: None,
    }
}

fn path(text: &str) -> ConfigPath {
    ConfigPath::parse(text).unwrap()
}

fn put(text: &str, value: serde_json::Value) -> Change {
    Change::put(path(text), value, None, None).unwrap()
}

async fn two_writers() -> (EtcdServer, Arc<Configs>, Arc<Configs>) {
    let etcd = EtcdServer::start();
    let a = writer(&etcd).await;
    let b = writer(&etcd).await;
    (etcd, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_created_while_writes_flow_is_never_bypassed() {
    let (_etcd, a, b) = two_writers().await;
    for trial in 0..TRIALS {
        let prefix = format!("/pay{trial}");
        // Writes flow through both writers while one of them creates a policy on the prefix.
        let mut writes = Vec::new();
        for n in 0..8 {
            let writer = if n % 2 == 0 { a.clone() } else { b.clone() };
            let target = format!("{prefix}/limit{}", n % 3);
            writes.push(tokio::spawn(async move {
                writer
                    .submit(vec![put(&target, json!(n))], &actor("author"))
                    .await
            }));
        }
        let policy = Policy {
            approvals_required: 1,
            expires_in_secs: None,
        };
        let policy_revision = b
            .put_policy(&path(&prefix), &policy, &actor("admin"))
            .await
            .unwrap();
        let (mut committed, mut pending) = (0, 0);
        for write in writes {
            match write.await.unwrap() {
                Ok(Submitted::Committed(c)) => {
                    committed += 1;
                    assert!(
                        c.revision < policy_revision,
                        "trial {trial}: a write committed at {} under the policy created at {policy_revision}",
                        c.revision
                    );
                }
                Ok(Submitted::Pending(request)) => {
                    pending += 1;
                    assert_eq!(request.status, Status::Pending);
                }
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        assert_eq!(committed + pending, 8);
        // After the policy, every write through either writer waits for approval.
        for writer in [&a, &b] {
            let after = writer
                .submit(
                    vec![put(&format!("{prefix}/after"), json!(1))],
                    &actor("author"),
                )
                .await
                .unwrap();
            assert!(matches!(after, Submitted::Pending(_)), "trial {trial}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_environment_updates_never_form_a_cycle() {
    let (_etcd, a, b) = two_writers().await;
    let admin = actor("admin");
    for trial in 0..TRIALS {
        let (x, y, z) = (
            format!("x{trial}"),
            format!("y{trial}"),
            format!("z{trial}"),
        );
        for name in [&x, &y, &z] {
            a.put_environment(name, Environment::default(), &admin)
                .await
                .unwrap();
        }
        let child_of = |parent: &str| Environment {
            parent: Some(parent.to_owned()),
            ..Environment::default()
        };
        // x → y, y → z and z → x at once, through two writers: at most two can land.
        let (r1, r2, r3) = tokio::join!(
            a.put_environment(&x, child_of(&y), &admin),
            b.put_environment(&y, child_of(&z), &admin),
            a.put_environment(&z, child_of(&x), &admin),
        );
        let results = [r1, r2, r3];
        let landed = results.iter().filter(|r| r.is_ok()).count();
        assert!(landed <= 2, "trial {trial}: all three landed: a cycle");
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code, ErrorCode::ValidationFailed, "{refused}");
        }
        // Whatever landed, every chain ends.
        for name in [&x, &y, &z] {
            let mut seen = vec![name.clone()];
            let mut current = b.environment(name).await.unwrap().unwrap();
            while let Some(parent) = current.environment.parent.clone() {
                assert!(
                    !seen.contains(&parent),
                    "trial {trial}: cycle {seen:?} → {parent}"
                );
                seen.push(parent.clone());
                current = b.environment(&parent).await.unwrap().unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_override_never_outlives_its_environment() {
    let (_etcd, a, b) = two_writers().await;
    let admin = actor("admin");
    let mut both_refused = 0;
    for trial in 0..TRIALS * 2 {
        let name = format!("e{trial}");
        a.put_environment(&name, Environment::default(), &admin)
            .await
            .unwrap();
        let override_path = format!("/env/{name}/app/key");
        let (written, deleted) = tokio::join!(
            a.submit(vec![put(&override_path, json!(trial))], &admin),
            b.delete_environment(&name, &admin),
        );
        match (&written, &deleted) {
            (Ok(_), Ok(_)) => {
                // Only possible if the override was gone again; it is not: a violation.
                let live = b.current(&path(&override_path)).await.unwrap();
                panic!("trial {trial}: both landed, override {live:?} under a deleted environment");
            }
            (Ok(_), Err(e)) => assert_eq!(e.code, ErrorCode::Conflict, "{e}"),
            (Err(e), Ok(_)) => assert_eq!(e.code, ErrorCode::ValidationFailed, "{e}"),
            (Err(_), Err(_)) => both_refused += 1,
        }
        let defined = b.environment(&name).await.unwrap().is_some();
        let override_live = b.current(&path(&override_path)).await.unwrap().is_some();
        assert!(defined || !override_live, "trial {trial}");
    }
    assert_eq!(both_refused, 0, "one of the two always lands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_request_approved_through_both_writers_commits_once() {
    let (_etcd, a, b) = two_writers().await;
    let policy = Policy {
        approvals_required: 2,
        expires_in_secs: None,
    };
    a.put_policy(&path("/guarded"), &policy, &actor("admin"))
        .await
        .unwrap();
    for trial in 0..TRIALS {
        let target = format!("/guarded/value{trial}");
        let Submitted::Pending(request) = a
            .submit(vec![put(&target, json!(trial))], &actor("author"))
            .await
            .unwrap()
        else {
            panic!("trial {trial}: not gated");
        };
        a.decide(&request.id, Decision::Approve, &actor("first"))
            .await
            .unwrap();
        // Two last approvals at once, one through each writer.
        let (second, third) = (actor("second"), actor("third"));
        let (one, two) = tokio::join!(
            a.decide(&request.id, Decision::Approve, &second),
            b.decide(&request.id, Decision::Approve, &third),
        );
        let oks = [&one, &two].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "trial {trial}: {one:?} / {two:?}");
        let refused = [one, two].into_iter().find_map(Result::err).unwrap();
        assert_eq!(refused.code, ErrorCode::Conflict, "{refused}");
        let (stored, _) = b.change_request(&request.id).await.unwrap();
        assert_eq!(stored.status, Status::Committed);
        assert_eq!(stored.approvals.len(), 2);
        let entry = b.current(&path(&target)).await.unwrap().unwrap();
        assert_eq!(entry.version, 1, "trial {trial}: committed once");
        assert_eq!(stored.revision, Some(entry.revision));
    }
}

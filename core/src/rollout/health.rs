//! A rollout stage's health, judged from the fleet's client records: who the members are, who
//! acknowledged the candidate, who reported a callback error (NACK) or went away, and what the
//! writer's stage clock should do about it ([`Verdict`]).
//!
//! Pure: the writer passes the records, the revisions at which each stage began and the time.
//! A member joined in the first stage it belongs to ([`Rollout::joined_at`]); its edge delivered
//! the candidate at the revision of the record version that began that stage, so its receipt
//! for that revision (or a later one) is its acknowledgement.

use std::collections::BTreeMap;

use super::{Halt, Rollout};
use crate::Revision;
use crate::clients::ClientRecord;

/// When the current stage's health is judged from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Unix ms: the stage's start, or its resumption after a pause.
    pub since_ms: i64,
    /// The record's revision at that moment: NACKs for older revisions are history.
    pub since_revision: Revision,
}

/// What the stage clock should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every member acknowledged and errors stay within the limit.
    Healthy,
    /// Some members have not acknowledged yet; their time is not up.
    Waiting,
    /// Halt the rollout: why, and which instances.
    Unhealthy(Halt),
}

/// The current stage as the fleet shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Connected clients watching the path (for an override, clients of its environment and
    /// of those inheriting from it).
    pub matching: usize,
    /// Members of the current stage: matching clients, and members that disconnected since
    /// the window began.
    pub members: Vec<String>,
    pub acked: Vec<String>,
    /// Members that have not acknowledged (connected, no NACK).
    pub pending: Vec<String>,
    pub nacked: Vec<String>,
    pub disconnected: Vec<String>,
    /// Share of matching instances that applied the candidate, in percent.
    pub progress: f64,
    pub verdict: Verdict,
}

/// Whether `record` watches `path` (a base path as the client sees it).
fn watches(record: &ClientRecord, path: &str) -> bool {
    record.prefixes.iter().any(|prefix| {
        prefix == "/"
            || prefix == path
            || (path.starts_with(prefix.as_str())
                && path.as_bytes().get(prefix.len()) == Some(&b'/'))
    })
}

/// The path as clients see it (an override `/env/E/…` is seen as its base path by clients of
/// environment `E` and of the environments inheriting from it), and whether the path is an
/// override (which a client without an environment never sees).
fn seen_as(path: &str) -> (String, bool) {
    let parsed = crate::ConfigPath::parse(path);
    match parsed
        .as_ref()
        .ok()
        .and_then(|p| crate::env::split_override(p).map(|(e, rest)| (e.to_owned(), rest)))
    {
        Some((_, rest)) => (rest.to_string(), true),
        None => (path.to_owned(), false),
    }
}

/// Judges the current stage of `rollout`. `stage_revisions[i]` is the revision at which stage
/// `i + 1` began (stages not begun or unknown: the member cannot have acknowledged yet).
///
/// `clients` are the ones an edge delivers the candidate to ([`Rollout::changes_view`], which
/// follows environment inheritance and nearer overrides): for an override of `E` that takes
/// in the clients of `E`'s descendants and leaves out other environments' — this only drops the
/// clients without an environment, which never see an override.
pub fn assess(
    rollout: &Rollout,
    clients: &[&ClientRecord],
    stage_revisions: &[Revision],
    window: Window,
    now_ms: i64,
) -> Report {
    let (base, overrides) = seen_as(&rollout.path);
    let mut report = Report {
        matching: 0,
        members: Vec::new(),
        acked: Vec::new(),
        pending: Vec::new(),
        nacked: Vec::new(),
        disconnected: Vec::new(),
        progress: 0.0,
        verdict: Verdict::Healthy,
    };
    let mut seen = BTreeMap::new();
    for record in clients {
        if !watches(record, &base) || (overrides && record.env.is_none()) {
            continue;
        }
        if seen.insert(record.id.as_str(), ()).is_some() {
            continue;
        }
        let connected = record.is_connected();
        if connected {
            report.matching += 1;
        }
        let Some(joined) = rollout.joined_at(&record.id, &record.labels) else {
            continue;
        };
        if !connected
            && record
                .disconnected_at_ms
                .is_none_or(|at| at < window.since_ms)
        {
            continue;
        }
        report.members.push(record.id.clone());
        let delivered_at = stage_revisions.get(joined - 1).copied();
        let acked = delivered_at.is_some_and(|r| record.applied_revision >= r);
        let nacked = record.last_error.as_ref().is_some_and(|e| {
            e.path == base
                && e.revision >= window.since_revision
                && delivered_at.is_some_and(|r| e.revision >= r)
        });
        if nacked {
            report.nacked.push(record.id.clone());
        } else if !connected {
            report.disconnected.push(record.id.clone());
        } else if acked {
            report.acked.push(record.id.clone());
        } else {
            report.pending.push(record.id.clone());
        }
    }
    if report.matching > 0 {
        report.progress = report.acked.len() as f64 * 100.0 / report.matching as f64;
    }
    report.verdict = verdict(rollout, &report, window, now_ms);
    report
}

/// Who each stage of `rollout` would hold: of the connected `clients` watching its path (chosen
/// as for [`assess`]), the members of stage 1, 2, … in order — cumulative, since a
/// member stays in. A dry run's answer, with the id creation will use.
pub fn stage_members(rollout: &Rollout, clients: &[&ClientRecord]) -> (usize, Vec<Vec<String>>) {
    let (base, overrides) = seen_as(&rollout.path);
    let mut matching: Vec<&ClientRecord> = clients
        .iter()
        .copied()
        .filter(|c| c.is_connected() && watches(c, &base) && !(overrides && c.env.is_none()))
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    matching.dedup_by(|a, b| a.id == b.id);
    let mut probe = rollout.clone();
    let stages = (1..=rollout.stage_list().len())
        .map(|stage| {
            probe.stage = stage;
            matching
                .iter()
                .filter(|c| probe.member(&c.id, &c.labels))
                .map(|c| c.id.clone())
                .collect()
        })
        .collect();
    (matching.len(), stages)
}

fn verdict(rollout: &Rollout, report: &Report, window: Window, now_ms: i64) -> Verdict {
    let failed: Vec<String> = report
        .nacked
        .iter()
        .chain(&report.disconnected)
        .cloned()
        .collect();
    if !report.members.is_empty() {
        let share = failed.len() as f64 / report.members.len() as f64;
        if share > rollout.health.max_error_rate {
            return Verdict::Unhealthy(Halt {
                reason: format!(
                    "{} of {} members failed ({} NACK, {} disconnected): {:.1} % is over the \
                     {:.1} % allowed",
                    failed.len(),
                    report.members.len(),
                    report.nacked.len(),
                    report.disconnected.len(),
                    share * 100.0,
                    rollout.health.max_error_rate * 100.0
                ),
                instances: failed,
            });
        }
    }
    if report.pending.is_empty() {
        return Verdict::Healthy;
    }
    let deadline = window
        .since_ms
        .saturating_add(i64::try_from(rollout.health.ack_timeout_ms).unwrap_or(i64::MAX));
    if now_ms >= deadline {
        return Verdict::Unhealthy(Halt {
            reason: format!(
                "{} of {} members did not acknowledge the candidate within {} ms",
                report.pending.len(),
                report.members.len(),
                rollout.health.ack_timeout_ms
            ),
            instances: report.pending.clone(),
        });
    }
    Verdict::Waiting
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{ClientError, ClientKind};
    use crate::rollout::{Health, Status};
    use crate::value::Format;

    fn rollout(path: &str, max_error_rate: f64) -> Rollout {
        Rollout {
            id: "roll_h".into(),
            path: path.into(),
            value: serde_json::json!("new"),
            format: Format::Json,
            stable_version: 1,
            canary: None,
            stages: vec![100],
            interval_ms: 1_000,
            health: Health {
                ack_timeout_ms: 30_000,
                max_error_rate,
                ..Health::default()
            },
            status: Status::InProgress,
            stage: 1,
            stage_started_ms: 1_000,
            created_at_ms: 1_000,
            created_by: "admin".into(),
            transitions: Vec::new(),
            halted: None,
        }
    }

    fn client(id: &str, prefix: &str, applied: Revision) -> ClientRecord {
        ClientRecord {
            id: id.into(),
            edge: "e".into(),
            address: "127.0.0.1:1".into(),
            kind: ClientKind::Session,
            env: None,
            labels: BTreeMap::new(),
            prefixes: vec![prefix.into()],
            sdk: String::new(),
            sdk_version: String::new(),
            connected_at_ms: 0,
            last_seen_ms: 0,
            disconnected_at_ms: None,
            delivered_revision: applied,
            applied_revision: applied,
            pending_since_ms: None,
            propagation_ms: None,
            end_to_end_ms: None,
            nacks: 0,
            last_error: None,
        }
    }

    const WINDOW: Window = Window {
        since_ms: 1_000,
        since_revision: 10,
    };

    #[test]
    fn stage_members_grow_stage_by_stage_from_the_canary_and_skip_the_unreached() {
        let mut r = rollout("/app/db/host", 0.0);
        r.stages = vec![50, 100];
        r.canary = Some(crate::rollout::Canary {
            instances: vec!["z".into()],
            labels: BTreeMap::new(),
        });
        let ids: Vec<String> = (0..40).map(|i| format!("i{i}")).collect();
        let mut records: Vec<ClientRecord> = ids.iter().map(|i| client(i, "/app", 1)).collect();
        records.push(client("z", "/", 1));
        records.push(client("elsewhere", "/billing", 1));
        let mut gone = client("gone", "/app", 1);
        gone.disconnected_at_ms = Some(5);
        records.push(gone);
        let refs: Vec<&ClientRecord> = records.iter().collect();
        let (matching, stages) = stage_members(&r, &refs);
        assert_eq!(matching, 41);
        assert_eq!(stages.len(), 3);
        assert_eq!(stages[0], vec!["z".to_owned()]);
        assert!(stages[0].iter().all(|m| stages[1].contains(m)));
        assert!(stages[1].iter().all(|m| stages[2].contains(m)));
        assert_eq!(stages[2].len(), 41);
        // Each listed member is what the rollout at that stage assigns the candidate to.
        for (index, members) in stages.iter().enumerate() {
            let mut at = r.clone();
            at.stage = index + 1;
            for record in &refs[..41] {
                assert_eq!(
                    members.contains(&record.id),
                    at.member(&record.id, &record.labels)
                );
            }
        }
    }

    #[test]
    fn acks_nacks_disconnects_and_timeouts_decide() {
        let r = rollout("/app/db/host", 0.0);
        let a = client("a", "/app", 10);
        let b = client("b", "/app/db", 9);
        let other = client("c", "/billing", 0);
        let report = assess(&r, &[&a, &b, &other], &[10], WINDOW, 2_000);
        assert_eq!(report.matching, 2);
        assert_eq!(report.acked, vec!["a".to_owned()]);
        assert_eq!(report.pending, vec!["b".to_owned()]);
        assert!((report.progress - 50.0).abs() < 1e-9);
        assert_eq!(report.verdict, Verdict::Waiting);
        let late = assess(&r, &[&a, &b], &[10], WINDOW, 31_000);
        assert!(
            matches!(&late.verdict, Verdict::Unhealthy(h) if h.instances == ["b"]),
            "{late:?}"
        );
        let mut failing = b.clone();
        failing.applied_revision = 10;
        failing.last_error = Some(ClientError {
            path: "/app/db/host".into(),
            error: "boom".into(),
            revision: 10,
            at_ms: 1_500,
        });
        let report = assess(&r, &[&a, &failing], &[10], WINDOW, 2_000);
        assert_eq!(report.nacked, vec!["b".to_owned()]);
        assert!(matches!(report.verdict, Verdict::Unhealthy(_)));
        // A NACK from before the window (a resumed stage) is history.
        let resumed = Window {
            since_ms: 1_000,
            since_revision: 11,
        };
        let report = assess(&r, &[&a, &failing], &[10], resumed, 2_000);
        assert_eq!(report.verdict, Verdict::Healthy);
        let mut gone = a.clone();
        gone.disconnected_at_ms = Some(1_200);
        let lenient = rollout("/app/db/host", 0.5);
        let report = assess(&lenient, &[&gone, &failing], &[10], resumed, 2_000);
        assert_eq!(report.disconnected, vec!["a".to_owned()]);
        assert_eq!(report.verdict, Verdict::Healthy, "1 of 2 is within 50 %");
        gone.disconnected_at_ms = Some(500);
        let report = assess(&lenient, &[&gone], &[10], resumed, 2_000);
        assert!(report.members.is_empty(), "gone before the stage began");
    }

    #[test]
    fn an_override_never_counts_clients_without_an_environment() {
        // Which environments see it (prod and its children) the caller decides with
        // `changes_view`; a plain client never sees an override.
        let r = rollout("/env/prod/app/db/host", 0.0);
        let mut prod = client("p", "/app", 10);
        prod.env = Some("prod".into());
        let mut child = client("c", "/app", 10);
        child.env = Some("prod-eu".into());
        let base = client("b", "/app", 10);
        let report = assess(&r, &[&prod, &child, &base], &[10], WINDOW, 2_000);
        assert_eq!(report.members, vec!["p".to_owned(), "c".to_owned()]);
        assert_eq!(report.verdict, Verdict::Healthy);
    }
}

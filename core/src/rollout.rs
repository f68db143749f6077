//! Staged rollouts: a candidate value for one path that reaches a growing share of the client
//! instances before it becomes the path's next version for everyone.
//!
//! A rollout is a system record at `/_setpoint/rollouts/{id}` ([`Rollout`], JSON), written only
//! by the writer and replicated to every edge like the accounts. The writer moves it through its
//! stages (by time and health, or by hand); each **edge** decides per client session, from the
//! record alone, whether that instance is a member of the current stage ([`Rollout::assigns`])
//! and delivers the candidate or the stable value accordingly. So a stage change is one small
//! replicated record, never a push per client from the writer.
//!
//! Membership is deterministic and sticky: an instance's bucket is a hash of (rollout id,
//! instance id) in `0..10_000`, a member of a `p` % stage when its bucket is below `p × 100`. As
//! stages only grow, a member stays one; reconnecting changes nothing. Canary instances (named,
//! or matching every label of the selector) are members from the first stage to the last.
//!
//! This module is pure: no clock, no store. Both the writer (health, status) and the edges
//! (delivery) use it, so they cannot disagree about who is in.

pub mod health;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::path::ConfigPath;
use crate::value::{Format, ParsedValue};

/// Where rollout records live: `/_setpoint/rollouts/{id}`.
pub const ROLLOUTS_SEGMENT: &str = "rollouts";
/// Buckets an instance hashes into; a stage of `p` % holds buckets `0..p*100`.
pub const BUCKETS: u64 = 10_000;
/// Most stages, canary included.
pub const MAX_STAGES: usize = 20;
/// Most canary instances and labels.
pub const MAX_CANARY: usize = 1_000;

/// The record's path for rollout `id`.
pub fn record_path(id: &str) -> Option<ConfigPath> {
    check_id(id).ok()?;
    ConfigPath::parse(&format!(
        "/{}/{ROLLOUTS_SEGMENT}/{id}",
        crate::auth::SYSTEM_SEGMENT
    ))
    .ok()
}

/// The rollouts' directory, `/_setpoint/rollouts`.
pub fn records_root() -> ConfigPath {
    ConfigPath::parse(&format!(
        "/{}/{ROLLOUTS_SEGMENT}",
        crate::auth::SYSTEM_SEGMENT
    ))
    .unwrap_or_else(|_| ConfigPath::root())
}

/// Whether `path` is a rollout record.
pub fn is_record(path: &ConfigPath) -> bool {
    let mut segments = path.segments();
    segments.next() == Some(crate::auth::SYSTEM_SEGMENT)
        && segments.next() == Some(ROLLOUTS_SEGMENT)
        && segments.next().is_some()
        && segments.next().is_none()
}

/// A rollout id: `roll_` and 1–64 ASCII letters, digits, `-` or `_`.
pub fn check_id(id: &str) -> Result<(), String> {
    let rest = id
        .strip_prefix("roll_")
        .ok_or_else(|| format!("rollout id {id:?} must start with roll_"))?;
    if rest.is_empty()
        || rest.len() > 64
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "rollout id {id:?} must be roll_ and 1-64 letters, digits, - or _"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stages advance by time (when healthy) or by hand.
    InProgress,
    /// Members keep the candidate; nothing advances until resumed.
    Paused,
    /// The candidate became the path's next version for everyone.
    Completed,
    /// Everyone is back on the stable value.
    RolledBack,
}

impl Status {
    /// `in_progress`, `paused`, `completed` or `rolled_back`.
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::InProgress,
            Status::Paused,
            Status::Completed,
            Status::RolledBack,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// In progress or paused: members see the candidate.
    pub fn is_active(self) -> bool {
        matches!(self, Status::InProgress | Status::Paused)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::RolledBack => "rolled_back",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUnhealthy {
    #[default]
    Rollback,
    Pause,
}

/// When a stage is healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Every member must acknowledge the candidate within this long of the stage's start.
    pub ack_timeout_ms: u64,
    /// The share of members reporting a callback error (NACK) for the path, or disconnecting,
    /// since the stage began must stay at or under this.
    pub max_error_rate: f64,
    pub on_unhealthy: OnUnhealthy,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            ack_timeout_ms: 30_000,
            max_error_rate: 0.0,
            on_unhealthy: OnUnhealthy::Rollback,
        }
    }
}

/// The canary: named instances and/or a label selector (every label must match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Canary {
    #[serde(default)]
    pub instances: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Canary {
    pub fn matches(&self, instance: &str, labels: &BTreeMap<String, String>) -> bool {
        self.instances.iter().any(|i| i == instance)
            || (!self.labels.is_empty()
                && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// One step in a rollout's life, for its status page and the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: i64,
    /// The stage number (1-based) after the transition.
    pub stage: usize,
    pub status: Status,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A rollout as stored at `/_setpoint/rollouts/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    /// The path rolled out: a base path, or an override `/env/{name}/…`.
    pub path: String,
    /// The candidate, as the API shows values.
    pub value: serde_json::Value,
    pub format: Format,
    /// The path's version when the rollout began (0: it did not exist).
    pub stable_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Percentages, strictly increasing, the last 100.
    pub stages: Vec<u8>,
    pub interval_ms: u64,
    pub health: Health,
    pub status: Status,
    /// The current stage, 1-based over [`Rollout::stage_list`] (the canary first, if any).
    pub stage: usize,
    pub stage_started_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// Why it paused or rolled back by itself, and which instances failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halt {
    pub reason: String,
    pub instances: Vec<String>,
}

/// A stage: the canary, or a percentage of all instances (canaries included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Canary,
    Percent(u8),
}

/// What an instance is assigned for a rollout's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    Candidate,
    Stable,
}

/// The bucket of `instance` in rollout `id`: FNV-1a over both, finished with SplitMix64's mixer
/// so the low digits are uniform.
pub fn bucket(id: &str, instance: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes().chain([0u8]).chain(instance.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    hash % BUCKETS
}

impl Rollout {
    /// The stages in order: the canary first when there is one, then the percentages.
    pub fn stage_list(&self) -> Vec<Stage> {
        self.canary
            .iter()
            .map(|_| Stage::Canary)
            .chain(self.stages.iter().map(|p| Stage::Percent(*p)))
            .collect()
    }

    /// The current stage (the last one when the number is out of range).
    pub fn current_stage(&self) -> Stage {
        let list = self.stage_list();
        list.get(self.stage.saturating_sub(1))
            .or(list.last())
            .copied()
            .unwrap_or(Stage::Percent(100))
    }

    /// The percentage of instances the current stage holds (0 for the canary stage).
    pub fn percent(&self) -> u8 {
        match self.current_stage() {
            Stage::Canary => 0,
            Stage::Percent(p) => p,
        }
    }

    /// Whether `instance` (with `labels`) is in the current stage: a canary, or hashed below the
    /// stage's share. Says nothing of status: see [`Rollout::assigns`].
    pub fn member(&self, instance: &str, labels: &BTreeMap<String, String>) -> bool {
        if self
            .canary
            .as_ref()
            .is_some_and(|c| c.matches(instance, labels))
        {
            return true;
        }
        bucket(&self.id, instance) < u64::from(self.percent()) * (BUCKETS / 100)
    }

    /// What `instance` sees at this rollout's path: the candidate while the rollout is active
    /// and it is a member, else the stable value (after completion the stable value *is* the
    /// candidate, committed as the path's next version).
    pub fn assigns(&self, instance: &str, labels: &BTreeMap<String, String>) -> Assignment {
        if self.status.is_active() && self.member(instance, labels) {
            Assignment::Candidate
        } else {
            Assignment::Stable
        }
    }

    /// The first stage (1-based, at most the current one) in which `instance` is a member:
    /// the stage whose record version delivered it the candidate. `None`: not a member now.
    pub fn joined_at(&self, instance: &str, labels: &BTreeMap<String, String>) -> Option<usize> {
        let mut probe = self.clone();
        (1..=self.stage.max(1)).find(|stage| {
            probe.stage = *stage;
            probe.member(instance, labels)
        })
    }

    /// Whether the candidate changes what a client of `env` (`None`: base values) sees at the
    /// rollout's base path in `snapshot` — exactly when an edge delivers it the candidate (a
    /// plain client never sees an override; an environment's nearer override can hide a base
    /// candidate; an unchanged value sends nothing). The writer counts only such clients as
    /// members, so it never waits for an acknowledgement no edge will ask for.
    pub fn changes_view(&self, snapshot: &crate::snapshot::Snapshot, env: Option<&str>) -> bool {
        let (Ok(target), Ok(value)) = (ConfigPath::parse(&self.path), self.candidate()) else {
            return false;
        };
        let (layer, base) = match crate::env::split_override(&target) {
            Some((layer, base)) => (Some(layer.to_owned()), base),
            None => (None, target.clone()),
        };
        let Some(env) = env else {
            return layer.is_none()
                && snapshot
                    .get(&base)
                    .is_none_or(|stable| stable.value.structured() != value.structured());
        };
        let chain = crate::env::chain_of(snapshot, env).unwrap_or_default();
        let with = snapshot.with_entry(std::sync::Arc::new(crate::snapshot::Entry {
            path: target,
            value,
            version: self.stable_version + 1,
            revision: snapshot.revision(),
            updated_at: String::new(),
        }));
        let seen = |s: &crate::snapshot::Snapshot| {
            crate::resolve::effective(s, &chain, &base).map(|e| e.value)
        };
        seen(snapshot) != seen(&with)
    }

    /// The candidate as a value ready to deliver.
    pub fn candidate(&self) -> Result<ParsedValue, String> {
        ParsedValue::from_request(self.value.clone(), Some(self.format)).map_err(|e| e.to_string())
    }

    /// The last stage is the current one.
    pub fn at_last_stage(&self) -> bool {
        self.stage >= self.stage_list().len()
    }

    /// Parses a stored record (`None` if it is not one).
    pub fn from_value(value: &serde_json::Value) -> Option<Rollout> {
        serde_json::from_value(value.clone()).ok()
    }
}

/// `snapshot` as instance `instance` (with `labels`) sees it: the candidate of every active
/// rollout whose current stage holds it, put at the rollout's path (base or override) as if
/// committed, with the version it would get. Reads of any kind (effective, resolved, exported)
/// then answer as that instance's session delivers. The same snapshot when nothing applies.
pub fn as_seen_by(
    snapshot: &crate::snapshot::Snapshot,
    instance: &str,
    labels: &BTreeMap<String, String>,
) -> crate::snapshot::Snapshot {
    let root = records_root();
    let mut seen = snapshot.clone();
    for record in snapshot.below(&root) {
        if !is_record(&record.path) {
            continue;
        }
        let Some(rollout) = Rollout::from_value(record.value.structured()) else {
            continue;
        };
        if rollout.assigns(instance, labels) != Assignment::Candidate {
            continue;
        }
        let (Ok(path), Ok(value)) = (ConfigPath::parse(&rollout.path), rollout.candidate()) else {
            continue;
        };
        seen = seen.with_entry(std::sync::Arc::new(crate::snapshot::Entry {
            path,
            value,
            version: rollout.stable_version + 1,
            revision: record.revision,
            updated_at: record.updated_at.clone(),
        }));
    }
    seen
}

/// Checks a rollout's plan: stages strictly increasing percentages in 1..=100 ending at 100, at
/// most [`MAX_STAGES`] with the canary; a canary that names someone; sane health limits.
pub fn check_plan(stages: &[u8], canary: Option<&Canary>, health: &Health) -> Result<(), String> {
    if stages.is_empty() {
        return Err("stages must list at least one percentage (ending at 100)".into());
    }
    if stages.len() + usize::from(canary.is_some()) > MAX_STAGES {
        return Err(format!("at most {MAX_STAGES} stages, the canary included"));
    }
    if stages.iter().any(|p| *p == 0 || *p > 100) {
        return Err("each stage is a percentage from 1 to 100".into());
    }
    if stages.windows(2).any(|w| w[0] >= w[1]) {
        return Err("stages must strictly increase (e.g. [10, 50, 100])".into());
    }
    if stages.last() != Some(&100) {
        return Err("the last stage must be 100".into());
    }
    if let Some(canary) = canary {
        if canary.instances.is_empty() && canary.labels.is_empty() {
            return Err("a canary names instances or labels".into());
        }
        if canary.instances.len() + canary.labels.len() > MAX_CANARY {
            return Err(format!("at most {MAX_CANARY} canary instances and labels"));
        }
        let too_long = canary
            .instances
            .iter()
            .chain(canary.labels.keys())
            .chain(canary.labels.values())
            .any(|s| s.is_empty() || s.len() > crate::clients::MAX_FIELD_BYTES);
        if too_long {
            return Err(format!(
                "canary instances and labels are 1-{} bytes",
                crate::clients::MAX_FIELD_BYTES
            ));
        }
    }
    if !(0.0..=1.0).contains(&health.max_error_rate) {
        return Err("health.max_error_rate is a share from 0 to 1".into());
    }
    Ok(())
}

/// `24h`, `30m`, `90s`, `250ms` or plain seconds, as milliseconds.
pub fn parse_duration_ms(input: &str) -> Result<u64, String> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{input:?} is not a duration like 24h, 30m, 90s or 250ms"))?;
    let factor = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{input:?}: the unit must be ms, s, m, h or d")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{input:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(stages: Vec<u8>, canary: Option<Canary>) -> Rollout {
        Rollout {
            id: "roll_test".into(),
            path: "/myapp/db/host".into(),
            value: serde_json::json!("new-host"),
            format: Format::Json,
            stable_version: 1,
            canary,
            stages,
            interval_ms: 1_000,
            health: Health::default(),
            status: Status::InProgress,
            stage: 1,
            stage_started_ms: 0,
            created_at_ms: 0,
            created_by: "admin".into(),
            transitions: Vec::new(),
            halted: None,
        }
    }

    fn share(r: &Rollout, ids: &[String]) -> f64 {
        let none = BTreeMap::new();
        ids.iter().filter(|id| r.member(id, &none)).count() as f64 / ids.len() as f64
    }

    #[test]
    fn membership_is_uniform_within_two_percent_and_sticky_across_stages() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("app-{i}")).collect();
        let mut r = rollout(vec![10, 50, 100], None);
        let at_10 = share(&r, &ids);
        let members_10: Vec<&String> = ids
            .iter()
            .filter(|id| r.member(id, &BTreeMap::new()))
            .collect();
        r.stage = 2;
        let at_50 = share(&r, &ids);
        r.stage = 3;
        let at_100 = share(&r, &ids);
        assert!((at_10 - 0.10).abs() <= 0.02, "10 % stage holds {at_10}");
        assert!((at_50 - 0.50).abs() <= 0.02, "50 % stage holds {at_50}");
        assert!((at_100 - 1.0).abs() < f64::EPSILON, "{at_100}");
        r.stage = 2;
        assert!(
            members_10.iter().all(|id| r.member(id, &BTreeMap::new())),
            "a member at 10 % left at 50 %"
        );
        // Another rollout picks a different 10 %.
        let mut other = rollout(vec![10, 100], None);
        other.id = "roll_other".into();
        let overlap = members_10
            .iter()
            .filter(|id| other.member(id, &BTreeMap::new()))
            .count();
        assert!(
            overlap < members_10.len() / 4,
            "{overlap} of {}",
            members_10.len()
        );
    }

    #[test]
    fn canaries_are_in_from_the_first_stage_on_and_only_while_active() {
        let canary = Canary {
            instances: vec!["app-1".into()],
            labels: BTreeMap::from([("zone".into(), "eu-1".into())]),
        };
        let mut r = rollout(vec![50, 100], Some(canary));
        let none = BTreeMap::new();
        let eu = BTreeMap::from([
            ("zone".to_owned(), "eu-1".to_owned()),
            ("x".into(), "y".into()),
        ]);
        assert_eq!(r.current_stage(), Stage::Canary);
        assert_eq!(r.assigns("app-1", &none), Assignment::Candidate);
        assert_eq!(r.assigns("app-2", &eu), Assignment::Candidate);
        let outsiders = (0..200)
            .map(|i| format!("other-{i}"))
            .filter(|id| r.assigns(id, &none) == Assignment::Candidate)
            .count();
        assert_eq!(outsiders, 0, "the canary stage holds only canaries");
        r.stage = 2;
        assert_eq!(r.assigns("app-1", &none), Assignment::Candidate);
        r.status = Status::Paused;
        assert_eq!(r.assigns("app-1", &none), Assignment::Candidate);
        r.status = Status::RolledBack;
        assert_eq!(r.assigns("app-1", &none), Assignment::Stable);
    }

    #[test]
    fn an_instance_joins_at_its_first_stage_and_statuses_parse() {
        let mut r = rollout(vec![10, 50, 100], None);
        r.stage = 3;
        let none = BTreeMap::new();
        let joined: Vec<usize> = (0..2_000)
            .filter_map(|i| r.joined_at(&format!("app-{i}"), &none))
            .collect();
        assert_eq!(joined.len(), 2_000, "at 100 % everyone is a member");
        for stage in 1..=3 {
            assert!(joined.contains(&stage), "nobody joined at stage {stage}");
        }
        r.stage = 1;
        let first = (0..2_000)
            .map(|i| format!("app-{i}"))
            .find(|id| r.member(id, &none))
            .expect("someone is in the 10 % stage");
        r.stage = 3;
        assert_eq!(r.joined_at(&first, &none), Some(1));
        for status in [
            Status::InProgress,
            Status::Paused,
            Status::Completed,
            Status::RolledBack,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("done"), None);
    }

    #[test]
    fn plans_are_checked() {
        let ok = Health::default();
        assert!(check_plan(&[10, 50, 100], None, &ok).is_ok());
        for bad in [
            &[][..],
            &[10, 50][..],
            &[50, 10, 100][..],
            &[0, 100][..],
            &[10, 10, 100][..],
        ] {
            assert!(check_plan(bad, None, &ok).is_err(), "{bad:?}");
        }
        assert!(check_plan(&[100], Some(&Canary::default()), &ok).is_err());
        let bad_rate = Health {
            max_error_rate: 1.5,
            ..Health::default()
        };
        assert!(check_plan(&[100], None, &bad_rate).is_err());
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("5 parsecs").is_err());
    }

    #[test]
    fn an_instance_sees_the_candidates_of_its_stage_only() {
        use crate::snapshot::{Entry, Snapshot};
        let entry = |path: &str, value: serde_json::Value, version: u64| Entry {
            path: ConfigPath::parse(path).unwrap(),
            value: ParsedValue::from_request(value, Some(Format::Json)).unwrap(),
            version,
            revision: 2,
            updated_at: String::new(),
        };
        let record = rollout(vec![50, 100], None);
        let member = (0..)
            .map(|i| format!("app-{i}"))
            .find(|id| record.member(id, &BTreeMap::new()))
            .unwrap();
        let outsider = (0..)
            .map(|i| format!("app-{i}"))
            .find(|id| !record.member(id, &BTreeMap::new()))
            .unwrap();
        let snapshot = Snapshot::from_entries(
            2,
            [
                entry("/myapp/db/host", serde_json::json!("stable"), 1),
                entry(
                    "/_setpoint/rollouts/roll_test",
                    serde_json::to_value(&record).unwrap(),
                    1,
                ),
            ],
        );
        let host = ConfigPath::parse("/myapp/db/host").unwrap();
        let none = BTreeMap::new();
        let seen = as_seen_by(&snapshot, &member, &none);
        let got = seen.get(&host).unwrap();
        assert_eq!(got.value.structured(), &serde_json::json!("new-host"));
        assert_eq!(got.version, 2);
        let seen = as_seen_by(&snapshot, &outsider, &none);
        assert_eq!(
            seen.get(&host).unwrap().value.structured(),
            &serde_json::json!("stable")
        );
    }

    #[test]
    fn only_clients_whose_view_the_candidate_changes_count() {
        use crate::snapshot::{Entry, Snapshot};
        let entry = |path: &str, value: serde_json::Value| Entry {
            path: ConfigPath::parse(path).unwrap(),
            value: ParsedValue::from_request(value, Some(Format::Json)).unwrap(),
            version: 1,
            revision: 2,
            updated_at: String::new(),
        };
        let snapshot = Snapshot::from_entries(
            2,
            [
                entry("/myapp/db/host", serde_json::json!("stable")),
                entry("/env/prod", serde_json::json!({})),
                entry("/env/dev", serde_json::json!({})),
                entry("/env/prod/myapp/db/host", serde_json::json!("prod-host")),
            ],
        );
        let base = rollout(vec![100], None);
        assert!(base.changes_view(&snapshot, None));
        assert!(
            base.changes_view(&snapshot, Some("dev")),
            "dev sees the base"
        );
        assert!(
            !base.changes_view(&snapshot, Some("prod")),
            "prod's override hides it"
        );
        let mut prod = rollout(vec![100], None);
        prod.path = "/env/prod/myapp/db/host".into();
        assert!(prod.changes_view(&snapshot, Some("prod")));
        assert!(!prod.changes_view(&snapshot, Some("dev")));
        assert!(
            !prod.changes_view(&snapshot, None),
            "a plain client never sees an override"
        );
        let mut same = rollout(vec![100], None);
        same.value = serde_json::json!("stable");
        assert!(
            !same.changes_view(&snapshot, None),
            "an unchanged value sends nothing"
        );
    }

    #[test]
    fn record_paths() {
        let path = record_path("roll_abc").unwrap();
        assert_eq!(path.as_str(), "/_setpoint/rollouts/roll_abc");
        assert!(is_record(&path));
        assert!(!is_record(&records_root()));
        assert!(record_path("abc").is_none());
        assert!(record_path("roll_a/b").is_none());
    }
}

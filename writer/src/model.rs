//! The versioned config model on top of a [`Store`].
//!
//! [`Configs`] turns REST-level intents (put, delete, batch, read, history, diff, prefix schemas,
//! retention) into store reads and guarded transactions. Invariants it keeps:
//! - one call to [`Configs::commit`] is one store transaction = one revision, all or nothing;
//! - versions per path go 1, 2, 3… with no gap and no reuse; a delete writes a tombstone version;
//! - every transaction compares the pointer's mod-revision it read, so concurrent writers (in
//!   this process or another) can never both win;
//! - the value is written once per change (see [`records`]).
//!
//! This module knows nothing of HTTP; it returns [`Error`]s with codes the API maps to statuses.

pub mod accounts;
pub mod approvals;
pub mod denials;
pub mod environments;
pub mod locks;
pub mod plan;
pub mod preview;
pub mod records;
pub mod retention;
pub mod rollouts;
pub mod rules;
pub mod schemas;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};
use time::OffsetDateTime;

use crate::audit;
pub use crate::audit::Actor;
use crate::error::{Error, ErrorCode};
use crate::store::{
    Compare, KeyValue, RangeRequest, Read, Revision, Store, Txn, TxnOp, prefix_end,
};
use approvals::{ChangeRequest, Policy};
use plan::Plan;
pub use preview::Preview;
use records::{Keys, Meta, Pointer};

/// Most changes in one commit. Each change writes two keys, the commit one audit record, and
/// etcd refuses transactions of more than 128 operations by default (`--max-txn-ops`).
pub const MAX_BATCH_CHANGES: usize = 63;

/// How many times a commit re-reads and retries after losing a compare to another writer.
const COMMIT_ATTEMPTS: usize = 16;

/// Where "now" comes from; injected so retention and timestamps are testable.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The clock a writer's model runs on, as a configuration value: the system clock unless a
/// test injects one (e.g. to age versions past a retention policy's `days`).
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl Default for SharedClock {
    fn default() -> SharedClock {
        SharedClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedClock")
    }
}

/// `If-Match` on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `*`: the path must currently hold a value.
    Exists,
    /// The current version must be exactly this (0 = the path holds no value).
    Version(Version),
}

/// A field that a write may set, clear (JSON `null`) or leave as it was (absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Update<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Update<T> {
    pub fn from_option(value: Option<Option<T>>) -> Update<T> {
        match value {
            None => Update::Keep,
            Some(None) => Update::Clear,
            Some(Some(v)) => Update::Set(v),
        }
    }

    fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Update::Keep => current,
            Update::Clear => None,
            Update::Set(v) => Some(v),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PutChange {
    pub path: ConfigPath,
    pub value: ParsedValue,
    pub description: Update<String>,
    pub owner: Update<String>,
    pub schema: Update<Value>,
    pub validators: Update<Value>,
    pub if_match: Option<Precondition>,
}

#[derive(Debug, Clone)]
pub enum Change {
    Put(Box<PutChange>),
    Delete {
        path: ConfigPath,
        if_match: Option<Precondition>,
    },
}

impl Change {
    pub fn path(&self) -> &ConfigPath {
        match self {
            Change::Put(put) => &put.path,
            Change::Delete { path, .. } => path,
        }
    }
}

/// A change in its serializable form: one change of `POST /api/batch`, and how a change request
/// keeps its changes. Unknown fields are refused (a typo is an error, not a silent no-op);
/// `null` clears `description`, `owner`, `schema` or `validators`, absence keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    /// `put` or `delete`.
    pub op: String,
    pub path: String,
    /// The value: any JSON; a string for `yaml` and `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<Value>,
    /// `json` (default), `yaml` or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Option<String>>,
    /// JSON Schema (2020-12) enforced on this and every later write until replaced.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Value>)]
    pub schema: Option<Option<Value>>,
    /// `[{"regex": "..."}, {"enum": [...]}]`.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<Object>>)]
    pub validators: Option<Option<Vec<Value>>>,
    /// Like `If-Match`: a version number, or `"*"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub if_match: Option<Value>,
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or set.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn update_of<T>(field: Option<Option<T>>) -> Update<T> {
    Update::from_option(field)
}

fn field_of<T: Clone>(update: &Update<T>) -> Option<Option<T>> {
    match update {
        Update::Keep => None,
        Update::Clear => Some(None),
        Update::Set(v) => Some(Some(v.clone())),
    }
}

impl Precondition {
    /// `3`, `"3"`, `W/"3"` or `*`.
    pub fn parse(text: &str) -> Result<Precondition, Error> {
        let trimmed = text.trim();
        if trimmed == "*" {
            return Ok(Precondition::Exists);
        }
        let bare = trimmed
            .strip_prefix("W/")
            .unwrap_or(trimmed)
            .trim_matches('"');
        bare.parse::<Version>()
            .map(Precondition::Version)
            .map_err(|_| {
                Error::bad_request(format!("If-Match {trimmed:?} is not a version number or *"))
            })
    }
}

impl Change {
    /// A put of `value` (in `format`, JSON when not given) at `path`.
    pub fn put(
        path: ConfigPath,
        value: Value,
        format: Option<&str>,
        if_match: Option<Precondition>,
    ) -> Result<Change, Error> {
        let format = format.map(Format::parse).transpose()?;
        Ok(Change::Put(Box::new(PutChange {
            path,
            value: ParsedValue::from_request(value, format)?,
            description: Update::Keep,
            owner: Update::Keep,
            schema: Update::Keep,
            validators: Update::Keep,
            if_match,
        })))
    }

    /// Parses one change; every field is checked (path, format, value, `if_match`).
    pub fn from_spec(spec: ChangeSpec) -> Result<Change, Error> {
        let path = ConfigPath::parse(&spec.path)?;
        let if_match = match &spec.if_match {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(Precondition::parse(&n.to_string())?),
            Some(Value::String(s)) => Some(Precondition::parse(s)?),
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "if_match must be a version or \"*\", got {other}"
                )));
            }
        };
        match spec.op.as_str() {
            "put" => {
                let value = spec
                    .value
                    .ok_or_else(|| Error::bad_request("a put change needs a value"))?;
                let Change::Put(mut put) =
                    Change::put(path, value, spec.format.as_deref(), if_match)?
                else {
                    return Err(Error::internal("a put parsed as something else"));
                };
                put.description = update_of(spec.description);
                put.owner = update_of(spec.owner);
                put.schema = update_of(spec.schema);
                put.validators = update_of(spec.validators.map(|v| v.map(Value::Array)));
                Ok(Change::Put(put))
            }
            "delete" => {
                if spec.value.is_some() || spec.schema.is_some() || spec.validators.is_some() {
                    return Err(Error::bad_request(
                        "a delete change takes only path and if_match",
                    ));
                }
                Ok(Change::Delete { path, if_match })
            }
            other => Err(Error::bad_request(format!(
                "unknown op {other:?}: expected put or delete"
            ))),
        }
    }

    /// The serializable form; [`Change::from_spec`] gives back an equal change.
    pub fn to_spec(&self) -> ChangeSpec {
        let if_match = |p: &Option<Precondition>| {
            p.map(|p| match p {
                Precondition::Exists => json!("*"),
                Precondition::Version(v) => json!(v),
            })
        };
        match self {
            Change::Delete { path, if_match: p } => ChangeSpec {
                op: "delete".to_owned(),
                path: path.to_string(),
                value: None,
                format: None,
                description: None,
                owner: None,
                schema: None,
                validators: None,
                if_match: if_match(p),
            },
            Change::Put(put) => ChangeSpec {
                op: "put".to_owned(),
                path: put.path.to_string(),
                value: Some(put.value.to_api_value()),
                format: Some(put.value.format().as_str().to_owned()),
                description: field_of(&put.description),
                owner: field_of(&put.owner),
                schema: field_of(&put.schema),
                validators: field_of(&put.validators).map(|v| {
                    v.map(|v| match v {
                        Value::Array(items) => items,
                        other => vec![other],
                    })
                }),
                if_match: if_match(&put.if_match),
            },
        }
    }

    /// The precondition slot of this change.
    pub fn if_match_mut(&mut self) -> &mut Option<Precondition> {
        match self {
            Change::Put(put) => &mut put.if_match,
            Change::Delete { if_match, .. } => if_match,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ChangeResult {
    pub path: String,
    pub version: Version,
    /// True when this change made the path hold a value again (first write or re-create).
    pub created: bool,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub revision: Revision,
    pub results: Vec<ChangeResult>,
}

/// One version of one path as read back.
#[derive(Debug, Clone)]
pub struct EntryView {
    pub path: ConfigPath,
    /// `None` for a tombstone.
    pub value: Option<ParsedValue>,
    pub format: Format,
    pub version: Version,
    pub revision: Revision,
    pub meta: Meta,
    /// Schema and validators in force (only on reads of the current version).
    pub schema: Option<Value>,
    pub validators: Option<Value>,
}

impl EntryView {
    pub fn deleted(&self) -> bool {
        self.value.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct ListedEntry {
    pub path: ConfigPath,
    pub version: Version,
    pub format: Format,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct Listing {
    pub revision: Revision,
    /// Immediate child names below the prefix that hold a value or have descendants that do.
    pub children: Vec<String>,
    /// Every live path below the prefix (filled for recursive listings).
    pub entries: Vec<ListedEntry>,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub versions: Vec<EntryView>,
    /// The version to pass as `before` for the next page, when there is one.
    pub next_before: Option<Version>,
}

pub struct Configs {
    store: Arc<dyn Store>,
    keys: Keys,
    locks: locks::PathLocks,
    clock: Arc<dyn Clock>,
    /// The newest revision this writer committed, so reads from the in-memory read model can
    /// wait until it shows the caller's own writes.
    last_commit: std::sync::atomic::AtomicI64,
    audit: Arc<audit::AuditLog>,
    rules: rules::RuleCache,
    denials: denials::DenialLimiter,
}

/// What [`Configs::submit`] did.
#[derive(Debug, Clone)]
pub enum Submitted {
    Committed(Committed),
    /// An approval policy governs a path: nothing was committed; this request now waits.
    Pending(ChangeRequest),
}

/// How a commit is made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Commit {
    pub origin: Origin,
    /// Whether approval policies apply.
    pub gated: bool,
    /// `updated_by` of what it writes, when not the actor (an approved change: its author).
    pub author: Option<String>,
    /// The change request this commit carries out; its entry may be written alongside.
    pub request: Option<String>,
    /// The rollout this commit completes; its record is written alongside.
    pub rollout: Option<String>,
    /// `?force=true`: a config write may touch a path under an active rollout.
    pub force: bool,
    /// The audit action, when not the one the origin and path give (a rollout's transitions).
    pub action: Option<&'static str>,
    /// The audit record's detail, when neither a change request nor a rollout gives one.
    pub detail: Option<Value>,
}

impl Commit {
    /// Whether this commit must stay off paths under an active rollout: a config write that is
    /// neither forced nor the rollout's own completion.
    fn respects_rollouts(&self) -> bool {
        self.origin == Origin::Configs && !self.force && self.rollout.is_none()
    }
}

/// Compares and writes a caller adds to a planned transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub compares: Vec<Compare>,
    pub writes: Vec<TxnOp>,
}

pub(crate) enum Outcome {
    Committed(Committed),
    NeedsApproval(Policy),
}

pub(crate) enum Attempt {
    Done(Outcome),
    /// A compare failed: another writer got there first. Read again.
    Lost,
}

fn too_much_contention() -> Error {
    Error::new(
        ErrorCode::Conflict,
        "too many concurrent writers on these paths; retry the request",
    )
}

/// The checks on a batch before anything is read: size, one change per path, and the special
/// paths only for their own origin — environment definitions (`/env/{name}`) for the
/// environments API, the system namespace (`/_setpoint/…`) for the system's own records.
fn check_batch(commit: &Commit, changes: &[Change]) -> Result<(), Error> {
    if changes.is_empty() {
        return Err(Error::bad_request("a batch needs at least one change"));
    }
    if changes.len() > MAX_BATCH_CHANGES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!(
                "a batch holds at most {MAX_BATCH_CHANGES} changes; this one has {}",
                changes.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        let path = change.path();
        let definition = setpoint_core::env::definition_name(path).is_some();
        let system = setpoint_core::auth::is_system(path);
        let allowed_special = (definition && commit.origin == Origin::Environments)
            || (system && commit.origin == Origin::System)
            || (commit.request.as_deref())
                .is_some_and(|id| approvals::request_path(id).is_ok_and(|p| &p == path))
            || (commit.rollout.as_deref())
                .is_some_and(|id| setpoint_core::rollout::record_path(id).as_ref() == Some(path));
        if !allowed_special {
            path.check_writable()
                .map_err(|e| Error::from(e).at_index(index))?;
        }
        if !seen.insert(path.clone()) {
            return Err(
                Error::bad_request(format!("path {path} appears twice in one batch"))
                    .at_index(index),
            );
        }
    }
    Ok(())
}

/// Who asks for a commit: only the environments API may write definitions (`/env/{name}`),
/// only the accounts API the system namespace (`/_setpoint/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Origin {
    #[default]
    Configs,
    Environments,
    System,
}

impl Origin {
    /// The audit action of a put or delete of `path` from this origin.
    fn action(self, path: &str, delete: bool) -> &'static str {
        let system = |kind: &str| {
            path.starts_with(&format!("/{}/{kind}/", setpoint_core::auth::SYSTEM_SEGMENT))
                || path == format!("/{}/{kind}", setpoint_core::auth::SYSTEM_SEGMENT)
        };
        match (self, delete) {
            (Origin::Configs, false) => "config.put",
            (Origin::Configs, true) => "config.delete",
            (Origin::Environments, false) => "environment.put",
            (Origin::Environments, true) => "environment.delete",
            (Origin::System, false) if system("policies") => "policy.put",
            (Origin::System, true) if system("policies") => "policy.delete",
            (Origin::System, _) if system("changes") => "change.put",
            (Origin::System, _) if system(setpoint_core::rollout::ROLLOUTS_SEGMENT) => {
                "rollout.put"
            }
            (Origin::System, false) => "account.put",
            (Origin::System, true) => "account.delete",
        }
    }
}

impl Configs {
    pub fn new(store: Arc<dyn Store>, prefix: &str, clock: Arc<dyn Clock>) -> Configs {
        Configs {
            store,
            keys: Keys::new(prefix),
            locks: Default::default(),
            clock,
            last_commit: std::sync::atomic::AtomicI64::new(0),
            audit: Arc::new(audit::AuditLog::new(prefix)),
            rules: rules::RuleCache::default(),
            denials: denials::DenialLimiter::default(),
        }
    }

    /// The newest revision this writer committed (0 before its first commit).
    pub fn last_commit(&self) -> Revision {
        self.last_commit.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn audit(&self) -> &Arc<audit::AuditLog> {
        &self.audit
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Each store endpoint and whether it answers (etcd members), for metrics.
    pub fn store_endpoints(&self) -> Vec<(String, bool)> {
        self.store.endpoints()
    }

    /// The store's current revision (a cheap probe: readiness, `/api/edges`).
    pub async fn store_revision(&self) -> Result<Revision, Error> {
        Ok(self.store.current_revision().await?)
    }

    /// Audit records matching `filter`, oldest first, a page at a time.
    pub async fn audit_query(&self, filter: &audit::Filter) -> Result<audit::Page, Error> {
        self.audit.query(self.store.as_ref(), filter).await
    }

    /// Checks the audit hash chain.
    pub async fn audit_verify(&self) -> Result<setpoint_core::audit::Report, Error> {
        self.audit.verify(self.store.as_ref()).await
    }

    /// Seconds since the epoch, from the injected clock.
    pub fn unix_now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn now(&self) -> (OffsetDateTime, String) {
        let now = self.clock.now();
        let text = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        (now, text)
    }

    /// Commits `changes` as one transaction (one revision), or — when an approval policy governs
    /// one of the paths — stores a change request instead and commits nothing.
    pub async fn submit(&self, changes: Vec<Change>, actor: &Actor) -> Result<Submitted, Error> {
        self.submit_forced(changes, actor, false).await
    }

    /// [`Configs::submit`]; with `force`, also on paths under an active rollout (409 otherwise).
    pub async fn submit_forced(
        &self,
        changes: Vec<Change>,
        actor: &Actor,
        force: bool,
    ) -> Result<Submitted, Error> {
        let gated = Commit {
            origin: Origin::Configs,
            gated: true,
            force,
            ..Commit::default()
        };
        match self.commit_as(&gated, &changes, actor).await? {
            Outcome::Committed(committed) => Ok(Submitted::Committed(committed)),
            Outcome::NeedsApproval(policy) => Ok(Submitted::Pending(
                self.create_change_request(actor, &policy, &changes).await?,
            )),
        }
    }

    /// Commits without the approval gate: system records, environment definitions, approved
    /// changes.
    pub(crate) async fn commit_from(
        &self,
        origin: Origin,
        changes: Vec<Change>,
        actor: &Actor,
    ) -> Result<Committed, Error> {
        let commit = Commit {
            origin,
            ..Commit::default()
        };
        match self.commit_as(&commit, &changes, actor).await? {
            Outcome::Committed(committed) => Ok(committed),
            Outcome::NeedsApproval(_) => Err(Error::internal("an ungated commit met a policy")),
        }
    }

    /// Read, plan, commit; again from the read when a compare lost to another writer.
    async fn commit_as(
        &self,
        commit: &Commit,
        changes: &[Change],
        actor: &Actor,
    ) -> Result<Outcome, Error> {
        check_batch(commit, changes)?;
        let own_rules = plan::compile_own_rules(changes)?;
        // Only a fast path: writers in this process queue per path instead of losing compares
        // to each other. Correctness rests on the compares alone.
        let _guards = self.locks.lock(changes.iter().map(Change::path)).await;
        for _ in 0..COMMIT_ATTEMPTS {
            match self
                .attempt(commit, changes, &own_rules, actor, &Extra::default())
                .await?
            {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Lost => {
                    tracing::debug!("commit lost a compare to a concurrent writer; retrying");
                }
            }
        }
        Err(too_much_contention())
    }

    /// One read → plan → transaction. `extra` adds compares and writes of the caller's own
    /// (an environment definition's guard, a change request's status).
    pub(crate) async fn attempt(
        &self,
        commit: &Commit,
        changes: &[Change],
        own_rules: &[Option<plan::OwnRules>],
        actor: &Actor,
        extra: &Extra,
    ) -> Result<Attempt, Error> {
        let (observed, rules) = self
            .observe(changes, commit.gated, commit.respects_rollouts())
            .await?;
        let (_, now) = self.now();
        let proposal = plan::Proposal {
            changes,
            own_rules,
            author: commit.author.as_deref().or(actor.name.as_deref()),
            now: &now,
            gated: commit.gated,
        };
        let (mut txn, results) = match plan::plan(&self.keys, &proposal, &observed, &rules)? {
            Plan::NeedsApproval(policy) => {
                return Ok(Attempt::Done(Outcome::NeedsApproval(policy)));
            }
            Plan::Commit { txn, results } => (txn, results),
        };
        txn.compares.extend(extra.compares.iter().cloned());
        txn.writes.extend(extra.writes.iter().cloned());
        txn.writes.push(self.audit_write(commit, &results, actor));
        let outcome = self.store.txn(txn).await?;
        if !outcome.succeeded {
            return Ok(Attempt::Lost);
        }
        self.last_commit
            .fetch_max(outcome.revision, std::sync::atomic::Ordering::AcqRel);
        Ok(Attempt::Done(Outcome::Committed(Committed {
            revision: outcome.revision,
            results,
        })))
    }

    /// Everything a plan decides on, in one read at one revision: each touched pointer, the
    /// definition of each environment an override lives in, and (when they matter) the prefix
    /// schemas and the approval policies' pointers. Compiled schemas and parsed policies come
    /// from the cache while their records are unchanged.
    async fn observe(
        &self,
        changes: &[Change],
        gated: bool,
        rollouts: bool,
    ) -> Result<(plan::Observed, plan::Rules), Error> {
        let environments: std::collections::BTreeSet<&str> = changes
            .iter()
            .filter(|c| matches!(c, Change::Put(_)))
            .filter_map(|c| setpoint_core::env::split_override(c.path()).map(|(e, _)| e))
            .collect();
        let validates = changes.iter().any(|c| matches!(c, Change::Put(_)));
        let mut reads: Vec<Read> = changes
            .iter()
            .map(|c| Read::Get(self.keys.pointer(c.path())))
            .collect();
        for environment in &environments {
            let path = setpoint_core::env::definition_path(environment)?;
            reads.push(Read::Get(self.keys.pointer(&path)));
        }
        if validates {
            reads.push(Read::Range(RangeRequest::prefix(&self.keys.schemas())));
        }
        if gated {
            reads.push(Read::Range(RangeRequest::prefix(&plan::policies_range(
                &self.keys,
            ))));
        }
        if rollouts {
            // One range, not a get per path: a batch's reads (like its compares) must stay
            // within etcd's 128 operations per transaction.
            reads.push(Read::Range(RangeRequest::prefix(
                &self.keys.rollout_guards(),
            )));
        }
        let set = self.store.read(reads).await?;
        let mut results = set.results.into_iter();
        let mut next = || results.next().unwrap_or_default();
        let mut observed = plan::Observed {
            revision: set.revision,
            ..plan::Observed::default()
        };
        for _ in changes {
            observed.pointers.push(match next().into_iter().next() {
                Some(kv) => (
                    kv.mod_revision,
                    Some(records::decode_json::<Pointer>(&kv.key, &kv.value)?),
                ),
                None => (0, None),
            });
        }
        for environment in environments {
            let definition = match next().into_iter().next() {
                Some(kv) => {
                    let pointer: Pointer = records::decode_json(&kv.key, &kv.value)?;
                    (kv.mod_revision, !pointer.deleted)
                }
                None => (0, false),
            };
            observed
                .definitions
                .insert(environment.to_owned(), definition);
        }
        let mut rules = plan::Rules::default();
        if validates {
            rules.schemas = self.rules.schemas(&self.keys, next())?;
        }
        if gated {
            rules.policies = self.policies_from(next()).await?;
        }
        if rollouts {
            let guards: std::collections::HashMap<String, String> = next()
                .into_iter()
                .map(|kv| (kv.key, String::from_utf8_lossy(&kv.value).into_owned()))
                .collect();
            observed.rollouts = changes
                .iter()
                .map(|c| guards.get(&self.keys.rollout_guard(c.path())).cloned())
                .collect();
        }
        Ok((observed, rules))
    }

    /// Writes one audit record on its own (a denied or refused attempt). Denials go through
    /// [`denials::DenialLimiter`]: repeats within a minute are summarized, and their records
    /// are bounded per minute.
    pub async fn record_alone(&self, actor: &Actor, event: &audit::Event<'_>) -> Result<(), Error> {
        let now = self.clock.now();
        let mut writes = Vec::new();
        let mut own = true;
        if event.outcome == audit::Outcome::Denied {
            let verdict = self.denials.admit(
                denials::Denial::of(actor, event.action, event.path),
                now.unix_timestamp(),
            );
            own = verdict.record;
            for repeats in verdict.summaries {
                let summary_actor = Actor {
                    name: repeats.denial.actor.clone(),
                    request_id: "denials".to_owned(),
                    source: repeats.denial.source.clone(),
                };
                let detail = json!({
                    "repeated": repeats.count,
                    "first": repeats.first,
                    "last": repeats.last,
                })
                .to_string();
                let summary = audit::Event {
                    action: &repeats.denial.action,
                    path: repeats.denial.path.as_deref(),
                    version_before: None,
                    version_after: None,
                    outcome: audit::Outcome::Denied,
                    detail: Some(detail),
                };
                writes.push(self.audit.write(&summary_actor, &summary, now));
            }
        }
        if own {
            writes.push(self.audit.write(actor, event, now));
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.store
            .txn(Txn {
                compares: vec![],
                writes,
            })
            .await?;
        Ok(())
    }

    /// One audit record for the whole commit: a single change names its path and versions; a
    /// batch lists every change in `detail`. An approved change names its request; the request's
    /// own record (its status) is part of the same commit and not listed.
    fn audit_write(&self, commit: &Commit, results: &[ChangeResult], actor: &Actor) -> TxnOp {
        let before = |r: &ChangeResult| (r.version > 1).then(|| r.version - 1);
        let rollout_record = commit
            .rollout
            .as_deref()
            .and_then(setpoint_core::rollout::record_path);
        let results: Vec<&ChangeResult> = results
            .iter()
            .filter(|r| commit.request.is_none() || !approvals::is_request_path(&r.path))
            .filter(|r| rollout_record.as_ref().is_none_or(|p| p.as_str() != r.path))
            .collect();
        let request = commit.request.as_deref();
        let detail = match (request, commit.rollout.as_deref()) {
            (Some(id), _) => Some(json!({ "change_request": id }).to_string()),
            (None, Some(id)) => Some(json!({ "rollout": id }).to_string()),
            (None, None) => commit.detail.as_ref().map(Value::to_string),
        };
        let event = match results.as_slice() {
            [single] => audit::Event {
                action: commit
                    .action
                    .unwrap_or_else(|| commit.origin.action(&single.path, single.deleted)),
                path: Some(single.path.as_str()),
                version_before: before(single),
                version_after: Some(single.version),
                outcome: audit::Outcome::Ok,
                detail,
            },
            many => {
                let changes = json!(
                    many.iter()
                        .map(|r| json!({
                            "op": if r.deleted { "delete" } else { "put" },
                            "path": r.path,
                            "version_before": before(r),
                            "version_after": r.version,
                        }))
                        .collect::<Vec<_>>()
                );
                let detail = match request {
                    Some(id) => json!({ "change_request": id, "changes": changes }),
                    None => changes,
                };
                audit::Event {
                    action: "config.batch",
                    path: None,
                    version_before: None,
                    version_after: None,
                    outcome: audit::Outcome::Ok,
                    detail: Some(detail.to_string()),
                }
            }
        };
        self.audit.write(actor, &event, self.clock.now())
    }

    async fn read_pointer(&self, key: &str) -> Result<Option<(KeyValue, Pointer)>, Error> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(kv) => {
                let pointer = records::decode_json(key, &kv.value)?;
                Ok(Some((kv, pointer)))
            }
        }
    }

    /// The current entry of `path`, or `None` when it holds no value (never written or deleted).
    pub async fn current(&self, path: &ConfigPath) -> Result<Option<EntryView>, Error> {
        let Some((_, pointer)) = self.read_pointer(&self.keys.pointer(path)).await? else {
            return Ok(None);
        };
        if pointer.deleted {
            return Ok(None);
        }
        let mut entry = self.version(path, pointer.version).await?.ok_or_else(|| {
            Error::internal(format!(
                "{path}: current version {} has no record",
                pointer.version
            ))
        })?;
        entry.schema = pointer.schema;
        entry.validators = pointer.validators;
        Ok(Some(entry))
    }

    /// One stored version (a tombstone comes back with `value: None`); `None` when it never
    /// existed or retention removed it.
    pub async fn version(
        &self,
        path: &ConfigPath,
        version: Version,
    ) -> Result<Option<EntryView>, Error> {
        let key = self.keys.version(path, version);
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(None);
        };
        Ok(Some(self.decode_entry(path, &kv)?))
    }

    fn decode_entry(&self, path: &ConfigPath, kv: &KeyValue) -> Result<EntryView, Error> {
        let (header, stored) = records::decode_version(&kv.key, &kv.value)?;
        let value = if header.deleted {
            None
        } else {
            Some(ParsedValue::from_stored(header.format, &stored)?)
        };
        Ok(EntryView {
            path: path.clone(),
            value,
            format: header.format,
            version: header.version,
            revision: kv.mod_revision,
            meta: header.meta,
            schema: None,
            validators: None,
        })
    }

    /// Children (and, when `recursive`, every live path) below `prefix`.
    pub async fn list(&self, prefix: &ConfigPath, recursive: bool) -> Result<Listing, Error> {
        let below = self.keys.pointers_below(prefix);
        let range = self.store.range(RangeRequest::prefix(&below)).await?;
        let depth = prefix.segments().count();
        // Key order is not segment order (`/a/b-c` sorts between `/a/b` and `/a/b/x`): collect
        // child names in a set, not by comparing neighbours.
        let mut children = std::collections::BTreeSet::new();
        let mut entries = Vec::new();
        for kv in &range.kvs {
            let pointer: Pointer = records::decode_json(&kv.key, &kv.value)?;
            if pointer.deleted {
                continue;
            }
            let Some(path) = self.keys.path_of_pointer(&kv.key) else {
                continue;
            };
            if let Some(child) = path.segments().nth(depth) {
                children.insert(child.to_owned());
            }
            if recursive {
                entries.push(ListedEntry {
                    path,
                    version: pointer.version,
                    format: pointer.format,
                    updated_at: pointer.meta.updated_at,
                });
            }
        }
        Ok(Listing {
            revision: range.revision,
            children: children.into_iter().collect(),
            entries,
        })
    }

    /// Versions of `path`, newest first, `limit` at a time, strictly older than `before`.
    pub async fn history(
        &self,
        path: &ConfigPath,
        limit: usize,
        before: Option<Version>,
    ) -> Result<HistoryPage, Error> {
        let start = self.keys.versions_of(path);
        let end = match before {
            Some(version) => self.keys.version(path, version),
            None => prefix_end(&start),
        };
        let range = self
            .store
            .range(RangeRequest {
                start,
                end,
                limit,
                descending: true,
            })
            .await?;
        let versions = range
            .kvs
            .iter()
            .map(|kv| self.decode_entry(path, kv))
            .collect::<Result<Vec<_>, _>>()?;
        let next_before = if range.more {
            versions.last().map(|e| e.version)
        } else {
            None
        };
        Ok(HistoryPage {
            versions,
            next_before,
        })
    }

    /// True when `path` has ever been written (it has a pointer, live or tombstone).
    pub async fn exists_ever(&self, path: &ConfigPath) -> Result<bool, Error> {
        Ok(self.store.get(&self.keys.pointer(path)).await?.is_some())
    }

    /// The current version number of `path`, tombstones included (0 when never written).
    pub async fn current_version(&self, path: &ConfigPath) -> Result<Version, Error> {
        Ok(self
            .read_pointer(&self.keys.pointer(path))
            .await?
            .map_or(0, |(_, p)| p.version))
    }
}

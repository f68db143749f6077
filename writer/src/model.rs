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
pub mod environments;
pub mod locks;
pub mod records;
pub mod retention;
pub mod schemas;

use std::sync::Arc;

use serde_json::{Value, json};
use setpoint_core::validate::{self, Schema, Validators, Violation};
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};
use time::OffsetDateTime;

use crate::audit;
use crate::error::{Error, ErrorCode};
use crate::store::{
    Compare, CompareOp, KeyValue, RangeRequest, Revision, Store, Txn, TxnOp, prefix_end,
};
use records::{Keys, Meta, Pointer, VersionHeader};

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
}

/// Who asked for a change: `updated_by` of what it writes, and the audit record's actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The account id (or, for anonymous loopback callers in `setpoint dev`, the
    /// `X-Setpoint-Actor` name if given).
    pub name: Option<String>,
    /// `X-Request-Id` if the caller sent one, else generated.
    pub request_id: String,
    /// The caller's address.
    pub source: Option<String>,
}

impl Actor {
    /// The writer itself (bootstrap, default environments).
    pub fn system() -> Actor {
        Actor {
            name: Some("setpoint".to_owned()),
            request_id: "startup".to_owned(),
            source: None,
        }
    }
}

/// Who asks for a commit: only the environments API may write definitions (`/env/{name}`),
/// only the accounts API the system namespace (`/_setpoint/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
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

    fn now(&self) -> (OffsetDateTime, String) {
        let now = self.clock.now();
        let text = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        (now, text)
    }

    /// Commits `changes` as one transaction (one revision), or nothing.
    pub async fn commit(&self, changes: Vec<Change>, actor: &Actor) -> Result<Committed, Error> {
        self.commit_from(Origin::Configs, changes, actor).await
    }

    pub(crate) async fn commit_from(
        &self,
        origin: Origin,
        changes: Vec<Change>,
        actor: &Actor,
    ) -> Result<Committed, Error> {
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
            let definition = setpoint_core::env::definition_name(change.path()).is_some();
            let system = setpoint_core::auth::is_system(change.path());
            let allowed_special = (definition && origin == Origin::Environments)
                || (system && origin == Origin::System);
            if !allowed_special {
                change
                    .path()
                    .check_writable()
                    .map_err(|e| Error::from(e).at_index(index))?;
            }
            if !seen.insert(change.path().clone()) {
                return Err(Error::bad_request(format!(
                    "path {} appears twice in one batch",
                    change.path()
                ))
                .at_index(index));
            }
        }
        let own_rules = compile_own_rules(&changes)?;
        let _guards = self.locks.lock(changes.iter().map(Change::path)).await;
        let prefix_schemas = self.load_prefix_schemas().await?;

        for _ in 0..COMMIT_ATTEMPTS {
            let (_, now) = self.now();
            let mut txn = Txn::default();
            let mut results = Vec::with_capacity(changes.len());
            let mut violations = Vec::new();
            for (index, change) in changes.iter().enumerate() {
                let path = change.path();
                let pointer_key = self.keys.pointer(path);
                let current = self.read_pointer(&pointer_key).await?;
                let observed = current.as_ref().map_or(0, |(kv, _)| kv.mod_revision);
                let current = current.map(|(_, p)| p);
                check_precondition(path, current.as_ref(), change_precondition(change))
                    .map_err(|e| e.at_index(index))?;
                if let (Change::Put(_), Some((environment, _))) =
                    (change, setpoint_core::env::split_override(path))
                {
                    // The environment must exist, and still exist when this commits.
                    let definition = self.definition_pointer(environment).await?;
                    let Some((kv, _)) = definition.filter(|(_, p)| !p.deleted) else {
                        return Err(Error::new(
                            ErrorCode::ValidationFailed,
                            format!(
                                "environment {environment} does not exist; create it first with PUT /api/environments/{environment}"
                            ),
                        )
                        .at_index(index));
                    };
                    txn.compares.push(Compare::mod_revision(
                        kv.key,
                        CompareOp::Equal,
                        kv.mod_revision,
                    ));
                }
                let next_version = current.as_ref().map_or(1, |p| p.version + 1);
                let meta_base = current.as_ref().map(|p| p.meta.clone()).unwrap_or_default();
                let (pointer, header, stored, result) = match change {
                    Change::Delete { path, .. } => {
                        let Some(current) = current.filter(|p| !p.deleted) else {
                            return Err(
                                Error::not_found(format!("{path} holds no value")).at_index(index)
                            );
                        };
                        let meta = Meta {
                            updated_at: now.clone(),
                            updated_by: actor.name.clone(),
                            ..meta_base
                        };
                        let pointer = Pointer {
                            version: next_version,
                            deleted: true,
                            meta,
                            ..current
                        };
                        let header = VersionHeader {
                            version: next_version,
                            deleted: true,
                            format: pointer.format,
                            meta: pointer.meta.clone(),
                        };
                        let result = ChangeResult {
                            path: path.to_string(),
                            version: next_version,
                            created: false,
                            deleted: true,
                        };
                        (pointer, header, String::new(), result)
                    }
                    Change::Put(put) => {
                        let (schema, validators) =
                            own_rules_for(&own_rules, index, current.as_ref())?;
                        let applicable: Vec<&Schema> = prefix_schemas
                            .iter()
                            .filter(|(prefix, _)| schemas::applies(prefix, path))
                            .map(|(_, schema)| schema)
                            .chain(schema.as_deref())
                            .collect();
                        let found =
                            validate::check(put.value.structured(), &applicable, &[&validators]);
                        violations.extend(found.into_iter().map(|v| (path.clone(), v)));
                        let created = current.as_ref().is_none_or(|p| p.deleted);
                        let meta = Meta {
                            description: put.description.clone().apply(meta_base.description),
                            owner: put.owner.clone().apply(meta_base.owner),
                            updated_by: actor.name.clone(),
                            updated_at: now.clone(),
                        };
                        let pointer = Pointer {
                            version: next_version,
                            deleted: false,
                            format: put.value.format(),
                            meta,
                            schema: schema.map(|s| s.source().clone()),
                            validators: (!validators.is_empty())
                                .then(|| validators.source().clone()),
                        };
                        let header = VersionHeader {
                            version: next_version,
                            deleted: false,
                            format: pointer.format,
                            meta: pointer.meta.clone(),
                        };
                        let result = ChangeResult {
                            path: path.to_string(),
                            version: next_version,
                            created,
                            deleted: false,
                        };
                        (pointer, header, put.value.stored().to_owned(), result)
                    }
                };
                txn.compares.push(Compare::mod_revision(
                    pointer_key.clone(),
                    CompareOp::Equal,
                    observed,
                ));
                txn.writes.push(TxnOp::Put {
                    key: pointer_key,
                    value: records::encode_json(&pointer),
                });
                txn.writes.push(TxnOp::Put {
                    key: self.keys.version(path, next_version),
                    value: records::encode_version(&header, &stored),
                });
                results.push(result);
            }
            if !violations.is_empty() {
                return Err(violation_error(violations));
            }
            txn.writes
                .push(self.audit_write(origin, &results, actor, &now));
            let outcome = self.store.txn(txn).await?;
            if outcome.succeeded {
                self.last_commit
                    .fetch_max(outcome.revision, std::sync::atomic::Ordering::AcqRel);
                return Ok(Committed {
                    revision: outcome.revision,
                    results,
                });
            }
            tracing::debug!("commit lost a compare to a concurrent writer; retrying");
        }
        Err(Error::new(
            ErrorCode::Conflict,
            "too many concurrent writers on these paths; retry the request",
        ))
    }

    /// Writes one audit record on its own (a denied or refused attempt).
    pub async fn record_alone(&self, actor: &Actor, event: &audit::Event<'_>) -> Result<(), Error> {
        let (_, now) = self.now();
        let txn = Txn {
            compares: vec![],
            writes: vec![self.audit.write(actor, event, &now)],
        };
        self.store.txn(txn).await?;
        Ok(())
    }

    /// One audit record for the whole commit: a single change names its path and versions; a
    /// batch lists every change in `detail`.
    fn audit_write(
        &self,
        origin: Origin,
        results: &[ChangeResult],
        actor: &Actor,
        now: &str,
    ) -> crate::store::TxnOp {
        let before = |r: &ChangeResult| (r.version > 1).then(|| r.version - 1);
        let event = match results {
            [single] => audit::Event {
                action: origin.action(&single.path, single.deleted),
                path: Some(single.path.as_str()),
                version_before: before(single),
                version_after: Some(single.version),
                outcome: audit::Outcome::Ok,
                detail: None,
            },
            many => audit::Event {
                action: "config.batch",
                path: None,
                version_before: None,
                version_after: None,
                outcome: audit::Outcome::Ok,
                detail: Some(
                    json!(
                        many.iter()
                            .map(|r| json!({
                                "op": if r.deleted { "delete" } else { "put" },
                                "path": r.path,
                                "version_before": before(r),
                                "version_after": r.version,
                            }))
                            .collect::<Vec<_>>()
                    )
                    .to_string(),
                ),
            },
        };
        self.audit.write(actor, &event, now)
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

fn change_precondition(change: &Change) -> Option<Precondition> {
    match change {
        Change::Put(put) => put.if_match,
        Change::Delete { if_match, .. } => *if_match,
    }
}

fn check_precondition(
    path: &ConfigPath,
    current: Option<&Pointer>,
    want: Option<Precondition>,
) -> Result<(), Error> {
    let live_version = current.filter(|p| !p.deleted).map_or(0, |p| p.version);
    let ok = match want {
        None => true,
        Some(Precondition::Exists) => live_version != 0,
        Some(Precondition::Version(v)) => live_version == v,
    };
    if ok {
        return Ok(());
    }
    let expected = match want {
        Some(Precondition::Version(v)) => json!(v),
        _ => json!("*"),
    };
    Err(Error::new(
        ErrorCode::PreconditionFailed,
        format!("{path} is at version {live_version}, If-Match asked for {expected}"),
    )
    .with_details(
        json!({ "path": path.as_str(), "current_version": live_version, "if_match": expected }),
    ))
}

/// Schemas and validators given with each put, compiled before any lock is taken.
struct OwnRules {
    schema: Update<Arc<Schema>>,
    validators: Update<Validators>,
}

fn compile_own_rules(changes: &[Change]) -> Result<Vec<Option<OwnRules>>, Error> {
    changes
        .iter()
        .enumerate()
        .map(|(index, change)| {
            let Change::Put(put) = change else {
                return Ok(None);
            };
            let schema = match &put.schema {
                Update::Keep => Update::Keep,
                Update::Clear => Update::Clear,
                Update::Set(source) => Update::Set(Arc::new(
                    Schema::compile(source, "schema")
                        .map_err(|e| Error::from(e).at_index(index))?,
                )),
            };
            let validators = match &put.validators {
                Update::Keep => Update::Keep,
                Update::Clear => Update::Clear,
                Update::Set(source) => Update::Set(
                    Validators::parse(source).map_err(|e| Error::from(e).at_index(index))?,
                ),
            };
            Ok(Some(OwnRules { schema, validators }))
        })
        .collect()
}

/// The schema and validators in force for a put: the ones given, else the stored ones.
fn own_rules_for(
    rules: &[Option<OwnRules>],
    index: usize,
    current: Option<&Pointer>,
) -> Result<(Option<Arc<Schema>>, Validators), Error> {
    let stored_schema = || -> Result<Option<Arc<Schema>>, Error> {
        match current.and_then(|p| p.schema.as_ref()) {
            None => Ok(None),
            Some(source) => Schema::compile(source, "schema")
                .map(|s| Some(Arc::new(s)))
                .map_err(|e| Error::internal(format!("stored schema no longer compiles: {e}"))),
        }
    };
    let stored_validators = || -> Result<Validators, Error> {
        match current.and_then(|p| p.validators.as_ref()) {
            None => Ok(Validators::default()),
            Some(source) => Validators::parse(source)
                .map_err(|e| Error::internal(format!("stored validators no longer parse: {e}"))),
        }
    };
    let Some(Some(own)) = rules.get(index) else {
        return Ok((stored_schema()?, stored_validators()?));
    };
    let schema = match &own.schema {
        Update::Keep => stored_schema()?,
        Update::Clear => None,
        Update::Set(schema) => Some(schema.clone()),
    };
    let validators = match &own.validators {
        Update::Keep => stored_validators()?,
        Update::Clear => Validators::default(),
        Update::Set(v) => v.clone(),
    };
    Ok((schema, validators))
}

fn violation_error(violations: Vec<(ConfigPath, Violation)>) -> Error {
    let count = violations.len();
    let list: Vec<Value> = violations
        .into_iter()
        .map(|(path, v)| json!({ "path": path.as_str(), "pointer": v.pointer, "message": v.message, "source": v.source }))
        .collect();
    let first = list
        .first()
        .and_then(|v| v["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    Error::new(
        ErrorCode::ValidationFailed,
        format!("{count} violation(s); first: {first}"),
    )
    .with_details(json!({ "violations": list }))
}

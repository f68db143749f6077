//! Approval policies and change requests.
//!
//! A policy `{"approvals_required": N, "expires_in_secs"?}` on a prefix is the system entry
//! `/_setpoint/policies{prefix}`; for a path, the longest policy prefix decides. A write under a
//! policy with N > 0 becomes a change request, the system entry `/_setpoint/changes/{id}`,
//! holding the changes in their model form ([`ChangeSpec`], the shape of a `/api/batch` change),
//! the versions they were made against, the author and the approvals. [`Configs::submit`]
//! decides this from the policies it read, and its commit compares the policies' records, so a
//! policy created while writes flow is never bypassed. The last approval commits the changes
//! (validated again, refused with 409 when any path moved on) and the request's new status in
//! one transaction; every decision compares the request's entry, so two approvers racing (in one
//! process or two) decide once. Every step is a versioned, audited commit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use setpoint_core::auth;
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};

use super::{
    Actor, Attempt, Change, ChangeSpec, Commit, Configs, Extra, Origin, Outcome, Precondition,
    PutChange, Update,
};
use crate::error::{Error, ErrorCode};

/// Default lifetime of a pending change request.
pub const DEFAULT_EXPIRY_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub approvals_required: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Committed,
    Rejected,
    Cancelled,
    Expired,
    Failed,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeRequest {
    pub id: String,
    pub status: Status,
    pub author: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approvals_required: u32,
    pub approvals: Vec<String>,
    /// The changes, in `/api/batch` form.
    pub changes: Vec<ChangeSpec>,
    /// The version of each path when the request was made (0: no value).
    pub base_versions: BTreeMap<String, Version>,
    /// JSON Patch / unified diff of each change against the value it was made against.
    #[schema(value_type = Vec<Object>)]
    pub diffs: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChangeRequest {
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.base_versions.keys()
    }

    /// The request as of `now` (seconds): a pending one past its expiry is expired.
    pub fn as_of(mut self, now: i64) -> ChangeRequest {
        if self.status == Status::Pending && now >= self.expires_at {
            self.status = Status::Expired;
        }
        self
    }

    fn status_name(&self) -> String {
        serde_json::to_value(self.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A decision on a pending change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    Cancel,
}

/// Most changes in a request: the last approval writes them with the request's own entry and
/// one audit record, within etcd's 128 operations per transaction.
pub const MAX_REQUEST_CHANGES: usize = super::MAX_BATCH_CHANGES - 1;

fn system_path(text: String) -> Result<ConfigPath, Error> {
    ConfigPath::parse(&text).map_err(Error::from)
}

fn policy_path(prefix: &ConfigPath) -> Result<ConfigPath, Error> {
    let suffix = if prefix.is_root() {
        ""
    } else {
        prefix.as_str()
    };
    system_path(format!("/{}/policies{suffix}", auth::SYSTEM_SEGMENT))
}

/// `/_setpoint/policies`: every policy entry is at or below it.
pub fn policies_root() -> ConfigPath {
    ConfigPath::parse(&format!("/{}/policies", auth::SYSTEM_SEGMENT))
        .unwrap_or_else(|_| ConfigPath::root())
}

/// The prefix a policy entry governs: `/_setpoint/policies/a/b` → `/a/b`.
pub fn governed_prefix(policy_entry: &ConfigPath) -> Option<ConfigPath> {
    let root = policies_root();
    let rest = policy_entry.as_str().strip_prefix(root.as_str())?;
    if rest.is_empty() {
        return Some(ConfigPath::root());
    }
    rest.starts_with('/')
        .then(|| ConfigPath::parse(rest).ok())?
}

/// The entry of change request `id`.
pub fn request_path(id: &str) -> Result<ConfigPath, Error> {
    change_path(id)
}

/// True for a change request's entry path.
pub fn is_request_path(path: &str) -> bool {
    path.starts_with(&format!("/{}/changes/", auth::SYSTEM_SEGMENT))
}

fn change_path(id: &str) -> Result<ConfigPath, Error> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) || id.len() > 40 {
        return Err(Error::not_found(format!("no change request {id:?}")));
    }
    system_path(format!("/{}/changes/{id}", auth::SYSTEM_SEGMENT))
}

/// The policy deciding `path`: the one on its longest prefix.
pub fn policy_for(policies: &[(ConfigPath, Policy)], path: &ConfigPath) -> Option<Policy> {
    policies
        .iter()
        .filter(|(prefix, _)| path.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.segment_count())
        .map(|(_, policy)| policy.clone())
}

fn json_value(value: &impl Serialize) -> Result<ParsedValue, Error> {
    let json = serde_json::to_value(value).map_err(|e| Error::internal(e.to_string()))?;
    Ok(ParsedValue::from_request(json, Some(Format::Json))?)
}

fn put_system(path: ConfigPath, value: ParsedValue, if_match: Option<Precondition>) -> Change {
    Change::Put(Box::new(PutChange {
        path,
        value,
        description: Update::Keep,
        owner: Update::Keep,
        schema: Update::Keep,
        validators: Update::Keep,
        if_match,
    }))
}

impl Configs {
    pub async fn put_policy(
        &self,
        prefix: &ConfigPath,
        policy: &Policy,
        actor: &Actor,
    ) -> Result<i64, Error> {
        if policy.expires_in_secs.is_some_and(|s| s <= 0) {
            return Err(Error::bad_request("expires_in_secs must be positive"));
        }
        let change = put_system(policy_path(prefix)?, json_value(policy)?, None);
        Ok(self
            .commit_from(Origin::System, vec![change], actor)
            .await?
            .revision)
    }

    pub async fn delete_policy(&self, prefix: &ConfigPath, actor: &Actor) -> Result<i64, Error> {
        let change = Change::Delete {
            path: policy_path(prefix)?,
            if_match: None,
        };
        Ok(self
            .commit_from(Origin::System, vec![change], actor)
            .await?
            .revision)
    }

    /// Stores a new pending change request for `changes`, made against their current versions.
    pub(super) async fn create_change_request(
        &self,
        author: &Actor,
        policy: &Policy,
        changes: &[Change],
    ) -> Result<ChangeRequest, Error> {
        if changes.len() > MAX_REQUEST_CHANGES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!(
                    "a batch that needs approval holds at most {MAX_REQUEST_CHANGES} changes; this one has {}",
                    changes.len()
                ),
            ));
        }
        use rand::TryRng as _;
        let mut random = [0u8; 6];
        rand::rngs::SysRng
            .try_fill_bytes(&mut random)
            .map_err(|e| Error::internal(e.to_string()))?;
        let now = self.unix_now();
        let id = format!(
            "{now:x}{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut base_versions = BTreeMap::new();
        let mut diffs = Vec::new();
        for change in changes {
            let path = change.path();
            let current = self.current(path).await?;
            base_versions.insert(path.to_string(), current.as_ref().map_or(0, |e| e.version));
            let old = current.and_then(|e| e.value);
            let new = match change {
                Change::Put(put) => Some(&put.value),
                Change::Delete { .. } => None,
            };
            let diff = setpoint_core::diff::diff(old.as_ref(), new, "current", "proposed");
            let mut diff = serde_json::to_value(&diff).unwrap_or_default();
            diff["path"] = serde_json::json!(path.as_str());
            diffs.push(diff);
        }
        let request = ChangeRequest {
            id: id.clone(),
            status: Status::Pending,
            author: author.name.clone().unwrap_or_else(|| "anonymous".into()),
            created_at: now,
            expires_at: now + policy.expires_in_secs.unwrap_or(DEFAULT_EXPIRY_SECS),
            approvals_required: policy.approvals_required,
            approvals: Vec::new(),
            changes: changes.iter().map(Change::to_spec).collect(),
            base_versions,
            diffs,
            decided_by: None,
            revision: None,
            error: None,
        };
        let change = put_system(
            change_path(&id)?,
            json_value(&request)?,
            Some(Precondition::Version(0)),
        );
        self.commit_from(Origin::System, vec![change], author)
            .await?;
        Ok(request)
    }

    /// One change request as stored, and its entry's version. A committed request's revision
    /// is its entry's: the status was written in the commit itself.
    pub async fn change_request(&self, id: &str) -> Result<(ChangeRequest, Version), Error> {
        let path = change_path(id)?;
        let entry = self
            .current(&path)
            .await?
            .ok_or_else(|| Error::not_found(format!("no change request {id}")))?;
        let value = entry
            .value
            .as_ref()
            .ok_or_else(|| Error::not_found(format!("no change request {id}")))?;
        let mut request: ChangeRequest = serde_json::from_value(value.structured().clone())
            .map_err(|e| Error::internal(format!("change request {id} is corrupt: {e}")))?;
        if request.status == Status::Committed && request.revision.is_none() {
            request.revision = Some(entry.revision);
        }
        Ok((request, entry.version))
    }

    /// One change request as of now (a pending one past its expiry reads as expired).
    pub async fn change_request_now(&self, id: &str) -> Result<ChangeRequest, Error> {
        Ok(self.change_request(id).await?.0.as_of(self.unix_now()))
    }

    /// Every change request (optionally of one status) as of now, newest first.
    pub async fn change_requests(
        &self,
        status: Option<Status>,
    ) -> Result<Vec<ChangeRequest>, Error> {
        let root = system_path(format!("/{}/changes", auth::SYSTEM_SEGMENT))?;
        let listing = self.list(&root, false).await?;
        let now = self.unix_now();
        let mut out = Vec::new();
        for id in listing.children.iter().rev() {
            let request = self.change_request(id).await?.0.as_of(now);
            if status.is_none_or(|s| s == request.status) {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// Decides on a pending request. The caller checked the decider's rights on every path;
    /// the rules of the request itself are here: only pending ones take decisions (an expired
    /// one is stored as such and refused), the author neither approves nor rejects, nobody
    /// approves twice, and the last approval commits the changes — against the versions they
    /// were requested on — together with the request's status, in one transaction.
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        actor: &Actor,
    ) -> Result<ChangeRequest, Error> {
        for _ in 0..super::COMMIT_ATTEMPTS {
            let (mut request, version) = self.change_request(id).await?;
            let now = self.unix_now();
            if request.status == Status::Pending && now >= request.expires_at {
                request.status = Status::Expired;
                if !self.store_request(&request, version, actor).await? {
                    continue;
                }
            }
            if request.status != Status::Pending {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "change request {id} is {}, not pending",
                        request.status_name()
                    ),
                ));
            }
            let decider = actor.name.clone().unwrap_or_default();
            if decision != Decision::Cancel && request.author == decider {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    "the author of a change request cannot approve or reject it",
                ));
            }
            match decision {
                Decision::Reject | Decision::Cancel => {
                    request.status = if decision == Decision::Reject {
                        Status::Rejected
                    } else {
                        Status::Cancelled
                    };
                    request.decided_by = actor.name.clone();
                }
                Decision::Approve => {
                    if request.approvals.contains(&decider) {
                        return Err(Error::new(
                            ErrorCode::Conflict,
                            format!("{decider} already approved change request {id}"),
                        ));
                    }
                    request.approvals.push(decider);
                    if (request.approvals.len() as u32) >= request.approvals_required {
                        match self.commit_request(&mut request, version, actor).await? {
                            Attempt::Done(_) => return Ok(request),
                            Attempt::Lost => continue,
                        }
                    }
                }
            }
            if self.store_request(&request, version, actor).await? {
                return Ok(request);
            }
        }
        Err(super::too_much_contention())
    }

    /// The last approval: the changes (each made against its requested version) and the
    /// request, committed, in one transaction. When the changes cannot commit (a path moved on,
    /// a rule now refuses them), the request is stored as failed instead, and the error returned.
    async fn commit_request(
        &self,
        request: &mut ChangeRequest,
        version: Version,
        actor: &Actor,
    ) -> Result<Attempt, Error> {
        let mut changes = Vec::with_capacity(request.changes.len() + 1);
        for spec in &request.changes {
            let mut change = Change::from_spec(spec.clone())
                .map_err(|e| Error::internal(format!("stored change is malformed: {e}")))?;
            let base = request
                .base_versions
                .get(change.path().as_str())
                .copied()
                .unwrap_or(0);
            let slot = change.if_match_mut();
            if slot.is_none() {
                *slot = Some(Precondition::Version(base));
            }
            changes.push(change);
        }
        request.status = Status::Committed;
        request.decided_by = actor.name.clone();
        let entry = put_system(
            change_path(&request.id)?,
            json_value(request)?,
            Some(Precondition::Version(version)),
        );
        let entry_index = changes.len();
        changes.push(entry);
        let commit = Commit {
            origin: Origin::Configs,
            gated: false,
            author: Some(request.author.clone()),
            request: Some(request.id.clone()),
            ..Commit::default()
        };
        let refused = match super::check_batch(&commit, &changes)
            .and_then(|()| super::plan::compile_own_rules(&changes))
        {
            Ok(own_rules) => {
                crate::fault::point("approve.before_commit");
                match self
                    .attempt(&commit, &changes, &own_rules, actor, &Extra::default())
                    .await
                {
                    Ok(Attempt::Done(Outcome::Committed(committed))) => {
                        crate::fault::point("approve.after_commit");
                        request.revision = Some(committed.revision);
                        return Ok(Attempt::Done(Outcome::Committed(committed)));
                    }
                    Ok(Attempt::Done(Outcome::NeedsApproval(_))) => {
                        return Err(Error::internal("an approved change met the gate"));
                    }
                    Ok(Attempt::Lost) => return Ok(Attempt::Lost),
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        let index = refused
            .details
            .as_ref()
            .and_then(|d| d.get("index"))
            .and_then(serde_json::Value::as_u64);
        if index == Some(entry_index as u64) {
            // The request itself changed meanwhile (another decision): read it again.
            return Ok(Attempt::Lost);
        }
        let error = if refused.code == ErrorCode::PreconditionFailed {
            Error::new(
                ErrorCode::Conflict,
                format!(
                    "a path of change request {} changed since it was requested: {}",
                    request.id, refused.message
                ),
            )
        } else {
            refused
        };
        request.status = Status::Failed;
        request.error = Some(error.message.clone());
        request.revision = None;
        if !self.store_request(request, version, actor).await? {
            return Ok(Attempt::Lost);
        }
        Err(error)
    }

    /// Stores `request` over the entry at `version`; false when another decision got there
    /// first (the caller reads it again).
    async fn store_request(
        &self,
        request: &ChangeRequest,
        version: Version,
        actor: &Actor,
    ) -> Result<bool, Error> {
        let change = put_system(
            change_path(&request.id)?,
            json_value(request)?,
            Some(Precondition::Version(version)),
        );
        match self.commit_from(Origin::System, vec![change], actor).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == ErrorCode::PreconditionFailed => Ok(false),
            Err(e) => Err(e),
        }
    }
}

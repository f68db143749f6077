//! Approval policies and change requests.
//!
//! A policy `{"approvals_required": N, "expires_in_secs"?}` on a prefix is the system entry
//! `/_setpoint/policies{prefix}`; for a path, the longest policy prefix decides. A write under a
//! policy with N > 0 becomes a change request, the system entry `/_setpoint/changes/{id}`,
//! holding the request as sent (the same JSON a `/api/batch` change takes), the versions it was
//! made against, the author and the approvals. It commits, as one ordinary versioned change, on
//! the last approval — validated again then, and refused with 409 when any path moved on since.
//! Every step is a versioned, audited commit of that entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use setpoint_core::auth;
use setpoint_core::snapshot::Snapshot;
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};

use super::{Actor, Change, Configs, Origin, Precondition, PutChange, Update};
use crate::error::{Error, ErrorCode};
use crate::model::accounts::unix_now;

/// Default lifetime of a pending change request.
pub const DEFAULT_EXPIRY_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub approvals_required: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRequest {
    pub id: String,
    pub status: Status,
    pub author: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approvals_required: u32,
    pub approvals: Vec<String>,
    /// The changes as sent, in `/api/batch` form.
    pub changes: Vec<serde_json::Value>,
    /// The version of each path when the request was made (0: no value).
    pub base_versions: BTreeMap<String, Version>,
    /// JSON Patch / unified diff of each change against the value it was made against.
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
}

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

fn change_path(id: &str) -> Result<ConfigPath, Error> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) || id.len() > 40 {
        return Err(Error::not_found(format!("no change request {id:?}")));
    }
    system_path(format!("/{}/changes/{id}", auth::SYSTEM_SEGMENT))
}

/// The policy deciding `path`: the longest policy prefix in `snapshot`.
pub fn policy_for(snapshot: &Snapshot, path: &ConfigPath) -> Option<Policy> {
    let mut candidates = path.ancestors_and_self();
    candidates.push(ConfigPath::root());
    candidates
        .iter()
        .filter_map(|prefix| {
            let key = policy_path(prefix).ok()?;
            let entry = snapshot.get(&key)?;
            serde_json::from_value::<Policy>(entry.value.structured().clone())
                .ok()
                .map(|p| (prefix.segment_count(), p))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, policy)| policy)
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

    /// Stores a new pending change request.
    pub async fn create_change_request(
        &self,
        author: &Actor,
        policy: &Policy,
        changes: Vec<serde_json::Value>,
        parsed: &[Change],
    ) -> Result<ChangeRequest, Error> {
        use rand::TryRng as _;
        let mut random = [0u8; 6];
        rand::rngs::SysRng
            .try_fill_bytes(&mut random)
            .map_err(|e| Error::internal(e.to_string()))?;
        let now = unix_now();
        let id = format!(
            "{now:x}{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut base_versions = BTreeMap::new();
        let mut diffs = Vec::new();
        for change in parsed {
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
            changes,
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

    /// One change request and its entry version; a pending one past its expiry reads as
    /// expired (and is stored so).
    pub async fn change_request(&self, id: &str) -> Result<(ChangeRequest, Version), Error> {
        let path = change_path(id)?;
        let entry = self
            .current(&path)
            .await?
            .and_then(|e| e.value.map(|v| (v, e.version)))
            .ok_or_else(|| Error::not_found(format!("no change request {id}")))?;
        let request: ChangeRequest = serde_json::from_value(entry.0.structured().clone())
            .map_err(|e| Error::internal(format!("change request {id} is corrupt: {e}")))?;
        Ok((request, entry.1))
    }

    /// Every change request (optionally of one status), newest first.
    pub async fn change_requests(
        &self,
        status: Option<Status>,
    ) -> Result<Vec<ChangeRequest>, Error> {
        let root = system_path(format!("/{}/changes", auth::SYSTEM_SEGMENT))?;
        let listing = self.list(&root, false).await?;
        let mut out = Vec::new();
        for id in listing.children.iter().rev() {
            let (request, _) = self.change_request(id).await?;
            if status.is_none_or(|s| s == request.status) {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// Stores `request` over the entry at `version` (409 when someone else changed it first).
    pub async fn update_change_request(
        &self,
        request: &ChangeRequest,
        version: Version,
        actor: &Actor,
    ) -> Result<(), Error> {
        let change = put_system(
            change_path(&request.id)?,
            json_value(request)?,
            Some(Precondition::Version(version)),
        );
        self.commit_from(Origin::System, vec![change], actor)
            .await
            .map_err(|e| {
                if e.code == ErrorCode::PreconditionFailed {
                    Error::new(
                        ErrorCode::Conflict,
                        format!("change request {} changed meanwhile; retry", request.id),
                    )
                } else {
                    e
                }
            })?;
        Ok(())
    }
}

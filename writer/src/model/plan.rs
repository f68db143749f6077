//! Commit planning, pure: from what a commit read (pointers, environment definitions, all at one
//! store revision), the rules in force (prefix schemas, approval policies) and the time, the one
//! transaction that makes the change — or the refusal, or "this needs approvals".
//!
//! Every rule the plan relies on becomes a compare in the transaction itself, so a commit can
//! never land on a state other than the one it was planned on, whichever writer process races it:
//! - each touched pointer's mod revision (versions 1, 2, 3… without gap or reuse; `If-Match`);
//! - each environment an override lives in: its definition, live, unchanged;
//! - the prefix schemas it validated against: nothing under `P s` written since the read;
//! - the approval policies it found none of: nothing under the policies' pointers written since.
//!
//! [`Configs`](super::Configs) does the I/O around it: one read, [`plan`], one transaction,
//! again from the read when a compare fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use setpoint_core::validate::{self, Schema, Validators, Violation};
use setpoint_core::{ConfigPath, Version};

use super::approvals::{self, Policy};
use super::records::{self, Keys, Meta, Pointer, VersionHeader};
use super::schemas;
use super::{Change, ChangeResult, Precondition, Update};
use crate::error::{Error, ErrorCode};
use crate::store::{Compare, CompareOp, Revision, Txn, TxnOp};

/// The rules a commit is checked against.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Every prefix schema, compiled.
    pub schemas: Vec<(ConfigPath, Arc<Schema>)>,
    /// Every approval policy, by the prefix it governs.
    pub policies: Vec<(ConfigPath, Policy)>,
}

/// What a commit read, all at one store revision.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The store revision of the read; the schema and policy compares say "nothing changed
    /// after it".
    pub revision: Revision,
    /// Per change, in the changes' order: the pointer's mod revision (0 when there is none)
    /// and the pointer.
    pub pointers: Vec<(Revision, Option<Pointer>)>,
    /// Each environment an override of the batch lives in: its definition's mod revision (0 when
    /// never defined) and whether it is live.
    pub definitions: BTreeMap<String, (Revision, bool)>,
    /// Per change, when the commit must stay off paths under rollout: the id of the path's
    /// active rollout (its guard key), if any. Empty when the commit does not check.
    pub rollouts: Vec<Option<String>>,
}

/// Schemas and validators given with a put, compiled once before any read.
#[derive(Debug, Clone)]
pub struct OwnRules {
    pub schema: Update<Arc<Schema>>,
    pub validators: Update<Validators>,
}

/// One proposed commit.
pub struct Proposal<'a> {
    pub changes: &'a [Change],
    /// Per change: its own schema and validators (`None` for a delete).
    pub own_rules: &'a [Option<OwnRules>],
    /// `updated_by` of what it writes.
    pub author: Option<&'a str>,
    /// RFC 3339.
    pub now: &'a str,
    /// Whether approval policies apply (a config write); approved changes and system records
    /// are not gated.
    pub gated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The transaction (pointer and version writes, compares; no audit record yet) and what each
    /// change becomes.
    Commit {
        txn: Txn,
        results: Vec<ChangeResult>,
    },
    /// A policy requires approvals for one of the paths: nothing is written.
    NeedsApproval(Policy),
}

/// The prefix of every policy pointer: a compare on it sees any policy created, changed or
/// deleted anywhere.
pub fn policies_range(keys: &Keys) -> String {
    keys.pointer(&approvals::policies_root())
}

/// Plans `proposal` on `observed` under `rules`.
pub fn plan(
    keys: &Keys,
    proposal: &Proposal<'_>,
    observed: &Observed,
    rules: &Rules,
) -> Result<Plan, Error> {
    if observed.pointers.len() != proposal.changes.len() {
        return Err(Error::internal(format!(
            "{} pointers read for {} changes",
            observed.pointers.len(),
            proposal.changes.len()
        )));
    }
    let mut txn = Txn::default();
    // A change that needs approval is checked like any other first: a request that could
    // never commit (a delete of nothing, a violation, a failed If-Match) is refused now.
    let mut needs_approval = None;
    if proposal.gated {
        let policy = proposal
            .changes
            .iter()
            .filter_map(|change| approvals::policy_for(&rules.policies, change.path()))
            .max_by_key(|p| p.approvals_required);
        needs_approval = policy.filter(|p| p.approvals_required > 0);
        // No policy governs these paths as of the read; none may appear before the commit.
        txn.compares.push(Compare::mod_revision_prefix(
            &policies_range(keys),
            CompareOp::Less,
            observed.revision + 1,
        ));
    }
    if !observed.rollouts.is_empty() {
        // None of the paths was under rollout as of the read; no rollout may begin before the
        // commit (one range compare: a batch's compares must stay within etcd's 128 operations).
        txn.compares.push(Compare::mod_revision_prefix(
            &keys.rollout_guards(),
            CompareOp::Less,
            observed.revision + 1,
        ));
    }
    let mut results = Vec::with_capacity(proposal.changes.len());
    let mut violations = Vec::new();
    let mut truncated = false;
    let mut environments_checked = std::collections::BTreeSet::new();
    let mut validated = false;
    for (index, (change, (observed_revision, current))) in
        proposal.changes.iter().zip(&observed.pointers).enumerate()
    {
        let path = change.path();
        if let Some(Some(id)) = observed.rollouts.get(index) {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "{path} is under rollout {id}; finish it (POST /api/rollouts/{id}/advance) \
                     or roll it back first, or write with ?force=true"
                ),
            )
            .with_details(json!({ "path": path.as_str(), "rollout": id }))
            .at_index(index));
        }
        check_precondition(path, current.as_ref(), change_precondition(change))
            .map_err(|e| e.at_index(index))?;
        if let (Change::Put(_), Some((environment, _))) =
            (change, setpoint_core::env::split_override(path))
        {
            let definition = observed.definitions.get(environment).copied();
            let Some((revision, true)) = definition else {
                return Err(Error::new(
                    ErrorCode::ValidationFailed,
                    format!(
                        "environment {environment} does not exist; create it first with PUT /api/environments/{environment}"
                    ),
                )
                .at_index(index));
            };
            // The environment must still exist when this commits.
            if environments_checked.insert(environment.to_owned()) {
                let key = keys.pointer(&setpoint_core::env::definition_path(environment)?);
                txn.compares
                    .push(Compare::mod_revision(key, CompareOp::Equal, revision));
            }
        }
        let next_version = current.as_ref().map_or(1, |p| p.version + 1);
        let meta_base = current.as_ref().map(|p| p.meta.clone()).unwrap_or_default();
        let (pointer, stored, result) = match change {
            Change::Delete { path, .. } => {
                let Some(current) = current.clone().filter(|p| !p.deleted) else {
                    return Err(Error::not_found(format!("{path} holds no value")).at_index(index));
                };
                let pointer = Pointer {
                    version: next_version,
                    deleted: true,
                    meta: Meta {
                        updated_at: proposal.now.to_owned(),
                        updated_by: proposal.author.map(str::to_owned),
                        ..meta_base
                    },
                    ..current
                };
                let result = ChangeResult {
                    path: path.to_string(),
                    version: next_version,
                    created: false,
                    deleted: true,
                };
                (pointer, String::new(), result)
            }
            Change::Put(put) => {
                let (schema, validators) =
                    rules_in_force(proposal.own_rules.get(index), current.as_ref())?;
                let applicable: Vec<&Schema> = rules
                    .schemas
                    .iter()
                    .filter(|(prefix, _)| schemas::applies(prefix, path))
                    .map(|(_, schema)| schema.as_ref())
                    .chain(schema.as_deref())
                    .collect();
                let found =
                    validate::check_bounded(put.value.structured(), &applicable, &[&validators]);
                truncated |= found.truncated;
                if violations.len() < validate::MAX_VIOLATIONS {
                    violations.extend(found.violations.into_iter().map(|v| (path.clone(), v)));
                } else {
                    truncated |= !found.violations.is_empty();
                }
                validated = true;
                let pointer = Pointer {
                    version: next_version,
                    deleted: false,
                    format: put.value.format(),
                    meta: Meta {
                        description: put.description.clone().apply(meta_base.description),
                        owner: put.owner.clone().apply(meta_base.owner),
                        updated_by: proposal.author.map(str::to_owned),
                        updated_at: proposal.now.to_owned(),
                    },
                    schema: schema.map(|s| s.source().clone()),
                    validators: (!validators.is_empty()).then(|| validators.source().clone()),
                };
                let result = ChangeResult {
                    path: path.to_string(),
                    version: next_version,
                    created: current.as_ref().is_none_or(|p| p.deleted),
                    deleted: false,
                };
                (pointer, put.value.stored().to_owned(), result)
            }
        };
        let header = VersionHeader {
            version: next_version,
            deleted: pointer.deleted,
            format: pointer.format,
            meta: pointer.meta.clone(),
        };
        let pointer_key = keys.pointer(path);
        txn.compares.push(Compare::mod_revision(
            pointer_key.clone(),
            CompareOp::Equal,
            *observed_revision,
        ));
        txn.writes.push(TxnOp::Put {
            key: pointer_key,
            value: records::encode_json(&pointer),
        });
        txn.writes.push(TxnOp::Put {
            key: keys.version(path, next_version),
            value: records::encode_version(&header, &stored),
        });
        results.push(result);
    }
    if !violations.is_empty() {
        return Err(violation_error(violations, truncated));
    }
    if let Some(policy) = needs_approval {
        return Ok(Plan::NeedsApproval(policy));
    }
    if validated {
        // Validated against the prefix schemas as of the read; none may change before the commit.
        txn.compares.push(Compare::mod_revision_prefix(
            &keys.schemas(),
            CompareOp::Less,
            observed.revision + 1,
        ));
    }
    Ok(Plan::Commit { txn, results })
}

pub(crate) fn change_precondition(change: &Change) -> Option<Precondition> {
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

/// Compiles the schemas and validators given with each put (before any read or lock).
pub fn compile_own_rules(changes: &[Change]) -> Result<Vec<Option<OwnRules>>, Error> {
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
fn rules_in_force(
    own: Option<&Option<OwnRules>>,
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
    let Some(Some(own)) = own else {
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

/// The 422 listing `violations` — at most [`validate::MAX_VIOLATIONS`]; `truncated` (or a longer
/// list) says more exist than are shown, so a hostile schema cannot make the answer huge.
pub(crate) fn violation_error(
    mut violations: Vec<(ConfigPath, Violation)>,
    mut truncated: bool,
) -> Error {
    if violations.len() > validate::MAX_VIOLATIONS {
        violations.truncate(validate::MAX_VIOLATIONS);
        truncated = true;
    }
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
    let counted = if truncated {
        format!("{count} violation(s) shown, more not listed")
    } else {
        format!("{count} violation(s)")
    };
    let mut details = json!({ "violations": list });
    if truncated {
        details["truncated"] = json!(true);
    }
    Error::new(
        ErrorCode::ValidationFailed,
        format!("{counted}; first: {first}"),
    )
    .with_details(details)
}

/// The version each change was planned against (0: no value), for change requests.
pub fn live_version(current: Option<&Pointer>) -> Version {
    current.filter(|p| !p.deleted).map_or(0, |p| p.version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::model::{ChangeSpec, PutChange};

    const NOW: &str = "2026-11-28T10:00:00Z";

    fn keys() -> Keys {
        Keys::new("/sp/")
    }

    fn path(text: &str) -> ConfigPath {
        ConfigPath::parse(text).unwrap()
    }

    fn put(text: &str, value: serde_json::Value, if_match: Option<Precondition>) -> Change {
        Change::put(path(text), value, None, if_match).unwrap()
    }

    fn delete(text: &str, if_match: Option<Precondition>) -> Change {
        Change::Delete {
            path: path(text),
            if_match,
        }
    }

    fn pointer(version: Version, deleted: bool) -> Pointer {
        Pointer {
            version,
            deleted,
            format: setpoint_core::Format::Json,
            meta: Meta {
                updated_at: "2026-01-01T00:00:00Z".into(),
                ..Meta::default()
            },
            schema: None,
            validators: None,
        }
    }

    fn run(
        changes: &[Change],
        observed: &Observed,
        rules: &Rules,
        gated: bool,
    ) -> Result<Plan, Error> {
        let own_rules = compile_own_rules(changes).unwrap();
        let proposal = Proposal {
            changes,
            own_rules: &own_rules,
            author: Some("alice"),
            now: NOW,
            gated,
        };
        plan(&keys(), &proposal, observed, rules)
    }

    fn observed(pointers: Vec<(Revision, Option<Pointer>)>) -> Observed {
        Observed {
            revision: 40,
            pointers,
            definitions: BTreeMap::new(),
            rollouts: Vec::new(),
        }
    }

    fn has_compare(txn: &Txn, wanted: &Compare) -> bool {
        txn.compares.iter().any(|c| c == wanted)
    }

    #[test]
    fn a_put_compares_its_pointer_the_schemas_and_the_policies() {
        let changes = [put("/a/b", json!(1), None)];
        let Plan::Commit { txn, results } = run(
            &changes,
            &observed(vec![(7, Some(pointer(3, false)))]),
            &Rules::default(),
            true,
        )
        .unwrap() else {
            panic!("expected a commit");
        };
        assert_eq!(results[0].version, 4);
        assert!(!results[0].created);
        assert!(has_compare(
            &txn,
            &Compare::mod_revision("/sp/c/a/b", CompareOp::Equal, 7)
        ));
        assert!(has_compare(
            &txn,
            &Compare::mod_revision_prefix("/sp/s/", CompareOp::Less, 41)
        ));
        assert!(has_compare(
            &txn,
            &Compare::mod_revision_prefix("/sp/c/_setpoint/policies", CompareOp::Less, 41)
        ));
        let keys: Vec<&str> = txn
            .writes
            .iter()
            .filter_map(|w| match w {
                TxnOp::Put { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["/sp/c/a/b", "/sp/h/a/b@00000000000000000004"]);
    }

    #[test]
    fn a_path_under_rollout_is_a_conflict_and_free_ones_compare_the_guards_unchanged() {
        let changes = [
            put("/a/free", json!(1), None),
            put("/a/held", json!(2), None),
        ];
        let mut seen = observed(vec![(0, None), (3, Some(pointer(1, false)))]);
        seen.rollouts = vec![None, Some("roll_x".into())];
        let refused = run(&changes, &seen, &Rules::default(), false).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Conflict);
        assert_eq!(refused.details.as_ref().unwrap()["index"], 1);
        assert_eq!(refused.details.as_ref().unwrap()["rollout"], "roll_x");
        seen.rollouts = vec![None, None];
        let Plan::Commit { txn, .. } = run(&changes, &seen, &Rules::default(), false).unwrap()
        else {
            panic!("expected a commit");
        };
        assert!(has_compare(
            &txn,
            &Compare::mod_revision_prefix("/sp/grollout/", CompareOp::Less, 41)
        ));
        // A commit that does not check (forced, or a rollout's own completion) compares nothing.
        seen.rollouts = Vec::new();
        let Plan::Commit { txn, .. } = run(&changes, &seen, &Rules::default(), false).unwrap()
        else {
            panic!("expected a commit");
        };
        assert!(!txn.compares.iter().any(|c| c.key().contains("grollout")));
    }

    #[test]
    fn an_ungated_delete_compares_neither_schemas_nor_policies() {
        let changes = [delete("/a", None)];
        let Plan::Commit { txn, results } = run(
            &changes,
            &observed(vec![(5, Some(pointer(1, false)))]),
            &Rules::default(),
            false,
        )
        .unwrap() else {
            panic!("expected a commit");
        };
        assert!(results[0].deleted);
        assert_eq!(txn.compares.len(), 1, "{:?}", txn.compares);
    }

    #[test]
    fn the_longest_policy_prefix_decides_and_zero_means_no_approval() {
        let rules = Rules {
            schemas: vec![],
            policies: vec![
                (
                    path("/pay"),
                    Policy {
                        approvals_required: 2,
                        expires_in_secs: None,
                    },
                ),
                (
                    path("/pay/free"),
                    Policy {
                        approvals_required: 0,
                        expires_in_secs: None,
                    },
                ),
            ],
        };
        let none = observed(vec![(0, None)]);
        let gated = run(&[put("/pay/limit", json!(5), None)], &none, &rules, true).unwrap();
        assert!(matches!(gated, Plan::NeedsApproval(p) if p.approvals_required == 2));
        let free = run(&[put("/pay/free/x", json!(5), None)], &none, &rules, true).unwrap();
        assert!(matches!(free, Plan::Commit { .. }));
        let approved = run(&[put("/pay/limit", json!(5), None)], &none, &rules, false).unwrap();
        assert!(matches!(approved, Plan::Commit { .. }));
        // A request that could never commit is refused, not stored for approval.
        let nothing = run(&[delete("/pay/limit", None)], &none, &rules, true).unwrap_err();
        assert_eq!(nothing.code, ErrorCode::NotFound);
    }

    #[test]
    fn an_override_needs_a_live_environment_and_compares_its_definition() {
        let changes = [put("/env/prod/app", json!(1), None)];
        let mut seen = observed(vec![(0, None)]);
        let refused = run(&changes, &seen, &Rules::default(), false).unwrap_err();
        assert_eq!(refused.code, ErrorCode::ValidationFailed);
        seen.definitions.insert("prod".into(), (9, false));
        let refused = run(&changes, &seen, &Rules::default(), false).unwrap_err();
        assert_eq!(refused.code, ErrorCode::ValidationFailed, "a deleted one");
        seen.definitions.insert("prod".into(), (9, true));
        let Plan::Commit { txn, .. } = run(&changes, &seen, &Rules::default(), false).unwrap()
        else {
            panic!("expected a commit");
        };
        assert!(has_compare(
            &txn,
            &Compare::mod_revision("/sp/c/env/prod", CompareOp::Equal, 9)
        ));
    }

    #[test]
    fn prefix_schemas_govern_overrides_too_and_every_violation_is_listed() {
        let schema = Schema::compile(&json!({"type": "integer"}), "schema:/app").unwrap();
        let rules = Rules {
            schemas: vec![(path("/app"), Arc::new(schema))],
            policies: vec![],
        };
        let mut seen = observed(vec![(0, None), (0, None)]);
        seen.definitions.insert("prod".into(), (3, true));
        let changes = [
            put("/app/x", json!("text"), None),
            put("/env/prod/app/y", json!("text"), None),
        ];
        let refused = run(&changes, &seen, &rules, false).unwrap_err();
        assert_eq!(refused.code, ErrorCode::ValidationFailed);
        let listed = refused.details.unwrap()["violations"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(listed, 2);
    }

    fn precondition() -> impl Strategy<Value = Option<Precondition>> {
        prop_oneof![
            Just(None),
            Just(Some(Precondition::Exists)),
            (0u64..4).prop_map(|v| Some(Precondition::Version(v))),
        ]
    }

    fn current() -> impl Strategy<Value = (Revision, Option<Pointer>)> {
        prop_oneof![
            Just((0, None)),
            (1i64..30, 1u64..4, any::<bool>())
                .prop_map(|(rev, version, deleted)| (rev, Some(pointer(version, deleted)))),
        ]
    }

    proptest! {
        /// Whatever the batch and the state it was read on: a plan either refuses with the
        /// rule that failed, or writes each path's next version once, guarded by the pointer
        /// it read — so replaying it on any other state fails as a whole.
        #[test]
        fn a_plan_commits_exactly_the_next_versions_or_refuses(
            batch in proptest::collection::vec(
                (0usize..5, any::<bool>(), precondition(), current()), 1..6)
        ) {
            let mut changes = Vec::new();
            let mut pointers = Vec::new();
            let mut used = std::collections::BTreeSet::new();
            for (index, is_put, if_match, state) in batch {
                if !used.insert(index) {
                    continue;
                }
                let text = format!("/p{index}");
                changes.push(if is_put {
                    put(&text, json!(index), if_match)
                } else {
                    delete(&text, if_match)
                });
                pointers.push(state);
            }
            let seen = observed(pointers.clone());
            let expected_error = changes.iter().zip(&pointers).find_map(|(change, (_, p))| {
                let live = live_version(p.as_ref());
                let precondition_ok = match change_precondition(change) {
                    None => true,
                    Some(Precondition::Exists) => live != 0,
                    Some(Precondition::Version(v)) => live == v,
                };
                if !precondition_ok {
                    return Some(ErrorCode::PreconditionFailed);
                }
                (matches!(change, Change::Delete { .. }) && live == 0).then_some(ErrorCode::NotFound)
            });
            match (run(&changes, &seen, &Rules::default(), false), expected_error) {
                (Err(error), Some(code)) => prop_assert_eq!(error.code, code),
                (Ok(Plan::Commit { txn, results }), None) => {
                    prop_assert_eq!(results.len(), changes.len());
                    prop_assert_eq!(txn.writes.len(), 2 * changes.len());
                    for ((change, (revision, p)), result) in changes.iter().zip(&pointers).zip(&results) {
                        let next = p.as_ref().map_or(1, |p| p.version + 1);
                        prop_assert_eq!(result.version, next);
                        prop_assert_eq!(result.deleted, matches!(change, Change::Delete { .. }));
                        let pointer_key = keys().pointer(change.path());
                        let guard = Compare::mod_revision(pointer_key, CompareOp::Equal, *revision);
                        prop_assert!(has_compare(&txn, &guard));
                    }
                }
                (other, expected) => prop_assert!(false, "got {other:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_change_survives_its_stored_form() {
        let mut change = put("/a/b", json!({"k": [1, 2]}), Some(Precondition::Version(3)));
        if let Change::Put(put) = &mut change {
            let put: &mut PutChange = put;
            put.description = Update::Set("why".into());
            put.owner = Update::Clear;
            put.validators = Update::Set(json!([{"regex": "x"}]));
        }
        let spec = change.to_spec();
        let text = serde_json::to_string(&spec).unwrap();
        let back: ChangeSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
        assert_eq!(Change::from_spec(back).unwrap().to_spec(), spec);
        assert!(text.contains("\"owner\":null"), "{text}");
        let delete = delete("/a", Some(Precondition::Exists)).to_spec();
        assert_eq!(
            serde_json::to_value(&delete).unwrap(),
            json!({"op": "delete", "path": "/a", "if_match": "*"})
        );
    }
}

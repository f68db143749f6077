//! Dry runs: what a batch of changes would do, decided exactly as a commit decides it (the same
//! read, the same pure [`plan`](super::plan::plan)) — and then not committed.
//!
//! A change that a commit would refuse is refused the same way (400, 404, 412, 413, 422 with
//! every violation), so a preview that passes is a commit that would pass at this revision.
//! What the change would do to effective values and clients is computed by the API from the
//! read model (`api/preview.rs`); this module only answers for the store.

use super::plan::{self, Plan};
use super::{Actor, Change, ChangeResult, Commit, Configs, Origin};
use crate::error::Error;

/// What a commit of the changes would do now.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The store revision the preview was planned at.
    pub revision: i64,
    /// Per change: the version it would write (a tombstone for a delete).
    pub results: Vec<ChangeResult>,
    /// An approval policy governs a path: the commit would wait for this many approvals.
    pub approvals_required: Option<u32>,
}

impl Configs {
    /// Plans `changes` as [`Configs::submit_forced`] would (with `force`: also on paths under an
    /// active rollout), without writing anything.
    pub async fn preview(
        &self,
        changes: &[Change],
        actor: &Actor,
        force: bool,
    ) -> Result<Preview, Error> {
        let commit = Commit {
            origin: Origin::Configs,
            gated: true,
            force,
            ..Commit::default()
        };
        super::check_batch(&commit, changes)?;
        let own_rules = plan::compile_own_rules(changes)?;
        let (observed, rules) = self
            .observe(changes, true, commit.respects_rollouts())
            .await?;
        let (_, now) = self.now();
        let proposal = plan::Proposal {
            changes,
            own_rules: &own_rules,
            author: actor.name.as_deref(),
            now: &now,
            gated: true,
        };
        let revision = observed.revision;
        // A gated plan reports approvals before it validates; validate as the approved commit
        // will, so the preview lists violations either way.
        let ungated = plan::Proposal {
            gated: false,
            ..proposal
        };
        let results = match plan::plan(&self.keys, &ungated, &observed, &rules)? {
            Plan::Commit { results, .. } => results,
            Plan::NeedsApproval(_) => Vec::new(),
        };
        let approvals_required = match plan::plan(&self.keys, &proposal, &observed, &rules)? {
            Plan::NeedsApproval(policy) => Some(policy.approvals_required),
            Plan::Commit { .. } => None,
        };
        Ok(Preview {
            revision,
            results,
            approvals_required,
        })
    }
}

//! Staged rollouts on top of the config model: create, read, list and steer them, and complete
//! one by committing its candidate.
//!
//! A rollout is the JSON entry `/_setpoint/rollouts/{id}` ([`Rollout`]), written only here
//! (through [`Origin::System`]), so it is versioned, audited and replicated to every edge, which
//! decides from it alone who sees the candidate. Every transition is one commit of the record,
//! compared on the version read, with a [`Transition`] appended and its own audit action
//! (`rollout.create`, `rollout.advance`, `rollout.pause`, `rollout.resume`, `rollout.rollback`,
//! `rollout.halt`, `rollout.complete`).
//!
//! Rules kept by the store, not by this process: the guard key `P grollout{path}` exists
//! exactly while a rollout of the path is active — creation compares it absent (one active
//! rollout per path), a config write refuses a guarded path and compares the guards unchanged since its read
//! unless forced, completion and rollback
//! delete it. Creation validates the candidate as a PUT of the path would be validated (the
//! same plan, not committed) and carries that plan's compares, so the path, its schemas, its
//! environment and the policies cannot change between the check and the record. Completion
//! commits the candidate as the path's next version through the ordinary plan (validated,
//! versioned, gated by approval policies) together with the record's `completed` status, in one
//! transaction.
//!
//! This module decides nothing about time or health: the stage clock ([`crate::rollouts`]) does.

use setpoint_core::rollout::{self, Canary, Halt, Health, Rollout, Status, Transition};
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};

use super::{
    Actor, Attempt, COMMIT_ATTEMPTS, Change, Commit, Configs, Extra, Origin, Outcome, Precondition,
    PutChange, Update, plan,
};
use crate::error::{Error, ErrorCode};
use crate::store::{Compare, CompareOp, Revision, TxnOp};

/// Most transitions a record keeps (the first and the newest): pausing and resuming forever
/// must not grow it without bound. The audit log keeps them all.
pub const MAX_TRANSITIONS: usize = 100;

/// A rollout to create, its input checked by the API.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub path: ConfigPath,
    pub value: ParsedValue,
    pub stages: Vec<u8>,
    pub interval_ms: u64,
    pub canary: Option<Canary>,
    pub health: Health,
    /// The id to use (one a dry run answered, so its stages hold the instances it listed);
    /// `None`: a new one.
    pub id: Option<String>,
}

impl NewRollout {
    /// The candidate as the PUT of the path it is checked as (and, at completion, committed as).
    pub fn candidate_change(&self) -> Change {
        put(self.path.clone(), self.value.clone(), None)
    }
}

/// A hand (or the stage clock) on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    Advance,
    Pause,
    Resume,
    Rollback,
}

impl Steer {
    pub fn parse(text: &str) -> Option<Steer> {
        match text {
            "advance" => Some(Steer::Advance),
            "pause" => Some(Steer::Pause),
            "resume" => Some(Steer::Resume),
            "rollback" => Some(Steer::Rollback),
            _ => None,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Steer::Advance => "rollout.advance",
            Steer::Pause => "rollout.pause",
            Steer::Resume => "rollout.resume",
            Steer::Rollback => "rollout.rollback",
        }
    }
}

/// A rollout as read: the record, its entry's version and revision.
#[derive(Debug, Clone)]
pub struct StoredRollout {
    pub rollout: Rollout,
    pub version: Version,
    pub revision: Revision,
}

/// What a transition makes of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The record's next state.
    Record(Rollout),
    /// The candidate commits: the record's completed state goes with it.
    Complete(Rollout),
}

fn conflict(message: String) -> Error {
    Error::new(ErrorCode::Conflict, message)
}

fn push_transition(rollout: &mut Rollout, transition: Transition) {
    rollout.transitions.push(transition);
    if rollout.transitions.len() > MAX_TRANSITIONS {
        rollout.transitions.remove(1);
    }
}

/// The next state of `current` when `steer`ed at `now_ms` by `by`; `halt`
/// when the stage clock does it for a failed health gate. Pure.
pub fn step(
    current: &Rollout,
    steer: Steer,
    now_ms: i64,
    by: Option<String>,
    halt: Option<Halt>,
) -> Result<Next, Error> {
    let id = &current.id;
    if !current.status.is_active() {
        return Err(conflict(format!(
            "rollout {id} is {}; only an active rollout can be steered",
            current.status.as_str()
        )));
    }
    let mut next = current.clone();
    let reason = match (&halt, steer) {
        (Some(halt), _) => format!("halted: {}", halt.reason),
        (None, Steer::Advance) => "advanced".to_owned(),
        (None, Steer::Pause) => "paused".to_owned(),
        (None, Steer::Resume) => "resumed".to_owned(),
        (None, Steer::Rollback) => "rolled back".to_owned(),
    };
    match steer {
        Steer::Advance => {
            next.halted = None;
            if current.at_last_stage() {
                next.status = Status::Completed;
            } else {
                next.status = Status::InProgress;
                next.stage = current.stage + 1;
                next.stage_started_ms = now_ms;
            }
        }
        Steer::Pause => {
            if current.status != Status::InProgress {
                return Err(conflict(format!("rollout {id} is already paused")));
            }
            next.status = Status::Paused;
        }
        Steer::Resume => {
            if current.status != Status::Paused {
                return Err(conflict(format!("rollout {id} is not paused")));
            }
            next.status = Status::InProgress;
            next.halted = None;
            // The stage's clocks (interval, ack timeout, errors) start again from here.
            next.stage_started_ms = now_ms;
        }
        Steer::Rollback => next.status = Status::RolledBack,
    }
    if halt.is_some() {
        next.halted = halt;
    }
    let transition = Transition {
        at_ms: now_ms,
        stage: next.stage,
        status: next.status,
        reason,
        by,
    };
    push_transition(&mut next, transition);
    Ok(if next.status == Status::Completed {
        Next::Complete(next)
    } else {
        Next::Record(next)
    })
}

fn record_path(id: &str) -> Result<ConfigPath, Error> {
    rollout::check_id(id).map_err(|_| Error::not_found(format!("no rollout {id:?}")))?;
    rollout::record_path(id).ok_or_else(|| Error::not_found(format!("no rollout {id:?}")))
}

fn record_value(rollout: &Rollout) -> Result<ParsedValue, Error> {
    let json = serde_json::to_value(rollout).map_err(|e| Error::internal(e.to_string()))?;
    Ok(ParsedValue::from_request(json, Some(Format::Json))?)
}

fn put(path: ConfigPath, value: ParsedValue, if_match: Option<Precondition>) -> Change {
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

fn new_id(now_ms: i64) -> Result<String, Error> {
    use rand::TryRng as _;
    let mut random = [0u8; 5];
    rand::rngs::SysRng
        .try_fill_bytes(&mut random)
        .map_err(|e| Error::internal(e.to_string()))?;
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("roll_{:011x}{random}", now_ms.max(0)))
}

impl Configs {
    /// Milliseconds since the epoch, from the injected clock.
    pub fn unix_now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Starts a rollout of `new.value` at `new.path`, in its first stage. 409 when the path is
    /// under another active rollout, or an approval policy governs it (a rollout cannot carry
    /// approvals: get the change approved as a change request instead).
    pub async fn create_rollout(
        &self,
        new: NewRollout,
        actor: &Actor,
    ) -> Result<StoredRollout, Error> {
        self.start_rollout(new, actor, true).await
    }

    /// Checks `new` exactly as [`Configs::create_rollout`] would (the same refusals) and answers
    /// the record it would start, with its id, without writing anything: version 0, at the
    /// revision it was planned at. Creating it later with that id gives the same membership.
    pub async fn draft_rollout(
        &self,
        new: NewRollout,
        actor: &Actor,
    ) -> Result<StoredRollout, Error> {
        self.start_rollout(new, actor, false).await
    }

    async fn start_rollout(
        &self,
        new: NewRollout,
        actor: &Actor,
        commit_it: bool,
    ) -> Result<StoredRollout, Error> {
        if let Some(id) = &new.id {
            rollout::check_id(id).map_err(Error::bad_request)?;
            if self.current(&record_path(id)?).await?.is_some() {
                return Err(conflict(format!(
                    "rollout id {id} is taken; a dry run's id starts one rollout"
                )));
            }
        }
        rollout::check_plan(&new.stages, new.canary.as_ref(), &new.health)
            .map_err(Error::bad_request)?;
        new.path.check_writable()?;
        if setpoint_core::env::definition_name(&new.path).is_some() {
            return Err(Error::bad_request(
                "environment definitions are not rolled out; use /api/environments",
            ));
        }
        let candidate = [new.candidate_change()];
        let probe = Commit {
            origin: Origin::Configs,
            gated: true,
            force: true,
            ..Commit::default()
        };
        super::check_batch(&probe, &candidate)?;
        let own_rules = plan::compile_own_rules(&candidate)?;
        let guard = self.keys.rollout_guard(&new.path);
        for _ in 0..COMMIT_ATTEMPTS {
            if let Some(active) = self.store.get(&guard).await? {
                let id = String::from_utf8_lossy(&active.value).into_owned();
                return Err(conflict(format!(
                    "{} is already under rollout {id}; one active rollout per path",
                    new.path
                ))
                .with_details(serde_json::json!({ "rollout": id })));
            }
            // The candidate, planned exactly as a PUT of the path, and not committed.
            let (observed, rules) = self.observe(&candidate, true, false).await?;
            let (_, now) = self.now();
            let proposal = plan::Proposal {
                changes: &candidate,
                own_rules: &own_rules,
                author: actor.name.as_deref(),
                now: &now,
                gated: true,
            };
            let checked = match plan::plan(&self.keys, &proposal, &observed, &rules)? {
                plan::Plan::NeedsApproval(policy) => {
                    return Err(conflict(format!(
                        "an approval policy ({} approvals) governs {}; a rollout cannot carry \
                         approvals — submit the change with PUT to get it approved instead",
                        policy.approvals_required, new.path
                    )));
                }
                plan::Plan::Commit { txn, .. } => txn,
            };
            let stable_version = observed
                .pointers
                .first()
                .and_then(|(_, p)| p.as_ref())
                .filter(|p| !p.deleted)
                .map_or(0, |p| p.version);
            let now_ms = self.unix_now_ms();
            let id = match &new.id {
                Some(id) => id.clone(),
                None => new_id(now_ms)?,
            };
            let record = Rollout {
                id: id.clone(),
                path: new.path.to_string(),
                value: new.value.to_api_value(),
                format: new.value.format(),
                stable_version,
                canary: new.canary.clone(),
                stages: new.stages.clone(),
                interval_ms: new.interval_ms,
                health: new.health.clone(),
                status: Status::InProgress,
                stage: 1,
                stage_started_ms: now_ms,
                created_at_ms: now_ms,
                created_by: actor.name.clone().unwrap_or_else(|| "anonymous".into()),
                transitions: vec![Transition {
                    at_ms: now_ms,
                    stage: 1,
                    status: Status::InProgress,
                    reason: "created".into(),
                    by: actor.name.clone(),
                }],
                halted: None,
            };
            if !commit_it {
                return Ok(StoredRollout {
                    rollout: record,
                    version: 0,
                    revision: observed.revision,
                });
            }
            let mut compares = checked.compares;
            compares.push(Compare::mod_revision(guard.clone(), CompareOp::Equal, 0));
            let extra = Extra {
                compares,
                writes: vec![TxnOp::Put {
                    key: guard.clone(),
                    value: id.clone().into_bytes(),
                }],
            };
            let commit = Commit {
                origin: Origin::System,
                action: Some("rollout.create"),
                detail: Some(serde_json::json!({ "path": record.path, "stages": record.stages })),
                ..Commit::default()
            };
            let change = put(
                record_path(&id)?,
                record_value(&record)?,
                Some(Precondition::Version(0)),
            );
            match self
                .attempt(&commit, &[change], &[None], actor, &extra)
                .await?
            {
                Attempt::Done(Outcome::Committed(committed)) => {
                    return Ok(StoredRollout {
                        rollout: record,
                        version: 1,
                        revision: committed.revision,
                    });
                }
                Attempt::Done(Outcome::NeedsApproval(_)) => {
                    return Err(Error::internal("a system record met the approval gate"));
                }
                Attempt::Lost => continue,
            }
        }
        Err(super::too_much_contention())
    }

    /// The ids of the active rollouts (in progress or paused), from their guard keys.
    pub async fn active_rollouts(&self) -> Result<Vec<String>, Error> {
        let guards = self
            .store
            .range(crate::store::RangeRequest::prefix(
                &self.keys.guard("rollout/"),
            ))
            .await?;
        Ok(guards
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect())
    }

    /// One rollout as stored.
    pub async fn rollout(&self, id: &str) -> Result<StoredRollout, Error> {
        let path = record_path(id)?;
        let missing = || Error::not_found(format!("no rollout {id}"));
        let entry = self.current(&path).await?.ok_or_else(missing)?;
        let value = entry.value.as_ref().ok_or_else(missing)?;
        let rollout = Rollout::from_value(value.structured())
            .ok_or_else(|| Error::internal(format!("rollout record {path} is corrupt")))?;
        Ok(StoredRollout {
            rollout,
            version: entry.version,
            revision: entry.revision,
        })
    }

    /// Rollouts, newest first, optionally of one status and one path.
    pub async fn rollouts(
        &self,
        status: Option<Status>,
        path: Option<&ConfigPath>,
    ) -> Result<Vec<StoredRollout>, Error> {
        let listing = self.list(&rollout::records_root(), false).await?;
        let mut out = Vec::new();
        for id in &listing.children {
            let stored = match self.rollout(id).await {
                Ok(stored) => stored,
                Err(e) if e.code == ErrorCode::NotFound => continue,
                Err(e) => return Err(e),
            };
            if status.is_some_and(|s| s != stored.rollout.status)
                || path.is_some_and(|p| p.as_str() != stored.rollout.path)
            {
                continue;
            }
            out.push(stored);
        }
        out.sort_by(|a, b| {
            (b.rollout.created_at_ms, &b.rollout.id).cmp(&(a.rollout.created_at_ms, &a.rollout.id))
        });
        Ok(out)
    }

    /// When each begun stage of `stored` began — the revision of the first record version in
    /// it, at which the edges delivered the candidate to the stage's new members — and when its
    /// health window began: the first version of the newest unbroken run in progress at the
    /// current stage (the stage's start, or its resumption after a pause). Read from the
    /// record's history (small: one version per transition), so nothing is kept twice.
    pub async fn stage_revisions(
        &self,
        stored: &StoredRollout,
    ) -> Result<(Vec<Revision>, Revision), Error> {
        let rollout = &stored.rollout;
        let path = record_path(&rollout.id)?;
        // A stage whose first version retention removed is long past: 0, so its members count
        // as having acknowledged whatever they applied since.
        let mut began = vec![0; rollout.stage.max(1)];
        let mut window = stored.revision;
        let mut in_window = true;
        let mut before = None;
        loop {
            let page = self.history(&path, 1_000, before).await?;
            for entry in &page.versions {
                let Some(record) = entry
                    .value
                    .as_ref()
                    .and_then(|v| Rollout::from_value(v.structured()))
                else {
                    continue;
                };
                if let Some(slot) = record.stage.checked_sub(1).and_then(|i| began.get_mut(i)) {
                    // Newest first: the last one seen is the stage's first version.
                    *slot = entry.revision;
                }
                in_window &= record.stage == rollout.stage
                    && (record.status == Status::InProgress || entry.version == stored.version);
                if in_window {
                    window = entry.revision;
                }
            }
            match page.next_before {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        Ok((began, window))
    }

    /// The version of the rollout's path its completion committed (the one written in the
    /// record's last revision).
    pub async fn completed_version(
        &self,
        stored: &StoredRollout,
    ) -> Result<Option<Version>, Error> {
        if stored.rollout.status != Status::Completed {
            return Ok(None);
        }
        let path = ConfigPath::parse(&stored.rollout.path)?;
        let page = self.history(&path, 1_000, None).await?;
        Ok(page
            .versions
            .iter()
            .find(|e| e.revision == stored.revision)
            .map(|e| e.version))
    }

    /// Steers rollout `id` by hand. Advancing past the last stage completes it.
    pub async fn steer_rollout(
        &self,
        id: &str,
        steer: Steer,
        actor: &Actor,
    ) -> Result<StoredRollout, Error> {
        for _ in 0..COMMIT_ATTEMPTS {
            let stored = self.rollout(id).await?;
            if let Some(done) = self.try_step(&stored, steer, actor, None).await? {
                return Ok(done);
            }
        }
        Err(super::too_much_contention())
    }

    /// The stage clock's move on the rollout it read at `stored.version`: `None` when the record
    /// changed meanwhile (someone steered it; the clock looks again on its next tick).
    pub async fn clock_step(
        &self,
        stored: &StoredRollout,
        steer: Steer,
        halt: Option<Halt>,
    ) -> Result<Option<StoredRollout>, Error> {
        self.try_step(stored, steer, &Actor::system(), halt).await
    }

    async fn try_step(
        &self,
        stored: &StoredRollout,
        steer: Steer,
        actor: &Actor,
        halt: Option<Halt>,
    ) -> Result<Option<StoredRollout>, Error> {
        let now_ms = self.unix_now_ms();
        let halted = halt.is_some();
        let by = actor.name.clone();
        match step(&stored.rollout, steer, now_ms, by, halt)? {
            Next::Record(next) => {
                let action = if halted {
                    "rollout.halt"
                } else {
                    steer.action()
                };
                let release = next.status == Status::RolledBack;
                self.store_rollout(next, stored.version, action, release, actor)
                    .await
            }
            Next::Complete(next) => self.complete(next, stored.version, actor).await,
        }
    }

    /// Commits `next` over the record at `version`; `release` deletes the path's guard (the
    /// rollout ends). `None` when the record moved on.
    async fn store_rollout(
        &self,
        next: Rollout,
        version: Version,
        action: &'static str,
        release: bool,
        actor: &Actor,
    ) -> Result<Option<StoredRollout>, Error> {
        let path = ConfigPath::parse(&next.path)?;
        let change = put(
            record_path(&next.id)?,
            record_value(&next)?,
            Some(Precondition::Version(version)),
        );
        let extra = Extra {
            compares: Vec::new(),
            writes: if release {
                vec![TxnOp::Delete {
                    key: self.keys.rollout_guard(&path),
                }]
            } else {
                Vec::new()
            },
        };
        let commit = Commit {
            origin: Origin::System,
            action: Some(action),
            detail: Some(serde_json::json!({
                "path": next.path,
                "stage": next.stage,
                "status": next.status.as_str(),
                "halted": next.halted,
            })),
            ..Commit::default()
        };
        match self
            .attempt(&commit, &[change], &[None], actor, &extra)
            .await
        {
            Ok(Attempt::Done(Outcome::Committed(committed))) => Ok(Some(StoredRollout {
                rollout: next,
                version: version + 1,
                revision: committed.revision,
            })),
            Ok(Attempt::Done(Outcome::NeedsApproval(_))) => {
                Err(Error::internal("a system record met the approval gate"))
            }
            Ok(Attempt::Lost) => Ok(None),
            Err(e) if e.code == ErrorCode::PreconditionFailed => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The candidate becomes the path's next version — planned like any config write (validated,
    /// versioned, approval policies in force) — with the record `completed`, in one transaction.
    /// When the write is refused (a policy now governs the path, a schema now rejects the
    /// candidate), the rollout pauses with the reason as its halt, and the refusal is returned.
    async fn complete(
        &self,
        next: Rollout,
        version: Version,
        actor: &Actor,
    ) -> Result<Option<StoredRollout>, Error> {
        let path = ConfigPath::parse(&next.path)?;
        let candidate = next.candidate().map_err(|e| {
            Error::internal(format!("rollout {} holds a bad candidate: {e}", next.id))
        })?;
        // The candidate is made against the version read: a write in between is a lost race
        // (read again), never a silent overwrite.
        let live_version = match self.read_pointer(&self.keys.pointer(&path)).await? {
            Some((_, p)) if !p.deleted => p.version,
            _ => 0,
        };
        let changes = [
            put(
                path.clone(),
                candidate,
                Some(Precondition::Version(live_version)),
            ),
            put(
                record_path(&next.id)?,
                record_value(&next)?,
                Some(Precondition::Version(version)),
            ),
        ];
        let commit = Commit {
            origin: Origin::Configs,
            gated: true,
            author: Some(next.created_by.clone()),
            rollout: Some(next.id.clone()),
            action: Some("rollout.complete"),
            ..Commit::default()
        };
        let extra = Extra {
            compares: Vec::new(),
            writes: vec![TxnOp::Delete {
                key: self.keys.rollout_guard(&path),
            }],
        };
        let refused = match super::check_batch(&commit, &changes)
            .and_then(|()| plan::compile_own_rules(&changes))
        {
            Ok(own_rules) => match self
                .attempt(&commit, &changes, &own_rules, actor, &extra)
                .await
            {
                Ok(Attempt::Done(Outcome::Committed(committed))) => {
                    return Ok(Some(StoredRollout {
                        rollout: next,
                        version: version + 1,
                        revision: committed.revision,
                    }));
                }
                Ok(Attempt::Lost) => return Ok(None),
                // The path or the record moved between the reads: look again.
                Err(e) if e.code == ErrorCode::PreconditionFailed => return Ok(None),
                Ok(Attempt::Done(Outcome::NeedsApproval(policy))) => conflict(format!(
                    "an approval policy ({} approvals) now governs {path}; the candidate cannot \
                     become its next version without approval",
                    policy.approvals_required
                )),
                Err(e) => e,
            },
            Err(e) => e,
        };
        let stored = self.rollout(&next.id).await?;
        if stored.version == version && stored.rollout.status.is_active() {
            let halt = Halt {
                reason: format!("completion refused: {}", refused.message),
                instances: Vec::new(),
            };
            let paused = if stored.rollout.status == Status::Paused {
                let mut same = stored.rollout.clone();
                same.halted = Some(halt);
                Next::Record(same)
            } else {
                step(
                    &stored.rollout,
                    Steer::Pause,
                    self.unix_now_ms(),
                    actor.name.clone(),
                    Some(halt),
                )?
            };
            if let Next::Record(paused) = paused {
                self.store_rollout(paused, version, "rollout.halt", false, actor)
                    .await?;
            }
        }
        Err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stages: Vec<u8>) -> Rollout {
        Rollout {
            id: "roll_t".into(),
            path: "/app/x".into(),
            value: serde_json::json!(1),
            format: Format::Json,
            stable_version: 1,
            canary: None,
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

    #[test]
    fn steps_move_stages_and_refuse_what_does_not_apply() {
        let r = record(vec![10, 100]);
        let Ok(Next::Record(advanced)) = step(&r, Steer::Advance, 5, None, None) else {
            panic!("advance from stage 1 is a record change");
        };
        assert_eq!(advanced.stage, 2);
        assert_eq!(advanced.stage_started_ms, 5);
        assert!(matches!(
            step(&advanced, Steer::Advance, 6, None, None),
            Ok(Next::Complete(done)) if done.status == Status::Completed
        ));
        assert!(step(&r, Steer::Resume, 5, None, None).is_err());
        let Ok(Next::Record(paused)) = step(&r, Steer::Pause, 5, None, None) else {
            panic!("pause");
        };
        assert!(step(&paused, Steer::Pause, 6, None, None).is_err());
        let Ok(Next::Record(resumed)) = step(&paused, Steer::Resume, 9, None, None) else {
            panic!("resume");
        };
        assert_eq!(resumed.stage_started_ms, 9);
        let Ok(Next::Record(back)) = step(&resumed, Steer::Rollback, 10, None, None) else {
            panic!("rollback");
        };
        assert_eq!(back.status, Status::RolledBack);
        assert!(step(&back, Steer::Advance, 11, None, None).is_err());
        assert_eq!(back.transitions.len(), 3);
    }

    #[test]
    fn transitions_stay_bounded() {
        let mut r = record(vec![100]);
        for _ in 0..(MAX_TRANSITIONS as u64 * 2) {
            let steer = if r.status == Status::Paused {
                Steer::Resume
            } else {
                Steer::Pause
            };
            let Ok(Next::Record(next)) = step(&r, steer, 0, None, None) else {
                panic!("pause/resume");
            };
            r = next;
        }
        assert_eq!(r.transitions.len(), MAX_TRANSITIONS);
    }
}

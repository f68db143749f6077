//! Environments on top of the config model.
//!
//! A definition is an ordinary versioned JSON entry at `/env/{name}` written through
//! [`Configs::commit_from`] with [`Origin::Environments`] — the only way to write one — so it has
//! history, diffs, and reaches every edge on the replication stream like any config. Checks
//! (name, variables, the parent exists, no cycle) run here against the definitions read from the
//! store; callers serialize environment updates (the API holds one lock) so two concurrent
//! updates cannot form a cycle together.

use setpoint_core::env::{self, Environment, Environments};
use setpoint_core::{ConfigPath, Format, ParsedValue, Version};

use super::records::{self, Pointer};
use super::{Actor, Attempt, Change, Commit, Configs, Extra, Origin, Outcome, PutChange, Update};
use crate::error::{Error, ErrorCode};
use crate::store::{Compare, CompareOp, KeyValue, RangeRequest, Read, Revision, TxnOp};

const GUARD: &str = "environments";

/// One environment as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentView {
    pub name: String,
    pub environment: Environment,
    pub version: Version,
    pub revision: i64,
    pub updated_at: String,
}

impl Configs {
    pub(super) async fn definition_pointer(
        &self,
        name: &str,
    ) -> Result<Option<(KeyValue, Pointer)>, Error> {
        let path = env::definition_path(name)?;
        self.read_pointer(&self.keys.pointer(&path)).await
    }

    /// Every live environment, by name.
    pub async fn environments(&self) -> Result<Vec<EnvironmentView>, Error> {
        let root = ConfigPath::parse(&format!("/{}", env::ENV_SEGMENT))?;
        let listing = self.list(&root, false).await?;
        let mut out = Vec::new();
        for name in listing.children {
            if let Some(view) = self.environment(&name).await? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// One live environment.
    pub async fn environment(&self, name: &str) -> Result<Option<EnvironmentView>, Error> {
        let path = env::definition_path(name)?;
        let Some(entry) = self.current(&path).await? else {
            return Ok(None);
        };
        let Some(value) = entry.value else {
            return Ok(None);
        };
        let environment = Environment::from_json(value.structured())?;
        Ok(Some(EnvironmentView {
            name: name.to_owned(),
            environment,
            version: entry.version,
            revision: entry.revision,
            updated_at: entry.meta.updated_at,
        }))
    }

    /// The guard's mod revision and the hierarchy as of it.
    async fn hierarchy(&self) -> Result<(Revision, Environments), Error> {
        let guard = self.keys.guard(GUARD);
        let set = self.store.read(vec![Read::Get(guard)]).await?;
        let revision = set
            .results
            .first()
            .and_then(|kvs| kvs.first())
            .map_or(0, |kv| kv.mod_revision);
        // Read after the guard: a definition changed since shows as a newer guard at commit,
        // whose compare then fails.
        let hierarchy = Environments::from_definitions(
            self.environments()
                .await?
                .into_iter()
                .map(|view| (view.name, view.environment, view.version)),
        );
        Ok((revision, hierarchy))
    }

    /// Commits one definition change guarded by `guard_revision`, plus `extra`'s compares.
    async fn commit_definition(
        &self,
        change: Change,
        guard_revision: Revision,
        mut extra: Extra,
        actor: &Actor,
    ) -> Result<Option<super::Committed>, Error> {
        let guard = self.keys.guard(GUARD);
        extra.compares.push(Compare::mod_revision(
            guard.clone(),
            CompareOp::Equal,
            guard_revision,
        ));
        extra.writes.push(TxnOp::Put {
            key: guard,
            value: change.path().as_str().as_bytes().to_vec(),
        });
        let commit = Commit {
            origin: Origin::Environments,
            ..Commit::default()
        };
        let changes = [change];
        super::check_batch(&commit, &changes)?;
        match self
            .attempt(&commit, &changes, &[None], actor, &extra)
            .await?
        {
            Attempt::Done(Outcome::Committed(committed)) => Ok(Some(committed)),
            Attempt::Done(Outcome::NeedsApproval(_)) => {
                Err(Error::internal("a definition change met the gate"))
            }
            Attempt::Lost => Ok(None),
        }
    }

    /// Creates or replaces an environment after checking it against the others.
    pub async fn put_environment(
        &self,
        name: &str,
        environment: Environment,
        actor: &Actor,
    ) -> Result<super::Committed, Error> {
        let path = env::definition_path(name)?;
        for _ in 0..super::COMMIT_ATTEMPTS {
            let (guard, hierarchy) = self.hierarchy().await?;
            hierarchy.check_update(name, &environment)?;
            let value = ParsedValue::from_request(environment.to_json(), Some(Format::Json))?;
            let change = Change::Put(Box::new(PutChange {
                path: path.clone(),
                value,
                description: Update::from_option(Some(environment.description.clone())),
                owner: Update::Keep,
                schema: Update::Keep,
                validators: Update::Keep,
                if_match: None,
            }));
            if let Some(committed) = self
                .commit_definition(change, guard, Extra::default(), actor)
                .await?
            {
                return Ok(committed);
            }
        }
        Err(super::too_much_contention())
    }

    /// Deletes an environment that no other environment inherits from and that holds no
    /// overrides (409 naming what is in the way otherwise).
    pub async fn delete_environment(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<super::Committed, Error> {
        let path = env::definition_path(name)?;
        for _ in 0..super::COMMIT_ATTEMPTS {
            let (guard, hierarchy) = self.hierarchy().await?;
            if hierarchy.get(name).is_none() {
                return Err(Error::not_found(format!(
                    "environment {name} does not exist"
                )));
            }
            let children = hierarchy.children_of(name);
            if !children.is_empty() {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "environment {name} is the parent of {}; change or delete those first",
                        children.join(", ")
                    ),
                ));
            }
            let below = self.keys.pointers_below(&path);
            let overrides = self.store.range(RangeRequest::prefix(&below)).await?;
            let mut live = 0usize;
            for kv in &overrides.kvs {
                let pointer: Pointer = records::decode_json(&kv.key, &kv.value)?;
                if !pointer.deleted {
                    live += 1;
                }
            }
            if live > 0 {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "environment {name} still holds {live} override(s) under {path}/; delete them first"
                    ),
                ));
            }
            // No override may appear between that count and the delete.
            let extra = Extra {
                compares: vec![Compare::mod_revision_prefix(
                    &below,
                    CompareOp::Less,
                    overrides.revision + 1,
                )],
                writes: Vec::new(),
            };
            let change = Change::Delete {
                path: path.clone(),
                if_match: None,
            };
            if let Some(committed) = self.commit_definition(change, guard, extra, actor).await? {
                return Ok(committed);
            }
        }
        Err(super::too_much_contention())
    }

    /// Creates each of `names` that was never defined (a deleted default stays deleted).
    pub async fn ensure_environments(&self, names: &[String]) -> Result<(), Error> {
        for name in names {
            if self.definition_pointer(name).await?.is_some() {
                continue;
            }
            let environment = Environment::default();
            match self
                .put_environment(name, environment, &Actor::system())
                .await
            {
                Ok(_) => tracing::info!(environment = %name, "created default environment"),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

//! Service accounts on top of the config model.
//!
//! An account is the JSON entry `/_setpoint/accounts/{id}` ([`setpoint_core::auth::Account`]),
//! written only here (through [`Origin::System`]), so it is versioned, audited and replicated
//! to every edge like any config; it holds key hashes only. The key itself exists once: in the
//! answer to the call that made it (or the bootstrap key file).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use rand::TryRng as _;
use setpoint_core::auth::{self, Account, Action, Grant, Grants, KeyRecord, NewKey};
use setpoint_core::{ConfigPath, Format, ParsedValue};

use super::{Actor, Change, Configs, Origin, PutChange, Update};
use crate::error::{Error, ErrorCode};

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A new key from the operating system's randomness.
pub fn generate_key(now: i64, expires_at: Option<i64>) -> Result<NewKey, Error> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 9];
    let mut rng = rand::rngs::SysRng;
    rng.try_fill_bytes(&mut secret)
        .and_then(|()| rng.try_fill_bytes(&mut id))
        .map_err(|e| Error::internal(format!("no randomness for a key: {e}")))?;
    Ok(auth::new_key(&secret, &id, now, expires_at))
}

/// An account that can administer everything now: enabled, admin on `/`, a usable key.
fn is_working_admin(account: &Account, now: i64) -> bool {
    !account.disabled
        && Grants::parse(&account.grants)
            .is_ok_and(|g| g.allows(&ConfigPath::root(), Action::Admin))
        && account
            .keys
            .iter()
            .any(|k| !k.revoked && k.expires_at.is_none_or(|at| at > now))
}

fn parse_grants(grants: &[Grant]) -> Result<(), Error> {
    Grants::parse(grants)
        .map(|_| ())
        .map_err(|e| Error::bad_request(e.to_string()))
}

impl Configs {
    fn account_path(id: &str) -> Result<ConfigPath, Error> {
        auth::check_account_id(id).map_err(Error::bad_request)?;
        auth::account_path(id).ok_or_else(|| Error::bad_request(format!("bad account id {id:?}")))
    }

    /// One account as stored (`None` when it never existed or was deleted).
    pub async fn account(&self, id: &str) -> Result<Option<(Account, u64)>, Error> {
        let path = Configs::account_path(id)?;
        let Some(entry) = self.current(&path).await? else {
            return Ok(None);
        };
        let Some(value) = entry.value else {
            return Ok(None);
        };
        let account: Account = serde_json::from_value(value.structured().clone())
            .map_err(|e| Error::internal(format!("account record {path} is corrupt: {e}")))?;
        Ok(Some((account, entry.version)))
    }

    /// Every account, by id.
    pub async fn accounts(&self) -> Result<Vec<Account>, Error> {
        let root = ConfigPath::parse(&format!("/{}/accounts", auth::SYSTEM_SEGMENT))?;
        let listing = self.list(&root, false).await?;
        let mut out = Vec::new();
        for id in listing.children {
            if let Some((account, _)) = self.account(&id).await? {
                out.push(account);
            }
        }
        Ok(out)
    }

    async fn store_account(
        &self,
        account: &Account,
        version: Option<u64>,
        actor: &Actor,
    ) -> Result<super::Committed, Error> {
        let change = self.account_change(account, version)?;
        self.commit_from(Origin::System, vec![change], actor)
            .await
            .map_err(|error| raced(&account.id, version.is_none(), error))
    }

    /// The put of `account` over the entry at `version` (`None`: it must not exist). The
    /// precondition is the model's own guard, never a caller's `If-Match`: see [`raced`].
    fn account_change(&self, account: &Account, version: Option<u64>) -> Result<Change, Error> {
        let path = Configs::account_path(&account.id)?;
        let value = ParsedValue::from_request(
            serde_json::to_value(account).map_err(|e| Error::internal(e.to_string()))?,
            Some(Format::Json),
        )?;
        let change = Change::Put(Box::new(PutChange {
            path,
            value,
            description: Update::Keep,
            owner: Update::Keep,
            schema: Update::Keep,
            validators: Update::Keep,
            if_match: Some(match version {
                Some(v) => super::Precondition::Version(v),
                None => super::Precondition::Version(0),
            }),
        }));
        Ok(change)
    }

    /// Creates an account with one key; returns the account and the key's token (shown once).
    pub async fn create_account(
        &self,
        id: &str,
        description: Option<String>,
        grants: Vec<Grant>,
        expires_at: Option<i64>,
        actor: &Actor,
    ) -> Result<(Account, NewKey), Error> {
        Configs::account_path(id)?;
        parse_grants(&grants)?;
        if self.account(id).await?.is_some() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("account {id} already exists"),
            ));
        }
        let key = generate_key(self.unix_now(), expires_at)?;
        let account = Account {
            id: id.to_owned(),
            description,
            grants,
            keys: vec![key.record.clone()],
            disabled: false,
        };
        self.store_account(&account, None, actor).await?;
        Ok((account, key))
    }

    /// Changes an account with `edit`, guarded by the version read. A change that could leave
    /// no working admin (grants, revocation) goes through [`Configs::keep_an_admin`].
    async fn edit_account<T>(
        &self,
        id: &str,
        actor: &Actor,
        edit: impl FnOnce(&mut Account) -> Result<T, Error>,
    ) -> Result<(Account, T), Error> {
        let (mut account, version) = self
            .account(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {id} does not exist")))?;
        let out = edit(&mut account)?;
        self.store_account(&account, Some(version), actor).await?;
        Ok((account, out))
    }

    /// Commits `change` to account `id` (its new state `after`, `None` when deleted) only if some
    /// account can still administer everything afterwards: a live root admin with a usable key.
    /// The commit compares every account record, so two admins removing themselves at once
    /// (through any writers) cannot both succeed.
    async fn keep_an_admin(
        &self,
        id: &str,
        after: Option<&Account>,
        change: Change,
        actor: &Actor,
    ) -> Result<(), Error> {
        let root = ConfigPath::parse(&format!("/{}/accounts", auth::SYSTEM_SEGMENT))?;
        let below = self.keys.pointers_below(&root);
        let pointers = self
            .store
            .range(crate::store::RangeRequest::prefix(&below))
            .await?;
        let now = self.unix_now();
        let mut working = after.is_some_and(|a| is_working_admin(a, now));
        for kv in &pointers.kvs {
            if working {
                break;
            }
            let Some(path) = self.keys.path_of_pointer(&kv.key) else {
                continue;
            };
            let Some(other) = path.segments().last().filter(|other| *other != id) else {
                continue;
            };
            if let Some((account, _)) = self.account(other).await? {
                working = is_working_admin(&account, now);
            }
        }
        if !working {
            return Err(Error::new(
                ErrorCode::Conflict,
                "this would leave no account able to administer Setpoint (a root admin, enabled, \
                 with a usable key); grant another account admin on / first",
            ));
        }
        let extra = super::Extra {
            compares: vec![crate::store::Compare::mod_revision_prefix(
                &below,
                crate::store::CompareOp::Less,
                pointers.revision + 1,
            )],
            writes: Vec::new(),
        };
        let commit = super::Commit {
            origin: Origin::System,
            ..super::Commit::default()
        };
        let changes = [change];
        super::check_batch(&commit, &changes)?;
        match self
            .attempt(&commit, &changes, &[None], actor, &extra)
            .await
            .map_err(|error| raced(id, false, error))?
        {
            super::Attempt::Done(_) => Ok(()),
            super::Attempt::Lost => Err(Error::new(
                ErrorCode::Conflict,
                "accounts changed meanwhile; retry",
            )),
        }
    }

    pub async fn set_grants(
        &self,
        id: &str,
        grants: Vec<Grant>,
        actor: &Actor,
    ) -> Result<Account, Error> {
        parse_grants(&grants)?;
        let (mut account, version) = self
            .account(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {id} does not exist")))?;
        account.grants = grants;
        let change = self.account_change(&account, Some(version))?;
        self.keep_an_admin(id, Some(&account), change, actor)
            .await?;
        Ok(account)
    }

    /// A new key; every other live key stays valid for `grace` seconds more at most.
    pub async fn rotate_key(
        &self,
        id: &str,
        grace: i64,
        expires_at: Option<i64>,
        actor: &Actor,
    ) -> Result<(Account, NewKey), Error> {
        let now = self.unix_now();
        let key = generate_key(now, expires_at)?;
        let record = key.record.clone();
        let (account, ()) = self
            .edit_account(id, actor, |account| {
                for old in account.keys.iter_mut().filter(|k| !k.revoked) {
                    let until = now + grace.max(0);
                    old.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
                }
                account.keys.push(record);
                Ok(())
            })
            .await?;
        Ok((account, key))
    }

    pub async fn revoke_key(
        &self,
        id: &str,
        key_id: &str,
        actor: &Actor,
    ) -> Result<Account, Error> {
        let (mut account, version) = self
            .account(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {id} does not exist")))?;
        let key = account
            .keys
            .iter_mut()
            .find(|k| k.id == key_id)
            .ok_or_else(|| Error::not_found(format!("account {id} has no key {key_id}")))?;
        key.revoked = true;
        let change = self.account_change(&account, Some(version))?;
        self.keep_an_admin(id, Some(&account), change, actor)
            .await?;
        Ok(account)
    }

    pub async fn delete_account(&self, id: &str, actor: &Actor) -> Result<(), Error> {
        let path = Configs::account_path(id)?;
        if self.account(id).await?.is_none() {
            return Err(Error::not_found(format!("account {id} does not exist")));
        }
        let change = Change::Delete {
            path,
            if_match: None,
        };
        self.keep_an_admin(id, None, change, actor).await
    }

    /// On a store that never had an account: creates `admin` with every right. Its key is read
    /// from `admin_key_file` when given, else generated and written to `write_to` (mode 0600).
    /// Returns where the key is, when one was created.
    pub async fn bootstrap_admin(
        &self,
        admin_key_file: Option<&Path>,
        write_to: &Path,
    ) -> Result<Option<std::path::PathBuf>, Error> {
        let root = ConfigPath::parse(&format!("/{}/accounts", auth::SYSTEM_SEGMENT))?;
        let ever = self
            .store
            .range(crate::store::RangeRequest::prefix(
                &self.keys.pointers_below(&root),
            ))
            .await?;
        if !ever.kvs.is_empty() {
            return Ok(None);
        }
        let now = self.unix_now();
        let (record, location) = match admin_key_file {
            Some(file) => {
                let token = std::fs::read_to_string(file)
                    .map_err(|e| Error::internal(format!("cannot read {}: {e}", file.display())))?
                    .trim()
                    .to_owned();
                let Some(id) = auth::token_key_id(&token) else {
                    return Err(Error::bad_request(format!(
                        "{} does not hold a Setpoint API key (spk_<id>_<secret>)",
                        file.display()
                    )));
                };
                let record = KeyRecord {
                    id: id.to_owned(),
                    hash: auth::hash_token(&token),
                    created_at: now,
                    expires_at: None,
                    revoked: false,
                };
                (record, file.to_path_buf())
            }
            None => {
                let key = generate_key(now, None)?;
                write_key_file(write_to, &key.token)?;
                (key.record, write_to.to_path_buf())
            }
        };
        let account = Account {
            id: "admin".into(),
            description: Some("created at first start".into()),
            grants: vec![Grant {
                prefix: "/".into(),
                actions: BTreeSet::from([Action::Admin]),
            }],
            keys: vec![record],
            disabled: false,
        };
        self.store_account(&account, None, &Actor::system()).await?;
        Ok(Some(location))
    }
}

/// Writes `token` to `path`, readable by the owner only.
fn write_key_file(path: &Path, token: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(format!("{token}\n").as_bytes())
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}

/// An account write lost to another write of the same account between its read and its
/// commit: the version it was guarded by moved on. That is a 409 the caller can retry (or, for
/// a creation, the account now exists), never the guard's own 412 — no `If-Match` of the
/// caller's failed, and the internal record's path and versions are not the caller's business.
fn raced(id: &str, creating: bool, error: Error) -> Error {
    if error.code != ErrorCode::PreconditionFailed {
        return error;
    }
    let message = if creating {
        format!("account {id} already exists")
    } else {
        format!("account {id} changed meanwhile; retry")
    };
    Error::new(ErrorCode::Conflict, message)
}

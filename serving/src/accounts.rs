//! The accounts a node authenticates against, from its snapshot: the writer's read model or an
//! edge's replicated snapshot (`/_setpoint/accounts/{id}` entries, key hashes only).
//!
//! Most commits touch no account, and one that does touches one: [`AccountsCache::get`] keeps
//! each record's parsed account while the record is unchanged (same entry, or the same version
//! and revision after a reload) and reuses the whole index when no record changed, so a commit
//! costs a walk over the account records, never a re-parse of every account.
//!
//! [`AccountsCache::authenticate`] also remembers, per accounts index, the keys it verified: a
//! repeat caller costs a lookup by its key's public id and a constant-time compare of the
//! whole token with the one verified before — no SHA-256. A new index (any account record
//! changed: a key revoked, an account disabled or deleted) starts with nothing remembered, and
//! a remembered key past its expiry is checked in full again (and refused as expired), so the
//! answer is always the one `Accounts::authenticate` would give.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;
use setpoint_core::Revision;
use setpoint_core::auth::{
    Accounts, AuthError, ParsedAccount, Principal, accounts_root, token_key_id,
};
use setpoint_core::snapshot::{Entry, Snapshot};

/// Parsed accounts of the newest snapshot asked about.
#[derive(Default)]
pub struct AccountsCache {
    cached: ArcSwapOption<Cached>,
}

struct Cached {
    revision: Revision,
    /// Every account record of that snapshot with what it parsed to (`None`: it does not
    /// parse, and authenticates nobody), in path order.
    records: Vec<(Arc<Entry>, Option<ParsedAccount>)>,
    accounts: Arc<Accounts>,
    /// Keys verified against `accounts` (shared by every revision with the same index).
    verified: Arc<VerifiedKeys>,
}

/// Tokens verified against one accounts index, by key id; at most one per key of the index.
#[derive(Default)]
struct VerifiedKeys {
    by_id: RwLock<HashMap<String, Verified>>,
}

struct Verified {
    /// The whole token that verified: a caller must present exactly it (compared in constant
    /// time) to skip the hash.
    token: Box<[u8]>,
    principal: Arc<Principal>,
    expires_at: Option<i64>,
}

impl VerifiedKeys {
    fn authenticate(
        &self,
        accounts: &Accounts,
        token: &str,
        now: i64,
    ) -> Result<Arc<Principal>, AuthError> {
        use subtle::ConstantTimeEq;
        let Some(id) = token_key_id(token) else {
            return accounts.authenticate(token, now).map(Arc::new);
        };
        if let Ok(by_id) = self.by_id.read()
            && let Some(known) = by_id.get(id)
            && known.expires_at.is_none_or(|at| now < at)
            && bool::from(known.token.as_ref().ct_eq(token.as_bytes()))
        {
            return Ok(known.principal.clone());
        }
        let principal = Arc::new(accounts.authenticate(token, now)?);
        if let Ok(mut by_id) = self.by_id.write() {
            by_id.insert(
                id.to_owned(),
                Verified {
                    token: token.as_bytes().into(),
                    principal: principal.clone(),
                    expires_at: accounts.key_expires_at(id),
                },
            );
        }
        Ok(principal)
    }
}

fn same_record(a: &Arc<Entry>, b: &Arc<Entry>) -> bool {
    Arc::ptr_eq(a, b) || (a.version == b.version && a.revision == b.revision && a.path == b.path)
}

impl AccountsCache {
    /// The accounts of `snapshot`.
    pub fn get(&self, snapshot: &Snapshot) -> Arc<Accounts> {
        self.current(snapshot).accounts.clone()
    }

    /// Checks `token` at unix time `now` against the accounts of `snapshot`: what
    /// `Accounts::authenticate` answers, without hashing a key verified before against the same
    /// accounts.
    pub fn authenticate(
        &self,
        snapshot: &Snapshot,
        token: &str,
        now: i64,
    ) -> Result<Principal, AuthError> {
        self.authenticate_shared(snapshot, token, now)
            .map(|principal| (*principal).clone())
    }

    /// [`AccountsCache::authenticate`], the principal shared with the cache (no copy per
    /// request).
    pub fn authenticate_shared(
        &self,
        snapshot: &Snapshot,
        token: &str,
        now: i64,
    ) -> Result<Arc<Principal>, AuthError> {
        let cached = self.current(snapshot);
        cached.verified.authenticate(&cached.accounts, token, now)
    }

    fn current(&self, snapshot: &Snapshot) -> Arc<Cached> {
        let cached = self.cached.load_full();
        if let Some(cached) = &cached
            && cached.revision == snapshot.revision()
        {
            return cached.clone();
        }
        let Some(root) = accounts_root() else {
            return Arc::new(Cached {
                revision: snapshot.revision(),
                records: Vec::new(),
                accounts: Arc::default(),
                verified: Arc::default(),
            });
        };
        let before: HashMap<&str, &(Arc<Entry>, Option<ParsedAccount>)> = cached
            .iter()
            .flat_map(|c| c.records.iter())
            .map(|record| (record.0.path.as_str(), record))
            .collect();
        let mut reused = 0;
        let records: Vec<(Arc<Entry>, Option<ParsedAccount>)> = snapshot
            .below(&root)
            .map(|entry| match before.get(entry.path.as_str()) {
                Some((old, parsed)) if same_record(old, entry) => {
                    reused += 1;
                    (entry.clone(), parsed.clone())
                }
                _ => (entry.clone(), ParsedAccount::parse(entry)),
            })
            .collect();
        let unchanged = reused == records.len() && before.len() == records.len();
        let (accounts, verified) = match &cached {
            Some(cached) if unchanged => (cached.accounts.clone(), cached.verified.clone()),
            _ => (
                Arc::new(Accounts::from_parsed(
                    records.iter().filter_map(|(_, parsed)| parsed.as_ref()),
                )),
                Arc::default(),
            ),
        };
        let current = Arc::new(Cached {
            revision: snapshot.revision(),
            records,
            accounts,
            verified,
        });
        self.cached.store(Some(current.clone()));
        current
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use setpoint_core::auth::{Account, Action, AuthError, Grant, KeyRecord, new_key};
    use setpoint_core::snapshot::{Batch, Change, ChangeKind};
    use setpoint_core::{ConfigPath, Format, ParsedValue};

    fn account_change(id: &str, key: &KeyRecord) -> Change {
        let account = Account {
            id: id.into(),
            description: None,
            grants: vec![Grant {
                prefix: "/a".into(),
                actions: [Action::Read].into(),
            }],
            keys: vec![key.clone()],
            disabled: false,
        };
        Change {
            path: ConfigPath::parse(&format!("/_setpoint/accounts/{id}")).unwrap(),
            version: 1,
            updated_at: String::new(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_request(
                    serde_json::to_value(&account).unwrap(),
                    Some(Format::Json),
                )
                .unwrap(),
            },
        }
    }

    fn other_change(revision: i64) -> Change {
        Change {
            path: ConfigPath::parse("/a/x").unwrap(),
            version: u64::try_from(revision).unwrap(),
            updated_at: String::new(),
            kind: ChangeKind::Put {
                value: ParsedValue::from_stored(Format::Text, "x").unwrap(),
            },
        }
    }

    fn apply(snapshot: &Snapshot, revision: i64, changes: Vec<Change>) -> Snapshot {
        snapshot
            .apply(&Batch {
                revision,
                committed_at_micros: 0,
                changes,
            })
            .unwrap()
            .0
    }

    fn parsed_of(cache: &AccountsCache, id: &str) -> Arc<Account> {
        let cached = cache.cached.load_full().unwrap();
        let record = cached
            .records
            .iter()
            .find(|(entry, _)| entry.path.as_str().ends_with(id))
            .unwrap();
        record.1.as_ref().unwrap().account.clone()
    }

    #[test]
    fn the_cache_rebuilds_only_when_account_records_change() {
        let key = new_key(&[1; 32], &[2; 9], 0, None);
        let cache = AccountsCache::default();
        let s1 = apply(
            &Snapshot::empty(),
            1,
            vec![account_change("svc", &key.record)],
        );
        let first = cache.get(&s1);
        assert!(first.authenticate(&key.token, 1).is_ok());
        let s2 = apply(&s1, 2, vec![other_change(2)]);
        assert!(Arc::ptr_eq(&first, &cache.get(&s2)), "reused");
        let mut revoked = key.record.clone();
        revoked.revoked = true;
        let s3 = apply(&s2, 3, vec![account_change("svc", &revoked)]);
        let third = cache.get(&s3);
        assert!(!Arc::ptr_eq(&first, &third), "rebuilt");
        assert_eq!(
            third.authenticate(&key.token, 1).unwrap_err(),
            AuthError::Revoked
        );
    }

    #[test]
    fn a_change_to_one_account_reparses_only_that_one() {
        let one = new_key(&[1; 32], &[2; 9], 0, None);
        let two = new_key(&[3; 32], &[4; 9], 0, None);
        let cache = AccountsCache::default();
        let s1 = apply(
            &Snapshot::empty(),
            1,
            vec![
                account_change("one", &one.record),
                account_change("two", &two.record),
            ],
        );
        cache.get(&s1);
        let (one_before, two_before) = (parsed_of(&cache, "one"), parsed_of(&cache, "two"));
        let mut revoked = two.record.clone();
        revoked.revoked = true;
        let s2 = apply(&s1, 2, vec![account_change("two", &revoked)]);
        let accounts = cache.get(&s2);
        assert!(Arc::ptr_eq(&one_before, &parsed_of(&cache, "one")), "kept");
        assert!(
            !Arc::ptr_eq(&two_before, &parsed_of(&cache, "two")),
            "re-parsed"
        );
        assert!(accounts.authenticate(&one.token, 1).is_ok());
        assert_eq!(
            accounts.authenticate(&two.token, 1).unwrap_err(),
            AuthError::Revoked
        );
    }

    #[test]
    fn a_remembered_key_answers_as_a_full_check_would() {
        let key = new_key(&[1; 32], &[2; 9], 0, Some(100));
        let cache = AccountsCache::default();
        let s1 = apply(
            &Snapshot::empty(),
            1,
            vec![account_change("svc", &key.record)],
        );
        assert_eq!(
            cache.authenticate(&s1, &key.token, 1).unwrap().account,
            "svc"
        );
        // Remembered now: the same token again, and across a commit that touches no account.
        assert_eq!(
            cache.authenticate(&s1, &key.token, 2).unwrap().account,
            "svc"
        );
        let s2 = apply(&s1, 2, vec![other_change(2)]);
        assert_eq!(
            cache.authenticate(&s2, &key.token, 3).unwrap().account,
            "svc"
        );
        // Same key id, another secret: not the remembered token, so checked in full and refused.
        let forged = format!("{}A", &key.token[..key.token.len() - 1]);
        assert_ne!(forged, key.token);
        assert_eq!(
            cache.authenticate(&s2, &forged, 3).unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(
            cache.authenticate(&s2, &key.token, 4).unwrap().account,
            "svc"
        );
        // Past its expiry a remembered key is refused as expired.
        assert_eq!(
            cache.authenticate(&s2, &key.token, 100).unwrap_err(),
            AuthError::Expired
        );
        // Revoked: a new index, which remembers nothing.
        let mut revoked = key.record.clone();
        revoked.revoked = true;
        let s3 = apply(&s2, 3, vec![account_change("svc", &revoked)]);
        assert_eq!(
            cache.authenticate(&s3, &key.token, 5).unwrap_err(),
            AuthError::Revoked
        );
    }

    #[test]
    fn a_reload_with_the_same_records_keeps_the_index() {
        let key = new_key(&[1; 32], &[2; 9], 0, None);
        let cache = AccountsCache::default();
        let s1 = apply(
            &Snapshot::empty(),
            1,
            vec![account_change("svc", &key.record)],
        );
        let first = cache.get(&s1);
        // A fresh load: equal entries in new allocations, at a later revision.
        let reloaded = Snapshot::from_entries(5, s1.entries().map(|e| (**e).clone()));
        assert!(Arc::ptr_eq(&first, &cache.get(&reloaded)));
        let deleted = apply(
            &reloaded,
            6,
            vec![Change {
                path: ConfigPath::parse("/_setpoint/accounts/svc").unwrap(),
                version: 2,
                updated_at: String::new(),
                kind: ChangeKind::Delete,
            }],
        );
        assert_eq!(
            cache.get(&deleted).authenticate(&key.token, 1).unwrap_err(),
            AuthError::Unknown
        );
    }
}

//! Service accounts, API keys and grants: who may do what where.
//!
//! An account is stored as an ordinary versioned JSON entry at `/_setpoint/accounts/{id}` (the
//! reserved `_setpoint` namespace, written only by the accounts API), so it reaches every edge on
//! the replication stream and a revocation propagates like any change. It holds key *hashes*
//! only: a key is `spk_{key id}_{secret}` (the secret is 32 random bytes, base64url), and the
//! record keeps SHA-256 of the whole key. Lookup is by key id; the comparison of hashes is
//! constant-time.
//!
//! Grants are `{prefix, actions}`; for a path, the grant with the longest prefix that contains
//! it decides (a deeper grant with fewer actions takes rights away). `admin` implies every
//! other action on its prefix. The `_setpoint` namespace needs `admin` on `/`. An effective
//! read (in an environment) needs the right on every layer it reveals ([`EffectiveGrants`]).
//!
//! Pure: randomness and the clock come in as arguments.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::Snapshot;
use crate::value::ApiValue;
use crate::{ConfigPath, ParsedValue};

mod effective;

pub use effective::EffectiveGrants;

/// The reserved first segment of system records.
pub const SYSTEM_SEGMENT: &str = "_setpoint";
const TOKEN_PREFIX: &str = "spk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "read")]
    Read,
    #[serde(rename = "write")]
    Write,
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "secrets:read")]
    SecretsRead,
    #[serde(rename = "approve")]
    Approve,
    #[serde(rename = "rollout")]
    Rollout,
    #[serde(rename = "admin")]
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::SecretsRead => "secrets:read",
            Action::Approve => "approve",
            Action::Rollout => "rollout",
            Action::Admin => "admin",
        }
    }
}

/// Actions on every path at or below `prefix`, unless a longer grant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub prefix: String,
    pub actions: BTreeSet<Action>,
}

/// An account's grants, checked against paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Parsed prefixes, longest first.
    grants: Vec<(ConfigPath, BTreeSet<Action>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("grant prefix {prefix:?} is not a valid path: {reason}")]
    InvalidPrefix { prefix: String, reason: String },
    #[error("prefix {prefix} is granted twice")]
    Duplicate { prefix: String },
}

impl Grants {
    pub fn parse(grants: &[Grant]) -> Result<Grants, GrantError> {
        let mut parsed: Vec<(ConfigPath, BTreeSet<Action>)> = Vec::with_capacity(grants.len());
        for grant in grants {
            let prefix = if grant.prefix.trim_matches('/').is_empty() {
                ConfigPath::root()
            } else {
                ConfigPath::parse(&grant.prefix).map_err(|e| GrantError::InvalidPrefix {
                    prefix: grant.prefix.clone(),
                    reason: e.to_string(),
                })?
            };
            if parsed.iter().any(|(p, _)| *p == prefix) {
                return Err(GrantError::Duplicate {
                    prefix: prefix.to_string(),
                });
            }
            parsed.push((prefix, grant.actions.clone()));
        }
        parsed.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.segment_count()));
        Ok(Grants { grants: parsed })
    }

    /// Every right everywhere (the bootstrap admin, anonymous loopback in `setpoint dev`).
    pub fn all() -> Grants {
        Grants {
            grants: vec![(ConfigPath::root(), BTreeSet::from([Action::Admin]))],
        }
    }

    /// The actions of the longest grant containing `path`.
    fn deciding(&self, path: &ConfigPath) -> Option<&BTreeSet<Action>> {
        self.grants
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, actions)| actions)
    }

    fn grants_action(actions: &BTreeSet<Action>, action: Action) -> bool {
        actions.contains(&action) || actions.contains(&Action::Admin)
    }

    /// May `action` be done on `path`?
    pub fn allows(&self, path: &ConfigPath, action: Action) -> bool {
        if is_system(path) {
            return self.is_admin();
        }
        self.deciding(path)
            .is_some_and(|actions| Grants::grants_action(actions, action))
    }

    /// May `action` be done on `prefix` and on every path below it (no deeper grant takes it
    /// away)? For watches and bundles of a whole subtree.
    pub fn allows_all_below(&self, prefix: &ConfigPath, action: Action) -> bool {
        if !self.allows(prefix, action) {
            return false;
        }
        let system_below = prefix.is_root();
        if system_below && !self.is_admin() {
            return false;
        }
        self.grants
            .iter()
            .filter(|(p, _)| p.starts_with(prefix) && p != prefix)
            .all(|(_, actions)| Grants::grants_action(actions, action))
    }

    /// May the caller see that something exists below `prefix` it could act on at all? Used to
    /// filter listings: a child is shown when the caller can read it or something below it.
    pub fn can_read_somewhere_below(&self, prefix: &ConfigPath) -> bool {
        if is_system(prefix) {
            return self.is_admin();
        }
        self.allows(prefix, Action::Read)
            || self.grants.iter().any(|(p, actions)| {
                p.starts_with(prefix) && Grants::grants_action(actions, Action::Read)
            })
    }

    /// `admin` on `/`.
    pub fn is_admin(&self) -> bool {
        self.grants
            .iter()
            .find(|(prefix, _)| prefix.is_root())
            .is_some_and(|(_, actions)| actions.contains(&Action::Admin))
    }
}

/// One API key of an account, as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the key is refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub revoked: bool,
}

/// A service account as stored at `/_setpoint/accounts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub grants: Vec<Grant>,
    pub keys: Vec<KeyRecord>,
    #[serde(default)]
    pub disabled: bool,
}

/// `/_setpoint/accounts/{id}`.
pub fn account_path(id: &str) -> Option<ConfigPath> {
    check_account_id(id).ok()?;
    ConfigPath::parse(&format!("/{SYSTEM_SEGMENT}/accounts/{id}")).ok()
}

/// Account ids: 1-63 of `a-z`, `0-9`, `-`, `_`, `.`, starting alphanumeric.
pub fn check_account_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "account id {id:?} is not valid: use 1-63 of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"
        ))
    }
}

/// True for paths in the reserved `_setpoint` namespace.
pub fn is_system(path: &ConfigPath) -> bool {
    path.segments().next() == Some(SYSTEM_SEGMENT)
}

/// An account record's path, `/_setpoint/accounts/{id}`.
pub fn is_account_record(path: &ConfigPath) -> bool {
    let mut segments = path.segments();
    segments.next() == Some(SYSTEM_SEGMENT)
        && segments.next() == Some("accounts")
        && segments.next().is_some()
}

/// An account record as reads show it (to admins, the only ones who may read `_setpoint`):
/// every key without its `hash`, as `/api/accounts` shows accounts. The hashes stay in the
/// stored record, where the writer and the edges check keys against them.
pub fn hide_key_hashes(value: &serde_json::Value) -> serde_json::Value {
    let mut shown = value.clone();
    if let Some(keys) = shown
        .get_mut("keys")
        .and_then(serde_json::Value::as_array_mut)
    {
        for key in keys.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            key.remove("hash");
        }
    }
    shown
}

/// `value` stored at `path` as every read shows it: account records without key hashes, every
/// other value as it is. The one rendering the writer's and the edges' reads (HTTP and gRPC)
/// share.
pub fn shown_value<'a>(path: &ConfigPath, value: &'a ParsedValue) -> ApiValue<'a> {
    match value.api_value() {
        ApiValue::Json(json) if is_account_record(path) => ApiValue::AccountRecord(json),
        shown => shown,
    }
}

/// A freshly made key: the token to hand out once, and what to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    pub token: String,
    pub record: KeyRecord,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("token", &"[redacted]")
            .field("record", &self.record)
            .finish()
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Makes a key from 32 bytes of secret entropy and 9 bytes for its id, created at `now`.
pub fn new_key(
    secret: &[u8; 32],
    id_entropy: &[u8; 9],
    now: i64,
    expires_at: Option<i64>,
) -> NewKey {
    let id = base64url(id_entropy)
        .replace(['-', '_'], "x")
        .to_ascii_lowercase();
    let token = format!("{TOKEN_PREFIX}{id}_{}", base64url(secret));
    NewKey {
        record: KeyRecord {
            id,
            hash: hash_token(&token),
            created_at: now,
            expires_at,
            revoked: false,
        },
        token,
    }
}

/// The key id inside a token, when it has the key shape.
pub fn token_key_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let shaped = !id.is_empty()
        && id.len() <= 16
        && id.chars().all(|c| c.is_ascii_alphanumeric())
        && secret.len() >= 40
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    shaped.then_some(id)
}

/// Constant-time comparison of a token against a stored hash.
pub fn verify_token(token: &str, hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    let computed = hash_token(token);
    computed.len() == hash.len() && bool::from(computed.as_bytes().ct_eq(hash.as_bytes()))
}

/// Why a request is not authenticated. Every variant is a 401 with the same message to the
/// caller (no oracle for which keys exist); the variant is for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key given")]
    Missing,
    #[error("the API key is malformed")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the account is disabled")]
    Disabled,
}

impl AuthError {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Unknown => "unknown",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
            AuthError::Disabled => "disabled",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account id (`anonymous` for loopback access in `setpoint dev`).
    pub account: String,
    pub key_id: Option<String>,
    /// Shared with the accounts index: cloning a principal per request copies no grants.
    pub grants: Arc<Grants>,
}

impl Principal {
    /// Loopback callers in `setpoint dev`: every right.
    pub fn anonymous() -> Principal {
        Principal {
            account: "anonymous".into(),
            key_id: None,
            grants: Arc::new(Grants::all()),
        }
    }
}

/// Where account records live: `/_setpoint/accounts/{id}`.
pub fn accounts_root() -> Option<ConfigPath> {
    ConfigPath::parse(&format!("/{SYSTEM_SEGMENT}/accounts")).ok()
}

/// One account record, parsed and its grants compiled.
#[derive(Debug, Clone)]
pub struct ParsedAccount {
    pub account: Arc<Account>,
    pub grants: Arc<Grants>,
}

impl ParsedAccount {
    /// `None` for a record that does not parse or whose grants do not compile.
    pub fn parse(entry: &crate::snapshot::Entry) -> Option<ParsedAccount> {
        let account = serde_json::from_value::<Account>(entry.value.structured().clone()).ok()?;
        let grants = Grants::parse(&account.grants).ok()?;
        Some(ParsedAccount {
            account: Arc::new(account),
            grants: Arc::new(grants),
        })
    }
}

/// Every account of a snapshot, indexed by key id.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    by_key: HashMap<String, (Arc<Account>, Arc<Grants>, KeyRecord)>,
    count: usize,
}

impl Accounts {
    /// Reads every account under `/_setpoint/accounts/`. Records that do not parse (written
    /// around the API) are left out: they authenticate nobody.
    pub fn from_snapshot(snapshot: &Snapshot) -> Accounts {
        let Some(root) = accounts_root() else {
            return Accounts::default();
        };
        let parsed: Vec<ParsedAccount> = snapshot
            .below(&root)
            .filter_map(|e| ParsedAccount::parse(e))
            .collect();
        Accounts::from_parsed(&parsed)
    }

    /// The index of accounts parsed before: a cache re-parses only the records that changed.
    pub fn from_parsed<'a>(parsed: impl IntoIterator<Item = &'a ParsedAccount>) -> Accounts {
        let mut accounts = Accounts::default();
        for ParsedAccount { account, grants } in parsed {
            accounts.count += 1;
            for key in &account.keys {
                accounts.by_key.insert(
                    key.id.clone(),
                    (account.clone(), grants.clone(), key.clone()),
                );
            }
        }
        accounts
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// When key `id` expires (`None`: it never does, or there is no such key). A cache of keys
    /// verified against this index needs it: everything else that ends a key (revocation, a
    /// disabled or deleted account) comes with a new index.
    pub fn key_expires_at(&self, id: &str) -> Option<i64> {
        self.by_key.get(id).and_then(|(_, _, key)| key.expires_at)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Checks `token` at unix time `now`.
    pub fn authenticate(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let id = token_key_id(token).ok_or(AuthError::Malformed)?;
        let Some((account, grants, key)) = self.by_key.get(id) else {
            // Spend the same hashing work as a known key would.
            let _ = verify_token(token, "");
            return Err(AuthError::Unknown);
        };
        if !verify_token(token, &key.hash) {
            return Err(AuthError::Unknown);
        }
        if key.revoked {
            return Err(AuthError::Revoked);
        }
        if key.expires_at.is_some_and(|at| now >= at) {
            return Err(AuthError::Expired);
        }
        if account.disabled {
            return Err(AuthError::Disabled);
        }
        Ok(Principal {
            account: account.id.clone(),
            key_id: Some(key.id.clone()),
            grants: grants.clone(),
        })
    }
}

/// Counts failed authentications per source address in fixed windows. Only failures are
/// counted and only failures are refused: past `max` failures in a window, the source's next
/// failures are answered "limited" (429) until the window ends, while a request with a valid key
/// never asks the limiter at all — a caller with a good key is never locked out by someone
/// else's failures from the same address (a NAT, a shared proxy). Bounded: at most
/// [`FailureLimiter::MAX_SOURCES`] sources are tracked.
#[derive(Debug)]
pub struct FailureLimiter {
    max: u32,
    window_secs: i64,
    /// Per source: failures in the window and the window's start.
    sources: std::sync::Mutex<HashMap<std::net::IpAddr, (u32, i64)>>,
}

/// What one more failure from a source comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Within the limit: the `n`th failure of the window (answer 401).
    Counted(u32),
    /// Past the limit: answer 429 and say when the window ends.
    Limited { retry_after_secs: u64 },
}

impl FailureLimiter {
    pub const MAX_SOURCES: usize = 10_000;

    pub fn new(max: u32, window_secs: i64) -> FailureLimiter {
        FailureLimiter {
            max,
            window_secs: window_secs.max(1),
            sources: std::sync::Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, (u32, i64)>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one failed authentication from `source` at `now` and says how to answer it.
    pub fn record_failure(&self, source: std::net::IpAddr, now: i64) -> FailureVerdict {
        let mut sources = self.lock();
        if sources.len() >= FailureLimiter::MAX_SOURCES && !sources.contains_key(&source) {
            self.make_room(&mut sources, now);
        }
        let entry = sources.entry(source).or_insert((0, now));
        if now - entry.1 >= self.window_secs || now < entry.1 {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        if entry.0 <= self.max {
            return FailureVerdict::Counted(entry.0);
        }
        let left = (entry.1 + self.window_secs - now).max(1);
        FailureVerdict::Limited {
            retry_after_secs: u64::try_from(left).unwrap_or(1),
        }
    }

    /// Frees a slot: expired windows go first, then sources still within the limit (forgetting
    /// them costs little), and only when every tracked source is limited, all of them.
    fn make_room(&self, sources: &mut HashMap<std::net::IpAddr, (u32, i64)>, now: i64) {
        let (window, max) = (self.window_secs, self.max);
        sources.retain(|_, (_, start)| now - *start < window);
        if sources.len() >= FailureLimiter::MAX_SOURCES {
            sources.retain(|_, (count, _)| *count > max);
        }
        if sources.len() >= FailureLimiter::MAX_SOURCES {
            sources.clear();
        }
    }

    /// Sources tracked now (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::Entry;
    use crate::{Format, ParsedValue};

    fn grants(list: &[(&str, &[Action])]) -> Grants {
        Grants::parse(
            &list
                .iter()
                .map(|(prefix, actions)| Grant {
                    prefix: (*prefix).into(),
                    actions: actions.iter().copied().collect(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn path(p: &str) -> ConfigPath {
        ConfigPath::parse(p).unwrap()
    }

    #[test]
    fn the_longest_prefix_decides() {
        let g = grants(&[
            ("/myapp", &[Action::Read, Action::Write]),
            ("/myapp/secret", &[]),
            ("/env/prod/myapp", &[Action::Write]),
        ]);
        assert!(g.allows(&path("/myapp/db/host"), Action::Read));
        assert!(g.allows(&path("/myapp"), Action::Write));
        assert!(!g.allows(&path("/myapp/db"), Action::Delete));
        assert!(!g.allows(&path("/myapp/secret/x"), Action::Read));
        assert!(
            !g.allows(&path("/myapp-other"), Action::Read),
            "segments, not bytes"
        );
        assert!(g.allows(&path("/env/prod/myapp/db"), Action::Write));
        assert!(!g.allows(&path("/env/prod/other"), Action::Write));
        assert!(!g.allows(&path("/env/staging/myapp/db"), Action::Write));
        assert!(!g.allows_all_below(&path("/myapp"), Action::Read));
        assert!(g.allows_all_below(&path("/myapp/db"), Action::Read));
        assert!(g.can_read_somewhere_below(&path("/myapp")));
        assert!(!g.can_read_somewhere_below(&path("/other")));
        assert!(g.can_read_somewhere_below(&ConfigPath::root()));
        assert!(!g.can_read_somewhere_below(&path("/_setpoint")));
    }

    #[test]
    fn admin_implies_everything_and_system_needs_root_admin() {
        let scoped = grants(&[("/myapp", &[Action::Admin])]);
        assert!(scoped.allows(&path("/myapp/x"), Action::SecretsRead));
        assert!(!scoped.is_admin());
        assert!(!scoped.allows(&path("/_setpoint/accounts/a"), Action::Read));
        let root = Grants::all();
        assert!(root.is_admin());
        assert!(root.allows(&path("/_setpoint/accounts/a"), Action::Read));
        let reader = grants(&[("/", &[Action::Read])]);
        assert!(!reader.allows(&path("/_setpoint/accounts/a"), Action::Read));
        assert!(!reader.allows_all_below(&ConfigPath::root(), Action::Read));
    }

    #[test]
    fn keys_authenticate_only_while_valid() {
        let key = new_key(&[7; 32], &[1; 9], 1_000, Some(2_000));
        assert!(token_key_id(&key.token).is_some());
        assert!(!format!("{key:?}").contains(&key.token));
        let mut account = Account {
            id: "ci".into(),
            description: None,
            grants: vec![Grant {
                prefix: "/myapp".into(),
                actions: BTreeSet::from([Action::Read]),
            }],
            keys: vec![key.record.clone()],
            disabled: false,
        };
        let snapshot = |account: &Account| {
            Snapshot::from_entries(
                1,
                [Entry {
                    path: account_path(&account.id).unwrap(),
                    value: ParsedValue::from_request(
                        serde_json::to_value(account).unwrap(),
                        Some(Format::Json),
                    )
                    .unwrap(),
                    version: 1,
                    revision: 1,
                    updated_at: String::new(),
                }],
            )
        };
        let accounts = Accounts::from_snapshot(&snapshot(&account));
        let principal = accounts.authenticate(&key.token, 1_500).unwrap();
        assert_eq!(principal.account, "ci");
        assert!(principal.grants.allows(&path("/myapp/x"), Action::Read));
        assert_eq!(
            accounts.authenticate(&key.token, 2_000),
            Err(AuthError::Expired)
        );
        let mut wrong = key.token.clone();
        wrong.pop();
        wrong.push('Q');
        assert_eq!(
            accounts.authenticate(&wrong, 1_500),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            accounts.authenticate("Bearer nonsense", 1_500),
            Err(AuthError::Malformed)
        );
        account.keys[0].revoked = true;
        let accounts = Accounts::from_snapshot(&snapshot(&account));
        assert_eq!(
            accounts.authenticate(&key.token, 1_500),
            Err(AuthError::Revoked)
        );
    }

    #[test]
    fn failures_are_limited_per_source_and_window() {
        let limiter = FailureLimiter::new(3, 60);
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        for i in 1..=3 {
            assert_eq!(limiter.record_failure(a, 100), FailureVerdict::Counted(i));
        }
        assert_eq!(
            limiter.record_failure(a, 130),
            FailureVerdict::Limited {
                retry_after_secs: 30
            },
            "limited until the window ends"
        );
        assert_eq!(
            limiter.record_failure(b, 130),
            FailureVerdict::Counted(1),
            "per source"
        );
        assert_eq!(
            limiter.record_failure(a, 160),
            FailureVerdict::Counted(1),
            "a new window"
        );
    }

    #[test]
    fn the_limiter_stays_bounded_and_keeps_limited_sources_longest() {
        let limiter = FailureLimiter::new(1, 60);
        let flooder: std::net::IpAddr = "10.9.9.9".parse().unwrap();
        limiter.record_failure(flooder, 0);
        assert!(matches!(
            limiter.record_failure(flooder, 0),
            FailureVerdict::Limited { .. }
        ));
        for i in 0..(FailureLimiter::MAX_SOURCES as u32 + 10) {
            let source = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiter.record_failure(source, 1);
            assert!(limiter.tracked() <= FailureLimiter::MAX_SOURCES);
        }
        assert!(
            matches!(
                limiter.record_failure(flooder, 2),
                FailureVerdict::Limited { .. }
            ),
            "sources within the limit are forgotten before a limited one"
        );
    }

    #[test]
    fn account_records_are_shown_without_key_hashes() {
        let key = new_key(&[5; 32], &[6; 9], 0, None);
        let account = serde_json::json!({"id": "a", "grants": [], "keys": [key.record]});
        let value = ParsedValue::from_request(account, Some(Format::Json)).unwrap();
        let shown =
            serde_json::to_value(shown_value(&path("/_setpoint/accounts/a"), &value)).unwrap();
        assert_eq!(shown["keys"][0]["id"], key.record.id.as_str());
        assert!(shown["keys"][0].get("hash").is_none(), "{shown}");
        assert!(!shown.to_string().contains(&key.record.hash));
        let elsewhere = serde_json::to_value(shown_value(&path("/app/a"), &value)).unwrap();
        assert_eq!(
            elsewhere["keys"][0]["hash"],
            key.record.hash.as_str(),
            "only accounts"
        );
        assert!(!is_account_record(&path("/_setpoint/accounts")));
    }

    #[test]
    fn tokens_differ_and_hashes_verify() {
        let a = new_key(&[1; 32], &[2; 9], 0, None);
        let b = new_key(&[3; 32], &[4; 9], 0, None);
        assert_ne!(a.token, b.token);
        assert!(verify_token(&a.token, &a.record.hash));
        assert!(!verify_token(&a.token, &b.record.hash));
        assert_eq!(a.record.hash.len(), 64);
    }
}

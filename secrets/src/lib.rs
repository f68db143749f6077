//! Secret providers: where `${secret:name}` references get their values, on the node that serves
//! the read (writer or edge).
//!
//! Invariant: a secret value exists only inside a [`SecretValue`], whose `Debug` is redacted and
//! which has no `Display` or `Serialize`; errors carry names and reasons, never values. Values
//! never travel on the replication stream, never enter history, audit, logs or metrics.
//!
//! Providers:
//! - [`NoSecrets`] refuses every fetch ([`SecretError::Disabled`]).
//! - [`Vault`]: Vault (or OpenBao) KV v2 over HTTP: `GET {addr}/v1/{mount}/data/{path}` with
//!   `X-Vault-Token`, where `path` comes from a per-environment template
//!   (`{env}` → the environment or `base`, `{name}` → the secret name) and the value is the
//!   secret's field (`#field` in the reference, else the configured default field). Auth by
//!   token, or AppRole (`POST /v1/auth/approle/login`, re-login before the token's lease ends).
//!   Values are cached for a short TTL per (environment, name).

pub mod serve;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A secret's value. Never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }
    /// The value itself, for substitution into a response the caller is allowed to see.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "this node has no secret provider configured (--secrets none); secret references cannot be resolved"
    )]
    Disabled,
    #[error("secret {name:?} was not found in the secret provider")]
    NotFound { name: String },
    #[error("secret reference {name:?} is not valid: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("the secret provider refused this node: {reason}")]
    Denied { reason: String },
    #[error("the secret provider is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("secret provider configuration is invalid: {reason}")]
    Config { reason: String },
}

#[async_trait::async_trait]
pub trait SecretProvider: Send + Sync + 'static {
    /// `"none"`, `"vault"`.
    fn kind(&self) -> &'static str;
    /// One secret (`name` or `name#field`) for `environment` (`None`: no environment).
    async fn fetch(
        &self,
        environment: Option<&str>,
        name: &str,
    ) -> Result<SecretValue, SecretError>;
}

/// Refuses every fetch.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

#[async_trait::async_trait]
impl SecretProvider for NoSecrets {
    fn kind(&self) -> &'static str {
        "none"
    }
    async fn fetch(&self, _: Option<&str>, _: &str) -> Result<SecretValue, SecretError> {
        Err(SecretError::Disabled)
    }
}

/// How the node logs in to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    Token(SecretValue),
    AppRole {
        role_id: String,
        secret_id: SecretValue,
        /// Auth mount, default `approle`.
        mount: String,
    },
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token([redacted])"),
            VaultAuth::AppRole { role_id, mount, .. } => f
                .debug_struct("AppRole")
                .field("role_id", role_id)
                .field("mount", mount)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `http://127.0.0.1:8200`.
    pub address: String,
    pub auth: VaultAuth,
    /// KV v2 mount, default `secret`.
    pub mount: String,
    /// Default `setpoint/{env}/{name}`.
    pub path_template: String,
    /// Field read when the reference names none, default `value`.
    pub field: String,
    /// Default 30 s; zero disables the cache.
    pub cache_ttl: Duration,
    /// Per HTTP request, default 5 s.
    pub timeout: Duration,
}

impl VaultConfig {
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            address: address.into(),
            auth,
            mount: "secret".into(),
            path_template: "setpoint/{env}/{name}".into(),
            field: "value".into(),
            cache_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Vault / OpenBao KV v2.
pub struct Vault {
    config: VaultConfig,
}

impl Vault {
    /// Checks the configuration (address, template); does not contact Vault.
    pub fn new(config: VaultConfig) -> Result<Vault, SecretError> {
        Ok(Vault { config })
    }
}

#[async_trait::async_trait]
impl SecretProvider for Vault {
    fn kind(&self) -> &'static str {
        "vault"
    }
    async fn fetch(
        &self,
        environment: Option<&str>,
        name: &str,
    ) -> Result<SecretValue, SecretError> {
        let _ = (&self.config, environment, name);
        todo!("secrets helper")
    }
}

/// Fetches every name (concurrently), or the first error.
pub async fn fetch_all(
    provider: &dyn SecretProvider,
    environment: Option<&str>,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, SecretValue>, SecretError> {
    let mut out = BTreeMap::new();
    for name in names {
        out.insert(name.clone(), provider.fetch(environment, name).await?);
    }
    Ok(out)
}

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

pub mod https;
mod reference;
pub mod serve;
mod vault;

use std::collections::{BTreeMap, BTreeSet};

pub use vault::{Vault, VaultAuth, VaultConfig};

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

/// Fetches every name (concurrently), or the first error.
pub async fn fetch_all(
    provider: &dyn SecretProvider,
    environment: Option<&str>,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, SecretValue>, SecretError> {
    let fetches = names.iter().map(|name| async move {
        let value = provider.fetch(environment, name).await?;
        Ok::<_, SecretError>((name.clone(), value))
    });
    // Fails as soon as one fetch fails; the others are dropped unfinished.
    Ok(futures::future::try_join_all(fetches)
        .await?
        .into_iter()
        .collect())
}

//! `--secrets none|vault` and the Vault/OpenBao flags, shared by `dev`, `writer` and `edge`.
//! Tokens and secret ids are read from files or the environment, never from the command line
//! (where `ps` would show them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use setpoint_secrets::{NoSecrets, SecretProvider, SecretValue, Vault, VaultAuth, VaultConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Refuse every `${secret:…}` reference.
    None,
    /// Vault or OpenBao KV v2.
    Vault,
}

#[derive(Debug, Args)]
pub struct SecretArgs {
    /// Where `${secret:name}` references resolve.
    #[arg(long = "secrets", env = "SETPOINT_SECRETS", value_enum, default_value_t = ProviderKind::None)]
    kind: ProviderKind,
    /// Vault/OpenBao address, e.g. `https://vault.internal:8200` (or `http://` on loopback).
    #[arg(long, env = "SETPOINT_VAULT_ADDR")]
    vault_addr: Option<String>,
    /// Vault token (from the environment only).
    #[arg(
        long = "vault-token",
        env = "SETPOINT_VAULT_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    vault_token: Option<String>,
    /// PEM file of a private CA trusted (besides the system's roots) for an https:// Vault.
    #[arg(long, env = "SETPOINT_VAULT_CACERT")]
    vault_ca_cert: Option<PathBuf>,
    /// File holding a Vault token.
    #[arg(long, env = "SETPOINT_VAULT_TOKEN_FILE")]
    vault_token_file: Option<PathBuf>,
    /// AppRole role id (with --vault-secret-id-file instead of a token).
    #[arg(long, env = "SETPOINT_VAULT_ROLE_ID")]
    vault_role_id: Option<String>,
    /// File holding the AppRole secret id.
    #[arg(long, env = "SETPOINT_VAULT_SECRET_ID_FILE")]
    vault_secret_id_file: Option<PathBuf>,
    /// Mount path of the AppRole auth method.
    #[arg(long, env = "SETPOINT_VAULT_APPROLE_MOUNT", default_value = "approle")]
    vault_approle_mount: String,
    /// Mount path of the KV v2 secrets engine.
    #[arg(long, env = "SETPOINT_VAULT_MOUNT", default_value = "secret")]
    vault_mount: String,
    /// Secret path inside the mount; `{env}` is the environment read (`base` without one),
    /// `{name}` the reference's name.
    #[arg(
        long,
        env = "SETPOINT_VAULT_PATH_TEMPLATE",
        default_value = "setpoint/{env}/{name}"
    )]
    vault_path_template: String,
    /// Field of the secret read when the reference names none (`${secret:name#field}`).
    #[arg(long, env = "SETPOINT_VAULT_FIELD", default_value = "value")]
    vault_field: String,
    /// Seconds a fetched secret is reused; 0 fetches on every read.
    #[arg(long, env = "SETPOINT_SECRET_CACHE_SECS", default_value_t = 30)]
    secret_cache_secs: u64,
}

fn read_secret_file(path: &PathBuf, what: &str) -> anyhow::Result<SecretValue> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    Ok(SecretValue::new(text.trim().to_owned()))
}

impl SecretArgs {
    pub fn provider(&self) -> anyhow::Result<Arc<dyn SecretProvider>> {
        match self.kind {
            ProviderKind::None => Ok(Arc::new(NoSecrets)),
            ProviderKind::Vault => {
                let address = self
                    .vault_addr
                    .clone()
                    .context("--secrets vault needs --vault-addr")?;
                let auth = match (&self.vault_role_id, &self.vault_secret_id_file) {
                    (Some(role_id), Some(file)) => VaultAuth::AppRole {
                        role_id: role_id.clone(),
                        secret_id: read_secret_file(file, "secret id")?,
                        mount: self.vault_approle_mount.clone(),
                    },
                    (Some(_), None) | (None, Some(_)) => anyhow::bail!(
                        "AppRole needs both --vault-role-id and --vault-secret-id-file"
                    ),
                    (None, None) => match (&self.vault_token_file, &self.vault_token) {
                        (Some(file), _) => VaultAuth::Token(read_secret_file(file, "token")?),
                        (None, Some(token)) => VaultAuth::Token(SecretValue::new(token.clone())),
                        (None, None) => anyhow::bail!(
                            "--secrets vault needs SETPOINT_VAULT_TOKEN, --vault-token-file, or AppRole (--vault-role-id with --vault-secret-id-file)"
                        ),
                    },
                };
                let mut config = VaultConfig::new(address, auth);
                config.mount = self.vault_mount.clone();
                config.path_template = self.vault_path_template.clone();
                config.field = self.vault_field.clone();
                config.cache_ttl = Duration::from_secs(self.secret_cache_secs);
                if let Some(path) = &self.vault_ca_cert {
                    config.ca_pem =
                        Some(setpoint_secrets::https::read_ca(path).map_err(anyhow::Error::msg)?);
                }
                Ok(Arc::new(Vault::new(config)?))
            }
        }
    }
}

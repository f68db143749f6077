//! An environment-aware read end to end, for the writer and the edges alike: plan it
//! ([`setpoint_core::read::plan`]), check that the caller may see secrets when it needs any,
//! fetch exactly those from the provider, render.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use setpoint_core::ConfigPath;
use setpoint_core::auth::Grants;
use setpoint_core::error::ErrorCode;
use setpoint_core::read::{self, Failure, ReadQuery, Rendered};
use setpoint_core::snapshot::Snapshot;

use crate::{SecretError, SecretProvider, fetch_all};

/// What a node may do with secrets.
#[derive(Clone)]
pub struct SecretAccess {
    pub provider: Arc<dyn SecretProvider>,
    /// Whether reads on this node may resolve secret references at all; when true, each read
    /// still needs the caller's `secrets:read` grant on every path that references one.
    pub allowed: bool,
}

impl SecretAccess {
    /// No provider, nothing allowed.
    pub fn none() -> SecretAccess {
        SecretAccess {
            provider: Arc::new(crate::NoSecrets),
            allowed: false,
        }
    }
}

impl std::fmt::Debug for SecretAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretAccess")
            .field("provider", &self.provider.kind())
            .field("allowed", &self.allowed)
            .finish()
    }
}

fn secret_failure(error: &SecretError) -> Failure {
    let code = match error {
        SecretError::Disabled | SecretError::NotFound { .. } | SecretError::InvalidName { .. } => {
            ErrorCode::ResolutionFailed
        }
        SecretError::Denied { .. }
        | SecretError::Unavailable { .. }
        | SecretError::Config { .. } => ErrorCode::SecretsUnavailable,
    };
    Failure {
        code,
        message: error.to_string(),
        details: None,
    }
}

/// Answers `query` on `path` from `snapshot`.
pub async fn read(
    access: &SecretAccess,
    snapshot: &Snapshot,
    path: &ConfigPath,
    query: &ReadQuery,
    grants: &Grants,
) -> Result<Rendered, Failure> {
    let plan = read::plan(snapshot, path, query, grants)?;
    let names = plan.secret_names();
    let mut values = BTreeMap::new();
    if !names.is_empty() {
        if !access.allowed {
            return Err(Failure {
                code: ErrorCode::Forbidden,
                message: format!(
                    "this read resolves secret references ({}); this node does not resolve secrets",
                    names.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                details: Some(json!({ "secrets": names })),
            });
        }
        let fetched = fetch_all(access.provider.as_ref(), plan.environment(), names)
            .await
            .map_err(|e| secret_failure(&e))?;
        values = fetched
            .into_iter()
            .map(|(name, value)| (name, value.expose().to_owned()))
            .collect();
    }
    plan.render(&values)
}

//! Bundles: a resolved subtree rendered as `.env`, a Kubernetes ConfigMap or a Kubernetes Secret.
//! (JSON and YAML bundles are [`crate::resolve::tree`] rendered by the caller.)
//!
//! Keys: every config path becomes one key, its segments upper-cased and joined by `_`, with
//! `.` and `-` turned into `_`: `/myapp/database/host` → `MYAPP_DATABASE_HOST`; a key that would
//! start with a digit gets a leading `_`. Two paths giving the same key are an error naming both.
//!
//! Values: strings as they are; numbers, booleans as their JSON text; `null` as the empty string;
//! objects and arrays as compact JSON. Text values are their text; YAML values are their
//! structured view as compact JSON.
//!
//! `.env` quoting: every value is quoted so that bash's `source` reads back exactly the value
//! (newlines, quotes, `$`, `#`, backslashes, unicode): single quotes, with `'` written as `'\''`.
//! When the value contains `'` but none of `"`, `$`, `` ` ``, `\`, it is double-quoted instead,
//! which python-dotenv and Node's dotenv also read back exactly. A NUL character cannot live in
//! a shell variable: such a value is an error.
//!
//! ConfigMap: YAML `apiVersion: v1`, `kind: ConfigMap`, `metadata.name` a DNS-1123 subdomain,
//! `data` with the keys above (valid ConfigMap keys), values as strings. Items that carry secrets
//! are never included; their keys are listed in the annotation
//! `setpoint.dev/omitted-secret-keys` (comma-separated) so nobody wonders where they went.
//! Secret: `kind: Secret`, `type: Opaque`, `data` with every secret-bearing item's value
//! base64-encoded (standard alphabet, padded).

use serde::Serialize;

use crate::{ConfigPath, Format};

/// What `?format=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExportFormat {
    Json,
    Yaml,
    Dotenv,
    ConfigMap,
    Secret,
}

impl ExportFormat {
    /// `json`, `yaml`, `dotenv` (also `env`), `k8s-configmap`, `k8s-secret`.
    pub fn parse(input: &str) -> Option<ExportFormat> {
        match input {
            "json" => Some(ExportFormat::Json),
            "yaml" => Some(ExportFormat::Yaml),
            "dotenv" | "env" => Some(ExportFormat::Dotenv),
            "k8s-configmap" => Some(ExportFormat::ConfigMap),
            "k8s-secret" => Some(ExportFormat::Secret),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Yaml => "yaml",
            ExportFormat::Dotenv => "dotenv",
            ExportFormat::ConfigMap => "k8s-configmap",
            ExportFormat::Secret => "k8s-secret",
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Yaml | ExportFormat::ConfigMap | ExportFormat::Secret => {
                "application/yaml"
            }
            ExportFormat::Dotenv => "text/plain; charset=utf-8",
        }
    }
}

/// One config of a resolved subtree.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The base path.
    pub path: ConfigPath,
    pub format: Format,
    /// The effective value after substitution (structured; a JSON string for text).
    pub value: serde_json::Value,
    /// True when the value referenced a secret (before substitution).
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("paths {first} and {second} both export as key {key}")]
    KeyCollision {
        key: String,
        first: String,
        second: String,
    },
    #[error(
        "{name:?} is not a valid Kubernetes object name (DNS-1123 subdomain: lower-case a-z, 0-9, `-`, `.`, at most 253, starting and ending alphanumeric)"
    )]
    InvalidName { name: String },
    #[error("the value of {path} contains a NUL character, which a .env file cannot carry")]
    NulInValue { path: String },
    #[error("the export is {size} bytes; Kubernetes objects hold at most {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// The key a path exports as (see the module rules).
pub fn env_key(path: &ConfigPath) -> String {
    let _ = path;
    todo!("export helper")
}

/// How an item's value is written as one string (see the module rules).
pub fn text_of(item: &Item) -> String {
    let _ = item;
    todo!("export helper")
}

/// A `.env` file of every item, in path order, one `KEY='value'` line each, ending in a newline.
pub fn dotenv(items: &[Item]) -> Result<String, ExportError> {
    let _ = items;
    todo!("export helper")
}

/// The object name: `requested` checked as a DNS-1123 subdomain, else derived from the prefix
/// (`/myapp/database` → `myapp-database`: lower-cased, invalid characters to `-`, trimmed to
/// alphanumerics at both ends, at most 253 bytes; the root or an empty result → `setpoint`).
pub fn resource_name(prefix: &ConfigPath, requested: Option<&str>) -> Result<String, ExportError> {
    let _ = (prefix, requested);
    todo!("export helper")
}

/// A ConfigMap of the non-secret items (see the module rules).
pub fn config_map(name: &str, items: &[Item]) -> Result<String, ExportError> {
    let _ = (name, items);
    todo!("export helper")
}

/// A Secret of the secret-bearing items (see the module rules).
pub fn secret(name: &str, items: &[Item]) -> Result<String, ExportError> {
    let _ = (name, items);
    todo!("export helper")
}

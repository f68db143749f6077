//! How the config model is laid out in the store: keys and record encodings.
//!
//! Under the configured prefix `P` (always ending in `/`):
//! - `P` + `c` + path → the path's [`Pointer`]: current version, tombstone flag, format,
//!   metadata, schema and validators. Small; its `mod_revision` guards concurrent writers.
//! - `P` + `h` + path + `@` + version (20 digits) → one [`VersionRecord`]: a JSON header line,
//!   `\n`, then the value's stored bytes verbatim. The value is written exactly once per change,
//!   so a 1 MiB value plus the pointer fits etcd's 1.5 MiB request limit.
//! - `P` + `s` + prefix → a [`PrefixSchema`] applying to every config below the prefix.
//! - `P` + `g` + name → a guard: `genvironments` is rewritten by every change of an environment
//!   definition, which compares it, so definitions change one at a time across all writers;
//!   `grollout{path}` holds the id of the path's active rollout (see [`Keys::rollout_guard`]).
//!
//! `@` cannot occur in a path segment, so `h/a@` never matches `h/a/b@…` in a prefix range.
//! This module only encodes and decodes; it never talks to the store.

use serde::{Deserialize, Serialize};
use setpoint_core::{ConfigPath, Format, Version};

/// Key builder for one store prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    pub fn pointer(&self, path: &ConfigPath) -> String {
        format!("{}c{}", self.prefix, path)
    }

    /// Prefix of the pointers strictly below `path` (`P c /a/b/`), or all pointers for the root.
    pub fn pointers_below(&self, path: &ConfigPath) -> String {
        if path.is_root() {
            format!("{}c/", self.prefix)
        } else {
            format!("{}c{}/", self.prefix, path)
        }
    }

    /// Recovers the path from a pointer key.
    pub fn path_of_pointer(&self, key: &str) -> Option<ConfigPath> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('c')?;
        ConfigPath::parse(rest).ok()
    }

    pub fn version(&self, path: &ConfigPath, version: Version) -> String {
        format!("{}h{}@{:020}", self.prefix, path, version)
    }

    /// Prefix of every version record of `path`.
    pub fn versions_of(&self, path: &ConfigPath) -> String {
        format!("{}h{}@", self.prefix, path)
    }

    pub fn schema(&self, prefix: &ConfigPath) -> String {
        format!("{}s{}", self.prefix, prefix)
    }

    /// Prefix of every prefix schema.
    pub fn schemas(&self) -> String {
        format!("{}s/", self.prefix)
    }

    /// `P g` + name: a guard key, written by every change of a set of records that must change
    /// one at a time (environment definitions) and compared by each of them.
    pub fn guard(&self, name: &str) -> String {
        format!("{}g{}", self.prefix, name)
    }

    /// `P g rollout{path}`: present while a rollout of `path` is active, holding its id. Created
    /// with the rollout and deleted when it completes or rolls back; a config write compares it
    /// unchanged since its read, a second rollout of the path compares it absent — so both rules
    /// hold across writer processes.
    pub fn rollout_guard(&self, path: &ConfigPath) -> String {
        self.guard(&format!("rollout{path}"))
    }

    /// Prefix of every rollout guard.
    pub fn rollout_guards(&self) -> String {
        self.guard("rollout/")
    }

    pub fn path_of_schema(&self, key: &str) -> Option<ConfigPath> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('s')?;
        ConfigPath::parse(rest).ok()
    }
}

/// Metadata shared by the pointer and each version record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

/// The current state of a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    pub version: Version,
    #[serde(default)]
    pub deleted: bool,
    pub format: Format,
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<serde_json::Value>,
}

/// Header of one version record; the value's bytes follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionHeader {
    pub version: Version,
    #[serde(default)]
    pub deleted: bool,
    pub format: Format,
    #[serde(flatten)]
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixSchema {
    pub schema: serde_json::Value,
    #[serde(flatten)]
    pub meta: Meta,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt record at {key}: {reason}")]
pub struct CorruptRecord {
    pub key: String,
    pub reason: String,
}

pub fn encode_json<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing plain structs of strings, numbers and JSON values cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

pub fn decode_json<T: for<'de> Deserialize<'de>>(
    key: &str,
    bytes: &[u8],
) -> Result<T, CorruptRecord> {
    serde_json::from_slice(bytes).map_err(|e| CorruptRecord {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

pub fn encode_version(header: &VersionHeader, stored_value: &str) -> Vec<u8> {
    let mut out = encode_json(header);
    out.reserve(1 + stored_value.len());
    out.push(b'\n');
    out.extend_from_slice(stored_value.as_bytes());
    out
}

/// Splits a version record into its header and the value's stored text.
pub fn decode_version(key: &str, bytes: &[u8]) -> Result<(VersionHeader, String), CorruptRecord> {
    let corrupt = |reason: &str| CorruptRecord {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line"))?;
    let header = decode_json(key, &bytes[..split])?;
    let value =
        std::str::from_utf8(&bytes[split + 1..]).map_err(|_| corrupt("value is not UTF-8"))?;
    Ok((header, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_record_round_trips_values_with_newlines() {
        let header = VersionHeader {
            version: 7,
            deleted: false,
            format: Format::Text,
            meta: Meta {
                updated_at: "2026-01-01T00:00:00Z".into(),
                ..Meta::default()
            },
        };
        let bytes = encode_version(&header, "line one\nline \"two\"\n");
        let (back, value) = decode_version("k", &bytes).unwrap();
        assert_eq!(back, header);
        assert_eq!(value, "line one\nline \"two\"\n");
    }

    #[test]
    fn history_prefix_of_a_path_excludes_its_children() {
        let keys = Keys::new("/sp");
        let a = ConfigPath::parse("/a").unwrap();
        let child = ConfigPath::parse("/a/b").unwrap();
        assert!(keys.version(&a, 3).starts_with(&keys.versions_of(&a)));
        assert!(!keys.version(&child, 1).starts_with(&keys.versions_of(&a)));
        assert_eq!(keys.path_of_pointer(&keys.pointer(&child)), Some(child));
    }
}

//! Configuration values and their formats.
//!
//! A request carries a JSON `value` and an optional `format`. [`ParsedValue::from_request`] turns
//! that into the bytes that are stored (written once, never re-encoded) plus a structured JSON
//! view used for validation and diffs. Rules:
//! - no format given → `json` (any JSON value);
//! - `json` → any JSON value, stored as compact JSON;
//! - `yaml` → the value must be a string holding valid YAML; stored as that string verbatim, its
//!   structured view is the parsed YAML converted to JSON;
//! - `text` → the value must be a string; stored verbatim; its structured view is that string.
//!
//! The stored bytes may be at most [`MAX_VALUE_BYTES`]; larger is [`ValueError::TooLarge`].

use serde::{Deserialize, Serialize};

/// 1 MiB: the largest stored value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Yaml,
    Text,
}

impl Format {
    /// Parses `json`, `yaml` (also `yml`), `text`, case-insensitively.
    pub fn parse(input: &str) -> Result<Format, ValueError> {
        todo!()
    }
    pub fn as_str(self) -> &'static str {
        todo!()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("value is {size} bytes; the limit is {limit} bytes (1 MiB)")]
    TooLarge { size: usize, limit: usize },
    #[error("unknown format {0:?}: expected json, yaml or text")]
    UnknownFormat(String),
    #[error("format {format} needs a string value, got {got}")]
    NotAString { format: &'static str, got: &'static str },
    #[error("invalid YAML: {0}")]
    InvalidYaml(String),
    #[error("stored value is not valid {format}: {reason}")]
    Corrupt { format: &'static str, reason: String },
}

/// A value ready to store: its format, the exact stored bytes, and its structured view.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedValue {
    format: Format,
    stored: String,
    structured: serde_json::Value,
}

impl ParsedValue {
    /// Parses a request's `value` with its optional `format` (see the module rules).
    pub fn from_request(value: serde_json::Value, format: Option<Format>) -> Result<ParsedValue, ValueError> {
        todo!()
    }
    /// Rebuilds a value from stored bytes (what [`ParsedValue::stored`] returned).
    pub fn from_stored(format: Format, stored: &str) -> Result<ParsedValue, ValueError> {
        todo!()
    }
    pub fn format(&self) -> Format {
        self.format
    }
    /// The bytes to store: compact JSON for `json`, the original string for `yaml`/`text`.
    pub fn stored(&self) -> &str {
        &self.stored
    }
    /// The structured view: the JSON value, the parsed YAML, or the text as a JSON string.
    pub fn structured(&self) -> &serde_json::Value {
        &self.structured
    }
    /// How the API shows the value: the JSON value for `json`, the original string otherwise.
    pub fn to_api_value(&self) -> serde_json::Value {
        todo!()
    }
}

//! Schema and validator checks for configuration values.
//!
//! A config may carry a JSON Schema (2020-12, formats checked — `"format": "uri"` rejects
//! `"not a uri"`) and a list of custom validators (`{"regex": "…"}`, `{"enum": […]}`). Prefix
//! schemas (`PUT /api/schemas/{prefix}`) add more schemas. [`check`] runs all of them against a
//! value's structured view and returns *every* violation with its JSON pointer, so a 422 can list
//! them all. Compile once at the boundary ([`Schema::compile`], [`Validators::parse`]); bad
//! schemas or validators are errors of the request, never panics.

use serde_json::Value;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer into the value (`""` for the whole value, `/port`, `/hosts/0`).
    pub pointer: String,
    /// What was expected, in words.
    pub message: String,
    /// Where the rule came from: `schema`, `schema:/prefix`, `validator:regex`, `validator:enum`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid JSON Schema: {0}")]
    InvalidSchema(String),
    #[error("invalid validator #{index}: {reason}")]
    InvalidValidator { index: usize, reason: String },
}

/// A compiled JSON Schema plus its source document (kept so it can be stored and shown).
pub struct Schema {
    source: Value,
    label: String,
    // compiled validator: helper's choice
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("label", &self.label).finish()
    }
}

impl Schema {
    /// Compiles `source` as JSON Schema 2020-12 (unless it names another `$schema`) with format
    /// checking on. `label` becomes each violation's `source` (`schema`, `schema:/myapp`).
    pub fn compile(source: &Value, label: impl Into<String>) -> Result<Schema, RuleError> {
        todo!()
    }
    pub fn source(&self) -> &Value {
        &self.source
    }
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        todo!()
    }
}

/// Custom validators: `[{"regex": "^a+$"}, {"enum": ["a", "b"]}]`. A regex applies to string
/// values (a non-string is a violation); an enum compares JSON values for equality.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    source: Value,
    // parsed rules: helper's choice
}

impl Validators {
    /// Parses the validators array. Unknown kinds, bad regexes and non-array input are errors.
    pub fn parse(source: &Value) -> Result<Validators, RuleError> {
        todo!()
    }
    pub fn source(&self) -> &Value {
        &self.source
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        todo!()
    }
}

/// Every violation of `instance` against all schemas and validators, in order.
pub fn check(instance: &Value, schemas: &[&Schema], validators: &[&Validators]) -> Vec<Violation> {
    todo!()
}

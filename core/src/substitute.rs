//! `${VAR}`, `${VAR:default}` and `${secret:name}` references inside string values.
//!
//! Grammar, in any string (a JSON string anywhere in a structured value, or a text value):
//! - `${NAME}`: the variable `NAME` (`[A-Za-z_][A-Za-z0-9_]*`) from the environment, then its
//!   ancestors ([`Chain::variable`]); missing → a problem naming it.
//! - `${NAME:default}`: the same, else the literal `default` (which may be empty, and contains no
//!   `}`).
//! - `${secret:name}`: a secret fetched by the caller from the secret provider; `name` is
//!   `[A-Za-z0-9._/-]+`, optionally `#field`. Missing from the map given → a problem naming it.
//! - `$${...}`: the literal text `${...}` (escape). A `$` not followed by `{` is literal.
//! - A `${` with no closing `}`, or an invalid name inside, is a malformed reference (a problem).
//!
//! Variable values may themselves hold references (variables and secrets); they are expanded
//! recursively, and a reference cycle (`A → B → A`) is a problem naming the cycle. Object keys
//! are never substituted.
//!
//! Problems never carry a secret's value: only names, locations and messages about them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::env::Chain;

/// Why a value could not be resolved. `location` is filled in by the caller's context: a JSON
/// pointer within the value, prefixed by the config path when the caller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where: `"/myapp/db/url"` or `"/myapp/db#/pool/dsn"` (path, then pointer when not "").
    pub location: String,
    /// The reference as written, e.g. `${DB_HOST}`, `${secret:db-password}`.
    pub reference: String,
    pub kind: ProblemKind,
    /// Human-readable, names the variable or secret; never a secret value.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    MissingVariable,
    MissingSecret,
    Cycle,
    Malformed,
}

/// Secret names (with `#field` if given) referenced by `value`, directly or through the
/// variables it uses. Malformed references are ignored here; [`substitute`] reports them.
pub fn secret_names(value: &serde_json::Value, chain: &Chain) -> BTreeSet<String> {
    let _ = (value, chain);
    todo!("substitute helper")
}

/// True when `value` (not its variables) contains any reference at all (`${`), for callers
/// that want to skip work.
pub fn has_references(value: &serde_json::Value) -> bool {
    let _ = value;
    todo!("substitute helper")
}

/// Replaces every reference in `value`'s strings. `location` prefixes every problem's location
/// (normally the config path). All problems are collected, not just the first.
pub fn substitute(
    value: &serde_json::Value,
    chain: &Chain,
    secrets: &BTreeMap<String, String>,
    location: &str,
) -> Result<serde_json::Value, Vec<Problem>> {
    let _ = (value, chain, secrets, location);
    todo!("substitute helper")
}

//! History retention: which old versions a compaction may remove.
//!
//! A policy keeps the last `keep_versions` versions and/or the versions younger than
//! `keep_seconds`. When both are set a version survives if *either* keeps it (it is removed only
//! when it is outside the last N **and** older than D). The current version is never removed,
//! whatever the policy says. Policies apply per path prefix; the longest matching prefix wins.
//! Time is passed in (unix seconds), never read here.

use crate::{ConfigPath, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub keep_versions: Option<u64>,
    pub keep_seconds: Option<u64>,
}

/// A policy bound to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: ConfigPath,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleParseError {
    // helper's choice; messages name the bad part
}

impl Rule {
    /// Parses `PREFIX=keep:N`, `PREFIX=days:D`, `PREFIX=keep:N,days:D` (e.g. `/myapp=keep:50,days:30`).
    pub fn parse(input: &str) -> Result<Rule, RuleParseError> {
        todo!()
    }
}

/// The rule for `path`: the one with the longest prefix containing it.
pub fn rule_for<'a>(rules: &'a [Rule], path: &ConfigPath) -> Option<&'a Rule> {
    todo!()
}

/// One stored version as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: Version,
    /// When it was written, unix seconds.
    pub written_at: i64,
}

/// Versions (from `history`, any order) that `policy` lets a compaction remove at time `now`.
/// Never includes `current`. Sorted ascending.
pub fn removable(history: &[StoredVersion], current: Version, policy: &Policy, now: i64) -> Vec<Version> {
    todo!()
}

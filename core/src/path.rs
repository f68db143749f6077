//! Configuration paths: parsing and the rules a path must follow.
//!
//! A path is `/app/service/key`: segments of `[A-Za-z0-9._-]+` (never `.` or `..`), at most
//! [`MAX_SEGMENTS`] segments and [`MAX_PATH_BYTES`] bytes. The root `/` (no segments) is a valid
//! *prefix* but never holds a value. The first segment `env` is reserved for environment overrides
//! (`/env/{environment}/{path}`); the final segment names in [`RESERVED_NAMES`] are sub-resources
//! of the REST API (`…/history`, `…/diff`) and cannot be written.
//!
//! This module must not know about storage keys or HTTP; it only parses and answers questions.

use std::fmt;

pub const MAX_SEGMENTS: usize = 32;
pub const MAX_PATH_BYTES: usize = 512;
/// Final segment names that address sub-resources in the REST API.
pub const RESERVED_NAMES: &[&str] = &["history", "diff", "rollout"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    // Variants are the helper's choice; each Display message must name the offending part.
}

/// A validated path. `as_str()` is canonical: leading `/`, no trailing `/`, root is `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigPath {
    canonical: String,
}

impl ConfigPath {
    /// Parses `a/b/c`, `/a/b/c` or `/a/b/c/` (one leading and one trailing slash are optional).
    /// `""` and `"/"` give the root. Rejects empty segments (`a//b`), `.`/`..`, bad characters,
    /// too many segments, too many bytes.
    pub fn parse(input: &str) -> Result<ConfigPath, PathError> {
        todo!()
    }
    pub fn root() -> ConfigPath {
        todo!()
    }
    pub fn as_str(&self) -> &str {
        &self.canonical
    }
    pub fn is_root(&self) -> bool {
        todo!()
    }
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        std::iter::empty()
    }
    /// Last segment; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        todo!()
    }
    /// Parent path; `None` for the root.
    pub fn parent(&self) -> Option<ConfigPath> {
        todo!()
    }
    /// Appends one segment (validated).
    pub fn join(&self, segment: &str) -> Result<ConfigPath, PathError> {
        todo!()
    }
    /// True when `self` equals `prefix` or lies below it (segment-wise: `/ab` is not below `/a`).
    pub fn starts_with(&self, prefix: &ConfigPath) -> bool {
        todo!()
    }
    /// The root, then every proper ancestor, ending with `self`: `/`, `/a`, `/a/b`.
    pub fn ancestors_and_self(&self) -> Vec<ConfigPath> {
        todo!()
    }
    /// Checks the rules for paths that hold a value: not the root, not a reserved final name, and
    /// `env` only as `/env/{environment}/{at least one more segment}`.
    pub fn check_writable(&self) -> Result<(), PathError> {
        todo!()
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

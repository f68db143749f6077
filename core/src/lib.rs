//! Setpoint's pure domain model.
//!
//! Owns what a configuration *is*: validated paths ([`path`]), values and their formats
//! ([`value`]), schema and validator checks ([`validate`]), version diffs ([`diff`]) and
//! history retention decisions ([`retention`]), environments ([`env`]) and effective values
//! ([`resolve`]), `${VAR}`/`${secret:…}` substitution ([`substitute`]) and bundles ([`export`]),
//! what a watch in an environment sees of a commit ([`effective_watch`]), and the fleet's alert
//! conditions ([`alerts`]).
//!
//! Architecture invariant: this crate does no I/O. No tokio, no sockets, no files, no clock —
//! time is passed in as plain numbers. That keeps every function here deterministic, so it can be
//! property-tested and fuzzed without a runtime.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod diff;
pub mod effective_watch;
pub mod env;
pub mod error;
pub mod export;
pub mod path;
pub mod read;
pub mod resolve;
pub mod retention;
pub mod rollout;
pub mod snapshot;
pub mod substitute;
pub mod validate;
pub mod value;

pub use path::{ConfigPath, PathError};
pub use value::{Format, MAX_VALUE_BYTES, ParsedValue, ValueError};

/// Per-path version: starts at 1, +1 on every change (a delete writes a tombstone version), never
/// reused.
pub type Version = u64;

/// The store's global revision of a commit (etcd's revision). Orders every change.
pub type Revision = i64;

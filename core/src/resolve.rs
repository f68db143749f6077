//! Effective values: a base value at `/{path}` with its overrides at `/env/{e}/{path}` for each
//! environment of a [`Chain`], merged by the rules below.
//!
//! Rules (most specific environment first, base last):
//! - The most specific layer that holds the path decides the format.
//! - Two JSON objects (json or yaml values) deep-merge: the more specific layer wins per key,
//!   recursively; a `null` in the more specific layer removes that key.
//! - Anything else (primitives, arrays, text, an object over a non-object) overrides wholesale.
//! - An override whose whole value is `null` removes the path in that environment (and its
//!   descendants in the chain), so it has no effective value there.
//!
//! Provenance: for every leaf of the effective value (by JSON pointer; `""` when the value is not
//! an object), which layer it came from.
//!
//! Pure; property-tested.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::env::Chain;
use crate::snapshot::Snapshot;
use crate::{ConfigPath, Format, Revision, Version};

/// One layer that contributed to an effective value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The stored path (`/env/prod/myapp/x` or `/myapp/x`).
    pub path: String,
    pub version: Version,
    pub revision: Revision,
    /// `None` for the base layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// RFC 3339, of that layer's version.
    pub updated_at: String,
}

/// A path's effective value in an environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// The base path (without `/env/{e}`).
    pub path: ConfigPath,
    /// The most specific layer's format.
    pub format: Format,
    /// The structured effective value (a JSON string for text).
    pub value: serde_json::Value,
    /// Layers that contributed, most specific first; `sources[0]` is the most specific.
    pub sources: Vec<Source>,
    /// For every leaf pointer of `value`, an index into `sources`.
    pub provenance: BTreeMap<String, usize>,
}

impl Effective {
    /// The value as the API shows it: JSON as is; text as its string; YAML as YAML text (the
    /// stored text when one layer decided it, re-rendered when layers merged).
    pub fn api_value(&self) -> serde_json::Value {
        todo!("resolve helper")
    }

    /// `{"<pointer>": {"path", "version", "revision", "environment"?, "updated_at"}}` for every
    /// leaf, for `?explain=true`.
    pub fn explain(&self) -> serde_json::Value {
        todo!("resolve helper")
    }
}

/// The effective value of `path` (a base path) in `chain`; `None` when no layer holds it or an
/// override removed it.
pub fn effective(snapshot: &Snapshot, chain: &Chain, path: &ConfigPath) -> Option<Effective> {
    let _ = (snapshot, chain, path);
    todo!("resolve helper")
}

/// Every base path at or below `prefix` that has an effective value in `chain`, in path order.
/// Paths that exist only as overrides in one of the chain's environments are included.
pub fn effective_below(snapshot: &Snapshot, chain: &Chain, prefix: &ConfigPath) -> Vec<Effective> {
    let _ = (snapshot, chain, prefix);
    todo!("resolve helper")
}

/// Names of the children of `prefix` (base paths) that exist in `chain`: base children plus
/// override children of every environment in the chain, minus nothing (a removed child still
/// lists when it has descendants). Sorted, unique.
pub fn children(snapshot: &Snapshot, chain: &Chain, prefix: &ConfigPath) -> Vec<String> {
    let _ = (snapshot, chain, prefix);
    todo!("resolve helper")
}

/// Nests values by path relative to `prefix` into one JSON object:
/// `/p/a/b = 1, /p/c = 2` under `/p` → `{"a": {"b": 1}, "c": 2}`. A path that holds a value and
/// has children: when the value is an object, the children's keys are merged into it (children
/// win); otherwise the value goes under the key `"_value"` beside the children. The prefix's own
/// value, if any, is treated the same way at the top.
pub fn tree(
    prefix: &ConfigPath,
    values: impl IntoIterator<Item = (ConfigPath, serde_json::Value)>,
) -> serde_json::Value {
    let _ = (prefix, values.into_iter().count());
    todo!("resolve helper")
}

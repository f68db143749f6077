//! Differences between two versions of a value.
//!
//! Structured values (`json`, `yaml`) diff as an RFC 6902 JSON Patch over their structured
//! views; when either side is `text`, the diff is a unified diff of the stored text (`---`/`+++`
//! headers carry the labels, e.g. `v1` and `v2`).

use crate::value::ParsedValue;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Diff {
    /// RFC 6902 operations turning `from` into `to`.
    JsonPatch { patch: serde_json::Value },
    /// Unified diff text.
    Unified { text: String },
}

/// Diff of `from` → `to`. `from` is `None` when the older side does not exist or is a tombstone
/// (the diff then adds everything); likewise `to` for a deletion (removes everything).
pub fn diff(
    from: Option<&ParsedValue>,
    to: Option<&ParsedValue>,
    from_label: &str,
    to_label: &str,
) -> Diff {
    todo!()
}

//! Differences between two versions of a value.
//!
//! Structured values (`json`, `yaml`) diff as an RFC 6902 JSON Patch over their structured
//! views; when either side is `text`, the diff is a unified diff of the stored text (`---`/`+++`
//! headers carry the labels, e.g. `v1` and `v2`).

use crate::value::{Format, ParsedValue};

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
///
/// A missing side counts as `null` for a JSON Patch (so the patch replaces the whole document,
/// which applied to `null` gives the other side) and as the empty string for a unified diff.
pub fn diff(
    from: Option<&ParsedValue>,
    to: Option<&ParsedValue>,
    from_label: &str,
    to_label: &str,
) -> Diff {
    let is_text = |side: Option<&ParsedValue>| side.is_some_and(|v| v.format() == Format::Text);
    if is_text(from) || is_text(to) {
        let from_text = from.map_or("", ParsedValue::stored);
        let to_text = to.map_or("", ParsedValue::stored);
        return Diff::Unified {
            text: unified(from_text, to_text, from_label, to_label),
        };
    }
    let null = serde_json::Value::Null;
    let from_doc = from.map_or(&null, ParsedValue::structured);
    let to_doc = to.map_or(&null, ParsedValue::structured);
    Diff::JsonPatch {
        patch: patch_value(&json_patch::diff(from_doc, to_doc)),
    }
}

/// A unified diff of two texts by lines; empty when they are equal.
pub fn unified(from: &str, to: &str, from_label: &str, to_label: &str) -> String {
    similar::TextDiff::from_lines(from, to)
        .unified_diff()
        .header(from_label, to_label)
        .to_string()
}

/// The JSON Patch (RFC 6902) that turns `from` into `to`, as JSON.
pub fn json_patch(from: &serde_json::Value, to: &serde_json::Value) -> serde_json::Value {
    patch_value(&json_patch::diff(from, to))
}

fn patch_value(patch: &json_patch::Patch) -> serde_json::Value {
    // A Patch is plain structs of strings, pointers and JSON values: turning it into a
    // `serde_json::Value` has no failure case (no non-string map keys, no I/O).
    serde_json::to_value(patch).expect("a JSON Patch always serializes to a JSON value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::tests::json_value;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn value(value: Value, format: Format) -> ParsedValue {
        ParsedValue::from_request(value, Some(format)).expect("test value is valid")
    }

    /// Applies a JSON Patch diff to `from` (null when absent) and returns the result.
    fn apply(from: Option<&ParsedValue>, patch: &Value) -> Result<Value, String> {
        let patch: json_patch::Patch =
            serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
        let mut doc = from.map_or(Value::Null, |v| v.structured().clone());
        json_patch::patch(&mut doc, &patch).map_err(|e| e.to_string())?;
        Ok(doc)
    }

    fn check(from: Option<&ParsedValue>, to: Option<&ParsedValue>, expected: Diff) {
        let got = diff(from, to, "v1", "v2");
        assert_eq!(got, expected, "{from:?} -> {to:?}");
        if let Diff::JsonPatch { patch } = &got {
            let to_doc = to.map_or(Value::Null, |v| v.structured().clone());
            assert_eq!(apply(from, patch), Ok(to_doc), "patch {patch} applied");
        }
    }

    fn patch(ops: Value) -> Diff {
        Diff::JsonPatch { patch: ops }
    }

    fn text(text: &str) -> Diff {
        Diff::Unified {
            text: text.to_owned(),
        }
    }

    #[test]
    fn diffs() {
        let a = value(json!({"host": "db", "port": 5432}), Format::Json);
        let b = value(
            json!({"host": "db", "port": 5433, "tls": true}),
            Format::Json,
        );
        let yaml_b = value(json!("host: db\nport: 5433\ntls: true\n"), Format::Yaml);
        let list = value(json!([1, 2]), Format::Json);
        let old_text = value(json!("one\ntwo\nthree\n"), Format::Text);
        let new_text = value(json!("one\n2\nthree\n"), Format::Text);
        let cases: Vec<(Option<&ParsedValue>, Option<&ParsedValue>, Diff)> = vec![
            (Some(&a), Some(&a), patch(json!([]))),
            (
                Some(&a),
                Some(&b),
                patch(json!([
                    {"op": "replace", "path": "/port", "value": 5433},
                    {"op": "add", "path": "/tls", "value": true},
                ])),
            ),
            // YAML diffs on its structured view, so a JSON → YAML change with equal data is empty.
            (Some(&b), Some(&yaml_b), patch(json!([]))),
            (
                None,
                Some(&a),
                patch(
                    json!([{"op": "replace", "path": "", "value": {"host": "db", "port": 5432}}]),
                ),
            ),
            (
                Some(&a),
                None,
                patch(json!([{"op": "replace", "path": "", "value": null}])),
            ),
            (
                Some(&a),
                Some(&list),
                patch(json!([{"op": "replace", "path": "", "value": [1, 2]}])),
            ),
            (None, None, patch(json!([]))),
            (
                Some(&old_text),
                Some(&new_text),
                text("--- v1\n+++ v2\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"),
            ),
            (Some(&old_text), Some(&old_text), text("")),
            (
                None,
                Some(&old_text),
                text("--- v1\n+++ v2\n@@ -0,0 +1,3 @@\n+one\n+two\n+three\n"),
            ),
            (
                Some(&new_text),
                None,
                text("--- v1\n+++ v2\n@@ -1,3 +0,0 @@\n-one\n-2\n-three\n"),
            ),
            // One text side: both sides diff as their stored text.
            (
                Some(&a),
                Some(&old_text),
                text(
                    "--- v1\n+++ v2\n@@ -1 +1,3 @@\n-{\"host\":\"db\",\"port\":5432}\n\\ No newline at end of file\n+one\n+two\n+three\n",
                ),
            ),
        ];
        for (from, to, expected) in cases {
            check(from, to, expected);
        }
    }

    #[test]
    fn serializes_with_kind_tag() {
        let got = serde_json::to_value(diff(None, None, "v1", "v2")).ok();
        assert_eq!(got, Some(json!({"kind": "json_patch", "patch": []})));
        let got = serde_json::to_value(text("x")).ok();
        assert_eq!(got, Some(json!({"kind": "unified", "text": "x"})));
    }

    fn side() -> impl Strategy<Value = Option<ParsedValue>> {
        proptest::option::of(json_value().prop_map(|v| value(v, Format::Json)))
    }

    proptest! {
        #[test]
        fn patch_turns_from_into_to(from in side(), to in side()) {
            let got = diff(from.as_ref(), to.as_ref(), "a", "b");
            let Diff::JsonPatch { patch } = got else {
                return Err(TestCaseError::fail("structured sides must give a JSON Patch"));
            };
            let to_doc = to.as_ref().map_or(Value::Null, |v| v.structured().clone());
            prop_assert_eq!(apply(from.as_ref(), &patch), Ok(to_doc));
        }

        #[test]
        fn equal_values_give_empty_diffs(v in json_value()) {
            let parsed = value(v, Format::Json);
            prop_assert_eq!(diff(Some(&parsed), Some(&parsed), "a", "b"), patch(json!([])));
        }
    }
}

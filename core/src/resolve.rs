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
//! Layers apply from the base upward: a removing override resets the value to absent, and a more
//! specific layer above it starts over. A value placed wholesale (over nothing or over a
//! non-object) is taken as it is, `null` members included; only a merge onto an object removes
//! keys. A base value of `null` is an ordinary value. Paths under the reserved `env` segment are
//! layers, never base paths, so they have no effective value of their own.
//!
//! Provenance: for every leaf of the effective value (by JSON pointer; `""` when the value is not
//! an object), which layer it came from. Arrays and empty objects are leaves.
//!
//! Pure; property-tested.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::env::{Chain, is_reserved, override_path, split_override};
use crate::snapshot::{Entry, Snapshot};
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
    ///
    /// A layer contributes when it decided the format (the most specific one, always listed) or
    /// supplies a leaf of the value. Layers wholly overridden, or below a removing override, are
    /// not listed.
    pub sources: Vec<Source>,
    /// For every leaf pointer of `value`, an index into `sources`.
    pub provenance: BTreeMap<String, usize>,
    /// For a YAML value that is exactly one layer's value, that layer's stored text (comments
    /// and layout included), which [`Effective::api_value`] shows as is. `None` otherwise.
    pub stored: Option<String>,
}

impl Effective {
    /// The value as the API shows it: JSON as is; text as its string; YAML as YAML text (the
    /// stored text when one layer decided it, re-rendered when layers merged).
    pub fn api_value(&self) -> serde_json::Value {
        match (self.format, &self.stored) {
            (Format::Yaml, Some(stored)) => serde_json::Value::String(stored.clone()),
            (Format::Yaml, None) => serde_yaml_ng::to_string(&self.value)
                .map(serde_json::Value::String)
                // A JSON value always renders as YAML; should that ever fail, the structure is
                // still the right answer.
                .unwrap_or_else(|_| self.value.clone()),
            (Format::Json | Format::Text, _) => self.value.clone(),
        }
    }

    /// `{"<pointer>": {"path", "version", "revision", "environment"?, "updated_at"}}` for every
    /// leaf, for `?explain=true`.
    pub fn explain(&self) -> serde_json::Value {
        let leaves = self
            .provenance
            .iter()
            .filter_map(|(pointer, &index)| {
                let source = self.sources.get(index)?;
                Some((
                    pointer.clone(),
                    serde_json::to_value(source).unwrap_or_default(),
                ))
            })
            .collect();
        serde_json::Value::Object(leaves)
    }
}

/// The effective value of `path` (a base path) in `chain`; `None` when no layer holds it or an
/// override removed it.
pub fn effective(snapshot: &Snapshot, chain: &Chain, path: &ConfigPath) -> Option<Effective> {
    if path.is_root() || is_reserved(path) {
        return None;
    }
    let layers = layers(snapshot, chain, path);
    let mut merged: Option<Merged> = None;
    for (index, layer) in layers.iter().enumerate().rev() {
        merged = apply(merged, index, layer);
    }
    merged.map(|merged| finish(path, &layers, merged))
}

/// Every base path at or below `prefix` that has an effective value in `chain`, in path order.
/// Paths that exist only as overrides in one of the chain's environments are included.
pub fn effective_below(snapshot: &Snapshot, chain: &Chain, prefix: &ConfigPath) -> Vec<Effective> {
    base_paths_below(snapshot, chain, prefix)
        .iter()
        .filter_map(|path| effective(snapshot, chain, path))
        .collect()
}

/// The base paths at or below `prefix` that some layer of `chain` holds (the base or an override
/// in one of the chain's environments), in path order: the paths that may have an effective
/// value. A path whose only layer is a removing override is included.
pub fn base_paths_below(
    snapshot: &Snapshot,
    chain: &Chain,
    prefix: &ConfigPath,
) -> BTreeSet<ConfigPath> {
    let mut bases: BTreeSet<ConfigPath> = snapshot
        .below(prefix)
        .map(|entry| &entry.path)
        .filter(|path| !is_reserved(path))
        .cloned()
        .collect();
    for level in &chain.levels {
        let Ok(overrides) = override_path(&level.name, prefix) else {
            continue;
        };
        for entry in snapshot.below(&overrides) {
            if let Some((environment, base)) = split_override(&entry.path)
                && environment == level.name
                && !is_reserved(&base)
            {
                bases.insert(base);
            }
        }
    }
    bases
}

/// Names of the children of `prefix` (base paths) that exist in `chain`: base children plus
/// override children of every environment in the chain, minus nothing (a removed child still
/// lists when it has descendants). Sorted, unique. A prefix under the reserved `env` segment is
/// not a base path and has none.
pub fn children(snapshot: &Snapshot, chain: &Chain, prefix: &ConfigPath) -> Vec<String> {
    if is_reserved(prefix) {
        return Vec::new();
    }
    let mut names: BTreeSet<String> = snapshot.children(prefix).into_iter().collect();
    for level in &chain.levels {
        if let Ok(overrides) = override_path(&level.name, prefix) {
            names.extend(snapshot.children(&overrides));
        }
    }
    if prefix.is_root() {
        names.remove(crate::env::ENV_SEGMENT);
    }
    names.into_iter().collect()
}

/// Nests values by path relative to `prefix` into one JSON object:
/// `/p/a/b = 1, /p/c = 2` under `/p` → `{"a": {"b": 1}, "c": 2}`. A path that holds a value and
/// has children: when the value is an object, the children's keys are merged into it (children
/// win); otherwise the value goes under the key `"_value"` beside the children. The prefix's own
/// value, if any, is treated the same way at the top.
///
/// The result is always an object: a non-object value of the prefix itself goes under `"_value"`
/// even without children, and a child named `_value` wins over it. Paths not at or below `prefix`
/// are ignored; for a path given twice, the last value wins.
pub fn tree(
    prefix: &ConfigPath,
    values: impl IntoIterator<Item = (ConfigPath, serde_json::Value)>,
) -> serde_json::Value {
    let depth = prefix.segment_count();
    let mut root = TreeNode::default();
    for (path, value) in values {
        if !path.starts_with(prefix) {
            continue;
        }
        let mut node = &mut root;
        for segment in path.segments().skip(depth) {
            node = node.children.entry(segment.to_owned()).or_default();
        }
        node.value = Some(value);
    }
    match root.render() {
        object @ serde_json::Value::Object(_) => object,
        other => serde_json::json!({ VALUE_KEY: other }),
    }
}

/// Where a path's own value goes when it also has children and is not an object.
const VALUE_KEY: &str = "_value";

#[derive(Default)]
struct TreeNode {
    value: Option<serde_json::Value>,
    children: BTreeMap<String, TreeNode>,
}

impl TreeNode {
    fn render(self) -> serde_json::Value {
        if self.children.is_empty() {
            return self
                .value
                .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        }
        let mut object = match self.value {
            Some(serde_json::Value::Object(object)) => object,
            Some(other) => serde_json::Map::from_iter([(VALUE_KEY.to_owned(), other)]),
            None => serde_json::Map::new(),
        };
        for (name, child) in self.children {
            object.insert(name, child.render());
        }
        serde_json::Value::Object(object)
    }
}

/// One stored layer of a path: the entry and the environment it overrides for (`None` = base).
struct Layer<'a> {
    entry: &'a Entry,
    environment: Option<&'a str>,
}

/// The layers of `path` that hold a value, most specific first, base last.
fn layers<'a>(snapshot: &'a Snapshot, chain: &'a Chain, path: &ConfigPath) -> Vec<Layer<'a>> {
    let overrides = chain.levels.iter().filter_map(|level| {
        let stored = override_path(&level.name, path).ok()?;
        let entry = snapshot.get(&stored)?;
        Some(Layer {
            entry,
            environment: Some(level.name.as_str()),
        })
    });
    let base = snapshot.get(path).map(|entry| Layer {
        entry,
        environment: None,
    });
    overrides.chain(base).collect()
}

/// A value being merged, each part tagged with the layer (index into the layers) it came from.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf {
        layer: usize,
        value: serde_json::Value,
    },
    /// `layer`: the most specific layer holding an object here (the origin of an empty object).
    Object {
        layer: usize,
        members: BTreeMap<String, Node>,
    },
}

impl Node {
    fn new(value: &serde_json::Value, layer: usize) -> Node {
        match value {
            serde_json::Value::Object(object) => Node::Object {
                layer,
                members: object
                    .iter()
                    .map(|(key, member)| (key.clone(), Node::new(member, layer)))
                    .collect(),
            },
            other => Node::Leaf {
                layer,
                value: other.clone(),
            },
        }
    }

    /// Deep-merges `patch` (from `layer`) over `self`: objects merge per key, `null` members
    /// remove keys, anything else replaces.
    fn merge(&mut self, patch: &serde_json::Value, layer: usize) {
        match (&mut *self, patch) {
            (
                Node::Object {
                    layer: origin,
                    members,
                },
                serde_json::Value::Object(patch),
            ) => {
                *origin = layer;
                for (key, member) in patch {
                    if member.is_null() {
                        members.remove(key);
                    } else if let Some(existing) = members.get_mut(key) {
                        existing.merge(member, layer);
                    } else {
                        members.insert(key.clone(), Node::new(member, layer));
                    }
                }
            }
            _ => *self = Node::new(patch, layer),
        }
    }

    fn to_value(&self) -> serde_json::Value {
        match self {
            Node::Leaf { value, .. } => value.clone(),
            Node::Object { members, .. } => serde_json::Value::Object(
                members
                    .iter()
                    .map(|(key, member)| (key.clone(), member.to_value()))
                    .collect(),
            ),
        }
    }

    /// Adds every leaf's pointer (below `pointer`) and layer to `out`.
    fn leaves(&self, pointer: &str, out: &mut BTreeMap<String, usize>) {
        match self {
            Node::Object { members, .. } if !members.is_empty() => {
                for (key, member) in members {
                    member.leaves(&format!("{pointer}/{}", escape_pointer_token(key)), out);
                }
            }
            Node::Leaf { layer, .. } | Node::Object { layer, .. } => {
                out.insert(pointer.to_owned(), *layer);
            }
        }
    }
}

/// RFC 6901: `~` → `~0`, `/` → `~1`.
pub(crate) fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The merge so far: the most specific layer applied, which decides the format, and the value.
struct Merged {
    top: usize,
    format: Format,
    node: Node,
}

/// Applies one layer (at `index`) over what the less specific layers gave.
fn apply(below: Option<Merged>, index: usize, layer: &Layer<'_>) -> Option<Merged> {
    let value = layer.entry.value.structured();
    let format = layer.entry.value.format();
    if layer.environment.is_some() && format == Format::Json && value.is_null() {
        return None;
    }
    let mergeable =
        |format: Format, value: &serde_json::Value| format != Format::Text && value.is_object();
    match below {
        Some(mut merged)
            if mergeable(format, value)
                && merged.format != Format::Text
                && matches!(merged.node, Node::Object { .. }) =>
        {
            merged.node.merge(value, index);
            merged.top = index;
            merged.format = format;
            Some(merged)
        }
        _ => Some(Merged {
            top: index,
            format,
            node: Node::new(value, index),
        }),
    }
}

/// Turns a merge into its effective value: provenance, and the layers that contributed.
fn finish(path: &ConfigPath, layers: &[Layer<'_>], merged: Merged) -> Effective {
    let mut leaves = BTreeMap::new();
    merged.node.leaves("", &mut leaves);
    // Layers apply from the base upward, so the top one has the smallest index: it comes first.
    let contributing: BTreeSet<usize> = leaves.values().copied().chain([merged.top]).collect();
    let position: BTreeMap<usize, usize> = contributing
        .iter()
        .enumerate()
        .map(|(position, &layer)| (layer, position))
        .collect();
    let sources: Vec<Source> = contributing
        .iter()
        .filter_map(|&index| layers.get(index))
        .map(Layer::source)
        .collect();
    let provenance = leaves
        .into_iter()
        .map(|(pointer, layer)| (pointer, position.get(&layer).copied().unwrap_or_default()))
        .collect();
    let value = merged.node.to_value();
    let stored = match (merged.format, layers.get(merged.top)) {
        (Format::Yaml, Some(top))
            if contributing.len() == 1 && top.entry.value.structured() == &value =>
        {
            Some(top.entry.value.stored().to_owned())
        }
        _ => None,
    };
    Effective {
        path: path.clone(),
        format: merged.format,
        value,
        sources,
        provenance,
        stored,
    }
}

impl Layer<'_> {
    fn source(&self) -> Source {
        Source {
            path: self.entry.path.as_str().to_owned(),
            version: self.entry.version,
            revision: self.entry.revision,
            environment: self.environment.map(str::to_owned),
            updated_at: self.entry.updated_at.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParsedValue;
    use crate::env::{Environment, Environments};
    use crate::value::tests::json_value;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn path(text: &str) -> ConfigPath {
        ConfigPath::parse(text).unwrap()
    }

    fn parsed(value: Value, format: Format) -> ParsedValue {
        ParsedValue::from_request(value, Some(format)).unwrap()
    }

    fn js(value: Value) -> ParsedValue {
        parsed(value, Format::Json)
    }

    fn yaml(text: &str) -> ParsedValue {
        parsed(json!(text), Format::Yaml)
    }

    fn text(text: &str) -> ParsedValue {
        parsed(json!(text), Format::Text)
    }

    /// Entry `i` gets version `i + 1`, revision `100 + i` and its own timestamp.
    fn snapshot(items: Vec<(&str, ParsedValue)>) -> Snapshot {
        let entries = items.into_iter().enumerate().map(|(i, (p, value))| Entry {
            path: path(p),
            value,
            version: i as Version + 1,
            revision: 100 + i as Revision,
            updated_at: format!("2026-01-01T00:00:{i:02}Z"),
        });
        Snapshot::from_entries(200, entries)
    }

    /// prod-eu → prod, plus dev and staging side by side; "" is no environment.
    fn chain(name: &str) -> Chain {
        if name.is_empty() {
            return Chain::base();
        }
        let env = |parent: Option<&str>| Environment {
            parent: parent.map(str::to_owned),
            ..Environment::default()
        };
        Environments::from_definitions([
            ("prod".to_owned(), env(None), 1),
            ("prod-eu".to_owned(), env(Some("prod")), 1),
            ("dev".to_owned(), env(None), 1),
            ("staging".to_owned(), env(None), 1),
        ])
        .chain(name)
        .unwrap()
    }

    /// What an effective value should be: its format, value, source paths (most specific first)
    /// and provenance as pointer → source path.
    struct Expected<'a> {
        format: Format,
        value: Value,
        sources: Vec<&'a str>,
        provenance: Vec<(&'a str, &'a str)>,
    }

    fn check(snapshot: &Snapshot, env: &str, base: &str, expected: Option<Expected<'_>>) {
        let got = effective(snapshot, &chain(env), &path(base));
        let label = format!("{base} in {env:?}");
        let (got, expected) = match (got, expected) {
            (None, None) => return,
            (Some(got), Some(expected)) => (got, expected),
            (got, expected) => panic!(
                "{label}: got {:?}, expected {:?}",
                got.map(|g| g.value),
                expected.map(|e| e.value)
            ),
        };
        assert_eq!(got.path, path(base), "{label}");
        assert_eq!(got.format, expected.format, "{label}");
        assert_eq!(got.value, expected.value, "{label}");
        let sources: Vec<&str> = got.sources.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(sources, expected.sources, "{label}: sources");
        let provenance: Vec<(&str, &str)> = got
            .provenance
            .iter()
            .map(|(pointer, &i)| (pointer.as_str(), got.sources[i].path.as_str()))
            .collect();
        assert_eq!(provenance, expected.provenance, "{label}: provenance");
        for source in &got.sources {
            let environment = split_override(&path(&source.path)).map(|(e, _)| e.to_owned());
            assert_eq!(source.environment, environment, "{label}: {}", source.path);
        }
    }

    fn json_of<'a>(
        value: Value,
        sources: &'a [&'a str],
        provenance: &'a [(&'a str, &'a str)],
    ) -> Option<Expected<'a>> {
        Some(Expected {
            format: Format::Json,
            value,
            sources: sources.to_vec(),
            provenance: provenance.to_vec(),
        })
    }

    const BASE: &str = "/app/db";
    const PROD: &str = "/env/prod/app/db";
    const EU: &str = "/env/prod-eu/app/db";

    #[test]
    fn three_levels_merge_from_the_base_upward() {
        let snapshot = snapshot(vec![
            (
                BASE,
                js(json!({"host": "base-db", "port": 5432, "pool": {"min": 1, "max": 10}})),
            ),
            (PROD, js(json!({"host": "prod-db", "pool": {"max": 50}}))),
            (EU, js(json!({"host": "eu-db"}))),
        ]);
        let base_only = || {
            json_of(
                json!({"host": "base-db", "port": 5432, "pool": {"min": 1, "max": 10}}),
                &[BASE],
                &[
                    ("/host", BASE),
                    ("/pool/max", BASE),
                    ("/pool/min", BASE),
                    ("/port", BASE),
                ],
            )
        };
        check(&snapshot, "", BASE, base_only());
        check(&snapshot, "dev", BASE, base_only());
        check(
            &snapshot,
            "prod",
            BASE,
            json_of(
                json!({"host": "prod-db", "port": 5432, "pool": {"min": 1, "max": 50}}),
                &[PROD, BASE],
                &[
                    ("/host", PROD),
                    ("/pool/max", PROD),
                    ("/pool/min", BASE),
                    ("/port", BASE),
                ],
            ),
        );
        check(
            &snapshot,
            "prod-eu",
            BASE,
            json_of(
                json!({"host": "eu-db", "port": 5432, "pool": {"min": 1, "max": 50}}),
                &[EU, PROD, BASE],
                &[
                    ("/host", EU),
                    ("/pool/max", PROD),
                    ("/pool/min", BASE),
                    ("/port", BASE),
                ],
            ),
        );
    }

    #[test]
    fn primitives_and_arrays_override_wholesale() {
        let snapshot = snapshot(vec![
            ("/app/n", js(json!(1))),
            ("/env/prod/app/n", js(json!("two"))),
            ("/app/list", js(json!([1, 2, 3]))),
            ("/env/prod/app/list", js(json!([4]))),
            ("/app/o", js(json!({"list": [1, 2], "x": {"y": 1}, "k": 1}))),
            (
                "/env/prod/app/o",
                js(json!({"list": [], "x": 5, "k": {"z": 2}})),
            ),
            ("/app/s", js(json!({"a": 1}))),
            ("/env/prod/app/s", js(json!([{"a": 2}]))),
        ]);
        check(
            &snapshot,
            "",
            "/app/n",
            json_of(json!(1), &["/app/n"], &[("", "/app/n")]),
        );
        let prod_n = &[("", "/env/prod/app/n")];
        check(
            &snapshot,
            "prod",
            "/app/n",
            json_of(json!("two"), &["/env/prod/app/n"], prod_n),
        );
        check(
            &snapshot,
            "prod-eu",
            "/app/n",
            json_of(json!("two"), &["/env/prod/app/n"], prod_n),
        );
        check(
            &snapshot,
            "prod",
            "/app/list",
            json_of(
                json!([4]),
                &["/env/prod/app/list"],
                &[("", "/env/prod/app/list")],
            ),
        );
        check(
            &snapshot,
            "prod",
            "/app/o",
            json_of(
                json!({"list": [], "x": 5, "k": {"z": 2}}),
                &["/env/prod/app/o"],
                &[
                    ("/k/z", "/env/prod/app/o"),
                    ("/list", "/env/prod/app/o"),
                    ("/x", "/env/prod/app/o"),
                ],
            ),
        );
        check(
            &snapshot,
            "prod",
            "/app/s",
            json_of(
                json!([{"a": 2}]),
                &["/env/prod/app/s"],
                &[("", "/env/prod/app/s")],
            ),
        );
    }

    #[test]
    fn null_members_remove_keys() {
        let snapshot = snapshot(vec![
            ("/app/a", js(json!({"a": 1, "b": 2, "c": {"x": 1, "y": 2}}))),
            (
                "/env/prod/app/a",
                js(json!({"b": null, "c": {"x": null}, "gone": null})),
            ),
            ("/env/prod-eu/app/a", js(json!({"b": 3}))),
            ("/app/e", js(json!({"a": {"x": 1}}))),
            ("/env/prod/app/e", js(json!({"a": {"x": null}}))),
            ("/app/all", js(json!({"a": 1}))),
            ("/env/prod/app/all", js(json!({"a": null}))),
            // Placed wholesale (nothing to merge onto): its nulls are values.
            (
                "/env/prod/app/fresh",
                js(json!({"a": null, "b": {"c": null}})),
            ),
        ]);
        check(
            &snapshot,
            "prod",
            "/app/a",
            json_of(
                json!({"a": 1, "c": {"y": 2}}),
                &["/env/prod/app/a", "/app/a"],
                &[("/a", "/app/a"), ("/c/y", "/app/a")],
            ),
        );
        check(
            &snapshot,
            "prod-eu",
            "/app/a",
            json_of(
                json!({"a": 1, "b": 3, "c": {"y": 2}}),
                &["/env/prod-eu/app/a", "/app/a"],
                &[
                    ("/a", "/app/a"),
                    ("/b", "/env/prod-eu/app/a"),
                    ("/c/y", "/app/a"),
                ],
            ),
        );
        check(
            &snapshot,
            "prod",
            "/app/e",
            json_of(
                json!({"a": {}}),
                &["/env/prod/app/e"],
                &[("/a", "/env/prod/app/e")],
            ),
        );
        check(
            &snapshot,
            "prod",
            "/app/all",
            json_of(
                json!({}),
                &["/env/prod/app/all"],
                &[("", "/env/prod/app/all")],
            ),
        );
        let fresh = "/env/prod/app/fresh";
        check(
            &snapshot,
            "prod",
            "/app/fresh",
            json_of(
                json!({"a": null, "b": {"c": null}}),
                &[fresh],
                &[("/a", fresh), ("/b/c", fresh)],
            ),
        );
    }

    #[test]
    fn a_null_override_removes_the_path_until_a_more_specific_layer() {
        let snapshot = snapshot(vec![
            ("/app/x", js(json!({"a": 1}))),
            ("/env/prod/app/x", js(json!(null))),
            ("/env/prod-eu/app/x", js(json!({"b": 2}))),
            ("/app/y", js(json!(1))),
            ("/env/prod/app/y", js(json!(null))),
            ("/env/prod/app/z", js(json!(null))),
            ("/app/n", js(json!(null))),
            ("/env/staging/app/n", js(json!({"a": 1}))),
        ]);
        check(&snapshot, "prod", "/app/x", None);
        check(
            &snapshot,
            "prod-eu",
            "/app/x",
            json_of(
                json!({"b": 2}),
                &["/env/prod-eu/app/x"],
                &[("/b", "/env/prod-eu/app/x")],
            ),
        );
        check(&snapshot, "prod", "/app/y", None);
        check(&snapshot, "prod-eu", "/app/y", None);
        check(
            &snapshot,
            "dev",
            "/app/y",
            json_of(json!(1), &["/app/y"], &[("", "/app/y")]),
        );
        check(&snapshot, "prod", "/app/z", None);
        check(&snapshot, "", "/app/z", None);
        // A base null is a value, and anything overrides it.
        check(
            &snapshot,
            "",
            "/app/n",
            json_of(json!(null), &["/app/n"], &[("", "/app/n")]),
        );
        check(
            &snapshot,
            "staging",
            "/app/n",
            json_of(
                json!({"a": 1}),
                &["/env/staging/app/n"],
                &[("/a", "/env/staging/app/n")],
            ),
        );
    }

    #[test]
    fn paths_held_only_as_overrides() {
        let snapshot = snapshot(vec![("/env/prod/app/only", js(json!(5)))]);
        let only = || {
            json_of(
                json!(5),
                &["/env/prod/app/only"],
                &[("", "/env/prod/app/only")],
            )
        };
        check(&snapshot, "prod", "/app/only", only());
        check(&snapshot, "prod-eu", "/app/only", only());
        check(&snapshot, "", "/app/only", None);
        check(&snapshot, "dev", "/app/only", None);
    }

    #[test]
    fn formats() {
        let snapshot = snapshot(vec![
            ("/f/text-over-json", js(json!({"a": 1}))),
            ("/env/prod/f/text-over-json", text("hello")),
            ("/f/json-over-text", text("a: 1")),
            ("/env/prod/f/json-over-text", js(json!({"b": 2}))),
            ("/f/json-over-yaml", yaml("a: 1\nb: 2\n")),
            ("/env/prod/f/json-over-yaml", js(json!({"b": 3}))),
            ("/f/yaml-over-json", js(json!({"a": 1, "b": 2}))),
            ("/env/prod/f/yaml-over-json", yaml("# prod\nb: 3\n")),
            ("/f/scalar-yaml", yaml("a: 1\n")),
            ("/env/prod/f/scalar-yaml", yaml("just words")),
            ("/f/text-over-text", text("one")),
            ("/env/prod/f/text-over-text", text("two")),
            // A text "null" is text, not a removal.
            ("/f/text-null", text("x")),
            ("/env/prod/f/text-null", text("null")),
        ]);
        let one = |p: &'static str, format: Format, value: Value| {
            Some(Expected {
                format,
                value,
                sources: vec![p],
                provenance: vec![("", p)],
            })
        };
        check(
            &snapshot,
            "prod",
            "/f/text-over-json",
            one("/env/prod/f/text-over-json", Format::Text, json!("hello")),
        );
        check(
            &snapshot,
            "prod",
            "/f/json-over-text",
            json_of(
                json!({"b": 2}),
                &["/env/prod/f/json-over-text"],
                &[("/b", "/env/prod/f/json-over-text")],
            ),
        );
        check(
            &snapshot,
            "prod",
            "/f/json-over-yaml",
            json_of(
                json!({"a": 1, "b": 3}),
                &["/env/prod/f/json-over-yaml", "/f/json-over-yaml"],
                &[
                    ("/a", "/f/json-over-yaml"),
                    ("/b", "/env/prod/f/json-over-yaml"),
                ],
            ),
        );
        check(
            &snapshot,
            "prod",
            "/f/yaml-over-json",
            Some(Expected {
                format: Format::Yaml,
                value: json!({"a": 1, "b": 3}),
                sources: vec!["/env/prod/f/yaml-over-json", "/f/yaml-over-json"],
                provenance: vec![
                    ("/a", "/f/yaml-over-json"),
                    ("/b", "/env/prod/f/yaml-over-json"),
                ],
            }),
        );
        check(
            &snapshot,
            "prod",
            "/f/scalar-yaml",
            one("/env/prod/f/scalar-yaml", Format::Yaml, json!("just words")),
        );
        check(
            &snapshot,
            "prod",
            "/f/text-over-text",
            one("/env/prod/f/text-over-text", Format::Text, json!("two")),
        );
        check(
            &snapshot,
            "prod",
            "/f/text-null",
            one("/env/prod/f/text-null", Format::Text, json!("null")),
        );
    }

    #[test]
    fn api_values_by_format() {
        let snapshot = snapshot(vec![
            ("/y/merged", js(json!({"a": 1, "b": 2}))),
            ("/env/prod/y/merged", yaml("# prod\nb: 3\n")),
            ("/y/decided", js(json!({"b": 1}))),
            ("/env/prod/y/decided", yaml("# keep me\nb: 3\n")),
            ("/y/removed", yaml("# base\nb: 1\nc: 2\n")),
            ("/env/prod/y/removed", yaml("c: null\n")),
            ("/y/base", yaml("# base\nlist: [1, 2]\n")),
            ("/t", text("line\n")),
            ("/j", js(json!({"a": [1]}))),
        ]);
        let api = |env: &str, p: &str| {
            effective(&snapshot, &chain(env), &path(p))
                .unwrap()
                .api_value()
        };
        assert_eq!(api("prod", "/y/merged"), json!("a: 1\nb: 3\n"));
        assert_eq!(api("prod", "/y/decided"), json!("# keep me\nb: 3\n"));
        assert_eq!(api("prod", "/y/removed"), json!("b: 1\n"));
        assert_eq!(api("prod", "/y/base"), json!("# base\nlist: [1, 2]\n"));
        assert_eq!(api("", "/y/merged"), json!({"a": 1, "b": 2}));
        assert_eq!(api("prod", "/t"), json!("line\n"));
        assert_eq!(api("prod", "/j"), json!({"a": [1]}));
    }

    #[test]
    fn pointers_are_escaped_and_explained() {
        let snapshot = snapshot(vec![
            ("/app/k", js(json!({"a/b": 1, "m~n": {"": 2}, "list": [1]}))),
            ("/env/prod/app/k", js(json!({"list": [2]}))),
        ]);
        let got = effective(&snapshot, &chain("prod"), &path("/app/k")).unwrap();
        let pointers: Vec<&str> = got.provenance.keys().map(String::as_str).collect();
        assert_eq!(pointers, ["/a~1b", "/list", "/m~0n/"]);
        for pointer in &pointers {
            assert!(got.value.pointer(pointer).is_some(), "{pointer}");
        }
        assert_eq!(
            got.explain(),
            json!({
                "/a~1b": {
                    "path": "/app/k", "version": 1, "revision": 100,
                    "updated_at": "2026-01-01T00:00:00Z",
                },
                "/list": {
                    "path": "/env/prod/app/k", "version": 2, "revision": 101,
                    "environment": "prod", "updated_at": "2026-01-01T00:00:01Z",
                },
                "/m~0n/": {
                    "path": "/app/k", "version": 1, "revision": 100,
                    "updated_at": "2026-01-01T00:00:00Z",
                },
            })
        );
    }

    #[test]
    fn reserved_and_root_paths_have_no_effective_value() {
        let snapshot = snapshot(vec![
            ("/env/prod", js(json!({}))),
            ("/env/prod/app/x", js(json!(1))),
        ]);
        for p in ["/", "/env", "/env/prod", "/env/prod/app/x"] {
            check(&snapshot, "prod", p, None);
            check(&snapshot, "", p, None);
        }
    }

    /// Several environments over one snapshot, with definitions stored under `/env` as they are.
    fn side_by_side() -> Snapshot {
        snapshot(vec![
            ("/app/a", js(json!(1))),
            ("/app/b", js(json!({"x": 1}))),
            ("/app/b/deep", js(json!(true))),
            ("/appx/e", js(json!("e"))),
            ("/env/dev", js(json!({}))),
            ("/env/dev/app/d", js(json!("dev only"))),
            ("/env/dev/app/a", js(json!(10))),
            ("/env/prod", js(json!({}))),
            ("/env/prod/app/b", js(json!(null))),
            ("/env/prod/app/c", js(json!("prod only"))),
            ("/env/prod/env/x", js(json!("not a base path"))),
            ("/env/prod-eu", js(json!({"parent": "prod"}))),
            ("/env/prod-eu/app/a", js(json!(30))),
            ("/env/staging", js(json!({}))),
        ])
    }

    /// Paths and values, as a test writes them.
    type Values<'a> = Vec<(&'a str, Value)>;

    fn below(snapshot: &Snapshot, env: &str, prefix: &str) -> Vec<(String, Value)> {
        effective_below(snapshot, &chain(env), &path(prefix))
            .into_iter()
            .map(|e| (e.path.as_str().to_owned(), e.value))
            .collect()
    }

    fn pairs(items: &[(&str, Value)]) -> Vec<(String, Value)> {
        items
            .iter()
            .map(|(p, v)| ((*p).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn effective_below_each_environment() {
        let snapshot = side_by_side();
        let common = [("/app/b/deep", json!(true)), ("/appx/e", json!("e"))];
        let cases: Vec<(&str, &str, Values<'_>)> = vec![
            (
                "",
                "/",
                vec![
                    ("/app/a", json!(1)),
                    ("/app/b", json!({"x": 1})),
                    common[0].clone(),
                    common[1].clone(),
                ],
            ),
            (
                "staging",
                "/",
                vec![
                    ("/app/a", json!(1)),
                    ("/app/b", json!({"x": 1})),
                    common[0].clone(),
                    common[1].clone(),
                ],
            ),
            (
                "dev",
                "/",
                vec![
                    ("/app/a", json!(10)),
                    ("/app/b", json!({"x": 1})),
                    common[0].clone(),
                    ("/app/d", json!("dev only")),
                    common[1].clone(),
                ],
            ),
            (
                "prod",
                "/",
                vec![
                    ("/app/a", json!(1)),
                    common[0].clone(),
                    ("/app/c", json!("prod only")),
                    common[1].clone(),
                ],
            ),
            (
                "prod-eu",
                "/app",
                vec![
                    ("/app/a", json!(30)),
                    common[0].clone(),
                    ("/app/c", json!("prod only")),
                ],
            ),
            ("prod", "/app/b", vec![common[0].clone()]),
            (
                "dev",
                "/app/b",
                vec![("/app/b", json!({"x": 1})), common[0].clone()],
            ),
            ("dev", "/app/d", vec![("/app/d", json!("dev only"))]),
            ("prod", "/app/d", vec![]),
            ("prod", "/env", vec![]),
            ("prod", "/env/prod", vec![]),
            ("prod", "/nothing", vec![]),
        ];
        for (env, prefix, expected) in cases {
            assert_eq!(
                below(&snapshot, env, prefix),
                pairs(&expected),
                "{prefix} in {env:?}"
            );
        }
    }

    #[test]
    fn children_union_the_layers() {
        let snapshot = side_by_side();
        let cases: &[(&str, &str, &[&str])] = &[
            ("", "/", &["app", "appx"]),
            ("prod", "/", &["app", "appx"]),
            ("", "/app", &["a", "b"]),
            ("dev", "/app", &["a", "b", "d"]),
            // `b` is removed in prod but still has a descendant.
            ("prod", "/app", &["a", "b", "c"]),
            ("prod-eu", "/app", &["a", "b", "c"]),
            ("prod", "/app/b", &["deep"]),
            ("prod", "/env", &[]),
            ("prod", "/missing", &[]),
        ];
        for (env, prefix, expected) in cases {
            assert_eq!(
                children(&snapshot, &chain(env), &path(prefix)),
                *expected,
                "{prefix} in {env:?}"
            );
        }
    }

    #[test]
    fn tree_nests_values_by_path() {
        let cases: Vec<(&str, Values<'_>, Value)> = vec![
            (
                "/p",
                vec![("/p/a/b", json!(1)), ("/p/c", json!(2))],
                json!({"a": {"b": 1}, "c": 2}),
            ),
            ("/p", vec![], json!({})),
            (
                "/p",
                vec![("/p/a", json!({"x": 1, "b": 0})), ("/p/a/b", json!(2))],
                json!({"a": {"x": 1, "b": 2}}),
            ),
            (
                "/p",
                vec![("/p/a", json!("v")), ("/p/a/b", json!(2))],
                json!({"a": {"_value": "v", "b": 2}}),
            ),
            (
                "/p",
                vec![("/p", json!({"own": 1})), ("/p/c", json!(2))],
                json!({"own": 1, "c": 2}),
            ),
            (
                "/p",
                vec![("/p", json!(7)), ("/p/c", json!(2))],
                json!({"_value": 7, "c": 2}),
            ),
            ("/p", vec![("/p", json!(7))], json!({"_value": 7})),
            ("/p", vec![("/p", json!({"k": [1]}))], json!({"k": [1]})),
            (
                "/p",
                vec![("/q/a", json!(1)), ("/pp", json!(1)), ("/p/a", json!(3))],
                json!({"a": 3}),
            ),
            (
                "/",
                vec![("/a/b", json!(null)), ("/c", json!([]))],
                json!({"a": {"b": null}, "c": []}),
            ),
        ];
        for (prefix, values, expected) in cases {
            let values = values.into_iter().map(|(p, v)| (path(p), v));
            assert_eq!(tree(&path(prefix), values), expected, "{prefix}");
        }
    }

    fn object() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[a-c]{1,2}", json_value(), 0..5)
            .prop_map(|map| Value::Object(map.into_iter().collect()))
    }

    /// Leaf pointers of a value, computed independently of the merge.
    fn leaf_pointers(value: &Value, pointer: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(object) if !object.is_empty() => {
                for (key, member) in object {
                    leaf_pointers(
                        member,
                        &format!("{pointer}/{}", escape_pointer_token(key)),
                        out,
                    );
                }
            }
            _ => out.push(pointer.to_owned()),
        }
    }

    proptest! {
        #[test]
        fn without_overrides_the_base_value_is_unchanged(value in json_value(), env in prop_oneof!["", "dev", "prod-eu"]) {
            let snapshot = snapshot(vec![("/app/x", js(value.clone()))]);
            let got = effective(&snapshot, &chain(&env), &path("/app/x")).unwrap();
            prop_assert_eq!(&got.value, &value);
            prop_assert_eq!(got.api_value(), value.clone());
            prop_assert_eq!(got.format, Format::Json);
            prop_assert_eq!(got.sources.len(), 1);
            prop_assert_eq!(got.sources[0].path.as_str(), "/app/x");
            let mut leaves = Vec::new();
            leaf_pointers(&value, "", &mut leaves);
            prop_assert_eq!(got.provenance.keys().cloned().collect::<Vec<_>>(), leaves);
            prop_assert!(got.provenance.values().all(|&i| i == 0));
        }

        #[test]
        fn override_keys_win_at_top_level(base in object(), over in object()) {
            let snapshot = snapshot(vec![("/app/x", js(base.clone())), ("/env/prod/app/x", js(over.clone()))]);
            let got = effective(&snapshot, &chain("prod"), &path("/app/x")).unwrap();
            let (Value::Object(base), Value::Object(over), Value::Object(value)) = (&base, &over, &got.value) else {
                return Err(TestCaseError::fail("objects expected"));
            };
            for (key, member) in over {
                if member.is_null() {
                    prop_assert!(!value.contains_key(key), "{key} should be removed");
                } else if !(member.is_object() && base.get(key).is_some_and(Value::is_object)) {
                    prop_assert_eq!(value.get(key), Some(member), "{}", key);
                }
            }
            for (key, member) in base {
                if !over.contains_key(key) {
                    prop_assert_eq!(value.get(key), Some(member), "{}", key);
                }
            }
            // Provenance covers exactly the leaves, and every source is used or decided the format.
            let mut leaves = Vec::new();
            leaf_pointers(&got.value, "", &mut leaves);
            prop_assert_eq!(got.provenance.keys().cloned().collect::<Vec<_>>(), leaves);
            prop_assert_eq!(got.sources[0].path.as_str(), "/env/prod/app/x");
            for index in 1..got.sources.len() {
                prop_assert!(got.provenance.values().any(|&i| i == index));
            }
        }
    }
}

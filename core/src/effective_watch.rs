//! What a watch in an environment sees of one commit batch: the changes of *effective* values
//! (base and overrides merged, as `GET …?env=E` answers them), not of stored entries.
//!
//! [`EnvView::events`] compares the effective values before and after a batch, for exactly the
//! base paths the batch can have changed, and yields one [`Event`] per path whose effective
//! value changed (old and new entries, base paths, kind `Delete` when the value disappears); a
//! batch that changes no effective value yields none. Which paths a batch can change:
//! - a base path `/x` → `/x`;
//! - an override `/env/E/x` with `E` in the environment's chain before or after the batch → `/x`;
//! - a definition `/env/E` with `E` in either chain → every path of the watched prefixes, when
//!   the chain's environments changed (or, with `resolve`, its variables); a definition change
//!   that leaves both (e.g. a description) changes nothing.
//!
//! An effective entry is `{path: base path, value, version, revision, updated_at}` with the
//! version, revision and time of the most specific contributing layer, as the gRPC `Get` with
//! `env` answers. Values compare as the API shows them (format and text), so a rewrite with the
//! same value, or a YAML override identical to what it replaces, is no change.
//!
//! An environment that does not exist, or whose chain is broken (a parent deleted, a cycle
//! written around the API), is seen as base values only: a watch keeps going when its
//! environment is deleted, and sees the base values then. Refusing to *start* such a watch is
//! the caller's decision (the edge refuses it as `GET ?env=` does).
//!
//! With `resolve`, `${VAR}` references are substituted from the chain's variables;
//! `${secret:…}` references stay as written (a watch never fetches or pushes a secret: a client
//! reads one on demand with `Resolve`). A value whose substitution has a problem (a missing
//! variable, a cycle, a malformed reference) is pushed raw, unsubstituted, so one bad value never
//! stops a stream; the `Resolve` read of that path names the problem.
//!
//! System records (`/_setpoint/…`) are seen only by watches of a prefix inside that namespace,
//! as for base watches ([`covers`]).
//!
//! Pure: no I/O. The caller passes the snapshots (the one before a batch is rebuilt cheaply with
//! [`Snapshot::undo`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::auth::is_system;
use crate::env::{self, Chain};
use crate::read::shown_value;
use crate::resolve::{self, Effective};
use crate::snapshot::{AppliedBatch, Entry, Event, EventKind, Snapshot};
use crate::substitute;
use crate::{ConfigPath, Format, ParsedValue};

/// Whether a watcher of `prefix` sees `path`: below it, and a system record only when the prefix
/// is itself inside the system namespace.
pub fn covers(prefix: &ConfigPath, path: &ConfigPath) -> bool {
    path.starts_with(prefix) && !(prefix.is_root() && is_system(path))
}

/// An environment as a watch sees it: its name (`None`: base values, as `GET ?resolve=true`
/// without `env` reads them), and whether `${VAR}` is substituted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvView {
    pub env: Option<String>,
    pub resolve: bool,
}

impl EnvView {
    pub fn new(env: impl Into<String>, resolve: bool) -> EnvView {
        EnvView {
            env: Some(env.into()),
            resolve,
        }
    }

    /// The chain this view resolves with in `snapshot`: base values only when the environment
    /// does not exist or its chain is broken.
    pub fn chain(&self, snapshot: &Snapshot) -> Chain {
        match &self.env {
            Some(name) => env::chain_of(snapshot, name).unwrap_or_default(),
            None => Chain::base(),
        }
    }

    /// The effective events of `batch` at or below `scope` (prefixes, any overlap), in path
    /// order. `before` and `after` are the snapshots on either side of the batch.
    pub fn events(
        &self,
        before: &Snapshot,
        after: &Snapshot,
        batch: &AppliedBatch,
        scope: &[ConfigPath],
    ) -> Vec<Event> {
        let in_scope = |path: &ConfigPath| scope.iter().any(|prefix| covers(prefix, path));
        let relevant = |path: &ConfigPath| match env::split_override(path) {
            Some((_, base)) => in_scope(&base),
            None => env::definition_name(path).is_some() || in_scope(path),
        };
        if !batch.events.iter().any(|event| relevant(&event.path)) {
            return Vec::new();
        }
        let touches_definition = batch
            .events
            .iter()
            .any(|event| env::definition_name(&event.path).is_some());
        let chain_after = self.chain(after);
        let chain_before = if touches_definition {
            self.chain(before)
        } else {
            chain_after.clone()
        };
        let in_chain = |name: &str| {
            chain_before
                .levels
                .iter()
                .chain(&chain_after.levels)
                .any(|level| level.name == name)
        };
        let mut paths: BTreeSet<ConfigPath> = BTreeSet::new();
        let mut everything = false;
        for event in &batch.events {
            if let Some(name) = env::definition_name(&event.path) {
                everything |= in_chain(name) && self.chain_differs(&chain_before, &chain_after);
            } else if let Some((name, base)) = env::split_override(&event.path) {
                if in_chain(name) && !env::is_reserved(&base) && in_scope(&base) {
                    paths.insert(base);
                }
            } else if !env::is_reserved(&event.path) && in_scope(&event.path) {
                paths.insert(event.path.clone());
            }
        }
        if everything {
            for prefix in scope {
                for (snapshot, chain) in [(before, &chain_before), (after, &chain_after)] {
                    paths.extend(
                        resolve::base_paths_below(snapshot, chain, prefix)
                            .into_iter()
                            .filter(|path| covers(prefix, path)),
                    );
                }
            }
        }
        paths
            .into_iter()
            .filter_map(|path| {
                let old = self.entry(before, &chain_before, &path);
                let new = self.entry(after, &chain_after, &path);
                let (kind, version) = match (&old, &new) {
                    (None, None) => return None,
                    (Some(old), Some(new)) if old.value == new.value => return None,
                    (_, Some(new)) => (EventKind::Put, new.version),
                    (Some(old), None) => (EventKind::Delete, old.version),
                };
                Some(Event {
                    kind,
                    path,
                    old,
                    new,
                    version,
                    revision: batch.revision,
                })
            })
            .collect()
    }

    /// Whether a change of definitions can change effective values: the chain's environments
    /// differ, or (substituting) their variables do.
    fn chain_differs(&self, before: &Chain, after: &Chain) -> bool {
        let names = |chain: &Chain| -> Vec<String> {
            chain
                .levels
                .iter()
                .map(|level| level.name.clone())
                .collect()
        };
        names(before) != names(after)
            || (self.resolve
                && before
                    .levels
                    .iter()
                    .zip(&after.levels)
                    .any(|(b, a)| b.environment.variables != a.environment.variables))
    }

    /// Every effective entry at or below `prefixes` (disjoint, as a watch normalizes them) in
    /// `snapshot`, in path order: the state a reset carries.
    pub fn state(&self, snapshot: &Snapshot, prefixes: &[ConfigPath]) -> Vec<Arc<Entry>> {
        let chain = self.chain(snapshot);
        let mut entries: Vec<Arc<Entry>> = prefixes
            .iter()
            .flat_map(|prefix| {
                resolve::base_paths_below(snapshot, &chain, prefix)
                    .into_iter()
                    .filter(|path| covers(prefix, path))
                    .filter_map(|path| self.entry(snapshot, &chain, &path))
                    .collect::<Vec<_>>()
            })
            .collect();
        if prefixes.len() > 1 {
            entries.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        }
        entries
    }

    /// The effective entry of base path `path` in `chain`, as this view pushes it.
    pub fn entry(
        &self,
        snapshot: &Snapshot,
        chain: &Chain,
        path: &ConfigPath,
    ) -> Option<Arc<Entry>> {
        let effective = resolve::effective(snapshot, chain, path)?;
        let top = effective.sources.first()?;
        let substituting = self.resolve && substitute::has_references(&effective.value);
        // One layer that is the effective value as stored (an override merged onto an object
        // can drop its own `null` members: then it is not) is reused rather than rebuilt.
        let alone = (effective.sources.len() == 1 && !substituting)
            .then(|| {
                let layer = if top.path == path.as_str() {
                    snapshot.get(path)
                } else {
                    snapshot.get(&ConfigPath::parse(&top.path).ok()?)
                };
                layer.filter(|layer| layer.value.structured() == &effective.value)
            })
            .flatten();
        let value = match alone {
            // The base entry alone decides: share it as stored.
            Some(layer) if layer.path == *path => return Some(layer.clone()),
            Some(layer) => layer.value.clone(),
            None => self.value(&effective, chain),
        };
        Some(Arc::new(Entry {
            path: path.clone(),
            value,
            version: top.version,
            revision: top.revision,
            updated_at: top.updated_at.clone(),
        }))
    }

    /// The value as `GET ?env=…` (with `resolve`, `&resolve=true`) shows it, secrets left as
    /// references; raw when substitution has a problem.
    fn value(&self, effective: &Effective, chain: &Chain) -> ParsedValue {
        let substituted = self
            .resolve
            .then(|| {
                substitute::substitute_variables(&effective.value, chain, effective.path.as_str())
                    .ok()
            })
            .flatten();
        let structured = substituted.unwrap_or_else(|| effective.value.clone());
        let shown = shown_value(effective, &structured);
        let stored = match (effective.format, shown) {
            (Format::Json, _) => serde_json::to_string(&structured).unwrap_or_default(),
            (Format::Yaml | Format::Text, serde_json::Value::String(text)) => text,
            // A YAML or text value always shows as a string; should that ever not hold, its
            // JSON text is still a faithful rendering.
            (Format::Yaml | Format::Text, other) => other.to_string(),
        };
        ParsedValue::from_parts(effective.format, stored, structured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Batch, Change, ChangeKind};
    use crate::{Revision, Version};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn path(p: &str) -> ConfigPath {
        ConfigPath::parse(p).unwrap()
    }

    /// A change as a test writes it: a JSON value, `text:` for text, `yaml:` for YAML, or
    /// `None` for a delete.
    type Op<'a> = (&'a str, Option<Value>);

    fn change(p: &str, value: &Option<Value>, version: Version) -> Change {
        let kind = match value {
            None => ChangeKind::Delete,
            Some(Value::String(s)) if s.starts_with("text:") => ChangeKind::Put {
                value: ParsedValue::from_stored(Format::Text, &s["text:".len()..]).unwrap(),
            },
            Some(Value::String(s)) if s.starts_with("yaml:") => ChangeKind::Put {
                value: ParsedValue::from_stored(Format::Yaml, &s["yaml:".len()..]).unwrap(),
            },
            Some(v) => ChangeKind::Put {
                value: ParsedValue::from_request(v.clone(), None).unwrap(),
            },
        };
        Change {
            path: path(p),
            version,
            updated_at: format!("2026-01-01T00:00:{version:02}Z"),
            kind,
        }
    }

    /// Applies `setup` as revision 10 and `batch` as revision 11.
    fn two_snapshots(setup: &[Op<'_>], batch: &[Op<'_>]) -> (Snapshot, Snapshot, AppliedBatch) {
        let first = Batch {
            revision: 10,
            committed_at_micros: 0,
            changes: setup.iter().map(|(p, v)| change(p, v, 1)).collect(),
        };
        let (before, _) = Snapshot::empty().apply(&first).unwrap();
        let second = Batch {
            revision: 11,
            committed_at_micros: 0,
            changes: batch.iter().map(|(p, v)| change(p, v, 2)).collect(),
        };
        let (after, applied) = before.apply(&second).unwrap();
        (before, after, applied)
    }

    /// `(kind, path, old value, new value, version)` with values as the API shows them.
    type Seen = (EventKind, String, Option<Value>, Option<Value>, Version);

    fn seen(events: &[Event]) -> Vec<Seen> {
        events
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.path.to_string(),
                    e.old.as_ref().map(|o| o.value.to_api_value()),
                    e.new.as_ref().map(|n| n.value.to_api_value()),
                    e.version,
                )
            })
            .collect()
    }

    fn put(p: &str, old: Option<Value>, new: Value, version: Version) -> Seen {
        (EventKind::Put, p.to_owned(), old, Some(new), version)
    }

    fn gone(p: &str, old: Value, version: Version) -> Seen {
        (EventKind::Delete, p.to_owned(), Some(old), None, version)
    }

    /// The events a watch of `scope` in `view` sees for `batch` after `setup`; also checks them
    /// against a recomputation from scratch (every effective value before and after).
    fn check(
        view: &EnvView,
        scope: &[&str],
        setup: &[Op<'_>],
        batch: &[Op<'_>],
        expected: Vec<Seen>,
    ) {
        let (before, after, applied) = two_snapshots(setup, batch);
        let scope: Vec<ConfigPath> = scope.iter().map(|p| path(p)).collect();
        let got = view.events(&before, &after, &applied, &scope);
        assert_eq!(seen(&got), expected, "{setup:?} then {batch:?}");
        assert_eq!(got, brute_force(view, &before, &after, &scope, 11));
        for event in &got {
            assert_eq!(event.revision, 11);
        }
    }

    /// Every effective value before and after, compared: what `events` must equal.
    fn brute_force(
        view: &EnvView,
        before: &Snapshot,
        after: &Snapshot,
        scope: &[ConfigPath],
        revision: Revision,
    ) -> Vec<Event> {
        let state = |snapshot: &Snapshot| -> std::collections::BTreeMap<String, Arc<Entry>> {
            scope
                .iter()
                .flat_map(|p| view.state(snapshot, std::slice::from_ref(p)))
                .map(|e| (e.path.to_string(), e))
                .collect()
        };
        let (old, new) = (state(before), state(after));
        let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        paths
            .into_iter()
            .filter_map(|p| {
                let (o, n) = (old.get(p).cloned(), new.get(p).cloned());
                if o.as_ref().map(|e| &e.value) == n.as_ref().map(|e| &e.value) {
                    return None;
                }
                let (kind, version) = match (&o, &n) {
                    (_, Some(n)) => (EventKind::Put, n.version),
                    (Some(o), None) => (EventKind::Delete, o.version),
                    (None, None) => return None,
                };
                Some(Event {
                    kind,
                    path: path(p),
                    old: o,
                    new: n,
                    version,
                    revision,
                })
            })
            .collect()
    }

    fn prod() -> EnvView {
        EnvView::new("prod", false)
    }

    fn defined(name: &str, definition: Value) -> Op<'_> {
        // Leaked: tests only, so the op can borrow a built path.
        let p: &'static str = Box::leak(format!("/env/{name}").into_boxed_str());
        (p, Some(definition))
    }

    #[test]
    fn base_and_override_changes() {
        let setup = || {
            vec![
                defined("prod", json!({})),
                defined("dev", json!({})),
                ("/app/a", Some(json!(1))),
                ("/app/b", Some(json!({"x": 1, "y": 2}))),
                ("/env/prod/app/b", Some(json!({"y": 3}))),
            ]
        };
        let cases: Vec<(&str, Vec<Op<'_>>, Vec<Seen>)> = vec![
            (
                "a base change shows",
                vec![("/app/a", Some(json!(2)))],
                vec![put("/app/a", Some(json!(1)), json!(2), 2)],
            ),
            (
                "an override added",
                vec![("/env/prod/app/a", Some(json!(5)))],
                vec![put("/app/a", Some(json!(1)), json!(5), 2)],
            ),
            (
                "an override removed falls back to the base",
                vec![("/env/prod/app/b", None)],
                vec![put(
                    "/app/b",
                    Some(json!({"x": 1, "y": 3})),
                    json!({"x": 1, "y": 2}),
                    1,
                )],
            ),
            (
                "a base key the override shadows changes nothing",
                vec![("/app/b", Some(json!({"x": 1, "y": 9})))],
                vec![],
            ),
            (
                "a base key the override merges shows with the override's version",
                vec![("/app/b", Some(json!({"x": 7, "y": 2})))],
                vec![put(
                    "/app/b",
                    Some(json!({"x": 1, "y": 3})),
                    json!({"x": 7, "y": 3}),
                    1,
                )],
            ),
            (
                "another environment's override changes nothing",
                vec![("/env/dev/app/a", Some(json!(9)))],
                vec![],
            ),
            (
                "a rewrite with the same value changes nothing",
                vec![("/app/a", Some(json!(1)))],
                vec![],
            ),
            (
                "a removing override deletes the effective value",
                vec![("/env/prod/app/a", Some(json!(null)))],
                vec![gone("/app/a", json!(1), 1)],
            ),
            (
                "an override placed wholesale keeps its null members",
                vec![("/env/prod/app/a", Some(json!({"k": 1, "gone": null})))],
                vec![put(
                    "/app/a",
                    Some(json!(1)),
                    json!({"k": 1, "gone": null}),
                    2,
                )],
            ),
            (
                "an override's null members remove keys when it merges",
                vec![(
                    "/env/prod/app/b",
                    Some(json!({"y": 3, "x": null, "z": null})),
                )],
                vec![put(
                    "/app/b",
                    Some(json!({"x": 1, "y": 3})),
                    json!({"y": 3}),
                    2,
                )],
            ),
            (
                "a path only an override holds appears",
                vec![("/env/prod/app/c", Some(json!("c")))],
                vec![put("/app/c", None, json!("c"), 2)],
            ),
            (
                "a base delete leaves what the override holds",
                vec![("/app/b", None)],
                vec![put(
                    "/app/b",
                    Some(json!({"x": 1, "y": 3})),
                    json!({"y": 3}),
                    1,
                )],
            ),
            (
                "outside the scope, nothing",
                vec![
                    ("/other/a", Some(json!(1))),
                    ("/env/prod/other/b", Some(json!(1))),
                ],
                vec![],
            ),
            (
                "several in one batch, in path order",
                vec![
                    ("/env/prod/app/c", Some(json!(3))),
                    ("/app/a", None),
                    ("/app/b", Some(json!({"x": 2, "y": 2}))),
                ],
                vec![
                    gone("/app/a", json!(1), 1),
                    put(
                        "/app/b",
                        Some(json!({"x": 1, "y": 3})),
                        json!({"x": 2, "y": 3}),
                        1,
                    ),
                    put("/app/c", None, json!(3), 2),
                ],
            ),
        ];
        for (what, batch, expected) in cases {
            eprintln!("case: {what}");
            check(&prod(), &["/app"], &setup(), &batch, expected);
        }
    }

    #[test]
    fn definition_changes() {
        let setup = || {
            vec![
                defined("prod", json!({"variables": {"HOST": "db1"}})),
                defined("prod-eu", json!({"parent": "prod"})),
                defined("staging", json!({})),
                ("/app/a", Some(json!(1))),
                ("/app/url", Some(json!("pg://${HOST}/${secret:pw}"))),
                ("/env/prod/app/a", Some(json!(2))),
                ("/env/staging/app/a", Some(json!(3))),
            ]
        };
        let eu = EnvView::new("prod-eu", false);
        let eu_resolved = EnvView::new("prod-eu", true);
        let cases: Vec<(&EnvView, Vec<Op<'_>>, Vec<Seen>)> = vec![
            (
                &eu,
                vec![defined("prod-eu", json!({"parent": "staging"}))],
                vec![put("/app/a", Some(json!(2)), json!(3), 1)],
            ),
            (
                &eu,
                vec![defined("prod-eu", json!({}))],
                vec![put("/app/a", Some(json!(2)), json!(1), 1)],
            ),
            (
                &eu,
                vec![defined("prod", json!({"description": "only words"}))],
                vec![],
            ),
            (
                &eu,
                vec![defined("prod", json!({"variables": {"HOST": "db2"}}))],
                vec![],
            ),
            (
                &eu_resolved,
                vec![defined("prod", json!({"variables": {"HOST": "db2"}}))],
                vec![put(
                    "/app/url",
                    Some(json!("pg://db1/${secret:pw}")),
                    json!("pg://db2/${secret:pw}"),
                    1,
                )],
            ),
            (
                &eu_resolved,
                vec![defined(
                    "prod-eu",
                    json!({"parent": "prod", "variables": {"HOST": "eu"}}),
                )],
                vec![put(
                    "/app/url",
                    Some(json!("pg://db1/${secret:pw}")),
                    json!("pg://eu/${secret:pw}"),
                    1,
                )],
            ),
            (
                // Deleted: the watch falls back to base values.
                &eu,
                vec![("/env/prod-eu", None)],
                vec![put("/app/a", Some(json!(2)), json!(1), 1)],
            ),
            (
                // Its parent deleted: the chain breaks, base values again.
                &eu,
                vec![("/env/prod", None)],
                vec![put("/app/a", Some(json!(2)), json!(1), 1)],
            ),
            (
                // An unrelated environment's definition.
                &eu,
                vec![defined("staging", json!({"description": "x"}))],
                vec![],
            ),
            (
                // A variable goes missing: the value is pushed raw.
                &eu_resolved,
                vec![defined("prod", json!({}))],
                vec![put(
                    "/app/url",
                    Some(json!("pg://db1/${secret:pw}")),
                    json!("pg://${HOST}/${secret:pw}"),
                    1,
                )],
            ),
        ];
        for (view, batch, expected) in cases {
            check(view, &["/app"], &setup(), &batch, expected);
        }
    }

    #[test]
    fn an_environment_created_later_applies_from_then_on() {
        let setup = vec![
            ("/app/a", Some(json!(1))),
            ("/env/qa/app/a", Some(json!(2))),
        ];
        let qa = EnvView::new("qa", false);
        check(
            &qa,
            &["/"],
            &setup,
            &[("/app/b", Some(json!(1)))],
            vec![put("/app/b", None, json!(1), 2)],
        );
        check(
            &qa,
            &["/"],
            &setup,
            &[defined("qa", json!({}))],
            vec![put("/app/a", Some(json!(1)), json!(2), 1)],
        );
    }

    #[test]
    fn formats_show_as_the_api_shows_them() {
        let setup = vec![
            defined("prod", json!({"variables": {"N": "7"}})),
            ("/f/yaml", Some(json!("yaml:# base\na: 1\n"))),
            ("/f/text", Some(json!("text:n=${N}"))),
        ];
        let resolved = EnvView::new("prod", true);
        check(
            &resolved,
            &["/f"],
            &setup,
            &[("/env/prod/f/yaml", Some(json!("yaml:b: 2\n")))],
            vec![put(
                "/f/yaml",
                Some(json!("# base\na: 1\n")),
                json!("a: 1\nb: 2\n"),
                2,
            )],
        );
        check(
            &resolved,
            &["/f"],
            &setup,
            &[("/env/prod/f/yaml", Some(json!("yaml:# same\na: 1\n")))],
            vec![put(
                "/f/yaml",
                Some(json!("# base\na: 1\n")),
                json!("# same\na: 1\n"),
                2,
            )],
        );
        check(
            &resolved,
            &["/f"],
            &setup,
            &[defined("prod", json!({"variables": {"N": "8"}}))],
            vec![put("/f/text", Some(json!("n=7")), json!("n=8"), 1)],
        );
    }

    #[test]
    fn system_records_reach_only_watches_inside_their_namespace() {
        let setup = vec![defined("prod", json!({}))];
        let batch = [
            ("/_setpoint/accounts/a", Some(json!({}))),
            ("/app/x", Some(json!(1))),
        ];
        check(
            &prod(),
            &["/"],
            &setup,
            &batch,
            vec![put("/app/x", None, json!(1), 2)],
        );
        check(
            &prod(),
            &["/_setpoint"],
            &setup,
            &batch,
            vec![put("/_setpoint/accounts/a", None, json!({}), 2)],
        );
    }

    #[test]
    fn entries_carry_the_most_specific_layer_and_share_the_base_entry() {
        let (_, after, _) = two_snapshots(
            &[
                defined("prod", json!({})),
                ("/a", Some(json!({"k": 1}))),
                ("/b", Some(json!(1))),
            ],
            &[("/env/prod/a", Some(json!({"j": 2})))],
        );
        let chain = prod().chain(&after);
        let a = prod().entry(&after, &chain, &path("/a")).unwrap();
        assert_eq!(
            (
                a.path.as_str(),
                a.version,
                a.revision,
                a.updated_at.as_str()
            ),
            ("/a", 2, 11, "2026-01-01T00:00:02Z")
        );
        assert_eq!(a.value.to_api_value(), json!({"j": 2, "k": 1}));
        let b = prod().entry(&after, &chain, &path("/b")).unwrap();
        assert!(Arc::ptr_eq(&b, after.get(&path("/b")).unwrap()));
    }

    fn value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(json!(null))),
            (0..3i32).prop_map(|n| Some(json!(n))),
            proptest::collection::btree_map("[ab]", 0..3i32, 0..3)
                .prop_map(|m| Some(serde_json::to_value(m).unwrap())),
            Just(Some(json!("${V}"))),
        ]
    }

    fn definition() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(json!({}))),
            Just(Some(json!({"parent": "p"}))),
            Just(Some(json!({"parent": "q", "variables": {"V": "x"}}))),
            Just(Some(json!({"variables": {"V": "y"}}))),
        ]
    }

    const PATHS: [&str; 9] = [
        "/a",
        "/a/b",
        "/c",
        "/env/e/a",
        "/env/e/a/b",
        "/env/p/c",
        "/env/q/a",
        "/env/e/env/x",
        "/_setpoint/s",
    ];
    const DEFINITIONS: [&str; 3] = ["/env/e", "/env/p", "/env/q"];

    fn ops() -> impl Strategy<Value = Vec<(usize, Option<Value>)>> {
        proptest::collection::vec(
            prop_oneof![
                (0..PATHS.len(), value()),
                (0..DEFINITIONS.len(), definition()).prop_map(|(i, d)| (PATHS.len() + i, d)),
            ],
            0..8,
        )
    }

    fn named(ops: &[(usize, Option<Value>)]) -> Vec<Op<'static>> {
        ops.iter()
            .map(|(i, v)| {
                let p = PATHS
                    .get(*i)
                    .copied()
                    .unwrap_or_else(|| DEFINITIONS[i - PATHS.len()]);
                (p, v.clone())
            })
            .collect()
    }

    proptest! {
        #[test]
        fn events_equal_a_full_recomputation(
            setup in ops(),
            batch in ops(),
            resolve in any::<bool>(),
            scope in prop_oneof![Just(vec!["/"]), Just(vec!["/a"]), Just(vec!["/a/b", "/c"]), Just(vec!["/_setpoint"])],
        ) {
            let (before, after, applied) = two_snapshots(&named(&setup), &named(&batch));
            let scope: Vec<ConfigPath> = scope.iter().map(|p| path(p)).collect();
            let view = EnvView::new("e", resolve);
            let got = view.events(&before, &after, &applied, &scope);
            prop_assert_eq!(got, brute_force(&view, &before, &after, &scope, 11));
        }
    }
}

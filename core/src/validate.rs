//! Schema and validator checks for configuration values.
//!
//! A config may carry a JSON Schema (2020-12, formats checked — `"format": "uri"` rejects
//! `"not a uri"`) and a list of custom validators (`{"regex": "…"}`, `{"enum": […]}`). Prefix
//! schemas (`PUT /api/schemas/{prefix}`) add more schemas. [`check`] runs all of them against a
//! value's structured view and returns *every* violation with its JSON pointer, so a 422 can list
//! them all. Compile once at the boundary ([`Schema::compile`], [`Validators::parse`]); bad
//! schemas or validators are errors of the request, never panics.
//!
//! Schemas come from callers, so their cost is bounded: a schema whose subschemas, with every
//! local `$ref` expanded, number more than [`MAX_SCHEMA_NODES`] is refused (nested `allOf`/`$ref`
//! pairs double at each level); all violations are listed only while schema × value size stays
//! within [`MAX_EVALUATION`] (else the first one, flagged); at most [`MAX_VIOLATIONS`] are kept,
//! each message at most [`MAX_MESSAGE_CHARS`] long and never quoting a value longer than
//! [`MAX_QUOTED_BYTES`].

use serde_json::Value;

use crate::value::type_name;

/// Most subschemas a schema may expand to (local `$ref`s followed, each cycle once).
pub const MAX_SCHEMA_NODES: usize = 5_000;
/// Most violations listed per check.
pub const MAX_VIOLATIONS: usize = 100;
/// Longest violation message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// A value quoted in a message is at most this long (as JSON); longer ones read as "value".
pub const MAX_QUOTED_BYTES: usize = 64;
/// Schema nodes × value nodes up to which every violation is collected; above, only the first.
pub const MAX_EVALUATION: usize = 2_000_000;

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

/// What a check found: the violations (at most [`MAX_VIOLATIONS`]) and whether more exist than
/// are listed (the list was cut, or only the first was looked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub violations: Vec<Violation>,
    pub truncated: bool,
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
    compiled: jsonschema::Validator,
    /// Subschemas with local `$ref`s expanded (at most [`MAX_SCHEMA_NODES`]).
    nodes: usize,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("label", &self.label)
            .finish()
    }
}

impl Schema {
    /// Compiles `source` as JSON Schema 2020-12 (unless it names another `$schema`) with format
    /// checking on. `label` becomes each violation's `source` (`schema`, `schema:/myapp`).
    pub fn compile(source: &Value, label: impl Into<String>) -> Result<Schema, RuleError> {
        let nodes = expanded_nodes(source).ok_or_else(|| {
            RuleError::InvalidSchema(format!(
                "the schema is too complex: with its $refs expanded it has more than \
                 {MAX_SCHEMA_NODES} subschemas"
            ))
        })?;
        // Formats are only annotations by default in 2020-12; Setpoint promises they are checked.
        let compiled = jsonschema::options()
            .should_validate_formats(true)
            .build(source)
            .map_err(|error| RuleError::InvalidSchema(error.to_string()))?;
        Ok(Schema {
            source: source.clone(),
            label: label.into(),
            compiled,
            nodes,
        })
    }
    pub fn source(&self) -> &Value {
        &self.source
    }
    /// The label given at compile time (each violation's `source`).
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        self.findings(instance).violations
    }

    /// The violations of `instance`, bounded (see the module documentation).
    pub fn findings(&self, instance: &Value) -> Findings {
        if self.compiled.is_valid(instance) {
            return Findings::default();
        }
        let violation = |error: &jsonschema::ValidationError<'_>| Violation {
            pointer: error.instance_path().as_str().to_owned(),
            message: message_of(error),
            source: self.label.clone(),
        };
        let budget = MAX_EVALUATION / self.nodes.max(1);
        if value_nodes(instance, budget).is_none() {
            // Listing every violation could cost schema × value: the first one, flagged.
            return Findings {
                violations: self
                    .compiled
                    .validate(instance)
                    .err()
                    .map(|e| violation(&e))
                    .into_iter()
                    .collect(),
                truncated: true,
            };
        }
        let mut errors = self.compiled.iter_errors(instance);
        let violations: Vec<Violation> = errors
            .by_ref()
            .take(MAX_VIOLATIONS)
            .map(|e| violation(&e))
            .collect();
        Findings {
            violations,
            truncated: errors.next().is_some(),
        }
    }
}

/// The error's message, quoting the value only when it is short, cut to [`MAX_MESSAGE_CHARS`].
fn message_of(error: &jsonschema::ValidationError<'_>) -> String {
    let short = quoted_len(error.instance(), MAX_QUOTED_BYTES).is_some();
    let message = if short {
        error.to_string()
    } else {
        error.masked().to_string()
    };
    cut(message, MAX_MESSAGE_CHARS)
}

fn cut(mut text: String, max_chars: usize) -> String {
    if let Some((index, _)) = text.char_indices().nth(max_chars) {
        text.truncate(index);
        text.push('…');
    }
    text
}

/// `value` as JSON when it is short, else the word `value` (as a schema's masked messages say).
fn quoted(value: &Value) -> String {
    match quoted_len(value, MAX_QUOTED_BYTES) {
        Some(_) => value.to_string(),
        None => "value".to_owned(),
    }
}

/// The length of `value` as JSON when at most `budget` bytes (about: strings are not escaped).
fn quoted_len(value: &Value, budget: usize) -> Option<usize> {
    let len = match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        Value::Array(items) => {
            let mut total = 2;
            for item in items {
                total += quoted_len(item, budget.checked_sub(total)?)? + 1;
            }
            total
        }
        Value::Object(map) => {
            let mut total = 2;
            for (key, item) in map {
                total += key.len() + 3;
                total += quoted_len(item, budget.checked_sub(total)?)? + 1;
            }
            total
        }
    };
    (len <= budget).then_some(len)
}

/// The number of nodes in `value` when at most `budget`.
fn value_nodes(value: &Value, budget: usize) -> Option<usize> {
    let mut count = 0usize;
    let mut stack = vec![value];
    while let Some(node) = stack.pop() {
        count += 1;
        if count > budget {
            return None;
        }
        match node {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    Some(count)
}

/// The subschemas of `schema` with every `$ref` (and `$dynamicRef`, `$recursiveRef`) expanded —
/// a reference already being expanded (a cycle) counts once — or `None` past
/// [`MAX_SCHEMA_NODES`]. Evaluation cost grows with this number, not with the document's size.
///
/// References resolve as the validator resolves them: a JSON pointer (percent-decoded), an
/// anchor (`#name`: `$anchor`, `$dynamicAnchor`), either after the `$id` of a subschema of this
/// document. A reference this cannot place counts as the whole document again, an upper bound,
/// so no spelling of a reference dodges the count.
fn expanded_nodes(schema: &Value) -> Option<usize> {
    fn walk<'a>(
        index: &Index<'a>,
        node: &'a Value,
        expanding: &mut Vec<&'a str>,
        count: &mut usize,
    ) -> Option<()> {
        *count += 1;
        if *count > MAX_SCHEMA_NODES {
            return None;
        }
        match node {
            Value::Object(map) => {
                for (key, child) in map {
                    if matches!(key.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef")
                        && let Some(reference) = child.as_str()
                    {
                        if expanding.contains(&reference) {
                            continue;
                        }
                        let target = index.resolve(reference).unwrap_or(index.root);
                        expanding.push(reference);
                        walk(index, target, expanding, count)?;
                        expanding.pop();
                        continue;
                    }
                    // Values of keywords like `enum`, `const` and `default` are data, not
                    // subschemas; counting them too only makes the bound stricter.
                    walk(index, child, expanding, count)?;
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(index, item, expanding, count)?;
                }
            }
            _ => {}
        }
        Some(())
    }
    let index = Index::new(schema);
    let mut count = 0;
    walk(&index, schema, &mut Vec::new(), &mut count)?;
    Some(count)
}

/// Where a schema's references can point: its `$id`s and anchors, found once.
struct Index<'a> {
    root: &'a Value,
    ids: std::collections::HashMap<&'a str, &'a Value>,
    anchors: std::collections::HashMap<&'a str, &'a Value>,
}

impl<'a> Index<'a> {
    fn new(root: &'a Value) -> Index<'a> {
        let mut index = Index {
            root,
            ids: Default::default(),
            anchors: Default::default(),
        };
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            match node {
                Value::Object(map) => {
                    if let Some(id) = map.get("$id").and_then(Value::as_str) {
                        index.ids.entry(id.trim_end_matches('#')).or_insert(node);
                    }
                    for key in ["$anchor", "$dynamicAnchor"] {
                        if let Some(anchor) = map.get(key).and_then(Value::as_str) {
                            index.anchors.entry(anchor).or_insert(node);
                        }
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        index
    }

    /// The subschema `reference` names, when it is in this document.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let document = if base.is_empty() {
            self.root
        } else {
            self.ids.get(base).copied()?
        };
        let fragment = percent_decode(fragment);
        if fragment.is_empty() {
            Some(document)
        } else if fragment.starts_with('/') {
            document.pointer(&fragment)
        } else {
            self.anchors.get(fragment.as_str()).copied()
        }
    }
}

/// `%XX` escapes decoded (a URI fragment); anything else kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed custom validator.
#[derive(Debug, Clone)]
enum Rule {
    Regex(regex::Regex),
    Enum(Vec<Value>),
}

impl Rule {
    fn parse(index: usize, item: &Value) -> Result<Rule, RuleError> {
        let invalid = |reason: String| RuleError::InvalidValidator { index, reason };
        let Value::Object(fields) = item else {
            return Err(invalid(format!(
                "expected an object like {{\"regex\": \"…\"}} or {{\"enum\": […]}}, got {}",
                type_name(item)
            )));
        };
        let mut entries = fields.iter();
        let (Some((kind, argument)), None) = (entries.next(), entries.next()) else {
            let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
            return Err(invalid(format!(
                "expected exactly one of \"regex\" or \"enum\", got keys {keys:?}"
            )));
        };
        match (kind.as_str(), argument) {
            ("regex", Value::String(pattern)) => regex::Regex::new(pattern)
                .map(Rule::Regex)
                .map_err(|error| invalid(format!("bad regex {pattern:?}: {error}"))),
            ("regex", other) => Err(invalid(format!(
                "\"regex\" needs a string pattern, got {}",
                type_name(other)
            ))),
            ("enum", Value::Array(allowed)) => Ok(Rule::Enum(allowed.clone())),
            ("enum", other) => Err(invalid(format!(
                "\"enum\" needs an array of allowed values, got {}",
                type_name(other)
            ))),
            (unknown, _) => Err(invalid(format!(
                "unknown validator kind {unknown:?}: expected \"regex\" or \"enum\""
            ))),
        }
    }

    fn violation(&self, instance: &Value) -> Option<Violation> {
        let (source, message) = match self {
            Rule::Regex(regex) => match instance {
                Value::String(text) if regex.is_match(text) => return None,
                Value::String(_) => (
                    "validator:regex",
                    format!(
                        "{} does not match regex {:?}",
                        quoted(instance),
                        regex.as_str()
                    ),
                ),
                other => (
                    "validator:regex",
                    format!(
                        "regex {:?} needs a string value, got {}",
                        regex.as_str(),
                        type_name(other)
                    ),
                ),
            },
            Rule::Enum(allowed) if allowed.contains(instance) => return None,
            Rule::Enum(allowed) => (
                "validator:enum",
                format!(
                    "{} is not one of {}",
                    quoted(instance),
                    Value::Array(allowed.clone())
                ),
            ),
        };
        // The same bounds as a schema's messages: a long pattern or enum is cut too.
        let message = cut(message, MAX_MESSAGE_CHARS);
        Some(Violation {
            pointer: String::new(),
            message,
            source: source.to_owned(),
        })
    }
}

/// Custom validators: `[{"regex": "^a+$"}, {"enum": ["a", "b"]}]`. A regex applies to string
/// values (a non-string is a violation); an enum compares JSON values for equality.
///
/// A regex matches like JSON Schema's `pattern`: anywhere in the string unless anchored.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    source: Value,
    rules: Vec<Rule>,
}

impl Validators {
    /// Parses the validators array. Unknown kinds, bad regexes and non-array input are errors.
    /// `null` means no validators. Indexes in errors count from 0. Non-array input is reported as
    /// validator #0.
    pub fn parse(source: &Value) -> Result<Validators, RuleError> {
        let items = match source {
            Value::Null => &Vec::new(),
            Value::Array(items) => items,
            other => {
                return Err(RuleError::InvalidValidator {
                    index: 0,
                    reason: format!("validators must be an array, got {}", type_name(other)),
                });
            }
        };
        let rules = items
            .iter()
            .enumerate()
            .map(|(index, item)| Rule::parse(index, item))
            .collect::<Result<_, _>>()?;
        Ok(Validators {
            source: source.clone(),
            rules,
        })
    }
    pub fn source(&self) -> &Value {
        &self.source
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        self.rules
            .iter()
            .filter_map(|rule| rule.violation(instance))
            .collect()
    }
}

/// Every violation of `instance` against all schemas and validators, in order (at most
/// [`MAX_VIOLATIONS`]; see [`check_bounded`] to know whether more exist).
pub fn check(instance: &Value, schemas: &[&Schema], validators: &[&Validators]) -> Vec<Violation> {
    check_bounded(instance, schemas, validators).violations
}

/// [`check`], saying whether the list was cut.
pub fn check_bounded(
    instance: &Value,
    schemas: &[&Schema],
    validators: &[&Validators],
) -> Findings {
    let mut found = Findings::default();
    for schema in schemas {
        let findings = schema.findings(instance);
        found.truncated |= findings.truncated;
        found.violations.extend(findings.violations);
    }
    for rules in validators {
        found.violations.extend(rules.violations(instance));
    }
    if found.violations.len() > MAX_VIOLATIONS {
        found.violations.truncate(MAX_VIOLATIONS);
        found.truncated = true;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An expected violation as `(pointer, message, source)`.
    type Expected<'a> = (&'a str, &'a str, &'a str);

    fn check_schema(schema: Value, instance: Value, expected: &[Expected<'_>]) {
        let compiled = Schema::compile(&schema, "schema").expect("test schema compiles");
        let got = check(&instance, &[&compiled], &[]);
        assert_violations(&got, expected, &format!("{instance} against {schema}"));
    }

    fn check_validators(validators: Value, instance: Value, expected: &[Expected<'_>]) {
        let parsed = Validators::parse(&validators).expect("test validators parse");
        let got = check(&instance, &[], &[&parsed]);
        assert_violations(&got, expected, &format!("{instance} against {validators}"));
    }

    fn assert_violations(got: &[Violation], expected: &[Expected<'_>], label: &str) {
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|v| (v.pointer.as_str(), v.message.as_str(), v.source.as_str()))
            .collect();
        assert_eq!(got, expected, "{label}");
    }

    #[test]
    fn schemas() {
        let uri = json!({"type": "string", "format": "uri"});
        let server = json!({
            "type": "object",
            "required": ["host", "port"],
            "properties": {
                "host": {"type": "string"},
                "port": {"type": "integer", "minimum": 1},
                "tags": {"type": "array", "items": {"type": "string"}}
            }
        });
        let cases: Vec<(Value, Value, Vec<Expected<'_>>)> = vec![
            (uri.clone(), json!("postgres://localhost:5432/mydb"), vec![]),
            (
                uri.clone(),
                json!("not a uri"),
                vec![("", r#""not a uri" is not a "uri""#, "schema")],
            ),
            (
                json!({"format": "email"}),
                json!("nobody"),
                vec![("", r#""nobody" is not a "email""#, "schema")],
            ),
            (json!({"type": "integer"}), json!(8080), vec![]),
            (
                json!({"type": "integer"}),
                json!(1.5),
                vec![("", r#"1.5 is not of type "integer""#, "schema")],
            ),
            (
                json!({"type": "integer"}),
                json!("8080"),
                vec![("", r#""8080" is not of type "integer""#, "schema")],
            ),
            (
                server.clone(),
                json!({"host": "db", "port": 5432, "tags": ["a"]}),
                vec![],
            ),
            (
                server.clone(),
                json!({"host": "db"}),
                vec![("", r#""port" is a required property"#, "schema")],
            ),
            (
                server.clone(),
                json!({"port": "x", "tags": ["a", 2, 3]}),
                vec![
                    ("", r#""host" is a required property"#, "schema"),
                    ("/port", r#""x" is not of type "integer""#, "schema"),
                    ("/tags/1", r#"2 is not of type "string""#, "schema"),
                    ("/tags/2", r#"3 is not of type "string""#, "schema"),
                ],
            ),
            (
                json!({"type": "object", "properties": {"a/b": {"properties": {"c~d": {"type": "string"}}}}}),
                json!({"a/b": {"c~d": 1}}),
                vec![("/a~1b/c~0d", r#"1 is not of type "string""#, "schema")],
            ),
        ];
        for (schema, instance, expected) in cases {
            check_schema(schema, instance, &expected);
        }
    }

    #[test]
    fn older_drafts_are_honoured() {
        // Draft 4 has no `const`; an unknown keyword is ignored, so anything passes.
        let draft4 = json!({"$schema": "http://json-schema.org/draft-04/schema#", "const": 1});
        check_schema(draft4, json!(2), &[]);
        check_schema(
            json!({"const": 1}),
            json!(2),
            &[("", "1 was expected", "schema")],
        );
    }

    #[test]
    fn invalid_schemas_are_errors() {
        for schema in [
            json!({"type": 5}),
            json!({"minimum": "x"}),
            json!({"$ref": "https://example.com/s.json"}),
        ] {
            let got = Schema::compile(&schema, "schema");
            assert!(
                matches!(got, Err(RuleError::InvalidSchema(_))),
                "{schema}: {got:?}"
            );
        }
    }

    /// A nested `allOf` of two `$ref`s, `depth` levels deep, over `maxLength: 1`: 2^depth leaves.
    fn doubling_schema(depth: usize) -> Value {
        let mut defs = serde_json::Map::new();
        defs.insert("l0".into(), json!({"maxLength": 1}));
        for level in 1..=depth {
            let below = format!("#/$defs/l{}", level - 1);
            defs.insert(
                format!("l{level}"),
                json!({"allOf": [{"$ref": below}, {"$ref": below}]}),
            );
        }
        json!({"$defs": defs, "$ref": format!("#/$defs/l{depth}")})
    }

    #[test]
    fn schemas_that_expand_exponentially_are_refused() {
        assert!(Schema::compile(&doubling_schema(8), "schema").is_ok());
        for depth in [14, 18, 30] {
            let got = Schema::compile(&doubling_schema(depth), "schema");
            assert!(
                matches!(&got, Err(RuleError::InvalidSchema(m)) if m.contains("too complex")),
                "depth {depth}: {got:?}"
            );
        }
        // A recursive schema (a tree) is fine: the cycle counts once.
        let tree = json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}});
        assert!(Schema::compile(&tree, "schema").is_ok());
    }

    /// Found while fuzzing schemas: the count followed only `#/json/pointer` references, so
    /// the same doubling schema written with anchors (`#l3`), percent-encoded pointers
    /// (`#/%24defs/l3`) or the document's `$id` (`urn:s#/$defs/l3`) compiled, and depth 20 took
    /// 19 s to check (×4 every two levels).
    #[test]
    fn refs_by_anchor_encoded_pointer_or_id_count_toward_the_bound() {
        let spelled = |depth: usize, spell: &dyn Fn(usize) -> String| {
            let mut defs = serde_json::Map::new();
            defs.insert("l0".into(), json!({"$anchor": "l0", "maxLength": 1}));
            for level in 1..=depth {
                let below = spell(level - 1);
                defs.insert(
                    format!("l{level}"),
                    json!({"$anchor": format!("l{level}"), "allOf": [{"$ref": below}, {"$ref": below}]}),
                );
            }
            json!({"$id": "urn:s", "$defs": defs, "$ref": spell(depth)})
        };
        let spellings: [&dyn Fn(usize) -> String; 4] = [
            &|level| format!("#l{level}"),
            &|level| format!("#/%24defs/l{level}"),
            &|level| format!("urn:s#/$defs/l{level}"),
            &|level| format!("#/$defs/%6C{level}"),
        ];
        for spell in spellings {
            let small = spelled(6, spell);
            let got = Schema::compile(&small, "schema");
            assert!(got.is_ok(), "{small}: {got:?}");
            let deep = spelled(18, spell);
            let got = Schema::compile(&deep, "schema");
            assert!(
                matches!(&got, Err(RuleError::InvalidSchema(m)) if m.contains("too complex")),
                "{}: {got:?}",
                spell(18)
            );
        }
        // A reference that cannot be placed counts as the whole document: a few are fine.
        let meta = json!({"allOf": [{"$ref": "https://json-schema.org/draft/2020-12/schema"}]});
        assert!(Schema::compile(&meta, "schema").is_ok());
    }

    #[test]
    fn violations_are_bounded_and_never_quote_long_values() {
        let many: Vec<Value> = (0..1_000).map(|_| json!({"maxLength": 1})).collect();
        let schema = Schema::compile(&json!({"allOf": many}), "schema").unwrap();
        let long = json!("x".repeat(500_000));
        let found = check_bounded(&long, &[&schema], &[]);
        assert_eq!(found.violations.len(), MAX_VIOLATIONS);
        assert!(found.truncated);
        let bytes: usize = found.violations.iter().map(|v| v.message.len()).sum();
        assert!(bytes < 64 * 1024, "{bytes} bytes of messages");
        assert!(
            !found.violations[0].message.contains("xxxxxxxx"),
            "{:?}",
            found.violations[0]
        );
        // Short values are still quoted, as before.
        let found = check_bounded(&json!("ab"), &[&schema], &[]);
        assert!(
            found.violations[0].message.contains("\"ab\""),
            "{:?}",
            found.violations[0]
        );
        // A huge value against a big schema: the first violation only, flagged.
        let big = Schema::compile(&json!({"items": {"allOf": (0..1_000).map(|_| json!({"maxLength": 1})).collect::<Vec<_>>()}}), "schema").unwrap();
        let array = json!((0..10_000).map(|_| "xy").collect::<Vec<_>>());
        let found = check_bounded(&array, &[&big], &[]);
        assert_eq!(found.violations.len(), 1);
        assert!(found.truncated);
        assert!(
            check_bounded(&json!(["x"]), &[&big], &[])
                .violations
                .is_empty()
        );
    }

    #[test]
    fn schema_keeps_source_and_label() {
        let source = json!({"type": "string"});
        let schema = Schema::compile(&source, "schema:/myapp").expect("valid schema");
        assert_eq!(schema.source(), &source);
        assert_eq!(schema.label(), "schema:/myapp");
        let got = schema.violations(&json!(1));
        assert_eq!(got[0].source, "schema:/myapp");
    }

    #[test]
    fn validators() {
        let cases: Vec<(Value, Value, Vec<Expected<'_>>)> = vec![
            (json!([{"regex": "^a+$"}]), json!("aaa"), vec![]),
            (
                json!([{"regex": "^a+$"}]),
                json!("aab"),
                vec![(
                    "",
                    r#""aab" does not match regex "^a+$""#,
                    "validator:regex",
                )],
            ),
            (json!([{"regex": "b"}]), json!("abc"), vec![]),
            (
                json!([{"regex": "^a+$"}]),
                json!(5),
                vec![(
                    "",
                    r#"regex "^a+$" needs a string value, got number"#,
                    "validator:regex",
                )],
            ),
            (json!([{"enum": ["a", 1, {"x": true}]}]), json!(1), vec![]),
            (
                json!([{"enum": ["a", 1, {"x": true}]}]),
                json!({"x": true}),
                vec![],
            ),
            (
                json!([{"enum": ["a", 1]}]),
                json!("1"),
                vec![("", r#""1" is not one of ["a",1]"#, "validator:enum")],
            ),
            (
                json!([{"regex": "^[a-z]+$"}, {"enum": ["prod", "dev"]}]),
                json!("Stage"),
                vec![
                    (
                        "",
                        r#""Stage" does not match regex "^[a-z]+$""#,
                        "validator:regex",
                    ),
                    (
                        "",
                        r#""Stage" is not one of ["prod","dev"]"#,
                        "validator:enum",
                    ),
                ],
            ),
            (json!(null), json!("anything"), vec![]),
            (json!([]), json!("anything"), vec![]),
        ];
        for (validators, instance, expected) in cases {
            check_validators(validators, instance, &expected);
        }
    }

    #[test]
    fn invalid_validators() {
        let cases = [
            (
                json!({"regex": "a"}),
                "invalid validator #0: validators must be an array, got object",
            ),
            (
                json!(["a"]),
                "invalid validator #0: expected an object like {\"regex\": \"…\"} or {\"enum\": […]}, got string",
            ),
            (
                json!([{"enum": []}, {"length": 3}]),
                "invalid validator #1: unknown validator kind \"length\": expected \"regex\" or \"enum\"",
            ),
            (
                json!([{"regex": "("}]),
                "invalid validator #0: bad regex \"(\": ",
            ),
            (
                json!([{"regex": 1}]),
                "invalid validator #0: \"regex\" needs a string pattern, got number",
            ),
            (
                json!([{"enum": "a"}]),
                "invalid validator #0: \"enum\" needs an array of allowed values, got string",
            ),
            (
                json!([{}]),
                "invalid validator #0: expected exactly one of \"regex\" or \"enum\", got keys []",
            ),
            (
                json!([{"regex": "a", "enum": []}]),
                "invalid validator #0: expected exactly one of \"regex\" or \"enum\", got keys [",
            ),
        ];
        for (source, message) in cases {
            let got = Validators::parse(&source)
                .map(|_| ())
                .map_err(|e| e.to_string());
            match got {
                Err(shown) => assert!(shown.starts_with(message), "{source}: {shown:?}"),
                Ok(()) => panic!("{source}: accepted"),
            }
        }
    }

    #[test]
    fn validators_basics() {
        let empty = Validators::default();
        assert!(empty.is_empty());
        assert_eq!(empty.source(), &Value::Null);
        let source = json!([{"enum": [1]}]);
        let parsed = Validators::parse(&source).expect("valid validators");
        assert!(!parsed.is_empty());
        assert_eq!(parsed.source(), &source);
    }

    #[test]
    fn check_lists_schemas_then_validators_in_order() {
        let first = Schema::compile(&json!({"type": "string"}), "schema").expect("valid");
        let second = Schema::compile(&json!({"minimum": 10}), "schema:/app").expect("valid");
        let rules = Validators::parse(&json!([{"enum": [1]}])).expect("valid");
        let got = check(&json!(5), &[&first, &second], &[&rules]);
        let sources: Vec<&str> = got.iter().map(|v| v.source.as_str()).collect();
        assert_eq!(sources, ["schema", "schema:/app", "validator:enum"]);
    }

    /// Found by the `schema` fuzz target: a failing regex or enum validator quoted the whole
    /// value (and the whole enum), so a 500 KB value gave a 500 KB message per validator.
    #[test]
    fn fuzz_validator_messages_quote_no_long_value() {
        let long = "v".repeat(10_000);
        let rules = Validators::parse(&json!([
            {"regex": "^a+$"},
            {"enum": ["a", "e".repeat(10_000)]}
        ]))
        .expect("valid validators");
        let got = check(&json!(long), &[], &[&rules]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].message, r#"value does not match regex "^a+$""#);
        assert!(
            got[1]
                .message
                .starts_with(r#"value is not one of ["a","eee"#),
            "{got:?}"
        );
        for violation in &got {
            assert!(
                !violation.message.contains(&long[..MAX_QUOTED_BYTES]),
                "{violation:?}"
            );
            assert!(
                violation.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
                "{violation:?}"
            );
        }
        // A short value is still quoted.
        let got = check(&json!("bb"), &[], &[&rules]);
        assert_eq!(got[0].message, r#""bb" does not match regex "^a+$""#);
    }

    #[test]
    fn schema_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Schema>();
        assert_send_sync::<Validators>();
    }
}

//! User-supplied JSON Schemas and validators: `Schema::compile` on arbitrary JSON (raw, or built
//! from schema keywords — `$ref`s of every spelling, `$anchor`, `$id`, combinators, patterns,
//! formats) and `check_bounded` of arbitrary instances against what compiles.
//!
//! Invariants: at most `MAX_VIOLATIONS` violations, each message at most `MAX_MESSAGE_CHARS`
//! long, never quoting a long string of the value, each pointer pointing into the value. No
//! schema may make compiling or checking hang or eat memory (libFuzzer's `-timeout` and
//! `-rss_limit_mb`): that was issue 11's first finding.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use setpoint_core::validate::{
    self, MAX_MESSAGE_CHARS, MAX_QUOTED_BYTES, MAX_VIOLATIONS, Schema, Validators,
};
use setpoint_fuzz::{json, number, strings, text};

/// Keywords whose value is one subschema.
const SCHEMA_KEYWORDS: &[&str] = &[
    "not",
    "items",
    "additionalProperties",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
];
/// Keywords whose value is an array of subschemas.
const LIST_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const MAP_KEYWORDS: &[&str] = &[
    "properties",
    "$defs",
    "definitions",
    "patternProperties",
    "dependentSchemas",
];
const NUMBER_KEYWORDS: &[&str] = &[
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
];
const NAMES: &[&str] = &["a", "b", "x", "0", "$defs", "a/b", "a~b", "%", ""];
/// Every way a `$ref` can name a place in the same document, or another one.
const REFS: &[&str] = &[
    "#",
    "#/$defs/a",
    "#/$defs/b",
    "#/definitions/a",
    "#/properties/x",
    "#/allOf/0",
    "#/allOf/1",
    "#/$defs/a/allOf/0",
    "#/%24defs/a",
    "#/$defs/%61",
    "#/$defs/a~1b",
    "#a",
    "#b",
    "#/items",
    "urn:s#/$defs/a",
    "urn:s",
    "http://example.com/s#/$defs/a",
    "s.json#/$defs/a",
    "s.json",
    "#/$defs/a/",
    "#//",
    "#/$defs/a%25",
    "http://json-schema.org/draft-07/schema#",
];
const IDS: &[&str] = &[
    "urn:s",
    "http://example.com/s",
    "s.json",
    "#a",
    "http://example.com/",
];
const ANCHORS: &[&str] = &["a", "b", "meta"];
const TYPES: &[&str] = &[
    "string", "integer", "number", "object", "array", "boolean", "null", "any",
];
const FORMATS: &[&str] = &[
    "uri",
    "email",
    "date-time",
    "date",
    "time",
    "ipv4",
    "ipv6",
    "hostname",
    "regex",
    "uuid",
    "uri-reference",
    "iri",
    "json-pointer",
    "duration",
    "idn-email",
    "unknown",
];
const PATTERNS: &[&str] = &[
    "^a+$",
    "(a+)+$",
    "(a|aa)*b",
    "(?=a)a",
    "(?<n>a)\\k<n>",
    "\\d{2,}",
    "[",
    "\\p{L}+",
    ".*.*.*=",
    "^(\\w+\\s?)*$",
    "a{1000}{1000}",
    "(?i)A",
    "\\",
    "[^]",
    "(a*)*\\1",
];
const DIALECTS: &[&str] = &[
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-04/schema#",
    "http://example.com/unknown",
];

fuzz_target!(|data: &[u8]| {
    // A text starting like a JSON object is taken as is (the seeds are such texts); anything
    // else builds a schema from keywords.
    let (schema, instance, validators) = if data.first() == Some(&b'{') {
        let Some((schema, instance)) = raw(data) else {
            return;
        };
        (schema, instance, Value::Null)
    } else {
        match input(&mut Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        }
    };
    let Ok(compiled) = Schema::compile(&schema, "schema") else {
        return;
    };
    let validators = Validators::parse(&validators).ok();
    let findings = validate::check_bounded(
        &instance,
        &[&compiled],
        &validators.iter().collect::<Vec<_>>(),
    );
    assert!(
        findings.violations.len() <= MAX_VIOLATIONS,
        "{} violations",
        findings.violations.len()
    );
    let schema_strings = strings(&schema);
    let long_values: Vec<&str> = strings(&instance)
        .into_iter()
        .filter(|s| s.len() > MAX_QUOTED_BYTES && !schema_strings.iter().any(|t| t.contains(*s)))
        .collect();
    for violation in &findings.violations {
        let chars = violation.message.chars().count();
        assert!(
            chars <= MAX_MESSAGE_CHARS + 1,
            "a message of {chars} characters from {}",
            violation.source
        );
        if violation.source == "schema" {
            assert!(
                instance.pointer(&violation.pointer).is_some(),
                "pointer {:?} is not in the value",
                violation.pointer
            );
        }
        for long in &long_values {
            assert!(
                !violation.message.contains(long),
                "a message quotes a long value: {violation:?}"
            );
        }
    }
});

fn input(u: &mut Unstructured<'_>) -> Result<(Value, Value, Value)> {
    let schema = schema(u, 4)?;
    let instance = json(u, 4)?;
    let mut validators = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let mut rule = Map::new();
        if u.arbitrary()? {
            rule.insert(
                "regex".into(),
                Value::String(u.choose(PATTERNS)?.to_string()),
            );
        } else {
            rule.insert("enum".into(), Value::Array(vec![json(u, 1)?, json(u, 1)?]));
        }
        validators.push(Value::Object(rule));
    }
    Ok((schema, instance, Value::Array(validators)))
}

/// Raw JSON texts, as a request body could hold them: the schema's line, then the value's.
fn raw(data: &[u8]) -> Option<(Value, Value)> {
    let text = std::str::from_utf8(data).ok()?;
    let (schema, instance) = text.split_once('\n').unwrap_or((text, "null"));
    Some((
        serde_json::from_str(schema).ok()?,
        serde_json::from_str(instance).ok()?,
    ))
}

/// A subschema at most `depth` deep, made of keywords with values of the right shape (mostly).
fn schema(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    if depth == 0 || u.ratio(1, 8)? {
        return Ok(match u.int_in_range(0..=2)? {
            0 => Value::Bool(u.arbitrary()?),
            1 => Value::Object(Map::new()),
            _ => ref_to(u)?,
        });
    }
    let mut map = Map::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let (key, value) = match u.int_in_range(0..=14)? {
            0 => (
                u.choose(SCHEMA_KEYWORDS)?.to_string(),
                schema(u, depth - 1)?,
            ),
            1 | 2 => {
                let mut items = Vec::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    items.push(schema(u, depth - 1)?);
                }
                (u.choose(LIST_KEYWORDS)?.to_string(), Value::Array(items))
            }
            3 | 4 => {
                let mut members = Map::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    members.insert(u.choose(NAMES)?.to_string(), schema(u, depth - 1)?);
                }
                (u.choose(MAP_KEYWORDS)?.to_string(), Value::Object(members))
            }
            5 | 6 => ("$ref".into(), Value::String(u.choose(REFS)?.to_string())),
            7 => {
                let key = u.choose(&["$anchor", "$dynamicAnchor", "$id", "$dynamicRef"])?;
                let value = if key.ends_with("Anchor") {
                    u.choose(ANCHORS)?
                } else if *key == "$id" {
                    u.choose(IDS)?
                } else {
                    u.choose(REFS)?
                };
                (key.to_string(), Value::String(value.to_string()))
            }
            8 => ("type".into(), Value::String(u.choose(TYPES)?.to_string())),
            9 => (
                u.choose(NUMBER_KEYWORDS)?.to_string(),
                Value::Number(number(u)?),
            ),
            10 => (
                "pattern".into(),
                Value::String(u.choose(PATTERNS)?.to_string()),
            ),
            11 => (
                "format".into(),
                Value::String(u.choose(FORMATS)?.to_string()),
            ),
            12 => (
                u.choose(&["enum", "const", "default"])?.to_string(),
                json(u, 2)?,
            ),
            13 => {
                let required = (0..u.int_in_range(0..=3)?)
                    .map(|_| u.choose(NAMES).map(|n| Value::String(n.to_string())))
                    .collect::<Result<Vec<_>>>()?;
                ("required".into(), Value::Array(required))
            }
            _ => match u.int_in_range(0..=2)? {
                0 => (
                    "$schema".into(),
                    Value::String(u.choose(DIALECTS)?.to_string()),
                ),
                1 => ("uniqueItems".into(), Value::Bool(u.arbitrary()?)),
                _ => (text(u, 2)?, json(u, 1)?),
            },
        };
        map.insert(key, value);
    }
    Ok(Value::Object(map))
}

fn ref_to(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut map = Map::new();
    map.insert("$ref".into(), Value::String(u.choose(REFS)?.to_string()));
    Ok(Value::Object(map))
}

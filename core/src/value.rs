//! Configuration values and their formats.
//!
//! A request carries a JSON `value` and an optional `format`. [`ParsedValue::from_request`] turns
//! that into the bytes that are stored (written once, never re-encoded) plus a structured JSON
//! view used for validation and diffs. Rules:
//! - no format given → `json` (any JSON value);
//! - `json` → any JSON value, stored as compact JSON;
//! - `yaml` → the value must be a string holding valid YAML; stored as that string verbatim, its
//!   structured view is the parsed YAML converted to JSON;
//! - `text` → the value must be a string; stored verbatim; its structured view is that string.
//!
//! The stored bytes may be at most [`MAX_VALUE_BYTES`]; larger is [`ValueError::TooLarge`].

use serde::{Deserialize, Serialize};

/// 1 MiB: the largest stored value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Yaml,
    Text,
}

impl Format {
    /// Parses `json`, `yaml` (also `yml`), `text`, case-insensitively.
    pub fn parse(input: &str) -> Result<Format, ValueError> {
        match input.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "yaml" | "yml" => Ok(Format::Yaml),
            "text" => Ok(Format::Text),
            _ => Err(ValueError::UnknownFormat(input.to_owned())),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Text => "text",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = ValueError;
    fn from_str(input: &str) -> Result<Format, ValueError> {
        Format::parse(input)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("value is {size} bytes; the limit is {limit} bytes (1 MiB)")]
    TooLarge { size: usize, limit: usize },
    #[error("unknown format {0:?}: expected json, yaml or text")]
    UnknownFormat(String),
    #[error("format {format} needs a string value, got {got}")]
    NotAString {
        format: &'static str,
        got: &'static str,
    },
    #[error("invalid YAML: {0}")]
    InvalidYaml(String),
    #[error("stored value is not valid {format}: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    #[error("value cannot be encoded as JSON: {0}")]
    Unencodable(String),
}

/// The first integer literal in the JSON text `json` that neither `i64` nor `u64` holds, if any
/// (at most 40 characters of it). Such a number would be read as the nearest `f64` and stored
/// rounded, silently: callers refuse it instead. `json` must already have parsed as JSON (the
/// scan only tells strings from numbers); fractions and exponents are floats by intent and pass.
pub fn inexact_integer(json: &[u8]) -> Option<String> {
    let mut index = 0;
    while index < json.len() {
        match json[index] {
            b'"' => {
                index += 1;
                while index < json.len() && json[index] != b'"' {
                    index += if json[index] == b'\\' { 2 } else { 1 };
                }
                index += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = index;
                while index < json.len()
                    && matches!(json[index], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    index += 1;
                }
                let literal = std::str::from_utf8(&json[start..index]).unwrap_or_default();
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Some(literal.chars().take(40).collect());
                }
            }
            _ => index += 1,
        }
    }
    None
}

/// A value ready to store: its format, the exact stored bytes, and its structured view.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedValue {
    format: Format,
    stored: String,
    structured: serde_json::Value,
}

/// The JSON type name of `value`, for messages.
pub(crate) fn type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn check_size(stored: &str) -> Result<(), ValueError> {
    if stored.len() > MAX_VALUE_BYTES {
        return Err(ValueError::TooLarge {
            size: stored.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Parses one YAML document into its JSON view. An empty document (no content, or only comments)
/// is `null`; more than one document is an error.
fn parse_yaml(text: &str) -> Result<serde_json::Value, String> {
    serde_yaml_ng::from_str::<serde_json::Value>(text).map_err(|error| error.to_string())
}

impl ParsedValue {
    /// Parses a request's `value` with its optional `format` (see the module rules).
    pub fn from_request(
        value: serde_json::Value,
        format: Option<Format>,
    ) -> Result<ParsedValue, ValueError> {
        let format = format.unwrap_or(Format::Json);
        match format {
            Format::Json => {
                let stored = serde_json::to_string(&value)
                    .map_err(|error| ValueError::Unencodable(error.to_string()))?;
                check_size(&stored)?;
                Ok(ParsedValue {
                    format,
                    stored,
                    structured: value,
                })
            }
            Format::Yaml | Format::Text => {
                let serde_json::Value::String(stored) = value else {
                    return Err(ValueError::NotAString {
                        format: format.as_str(),
                        got: type_name(&value),
                    });
                };
                check_size(&stored)?;
                let structured = if format == Format::Yaml {
                    parse_yaml(&stored).map_err(ValueError::InvalidYaml)?
                } else {
                    serde_json::Value::String(stored.clone())
                };
                Ok(ParsedValue {
                    format,
                    stored,
                    structured,
                })
            }
        }
    }
    /// Rebuilds a value from stored bytes (what [`ParsedValue::stored`] returned).
    ///
    /// The size limit is not applied here: it guards writes, and data already stored stays
    /// readable even if the limit were lowered.
    pub fn from_stored(format: Format, stored: &str) -> Result<ParsedValue, ValueError> {
        let corrupt = |reason: String| ValueError::Corrupt {
            format: format.as_str(),
            reason,
        };
        let structured = match format {
            Format::Json => serde_json::from_str(stored).map_err(|e| corrupt(e.to_string()))?,
            Format::Yaml => parse_yaml(stored).map_err(corrupt)?,
            Format::Text => serde_json::Value::String(stored.to_owned()),
        };
        Ok(ParsedValue {
            format,
            stored: stored.to_owned(),
            structured,
        })
    }
    /// A value computed rather than stored (an effective value: merged, substituted), from
    /// parts the caller guarantees agree: `stored` is what [`ParsedValue::stored`] would hold
    /// for `structured` in `format`. Not size-checked: it is never written.
    pub(crate) fn from_parts(
        format: Format,
        stored: String,
        structured: serde_json::Value,
    ) -> ParsedValue {
        ParsedValue {
            format,
            stored,
            structured,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }
    /// The bytes to store: compact JSON for `json`, the original string for `yaml`/`text`.
    pub fn stored(&self) -> &str {
        &self.stored
    }
    /// The structured view: the JSON value, the parsed YAML, or the text as a JSON string.
    pub fn structured(&self) -> &serde_json::Value {
        &self.structured
    }
    /// How the API shows the value: the JSON value for `json`, the original string otherwise.
    pub fn to_api_value(&self) -> serde_json::Value {
        match self.format {
            Format::Json => self.structured.clone(),
            Format::Yaml | Format::Text => serde_json::Value::String(self.stored.clone()),
        }
    }

    /// [`ParsedValue::to_api_value`] without copying: serializes to the same JSON. For hot read
    /// paths that render straight into a response body.
    pub fn api_value(&self) -> ApiValue<'_> {
        match self.format {
            Format::Json => ApiValue::Json(&self.structured),
            Format::Yaml | Format::Text => ApiValue::Text(&self.stored),
        }
    }
}

/// A borrowed view of a value as the API shows it (see [`ParsedValue::api_value`]).
#[derive(Debug, Clone, Copy)]
pub enum ApiValue<'a> {
    Json(&'a serde_json::Value),
    Text(&'a str),
    /// An account record, shown without its key hashes (`auth::shown_value`).
    AccountRecord(&'a serde_json::Value),
}

impl Serialize for ApiValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ApiValue::Json(value) => value.serialize(serializer),
            ApiValue::Text(text) => serializer.serialize_str(text),
            ApiValue::AccountRecord(value) => {
                crate::auth::hide_key_hashes(value).serialize(serializer)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    #[test]
    fn borrowed_api_value_serializes_like_the_owned_one() {
        for (value, format) in [
            (json!({"a": [1, 2.5, "x"], "b": null}), None),
            (json!("a: 1\nb: [x]\n"), Some(Format::Yaml)),
            (json!("line\n\"quoted\""), Some(Format::Text)),
        ] {
            let parsed = ParsedValue::from_request(value, format).unwrap();
            assert_eq!(
                serde_json::to_string(&parsed.api_value()).unwrap(),
                serde_json::to_string(&parsed.to_api_value()).unwrap()
            );
        }
    }

    /// What a request should turn into: `(stored, structured, api value)`, or the error message.
    type Expected<'a> = Result<(&'a str, Value, Value), &'a str>;

    fn check(value: Value, format: Option<Format>, expected: Expected<'_>) {
        let got = ParsedValue::from_request(value.clone(), format);
        let label = format!("{value} as {format:?}");
        match (got, expected) {
            (Ok(parsed), Ok((stored, structured, api))) => {
                assert_eq!(parsed.format(), format.unwrap_or(Format::Json), "{label}");
                assert_eq!(parsed.stored(), stored, "{label}");
                assert_eq!(parsed.structured(), &structured, "{label}");
                assert_eq!(parsed.to_api_value(), api, "{label}");
                let reread = ParsedValue::from_stored(parsed.format(), parsed.stored());
                assert_eq!(reread, Ok(parsed), "{label}: from_stored round trip");
            }
            (Err(error), Err(message)) => assert_eq!(error.to_string(), message, "{label}"),
            (got, expected) => panic!("{label}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn from_request() {
        let yaml = "# db\nhost: localhost\nports: [1, 2]\n";
        let cases: Vec<(Value, Option<Format>, Expected<'_>)> = vec![
            (
                json!({"a": 1, "b": [true, null]}),
                None,
                Ok((
                    r#"{"a":1,"b":[true,null]}"#,
                    json!({"a": 1, "b": [true, null]}),
                    json!({"a": 1, "b": [true, null]}),
                )),
            ),
            (
                json!(42),
                Some(Format::Json),
                Ok(("42", json!(42), json!(42))),
            ),
            (
                json!("hi"),
                Some(Format::Json),
                Ok((r#""hi""#, json!("hi"), json!("hi"))),
            ),
            (json!(null), None, Ok(("null", json!(null), json!(null)))),
            (
                json!(yaml),
                Some(Format::Yaml),
                Ok((
                    yaml,
                    json!({"host": "localhost", "ports": [1, 2]}),
                    json!(yaml),
                )),
            ),
            (
                json!(""),
                Some(Format::Yaml),
                Ok(("", json!(null), json!(""))),
            ),
            (
                json!("just words"),
                Some(Format::Yaml),
                Ok(("just words", json!("just words"), json!("just words"))),
            ),
            (
                json!("a: [1"),
                Some(Format::Yaml),
                Err(
                    "invalid YAML: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 4",
                ),
            ),
            (
                json!("a: 1\n---\nb: 2"),
                Some(Format::Yaml),
                Err(
                    "invalid YAML: deserializing from YAML containing more than one document is not supported",
                ),
            ),
            (
                json!({"a": 1}),
                Some(Format::Yaml),
                Err("format yaml needs a string value, got object"),
            ),
            (
                json!("line 1\nline 2\n"),
                Some(Format::Text),
                Ok((
                    "line 1\nline 2\n",
                    json!("line 1\nline 2\n"),
                    json!("line 1\nline 2\n"),
                )),
            ),
            (
                json!(""),
                Some(Format::Text),
                Ok(("", json!(""), json!(""))),
            ),
            (
                json!(7),
                Some(Format::Text),
                Err("format text needs a string value, got number"),
            ),
            (
                json!([1]),
                Some(Format::Text),
                Err("format text needs a string value, got array"),
            ),
        ];
        for (value, format, expected) in cases {
            check(value, format, expected);
        }
    }

    #[test]
    fn size_limit_applies_to_stored_bytes() {
        let exactly = "x".repeat(MAX_VALUE_BYTES);
        let over = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(ParsedValue::from_request(json!(exactly), Some(Format::Text)).is_ok());
        let too_large = ValueError::TooLarge {
            size: MAX_VALUE_BYTES + 1,
            limit: MAX_VALUE_BYTES,
        };
        assert_eq!(
            ParsedValue::from_request(json!(over), Some(Format::Text)),
            Err(too_large.clone())
        );
        assert_eq!(
            ParsedValue::from_request(json!(over), Some(Format::Yaml)),
            Err(too_large)
        );
        // As JSON the two quotes push a string of exactly the limit over it.
        assert_eq!(
            ParsedValue::from_request(json!(exactly), None),
            Err(ValueError::TooLarge {
                size: MAX_VALUE_BYTES + 2,
                limit: MAX_VALUE_BYTES
            })
        );
        assert_eq!(
            too_large_message(),
            "value is 1048577 bytes; the limit is 1048576 bytes (1 MiB)"
        );
    }

    fn too_large_message() -> String {
        ValueError::TooLarge {
            size: MAX_VALUE_BYTES + 1,
            limit: MAX_VALUE_BYTES,
        }
        .to_string()
    }

    #[test]
    fn corrupt_stored_values() {
        assert_eq!(
            ParsedValue::from_stored(Format::Json, "{").map_err(|e| e.to_string()),
            Err(
                "stored value is not valid json: EOF while parsing an object at line 1 column 1"
                    .to_owned()
            )
        );
        assert!(matches!(
            ParsedValue::from_stored(Format::Yaml, "a: [1"),
            Err(ValueError::Corrupt { format: "yaml", .. })
        ));
        assert!(ParsedValue::from_stored(Format::Text, "{").is_ok());
    }

    #[test]
    fn integers_beyond_i64_and_u64_are_found_and_nothing_else() {
        let found = |text: &str| {
            serde_json::from_str::<Value>(text).expect("valid JSON");
            inexact_integer(text.as_bytes())
        };
        assert_eq!(
            found("123456789012345678901234567890"),
            Some("123456789012345678901234567890".into())
        );
        assert_eq!(
            found(r#"{"a": [1, -99999999999999999999]}"#),
            Some("-99999999999999999999".into())
        );
        assert_eq!(
            found("18446744073709551616"),
            Some("18446744073709551616".into())
        );
        for fine in [
            "18446744073709551615",
            "-9223372036854775808",
            "0",
            "-0",
            "1.5e300",
            "123456789012345678901234567890.0",
            r#""123456789012345678901234567890""#,
            r#"{"k\"99999999999999999999": "x\\", "n": 1}"#,
            r#"["\u0041", 2E5, -1e-5]"#,
        ] {
            assert_eq!(found(fine), None, "{fine}");
        }
    }

    #[test]
    fn format_names() {
        let cases = [
            ("json", Ok(Format::Json)),
            ("JSON", Ok(Format::Json)),
            ("yaml", Ok(Format::Yaml)),
            ("Yml", Ok(Format::Yaml)),
            ("text", Ok(Format::Text)),
            (
                "toml",
                Err("unknown format \"toml\": expected json, yaml or text"),
            ),
            ("", Err("unknown format \"\": expected json, yaml or text")),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Format::parse(input).map_err(|e| e.to_string()),
                expected.map_err(String::from),
                "{input:?}"
            );
        }
        for format in [Format::Json, Format::Yaml, Format::Text] {
            assert_eq!(Format::parse(format.as_str()), Ok(format));
            assert_eq!(
                serde_json::to_value(format).ok(),
                Some(json!(format.as_str()))
            );
        }
    }

    /// Small arbitrary JSON values (shared with the diff tests).
    pub(crate) fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z ]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_round_trips(value in json_value()) {
            let parsed = ParsedValue::from_request(value.clone(), None).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.structured(), &value);
            prop_assert_eq!(ParsedValue::from_stored(parsed.format(), parsed.stored()), Ok(parsed));
        }

        #[test]
        fn text_round_trips(text in "\\PC{0,40}") {
            let parsed = ParsedValue::from_request(Value::String(text.clone()), Some(Format::Text)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.stored(), text.as_str());
            prop_assert_eq!(ParsedValue::from_stored(Format::Text, parsed.stored()), Ok(parsed));
        }

        #[test]
        fn yaml_of_json_round_trips(value in json_value()) {
            // JSON text is YAML, so any JSON document is a valid YAML value with the same view.
            let text = serde_json::to_string_pretty(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed = ParsedValue::from_request(Value::String(text), Some(Format::Yaml)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.structured(), &value);
            prop_assert_eq!(ParsedValue::from_stored(Format::Yaml, parsed.stored()), Ok(parsed));
        }
    }
}

//! Bundles: a resolved subtree rendered as `.env`, a Kubernetes ConfigMap or a Kubernetes Secret.
//! (JSON and YAML bundles are [`crate::resolve::tree`] rendered by the caller.)
//!
//! Keys: every config path becomes one key, its segments upper-cased and joined by `_`, with
//! `.` and `-` turned into `_`: `/myapp/database/host` → `MYAPP_DATABASE_HOST`; a key that would
//! start with a digit gets a leading `_`. Two paths giving the same key are an error naming both.
//!
//! Values: strings as they are; numbers, booleans as their JSON text; `null` as the empty string;
//! objects and arrays as compact JSON. Text values are their text; YAML values are their
//! structured view as compact JSON.
//!
//! `.env` quoting: every value is quoted so that bash's `source` reads back exactly the value
//! (newlines, quotes, `$`, `#`, backslashes, unicode): single quotes, with `'` written as `'\''`.
//! When the value contains `'` but none of `"`, `$`, `` ` ``, `\`, it is double-quoted instead,
//! since dotenv parsers know nothing of `'\''`. A NUL character cannot live in a shell variable:
//! such a value is an error.
//!
//! python-dotenv (`dotenv_values`) and Node's dotenv (`parse`) read back exactly every other
//! value except (checked against python-dotenv 1.2 and dotenv 18 in
//! `core/tests/export_roundtrip.rs`):
//! - neither: a `'` together with `"`, `$`, `` ` `` or `\` (written `'\''`, which is bash's
//!   alone); a carriage return (both turn `\r\n` and a lone `\r` into `\n` before parsing, and
//!   nothing bash reads exactly in quotes makes them give it back); a value ending in `\` (both
//!   take the closing `\'` for an escaped quote; Node's dotenv still finds the value when the
//!   next line allows it, python-dotenv never does);
//! - python-dotenv: two backslashes in a row (it reads `\\` in single quotes as one `\`); a
//!   `${NAME}` or `${NAME:-default}` (NAME without `}` or `:`), which it expands even in single
//!   quotes and has no escape for.
//!
//! A value a parser misreads can spoil the line after it too. No other quoting reads back exactly
//! in bash and in both parsers: python-dotenv has no escape for `${`; the `\r` both decode in
//! double quotes is two characters to bash; and where python-dotenv would read a `\` written
//! `\\` (in double quotes, as bash does), Node's dotenv reads two.
//!
//! ConfigMap: YAML `apiVersion: v1`, `kind: ConfigMap`, `metadata.name` a DNS-1123 subdomain,
//! `data` with the keys above (valid ConfigMap keys), values as strings. Items that carry secrets
//! are never included; their keys are listed in the annotation
//! `setpoint.dev/omitted-secret-keys` (comma-separated) so nobody wonders where they went.
//! Secret: `kind: Secret`, `type: Opaque`, `data` with every secret-bearing item's value
//! base64-encoded (standard alphabet, padded).
//!
//! Both Kubernetes objects check what the API server would: data keys are valid ConfigMap keys
//! (`[-._a-zA-Z0-9]+`, at most 253 bytes — a long path can give a longer key), and the data
//! values (decoded, for a Secret) total at most [`MAX_DATA_BYTES`]. Key collisions are checked
//! over every item, secret or not, so an export either works in every format or in none.
//!
//! Pure: builds strings, reads nothing, writes nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{ConfigPath, Format};

/// What `?format=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExportFormat {
    Json,
    Yaml,
    Dotenv,
    ConfigMap,
    Secret,
}

impl ExportFormat {
    /// `json`, `yaml`, `dotenv` (also `env`), `k8s-configmap`, `k8s-secret`.
    pub fn parse(input: &str) -> Option<ExportFormat> {
        match input {
            "json" => Some(ExportFormat::Json),
            "yaml" => Some(ExportFormat::Yaml),
            "dotenv" | "env" => Some(ExportFormat::Dotenv),
            "k8s-configmap" => Some(ExportFormat::ConfigMap),
            "k8s-secret" => Some(ExportFormat::Secret),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Yaml => "yaml",
            ExportFormat::Dotenv => "dotenv",
            ExportFormat::ConfigMap => "k8s-configmap",
            ExportFormat::Secret => "k8s-secret",
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Yaml | ExportFormat::ConfigMap | ExportFormat::Secret => {
                "application/yaml"
            }
            ExportFormat::Dotenv => "text/plain; charset=utf-8",
        }
    }
}

/// One config of a resolved subtree.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The base path.
    pub path: ConfigPath,
    pub format: Format,
    /// The effective value after substitution (structured; a JSON string for text).
    pub value: serde_json::Value,
    /// True when the value referenced a secret (before substitution).
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("paths {first} and {second} both export as key {key}")]
    KeyCollision {
        key: String,
        first: String,
        second: String,
    },
    #[error(
        "{name:?} is not a valid Kubernetes object name (DNS-1123 subdomain: lower-case a-z, 0-9, `-`, `.`, at most 253, starting and ending alphanumeric)"
    )]
    InvalidName { name: String },
    #[error("the value of {path} contains a NUL character, which a .env file cannot carry")]
    NulInValue { path: String },
    #[error("the export is {size} bytes; Kubernetes objects hold at most {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("path {path} exports as key {key:?}, which is not a valid {target} key")]
    InvalidKey {
        key: String,
        path: String,
        /// `.env` or `Kubernetes`.
        target: &'static str,
    },
    #[error("could not render the export as YAML: {message}")]
    Render { message: String },
}

/// The most bytes of data (values only, decoded) a ConfigMap or Secret may hold: the API
/// server's limit (`MaxConfigMapSize`, `MaxSecretSize`).
pub const MAX_DATA_BYTES: usize = 1_048_576;

/// The longest Kubernetes object name and ConfigMap key.
const MAX_K8S_NAME_BYTES: usize = 253;

const OMITTED_SECRET_KEYS: &str = "setpoint.dev/omitted-secret-keys";

/// The name used when the prefix gives nothing usable.
const FALLBACK_NAME: &str = "setpoint";

/// The key a path exports as (see the module rules). The root, which never holds a value, gives
/// the empty string, which every exporter rejects.
pub fn env_key(path: &ConfigPath) -> String {
    let mut key = String::with_capacity(path.as_str().len() + 1);
    for (index, segment) in path.segments().enumerate() {
        if index > 0 {
            key.push('_');
        }
        key.extend(segment.chars().map(|c| match c {
            '.' | '-' => '_',
            other => other.to_ascii_uppercase(),
        }));
    }
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        key.insert(0, '_');
    }
    key
}

/// How an item's value is written as one string (see the module rules).
pub fn text_of(item: &Item) -> String {
    // The format needs no branch: a text value and a YAML scalar string are both JSON strings
    // here, and every other YAML value is already its structured view.
    match &item.value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        // `Display` of a JSON value is compact JSON.
        other => other.to_string(),
    }
}

/// A `.env` file of every item, in path order, one `KEY='value'` line each, ending in a newline.
pub fn dotenv(items: &[Item]) -> Result<String, ExportError> {
    let mut out = String::new();
    for (key, item) in keyed(items)? {
        if !is_shell_name(&key) {
            return Err(invalid_key(key, item, ".env"));
        }
        let value = text_of(item);
        if value.contains('\0') {
            return Err(ExportError::NulInValue {
                path: item.path.as_str().to_owned(),
            });
        }
        out.push_str(&key);
        out.push('=');
        out.push_str(&shell_quote(&value));
        out.push('\n');
    }
    Ok(out)
}

/// The object name: `requested` checked as a DNS-1123 subdomain, else derived from the prefix
/// (`/myapp/database` → `myapp-database`: lower-cased, invalid characters to `-`, trimmed to
/// alphanumerics at both ends, at most 253 bytes; the root or an empty result → `setpoint`).
pub fn resource_name(prefix: &ConfigPath, requested: Option<&str>) -> Result<String, ExportError> {
    match requested {
        Some(name) => {
            check_name(name)?;
            Ok(name.to_owned())
        }
        None => Ok(derived_name(prefix)),
    }
}

/// A ConfigMap of the non-secret items (see the module rules).
pub fn config_map(name: &str, items: &[Item]) -> Result<String, ExportError> {
    check_name(name)?;
    let mut data = BTreeMap::new();
    let mut omitted = Vec::new();
    for (key, item) in keyed(items)? {
        if item.secret {
            omitted.push(key);
            continue;
        }
        if !is_config_map_key(&key) {
            return Err(invalid_key(key, item, "Kubernetes"));
        }
        data.insert(key, text_of(item));
    }
    check_size(data.values().map(String::len).sum())?;
    let mut annotations = BTreeMap::new();
    if !omitted.is_empty() {
        omitted.sort();
        annotations.insert(OMITTED_SECRET_KEYS, omitted.join(","));
    }
    render(&Object {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: Metadata { name, annotations },
        object_type: None,
        data,
    })
}

/// A Secret of the secret-bearing items (see the module rules).
pub fn secret(name: &str, items: &[Item]) -> Result<String, ExportError> {
    check_name(name)?;
    let mut data = BTreeMap::new();
    let mut size = 0;
    for (key, item) in keyed(items)? {
        if !item.secret {
            continue;
        }
        if !is_config_map_key(&key) {
            return Err(invalid_key(key, item, "Kubernetes"));
        }
        let value = text_of(item);
        // Kubernetes counts the decoded bytes, not the base64 text.
        size += value.len();
        data.insert(key, base64(value.as_bytes()));
    }
    check_size(size)?;
    render(&Object {
        api_version: "v1",
        kind: "Secret",
        metadata: Metadata {
            name,
            annotations: BTreeMap::new(),
        },
        object_type: Some("Opaque"),
        data,
    })
}

/// A ConfigMap or Secret, as [`render`] writes it.
struct Object<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    object_type: Option<&'static str>,
    data: BTreeMap<String, String>,
}

struct Metadata<'a> {
    name: &'a str,
    annotations: BTreeMap<&'static str, String>,
}

/// Writes the object as YAML with every string double-quoted.
///
/// Not serde_yaml_ng: it quotes only strings a YAML 1.2 parser would misread, and leaves YAML 1.1
/// words (`yes`, `on`, `off`, `y`, `1_000`) bare — which Kubernetes' parser (go-yaml v2, YAML 1.1)
/// reads as booleans and numbers, so `kubectl apply` refuses the ConfigMap (serde-yaml issues
/// #319 and #380). A double-quoted scalar is a string to every YAML version; characters that are
/// not printable in YAML, or that YAML 1.1 treats as line breaks, are escaped.
fn render(object: &Object<'_>) -> Result<String, ExportError> {
    let mut out = String::new();
    out.push_str("apiVersion: ");
    out.push_str(object.api_version);
    out.push_str("\nkind: ");
    out.push_str(object.kind);
    out.push_str("\nmetadata:\n  name: ");
    out.push_str(&yaml_quoted(object.metadata.name));
    out.push('\n');
    if !object.metadata.annotations.is_empty() {
        out.push_str("  annotations:\n");
        for (key, value) in &object.metadata.annotations {
            out.push_str("    ");
            out.push_str(&yaml_quoted(key));
            out.push_str(": ");
            out.push_str(&yaml_quoted(value));
            out.push('\n');
        }
    }
    if let Some(object_type) = object.object_type {
        out.push_str("type: ");
        out.push_str(object_type);
        out.push('\n');
    }
    if object.data.is_empty() {
        out.push_str("data: {}\n");
    } else {
        out.push_str("data:\n");
        for (key, value) in &object.data {
            out.push_str("  ");
            out.push_str(&yaml_quoted(key));
            out.push_str(": ");
            out.push_str(&yaml_quoted(value));
            out.push('\n');
        }
    }
    Ok(out)
}

/// `text` as a YAML double-quoted scalar that every YAML 1.1 and 1.2 parser reads back exactly.
pub fn yaml_quoted(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Printable in YAML, minus NEL, LS, PS (line breaks in YAML 1.1) and the BOM.
            c if matches!(u32::from(c), 0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD | 0x10000..) =>
            {
                out.push(c);
            }
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// Every item with its key, in path order; two items with one key are an error naming both.
fn keyed(items: &[Item]) -> Result<Vec<(String, &Item)>, ExportError> {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut seen: BTreeMap<String, &ConfigPath> = BTreeMap::new();
    let mut keyed = Vec::with_capacity(sorted.len());
    for item in sorted {
        let key = env_key(&item.path);
        if let Some(first) = seen.insert(key.clone(), &item.path) {
            return Err(ExportError::KeyCollision {
                key,
                first: first.as_str().to_owned(),
                second: item.path.as_str().to_owned(),
            });
        }
        keyed.push((key, item));
    }
    Ok(keyed)
}

fn invalid_key(key: String, item: &Item, target: &'static str) -> ExportError {
    ExportError::InvalidKey {
        key,
        path: item.path.as_str().to_owned(),
        target,
    }
}

fn check_size(size: usize) -> Result<(), ExportError> {
    if size > MAX_DATA_BYTES {
        return Err(ExportError::TooLarge {
            size,
            limit: MAX_DATA_BYTES,
        });
    }
    Ok(())
}

/// `value` quoted for a `.env` line (see the module rules). `value` holds no NUL.
fn shell_quote(value: &str) -> String {
    if value.contains('\'') && !value.contains(['"', '$', '`', '\\']) {
        format!("\"{value}\"")
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// A name bash accepts on the left of `=`: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_shell_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// apimachinery's `IsConfigMapKey`: `[-._a-zA-Z0-9]+`, at most 253 bytes, not `.`, not `..`
/// and not starting with `..`.
fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_K8S_NAME_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && !key.starts_with("..")
}

/// apimachinery's `IsDNS1123Subdomain`: at most 253 bytes of `.`-separated labels, each of
/// `[a-z0-9-]` starting and ending alphanumeric.
fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= MAX_K8S_NAME_BYTES && name.split('.').all(is_dns1123_label)
}

fn is_dns1123_label(label: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = label.as_bytes();
    bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
}

fn check_name(name: &str) -> Result<(), ExportError> {
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(ExportError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// See [`resource_name`]. A `.` stays (it is valid between labels); each `.`-separated label is
/// trimmed of `-` at both ends and empty labels are dropped, so the result always passes
/// [`is_dns1123_subdomain`].
fn derived_name(prefix: &ConfigPath) -> String {
    let mapped: String = prefix
        .as_str()
        .trim_start_matches('/')
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.') => c,
            _ => '-',
        })
        .collect();
    let labels: Vec<&str> = mapped
        .split('.')
        .map(|label| label.trim_matches('-'))
        .filter(|label| !label.is_empty())
        .collect();
    let mut name = labels.join(".");
    // All ASCII, so any byte index is a char boundary.
    name.truncate(MAX_K8S_NAME_BYTES);
    let name = name.trim_end_matches(['-', '.']);
    if name.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        name.to_owned()
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64, standard alphabet, padded (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |index: usize| u32::from(chunk.get(index).copied().unwrap_or(0));
        let group = byte(0) << 16 | byte(1) << 8 | byte(2);
        // A chunk of n bytes gives n + 1 characters, then `=` up to 4.
        for position in 0..4 {
            if position <= chunk.len() {
                let sextet = (group >> (18 - 6 * position)) & 0x3f;
                out.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn path(input: &str) -> ConfigPath {
        ConfigPath::parse(input).unwrap()
    }

    fn item(at: &str, value: serde_json::Value) -> Item {
        Item {
            path: path(at),
            format: Format::Json,
            value,
            secret: false,
        }
    }

    fn secret_item(at: &str, value: &str) -> Item {
        Item {
            secret: true,
            ..item(at, json!(value))
        }
    }

    #[test]
    fn env_keys() {
        let check = |input: &str, expected: &str| assert_eq!(env_key(&path(input)), expected);
        check("/myapp/database/host", "MYAPP_DATABASE_HOST");
        check("/my-app/db.pool/max_size", "MY_APP_DB_POOL_MAX_SIZE");
        check("/a/b-c", "A_B_C");
        check("/a/b_c", "A_B_C");
        check("/1st/x", "_1ST_X");
        check("/9", "_9");
        check("/_x", "_X");
        check("/-x", "_X");
        check("/.env-like", "_ENV_LIKE");
        check("/x1/2y", "X1_2Y");
        check("/", "");
    }

    #[test]
    fn text_of_each_kind_of_value() {
        let check = |format: Format, value: serde_json::Value, expected: &str| {
            let item = Item {
                format,
                ..item("/a", value)
            };
            assert_eq!(text_of(&item), expected);
        };
        check(Format::Json, json!("plain text"), "plain text");
        check(Format::Json, json!(""), "");
        check(Format::Json, json!(42), "42");
        check(Format::Json, json!(-1.5), "-1.5");
        check(Format::Json, json!(1e300), "1e+300");
        check(Format::Json, json!(true), "true");
        check(Format::Json, json!(false), "false");
        check(Format::Json, json!(null), "");
        check(Format::Json, json!([1, "two", null]), r#"[1,"two",null]"#);
        check(
            Format::Json,
            json!({"b": {"c": [true]}, "a": 1}),
            r#"{"a":1,"b":{"c":[true]}}"#,
        );
        check(
            Format::Json,
            json!({"q": "say \"hi\"\n"}),
            r#"{"q":"say \"hi\"\n"}"#,
        );
        check(Format::Text, json!("line 1\nline 2\n"), "line 1\nline 2\n");
        check(Format::Yaml, json!({"retries": 3}), r#"{"retries":3}"#);
        check(Format::Yaml, json!("a scalar"), "a scalar");
        check(Format::Yaml, json!(null), "");
    }

    #[test]
    fn shell_quoting() {
        let check = |value: &str, expected: &str| assert_eq!(shell_quote(value), expected);
        check("", "''");
        check("plain", "'plain'");
        check("two words", "'two words'");
        check("it's", "\"it's\"");
        check("it's\nmulti-line # too", "\"it's\nmulti-line # too\"");
        check("say \"hi\"", "'say \"hi\"'");
        check("$HOME", "'$HOME'");
        check("`id`", "'`id`'");
        check("back\\slash", "'back\\slash'");
        // A `'` next to anything double quotes would expand stays single-quoted.
        check("it's $HOME", r#"'it'\''s $HOME'"#);
        check("it's \"x\"", r#"'it'\''s "x"'"#);
        check("it's `id`", r#"'it'\''s `id`'"#);
        check("it's \\", r#"'it'\''s \'"#);
        check("'\\''", r#"''\''\'\'''\'''"#);
        check("日本 🎉", "'日本 🎉'");
    }

    #[test]
    fn dotenv_lines_in_path_order() {
        let items = [
            item("/app/z", json!("last")),
            item("/app/b-c", json!(2)),
            item("/app/a", json!(null)),
            item("/app/b/x", json!({"k": "v"})),
            secret_item("/app/pw", "it's"),
        ];
        let expected = "APP_A=''\n\
                        APP_B_C='2'\n\
                        APP_B_X='{\"k\":\"v\"}'\n\
                        APP_PW=\"it's\"\n\
                        APP_Z='last'\n";
        assert_eq!(dotenv(&items).unwrap(), expected);
        assert_eq!(dotenv(&[]).unwrap(), "");
    }

    #[test]
    fn dotenv_rejects_nul() {
        let items = [item("/ok", json!("fine")), item("/bad", json!("a\0b"))];
        assert_eq!(
            dotenv(&items),
            Err(ExportError::NulInValue {
                path: "/bad".to_owned()
            })
        );
        // Inside a structured value, serde_json escapes it, so the text holds no NUL.
        assert!(dotenv(&[item("/obj", json!({"k": "a\0b"}))]).is_ok());
    }

    #[test]
    fn collisions_name_both_paths_in_every_format() {
        let items = [item("/a/b_c", json!(1)), item("/a/b-c", json!(2))];
        let expected = Err(ExportError::KeyCollision {
            key: "A_B_C".to_owned(),
            first: "/a/b-c".to_owned(),
            second: "/a/b_c".to_owned(),
        });
        assert_eq!(dotenv(&items), expected);
        assert_eq!(config_map("n", &items), expected);
        assert_eq!(secret("n", &items), expected);
        let message = dotenv(&items).unwrap_err().to_string();
        assert!(
            message.contains("/a/b-c") && message.contains("/a/b_c"),
            "{message}"
        );

        // A secret colliding with a plain item is still a collision, even where it is left out.
        let mixed = [item("/a/b.c", json!(1)), secret_item("/a/b/c", "x")];
        assert!(matches!(
            config_map("n", &mixed),
            Err(ExportError::KeyCollision { .. })
        ));
        // The leading `_` for digits can collide too.
        let digits = [item("/1x", json!(1)), item("/_1x", json!(2))];
        assert!(matches!(
            dotenv(&digits),
            Err(ExportError::KeyCollision { .. })
        ));
    }

    #[test]
    fn the_root_has_no_key() {
        let root = item("/", json!(1));
        assert!(matches!(
            dotenv(std::slice::from_ref(&root)),
            Err(ExportError::InvalidKey { .. })
        ));
        assert!(matches!(
            config_map("n", &[root]),
            Err(ExportError::InvalidKey { .. })
        ));
    }

    #[test]
    fn names() {
        let check = |prefix: &str, requested: Option<&str>, expected: Result<&str, ()>| {
            let got = resource_name(&path(prefix), requested);
            match expected {
                Ok(name) => assert_eq!(got, Ok(name.to_owned()), "{prefix} {requested:?}"),
                Err(()) => assert_eq!(
                    got,
                    Err(ExportError::InvalidName {
                        name: requested.unwrap_or_default().to_owned()
                    })
                ),
            }
        };
        check("/myapp/database", None, Ok("myapp-database"));
        check("/MyApp/DB_Host", None, Ok("myapp-db-host"));
        check("/myapp/v1.2", None, Ok("myapp-v1.2"));
        check("/_internal_/x-", None, Ok("internal--x"));
        check("/a/.hidden", None, Ok("a.hidden"));
        check("/a..b/c", None, Ok("a.b-c"));
        check("/", None, Ok("setpoint"));
        check("/__/--/..x", None, Ok("x"));
        check("/__/--", None, Ok("setpoint"));
        check("/ignored", Some("my-config.v2"), Ok("my-config.v2"));
        check("/ignored", Some("a"), Ok("a"));
        check("/ignored", Some("0"), Ok("0"));
        for bad in [
            "",
            "My-Config",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a b",
            "é",
        ] {
            check("/ignored", Some(bad), Err(()));
        }
        check("/x", Some(&"a".repeat(253)), Ok(&"a".repeat(253)));
        check("/x", Some(&"a".repeat(254)), Err(()));
    }

    #[test]
    fn long_prefixes_give_short_valid_names() {
        let segments: Vec<String> = (0..30).map(|i| format!("segment{i:02}")).collect();
        let prefix = path(&segments.join("/"));
        let name = resource_name(&prefix, None).unwrap();
        assert_eq!(name.len(), 253);
        assert!(is_dns1123_subdomain(&name), "{name}");
        // Cut right after a `-`: the trailing `-` goes.
        let prefix = path(&format!("{}/b", "a".repeat(252)));
        assert_eq!(resource_name(&prefix, None).unwrap(), "a".repeat(252));
    }

    #[test]
    fn config_map_keys() {
        for good in [
            "A",
            "a-b",
            "a.b",
            "_",
            "-",
            "a..b",
            ".a",
            "A_1",
            &"k".repeat(253),
        ] {
            assert!(is_config_map_key(good), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "..a",
            "a b",
            "a/b",
            "é",
            "a:b",
            &"k".repeat(254),
        ] {
            assert!(!is_config_map_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_long_path_is_not_a_valid_config_map_key() {
        let long = path(&format!("/{}", "x".repeat(300)));
        let items = [item(long.as_str(), json!(1))];
        assert!(matches!(
            config_map("n", &items),
            Err(ExportError::InvalidKey {
                target: "Kubernetes",
                ..
            })
        ));
        // A .env key has no length limit.
        assert!(dotenv(&items).is_ok());
    }

    #[test]
    fn config_map_leaves_secrets_out_and_says_so() {
        let items = [
            item("/app/port", json!(8080)),
            item("/app/name", json!("true")),
            secret_item("/app/pw", "hunter2"),
            secret_item("/app/api-key", "k"),
        ];
        let expected = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: "app"
  annotations:
    "setpoint.dev/omitted-secret-keys": "APP_API_KEY,APP_PW"
data:
  "APP_NAME": "true"
  "APP_PORT": "8080"
"#;
        assert_eq!(config_map("app", &items).unwrap(), expected);
        let without_secrets = config_map("app", &items[..2]).unwrap();
        assert!(
            !without_secrets.contains("annotations"),
            "{without_secrets}"
        );
        assert!(!config_map("app", &items).unwrap().contains("hunter2"));
    }

    #[test]
    fn secret_holds_only_secrets_base64() {
        let items = [
            item("/app/port", json!(8080)),
            secret_item("/app/pw", "hunter2"),
            Item {
                secret: true,
                ..item("/app/obj", json!({"user": "u"}))
            },
        ];
        let expected = r#"apiVersion: v1
kind: Secret
metadata:
  name: "app-secrets"
type: Opaque
data:
  "APP_OBJ": "eyJ1c2VyIjoidSJ9"
  "APP_PW": "aHVudGVyMg=="
"#;
        assert_eq!(secret("app-secrets", &items).unwrap(), expected);
    }

    #[test]
    fn empty_objects() {
        assert_eq!(
            config_map("e", &[]).unwrap(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"e\"\ndata: {}\n"
        );
        assert_eq!(
            secret("e", &[item("/plain", json!(1))]).unwrap(),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: \"e\"\ntype: Opaque\ndata: {}\n"
        );
    }

    #[test]
    fn objects_check_their_name() {
        for export in [config_map, secret] {
            assert_eq!(
                export("Bad_Name", &[]),
                Err(ExportError::InvalidName {
                    name: "Bad_Name".to_owned()
                })
            );
        }
    }

    #[test]
    fn size_limit_counts_values() {
        // Two values that fill the limit exactly, then one byte more.
        let half = MAX_DATA_BYTES / 2;
        let full = [
            item("/a", json!("x".repeat(half))),
            item("/b", json!("x".repeat(half))),
        ];
        assert!(config_map("n", &full).is_ok());
        let over = [
            item("/a", json!("x".repeat(half))),
            item("/b", json!("x".repeat(half + 1))),
        ];
        let too_large = Err(ExportError::TooLarge {
            size: MAX_DATA_BYTES + 1,
            limit: MAX_DATA_BYTES,
        });
        assert_eq!(config_map("n", &over), too_large);
        // Secrets count decoded bytes: a full MiB is fine although its base64 is larger.
        let secrets: Vec<Item> = full
            .iter()
            .map(|i| Item {
                secret: true,
                ..i.clone()
            })
            .collect();
        assert!(secret("n", &secrets).is_ok());
        let secrets: Vec<Item> = over
            .iter()
            .map(|i| Item {
                secret: true,
                ..i.clone()
            })
            .collect();
        assert_eq!(secret("n", &secrets), too_large);
        // Secrets do not count toward the ConfigMap, nor plain items toward the Secret.
        assert!(config_map("n", &secrets).is_ok());
        assert!(secret("n", &over).is_ok());
    }

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 §10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        // The last two letters of the alphabet, and every bit set.
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(base64(&[0xff, 0xff, 0xff]), "////");
        assert_eq!(base64(&[0, 0, 0]), "AAAA");
        assert_eq!(base64("é".as_bytes()), "w6k=");
    }

    /// A plain decoder, only to check the encoder against.
    fn decode_base64(text: &str) -> Vec<u8> {
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in text.bytes().take_while(|c| *c != b'=') {
            let sextet = BASE64_ALPHABET.iter().position(|a| *a == c).unwrap();
            bits = bits << 6 | sextet as u32;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let encoded = base64(&bytes);
            prop_assert_eq!(encoded.len(), bytes.len().div_ceil(3) * 4);
            prop_assert_eq!(decode_base64(&encoded), bytes);
        }

        #[test]
        fn derived_names_are_valid(segments in proptest::collection::vec("[A-Za-z0-9._-]{1,40}", 0..12)) {
            let segments: Vec<String> = segments
                .into_iter()
                .filter(|s| s != "." && s != "..")
                .collect();
            let prefix = ConfigPath::parse(&segments.join("/")).unwrap();
            let name = resource_name(&prefix, None).unwrap();
            prop_assert!(is_dns1123_subdomain(&name), "{:?} from {}", name, prefix.as_str());
        }

        #[test]
        fn env_keys_are_shell_names_and_config_map_keys(
            segments in proptest::collection::vec("[A-Za-z0-9._-]{1,20}", 1..8),
        ) {
            let segments: Vec<String> = segments
                .into_iter()
                .filter(|s| s != "." && s != "..")
                .collect();
            prop_assume!(!segments.is_empty());
            let key = env_key(&ConfigPath::parse(&segments.join("/")).unwrap());
            prop_assert!(is_shell_name(&key), "{:?}", key);
            prop_assert!(is_config_map_key(&key), "{:?}", key);
        }
    }

    proptest::proptest! {
        #[test]
        fn yaml_quoted_reads_back_exactly(text in "\\PC*|[\\x00-\\x{FFFF}]{0,40}") {
            let yaml = format!("k: {}\n", yaml_quoted(&text));
            let parsed: BTreeMap<String, String> = serde_yaml_ng::from_str(&yaml).unwrap();
            proptest::prop_assert_eq!(parsed.get("k"), Some(&text));
        }
    }

    #[test]
    fn yaml_1_1_words_stay_strings() {
        for word in [
            "yes", "no", "on", "off", "y", "n", "1_000", "0X1F", "12:30:00", "~", "null", "",
        ] {
            let quoted = yaml_quoted(word);
            assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{quoted}");
        }
        assert_eq!(
            yaml_quoted("a\u{85}b\u{2028}c\u{feff}\u{7f}"),
            "\"a\\u0085b\\u2028c\\uFEFF\\u007F\""
        );
    }
}

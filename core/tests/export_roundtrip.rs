//! Exports read back by what consumes them: the `.env` file by bash's `source`, python-dotenv and
//! Node's dotenv, the ConfigMap and Secret by a YAML parser. Every value must come back byte for
//! byte as [`export::text_of`] — through the dotenv parsers, every value the module doc of
//! `setpoint_core::export` says they read.
//!
//! bash, python-dotenv (in `.tools/python`) and Node.js with dotenv (in `.tools/node`) must be
//! installed (`scripts/ensure-tools`); without them these tests fail, they never skip.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use regex::Regex;
use serde_json::json;
use setpoint_core::export::{self, ExportError, Item};
use setpoint_core::{ConfigPath, Format};

/// Values that break naive quoting somewhere: shell, dotenv parsers or YAML.
const HOSTILE: &[&str] = &[
    "it's",
    r#"say "hi""#,
    "$HOME",
    "${HOME}",
    "$(id)",
    "`id`",
    "a#b",
    " # comment",
    "#",
    "trailing backslash \\",
    "\\",
    "\\n literal",
    "real\nnewlines\n",
    "\n",
    "\n\nleading and trailing\n\n",
    "crlf\r\nline\r\n",
    "\r",
    "tab\there",
    "\t",
    "é",
    "日本",
    "emoji 🎉👍🏽",
    "",
    " ",
    "  leading and trailing spaces  ",
    "'\\''",
    "'",
    "''",
    "\"",
    "!",
    "!!",
    "*",
    "~",
    "~/x",
    "a=b",
    "==",
    "; ls",
    "a && b || c",
    "| cat",
    "> /dev/null",
    "(sub)",
    "{a,b}",
    "[abc]",
    "%s %n",
    "\u{1}\u{7f}",
    "\u{85}",
    "\u{2028}\u{2029}",
    "\u{feff}bom",
    "export X=1",
    // Double-quoted in the .env file: a `'` with none of `"`, `$`, `` ` ``, `\`.
    "it's\nmulti-line",
    "it's # not a comment",
    "it's!",
    "it's *~ ?",
    "it's\r\n",
    "it's\ttabbed",
    " it's ",
    "it's 日本 🎉",
    // Single-quoted after all: a `'` next to what double quotes would change.
    "it's \\",
    "it's \\\\ two",
    "it's $HOME",
    "it's \"quoted\"",
    "it's `id`",
    // YAML-looking strings.
    "yes",
    "no",
    "true",
    "null",
    "0755",
    "1e3",
    "- item",
    "key: value",
    ": x",
    "? x",
    "&anchor",
    "*alias",
    "!tag",
    "%YAML",
    "@at",
    "---",
    "...",
    "{a: 1}",
    "[1, 2]",
    "a\n  indented\n",
    "trailing space \nline",
];

fn item(path: &str, value: serde_json::Value, secret: bool) -> Item {
    Item {
        path: ConfigPath::parse(path).unwrap(),
        format: Format::Json,
        value,
        secret,
    }
}

/// One item per value, `/rt/v000`, `/rt/v001`, ….
fn items_of(values: &[&str]) -> Vec<Item> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| item(&format!("/rt/v{index:03}"), json!(value), false))
        .collect()
}

/// Sources `dotenv` in bash (`set -a; source FILE`) and returns the value of each key, exactly.
fn bash_source(dotenv: &str, keys: &[String]) -> Vec<String> {
    let mut file = tempfile::Builder::new()
        .prefix("setpoint-export-")
        .suffix(".env")
        .tempfile()
        .unwrap();
    file.write_all(dotenv.as_bytes()).unwrap();
    file.flush().unwrap();
    let script = r#"set -a; source "$1" || exit 1; shift; for key in "$@"; do printf '%s\0' "${!key}"; done"#;
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(file.path())
        .args(keys)
        .output()
        .unwrap_or_else(|e| panic!("these tests need bash, and running it failed: {e}"));
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "bash failed ({}): {}\nthe file:\n{dotenv}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut values: Vec<String> = output
        .stdout
        .split(|b| *b == 0)
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    assert_eq!(values.pop().as_deref(), Some(""), "output ends in a NUL");
    values
}

/// Exports `items` as `.env`, sources it and checks every value came back exactly.
fn check_bash(items: &[Item]) -> Result<(), TestCaseError> {
    let text = export::dotenv(items).unwrap();
    let keys: Vec<String> = items.iter().map(|i| export::env_key(&i.path)).collect();
    let got = bash_source(&text, &keys);
    prop_assert_eq!(got.len(), items.len());
    for (item, value) in items.iter().zip(&got) {
        prop_assert_eq!(
            value,
            &export::text_of(item),
            "{} through bash; the file:\n{}",
            item.path.as_str(),
            text
        );
    }
    Ok(())
}

#[test]
fn bash_reads_back_hostile_values() {
    let mut items = items_of(HOSTILE);
    items.push(item("/rt/number", json!(-12.5), false));
    items.push(item("/rt/bool", json!(false), false));
    items.push(item("/rt/null", json!(null), false));
    items.push(item("/rt/object", json!({"q": "it's \"$x\"\n"}), false));
    items.push(item("/rt/secret", json!("pa$$'w\"rd"), true));
    check_bash(&items).unwrap();
}

#[test]
fn a_nul_cannot_be_exported_to_dotenv() {
    let items = [
        item("/ok", json!("x"), false),
        item("/nul", json!("a\0b"), false),
    ];
    assert_eq!(
        export::dotenv(&items),
        Err(ExportError::NulInValue {
            path: "/nul".to_owned()
        })
    );
}

/// Characters that matter to a shell, a dotenv parser or YAML, mixed with anything else.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        prop::sample::select(vec![
            '\'', '"', '$', '`', '\\', '\n', '\r', '\t', '#', ' ', '!', '*', '~', '{', '}', '(',
            ')', ';', '&', '|', '=', ':', '-', 'é', '日', '🎉',
        ]),
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..24).prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    // Each case starts bash once; 64 keeps the test fast.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bash_reads_back_random_values(values in prop::collection::vec(hostile_string(), 1..8)) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        check_bash(&items_of(&values))?;
    }
}

/// What `scripts/ensure-tools` installs, under `.tools` at the workspace root.
fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(".tools")
}

/// Neither dotenv parser reads these back (module doc): a `'` written `'\''`, a carriage return,
/// a trailing `\`.
fn no_dotenv_parser_reads(value: &str) -> bool {
    (value.contains('\'') && value.contains(['"', '$', '`', '\\']))
        || value.contains('\r')
        || value.ends_with('\\')
}

/// What the module doc says python-dotenv reads back exactly.
fn python_dotenv_reads(value: &str) -> bool {
    let variable = Regex::new(r"\$\{[^}:]*(:-[^}]*)?\}").unwrap();
    !no_dotenv_parser_reads(value) && !value.contains("\\\\") && !variable.is_match(value)
}

/// What the module doc says Node's dotenv reads back exactly.
fn node_dotenv_reads(value: &str) -> bool {
    !no_dotenv_parser_reads(value)
}

/// `dotenv` in a temporary `.env` file, kept until the returned guard drops.
fn dotenv_file(dotenv: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("setpoint-export-")
        .suffix(".env")
        .tempfile()
        .unwrap();
    file.write_all(dotenv.as_bytes()).unwrap();
    file.flush().unwrap();
    file
}

/// A parser's answer: one JSON object of strings (python-dotenv gives `null` for a line it could
/// not parse).
fn parsed_values(parser: &str, output: &std::process::Output) -> BTreeMap<String, Option<String>> {
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{parser} failed or complained ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{parser} printed no JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `dotenv_values(path)` of python-dotenv, from the venv `scripts/ensure-tools` makes.
fn python_dotenv(dotenv: &str) -> BTreeMap<String, Option<String>> {
    let python = tools().join("python/bin/python");
    assert!(
        python.exists(),
        "python-dotenv is not installed: {} is missing; run scripts/ensure-tools",
        python.display()
    );
    let file = dotenv_file(dotenv);
    let script = "import json, sys\nfrom dotenv import dotenv_values\njson.dump(dotenv_values(sys.argv[1]), sys.stdout)";
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} failed ({e}); run scripts/ensure-tools",
                python.display()
            )
        });
    parsed_values("python-dotenv", &output)
}

/// `require('dotenv').parse(fs.readFileSync(path))` of Node's dotenv, from `.tools/node`.
fn node_dotenv(dotenv: &str) -> BTreeMap<String, Option<String>> {
    let module = tools().join("node/node_modules/dotenv");
    assert!(
        module.join("package.json").exists(),
        "Node's dotenv is not installed: {} is missing; run scripts/ensure-tools",
        module.display()
    );
    let file = dotenv_file(dotenv);
    let script = "const fs = require('fs'); const dotenv = require(process.argv[1]); \
                  process.stdout.write(JSON.stringify(dotenv.parse(fs.readFileSync(process.argv[2]))));";
    let output = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&module)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("these tests need Node.js (node on PATH; scripts/ensure-tools checks), and running it failed: {e}")
        });
    parsed_values("Node's dotenv", &output)
}

/// Exports the items `reads` accepts as one `.env` file (a value a parser misreads can spoil the
/// next line, so the others stay out) and checks `parser` reads every one back exactly.
/// Returns how many it checked.
fn check_dotenv_parser(
    name: &str,
    parser: fn(&str) -> BTreeMap<String, Option<String>>,
    reads: fn(&str) -> bool,
    items: &[Item],
) -> Result<usize, TestCaseError> {
    let readable: Vec<Item> = items
        .iter()
        .filter(|item| reads(&export::text_of(item)))
        .cloned()
        .collect();
    let text = export::dotenv(&readable).unwrap();
    let got = parser(&text);
    prop_assert_eq!(
        got.len(),
        readable.len(),
        "{} read the keys {:?} from\n{}",
        name,
        got.keys().collect::<Vec<_>>(),
        text
    );
    for item in &readable {
        let key = export::env_key(&item.path);
        prop_assert_eq!(
            got.get(&key).cloned().flatten(),
            Some(export::text_of(item)),
            "{} through {}; the file:\n{}",
            item.path.as_str(),
            name,
            text
        );
    }
    Ok(readable.len())
}

/// Values only the dotenv parsers find hard, on top of [`HOSTILE`].
const DOTENV_HOSTILE: &[&str] = &[
    "\\\\",
    "a\\\\b",
    "\\\\n",
    "C:\\path\\x",
    "\\$HOME",
    "${HOME:-fallback}",
    "${}",
    "${a:b}",
    "$${HOME}",
    "${unclosed",
    "$",
    "$$",
    "a$b",
    "\"\"",
    "\"x\"",
    "`",
    "''",
    "it's '' it's",
    "'it's'",
    "it's \"",
    "\u{b}\u{c}",
    "x #y",
    "#x",
    "it's #x",
    " it's\n# not a comment\nX='y'",
    "K=v\nL='w'",
    "export X='1'",
    "ends in a quote '",
    "'starts with a quote",
    "`backticks` \"and\" quotes",
    "it's\r",
    "end\\",
];

#[test]
fn dotenv_parsers_read_back_what_the_doc_says() {
    // Each parser gets a file without the values the module doc says it cannot read, and nothing
    // is asserted about those. They are, from HOSTILE, DOTENV_HOSTILE and the items below:
    // - for both parsers: a `'` with `"`, `$`, `` ` `` or `\`: "'\\''", "it's \\",
    //   "it's \\\\ two", "it's $HOME", "it's \"quoted\"", "it's `id`", "it's \"" and the
    //   object {"q": "it's"} (compact JSON has `"`); a carriage return: "crlf\r\nline\r\n", "\r",
    //   "it's\r\n", "it's\r"; a trailing `\`: "trailing backslash \\", "\\", "\\\\", "end\\";
    // - for python-dotenv also: what it takes for its variables, "${HOME}", "$${HOME}",
    //   "${HOME:-fallback}", "${}"; two backslashes in a row, "a\\\\b", "\\\\n".
    let mut items = items_of(HOSTILE);
    items.extend(
        DOTENV_HOSTILE
            .iter()
            .enumerate()
            .map(|(index, value)| item(&format!("/dotenv/v{index:03}"), json!(value), false)),
    );
    items.push(item("/rt/number", json!(-12.5), false));
    items.push(item("/rt/big", json!(1e300), false));
    items.push(item("/rt/bool", json!(true), false));
    items.push(item("/rt/null", json!(null), false));
    items.push(item(
        "/rt/object",
        json!({"q": "say \"hi\"\n", "n": [1, null]}),
        false,
    ));
    items.push(item("/rt/object-quote", json!({"q": "it's"}), false));
    items.push(item("/rt/object-dollar", json!({"q": "$x"}), false));
    items.push(item("/rt/secret", json!("it's a secret"), true));
    let python =
        check_dotenv_parser("python-dotenv", python_dotenv, python_dotenv_reads, &items).unwrap();
    let node =
        check_dotenv_parser("Node's dotenv", node_dotenv, node_dotenv_reads, &items).unwrap();
    // Most of them, the double-quoted ones among them.
    assert!(
        python > items.len() * 3 / 4,
        "python-dotenv read only {python}"
    );
    assert!(node > items.len() * 3 / 4, "Node's dotenv read only {node}");
    for double_quoted in ["it's", "it's\nmulti-line", "it's # not a comment", " it's "] {
        assert!(python_dotenv_reads(double_quoted) && node_dotenv_reads(double_quoted));
    }
}

proptest! {
    // Each case starts Python and Node once (about a quarter of a second); 32 keeps it short.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn dotenv_parsers_read_back_random_values(values in prop::collection::vec(hostile_string(), 1..10)) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let items = items_of(&values);
        check_dotenv_parser("python-dotenv", python_dotenv, python_dotenv_reads, &items)?;
        check_dotenv_parser("Node's dotenv", node_dotenv, node_dotenv_reads, &items)?;
    }
}

fn dns1123_subdomain() -> Regex {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
}

/// apimachinery's `IsConfigMapKey`.
fn assert_config_map_key(key: &str) {
    let format = Regex::new(r"^[-._a-zA-Z0-9]+$").unwrap();
    assert!(format.is_match(key), "{key:?}");
    assert!(key.len() <= 253, "{key:?}");
    assert!(
        key != "." && key != ".." && !key.starts_with(".."),
        "{key:?}"
    );
}

/// `yaml` parsed as a generic YAML value; its `data` as strings. Checks apiVersion, kind and
/// metadata.name on the way.
fn parse_object(
    yaml: &str,
    kind: &str,
    name: &str,
) -> (serde_yaml_ng::Value, BTreeMap<String, String>) {
    let object: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(object["apiVersion"].as_str(), Some("v1"));
    assert_eq!(object["kind"].as_str(), Some(kind));
    let parsed_name = object["metadata"]["name"].as_str().unwrap();
    assert_eq!(parsed_name, name);
    assert!(dns1123_subdomain().is_match(parsed_name) && parsed_name.len() <= 253);
    let data = object["data"]
        .as_mapping()
        .unwrap_or_else(|| panic!("data is not a mapping in\n{yaml}"))
        .iter()
        .map(|(key, value)| {
            let key = key.as_str().unwrap().to_owned();
            assert_config_map_key(&key);
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{key} is not a string in\n{yaml}"))
                .to_owned();
            (key, value)
        })
        .collect();
    (object, data)
}

fn expected_data(items: &[Item], secret: bool) -> BTreeMap<String, String> {
    items
        .iter()
        .filter(|i| i.secret == secret)
        .map(|i| (export::env_key(&i.path), export::text_of(i)))
        .collect()
}

fn check_config_map(name: &str, items: &[Item]) {
    let yaml = export::config_map(name, items).unwrap();
    let (object, data) = parse_object(&yaml, "ConfigMap", name);
    assert_eq!(data, expected_data(items, false), "in\n{yaml}");
    let omitted: Vec<String> = expected_data(items, true).into_keys().collect();
    let annotation = object["metadata"]["annotations"]["setpoint.dev/omitted-secret-keys"].as_str();
    if omitted.is_empty() {
        assert_eq!(object["metadata"].get("annotations"), None);
    } else {
        assert_eq!(annotation, Some(omitted.join(",").as_str()));
    }
}

#[test]
fn config_map_reads_back_hostile_values() {
    let mut items = items_of(HOSTILE);
    items.push(item("/rt/nul", json!("a\0b"), false));
    items.push(item("/rt/number", json!(8080), false));
    items.push(item("/rt/null", json!(null), false));
    items.push(item("/rt/object", json!({"a": [1, "it's"]}), false));
    items.push(item("/rt/secret-one", json!("hidden"), true));
    items.push(item("/rt/secret-two", json!("hidden too"), true));
    let name = export::resource_name(&ConfigPath::parse("/rt").unwrap(), None).unwrap();
    check_config_map(&name, &items);
    check_config_map("rt.example-1", &items[..HOSTILE.len()]);
}

/// The inverse of the exporter's base64 (standard alphabet, padded).
fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(text.len() % 4, 0, "{text:?} is not padded");
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().take_while(|c| *c != b'=') {
        let sextet = ALPHABET.iter().position(|a| *a == c).unwrap();
        bits = bits << 6 | u32::try_from(sextet).unwrap();
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from(bits >> count).unwrap());
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[test]
fn secret_reads_back_hostile_values() {
    let mut items: Vec<Item> = items_of(HOSTILE)
        .into_iter()
        .map(|i| Item { secret: true, ..i })
        .collect();
    items.push(item("/rt/plain", json!("not in the secret"), false));
    let yaml = export::secret("rt", &items).unwrap();
    let (object, data) = parse_object(&yaml, "Secret", "rt");
    assert_eq!(object["type"].as_str(), Some("Opaque"));
    let decoded: BTreeMap<String, String> = data
        .into_iter()
        .map(|(key, value)| (key, String::from_utf8(decode_base64(&value)).unwrap()))
        .collect();
    assert_eq!(decoded, expected_data(&items, true));
}

proptest! {
    #[test]
    fn config_map_reads_back_random_values(
        values in prop::collection::vec(any::<String>(), 1..8),
        hostile in prop::collection::vec(hostile_string(), 1..8),
    ) {
        let values: Vec<&str> = values.iter().chain(&hostile).map(String::as_str).collect();
        check_config_map("random", &items_of(&values));
    }
}

//! Golden files: a fixed bundle exported as `.env`, ConfigMap and Secret, compared byte for byte
//! with `tests/golden/`. `SETPOINT_BLESS=1` writes the files instead; review the diff before
//! committing it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::json;
use setpoint_core::export::{self, Item};
use setpoint_core::{ConfigPath, Format};

fn item(path: &str, format: Format, value: serde_json::Value, secret: bool) -> Item {
    Item {
        path: ConfigPath::parse(path).unwrap(),
        format,
        value,
        secret,
    }
}

/// One of everything the exporters must get right. Deliberately not in path order.
fn bundle() -> Vec<Item> {
    use Format::{Json, Text, Yaml};
    vec![
        item("/myapp/greeting", Json, json!("hello world"), false),
        item("/myapp/quoted", Json, json!(r#"say "hi""#), false),
        item("/myapp/apostrophe", Json, json!("it's"), false),
        item("/myapp/dollar", Json, json!("$HOME and ${USER}"), false),
        item("/myapp/hash", Json, json!("a # not a comment"), false),
        item(
            "/myapp/multi-line",
            Json,
            json!("line one\nline two\n"),
            false,
        ),
        item("/myapp/unicode", Json, json!("héllo 日本 🎉"), false),
        item("/myapp/padded", Json, json!("  spaces  "), false),
        item("/myapp/looks-like-bool", Json, json!("true"), false),
        item("/myapp/port", Json, json!(8080), false),
        item("/myapp/ratio", Json, json!(0.25), false),
        item("/myapp/enabled", Json, json!(true), false),
        item("/myapp/nothing", Json, json!(null), false),
        // Keys already sorted, so the text is the same with or without serde_json's
        // `preserve_order`.
        item(
            "/myapp/database.pool",
            Json,
            json!({"max": 10, "name": "main", "tags": ["a", "b"]}),
            false,
        ),
        // A YAML value's structured view: its source was `retries: 3\nbackoff: [1, 2]`.
        item(
            "/myapp/retry-policy",
            Yaml,
            json!({"backoff": [1, 2], "retries": 3}),
            false,
        ),
        item("/myapp/motd", Text, json!("Welcome!\n\tEnjoy.\n"), false),
        item("/myapp/db-password", Json, json!("s3cr'et $ecret"), true),
    ]
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check(name: &str, actual: &str) {
    let file = golden(name);
    if std::env::var_os("SETPOINT_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (SETPOINT_BLESS=1 writes it)", file.display()));
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        panic!(
            "{} differs from the export (SETPOINT_BLESS=1 rewrites it):\n{diff}",
            file.display()
        );
    }
}

fn name() -> String {
    export::resource_name(&ConfigPath::parse("/myapp").unwrap(), None).unwrap()
}

#[test]
fn dotenv() {
    check("bundle.env", &export::dotenv(&bundle()).unwrap());
}

#[test]
fn config_map() {
    check(
        "bundle.configmap.yaml",
        &export::config_map(&name(), &bundle()).unwrap(),
    );
}

#[test]
fn secret() {
    check(
        "bundle.secret.yaml",
        &export::secret(&name(), &bundle()).unwrap(),
    );
}

//! The exporters: `.env`, ConfigMap and Secret rendered from arbitrary items, and whole bundle
//! reads (`read::plan` → `render`) over arbitrary snapshots with an environment, overrides and
//! variables.
//!
//! Invariants: what renders reads back exactly — the `.env` as bash reads its quoting, the
//! Kubernetes objects through a YAML parser (Secret data base64-decoded) — with one key per
//! item in path order; a key collision fails every format alike; a derived object name is
//! always a valid one.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use setpoint_core::auth::Grants;
use setpoint_core::export::{self, ExportError, ExportFormat, Item};
use setpoint_core::read::{self, ReadQuery};
use setpoint_core::snapshot::{Entry, Snapshot};
use setpoint_core::{ConfigPath, Format, ParsedValue};
use setpoint_fuzz::{base64_decode, json, read_dotenv, text};

const SEGMENTS: &[&str] = &[
    "app",
    "db",
    "host",
    "a.b",
    "a-b",
    "a_b",
    "A",
    "1x",
    "x",
    "env",
    "prod",
    "_setpoint",
    "-",
    "..x",
];
const FORMATS: [Format; 3] = [Format::Json, Format::Yaml, Format::Text];
const EXPORTS: [ExportFormat; 5] = [
    ExportFormat::Json,
    ExportFormat::Yaml,
    ExportFormat::Dotenv,
    ExportFormat::ConfigMap,
    ExportFormat::Secret,
];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = if u.ratio(1, 2).unwrap_or(false) {
        items(&mut u)
    } else {
        bundle(&mut u)
    };
});

fn path(u: &mut Unstructured<'_>, min: usize) -> Result<Option<ConfigPath>> {
    let mut text = String::new();
    for _ in 0..u.int_in_range(min..=4)? {
        text.push('/');
        text.push_str(u.choose(SEGMENTS)?);
    }
    Ok(ConfigPath::parse(&text).ok())
}

/// The exporters called directly on items with any values.
fn items(u: &mut Unstructured<'_>) -> Result<()> {
    let mut items = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let Some(path) = path(u, 1)? else { continue };
        let format = *u.choose(&FORMATS)?;
        let value = match format {
            Format::Text => Value::String(text(u, 6)?),
            Format::Json | Format::Yaml => json(u, 2)?,
        };
        items.push(Item {
            path,
            format,
            value,
            secret: u.arbitrary()?,
        });
    }
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    // In path order (the `.env`); the Kubernetes objects' data is in key order.
    let expected = |wanted: &dyn Fn(&Item) -> bool| -> Vec<(String, String)> {
        sorted
            .iter()
            .filter(|item| wanted(item))
            .map(|item| (export::env_key(&item.path), export::text_of(item)))
            .collect()
    };
    let by_key = |mut pairs: Vec<(String, String)>| {
        pairs.sort();
        pairs
    };

    let dotenv = export::dotenv(&items);
    if let Ok(text) = &dotenv {
        assert_eq!(read_dotenv(text), Some(expected(&|_| true)), "{text:?}");
    }
    let config_map = export::config_map("setpoint", &items);
    if let Ok(yaml) = &config_map {
        let data = read_object(yaml, "ConfigMap", "setpoint");
        assert_eq!(data, by_key(expected(&|item| !item.secret)), "{yaml}");
    }
    let secret = export::secret("setpoint", &items);
    if let Ok(yaml) = &secret {
        let data: Vec<(String, String)> = read_object(yaml, "Secret", "setpoint")
            .into_iter()
            .map(|(key, encoded)| {
                let decoded = base64_decode(&encoded).expect("Secret data is base64");
                (
                    key,
                    String::from_utf8(decoded).expect("Secret data is the UTF-8 value"),
                )
            })
            .collect();
        assert_eq!(data, by_key(expected(&|item| item.secret)), "{yaml}");
    }
    let collides = |outcome: &std::result::Result<String, ExportError>| {
        matches!(outcome, Err(ExportError::KeyCollision { .. }))
    };
    assert_eq!(
        collides(&dotenv),
        collides(&config_map),
        "collision in one format only"
    );
    assert_eq!(
        collides(&dotenv),
        collides(&secret),
        "collision in one format only"
    );

    let prefix = path(u, 0)?.unwrap_or_else(ConfigPath::root);
    let requested = if u.arbitrary()? {
        Some(text(u, 3)?)
    } else {
        None
    };
    match export::resource_name(&prefix, requested.as_deref()) {
        Ok(name) => {
            if let Some(requested) = &requested {
                assert_eq!(&name, requested);
            }
            let rendered = export::config_map(&name, &[]).expect("a resource name is valid");
            read_object(&rendered, "ConfigMap", &name);
        }
        Err(error) => assert!(requested.is_some(), "derived name refused: {error}"),
    }
    Ok(())
}

/// A ConfigMap or Secret read back through a YAML parser: its `data` (in key order, as the
/// exporters write it).
fn read_object(yaml: &str, kind: &str, name: &str) -> Vec<(String, String)> {
    let object: Value = serde_yaml_ng::from_str(yaml).expect("the object is YAML");
    assert_eq!(object["apiVersion"], "v1", "{yaml}");
    assert_eq!(object["kind"], kind, "{yaml}");
    assert_eq!(object["metadata"]["name"], name, "{yaml}");
    let Some(data) = object["data"].as_object() else {
        panic!("no data map: {yaml}");
    };
    data.iter()
        .map(|(key, value)| {
            let value = value.as_str().expect("data values are strings");
            (key.clone(), value.to_owned())
        })
        .collect()
}

/// A whole bundle read over a snapshot: environment `prod` with variables, overrides under
/// `/env/prod`, secrets referenced and supplied.
fn bundle(u: &mut Unstructured<'_>) -> Result<()> {
    let mut entries = Vec::new();
    let definition = serde_json::json!({
        "variables": {"A": text(u, 3)?, "B": "${A}${A}", "HOST": "db.internal"}
    });
    if let (Ok(path), Ok(value)) = (
        ConfigPath::parse("/env/prod"),
        ParsedValue::from_request(definition, None),
    ) {
        entries.push(entry(path, value));
    }
    for _ in 0..u.int_in_range(0..=8)? {
        let Some(base) = path(u, 1)? else { continue };
        let path = if u.ratio(1, 3)? {
            match ConfigPath::parse(&format!("/env/prod{base}")) {
                Ok(path) => path,
                Err(_) => continue,
            }
        } else {
            base
        };
        let format = *u.choose(&FORMATS)?;
        let value = match format {
            Format::Json => json(u, 2)?,
            Format::Yaml | Format::Text => Value::String(text(u, 6)?),
        };
        if let Ok(value) = ParsedValue::from_request(value, Some(format)) {
            entries.push(entry(path, value));
        }
    }
    let snapshot = Snapshot::from_entries(7, entries);
    let prefix = path(u, 0)?.unwrap_or_else(ConfigPath::root);
    let format = *u.choose(&EXPORTS)?;
    let query = ReadQuery {
        env: if u.arbitrary()? {
            Some("prod".into())
        } else {
            None
        },
        resolve: u.arbitrary()?,
        explain: u.arbitrary()?,
        format: Some(format),
        name: if u.ratio(1, 4)? {
            Some(text(u, 2)?)
        } else {
            None
        },
    };
    let Ok(plan) = read::plan(&snapshot, &prefix, &query, &Grants::all()) else {
        return Ok(());
    };
    let secrets: BTreeMap<String, String> = plan
        .secret_names()
        .iter()
        .enumerate()
        .map(|(index, name)| (name.clone(), format!("s3cret\n'{index}\"")))
        .collect();
    let Ok(rendered) = plan.render(&secrets) else {
        return Ok(());
    };
    assert_eq!(rendered.content_type, format.content_type());
    let body = String::from_utf8(rendered.body).expect("a bundle is UTF-8");
    match format {
        ExportFormat::Json => {
            serde_json::from_str::<Value>(&body).expect("a JSON bundle parses");
        }
        ExportFormat::Yaml => {
            serde_yaml_ng::from_str::<Value>(&body).expect("a YAML bundle parses");
        }
        ExportFormat::Dotenv => {
            read_dotenv(&body).expect("a .env bundle reads back");
        }
        ExportFormat::ConfigMap | ExportFormat::Secret => {
            let object: Value = serde_yaml_ng::from_str(&body).expect("the object is YAML");
            assert!(object["data"].is_object(), "{body}");
        }
    }
    Ok(())
}

fn entry(path: ConfigPath, value: ParsedValue) -> Entry {
    Entry {
        path,
        value,
        version: 1,
        revision: 7,
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

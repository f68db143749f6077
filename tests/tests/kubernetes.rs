//! The writer's Kubernetes bundles checked by Kubernetes' own code: `tests/k8s-validate`, a small
//! Go program on `k8s.io/api` and `k8s.io/apimachinery`, decodes each exported ConfigMap and
//! Secret strictly (YAML 1.1, as kubectl does), applies the API server's ConfigMap and Secret
//! validation, and prints the data it decoded. Every value must come back exactly as written —
//! hostile strings, YAML 1.1 words, structured values and a secret resolved from a real OpenBao.
//!
//! Go must be installed (`scripts/ensure-tools` checks); without it these tests fail, they never
//! skip. The Go module's dependencies come from the module cache or the Go module proxy.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use reqwest::StatusCode;
use serde_json::{Value, json};
use setpoint_secrets::serve::SecretAccess;
use setpoint_secrets::{SecretValue, Vault, VaultAuth, VaultConfig};
use setpoint_tests::bao::BaoServer;
use setpoint_tests::writer::{Backend, TestWriter};
use setpoint_writer::WriterConfig;

/// Builds `tests/k8s-validate` once per test process, into Cargo's temporary target directory.
fn validator() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s-validate");
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-validate");
        // go.sum is committed: a build that would change go.mod or go.sum fails instead.
        let flags = match std::env::var("GOFLAGS") {
            Ok(existing) if !existing.trim().is_empty() => {
                format!("{existing} -mod=readonly -buildvcs=false")
            }
            _ => "-mod=readonly -buildvcs=false".to_owned(),
        };
        let output = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .env("GOFLAGS", flags)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need Go (`go` on PATH; scripts/ensure-tools checks for it), \
                     and running it failed: {e}"
                )
            });
        assert!(
            output.status.success(),
            "go build in {} failed ({}):\n{}{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// Runs the validator on `yaml` (written to a file, as `kubectl apply -f` would read it).
fn validate(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.yaml");
    std::fs::write(&file, yaml).unwrap();
    Command::new(validator())
        .arg(&file)
        .output()
        .expect("run the k8s-validate binary just built")
}

/// What the validator decoded from a valid object.
#[derive(Debug)]
struct Decoded {
    kind: String,
    name: String,
    annotations: BTreeMap<String, String>,
    data: BTreeMap<String, String>,
}

/// Validates `yaml` and returns what it holds; panics with the validator's messages if
/// Kubernetes would refuse it.
fn decode(yaml: &str) -> Decoded {
    let output = validate(yaml);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "Kubernetes' validation refuses the export ({}):\n{}\nthe object:\n{yaml}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the validator's output is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let text = |field: &str| printed[field].as_str().unwrap().to_owned();
    let strings = |field: &str| -> BTreeMap<String, String> {
        printed[field]
            .as_object()
            .unwrap_or_else(|| panic!("no {field} object in {printed}"))
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_owned()))
            .collect()
    };
    Decoded {
        kind: text("kind"),
        name: text("name"),
        annotations: strings("annotations"),
        data: strings("data"),
    }
}

/// `(path segment, value as written, value as exported)`.
fn hostile_values() -> Vec<(&'static str, Value, String)> {
    let text = |name: &'static str, value: &str| (name, json!(value), value.to_owned());
    let mut values = vec![
        text("apostrophe", "it's"),
        text("quotes", r#"say "hi" and 'bye'"#),
        text("dollar", "$HOME $(id) `id` $1 $"),
        text("hash", "a # not a comment"),
        text("hash-first", "#start"),
        text("backslash", r"C:\path\ and \n \\ \"),
        text("newlines", "line one\nline two\n"),
        text("only-newline", "\n"),
        text("crlf", "crlf\r\nline\r\n"),
        text("cr", "\r"),
        text("apostrophe-cr", "it's\r\nthere\r"),
        text("tabs", "\ttab\there\t"),
        text("unicode", "héllo ünïcödé 日本語 Ωμέγα"),
        text("emoji", "🎉👍🏽👨‍👩‍👧"),
        text("controls", "\u{1}\u{7}\u{1b}[0m\u{7f}"),
        text("line-separators", "a\u{85}b\u{2028}c\u{2029}d"),
        text("bom", "\u{feff}bom"),
        text("leading-spaces", "   leading"),
        text("trailing-spaces", "trailing   "),
        text("padded", "  both  "),
        text("space", " "),
        text("empty", ""),
        text("yaml-on", "on"),
        text("yaml-off", "off"),
        text("yaml-yes", "yes"),
        text("yaml-no", "no"),
        text("yaml-y", "y"),
        text("yaml-n", "n"),
        text("yaml-upper-yes", "YES"),
        text("yaml-tilde", "~"),
        text("yaml-null", "null"),
        text("yaml-true", "true"),
        text("yaml-underscore", "1_000"),
        text("yaml-hex", "0x1F"),
        text("yaml-octal", "0755"),
        text("yaml-float", "1e3"),
        text("yaml-inf", ".inf"),
        text("yaml-nan", ".NaN"),
        text("yaml-sexagesimal", "12:30:00"),
        text("yaml-date", "2001-12-14"),
        text("yaml-dash", "- item"),
        text("yaml-mapping", "key: value"),
        text("yaml-flow-map", "{a: 1}"),
        text("yaml-flow-seq", "[1, 2]"),
        text("yaml-anchor", "&anchor"),
        text("yaml-alias", "*alias"),
        text("yaml-tag", "!!binary"),
        text("yaml-directive", "%YAML 1.1"),
        text("yaml-document", "---"),
        text("yaml-end", "..."),
        text("yaml-block", "|\n  literal"),
        text("yaml-question", "? x"),
        text("at", "@at"),
        text("percent", "%s %n %%"),
        text("long", &"x".repeat(10_000)),
    ];
    // `$${…}` is the escape for a literal `${…}`.
    values.push(("escaped-reference", json!("$${HOME}"), "${HOME}".to_owned()));
    // Structured values export as compact JSON, numbers and booleans as their JSON text.
    let object = json!({"name": "it's \"x\"", "on": true, "tags": ["a", null], "n": 1.5});
    values.push(("object", object.clone(), object.to_string()));
    values.push(("array", json!([1, "two", null]), r#"[1,"two",null]"#.into()));
    values.push(("number", json!(8080), "8080".into()));
    values.push(("negative", json!(-12.5), "-12.5".into()));
    values.push(("huge", json!(1e300), "1e+300".into()));
    values.push(("zero", json!(0), "0".into()));
    values.push(("yes-bool", json!(true), "true".into()));
    values.push(("no-bool", json!(false), "false".into()));
    values.push(("nothing", json!(null), String::new()));
    values
}

/// A secret value hostile to every format it passes through.
const SECRET: &str = "pa$$'w\"rd #1\n\ttab \\ `id` ${HOME}\r\non 🎉 ";

/// `/k8s/{segment}` → `K8S_{SEGMENT}`.
fn key(segment: &str) -> String {
    format!("K8S_{}", segment.to_uppercase().replace('-', "_"))
}

async fn put(w: &TestWriter, path: &str, value: &Value) {
    let response = w
        .http
        .put(w.config_url(path))
        .body(json!({ "value": value }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "PUT {path}: {status}: {body}");
}

async fn get_text(w: &TestWriter, path_and_query: &str) -> String {
    let response = w
        .http
        .get(w.config_url(path_and_query))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path_and_query}: {body}");
    body
}

/// A writer on the embedded store that resolves `${secret:…}` from `bao` with its root token.
async fn writer_with_secrets(backend: &Backend, bao: &BaoServer) -> TestWriter {
    let vault = Vault::new(VaultConfig::new(
        bao.address(),
        VaultAuth::Token(SecretValue::new(bao.root_token().to_owned())),
    ))
    .expect("a valid Vault configuration");
    let mut config = WriterConfig::new(backend.spec());
    config.secrets = SecretAccess {
        provider: Arc::new(vault),
        allowed: true,
    };
    TestWriter::start_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_config_maps_and_secrets_pass_kubernetes_validation_exactly() {
    // Build first: a missing Go fails here, before anything is started.
    validator();
    let bao = BaoServer::start();
    bao.put_secret(
        "setpoint/prod/db-password",
        json!({ "value": SECRET, "user": "on" }),
    )
    .await;
    let backend = Backend::embedded();
    let w = writer_with_secrets(&backend, &bao).await;

    let mut config_map = BTreeMap::new();
    for (segment, written, exported) in hostile_values() {
        put(&w, &format!("/k8s/{segment}"), &written).await;
        config_map.insert(key(segment), exported);
    }
    // A prod override, so the export is of the resolved values.
    put(&w, "/env/prod/k8s/number", &json!(443)).await;
    config_map.insert(key("number"), "443".into());

    // Secret-bearing items: a whole value, one inside text, one in a structured value, a field.
    put(&w, "/k8s/db-password", &json!("${secret:db-password}")).await;
    put(
        &w,
        "/k8s/dsn",
        &json!("postgres://app:${secret:db-password}@db/x"),
    )
    .await;
    let credentials = json!({"user": "app", "password": "${secret:db-password}", "port": 5432});
    put(&w, "/k8s/credentials", &credentials).await;
    put(&w, "/k8s/db-user", &json!("${secret:db-password#user}")).await;
    let resolved_credentials = json!({"user": "app", "password": SECRET, "port": 5432});
    let secret: BTreeMap<String, String> = [
        (key("db-password"), SECRET.to_owned()),
        (key("dsn"), format!("postgres://app:{SECRET}@db/x")),
        (key("credentials"), resolved_credentials.to_string()),
        (key("db-user"), "on".to_owned()),
    ]
    .into_iter()
    .collect();

    // The ConfigMap: every plain value exactly, the secrets left out and named.
    let yaml = get_text(&w, "/k8s?env=prod&format=k8s-configmap").await;
    let decoded = decode(&yaml);
    assert_eq!(decoded.kind, "ConfigMap");
    assert_eq!(decoded.name, "k8s");
    assert_eq!(decoded.data.len(), config_map.len(), "{yaml}");
    for (key, expected) in &config_map {
        assert_eq!(
            decoded.data.get(key),
            Some(expected),
            "{key} did not survive Kubernetes' decoding:\n{yaml}"
        );
    }
    assert_eq!(decoded.data, config_map);
    let omitted: Vec<&str> = secret.keys().map(String::as_str).collect();
    assert_eq!(
        decoded.annotations,
        BTreeMap::from([(
            "setpoint.dev/omitted-secret-keys".to_owned(),
            omitted.join(",")
        )])
    );
    assert!(!yaml.contains("pa$$"), "a secret leaked into\n{yaml}");

    // The Secret: the resolved secret values exactly, base64-decoded by Kubernetes' types.
    let yaml = get_text(&w, "/k8s?env=prod&format=k8s-secret").await;
    let decoded = decode(&yaml);
    assert_eq!(decoded.kind, "Secret");
    assert_eq!(decoded.name, "k8s");
    assert!(decoded.annotations.is_empty(), "{yaml}");
    assert_eq!(decoded.data, secret, "in\n{yaml}");

    // A requested name, and the base values (no environment) too.
    let yaml = get_text(&w, "/k8s?format=k8s-configmap&name=web.config-1").await;
    let decoded = decode(&yaml);
    assert_eq!(decoded.name, "web.config-1");
    assert_eq!(decoded.data[&key("number")], "8080");
    let yaml = get_text(&w, "/k8s?env=prod&format=k8s-secret&name=app-secrets").await;
    assert_eq!(decode(&yaml).name, "app-secrets");

    w.stop().await;
}

#[test]
fn the_validator_refuses_what_kubernetes_refuses() {
    // A bad name and a bad key: both reported, and the exit status says so.
    let invalid = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"Not_Valid\"\ndata:\n  \"a/b\": \"x\"\n";
    let output = validate(invalid);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted:\n{invalid}");
    assert!(stderr.contains("metadata.name"), "{stderr}");
    assert!(stderr.contains("Not_Valid"), "{stderr}");
    assert!(stderr.contains("data[a/b]"), "{stderr}");
    assert!(output.stdout.is_empty());

    // Over the API server's 1 MiB, an unknown field, a wrong apiVersion, a key that is `..`,
    // a Secret whose data is not base64.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  A: \"{}\"\n",
        "x".repeat(1024 * 1024 + 1)
    );
    let refused = [
        big.as_str(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\nextra: 1\ndata: {}\n",
        "apiVersion: apps/v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  \"..\": \"x\"\n",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\ntype: Opaque\ndata:\n  A: \"not base64!\"\n",
        "apiVersion: v1\nkind: Deployment\nmetadata:\n  name: a\n",
    ];
    for yaml in refused {
        let output = validate(yaml);
        assert!(
            !output.status.success() && !output.stderr.is_empty(),
            "accepted:\n{}",
            &yaml[..yaml.len().min(300)]
        );
    }

    // Exactly 1 MiB is fine.
    let full = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: full\ndata:\n  A: \"{}\"\n",
        "x".repeat(1024 * 1024)
    );
    assert_eq!(decode(&full).data["A"].len(), 1024 * 1024);

    // Why every scalar is double-quoted: Kubernetes' YAML 1.1 reads bare words as other values,
    // and the object is still valid, so only an exact comparison notices.
    let bare = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bare\ndata:\n  A: on\n  B: 0x1F\n  C: 1_000\n  D: ~\n";
    let decoded = decode(bare);
    assert_eq!(decoded.data["A"], "true");
    assert_eq!(decoded.data["B"], "31");
    assert_eq!(decoded.data["C"], "1000");
    assert_eq!(decoded.data["D"], "");
}

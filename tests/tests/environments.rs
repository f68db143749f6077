//! Environments end to end over the writer's REST API, on both stores: the environments API and
//! its hierarchy rules, override resolution over three levels, provenance, `${VAR}`
//! substitution, prefix resolution and bundles (the `.env` sourced by a real bash, the
//! ConfigMap parsed back), and secret references refused where secrets may not be read.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use setpoint_secrets::NoSecrets;
use setpoint_secrets::serve::SecretAccess;
use setpoint_tests::writer::{Backend, TestWriter};
use setpoint_writer::WriterConfig;

setpoint_tests::both_stores!(
    environments_api_keeps_the_hierarchy_valid,
    overrides_resolve_over_three_levels,
    variables_substitute_with_defaults_escapes_and_errors,
    bundles_round_trip_hostile_values,
    secret_references_are_refused_without_permission,
    reads_see_the_callers_own_writes,
);

async fn send(
    w: &TestWriter,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = w.http.request(method, url);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put(w: &TestWriter, path: &str, value: Value) -> (StatusCode, Value) {
    send(
        w,
        reqwest::Method::PUT,
        &w.config_url(path),
        Some(json!({ "value": value })),
    )
    .await
}

async fn get(w: &TestWriter, path_and_query: &str) -> (StatusCode, Value) {
    send(w, reqwest::Method::GET, &w.config_url(path_and_query), None).await
}

async fn get_text(w: &TestWriter, path_and_query: &str) -> (StatusCode, String, String) {
    let response = w
        .http
        .get(w.config_url(path_and_query))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

async fn put_env(w: &TestWriter, name: &str, body: Value) -> (StatusCode, Value) {
    send(
        w,
        reqwest::Method::PUT,
        &w.url(&format!("/api/environments/{name}")),
        Some(body),
    )
    .await
}

async fn delete_env(w: &TestWriter, name: &str) -> (StatusCode, Value) {
    let url = w.url(&format!("/api/environments/{name}"));
    send(w, reqwest::Method::DELETE, &url, None).await
}

async fn ok(result: (StatusCode, Value)) -> Value {
    let (status, body) = result;
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// base → prod → prod-eu → prod-eu-1.
async fn three_levels(w: &TestWriter) {
    ok(put_env(w, "prod", json!({"description": "production", "variables": {"DB_HOST": "prod-db.internal", "REGION": "global"}})).await).await;
    ok(put_env(
        w,
        "prod-eu",
        json!({"parent": "prod", "variables": {"REGION": "eu"}}),
    )
    .await)
    .await;
    ok(put_env(w, "prod-eu-1", json!({"parent": "prod-eu"})).await).await;
}

async fn environments_api_keeps_the_hierarchy_valid(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    let (_, all) = send(&w, reqwest::Method::GET, &w.url("/api/environments"), None).await;
    let names: Vec<&str> = all["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "prod", "staging"], "defaults exist: {all}");

    three_levels(&w).await;
    let (status, eu) = send(
        &w,
        reqwest::Method::GET,
        &w.url("/api/environments/prod-eu"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(eu["parent"], "prod");
    assert_eq!(eu["variables"], json!({"REGION": "eu"}));

    // A cycle, an unknown parent, bad variable names, unknown fields, bad names.
    let (status, body) = put_env(&w, "prod", json!({"parent": "prod-eu-1"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("prod → prod-eu-1 → prod-eu → prod"),
        "{message}"
    );
    let (status, body) = put_env(&w, "qa", json!({"parent": "nope"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    let (status, _) = put_env(&w, "qa", json!({"variables": {"1X": "a"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = put_env(&w, "qa", json!({"colour": "red"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = put_env(&w, "qa", json!(["not", "an", "object"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = put_env(&w, "bad%20name", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(
        &w,
        reqwest::Method::GET,
        &w.url("/api/environments/qa"),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of the refused writes was stored"
    );

    // Definitions are written only through the environments API.
    let (status, body) = put(&w, "/env/prod", json!({"parent": "prod-eu"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Overrides need an existing environment.
    let (status, body) = put(&w, "/env/nope/app/x", json!(1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("environment nope does not exist")
    );

    // Deleting: not while another inherits from it, not while it holds overrides.
    let (status, body) = delete_env(&w, "prod").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prod-eu")
    );
    ok(put(&w, "/env/prod-eu-1/app/x", json!(1)).await).await;
    let (status, body) = delete_env(&w, "prod-eu-1").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    ok(send(
        &w,
        reqwest::Method::DELETE,
        &w.config_url("/env/prod-eu-1/app/x"),
        None,
    )
    .await)
    .await;
    ok(delete_env(&w, "prod-eu-1").await).await;
    let (status, _) = delete_env(&w, "prod-eu-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A definition is a versioned entry: its history shows every change.
    ok(put_env(
        &w,
        "prod-eu",
        json!({"parent": "prod", "variables": {"REGION": "eu-west"}}),
    )
    .await)
    .await;
    let (_, history) = get(&w, "/env/prod-eu/history").await;
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);
}

async fn overrides_resolve_over_three_levels(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    three_levels(&w).await;
    ok(put(&w, "/app/db", json!({"host": "localhost", "pool": {"min": 1, "max": 5}, "tags": ["a", "b"], "debug": true})).await).await;
    ok(put(
        &w,
        "/env/prod/app/db",
        json!({"host": "prod-db", "pool": {"max": 50}}),
    )
    .await)
    .await;
    ok(put(
        &w,
        "/env/prod-eu/app/db",
        json!({"pool": {"min": 2}, "tags": ["eu"], "debug": null}),
    )
    .await)
    .await;
    ok(put(&w, "/app/timeout", json!(30)).await).await;
    ok(put(&w, "/env/prod-eu-1/app/timeout", json!(5)).await).await;
    ok(put(&w, "/app/feature", json!("on")).await).await;
    ok(put(&w, "/env/staging/app/feature", Value::Null).await).await;
    ok(put(&w, "/env/prod/app/only-in-prod", json!("p")).await).await;

    let value = |env: &'static str, path: &'static str| {
        let w = &w;
        async move {
            let (status, body) = get(w, &format!("{path}?env={env}")).await;
            assert_eq!(status, StatusCode::OK, "{path} in {env}: {body}");
            body["value"].clone()
        }
    };
    // Side by side: every environment answers from the same data.
    assert_eq!(
        value("dev", "/app/db").await,
        json!({"host": "localhost", "pool": {"min": 1, "max": 5}, "tags": ["a", "b"], "debug": true})
    );
    assert_eq!(
        value("prod", "/app/db").await,
        json!({"host": "prod-db", "pool": {"min": 1, "max": 50}, "tags": ["a", "b"], "debug": true})
    );
    assert_eq!(
        value("prod-eu", "/app/db").await,
        json!({"host": "prod-db", "pool": {"min": 2, "max": 50}, "tags": ["eu"]})
    );
    assert_eq!(
        value("prod-eu-1", "/app/db").await,
        json!({"host": "prod-db", "pool": {"min": 2, "max": 50}, "tags": ["eu"]})
    );
    assert_eq!(value("prod-eu-1", "/app/timeout").await, json!(5));
    assert_eq!(value("prod-eu", "/app/timeout").await, json!(30));
    assert_eq!(value("dev", "/app/feature").await, json!("on"));
    let (status, _) = get(&w, "/app/feature?env=staging").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a null override removes the path in staging"
    );
    assert_eq!(value("prod-eu-1", "/app/only-in-prod").await, json!("p"));
    let (status, _) = get(&w, "/app/only-in-prod?env=dev").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The entry names the most specific layer; explain names every key's source.
    let (_, entry) = get(&w, "/app/db?env=prod-eu&explain=true").await;
    assert_eq!(entry["environment"], "prod-eu");
    assert_eq!(entry["source"], "/env/prod-eu/app/db");
    let provenance = &entry["provenance"];
    assert_eq!(
        provenance["/host"]["path"], "/env/prod/app/db",
        "{provenance}"
    );
    assert_eq!(provenance["/pool/min"]["path"], "/env/prod-eu/app/db");
    assert_eq!(provenance["/pool/max"]["path"], "/env/prod/app/db");
    assert_eq!(provenance["/tags"]["path"], "/env/prod-eu/app/db");
    assert_eq!(provenance["/host"]["version"], 1);
    assert!(provenance.get("/debug").is_none(), "{provenance}");
    let (_, base) = get(&w, "/app/db?explain=true").await;
    assert_eq!(base["provenance"]["/debug"]["path"], "/app/db");

    // Children of a prefix in an environment include paths that exist only as overrides.
    let (_, children) = get(&w, "/app?env=prod").await;
    assert_eq!(
        children["children"],
        json!(["db", "feature", "only-in-prod", "timeout"])
    );
    // Errors: unknown environment, an /env path with env.
    let (status, body) = get(&w, "/app/db?env=qa").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(&w, "/env/prod/app/db?env=prod").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The raw override is still readable as itself.
    let (_, raw) = get(&w, "/env/prod/app/db").await;
    assert_eq!(
        raw["value"],
        json!({"host": "prod-db", "pool": {"max": 50}})
    );
}

async fn variables_substitute_with_defaults_escapes_and_errors(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    three_levels(&w).await;
    ok(put_env(&w, "prod-eu", json!({"parent": "prod", "variables": {"REGION": "eu", "URL": "postgres://${DB_HOST}:${PORT:5432}/${REGION}"}})).await).await;
    ok(put(&w, "/svc/url", json!("${URL}")).await).await;
    ok(put(&w, "/svc/literal", json!("$${NOT_A_VAR} and $$ and $5")).await).await;
    ok(put(
        &w,
        "/svc/conf",
        json!({"region": "${REGION}", "port": "${PORT:8080}", "list": ["${REGION:none}"]}),
    )
    .await)
    .await;

    let (status, url) = get(&w, "/svc/url?env=prod-eu-1&resolve=true").await;
    assert_eq!(status, StatusCode::OK, "{url}");
    assert_eq!(url["value"], "postgres://prod-db.internal:5432/eu");
    assert_eq!(url["resolved"], true);
    let (_, raw) = get(&w, "/svc/url?env=prod-eu-1").await;
    assert_eq!(
        raw["value"], "${URL}",
        "without resolve the reference shows"
    );
    let (_, literal) = get(&w, "/svc/literal?env=prod&resolve=true").await;
    assert_eq!(literal["value"], "${NOT_A_VAR} and $$ and $5");
    let (_, conf) = get(&w, "/svc/conf?env=prod-eu&resolve=true").await;
    assert_eq!(
        conf["value"],
        json!({"region": "eu", "port": "8080", "list": ["eu"]})
    );

    // dev has no REGION: a 422 naming the variable and where it is used.
    let (status, body) = get(&w, "/svc?env=dev&resolve=true").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "resolution_failed");
    let problems = body["error"]["details"]["problems"].as_array().unwrap();
    let references: Vec<&str> = problems
        .iter()
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    assert!(references.contains(&"${REGION}"), "{body}");
    assert!(references.contains(&"${URL}"), "{body}");
    assert!(
        problems
            .iter()
            .any(|p| p["location"] == "/svc/conf#/region"),
        "{body}"
    );

    // The prefix as one object of resolved values.
    let (status, tree) = get(&w, "/svc?env=prod-eu&resolve=true").await;
    assert_eq!(status, StatusCode::OK, "{tree}");
    assert_eq!(
        tree,
        json!({
            "conf": {"region": "eu", "port": "8080", "list": ["eu"]},
            "literal": "${NOT_A_VAR} and $$ and $5",
            "url": "postgres://prod-db.internal:5432/eu",
        })
    );

    // Cycles are named.
    ok(put_env(
        &w,
        "staging",
        json!({"variables": {"A": "${B}", "B": "x${A}"}}),
    )
    .await)
    .await;
    ok(put(&w, "/loop/v", json!("${A}")).await).await;
    let (status, body) = get(&w, "/loop/v?env=staging&resolve=true").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("cycle"), "{text}");
    assert!(
        text.contains("A → B → A") || text.contains("B → A → B"),
        "{text}"
    );
}

/// Values a shell and YAML parser must carry exactly, as stored and as exported (`$${…}` is
/// the escape for a literal `${…}`).
fn hostile_values() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "dollar",
            "$HOME $${HOME} $(id) `id`",
            "$HOME ${HOME} $(id) `id`",
        ),
        ("quote", "it's \"quoted\"", "it's \"quoted\""),
        ("hash", "a # not a comment", "a # not a comment"),
        (
            "newlines",
            "line one\nline two\r\nthree\n",
            "line one\nline two\r\nthree\n",
        ),
        ("unicode", "héllo 日本 🎉", "héllo 日本 🎉"),
        ("backslash", "C:\\path\\ and \\n", "C:\\path\\ and \\n"),
        ("spaces", "  padded  ", "  padded  "),
        ("yes", "on", "on"),
        ("empty", "", ""),
        ("bang", "!important * ~ ?", "!important * ~ ?"),
    ]
}

async fn bundles_round_trip_hostile_values(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    for (name, value, _) in hostile_values() {
        ok(put(&w, &format!("/myapp/{name}"), json!(value)).await).await;
    }
    ok(put(&w, "/myapp/pool", json!({"max": 10})).await).await;
    ok(put(&w, "/myapp/port", json!(8080)).await).await;
    ok(put(&w, "/env/prod/myapp/port", json!(443)).await).await;

    // .env, sourced by a real bash.
    let (status, content_type, dotenv) = get_text(&w, "/myapp?env=prod&format=dotenv").await;
    assert_eq!(status, StatusCode::OK, "{dotenv}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.env");
    std::fs::write(&file, &dotenv).unwrap();
    let mut expected: Vec<(String, String)> = hostile_values()
        .into_iter()
        .map(|(name, _, exported)| {
            (
                format!("MYAPP_{}", name.to_uppercase()),
                exported.to_owned(),
            )
        })
        .collect();
    expected.push(("MYAPP_POOL".into(), r#"{"max":10}"#.into()));
    expected.push(("MYAPP_PORT".into(), "443".into()));
    let script = expected
        .iter()
        .map(|(key, _)| format!("printf '%s\\0' \"${key}\""))
        .collect::<Vec<_>>()
        .join("; ");
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -eu; source '{}'; {script}", file.display()))
        .env_clear()
        .output()
        .expect("bash must be installed: the .env round trip runs through it");
    assert!(
        output.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read_back: Vec<String> = output
        .stdout
        .split(|b| *b == 0)
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    for (index, (key, value)) in expected.iter().enumerate() {
        assert_eq!(
            &read_back[index], value,
            "{key} did not survive bash's source:\n{dotenv}"
        );
    }

    // A ConfigMap, parsed back.
    let (status, content_type, yaml) = get_text(&w, "/myapp?env=prod&format=k8s-configmap").await;
    assert_eq!(status, StatusCode::OK, "{yaml}");
    assert_eq!(content_type, "application/yaml");
    let parsed: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(parsed["apiVersion"], "v1");
    assert_eq!(parsed["kind"], "ConfigMap");
    assert_eq!(parsed["metadata"]["name"], "myapp");
    for (key, value) in &expected {
        assert_eq!(
            parsed["data"][key].as_str(),
            Some(value.as_str()),
            "{key} in\n{yaml}"
        );
    }
    let (_, _, named) = get_text(&w, "/myapp?format=k8s-configmap&name=web.config").await;
    assert!(named.contains("name: \"web.config\""), "{named}");
    let (status, _, _) = get_text(&w, "/myapp?format=k8s-configmap&name=Not_Valid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // JSON and YAML bundles: the resolved tree.
    let (_, content_type, text) = get_text(&w, "/myapp?env=prod&format=json").await;
    assert_eq!(content_type, "application/json");
    let tree: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tree["port"], 443);
    assert_eq!(tree["pool"], json!({"max": 10}));
    assert_eq!(tree["newlines"], "line one\nline two\r\nthree\n");
    let (_, _, text) = get_text(&w, "/myapp?env=prod&format=yaml").await;
    let from_yaml: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(from_yaml, tree);

    // Unknown formats and empty prefixes.
    let (status, _, _) = get_text(&w, "/myapp?format=toml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get_text(&w, "/nothing?format=dotenv").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn secret_references_are_refused_without_permission(backend: Backend) {
    let mut config = WriterConfig::new(backend.spec());
    config.secrets = SecretAccess {
        provider: Arc::new(NoSecrets),
        allowed: true,
    };
    let w = TestWriter::start_with(config).await;
    ok(put(&w, "/myapp/database/host", json!("db")).await).await;
    ok(put(
        &w,
        "/myapp/database/password",
        json!("${secret:db-password}"),
    )
    .await)
    .await;
    // An account that may read /myapp in prod (the base path and prod's layer) but not its
    // secrets.
    let (status, created) = send(
        &w,
        reqwest::Method::POST,
        &w.url("/api/accounts"),
        Some(json!({"id": "reader", "grants": [
            {"prefix": "/myapp", "actions": ["read"]},
            {"prefix": "/env/prod/myapp", "actions": ["read"]},
        ]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reader = setpoint_tests::writer::client_with_key(created["key"].as_str().unwrap());
    let read = |url: String| {
        let reader = reader.clone();
        async move {
            let response = reader.get(url).send().await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    };

    let (status, body) = read(w.config_url("/myapp/database?env=prod&resolve=true")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("secrets:read") && body.contains("/myapp/database/password"),
        "{body}"
    );
    // The raw read shows the reference; the ConfigMap leaves the secret out and says so.
    let (_, raw) = read(w.config_url("/myapp/database/password?env=prod")).await;
    assert!(raw.contains("${secret:db-password}"), "{raw}");
    let (status, yaml) = read(w.config_url("/myapp?env=prod&format=k8s-configmap")).await;
    assert_eq!(status, StatusCode::OK, "{yaml}");
    assert!(yaml.contains("\"MYAPP_DATABASE_HOST\": \"db\""), "{yaml}");
    assert!(!yaml.contains("\"MYAPP_DATABASE_PASSWORD\":"), "{yaml}");
    assert!(
        yaml.contains("setpoint.dev/omitted-secret-keys\": \"MYAPP_DATABASE_PASSWORD\""),
        "{yaml}"
    );
    let (status, _) = read(w.config_url("/myapp?env=prod&format=k8s-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = read(w.config_url("/myapp?env=prod&format=dotenv")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // With secrets:read (the admin) but no provider: a 422 that names the reference.
    let (status, body) = get(&w, "/myapp/database?env=prod&resolve=true").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no secret provider"),
        "{body}"
    );
}

async fn reads_see_the_callers_own_writes(backend: Backend) {
    let w = TestWriter::start(&backend).await;
    for i in 0..20 {
        ok(put(&w, "/rw/value", json!(i)).await).await;
        let (status, body) = get(&w, "/rw/value?env=dev").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["value"], i, "read {i} right after writing it");
    }
}

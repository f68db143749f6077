//! Secrets end to end with the real binary and a real OpenBao: the seed's Ticket 2 demo run
//! verbatim with curl against `setpoint dev --secrets vault`, the same answers from the edge over
//! HTTP and gRPC (`Resolve`, `Export`), and proof that the secret's value appears nowhere it must
//! not: not in the process log (at debug level), history, raw reads, SSE events, error bodies,
//! metrics or the ConfigMap.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use setpoint_proto::edge::v1::edge_client::EdgeClient;
use setpoint_proto::edge::v1::{ExportRequest, ResolveRequest};
use setpoint_tests::bao::BaoServer;
use setpoint_tests::binary::SetpointProcess;
use setpoint_tests::sse::SseWatcher;

/// Distinctive enough that finding it anywhere is a leak, not a coincidence.
const SECRET: &str = "actual-secret-value-7f3a9c";

fn curl_text(args: &[&str]) -> String {
    let output = Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .expect("curl must be installed (scripts/ensure-tools installs it)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn curl(args: &[&str]) -> Value {
    let text = curl_text(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("curl {args:?}: not JSON ({e}): {text}"))
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the secret's value leaked into {what}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_2_demo_resolves_secrets_from_openbao_and_leaks_them_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let bao = BaoServer::start();
    bao.put_secret("setpoint/prod/db-password", json!({ "value": SECRET }))
        .await;
    let token_file = dir.path().join("vault-token");
    std::fs::write(&token_file, bao.root_token()).unwrap();
    let data = dir.path().join("data");
    let dev = SetpointProcess::start(
        &[
            "--log",
            "debug",
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--secrets",
            "vault",
            "--vault-addr",
            &bao.address(),
            "--vault-token-file",
            token_file.to_str().unwrap(),
        ],
        dir.path(),
    )
    .await;
    let base = dev.base();
    let watcher = SseWatcher::start(format!("{base}/api/config/myapp?watch=true"));
    assert!(
        setpoint_tests::wait_until(Duration::from_secs(10), || async { watcher.connects() > 0 })
            .await
    );

    // The seed's Ticket 2 demo, verbatim but for host:port.
    curl(&[
        "-X",
        "PUT",
        &format!("{base}/api/config/myapp/database/host"),
        "-d",
        r#"{"value": "localhost"}"#,
    ]);
    curl(&[
        "-X",
        "PUT",
        &format!("{base}/api/config/env/prod/myapp/database/host"),
        "-d",
        r#"{"value": "prod-db.internal"}"#,
    ]);
    let dev_host = curl(&[&format!("{base}/api/config/myapp/database/host?env=dev")]);
    assert_eq!(dev_host["value"], "localhost");
    let prod_host = curl(&[&format!("{base}/api/config/myapp/database/host?env=prod")]);
    assert_eq!(prod_host["value"], "prod-db.internal");
    let password = curl(&[
        "-X",
        "PUT",
        &format!("{base}/api/config/myapp/database/password"),
        "-d",
        r#"{"value": "${secret:db-password}"}"#,
    ]);
    let password_revision = password["revision"].as_i64().unwrap();
    let resolved = curl(&[&format!(
        "{base}/api/config/myapp/database?env=prod&resolve=true"
    )]);
    assert_eq!(
        resolved,
        json!({"host": "prod-db.internal", "password": SECRET})
    );
    let configmap = curl_text(&[&format!(
        "{base}/api/config/myapp?env=prod&format=k8s-configmap"
    )]);
    assert!(configmap.contains("kind: ConfigMap"), "{configmap}");
    assert!(
        configmap.contains(r#""MYAPP_DATABASE_HOST": "prod-db.internal""#),
        "{configmap}"
    );
    assert!(
        configmap.contains(r#""setpoint.dev/omitted-secret-keys": "MYAPP_DATABASE_PASSWORD""#),
        "{configmap}"
    );
    assert_no_secret("the ConfigMap", &configmap);

    // The Secret carries it base64-encoded; the .env carries it as is.
    let secret = curl_text(&[&format!(
        "{base}/api/config/myapp?env=prod&format=k8s-secret"
    )]);
    let encoded = setpoint_core::export::base64(SECRET.as_bytes());
    assert!(
        secret.contains(&format!(r#""MYAPP_DATABASE_PASSWORD": "{encoded}""#)),
        "{secret}"
    );
    assert!(!secret.contains("MYAPP_DATABASE_HOST"), "{secret}");
    let dotenv = curl_text(&[&format!("{base}/api/config/myapp?env=prod&format=dotenv")]);
    assert!(
        dotenv.contains(&format!("MYAPP_DATABASE_PASSWORD='{SECRET}'")),
        "{dotenv}"
    );
    // dev has no such secret in OpenBao: a 422 naming the reference, not a value.
    let (dev_status, dev_body) = status_and_body(&format!(
        "{base}/api/config/myapp/database?env=dev&resolve=true"
    ));
    assert_eq!(dev_status, 422, "{dev_body}");
    assert!(dev_body.contains("db-password"), "{dev_body}");

    // The edge answers the same, over HTTP and gRPC.
    let edge_resolved = curl(&[&format!(
        "{base}/edge/api/config/myapp/database?env=prod&resolve=true"
    )]);
    assert_eq!(edge_resolved, resolved);
    let mut grpc = EdgeClient::connect(base.clone()).await.unwrap();
    let reply = grpc
        .resolve(ResolveRequest {
            path: "/myapp/database".into(),
            env: Some("prod".into()),
            raw: false,
            explain: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serde_json::from_str::<Value>(&reply.json).unwrap(),
        resolved
    );
    let single = grpc
        .resolve(ResolveRequest {
            path: "/myapp/database/host".into(),
            env: Some("prod".into()),
            raw: false,
            explain: true,
        })
        .await
        .unwrap()
        .into_inner();
    let single: Value = serde_json::from_str(&single.json).unwrap();
    assert_eq!(single["value"], "prod-db.internal");
    assert_eq!(
        single["provenance"][""]["path"],
        "/env/prod/myapp/database/host"
    );
    let exported = grpc
        .export(ExportRequest {
            prefix: "/myapp".into(),
            env: Some("prod".into()),
            format: "k8s-configmap".into(),
            name: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exported.content_type, "application/yaml");
    assert_eq!(String::from_utf8(exported.body).unwrap(), configmap);
    let refused = grpc
        .export(ExportRequest {
            prefix: "/myapp".into(),
            env: Some("prod".into()),
            format: "toml".into(),
            name: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Errors around a secret never carry its value.
    curl(&[
        "-X",
        "PUT",
        &format!("{base}/api/config/myapp/broken"),
        "-d",
        r#"{"value": "${secret:db-password}:${NOT_DEFINED}"}"#,
    ]);
    let (status, body) = status_and_body(&format!(
        "{base}/api/config/myapp/broken?env=prod&resolve=true"
    ));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("NOT_DEFINED"), "{body}");
    assert_no_secret("an error body", &body);
    let grpc_error = grpc
        .resolve(ResolveRequest {
            path: "/myapp/broken".into(),
            env: Some("prod".into()),
            raw: false,
            explain: false,
        })
        .await
        .unwrap_err();
    assert_no_secret("a gRPC status", grpc_error.message());

    // History, raw reads, metrics and SSE events hold the reference, never the value.
    let history = curl_text(&[&format!(
        "{base}/api/config/myapp/database/password/history"
    )]);
    assert!(history.contains("${secret:db-password}"), "{history}");
    assert_no_secret("history", &history);
    assert_no_secret(
        "a raw read",
        &curl_text(&[&format!(
            "{base}/api/config/myapp/database/password?env=prod"
        )]),
    );
    assert_no_secret("/metrics", &curl_text(&[&format!("{base}/metrics")]));
    assert_no_secret(
        "/edge/metrics",
        &curl_text(&[&format!("{base}/edge/metrics")]),
    );
    let seen = setpoint_tests::wait_until(Duration::from_secs(5), || async {
        watcher.changes().iter().any(|c| c.0 >= password_revision)
    })
    .await;
    assert!(seen, "SSE: {:?}", watcher.events());
    let events = format!("{:?}", watcher.events());
    assert!(events.contains("${secret:db-password}"), "{events}");
    assert_no_secret("SSE events", &events);

    // Finally the process log, at debug level, after a graceful stop.
    drop(watcher);
    let log_path = dev.log.clone();
    let status = dev.terminate();
    assert!(status.success(), "setpoint dev exited with {status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the log ran at debug level:\n{log}"
    );
    assert!(
        log.contains("resolves ${secret:…} references for every caller"),
        "{log}"
    );
    assert_no_secret("the process log", &log);
    drop(bao);
}

fn status_and_body(url: &str) -> (u16, String) {
    let text = curl_text(&["-w", "\n%{http_code}", url]);
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

/// Production Vaults speak https: `--vault-addr https://…` with `--vault-ca-cert` (a private CA)
/// resolves through a real OpenBao serving TLS only; without the CA the certificate is refused
/// (the read fails with 503 naming the provider, and no value is made up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_over_https_is_verified_against_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let bao = BaoServer::start_tls();
    assert!(bao.address().starts_with("https://"));
    bao.put_secret("setpoint/base/db-password", json!({ "value": SECRET }))
        .await;
    let token_file = dir.path().join("vault-token");
    std::fs::write(&token_file, bao.root_token()).unwrap();
    let ca_file = dir.path().join("vault-ca.pem");
    std::fs::write(&ca_file, bao.ca_pem()).unwrap();
    let start = |data: &str, ca: Option<&std::path::Path>| {
        let mut args: Vec<String> = [
            "dev",
            "--data-dir",
            dir.path().join(data).to_str().unwrap(),
            "--secrets",
            "vault",
            "--vault-addr",
            &bao.address(),
            "--vault-token-file",
            token_file.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(ca) = ca {
            args.extend([
                "--vault-ca-cert".to_owned(),
                ca.to_str().unwrap().to_owned(),
            ]);
        }
        let log = dir.path().join(data);
        async move {
            std::fs::create_dir_all(&log).unwrap();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            SetpointProcess::start(&args, &log).await
        }
    };
    let put_and_resolve = |base: String| async move {
        curl(&[
            "-X",
            "PUT",
            &format!("{base}/api/config/myapp/db"),
            "-d",
            r#"{"value": {"password": "${secret:db-password}"}}"#,
        ]);
        let output = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}"])
            .arg(format!("{base}/api/config/myapp/db?resolve=true"))
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };

    let trusting = start("trusting", Some(&ca_file)).await;
    let (status, body) = put_and_resolve(trusting.base()).await;
    assert_eq!(status, "200", "{body}");
    let resolved: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resolved["value"]["password"], SECRET);
    drop(trusting);

    // The same server without the CA: the system's roots do not know it.
    let untrusting = start("untrusting", None).await;
    let (status, body) = put_and_resolve(untrusting.base()).await;
    assert_eq!(
        status, "503",
        "an unverifiable Vault is unavailable: {body}"
    );
    assert_no_secret("the refusal", &body);
}

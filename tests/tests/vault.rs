//! The Vault provider against a real OpenBao dev server: token and AppRole auth, references with
//! fields, per-environment paths, the cache, refusals and outages, and redaction.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use setpoint_secrets::{
    NoSecrets, SecretError, SecretProvider, SecretValue, Vault, VaultAuth, VaultConfig, fetch_all,
};
use setpoint_tests::bao::BaoServer;
use setpoint_tests::wait_until;

fn token_config(bao: &BaoServer, token: &str) -> VaultConfig {
    VaultConfig::new(
        bao.address(),
        VaultAuth::Token(SecretValue::new(token.to_owned())),
    )
}

fn root_vault(bao: &BaoServer) -> Vault {
    Vault::new(token_config(bao, bao.root_token())).expect("valid config")
}

async fn app_role_config(bao: &BaoServer, role: &str, settings: serde_json::Value) -> VaultConfig {
    let (role_id, secret_id) = bao.enable_approle_with(role, settings).await;
    VaultConfig::new(
        bao.address(),
        VaultAuth::AppRole {
            role_id,
            secret_id: SecretValue::new(secret_id),
            mount: "approle".into(),
        },
    )
}

async fn fetch(vault: &Vault, env: Option<&str>, name: &str) -> Result<String, SecretError> {
    vault.fetch(env, name).await.map(|v| v.expose().to_owned())
}

#[tokio::test]
async fn token_auth_reads_the_default_field() {
    let bao = BaoServer::start();
    bao.put_secret(
        "setpoint/base/db",
        json!({ "value": "hunter2", "user": "app" }),
    )
    .await;
    let vault = root_vault(&bao);
    assert_eq!(vault.kind(), "vault");
    assert_eq!(fetch(&vault, None, "db").await, Ok("hunter2".into()));
}

#[tokio::test]
async fn a_field_reference_reads_that_field_and_non_strings_as_json() {
    let bao = BaoServer::start();
    bao.put_secret(
        "setpoint/base/team/db",
        json!({ "value": "pw", "user": "app", "port": 5432, "tls": { "on": true, "ca": ["a", "b"] } }),
    )
    .await;
    let vault = root_vault(&bao);
    assert_eq!(fetch(&vault, None, "team/db#user").await, Ok("app".into()));
    assert_eq!(fetch(&vault, None, "team/db#port").await, Ok("5432".into()));
    assert_eq!(
        fetch(&vault, None, "team/db#tls").await,
        Ok(r#"{"ca":["a","b"],"on":true}"#.into())
    );
    let mut config = token_config(&bao, bao.root_token());
    config.field = "user".into();
    let vault = Vault::new(config).expect("valid config");
    assert_eq!(fetch(&vault, None, "team/db").await, Ok("app".into()));
}

#[tokio::test]
async fn the_template_picks_the_environment_or_base() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/prod/db", json!({ "value": "prod-pw" }))
        .await;
    bao.put_secret("setpoint/dev/db", json!({ "value": "dev-pw" }))
        .await;
    bao.put_secret("setpoint/base/db", json!({ "value": "base-pw" }))
        .await;
    bao.put_secret("apps/db/prod", json!({ "value": "other-layout" }))
        .await;
    let vault = root_vault(&bao);
    // One cache, three environments: the key includes the environment.
    assert_eq!(
        fetch(&vault, Some("prod"), "db").await,
        Ok("prod-pw".into())
    );
    assert_eq!(fetch(&vault, Some("dev"), "db").await, Ok("dev-pw".into()));
    assert_eq!(fetch(&vault, None, "db").await, Ok("base-pw".into()));
    assert_eq!(
        fetch(&vault, Some("base"), "db").await,
        Ok("base-pw".into())
    );

    let mut config = token_config(&bao, bao.root_token());
    config.path_template = "apps/{name}/{env}".into();
    let vault = Vault::new(config).expect("valid config");
    assert_eq!(
        fetch(&vault, Some("prod"), "db").await,
        Ok("other-layout".into())
    );
    assert!(matches!(
        fetch(&vault, Some("../x"), "db").await,
        Err(SecretError::InvalidName { .. })
    ));
}

#[tokio::test]
async fn a_missing_secret_or_field_is_not_found() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/base/db", json!({ "user": "app" }))
        .await;
    let vault = root_vault(&bao);
    assert_eq!(
        fetch(&vault, None, "nope").await,
        Err(SecretError::NotFound {
            name: "nope".into()
        })
    );
    assert_eq!(
        fetch(&vault, Some("prod"), "db").await,
        Err(SecretError::NotFound { name: "db".into() })
    );
    assert_eq!(
        fetch(&vault, None, "db#password").await,
        Err(SecretError::NotFound {
            name: "db#password".into()
        })
    );
    // The default field is named too.
    assert_eq!(
        fetch(&vault, None, "db").await,
        Err(SecretError::NotFound {
            name: "db#value".into()
        })
    );
    assert!(matches!(
        fetch(&vault, None, "../db").await,
        Err(SecretError::InvalidName { .. })
    ));
}

#[tokio::test]
async fn a_bad_token_is_denied() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/base/db", json!({ "value": "hunter2" }))
        .await;
    let vault = Vault::new(token_config(&bao, "not-a-real-token")).expect("valid config");
    match fetch(&vault, None, "db").await {
        Err(SecretError::Denied { reason }) => {
            assert!(!reason.contains("not-a-real-token"), "{reason}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn app_role_logs_in_and_again_when_its_token_expires() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/base/db", json!({ "value": "hunter2" }))
        .await;
    let mut config = app_role_config(
        &bao,
        "setpoint-node",
        json!({ "token_ttl": "2s", "token_max_ttl": "2s" }),
    )
    .await;
    config.cache_ttl = Duration::ZERO;
    let vault = Vault::new(config).expect("valid config");
    assert_eq!(fetch(&vault, None, "db").await, Ok("hunter2".into()));
    // Past the token's whole TTL: a fetch still works (the provider logged in again). The
    // token lives inside the provider (never shown), so its expiry is awaited on OpenBao's side:
    // the login's lease is listed while the token lives and gone once it expired.
    let login_leases = || async {
        let (status, body) = bao
            .api_raw("LIST", "sys/leases/lookup/auth/approle/login/", None)
            .await;
        match status {
            404 => 0,
            200 => body["data"]["keys"].as_array().map_or(0, Vec::len),
            other => panic!("listing the AppRole login leases answered {other}: {body}"),
        }
    };
    assert_eq!(login_leases().await, 1, "the provider's login is listed");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            login_leases().await == 0
        })
        .await,
        "the provider's token never expired"
    );
    bao.put_secret("setpoint/base/db", json!({ "value": "hunter3" }))
        .await;
    assert_eq!(fetch(&vault, None, "db").await, Ok("hunter3".into()));
}

#[tokio::test]
async fn app_role_logs_in_again_when_its_token_is_revoked() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/base/db", json!({ "value": "hunter2" }))
        .await;
    let mut config = app_role_config(&bao, "setpoint-node", json!({})).await;
    config.cache_ttl = Duration::ZERO;
    let vault = Vault::new(config).expect("valid config");
    assert_eq!(fetch(&vault, None, "db").await, Ok("hunter2".into()));
    bao.revoke_approle_tokens().await;
    assert_eq!(fetch(&vault, None, "db").await, Ok("hunter2".into()));
}

#[tokio::test]
async fn app_role_outside_its_policy_or_with_a_bad_secret_id_is_denied() {
    let bao = BaoServer::start();
    bao.put_secret("elsewhere/db", json!({ "value": "hunter2" }))
        .await;
    let mut config = app_role_config(&bao, "setpoint-node", json!({})).await;
    config.path_template = "elsewhere/{name}".into();
    let vault = Vault::new(config.clone()).expect("valid config");
    assert!(matches!(
        fetch(&vault, None, "db").await,
        Err(SecretError::Denied { .. })
    ));

    let VaultAuth::AppRole { role_id, mount, .. } = config.auth else {
        unreachable!("an AppRole config")
    };
    config.auth = VaultAuth::AppRole {
        role_id,
        secret_id: SecretValue::new("wrong-secret-id".into()),
        mount,
    };
    let vault = Vault::new(config).expect("valid config");
    match fetch(&vault, None, "db").await {
        Err(SecretError::Denied { reason }) => {
            assert!(!reason.contains("wrong-secret-id"), "{reason}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cached_value_is_served_until_the_ttl_passes() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/prod/db", json!({ "value": "old" }))
        .await;
    let ttl = Duration::from_secs(2);
    let mut config = token_config(&bao, bao.root_token());
    config.cache_ttl = ttl;
    let vault = Vault::new(config).expect("valid config");
    let started = Instant::now();
    assert_eq!(fetch(&vault, Some("prod"), "db").await, Ok("old".into()));
    bao.put_secret("setpoint/prod/db", json!({ "value": "new" }))
        .await;
    assert_eq!(fetch(&vault, Some("prod"), "db").await, Ok("old".into()));
    assert!(
        wait_until(Duration::from_secs(10), || async {
            fetch(&vault, Some("prod"), "db").await == Ok("new".into())
        })
        .await,
        "the new value never showed"
    );
    assert!(
        started.elapsed() >= ttl,
        "the new value showed after {:?}, before the cache TTL",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_quickly() {
    let mut bao = BaoServer::start();
    bao.put_secret("setpoint/base/db", json!({ "value": "hunter2" }))
        .await;
    let mut config = token_config(&bao, bao.root_token());
    config.timeout = Duration::from_secs(1);
    let vault = Vault::new(config).expect("valid config");
    bao.stop();
    // Refused connections fail at once; the bound only catches a fetch that retried for long
    // (generous for a loaded machine).
    let started = Instant::now();
    let result = fetch(&vault, None, "db").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    match result {
        Err(SecretError::Unavailable { reason }) => {
            assert!(reason.contains(&bao.address()), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Connections complete in the kernel's backlog; nothing ever answers.
    let listener = std::net::TcpListener::bind(("127.0.0.1", setpoint_tests::free_port()))
        .expect("bind a silent listener");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let mut config = VaultConfig::new(address, VaultAuth::Token(SecretValue::new("t".into())));
    config.timeout = Duration::from_secs(1);
    let vault = Vault::new(config).expect("valid config");
    // Waits out the 1 s timeout (never less), then gives up: far sooner than a fetch without
    // a timeout, which would never end (generous upper bound for a loaded machine).
    let started = Instant::now();
    let result = fetch(&vault, None, "db").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "gave up before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    match result {
        Err(SecretError::Unavailable { reason }) => assert!(reason.contains("1s"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    drop(listener);
}

#[tokio::test]
async fn debug_output_never_shows_values_or_tokens() {
    let bao = BaoServer::start();
    let value = "VALUE-7f3a9c";
    bao.put_secret("setpoint/base/db", json!({ "value": value }))
        .await;
    let mut app_role = app_role_config(&bao, "setpoint-node", json!({})).await;
    let VaultAuth::AppRole { secret_id, .. } = &app_role.auth else {
        unreachable!("an AppRole config")
    };
    let secret_id = secret_id.expose().to_owned();
    app_role.timeout = Duration::from_secs(1);
    let token = "TOKEN-2b8e41";
    let bad_token = Vault::new(token_config(&bao, token)).expect("valid config");
    let root = root_vault(&bao);
    let app_vault = Vault::new(app_role.clone()).expect("valid config");

    let fetched = root.fetch(None, "db").await.expect("fetch");
    assert_eq!(fetched.expose(), value);
    let app_fetched = app_vault.fetch(None, "db").await.expect("fetch");
    let mut shown = vec![
        format!("{fetched:?}"),
        format!("{app_fetched:?}"),
        format!("{:?}", token_config(&bao, token)),
        format!("{app_role:?}"),
        format!("{root:?}"),
        format!("{app_vault:?}"),
        format!("{bad_token:?}"),
    ];
    let mut errors = vec![
        bad_token.fetch(None, "db").await.expect_err("denied"),
        root.fetch(None, "db#nope").await.expect_err("no field"),
        root.fetch(None, "../db").await.expect_err("invalid"),
        Vault::new(VaultConfig::new(
            "nope",
            VaultAuth::Token(SecretValue::new(token.into())),
        ))
        .expect_err("bad address"),
    ];
    let mut stopped = bao;
    stopped.stop();
    errors.push(root.fetch(None, "db#other").await.expect_err("stopped"));
    errors.push(
        app_vault
            .fetch(None, "db#other")
            .await
            .expect_err("stopped"),
    );
    for error in &errors {
        shown.push(format!("{error:?}"));
        shown.push(error.to_string());
    }
    for text in &shown {
        for hidden in [value, token, secret_id.as_str(), "\"root\""] {
            assert!(!text.contains(hidden), "{text:?} shows {hidden:?}");
        }
    }
}

#[tokio::test]
async fn no_secrets_is_disabled() {
    assert_eq!(NoSecrets.kind(), "none");
    assert_eq!(
        NoSecrets.fetch(Some("prod"), "db").await,
        Err(SecretError::Disabled)
    );
    let names = BTreeSet::from(["db".to_owned()]);
    assert_eq!(
        fetch_all(&NoSecrets, None, &names).await,
        Err(SecretError::Disabled)
    );
}

#[tokio::test]
async fn fetch_all_reads_every_name_or_fails() {
    let bao = BaoServer::start();
    bao.put_secret("setpoint/prod/db", json!({ "value": "pw", "user": "app" }))
        .await;
    bao.put_secret("setpoint/prod/api/key", json!({ "value": "k" }))
        .await;
    let vault = root_vault(&bao);
    let names: BTreeSet<String> = ["db", "db#user", "api/key"].map(String::from).into();
    let all = fetch_all(&vault, Some("prod"), &names).await.expect("all");
    let got: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
    assert_eq!(got, [("api/key", "k"), ("db", "pw"), ("db#user", "app")]);

    let mut names = names;
    names.insert("missing".into());
    assert_eq!(
        fetch_all(&vault, Some("prod"), &names).await,
        Err(SecretError::NotFound {
            name: "missing".into()
        })
    );
    assert_eq!(
        fetch_all(&vault, Some("prod"), &BTreeSet::new()).await,
        Ok(Default::default())
    );
}

#[tokio::test]
async fn https_is_verified_against_the_configured_ca() {
    let bao = BaoServer::start_tls();
    bao.put_secret("setpoint/base/db", json!({ "value": "tls-pw" }))
        .await;
    let mut config = token_config(&bao, bao.root_token());
    config.ca_pem = Some(bao.ca_pem());
    let vault = Vault::new(config).expect("valid config");
    assert_eq!(fetch(&vault, None, "db").await, Ok("tls-pw".into()));
    // Without the CA the server's certificate is not trusted: no value, an unavailable provider.
    let unverified = Vault::new(token_config(&bao, bao.root_token())).expect("valid config");
    let refused = fetch(&unverified, None, "db").await;
    assert!(
        matches!(refused, Err(SecretError::Unavailable { .. })),
        "{refused:?}"
    );
}

//! The Vault / OpenBao KV v2 provider: its configuration, the HTTP reads, the login token's
//! lifecycle (token auth, or AppRole with re-login) and the short value cache.
//!
//! It must never put a secret value or a token into a log line, an error or a `Debug` output:
//! logs name the secret, the path and the HTTP status; error reasons come from the transport or
//! from OpenBao's `errors` list (which a refusal never fills with secret data), never from a
//! response that carried a secret.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::reference::{self, Reference};
use crate::{SecretError, SecretProvider, SecretValue};

/// How the node logs in to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    Token(SecretValue),
    AppRole {
        role_id: String,
        secret_id: SecretValue,
        /// Auth mount, default `approle`.
        mount: String,
    },
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token([redacted])"),
            VaultAuth::AppRole { role_id, mount, .. } => f
                .debug_struct("AppRole")
                .field("role_id", role_id)
                .field("mount", mount)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `http://127.0.0.1:8200`.
    pub address: String,
    pub auth: VaultAuth,
    /// KV v2 mount, default `secret`.
    pub mount: String,
    /// Default `setpoint/{env}/{name}`.
    pub path_template: String,
    /// Field read when the reference names none, default `value`.
    pub field: String,
    /// Default 30 s; zero disables the cache.
    pub cache_ttl: Duration,
    /// Per HTTP request, default 5 s.
    pub timeout: Duration,
    /// PEM roots trusted besides the system's for an `https://` address (a private CA).
    pub ca_pem: Option<Vec<u8>>,
}

impl VaultConfig {
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            address: address.into(),
            auth,
            mount: "secret".into(),
            path_template: "setpoint/{env}/{name}".into(),
            field: "value".into(),
            cache_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            ca_pem: None,
        }
    }
}

/// A login token re-used until `renew_at` (80 % of its lease; `None`: no lease, never).
struct Login {
    token: SecretValue,
    renew_at: Option<Instant>,
}

impl Login {
    fn new(token: SecretValue, lease: Duration, now: Instant) -> Login {
        Login {
            token,
            renew_at: now
                .checked_add(lease.mul_f64(0.8))
                .filter(|_| !lease.is_zero()),
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

struct Cached {
    value: SecretValue,
    until: Instant,
}

/// Expired cache entries are dropped once the cache holds this many.
const CACHE_PRUNE_AT: usize = 1024;

/// Vault / OpenBao KV v2.
pub struct Vault {
    config: VaultConfig,
    /// `{address}/v1`, without a trailing slash.
    api: String,
    http: reqwest::Client,
    /// AppRole's current token; unused with token auth.
    login: Mutex<Option<Login>>,
    /// Keyed by (environment segment, reference as written).
    cache: RwLock<HashMap<(String, String), Cached>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Checks the configuration (address, template); does not contact Vault.
    pub fn new(config: VaultConfig) -> Result<Vault, SecretError> {
        let api = check_config(&config).map_err(|reason| SecretError::Config { reason })?;
        let http = crate::https::client_builder(config.ca_pem.as_deref())
            .map_err(|reason| SecretError::Config { reason })?
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| SecretError::Config {
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Vault {
            config,
            api,
            http,
            login: Mutex::new(None),
            cache: RwLock::new(HashMap::new()),
        })
    }

    async fn cached(&self, key: &(String, String)) -> Option<SecretValue> {
        let cache = self.cache.read().await;
        let entry = cache.get(key)?;
        (Instant::now() < entry.until).then(|| entry.value.clone())
    }

    async fn remember(&self, key: (String, String), value: &SecretValue) {
        if self.config.cache_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let Some(until) = now.checked_add(self.config.cache_ttl) else {
            return;
        };
        let mut cache = self.cache.write().await;
        if cache.len() >= CACHE_PRUNE_AT {
            cache.retain(|_, entry| now < entry.until);
        }
        cache.insert(
            key,
            Cached {
                value: value.clone(),
                until,
            },
        );
    }

    /// The token to send: the configured one, or AppRole's (logging in when it has none or its
    /// lease is 80 % gone).
    async fn token(&self) -> Result<SecretValue, SecretError> {
        let (role_id, secret_id, mount) = match &self.config.auth {
            VaultAuth::Token(token) => return Ok(token.clone()),
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => (role_id, secret_id, mount),
        };
        // Held across the login, so concurrent fetches wait for one login instead of racing.
        let mut login = self.login.lock().await;
        if let Some(current) = login.as_ref().filter(|l| l.is_fresh(Instant::now())) {
            return Ok(current.token.clone());
        }
        let fresh = self.app_role_login(role_id, secret_id, mount).await?;
        let token = fresh.token.clone();
        *login = Some(fresh);
        Ok(token)
    }

    /// Drops AppRole's token if it is still `used` (another fetch may have replaced it already).
    async fn forget_token(&self, used: &SecretValue) {
        let mut login = self.login.lock().await;
        if login.as_ref().is_some_and(|l| &l.token == used) {
            *login = None;
        }
    }

    async fn app_role_login(
        &self,
        role_id: &str,
        secret_id: &SecretValue,
        mount: &str,
    ) -> Result<Login, SecretError> {
        let url = format!("{}/auth/{mount}/login", self.api);
        let body = serde_json::json!({ "role_id": role_id, "secret_id": secret_id.expose() });
        let started = Instant::now();
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(&format!("AppRole login at auth/{mount}"), &e))?;
        let status = response.status();
        tracing::debug!(mount, status = status.as_u16(), "OpenBao AppRole login");
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&format!("AppRole login at auth/{mount}"), &e))?;
        if !status.is_success() {
            let reason = format!(
                "AppRole login at auth/{mount} answered {status}{}",
                refusal_detail(&bytes, secret_id)
            );
            return Err(if status.is_client_error() {
                SecretError::Denied { reason }
            } else {
                SecretError::Unavailable { reason }
            });
        }
        let malformed = || SecretError::Unavailable {
            reason: format!(
                "AppRole login at auth/{mount} answered without auth.client_token and auth.lease_duration"
            ),
        };
        let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        let auth = parsed.get("auth").ok_or_else(malformed)?;
        let token = auth
            .get("client_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && HeaderValue::from_str(t).is_ok())
            .ok_or_else(malformed)?;
        let lease = auth
            .get("lease_duration")
            .and_then(Value::as_u64)
            .ok_or_else(malformed)?;
        Ok(Login::new(
            SecretValue::new(token.to_owned()),
            Duration::from_secs(lease),
            started,
        ))
    }

    /// `data.data` of the KV v2 secret at `path`. 403 with AppRole logs in again once.
    async fn read_secret(&self, path: &str, name: &str) -> Result<Value, SecretError> {
        let url = format!("{}/{}/data/{path}", self.api, self.config.mount);
        let app_role = matches!(self.config.auth, VaultAuth::AppRole { .. });
        let mut logged_in_again = false;
        loop {
            let token = self.token().await?;
            let mut header =
                HeaderValue::from_str(token.expose()).map_err(|_| SecretError::Config {
                    reason: "the Vault token is not a valid HTTP header value".into(),
                })?;
            header.set_sensitive(true);
            let what = format!("reading secret {name:?}");
            let response = self
                .http
                .get(&url)
                .header("X-Vault-Token", header)
                .send()
                .await
                .map_err(|e| self.transport_error(&what, &e))?;
            let status = response.status();
            tracing::debug!(
                secret = name,
                path,
                status = status.as_u16(),
                "OpenBao read"
            );
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(&what, &e))?;
            match status {
                StatusCode::OK => return secret_data(&bytes, name),
                StatusCode::NOT_FOUND => {
                    return Err(SecretError::NotFound { name: name.into() });
                }
                StatusCode::FORBIDDEN if app_role && !logged_in_again => {
                    tracing::info!(
                        secret = name,
                        "OpenBao refused the AppRole token; logging in again"
                    );
                    self.forget_token(&token).await;
                    logged_in_again = true;
                }
                StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                    return Err(SecretError::Denied {
                        reason: format!(
                            "OpenBao answered {status} {what} at {}/data/{path}{}",
                            self.config.mount,
                            refusal_detail(&bytes, &token)
                        ),
                    });
                }
                _ => {
                    return Err(SecretError::Unavailable {
                        reason: format!(
                            "OpenBao answered {status} {what}{}",
                            refusal_detail(&bytes, &token)
                        ),
                    });
                }
            }
        }
    }

    /// Names the operation, the address and the transport's innermost cause; never the URL's
    /// query or a body.
    fn transport_error(&self, what: &str, error: &reqwest::Error) -> SecretError {
        let cause = if error.is_timeout() {
            format!("no answer within {:?}", self.config.timeout)
        } else {
            let mut source: &dyn std::error::Error = error;
            while let Some(inner) = source.source() {
                source = inner;
            }
            source.to_string()
        };
        tracing::warn!(address = %self.config.address, %cause, "OpenBao unreachable: {what}");
        SecretError::Unavailable {
            reason: format!("{what} from {}: {cause}", self.config.address),
        }
    }
}

#[async_trait::async_trait]
impl SecretProvider for Vault {
    fn kind(&self) -> &'static str {
        "vault"
    }
    async fn fetch(
        &self,
        environment: Option<&str>,
        name: &str,
    ) -> Result<SecretValue, SecretError> {
        let Reference {
            name: secret,
            field,
        } = reference::parse(name)?;
        let env = reference::environment_segment(environment, name)?;
        let key = (env.to_owned(), name.to_owned());
        if let Some(value) = self.cached(&key).await {
            return Ok(value);
        }
        let path = reference::render(&self.config.path_template, env, secret);
        let field = field.unwrap_or(&self.config.field);
        let data = self.read_secret(&path, secret).await?;
        let value = match data.get(field) {
            Some(Value::String(text)) => SecretValue::new(text.clone()),
            Some(other) => SecretValue::new(other.to_string()),
            None => {
                return Err(SecretError::NotFound {
                    name: format!("{secret}#{field}"),
                });
            }
        };
        self.remember(key, &value).await;
        Ok(value)
    }
}

/// Checks every field; the API base URL (`{address}/v1`) when they pass.
fn check_config(config: &VaultConfig) -> Result<String, String> {
    let address = reqwest::Url::parse(&config.address)
        .map_err(|e| format!("address {:?} is not a URL: {e}", config.address))?;
    match address.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "address {:?} has scheme {other:?}; use https:// (or http://)",
                config.address
            ));
        }
    }
    if address.host_str().is_none_or(str::is_empty) {
        return Err(format!("address {:?} has no host", config.address));
    }
    if address.query().is_some() || address.fragment().is_some() {
        return Err(format!(
            "address {:?} has a query or fragment",
            config.address
        ));
    }
    reference::check_template(&config.path_template)?;
    reference::check_mount("KV mount", &config.mount)?;
    reference::check_field("default field", &config.field)?;
    if config.timeout.is_zero() {
        return Err("timeout is zero".into());
    }
    match &config.auth {
        VaultAuth::Token(token) => {
            if token.expose().is_empty() || HeaderValue::from_str(token.expose()).is_err() {
                return Err("the token is empty or not a valid HTTP header value".into());
            }
        }
        VaultAuth::AppRole { role_id, mount, .. } => {
            if role_id.is_empty() {
                return Err("the AppRole role_id is empty".into());
            }
            reference::check_mount("AppRole auth mount", mount)?;
        }
    }
    Ok(format!("{}/v1", address.as_str().trim_end_matches('/')))
}

/// `data.data` of a KV v2 read. Parse errors are reported without serde's message, which can
/// quote the body.
fn secret_data(body: &[u8], name: &str) -> Result<Value, SecretError> {
    let malformed = || SecretError::Unavailable {
        reason: format!("OpenBao's answer for secret {name:?} is not a KV v2 secret"),
    };
    let mut parsed: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    match parsed.pointer_mut("/data/data").map(Value::take) {
        Some(data @ Value::Object(_)) => Ok(data),
        // A deleted or destroyed version reads as `"data": null`.
        Some(Value::Null) => Err(SecretError::NotFound { name: name.into() }),
        _ => Err(malformed()),
    }
}

/// `: msg; msg` from a refusal's `{"errors": [...]}` (short, with `hide` blanked), else nothing.
fn refusal_detail(body: &[u8], hide: &SecretValue) -> String {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let Some(errors) = parsed.get("errors").and_then(Value::as_array) else {
        return String::new();
    };
    let mut joined = errors
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if !hide.expose().is_empty() {
        joined = joined.replace(hide.expose(), "[redacted]");
    }
    if joined.is_empty() {
        return String::new();
    }
    let short: String = joined.chars().take(200).collect();
    format!(": {short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VaultConfig {
        VaultConfig::new(
            "http://127.0.0.1:8200",
            VaultAuth::Token(SecretValue::new("tok".into())),
        )
    }

    fn config_error(change: impl FnOnce(&mut VaultConfig)) -> String {
        let mut config = config();
        change(&mut config);
        match Vault::new(config) {
            Err(SecretError::Config { reason }) => reason,
            other => panic!("expected a Config error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_defaults_and_builds_the_api_base() {
        assert_eq!(
            check_config(&config()).as_deref(),
            Ok("http://127.0.0.1:8200/v1")
        );
        let mut tls = config();
        tls.address = "https://vault.internal:8200".into();
        assert_eq!(
            check_config(&tls).as_deref(),
            Ok("https://vault.internal:8200/v1")
        );
        let mut prefixed = config();
        prefixed.address = "http://vault.internal:8200/proxy/".into();
        assert_eq!(
            check_config(&prefixed).as_deref(),
            Ok("http://vault.internal:8200/proxy/v1")
        );
    }

    #[test]
    fn refuses_bad_configuration() {
        config_error(|c| c.address = "127.0.0.1:8200".into());
        config_error(|c| c.address = "not a url".into());
        config_error(|c| c.address = "ftp://127.0.0.1".into());
        config_error(|c| c.address = "http://127.0.0.1:8200/?x=1".into());
        config_error(|c| c.path_template = "setpoint/{env}".into());
        config_error(|c| c.path_template = "/setpoint/{name}".into());
        config_error(|c| c.mount = String::new());
        config_error(|c| c.field = String::new());
        config_error(|c| c.timeout = Duration::ZERO);
        config_error(|c| c.auth = VaultAuth::Token(SecretValue::new(String::new())));
        config_error(|c| c.auth = VaultAuth::Token(SecretValue::new("bad\ntoken".into())));
        let reason = config_error(|c| {
            c.auth = VaultAuth::AppRole {
                role_id: "r".into(),
                secret_id: SecretValue::new("s".into()),
                mount: String::new(),
            }
        });
        assert!(reason.contains("AppRole"), "{reason}");
    }

    #[test]
    fn login_renews_at_80_percent_of_the_lease() {
        let now = Instant::now();
        let login = Login::new(SecretValue::new("t".into()), Duration::from_secs(10), now);
        assert!(login.is_fresh(now + Duration::from_millis(7_900)));
        assert!(!login.is_fresh(now + Duration::from_secs(8)));
        let forever = Login::new(SecretValue::new("t".into()), Duration::ZERO, now);
        assert!(forever.is_fresh(now + Duration::from_secs(1_000_000)));
    }

    #[test]
    fn reads_data_data_without_quoting_the_body() {
        let body = br#"{"data":{"data":{"value":"s3cret","port":5432},"metadata":{}}}"#;
        let data = secret_data(body, "db").expect("data");
        assert_eq!(data["value"], "s3cret");
        let deleted = br#"{"data":{"data":null,"metadata":{}}}"#;
        assert_eq!(
            secret_data(deleted, "db"),
            Err(SecretError::NotFound { name: "db".into() })
        );
        let garbage = br#"{"data":{"data":"s3cret"}}"#;
        let error = secret_data(garbage, "db").expect_err("not an object");
        assert!(!format!("{error:?} {error}").contains("s3cret"));
        let truncated = br#"{"data":{"data":{"value":"s3cret"#;
        let error = secret_data(truncated, "db").expect_err("not JSON");
        assert!(!format!("{error:?} {error}").contains("s3cret"));
    }

    #[test]
    fn refusal_detail_hides_the_token() {
        let token = SecretValue::new("hvs.TOKEN".into());
        let body = br#"{"errors":["permission denied","bad token hvs.TOKEN"]}"#;
        assert_eq!(
            refusal_detail(body, &token),
            ": permission denied; bad token [redacted]"
        );
        assert_eq!(refusal_detail(b"<html>", &token), "");
        assert_eq!(refusal_detail(br#"{"errors":[]}"#, &token), "");
    }
}

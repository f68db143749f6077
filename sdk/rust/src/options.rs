//! What a user passes ([`Options`], [`TlsOptions`]) and what the client runs with ([`Config`]):
//! options are checked once, in `Client::new`, so the session task never meets a bad value.

use std::collections::HashMap;
use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::backoff::Rng;
use crate::error::Error;

/// How a client connects and what it holds. `Options::default()` is a client of every path the
/// caller may read, in base values, without a cache file.
#[derive(Clone, Default)]
pub struct Options {
    /// The environment whose effective values the client holds (`prod`); `None`: base values.
    pub environment: Option<String>,
    /// The prefixes to hold and watch; empty means `["/"]`. A token limited to `/myapp` needs
    /// `["/myapp"]`.
    pub prefixes: Vec<String>,
    /// Where to keep the cache file; `None`: no file.
    pub cache_path: Option<PathBuf>,
    /// This application instance, stable across reconnects (e.g. the pod name); `None`:
    /// `{hostname}-{pid}-{random}`.
    pub instance_id: Option<String>,
    /// Free-form labels the edge reports (`zone`, `version`); rollouts select on them.
    pub labels: HashMap<String, String>,
    /// An API key (`spk_…`), sent as `authorization: Bearer …`.
    pub token: Option<String>,
    /// TLS to the edge; `None`: plaintext h2c (unless the address says `https://`).
    pub tls: Option<TlsOptions>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("environment", &self.environment)
            .field("prefixes", &self.prefixes)
            .field("cache_path", &self.cache_path)
            .field("instance_id", &self.instance_id)
            .field("labels", &self.labels)
            // Never print a key.
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// TLS to the edge. PEM bytes; without `ca_pem` the platform's roots are trusted.
#[derive(Clone, Default)]
pub struct TlsOptions {
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for an edge that wants mutual TLS.
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    /// The name to verify the edge's certificate against; default: the address's host.
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("cert_pem", &self.cert_pem.is_some())
            .field("key_pem", &self.key_pem.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

/// Validated options.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub env: Option<String>,
    pub prefixes: Vec<String>,
    pub cache_path: Option<PathBuf>,
    pub instance_id: String,
    pub labels: HashMap<String, String>,
    pub authorization: Option<MetadataValue<Ascii>>,
    pub endpoint: Endpoint,
}

/// Large enough for a reset of a big prefix; tonic's default (4 MiB) is not.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Config {
    pub fn new(address: &str, options: Options) -> Result<Config, Error> {
        let prefixes = if options.prefixes.is_empty() {
            vec!["/".to_owned()]
        } else {
            options
                .prefixes
                .iter()
                .map(|p| normalize_prefix(p))
                .collect::<Result<_, _>>()?
        };
        let env = options.environment.filter(|e| !e.is_empty());
        let authorization = options
            .token
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| Error::Invalid("the token is not a valid header value".into()))
            })
            .transpose()?;
        let instance_id = options
            .instance_id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(default_instance_id);
        Ok(Config {
            env,
            prefixes,
            cache_path: options.cache_path,
            instance_id,
            labels: options.labels,
            authorization,
            endpoint: endpoint(address, options.tls)?,
        })
    }

    /// Whether `path` lies under one of the client's prefixes.
    pub fn holds(&self, path: &str) -> bool {
        self.prefixes.iter().any(|p| crate::watch::covers(p, path))
    }
}

/// `/a/b/` → `/a/b`; a prefix must be absolute.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, Error> {
    if !prefix.starts_with('/') {
        return Err(Error::Invalid(format!(
            "prefix {prefix:?} must start with /"
        )));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

fn endpoint(address: &str, tls: Option<TlsOptions>) -> Result<Endpoint, Error> {
    let uri = if address.contains("://") {
        address.to_owned()
    } else if tls.is_some() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::Invalid(format!("address {address:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        let mut config = ClientTlsConfig::new();
        config = match tls.ca_pem {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        match (tls.cert_pem, tls.key_pem) {
            (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            _ => {
                return Err(Error::Invalid(
                    "TLS: cert_pem and key_pem go together".into(),
                ));
            }
        }
        if let Some(domain) = tls.domain {
            config = config.domain_name(domain);
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| Error::Invalid(format!("TLS: {e}")))?;
    }
    Ok(endpoint)
}

fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let random = Rng::from_entropy().next_u64() & 0xff_ffff;
    format!("{host}-{}-{random:06x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_normalization() -> Result<(), Error> {
        let config = Config::new("127.0.0.1:1", Options::default())?;
        assert_eq!(config.prefixes, vec!["/"]);
        assert!(
            config
                .instance_id
                .contains(&format!("-{}-", std::process::id()))
        );
        assert!(config.authorization.is_none());
        let config = Config::new(
            "127.0.0.1:1",
            Options {
                prefixes: vec!["/myapp/".into(), "/other".into()],
                environment: Some(String::new()),
                token: Some("spk_a_b".into()),
                ..Options::default()
            },
        )?;
        assert_eq!(config.prefixes, vec!["/myapp", "/other"]);
        assert_eq!(config.env, None, "an empty environment means base values");
        assert!(config.holds("/myapp/db") && config.holds("/other") && !config.holds("/myapp2"));
        assert_eq!(
            config.authorization.as_ref().and_then(|v| v.to_str().ok()),
            Some("Bearer spk_a_b")
        );
        Ok(())
    }

    #[test]
    fn bad_options_are_invalid() {
        let bad = |options: Options| Config::new("127.0.0.1:1", options).err().map(|e| e.kind());
        assert_eq!(
            bad(Options {
                prefixes: vec!["myapp".into()],
                ..Options::default()
            }),
            Some("invalid")
        );
        assert_eq!(
            bad(Options {
                token: Some("a\nb".into()),
                ..Options::default()
            }),
            Some("invalid")
        );
        assert_eq!(
            Config::new("not a uri", Options::default())
                .err()
                .map(|e| e.kind()),
            Some("invalid")
        );
        let debug = format!(
            "{:?}",
            Options {
                token: Some("spk_secret".into()),
                ..Options::default()
            }
        );
        assert!(!debug.contains("spk_secret"), "{debug}");
    }
}

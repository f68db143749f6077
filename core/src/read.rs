//! One environment-aware read, shared by the writer and the edges so both answer alike:
//! `?env=E`, `?resolve=true`, `?explain=true`, `?format=json|yaml|dotenv|k8s-configmap|k8s-secret`
//! (with `?name=` for Kubernetes objects).
//!
//! A read runs in two steps because secrets are fetched by the caller (I/O) in between:
//! [`plan`] decides what the answer is made of and which secrets it needs; the caller checks
//! the permission and fetches exactly those; [`Plan::render`] substitutes and renders the body.
//! A read that needs no secret never reaches the secret provider.
//!
//! What each query answers (the path is a base path, never `/env/…`):
//! - `env` only (or `explain`): the path's effective value as an entry
//!   `{path, environment, value, format, version, revision, updated_at, source}` — `version` and
//!   `source` are the most specific contributing layer's; `explain=true` adds `provenance` (for
//!   every key, which path and version it came from) and `sources`. On a prefix without a value:
//!   the children that exist in that environment.
//! - `resolve=true`: the same entry with `${…}` substituted; on a prefix without a value, the
//!   subtree as one object of substituted effective values (`{"host": …, "password": …}`).
//! - `format=…`: the subtree at and below the path, resolved, as a bundle. A ConfigMap never
//!   contains a secret-bearing value and so never fetches secrets; a Secret holds only those.
//!
//! Who may read what: an effective value in environment `E` is read with the right on its base
//! path and on its override path in every environment of `E`'s chain, whichever hold a value
//! ([`EffectiveGrants`]); subtrees, bundles and listings include only what the caller may read
//! so; a secret is resolved with `secrets:read` on the same layers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::auth::{Action, EffectiveGrants, Grants};
use crate::env::{self, Chain, EnvError, Environments};
use crate::error::ErrorCode;
use crate::export::{self, ExportError, ExportFormat, Item};
use crate::resolve::{self, Effective};
use crate::snapshot::Snapshot;
use crate::substitute::{self, Problem};
use crate::{ConfigPath, Format, Revision};

/// The query parameters of an environment-aware read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadQuery {
    pub env: Option<String>,
    pub resolve: bool,
    pub explain: bool,
    pub format: Option<ExportFormat>,
    /// Kubernetes object name for `k8s-configmap` / `k8s-secret`.
    pub name: Option<String>,
}

impl ReadQuery {
    /// Reads the parameters from a query string lookup; `env=` empty is no environment. Bad
    /// values are a `bad_request` naming the parameter.
    pub fn from_params<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<ReadQuery, Failure> {
        let flag = |name: &str| flag(name, get(name));
        let format = get("format")
            .map(|raw| {
                ExportFormat::parse(raw).ok_or_else(|| {
                    Failure::new(
                        ErrorCode::BadRequest,
                        format!(
                            "format={raw:?} is not one of json, yaml, dotenv, k8s-configmap, k8s-secret"
                        ),
                    )
                })
            })
            .transpose()?;
        Ok(ReadQuery {
            env: get("env").filter(|e| !e.is_empty()).map(str::to_owned),
            resolve: flag("resolve")?,
            explain: flag("explain")?,
            format,
            name: get("name").map(str::to_owned),
        })
    }

    /// True when none of the environment-aware parameters is given: a plain read.
    pub fn is_plain(&self) -> bool {
        self.env.is_none() && !self.resolve && !self.explain && self.format.is_none()
    }
}

/// A boolean query parameter, as every API reads one: absent, `false`, `0` or `no` is false;
/// present without a value, `true`, `1` or `yes` is true; anything else is a `bad_request`
/// naming the parameter.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, Failure> {
    match value {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("" | "true" | "1" | "yes") => Ok(true),
        Some(other) => Err(Failure::new(
            ErrorCode::BadRequest,
            format!("query parameter {name}={other:?} must be true or false"),
        )),
    }
}

/// Why a read failed: core's [`crate::error::Error`]; the servers render it as their error body
/// or gRPC status.
pub use crate::error::Error as Failure;

impl From<EnvError> for Failure {
    fn from(error: EnvError) -> Failure {
        let code = match &error {
            EnvError::Unknown { .. } => ErrorCode::NotFound,
            EnvError::InvalidName { .. } => ErrorCode::BadRequest,
            _ => ErrorCode::ResolutionFailed,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<ExportError> for Failure {
    fn from(error: ExportError) -> Failure {
        let code = match &error {
            ExportError::InvalidName { .. } => ErrorCode::BadRequest,
            ExportError::TooLarge { .. } => ErrorCode::TooLarge,
            ExportError::KeyCollision { .. }
            | ExportError::NulInValue { .. }
            | ExportError::InvalidKey { .. } => ErrorCode::ResolutionFailed,
            ExportError::Render { .. } => ErrorCode::Internal,
        };
        Failure::new(code, error.to_string())
    }
}

fn problems_failure(problems: Vec<Problem>) -> Failure {
    let names: Vec<String> = problems.iter().map(|p| p.reference.clone()).collect();
    Failure {
        code: ErrorCode::ResolutionFailed,
        message: format!(
            "{} reference(s) could not be resolved: {}",
            problems.len(),
            names.join(", ")
        ),
        details: Some(json!({ "problems": problems })),
    }
}

enum Target {
    Entry(Box<Effective>),
    Tree(Vec<Effective>),
    Children(Vec<String>),
    Bundle {
        items: Vec<(Effective, bool)>,
        format: ExportFormat,
        name: String,
    },
}

/// What a read will answer, before secrets are fetched.
pub struct Plan {
    path: ConfigPath,
    chain: Chain,
    resolve: bool,
    explain: bool,
    target: Target,
    secrets: BTreeSet<String>,
    revision: Revision,
}

/// The rendered answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The snapshot's revision the answer was computed from.
    pub revision: Revision,
}

fn forbidden(message: String) -> Failure {
    Failure::new(ErrorCode::Forbidden, message)
}

/// Decides the answer to `query` on `path` from `snapshot`, for a caller holding `grants`:
/// subtrees and listings include only what the caller may read (in the environment: on every
/// layer, see [`EffectiveGrants`]); secrets need `secrets:read` on every layer of every path
/// whose value references one.
pub fn plan(
    snapshot: &Snapshot,
    path: &ConfigPath,
    query: &ReadQuery,
    grants: &Grants,
) -> Result<Plan, Failure> {
    if !grants.can_read_somewhere_below(path) {
        return Err(forbidden(format!("the caller may not read {path}")));
    }
    plain_only(path)?;
    if env::is_reserved(path) {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "{path} is under /env: read the base path with ?env=… to resolve it, or read the override itself without env, resolve, explain or format"
            ),
        ));
    }
    let chain = match &query.env {
        Some(name) => Environments::from_snapshot(snapshot).chain(name)?,
        None => Chain::base(),
    };
    let access = EffectiveGrants::new(grants, &chain);
    if !access.can_read_somewhere_below(path) {
        return Err(not_readable_in(path, &chain, &access));
    }
    let is_secret =
        |effective: &Effective| !substitute::secret_names(&effective.value, &chain).is_empty();
    let mut secrets = BTreeSet::new();
    let readable = |items: Vec<Effective>| -> Vec<Effective> {
        items
            .into_iter()
            .filter(|e| access.allows(&e.path, Action::Read) && !crate::auth::is_system(&e.path))
            .collect()
    };
    let target = if let Some(format) = query.format {
        let items = readable(resolve::effective_below(snapshot, &chain, path));
        if items.is_empty() {
            return Err(nothing_at(path, &chain));
        }
        let name = match format {
            ExportFormat::ConfigMap | ExportFormat::Secret => {
                export::resource_name(path, query.name.as_deref())?
            }
            _ => String::new(),
        };
        let items: Vec<(Effective, bool)> = items
            .into_iter()
            .map(|effective| {
                let secret = is_secret(&effective);
                (effective, secret)
            })
            .collect();
        for (effective, secret) in &items {
            let wanted = match format {
                ExportFormat::ConfigMap => false,
                ExportFormat::Secret => *secret,
                _ => true,
            };
            if wanted {
                secrets.extend(substitute::secret_names(&effective.value, &chain));
            }
        }
        Target::Bundle {
            items,
            format,
            name,
        }
    } else if let Some(effective) =
        resolve::effective(snapshot, &chain, path).filter(|_| access.allows(path, Action::Read))
    {
        if query.resolve {
            secrets.extend(substitute::secret_names(&effective.value, &chain));
        }
        Target::Entry(Box::new(effective))
    } else if query.resolve {
        let items = readable(resolve::effective_below(snapshot, &chain, path));
        if items.is_empty() {
            return Err(nothing_at(path, &chain));
        }
        for effective in &items {
            secrets.extend(substitute::secret_names(&effective.value, &chain));
        }
        Target::Tree(items)
    } else {
        let mut children = resolve::children(snapshot, &chain, path);
        children.retain(|child| {
            path.join(child)
                .is_ok_and(|p| access.can_read_somewhere_below(&p) && !crate::auth::is_system(&p))
        });
        if children.is_empty() && !path.is_root() {
            return Err(nothing_at(path, &chain));
        }
        Target::Children(children)
    };
    // The layer each secret-bearing value lacks `secrets:read` on.
    let unresolvable = |e: &Effective| access.missing(&e.path, Action::SecretsRead);
    let unreadable: Vec<String> = match &target {
        Target::Entry(effective) if !secrets.is_empty() => {
            unresolvable(effective).into_iter().collect()
        }
        Target::Tree(items) => items
            .iter()
            .filter(|e| !substitute::secret_names(&e.value, &chain).is_empty())
            .filter_map(unresolvable)
            .collect(),
        Target::Bundle { items, format, .. } if *format != ExportFormat::ConfigMap => items
            .iter()
            .filter(|(_, secret)| *secret)
            .filter_map(|(e, _)| unresolvable(e))
            .collect(),
        _ => Vec::new(),
    };
    if !unreadable.is_empty() {
        return Err(Failure {
            code: ErrorCode::Forbidden,
            message: format!(
                "resolving secret references needs secrets:read on {}",
                unreadable.join(", ")
            ),
            details: Some(json!({ "paths": unreadable })),
        });
    }
    Ok(Plan {
        path: path.clone(),
        chain,
        resolve: query.resolve,
        explain: query.explain,
        target,
        secrets,
        revision: snapshot.revision(),
    })
}

/// System records (`/_setpoint/…`) are read only as they are: no environment layers them, and
/// an effective or resolved read would show an account record's key hashes.
pub fn plain_only(path: &ConfigPath) -> Result<(), Failure> {
    if !crate::auth::is_system(path) {
        return Ok(());
    }
    Err(Failure::new(
        ErrorCode::BadRequest,
        format!("{path} is a system record: read it without env, resolve, explain or format"),
    ))
}

/// The refusal of an effective read the caller may not do anywhere at or below `path`: it names
/// the layers such a read needs (the rule, not where values are), and the first one missing.
fn not_readable_in(path: &ConfigPath, chain: &Chain, access: &EffectiveGrants) -> Failure {
    let environment = chain.name().unwrap_or_default();
    let layers = access.layers(path);
    let missing = access
        .missing(path, Action::Read)
        .unwrap_or_else(|| path.to_string());
    Failure {
        code: ErrorCode::Forbidden,
        message: format!(
            "the caller may not read {path} in environment {environment}: reading it there needs read on {} (the base path and its override in every environment of the chain); {missing} is not granted",
            layers.join(", ")
        ),
        details: Some(json!({ "needs": layers, "missing": missing })),
    }
}

fn nothing_at(path: &ConfigPath, chain: &Chain) -> Failure {
    let place = chain.name().map_or_else(
        || "without an environment".to_owned(),
        |e| format!("in environment {e}"),
    );
    Failure::new(
        ErrorCode::NotFound,
        format!("{path} holds no value and has no children {place}"),
    )
}

/// The value as the API shows it after substitution.
pub(crate) fn shown_value(effective: &Effective, substituted: &Value) -> Value {
    if substituted == &effective.value {
        return effective.api_value();
    }
    match effective.format {
        Format::Yaml => serde_yaml_ng::to_string(substituted)
            .map(Value::String)
            .unwrap_or_else(|_| effective.api_value()),
        Format::Json | Format::Text => substituted.clone(),
    }
}

impl Plan {
    /// Secrets the answer needs (`name` or `name#field`), for the caller to fetch.
    pub fn secret_names(&self) -> &BTreeSet<String> {
        &self.secrets
    }

    /// The requested environment, for the secret provider's path template.
    pub fn environment(&self) -> Option<&str> {
        self.chain.name()
    }

    /// Substitutes and renders; `secrets` holds a value for every name of [`Plan::secret_names`].
    pub fn render(&self, secrets: &BTreeMap<String, String>) -> Result<Rendered, Failure> {
        let substitute = |effective: &Effective| {
            substitute::substitute(
                &effective.value,
                &self.chain,
                secrets,
                effective.path.as_str(),
            )
        };
        let (content_type, body) = match &self.target {
            Target::Entry(effective) => {
                let value = if self.resolve {
                    shown_value(effective, &substitute(effective).map_err(problems_failure)?)
                } else {
                    effective.api_value()
                };
                let top = effective.sources.first();
                let mut body = json!({
                    "path": effective.path.as_str(),
                    "value": value,
                    "format": effective.format.as_str(),
                    "version": top.map(|s| s.version),
                    "revision": top.map(|s| s.revision),
                    "updated_at": top.map(|s| s.updated_at.clone()),
                    "source": top.map(|s| s.path.clone()),
                    "resolved": self.resolve,
                });
                if let Some(name) = self.chain.name() {
                    body["environment"] = json!(name);
                }
                if self.explain {
                    body["provenance"] = effective.explain();
                    body["sources"] = json!(effective.sources);
                }
                ("application/json", json_bytes(&body))
            }
            Target::Tree(items) => {
                let values = self.substitute_all(items.iter().map(|e| (e, true)), secrets)?;
                let tree = resolve::tree(&self.path, values);
                ("application/json", json_bytes(&tree))
            }
            Target::Children(children) => {
                let mut body = json!({
                    "path": self.path.as_str(),
                    "children": children,
                    "revision": self.revision,
                });
                if let Some(name) = self.chain.name() {
                    body["environment"] = json!(name);
                }
                ("application/json", json_bytes(&body))
            }
            Target::Bundle {
                items,
                format,
                name,
            } => {
                let wanted = |secret: bool| match format {
                    ExportFormat::ConfigMap => !secret,
                    ExportFormat::Secret => secret,
                    _ => true,
                };
                let values = self.substitute_all(
                    items.iter().map(|(e, secret)| (e, wanted(*secret))),
                    secrets,
                )?;
                let export_items: Vec<Item> = items
                    .iter()
                    .zip(values.iter())
                    .map(|((effective, secret), (_, value))| Item {
                        path: effective.path.clone(),
                        format: effective.format,
                        value: value.clone(),
                        secret: *secret,
                    })
                    .collect();
                let body = match format {
                    ExportFormat::Json => {
                        let tree = resolve::tree(&self.path, values);
                        let mut text = serde_json::to_vec_pretty(&tree).unwrap_or_default();
                        text.push(b'\n');
                        text
                    }
                    ExportFormat::Yaml => {
                        let tree = resolve::tree(&self.path, values);
                        serde_yaml_ng::to_string(&tree)
                            .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?
                            .into_bytes()
                    }
                    ExportFormat::Dotenv => export::dotenv(&export_items)?.into_bytes(),
                    ExportFormat::ConfigMap => {
                        export::config_map(name, &export_items)?.into_bytes()
                    }
                    ExportFormat::Secret => export::secret(name, &export_items)?.into_bytes(),
                };
                (format.content_type(), body)
            }
        };
        Ok(Rendered {
            content_type,
            body,
            revision: self.revision,
        })
    }

    /// Substitutes every item marked wanted (others keep their raw value), collecting every
    /// problem of every item before failing.
    fn substitute_all<'a>(
        &self,
        items: impl Iterator<Item = (&'a Effective, bool)>,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<(ConfigPath, Value)>, Failure> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (effective, wanted) in items {
            if !wanted {
                out.push((effective.path.clone(), effective.value.clone()));
                continue;
            }
            match substitute::substitute(
                &effective.value,
                &self.chain,
                secrets,
                effective.path.as_str(),
            ) {
                Ok(value) => out.push((effective.path.clone(), value)),
                Err(found) => problems.extend(found),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems_failure(problems))
        }
    }
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::Grant;
    use crate::snapshot::Entry;
    use crate::{Format, ParsedValue};

    fn entry(path: &str, value: Value) -> Entry {
        Entry {
            path: ConfigPath::parse(path).unwrap(),
            value: ParsedValue::from_request(value, Some(Format::Json)).unwrap(),
            version: 1,
            revision: 1,
            updated_at: String::new(),
        }
    }

    /// dev, prod and prod-eu (under prod); myapp with a prod override and a secret.
    fn snapshot() -> Snapshot {
        Snapshot::from_entries(
            1,
            [
                entry("/env/dev", json!({})),
                entry("/env/prod", json!({})),
                entry("/env/prod-eu", json!({"parent": "prod"})),
                entry("/myapp/db/host", json!("localhost")),
                entry("/myapp/db/password", json!("${secret:pw}")),
                entry("/myapp/url", json!("http://base")),
                entry("/env/prod/myapp/db/host", json!("prod-db")),
            ],
        )
    }

    fn grants(list: &[(&str, &[&str])]) -> Grants {
        let list: Vec<Grant> = list
            .iter()
            .map(|(prefix, actions)| {
                serde_json::from_value(json!({"prefix": prefix, "actions": actions})).unwrap()
            })
            .collect();
        Grants::parse(&list).unwrap()
    }

    fn query(raw: &str) -> ReadQuery {
        let pairs: Vec<(&str, &str)> = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        ReadQuery::from_params(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
            .unwrap()
    }

    /// The read's body (secrets rendered as `S`), or its error code.
    fn read(list: &[(&str, &[&str])], path: &str, raw: &str) -> Result<String, ErrorCode> {
        let plan = plan(
            &snapshot(),
            &ConfigPath::parse(path).unwrap(),
            &query(raw),
            &grants(list),
        )
        .map_err(|f| f.code)?;
        let secrets = plan
            .secret_names()
            .iter()
            .map(|name| (name.clone(), "S".to_owned()))
            .collect();
        let rendered = plan.render(&secrets).map_err(|f| f.code)?;
        Ok(String::from_utf8(rendered.body).unwrap())
    }

    const READ: &[&str] = &["read"];
    const SECRETS: &[&str] = &["read", "secrets:read"];

    #[test]
    fn environment_grants_apply_to_effective_reads() {
        let base_only: &[(&str, &[&str])] = &[("/myapp", READ)];
        let base_and_env: &[(&str, &[&str])] = &[("/myapp", READ), ("/env/prod/myapp", READ)];
        let env_only: &[(&str, &[&str])] = &[("/env/prod/myapp", READ)];
        let forbidden = Err(ErrorCode::Forbidden);
        for raw in [
            "env=prod",
            "env=prod&resolve=true",
            "env=prod&explain=true",
            "env=prod&format=dotenv",
        ] {
            // Base only: refused in prod — with or without an override at the path, so the
            // refusal tells nothing about overrides — and served without an environment.
            assert_eq!(read(base_only, "/myapp/db/host", raw), forbidden, "{raw}");
            assert_eq!(read(base_only, "/myapp/url", raw), forbidden, "{raw}");
            assert_eq!(read(base_only, "/myapp", raw), forbidden, "{raw}");
            assert_eq!(read(env_only, "/myapp/db/host", raw), forbidden, "{raw}");
            let plain = raw.replace("env=prod", "env=");
            assert!(read(base_only, "/myapp/url", &plain).is_ok(), "{plain}");
            let body = read(base_and_env, "/myapp/db/host", raw).unwrap();
            assert!(body.contains("prod-db"), "{raw}: {body}");
        }
        // A listing of a prefix in prod.
        assert_eq!(read(base_only, "/myapp", "env=prod"), forbidden);
        let listing = read(base_and_env, "/myapp", "env=prod").unwrap();
        assert!(listing.contains(r#""children":["db","url"]"#), "{listing}");
        // A child environment needs its parent's layer too.
        assert_eq!(
            read(base_and_env, "/myapp/db/host", "env=prod-eu"),
            forbidden
        );
        let with_eu: &[(&str, &[&str])] = &[
            ("/myapp", READ),
            ("/env/prod/myapp", READ),
            ("/env/prod-eu/myapp", READ),
        ];
        assert!(
            read(with_eu, "/myapp/db/host", "env=prod-eu")
                .unwrap()
                .contains("prod-db")
        );
        // Read on / is unchanged.
        let everything: &[(&str, &[&str])] = &[("/", SECRETS)];
        for raw in [
            "env=prod-eu",
            "env=prod&resolve=true",
            "env=dev&format=json",
        ] {
            assert!(read(everything, "/myapp/db", raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn subtrees_and_listings_in_an_environment_hold_only_what_every_layer_grants() {
        // Base on all of myapp, prod only on myapp/db.
        let split: &[(&str, &[&str])] = &[("/myapp", SECRETS), ("/env/prod/myapp/db", SECRETS)];
        let listing = read(split, "/myapp", "env=prod").unwrap();
        assert!(listing.contains(r#""children":["db"]"#), "{listing}");
        let tree: Value =
            serde_json::from_str(&read(split, "/myapp", "env=prod&resolve=true").unwrap()).unwrap();
        assert_eq!(tree, json!({"db": {"host": "prod-db", "password": "S"}}));
        let dotenv = read(split, "/myapp", "env=prod&format=dotenv").unwrap();
        assert!(
            dotenv.contains("MYAPP_DB_HOST") && !dotenv.contains("MYAPP_URL"),
            "{dotenv}"
        );
        assert_eq!(
            read(split, "/myapp/url", "env=prod"),
            Err(ErrorCode::Forbidden)
        );
        // Without an environment the base grant alone decides, as before.
        let plain = read(split, "/myapp", "format=dotenv").unwrap();
        assert!(plain.contains("MYAPP_URL"), "{plain}");
    }

    #[test]
    fn secrets_in_an_environment_need_secrets_read_on_every_layer() {
        let path = "/myapp/db/password";
        // secrets:read on the base path alone no longer resolves prod's secrets.
        let base_secrets: &[(&str, &[&str])] = &[("/myapp", SECRETS), ("/env/prod/myapp", READ)];
        let failure = plan(
            &snapshot(),
            &ConfigPath::parse(path).unwrap(),
            &query("env=prod&resolve=true"),
            &grants(base_secrets),
        )
        .err()
        .unwrap();
        assert_eq!(failure.code, ErrorCode::Forbidden);
        assert!(
            failure.message.contains("/env/prod/myapp/db/password"),
            "names the layer: {}",
            failure.message
        );
        // The raw effective value (the reference) needs only read.
        assert!(
            read(base_secrets, path, "env=prod")
                .unwrap()
                .contains("${secret:pw}")
        );
        // secrets:read on the environment alone does not resolve dev's secrets; on both it does.
        let env_secrets: &[(&str, &[&str])] = &[("/myapp", READ), ("/env/dev/myapp", SECRETS)];
        assert_eq!(
            read(env_secrets, path, "env=dev&resolve=true"),
            Err(ErrorCode::Forbidden)
        );
        let both: &[(&str, &[&str])] = &[("/myapp", SECRETS), ("/env/dev/myapp", SECRETS)];
        assert!(
            read(both, path, "env=dev&resolve=true")
                .unwrap()
                .contains("\"S\"")
        );
        // A bundle: the Secret needs it, the ConfigMap (no secrets) does not.
        assert_eq!(
            read(base_secrets, "/myapp", "env=prod&format=k8s-secret"),
            Err(ErrorCode::Forbidden)
        );
        assert!(read(base_secrets, "/myapp", "env=prod&format=k8s-configmap").is_ok());
    }
}

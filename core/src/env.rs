//! Environments: named layers of overrides with a parent each, and variables for `${VAR}`.
//!
//! An environment's definition is stored as an ordinary versioned entry at `/env/{name}` (JSON
//! `{"parent", "description", "variables"}`), so it gets history, diffs, replication to every
//! edge and watch events for free. Its overrides live below it: `/env/{name}/{base path}`.
//! Only the environments API writes definitions; it checks them here first.
//!
//! The hierarchy is a forest: each environment names at most one parent, and following parents
//! never returns to where it started (a cycle is refused when written, and still detected when
//! read, in case two racing writers made one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::{ConfigPath, Version};

/// The reserved first path segment.
pub const ENV_SEGMENT: &str = "env";
/// At most this many levels (an environment and its ancestors); deeper is refused.
pub const MAX_DEPTH: usize = 16;
/// At most this many variables per environment.
pub const MAX_VARIABLES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error(
        "environment name {name:?} is not valid: use 1-63 of a-z, A-Z, 0-9, `.`, `_`, `-`, not starting with `.`"
    )]
    InvalidName { name: String },
    #[error("environment {name:?} does not exist")]
    Unknown { name: String },
    #[error("environment {name:?} names parent {parent:?}, which does not exist")]
    UnknownParent { name: String, parent: String },
    #[error("environment {name:?} would be its own ancestor: {}", cycle.join(" → "))]
    Cycle { name: String, cycle: Vec<String> },
    #[error("environment {name:?} has more than {MAX_DEPTH} levels of ancestors")]
    TooDeep { name: String },
    #[error(
        "variable name {variable:?} is not valid: use A-Z, a-z, 0-9 and `_`, not starting with a digit"
    )]
    InvalidVariableName { variable: String },
    #[error("an environment holds at most {MAX_VARIABLES} variables; this one has {count}")]
    TooManyVariables { count: usize },
    #[error("environment definition is malformed: {reason}")]
    Malformed { reason: String },
}

/// One environment's definition as stored at `/env/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

impl Environment {
    /// Parses and checks a definition (variable names, counts, the parent's name).
    pub fn from_json(value: &serde_json::Value) -> Result<Environment, EnvError> {
        if !value.is_object() {
            return Err(EnvError::Malformed {
                reason: format!(
                    "expected an object {{\"parent\", \"description\", \"variables\"}}, got {}",
                    crate::value::type_name(value)
                ),
            });
        }
        let environment: Environment =
            serde_json::from_value(value.clone()).map_err(|e| EnvError::Malformed {
                reason: e.to_string(),
            })?;
        environment.check()?;
        Ok(environment)
    }

    /// Checks what can be checked without the other environments.
    pub fn check(&self) -> Result<(), EnvError> {
        if let Some(parent) = &self.parent {
            check_name(parent)?;
        }
        if self.variables.len() > MAX_VARIABLES {
            return Err(EnvError::TooManyVariables {
                count: self.variables.len(),
            });
        }
        for name in self.variables.keys() {
            if !is_variable_name(name) {
                return Err(EnvError::InvalidVariableName {
                    variable: name.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the names `${NAME}` may reference.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An environment name is one path segment, at most 63 bytes, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), EnvError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(EnvError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// `/env/{name}`, where the definition is stored.
pub fn definition_path(name: &str) -> Result<ConfigPath, EnvError> {
    check_name(name)?;
    ConfigPath::parse(&format!("/{ENV_SEGMENT}/{name}")).map_err(|_| EnvError::InvalidName {
        name: name.to_owned(),
    })
}

/// The environment a definition path names: `/env/{name}` → `name`.
pub fn definition_name(path: &ConfigPath) -> Option<&str> {
    let mut segments = path.segments();
    match (segments.next(), segments.next(), segments.next()) {
        (Some(ENV_SEGMENT), Some(name), None) => Some(name),
        _ => None,
    }
}

/// `/env/{environment}{base}`: where `base`'s override in `environment` lives.
pub fn override_path(environment: &str, base: &ConfigPath) -> Result<ConfigPath, EnvError> {
    check_name(environment)?;
    let text = if base.is_root() {
        format!("/{ENV_SEGMENT}/{environment}")
    } else {
        format!("/{ENV_SEGMENT}/{environment}{base}")
    };
    ConfigPath::parse(&text).map_err(|e| EnvError::Malformed {
        reason: e.to_string(),
    })
}

/// Splits an override path: `/env/prod/myapp/x` → `("prod", /myapp/x)`. `None` for base paths and
/// for definitions (`/env/prod`).
pub fn split_override(path: &ConfigPath) -> Option<(&str, ConfigPath)> {
    let mut segments = path.segments();
    if segments.next() != Some(ENV_SEGMENT) {
        return None;
    }
    let environment = segments.next()?;
    let rest: Vec<&str> = segments.collect();
    if rest.is_empty() {
        return None;
    }
    let base = ConfigPath::parse(&format!("/{}", rest.join("/"))).ok()?;
    Some((environment, base))
}

/// True for paths under the reserved `env` segment (definitions and overrides).
pub fn is_reserved(path: &ConfigPath) -> bool {
    path.segments().next() == Some(ENV_SEGMENT)
}

/// One level of a resolved chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub name: String,
    pub environment: Environment,
    /// Version of the definition entry.
    pub version: Version,
}

/// An environment and its ancestors, most specific first; empty for "no environment" (base
/// values only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    pub levels: Vec<Level>,
}

impl Chain {
    /// No environment: base values, no variables.
    pub fn base() -> Chain {
        Chain::default()
    }

    /// The requested environment's name, if any.
    pub fn name(&self) -> Option<&str> {
        self.levels.first().map(|level| level.name.as_str())
    }

    /// Looks a variable up in the environment, then in each ancestor.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.levels
            .iter()
            .find_map(|level| level.environment.variables.get(name))
            .map(String::as_str)
    }
}

/// Every defined environment, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environments {
    by_name: BTreeMap<String, (Environment, Version)>,
}

impl Environments {
    /// Reads the definitions held in a snapshot. A definition that does not parse (written
    /// around the API) is left out, as if undefined.
    pub fn from_snapshot(snapshot: &Snapshot) -> Environments {
        let root =
            ConfigPath::parse(&format!("/{ENV_SEGMENT}")).unwrap_or_else(|_| ConfigPath::root());
        let mut by_name = BTreeMap::new();
        for name in snapshot.children(&root) {
            let Ok(path) = definition_path(&name) else {
                continue;
            };
            let Some(entry) = snapshot.get(&path) else {
                continue;
            };
            if let Ok(environment) = Environment::from_json(entry.value.structured()) {
                by_name.insert(name, (environment, entry.version));
            }
        }
        Environments { by_name }
    }

    pub fn from_definitions(
        definitions: impl IntoIterator<Item = (String, Environment, Version)>,
    ) -> Environments {
        Environments {
            by_name: definitions
                .into_iter()
                .map(|(name, environment, version)| (name, (environment, version)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Environment> {
        self.by_name.get(name).map(|(environment, _)| environment)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Environment, Version)> {
        self.by_name
            .iter()
            .map(|(name, (environment, version))| (name.as_str(), environment, *version))
    }

    /// Environments whose parent is `name`.
    pub fn children_of(&self, name: &str) -> Vec<&str> {
        self.by_name
            .iter()
            .filter(|(_, (environment, _))| environment.parent.as_deref() == Some(name))
            .map(|(child, _)| child.as_str())
            .collect()
    }

    /// `name` and its ancestors, most specific first.
    pub fn chain(&self, name: &str) -> Result<Chain, EnvError> {
        build_chain(name, |current| self.by_name.get(current).cloned())
    }

    /// Checks that defining (or redefining) `name` as `environment` keeps the hierarchy valid:
    /// the parent exists and no cycle forms.
    pub fn check_update(&self, name: &str, environment: &Environment) -> Result<(), EnvError> {
        check_name(name)?;
        environment.check()?;
        let mut next = self.clone();
        next.by_name
            .insert(name.to_owned(), (environment.clone(), 0));
        next.chain(name).map(|_| ())
    }
}

/// [`Environments::chain`] read straight from a snapshot: one lookup per level instead of
/// parsing every definition, for callers that need one chain per commit (watches).
pub fn chain_of(snapshot: &Snapshot, name: &str) -> Result<Chain, EnvError> {
    build_chain(name, |current| {
        let entry = snapshot.get(&definition_path(current).ok()?)?;
        let environment = Environment::from_json(entry.value.structured()).ok()?;
        Some((environment, entry.version))
    })
}

/// Follows parents from `name` through `lookup` (`None`: undefined), refusing cycles and chains
/// deeper than [`MAX_DEPTH`].
fn build_chain(
    name: &str,
    lookup: impl Fn(&str) -> Option<(Environment, Version)>,
) -> Result<Chain, EnvError> {
    check_name(name)?;
    let mut levels: Vec<Level> = Vec::new();
    let mut current = name.to_owned();
    loop {
        if levels.iter().any(|level| level.name == current) {
            let mut cycle: Vec<String> = levels.iter().map(|l| l.name.clone()).collect();
            cycle.push(current);
            return Err(EnvError::Cycle {
                name: name.to_owned(),
                cycle,
            });
        }
        if levels.len() >= MAX_DEPTH {
            return Err(EnvError::TooDeep {
                name: name.to_owned(),
            });
        }
        let Some((environment, version)) = lookup(&current) else {
            return Err(match levels.last() {
                None => EnvError::Unknown { name: current },
                Some(child) => EnvError::UnknownParent {
                    name: child.name.clone(),
                    parent: current,
                },
            });
        };
        let parent = environment.parent.clone();
        levels.push(Level {
            name: current,
            environment,
            version,
        });
        match parent {
            Some(parent) => current = parent,
            None => return Ok(Chain { levels }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(parent: Option<&str>) -> Environment {
        Environment {
            parent: parent.map(str::to_owned),
            ..Environment::default()
        }
    }

    fn three_levels() -> Environments {
        let mut prod_eu = env(Some("prod"));
        prod_eu.variables.insert("REGION".into(), "eu".into());
        let mut prod = env(None);
        prod.variables.insert("REGION".into(), "global".into());
        prod.variables.insert("DB_HOST".into(), "prod-db".into());
        Environments::from_definitions([
            ("prod-eu-1".into(), env(Some("prod-eu")), 1),
            ("prod-eu".into(), prod_eu, 1),
            ("prod".into(), prod, 1),
            ("dev".into(), env(None), 1),
        ])
    }

    #[test]
    fn chain_runs_from_the_environment_to_its_root() {
        let chain = three_levels().chain("prod-eu-1").unwrap();
        let names: Vec<&str> = chain.levels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["prod-eu-1", "prod-eu", "prod"]);
        assert_eq!(chain.variable("REGION"), Some("eu"));
        assert_eq!(chain.variable("DB_HOST"), Some("prod-db"));
        assert_eq!(chain.variable("NOPE"), None);
    }

    #[test]
    fn unknown_environments_and_parents_are_named() {
        let envs = three_levels();
        assert_eq!(
            envs.chain("qa"),
            Err(EnvError::Unknown { name: "qa".into() })
        );
        let error = envs.check_update("qa", &env(Some("staging"))).unwrap_err();
        assert_eq!(
            error,
            EnvError::UnknownParent {
                name: "qa".into(),
                parent: "staging".into()
            }
        );
    }

    #[test]
    fn cycles_are_refused_with_the_cycle_named() {
        let envs = three_levels();
        let error = envs
            .check_update("prod", &env(Some("prod-eu-1")))
            .unwrap_err();
        assert!(matches!(error, EnvError::Cycle { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("prod → prod-eu-1 → prod-eu → prod"),
            "{error}"
        );
        assert!(matches!(
            envs.check_update("dev", &env(Some("dev"))),
            Err(EnvError::Cycle { .. })
        ));
    }

    #[test]
    fn a_chain_read_from_a_snapshot_equals_the_parsed_one() {
        use crate::snapshot::Entry;
        let entry = |name: &str, value: serde_json::Value| Entry {
            path: definition_path(name).unwrap(),
            value: crate::ParsedValue::from_request(value, None).unwrap(),
            version: 3,
            revision: 1,
            updated_at: String::new(),
        };
        let snapshot = Snapshot::from_entries(
            1,
            [
                entry("prod", serde_json::json!({"variables": {"A": "1"}})),
                entry("prod-eu", serde_json::json!({"parent": "prod"})),
                entry("orphan", serde_json::json!({"parent": "gone"})),
                entry("loop-a", serde_json::json!({"parent": "loop-b"})),
                entry("loop-b", serde_json::json!({"parent": "loop-a"})),
                entry("broken", serde_json::json!({"colour": "red"})),
            ],
        );
        let parsed = Environments::from_snapshot(&snapshot);
        for name in [
            "prod", "prod-eu", "orphan", "loop-a", "broken", "nope", "bad/name",
        ] {
            assert_eq!(chain_of(&snapshot, name), parsed.chain(name), "{name}");
        }
        assert_eq!(
            chain_of(&snapshot, "prod-eu").unwrap().variable("A"),
            Some("1")
        );
    }

    #[test]
    fn definitions_are_checked() {
        for bad in [
            serde_json::json!({"variables": {"1X": "a"}}),
            serde_json::json!({"variables": {"A-B": "a"}}),
            serde_json::json!({"parent": "a/b"}),
            serde_json::json!({"colour": "red"}),
            serde_json::json!({"variables": {"A": 1}}),
            serde_json::json!([]),
        ] {
            assert!(Environment::from_json(&bad).is_err(), "{bad}");
        }
        let good =
            serde_json::json!({"parent": "prod", "description": "EU", "variables": {"_A1": "x"}});
        assert_eq!(Environment::from_json(&good).unwrap().to_json(), good);
    }

    #[test]
    fn override_paths_round_trip() {
        let base = ConfigPath::parse("/myapp/db/host").unwrap();
        let path = override_path("prod", &base).unwrap();
        assert_eq!(path.as_str(), "/env/prod/myapp/db/host");
        assert_eq!(split_override(&path), Some(("prod", base)));
        let definition = definition_path("prod").unwrap();
        assert_eq!(split_override(&definition), None);
        assert_eq!(definition_name(&definition), Some("prod"));
        assert_eq!(definition_name(&path), None);
        for bad in ["", ".hidden", "a/b", "x y", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

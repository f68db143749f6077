//! `${VAR}`, `${VAR:default}` and `${secret:name}` references inside string values.
//!
//! Grammar, in any string (a JSON string anywhere in a structured value, or a text value):
//! - `${NAME}`: the variable `NAME` (`[A-Za-z_][A-Za-z0-9_]*`) from the environment, then its
//!   ancestors ([`Chain::variable`]); missing → a problem naming it.
//! - `${NAME:default}`: the same, else the literal `default` (which may be empty, and contains no
//!   `}`).
//! - `${secret:name}`: a secret fetched by the caller from the secret provider; `name` is
//!   `[A-Za-z0-9._/-]+`, optionally `#field`. Missing from the map given → a problem naming it.
//! - `$${...}`: the literal text `${...}` (escape). A `$` not followed by `{` is literal.
//! - A `${` with no closing `}`, or an invalid name inside, is a malformed reference (a problem).
//!
//! Variable values may themselves hold references (variables and secrets); they are expanded
//! recursively, and a reference cycle (`A → B → A`) is a problem naming the cycle. Object keys
//! are never substituted.
//!
//! Problems never carry a secret's value: only names, locations and messages about them. (A
//! secret's value is inserted as is and never scanned for references.)
//!
//! Two limits keep hostile variables from exhausting an edge: variables nest at most
//! [`MAX_NESTING`] deep, and one value's substituted strings hold at most [`MAX_EXPANDED_BYTES`]
//! (variables that use each other twice over grow exponentially). Going past either is reported
//! as a malformed reference, since the value cannot be substituted as written. Identical problems
//! (same location, reference and message) are reported once, and one string's expansion keeps at
//! most [`MAX_PROBLEMS`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::MAX_VALUE_BYTES;
use crate::env::{Chain, is_variable_name};
use crate::resolve::escape_pointer_token;

/// Why a value could not be resolved. `location` is filled in by the caller's context: a JSON
/// pointer within the value, prefixed by the config path when the caller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where: `"/myapp/db/url"` or `"/myapp/db#/pool/dsn"` (path, then pointer when not "").
    pub location: String,
    /// The reference as written, e.g. `${DB_HOST}`, `${secret:db-password}`.
    pub reference: String,
    pub kind: ProblemKind,
    /// Human-readable, names the variable or secret; never a secret value.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    MissingVariable,
    MissingSecret,
    Cycle,
    Malformed,
}

/// Variables nest at most this deep (`${A}` whose value uses `${B}` is two deep).
pub const MAX_NESTING: usize = 64;
/// One value's substituted strings together hold at most this many bytes.
pub const MAX_EXPANDED_BYTES: usize = 4 * MAX_VALUE_BYTES;
/// One string's expansion keeps at most this many problems, identical ones once: variables that
/// use each other twice over would otherwise multiply one missing reference exponentially.
pub const MAX_PROBLEMS: usize = 100;

const SECRET_PREFIX: &str = "secret:";
/// A malformed reference is quoted up to this many characters.
const MAX_QUOTED_CHARS: usize = 64;

/// Secret names (with `#field` if given) referenced by `value`, directly or through the
/// variables it uses. Malformed references are ignored here; [`substitute`] reports them.
pub fn secret_names(value: &serde_json::Value, chain: &Chain) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut visited: HashSet<&str> = HashSet::new();
    let mut texts: Vec<&str> = Vec::new();
    for_each_string(value, &mut |text| texts.push(text));
    // A worklist rather than recursion: variables can chain as deep as there are variables.
    while let Some(text) = texts.pop() {
        for piece in pieces(text) {
            match piece {
                Piece::Secret { name, .. } => {
                    names.insert(name.to_owned());
                }
                Piece::Variable { name, .. } => {
                    if let Some(raw) = chain.variable(name)
                        && visited.insert(name)
                    {
                        texts.push(raw);
                    }
                }
                Piece::Literal(_) | Piece::Malformed { .. } => {}
            }
        }
    }
    names
}

/// True when `value` (not its variables) contains any reference at all (`${`), for callers
/// that want to skip work.
pub fn has_references(value: &serde_json::Value) -> bool {
    let mut found = false;
    for_each_string(value, &mut |text| found = found || text.contains("${"));
    found
}

/// Replaces every reference in `value`'s strings. `location` prefixes every problem's location
/// (normally the config path). All problems are collected, not just the first.
pub fn substitute(
    value: &serde_json::Value,
    chain: &Chain,
    secrets: &BTreeMap<String, String>,
    location: &str,
) -> Result<serde_json::Value, Vec<Problem>> {
    run(value, chain, Some(secrets), location)
}

/// Replaces variable references only: every `${secret:…}` reference (written in the value or
/// reached through a variable) stays in the result as written, and is never a problem. For
/// values pushed to watchers, which never carry secrets (they read them on demand).
pub fn substitute_variables(
    value: &serde_json::Value,
    chain: &Chain,
    location: &str,
) -> Result<serde_json::Value, Vec<Problem>> {
    run(value, chain, None, location)
}

/// `secrets`: `None` keeps secret references as written.
fn run(
    value: &serde_json::Value,
    chain: &Chain,
    secrets: Option<&BTreeMap<String, String>>,
    location: &str,
) -> Result<serde_json::Value, Vec<Problem>> {
    let mut substitution = Substitution {
        expander: Expander {
            chain,
            secrets,
            done: HashMap::new(),
            stack: Vec::new(),
            emitted: 0,
            too_large: false,
        },
        location,
        problems: Vec::new(),
        seen: HashSet::new(),
    };
    let substituted = substitution.value(value, &mut String::new());
    if substitution.problems.is_empty() {
        Ok(substituted)
    } else {
        Err(substitution.problems)
    }
}

/// Calls `visit` on every string of `value` (not on object keys).
fn for_each_string<'a>(value: &'a serde_json::Value, visit: &mut impl FnMut(&'a str)) {
    match value {
        serde_json::Value::String(text) => visit(text),
        serde_json::Value::Array(items) => {
            for item in items {
                for_each_string(item, visit);
            }
        }
        serde_json::Value::Object(object) => {
            for member in object.values() {
                for_each_string(member, visit);
            }
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// A string split into literal text and references.
#[derive(Debug, Clone, PartialEq)]
enum Piece<'a> {
    Literal(&'a str),
    Variable {
        reference: &'a str,
        name: &'a str,
        default: Option<&'a str>,
    },
    Secret {
        reference: &'a str,
        name: &'a str,
    },
    Malformed {
        reference: &'a str,
        reason: Malformed,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Malformed {
    Unclosed,
    Nested,
    VariableName,
    SecretName,
}

/// Splits `text` by the grammar in the module documentation. An escape `$${...}` becomes the
/// literal `${...}` (up to the first `}`, or the end).
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut literal_start = 0;
    let mut at = 0;
    while let Some(offset) = text[at..].find('$') {
        let dollar = at + offset;
        let rest = &text[dollar..];
        let (open, escaped) = if rest.starts_with("$${") {
            (dollar + 3, true)
        } else if rest.starts_with("${") {
            (dollar + 2, false)
        } else {
            at = dollar + 1;
            continue;
        };
        if literal_start < dollar {
            pieces.push(Piece::Literal(&text[literal_start..dollar]));
        }
        let close = text[open..].find('}').map(|offset| open + offset);
        let end = close.map_or(text.len(), |close| close + 1);
        if escaped {
            pieces.push(Piece::Literal(&text[dollar + 1..end]));
        } else {
            let reference = &text[dollar..end];
            pieces.push(match close {
                Some(close) => classify(reference, &text[open..close]),
                None => Piece::Malformed {
                    reference,
                    reason: Malformed::Unclosed,
                },
            });
        }
        at = end;
        literal_start = end;
    }
    if literal_start < text.len() {
        pieces.push(Piece::Literal(&text[literal_start..]));
    }
    pieces
}

/// What `${inner}` refers to.
fn classify<'a>(reference: &'a str, inner: &'a str) -> Piece<'a> {
    let malformed = |reason| Piece::Malformed { reference, reason };
    if inner.contains("${") {
        return malformed(Malformed::Nested);
    }
    if let Some(name) = inner.strip_prefix(SECRET_PREFIX) {
        return if is_secret_name(name) {
            Piece::Secret { reference, name }
        } else {
            malformed(Malformed::SecretName)
        };
    }
    let (name, default) = match inner.split_once(':') {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if is_variable_name(name) {
        Piece::Variable {
            reference,
            name,
            default,
        }
    } else {
        malformed(Malformed::VariableName)
    }
}

/// `[A-Za-z0-9._/-]+`, optionally followed by `#` and `[A-Za-z0-9._-]+`.
fn is_secret_name(name: &str) -> bool {
    let (secret, field) = match name.split_once('#') {
        Some((secret, field)) => (secret, Some(field)),
        None => (name, None),
    };
    let valid = |text: &str, extra: &[char]| {
        !text.is_empty()
            && text.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(&c)
            })
    };
    valid(secret, &['/']) && field.is_none_or(|field| valid(field, &[]))
}

/// A problem found in some string, before it is given a location.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    reference: String,
    kind: ProblemKind,
    message: String,
}

/// A string's expansion: its text, and what went wrong.
#[derive(Debug, Clone, Default)]
struct Expansion {
    text: String,
    problems: Vec<Found>,
}

impl Expansion {
    /// Keeps `found` unless it is already listed or [`MAX_PROBLEMS`] are.
    fn add(&mut self, found: Found) {
        if self.problems.len() < MAX_PROBLEMS && !self.problems.contains(&found) {
            self.problems.push(found);
        }
    }
}

/// Expands strings for one [`substitute`] call.
struct Expander<'a> {
    chain: &'a Chain,
    /// `None`: secret references are kept as written.
    secrets: Option<&'a BTreeMap<String, String>>,
    /// Finished expansions of variables: each is expanded once per call, however often used.
    done: HashMap<String, Expansion>,
    /// The variables being expanded, outermost first.
    stack: Vec<String>,
    /// Bytes of the value's finished strings.
    emitted: usize,
    /// Set once [`MAX_EXPANDED_BYTES`] was exceeded: expansion stops and reports it once.
    too_large: bool,
}

impl Expander<'_> {
    fn expand(&mut self, text: &str) -> Expansion {
        let mut out = Expansion::default();
        for piece in pieces(text) {
            if self.too_large {
                break;
            }
            let reference = match piece {
                Piece::Literal(literal) => {
                    out.text.push_str(literal);
                    ""
                }
                Piece::Secret { reference, name } => {
                    match self.secrets.map(|secrets| secrets.get(name)) {
                        None => out.text.push_str(reference),
                        Some(Some(secret)) => out.text.push_str(secret),
                        Some(None) => out.add(self.found(
                            reference,
                            ProblemKind::MissingSecret,
                            format!("secret `{name}` is not available from the secret provider"),
                        )),
                    }
                    reference
                }
                Piece::Variable {
                    reference,
                    name,
                    default,
                } => {
                    let expansion = self.variable(reference, name, default);
                    out.text.push_str(&expansion.text);
                    for found in expansion.problems {
                        out.add(found);
                    }
                    reference
                }
                Piece::Malformed { reference, reason } => {
                    out.add(self.malformed(reference, reason));
                    reference
                }
            };
            if !self.too_large && self.emitted + out.text.len() > MAX_EXPANDED_BYTES {
                self.too_large = true;
                let message = if reference.is_empty() {
                    format!("the substituted value is larger than {MAX_EXPANDED_BYTES} bytes")
                } else {
                    format!(
                        "substituting `{}` makes the value larger than {MAX_EXPANDED_BYTES} bytes",
                        quote(reference)
                    )
                };
                out.add(self.found(reference, ProblemKind::Malformed, message));
            }
        }
        out
    }

    /// The expansion of `${name}` (or `${name:default}`) as written in `reference`.
    fn variable(&mut self, reference: &str, name: &str, default: Option<&str>) -> Expansion {
        if let Some(start) = self.stack.iter().position(|open| open == name) {
            let cycle: Vec<&str> = self.stack[start..]
                .iter()
                .map(String::as_str)
                .chain([name])
                .collect();
            let message = format!(
                "variables reference each other in a cycle: {}",
                cycle.join(" → ")
            );
            return self.failed(reference, ProblemKind::Cycle, message);
        }
        if let Some(done) = self.done.get(name) {
            return done.clone();
        }
        let Some(raw) = self.chain.variable(name) else {
            if let Some(default) = default {
                return Expansion {
                    text: default.to_owned(),
                    problems: Vec::new(),
                };
            }
            let message = match self.chain.name() {
                Some(environment) => format!(
                    "variable `{name}` is not defined in environment `{environment}` or its ancestors, and the reference has no default"
                ),
                None => format!(
                    "variable `{name}` is not defined (no environment was asked for), and the reference has no default"
                ),
            };
            return self.failed(reference, ProblemKind::MissingVariable, message);
        };
        if self.stack.len() >= MAX_NESTING {
            let message =
                format!("variable `{name}` is nested more than {MAX_NESTING} variables deep");
            return self.failed(reference, ProblemKind::Malformed, message);
        }
        self.stack.push(name.to_owned());
        let expansion = self.expand(raw);
        self.stack.pop();
        self.done.insert(name.to_owned(), expansion.clone());
        expansion
    }

    fn failed(&self, reference: &str, kind: ProblemKind, message: String) -> Expansion {
        Expansion {
            text: String::new(),
            problems: vec![self.found(reference, kind, message)],
        }
    }

    fn malformed(&self, reference: &str, reason: Malformed) -> Found {
        let quoted = quote(reference);
        let message = match reason {
            Malformed::Unclosed => format!("reference `{quoted}` has no closing `}}`"),
            Malformed::Nested => format!(
                "reference `{quoted}` holds another `${{`: references do not nest, and defaults are literal text"
            ),
            Malformed::VariableName => format!(
                "malformed reference `{quoted}`: a variable name uses A-Z, a-z, 0-9 and `_`, and does not start with a digit"
            ),
            Malformed::SecretName => format!(
                "malformed reference `{quoted}`: a secret name uses A-Z, a-z, 0-9, `.`, `_`, `/` and `-`, optionally followed by `#field`"
            ),
        };
        self.found(reference, ProblemKind::Malformed, message)
    }

    /// A problem found while expanding the innermost open variable (if any), which it names.
    fn found(&self, reference: &str, kind: ProblemKind, message: String) -> Found {
        let message = match self.stack.last() {
            Some(variable) => format!("{message} (in the value of variable `{variable}`)"),
            None => message,
        };
        Found {
            reference: quote(reference),
            kind,
            message,
        }
    }
}

/// `reference`, cut to [`MAX_QUOTED_CHARS`] characters (an unclosed `${` runs to the end).
fn quote(reference: &str) -> String {
    match reference.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &reference[..cut]),
        None => reference.to_owned(),
    }
}

/// One [`substitute`] call: walks the value, keeping pointers for problems' locations.
struct Substitution<'a> {
    expander: Expander<'a>,
    location: &'a str,
    problems: Vec<Problem>,
    seen: HashSet<(String, String, String)>,
}

impl Substitution<'_> {
    fn value(&mut self, value: &serde_json::Value, pointer: &mut String) -> serde_json::Value {
        match value {
            serde_json::Value::String(text) => {
                serde_json::Value::String(self.string(text, pointer))
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.member(item, pointer, &index.to_string()))
                    .collect(),
            ),
            serde_json::Value::Object(object) => serde_json::Value::Object(
                object
                    .iter()
                    .map(|(key, member)| {
                        let token = escape_pointer_token(key);
                        (key.clone(), self.member(member, pointer, &token))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn member(
        &mut self,
        value: &serde_json::Value,
        pointer: &mut String,
        token: &str,
    ) -> serde_json::Value {
        let length = pointer.len();
        pointer.push('/');
        pointer.push_str(token);
        let substituted = self.value(value, pointer);
        pointer.truncate(length);
        substituted
    }

    fn string(&mut self, text: &str, pointer: &str) -> String {
        if !text.contains("${") {
            return text.to_owned();
        }
        let expansion = self.expander.expand(text);
        self.expander.emitted += expansion.text.len();
        for found in expansion.problems {
            let location = if pointer.is_empty() {
                self.location.to_owned()
            } else {
                format!("{}#{pointer}", self.location)
            };
            let key = (
                location.clone(),
                found.reference.clone(),
                found.message.clone(),
            );
            if self.seen.insert(key) {
                self.problems.push(Problem {
                    location,
                    reference: found.reference,
                    kind: found.kind,
                    message: found.message,
                });
            }
        }
        expansion.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Environment, Environments};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const PASSWORD: &str = "hunter2-s3cret";

    fn environment(parent: Option<&str>, variables: &[(&str, &str)]) -> Environment {
        Environment {
            parent: parent.map(str::to_owned),
            description: None,
            variables: variables
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    /// prod-eu → prod; "" is no environment.
    fn chain(name: &str) -> Chain {
        if name.is_empty() {
            return Chain::base();
        }
        let prod = environment(
            None,
            &[
                ("DB_HOST", "prod-db"),
                ("PORT", "5432"),
                ("URL", "postgres://${DB_HOST}:${PORT}/${DB_NAME:app}"),
                ("A", "${B}"),
                ("B", "x${A}"),
                ("SELF", "${SELF}"),
                ("LIT", "$${HOME}"),
                ("PASS_REF", "${secret:db-password}"),
                ("BAD", "${1X}"),
                ("MISSING_INNER", "${NOPE}"),
                ("EMPTY", ""),
                ("TWICE", "${NOPE}${NOPE}"),
            ],
        );
        let prod_eu = environment(Some("prod"), &[("DB_HOST", "eu-db"), ("REGION", "eu")]);
        Environments::from_definitions([
            ("prod".to_owned(), prod, 1),
            ("prod-eu".to_owned(), prod_eu, 1),
        ])
        .chain(name)
        .unwrap()
    }

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("db-password".to_owned(), PASSWORD.to_owned()),
            ("db/creds#user".to_owned(), "admin".to_owned()),
        ])
    }

    /// Substitutes `text` in `env`; problems as `(kind, reference)`.
    fn check(env: &str, text: &str, expected: Result<&str, &[(ProblemKind, &str)]>) {
        let got = substitute(&json!(text), &chain(env), &secrets(), "/app/x");
        let got = got.map_err(|problems| {
            for problem in &problems {
                assert_eq!(problem.location, "/app/x", "{text:?}");
                assert!(!problem.message.contains(PASSWORD), "{problem:?}");
            }
            problems
                .into_iter()
                .map(|p| (p.kind, p.reference))
                .collect::<Vec<_>>()
        });
        let expected = expected.map(|text| json!(text)).map_err(|problems| {
            problems
                .iter()
                .map(|(kind, reference)| (*kind, (*reference).to_owned()))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, expected, "{text:?} in {env:?}");
    }

    use ProblemKind::{Cycle, Malformed, MissingSecret, MissingVariable};

    #[test]
    fn variables_and_defaults() {
        let cases: &[(&str, &str, &str)] = &[
            ("prod", "plain", "plain"),
            ("prod", "${DB_HOST}", "prod-db"),
            ("prod-eu", "${DB_HOST}", "eu-db"),
            (
                "prod-eu",
                "host=${DB_HOST}, region=${REGION}.",
                "host=eu-db, region=eu.",
            ),
            ("prod", "${NOPE:fallback}", "fallback"),
            ("prod", "${NOPE:}", ""),
            ("prod", "${NOPE:a:b c/d$}", "a:b c/d$"),
            ("prod", "${DB_HOST:unused}", "prod-db"),
            // Defined but empty is defined.
            ("prod", "[${EMPTY:x}]", "[]"),
            ("", "${NOPE:base}", "base"),
        ];
        for (env, text, expected) in cases {
            check(env, text, Ok(expected));
        }
    }

    #[test]
    fn variable_values_expand_recursively_in_the_requested_environment() {
        check("prod", "${URL}", Ok("postgres://prod-db:5432/app"));
        check("prod-eu", "${URL}", Ok("postgres://eu-db:5432/app"));
        check("prod", "${PASS_REF}", Ok(PASSWORD));
        // An escape inside a variable stays literal: it is not expanded again.
        check("prod", "${LIT}", Ok("${HOME}"));
    }

    #[test]
    fn escapes_and_lone_dollars() {
        let cases: &[(&str, &str)] = &[
            ("$${DB_HOST}", "${DB_HOST}"),
            ("$${secret:db-password}", "${secret:db-password}"),
            ("a $${1X} b ${DB_HOST}", "a ${1X} b prod-db"),
            ("$${unclosed", "${unclosed"),
            ("$$${DB_HOST}", "$${DB_HOST}"),
            ("cost: $5", "cost: $5"),
            ("$", "$"),
            ("a$", "a$"),
            ("$$x", "$$x"),
            ("{}", "{}"),
            ("}${DB_HOST}}", "}prod-db}"),
        ];
        for (text, expected) in cases {
            check("prod", text, Ok(expected));
        }
    }

    #[test]
    fn secrets_by_name_and_field() {
        check("prod", "${secret:db-password}", Ok(PASSWORD));
        check("", "u=${secret:db/creds#user}", Ok("u=admin"));
        check(
            "prod",
            "${secret:db/creds#pass}",
            Err(&[(MissingSecret, "${secret:db/creds#pass}")]),
        );
    }

    #[test]
    fn variables_only_keeps_secret_references_as_written() {
        let cases: &[(&str, &str, Result<&str, ProblemKind>)] = &[
            (
                "prod",
                "${DB_HOST}:${secret:db-password}",
                Ok("prod-db:${secret:db-password}"),
            ),
            ("prod", "${PASS_REF}", Ok("${secret:db-password}")),
            ("prod", "${secret:nope#f}", Ok("${secret:nope#f}")),
            ("prod", "$${secret:x}", Ok("${secret:x}")),
            ("", "${secret:db/creds#user}", Ok("${secret:db/creds#user}")),
            ("prod", "${NOPE} ${secret:a}", Err(MissingVariable)),
            ("prod", "${secret:bad name}", Err(Malformed)),
        ];
        for (env, text, expected) in cases {
            let got = substitute_variables(&json!(text), &chain(env), "/app/x")
                .map_err(|problems| problems[0].kind);
            assert_eq!(got, expected.map(|t| json!(t)), "{text:?} in {env:?}");
        }
    }

    #[test]
    fn every_missing_reference_is_listed() {
        check(
            "prod",
            "${X1} and ${X2:ok} and ${secret:nope} and ${X3} and ${X1}",
            Err(&[
                (MissingVariable, "${X1}"),
                (MissingSecret, "${secret:nope}"),
                (MissingVariable, "${X3}"),
            ]),
        );
        check("", "${DB_HOST}", Err(&[(MissingVariable, "${DB_HOST}")]));
        check(
            "prod",
            "${MISSING_INNER}",
            Err(&[(MissingVariable, "${NOPE}")]),
        );
        check("prod", "${TWICE}", Err(&[(MissingVariable, "${NOPE}")]));
    }

    #[test]
    fn messages_name_what_is_missing() {
        let problems = substitute(
            &json!({"a": "${MISSING_INNER}", "b": "${secret:nope}", "c": "${X}"}),
            &chain("prod"),
            &secrets(),
            "/app/x",
        )
        .unwrap_err();
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "variable `NOPE` is not defined in environment `prod` or its ancestors, and the reference has no default (in the value of variable `MISSING_INNER`)",
                "secret `nope` is not available from the secret provider",
                "variable `X` is not defined in environment `prod` or its ancestors, and the reference has no default",
            ]
        );
    }

    #[test]
    fn cycles_are_named() {
        let problems = substitute(&json!("${SELF}"), &chain("prod"), &secrets(), "/c").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].kind, Cycle);
        assert_eq!(problems[0].reference, "${SELF}");
        assert!(
            problems[0].message.contains("SELF → SELF"),
            "{}",
            problems[0].message
        );

        let problems =
            substitute(&json!("${A} ${B}"), &chain("prod"), &secrets(), "/c").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, Cycle);
        assert!(
            problems[0].message.contains("A → B → A"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn malformed_references() {
        let cases: &[(&str, &str)] = &[
            ("${", "${"),
            ("x ${1X} y", "${1X}"),
            ("${secret:}", "${secret:}"),
            ("${}", "${}"),
            ("${:default}", "${:default}"),
            ("${A B}", "${A B}"),
            ("${secret:a#}", "${secret:a#}"),
            ("${secret:a b}", "${secret:a b}"),
            ("${secret:a#b/c}", "${secret:a#b/c}"),
            ("${secret:x:y}", "${secret:x:y}"),
            ("host ${DB_HOST", "${DB_HOST"),
            ("${A:${B}}", "${A:${B}"),
        ];
        for (text, reference) in cases {
            check("prod", text, Err(&[(Malformed, reference)]));
        }
        // Inside a variable's value, with the variable named.
        let problems = substitute(&json!("${BAD}"), &chain("prod"), &secrets(), "/m").unwrap_err();
        assert_eq!(
            (problems[0].kind, problems[0].reference.as_str()),
            (Malformed, "${1X}")
        );
        assert!(
            problems[0].message.contains("`BAD`"),
            "{}",
            problems[0].message
        );
        // A long unclosed reference is quoted short.
        let long = format!("${{{}", "x".repeat(500));
        let problems = substitute(&json!(long), &chain("prod"), &secrets(), "/m").unwrap_err();
        assert_eq!(problems[0].reference.chars().count(), MAX_QUOTED_CHARS + 1);
    }

    #[test]
    fn a_secret_value_never_appears_in_problems() {
        for text in [
            "${secret:db-password} ${1X",
            "${secret:db-password}${",
            "${PASS_REF}${secret:nope}${NOPE}${A}",
            "${secret:db-password}${secret:db-password:x}",
        ] {
            let problems = substitute(
                &json!({"v": text, "w": [text]}),
                &chain("prod"),
                &secrets(),
                "/s",
            )
            .unwrap_err();
            assert!(!problems.is_empty());
            let shown = format!("{problems:?} {}", serde_json::to_string(&problems).unwrap());
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
    }

    #[test]
    fn structured_values_keep_keys_and_locate_problems() {
        let value = json!({
            "url": "${URL}",
            "${KEY}": "key stays",
            "list": ["${PORT}", 1, null, true, {"deep": "${DB_HOST}"}],
        });
        assert_eq!(
            substitute(&value, &chain("prod"), &secrets(), "/app/db"),
            Ok(json!({
                "url": "postgres://prod-db:5432/app",
                "${KEY}": "key stays",
                "list": ["5432", 1, null, true, {"deep": "prod-db"}],
            }))
        );
        let value = json!({"a": {"b/c~": "${NOPE}"}, "d": ["ok", "${NOPE}"]});
        let problems = substitute(&value, &chain("prod"), &secrets(), "/app").unwrap_err();
        let locations: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(locations, ["/app#/a/b~1c~0", "/app#/d/1"]);
        let problems =
            substitute(&json!("${NOPE}"), &chain("prod"), &secrets(), "/app").unwrap_err();
        assert_eq!(problems[0].location, "/app");
        assert_eq!(
            serde_json::to_value(&problems[0]).unwrap(),
            json!({
                "location": "/app",
                "reference": "${NOPE}",
                "kind": "missing_variable",
                "message": problems[0].message,
            })
        );
    }

    #[test]
    fn runaway_variables_are_stopped() {
        // V0 uses V1 twice, V1 uses V2 twice, ...: 2^40 copies if nothing stopped it.
        let mut variables: Vec<(String, String)> = (0..40)
            .map(|i| (format!("V{i}"), format!("${{V{}}}${{V{}}}", i + 1, i + 1)))
            .collect();
        variables.push(("V40".to_owned(), "0123456789".to_owned()));
        // D0 → D1 → … → D99: deeper than the nesting limit.
        variables.extend((0..100).map(|i| (format!("D{i}"), format!("${{D{}}}", i + 1))));
        let definition = Environment {
            variables: variables.into_iter().collect(),
            ..Environment::default()
        };
        let chain = Environments::from_definitions([("big".to_owned(), definition, 1)])
            .chain("big")
            .unwrap();
        let problems = substitute(&json!("${V0}"), &chain, &secrets(), "/r").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, Malformed);
        assert!(
            problems[0].message.contains("larger than"),
            "{}",
            problems[0].message
        );
        let problems = substitute(&json!("${D0}"), &chain, &secrets(), "/r").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("nested more than"),
            "{}",
            problems[0].message
        );
        // V23 is 1.25 MiB: one fits, eight together do not.
        let value = Value::Array(vec![json!("${V23}"); 8]);
        assert!(substitute(&value, &chain, &secrets(), "/r").is_err());
        assert!(substitute(&json!("${V23}"), &chain, &secrets(), "/r").is_ok());
    }

    /// Found while fuzzing substitution: each variable's expansion carried its problems to every
    /// use, so 20 variables each using the one below twice, over one missing variable, made
    /// 2^20 copies of one problem (4 s; every two more levels ×4 in time and memory).
    #[test]
    fn variables_doubling_a_missing_reference_do_not_multiply_problems() {
        let mut variables = vec![("V0".to_owned(), "${MISSING}${MISSING}".to_owned())];
        for level in 1..60 {
            let below = format!("${{V{}}}", level - 1);
            variables.push((format!("V{level}"), format!("{below}{below}")));
        }
        let variables: Vec<(&str, &str)> = variables
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let chain =
            Environments::from_definitions([("deep".to_owned(), environment(None, &variables), 1)])
                .chain("deep")
                .unwrap();
        let start = std::time::Instant::now();
        let got = substitute(&json!("${V59}"), &chain, &secrets(), "/app/x");
        assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
        let problems = got.unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, MissingVariable);
        assert_eq!(problems[0].reference, "${MISSING}");
    }

    #[test]
    fn secret_names_follow_variables() {
        let value = json!({
            "a": "${secret:x}",
            "b": ["${PASS_REF}", "${secret:db/creds#user}"],
            "c": "$${secret:escaped}",
            "d": "${secret:} ${secret:bad name}",
            "e": "${A} ${NOPE:${secret:nested}}",
            "${secret:key}": 1,
        });
        let names: Vec<String> = secret_names(&value, &chain("prod")).into_iter().collect();
        assert_eq!(names, ["db-password", "db/creds#user", "x"]);
        let names: Vec<String> = secret_names(&value, &Chain::base()).into_iter().collect();
        assert_eq!(names, ["db/creds#user", "x"]);
    }

    #[test]
    fn has_references_looks_at_strings_only() {
        for (value, expected) in [
            (json!("${X}"), true),
            (json!("$${X}"), true),
            (json!(["a", {"b": "x ${secret:y} z"}]), true),
            (json!({"${X}": 1}), false),
            (json!("$x {y}"), false),
            (json!([1, null, true]), false),
        ] {
            assert_eq!(has_references(&value), expected, "{value}");
        }
    }

    proptest! {
        #[test]
        fn strings_without_dollars_are_unchanged(text in "[^$]{0,40}", key in "[^$]{0,5}") {
            let chain = chain("prod");
            prop_assert_eq!(substitute(&json!(text), &chain, &secrets(), "/p"), Ok(json!(text)));
            let value = json!({key.clone(): [text.clone()]});
            prop_assert_eq!(substitute(&value, &chain, &secrets(), "/p"), Ok(value.clone()));
            prop_assert!(!has_references(&value));
        }

        #[test]
        fn escapes_are_always_literal(inner in "[^}]{0,20}", before in "[^$]{0,5}", after in "[^$]{0,5}") {
            let text = format!("{before}$${{{inner}}}{after}");
            let expected = format!("{before}${{{inner}}}{after}");
            prop_assert_eq!(substitute(&json!(text), &chain("prod"), &secrets(), "/p"), Ok(json!(expected)));
        }

        #[test]
        fn problems_never_show_secret_values(text in "[a-zA-Z0-9_:#/ ${}é→-]{0,40}") {
            let secrets: BTreeMap<String, String> = ["db-password", "x", "A", "a", "1X"]
                .into_iter()
                .map(|name| (name.to_owned(), PASSWORD.to_owned()))
                .collect();
            let text = format!("{text}${{secret:x}}{text}");
            if let Err(problems) = substitute(&json!(text), &chain("prod"), &secrets, "/p") {
                for problem in problems {
                    prop_assert!(!problem.message.contains(PASSWORD), "{:?}", problem);
                    prop_assert!(!problem.reference.contains(PASSWORD), "{:?}", problem);
                }
            }
        }
    }
}

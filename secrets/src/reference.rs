//! Secret references (`name` or `name#field`) and the per-environment path template that turns
//! one into a KV path. Pure: no I/O. Everything that reaches a URL path is checked here, so a
//! reference can never climb out of the configured prefix (`..`), collapse a segment (`.`, `//`)
//! or carry a character that needs escaping.

use crate::SecretError;

/// The environment segment used when a read has no environment.
pub(crate) const BASE_ENVIRONMENT: &str = "base";

/// A parsed reference; borrows from the text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    /// `[A-Za-z0-9._/-]+`, `/`-separated segments, none empty, `.` or `..`.
    pub name: &'a str,
    /// `[A-Za-z0-9._-]+`, when the reference has `#field`.
    pub field: Option<&'a str>,
}

/// Parses `name` or `name#field`.
pub(crate) fn parse(reference: &str) -> Result<Reference<'_>, SecretError> {
    let invalid = |reason: String| SecretError::InvalidName {
        name: reference.to_owned(),
        reason,
    };
    let (name, field) = match reference.split_once('#') {
        Some((name, field)) => (name, Some(field)),
        None => (reference, None),
    };
    check_path("the name", name).map_err(invalid)?;
    if let Some(field) = field {
        check_segment("the field", field).map_err(invalid)?;
    }
    Ok(Reference { name, field })
}

/// The environment's path segment: the environment itself, or `base` without one.
pub(crate) fn environment_segment<'a>(
    environment: Option<&'a str>,
    reference: &str,
) -> Result<&'a str, SecretError> {
    let Some(environment) = environment else {
        return Ok(BASE_ENVIRONMENT);
    };
    // Environments are checked where they are defined (core's `env`); this repeats the part
    // that keeps the rendered path safe.
    let valid = (1..=63).contains(&environment.len())
        && !environment.starts_with('.')
        && environment.chars().all(is_field_char);
    if valid {
        Ok(environment)
    } else {
        Err(SecretError::InvalidName {
            name: reference.to_owned(),
            reason: format!(
                "environment {environment:?} cannot be part of a secret path: use 1-63 of a-z, A-Z, 0-9, `.`, `_`, `-`, not starting with `.`"
            ),
        })
    }
}

/// The KV path of `name` for `environment` (already a checked segment).
pub(crate) fn render(template: &str, environment: &str, name: &str) -> String {
    template
        .replace("{env}", environment)
        .replace("{name}", name)
}

/// A template holds `{name}`, may hold `{env}`, no other placeholder, and renders to a path of
/// safe segments.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    if !template.contains("{name}") {
        return Err(format!(
            "path template {template:?} has no {{name}} placeholder"
        ));
    }
    let rendered = render(template, "env", "name");
    if rendered.contains(['{', '}']) {
        return Err(format!(
            "path template {template:?} has a placeholder other than {{env}} and {{name}}"
        ));
    }
    check_path(&format!("path template {template:?}"), &rendered)
}

/// A mount path (`secret`, `kv/team`, `approle`): the same grammar as a name.
pub(crate) fn check_mount(what: &str, mount: &str) -> Result<(), String> {
    check_path(what, mount)
}

/// A field name: one segment.
pub(crate) fn check_field(what: &str, field: &str) -> Result<(), String> {
    check_segment(what, field)
}

fn check_path(what: &str, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if path.starts_with('/') {
        return Err(format!("{what} starts with `/`"));
    }
    if let Some(c) = path.chars().find(|&c| !is_name_char(c)) {
        return Err(format!(
            "{what} contains {c:?}; use a-z, A-Z, 0-9, `.`, `_`, `-` and `/`"
        ));
    }
    for segment in path.split('/') {
        match segment {
            "" => {
                return Err(format!(
                    "{what} has an empty segment (`//` or a trailing `/`)"
                ));
            }
            "." | ".." => return Err(format!("{what} has a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

fn check_segment(what: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("{what} is empty"));
    }
    match segment.chars().find(|&c| !is_field_char(c)) {
        Some(c) => Err(format!(
            "{what} contains {c:?}; use a-z, A-Z, 0-9, `.`, `_` and `-`"
        )),
        None => Ok(()),
    }
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn is_name_char(c: char) -> bool {
    is_field_char(c) || c == '/'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(reference: &str, expected: Option<(&str, Option<&str>)>) {
        let got = parse(reference).ok().map(|r| (r.name, r.field));
        assert_eq!(got, expected, "parse({reference:?})");
    }

    #[test]
    fn references() {
        check_parse("db", Some(("db", None)));
        check_parse("db-password", Some(("db-password", None)));
        check_parse("team/db.main_1", Some(("team/db.main_1", None)));
        check_parse("db#password", Some(("db", Some("password"))));
        check_parse("a/b/c#user.name-2", Some(("a/b/c", Some("user.name-2"))));
        check_parse(".hidden", Some((".hidden", None)));
        check_parse("a..b", Some(("a..b", None)));
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            "#field",
            "db#",
            "db#a#b",
            "db#a/b",
            "/db",
            "db/",
            "a//b",
            "..",
            "a/../b",
            "../x",
            "a/./b",
            ".",
            "db password",
            "db?x",
            "db%2F",
            "db{name}",
            "ключ",
            "db#päss",
        ] {
            check_parse(bad, None);
            match parse(bad) {
                Err(SecretError::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn environments() {
        assert_eq!(environment_segment(None, "x"), Ok("base"));
        assert_eq!(environment_segment(Some("prod"), "x"), Ok("prod"));
        assert_eq!(
            environment_segment(Some("eu-west.1_a"), "x"),
            Ok("eu-west.1_a")
        );
        for bad in ["", ".hidden", "..", "a/b", "a b", &"e".repeat(64)] {
            assert!(
                matches!(
                    environment_segment(Some(bad), "x"),
                    Err(SecretError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rendering() {
        let t = "setpoint/{env}/{name}";
        assert_eq!(render(t, "prod", "db"), "setpoint/prod/db");
        assert_eq!(render(t, "base", "team/db"), "setpoint/base/team/db");
        assert_eq!(render("{name}", "prod", "db"), "db");
        assert_eq!(render("{name}-{env}", "dev", "db"), "db-dev");
    }

    #[test]
    fn templates() {
        for good in [
            "setpoint/{env}/{name}",
            "{name}",
            "apps/{name}/{env}",
            "x-{env}/{name}",
        ] {
            assert_eq!(check_template(good), Ok(()), "{good:?}");
        }
        for bad in [
            "setpoint/{env}",
            "",
            "/setpoint/{name}",
            "setpoint//{name}",
            "setpoint/{name}/",
            "../{name}",
            "a/{other}/{name}",
            "a/{name",
            "a b/{name}",
            "a/{name}?x",
        ] {
            assert!(check_template(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mounts_and_fields() {
        assert!(check_mount("mount", "secret").is_ok());
        assert!(check_mount("mount", "kv/team").is_ok());
        assert!(check_mount("mount", "").is_err());
        assert!(check_mount("mount", "/secret").is_err());
        assert!(check_mount("mount", "a/../b").is_err());
        assert!(check_field("field", "value").is_ok());
        assert!(check_field("field", "").is_err());
        assert!(check_field("field", "a/b").is_err());
    }
}

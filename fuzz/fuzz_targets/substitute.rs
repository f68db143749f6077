//! `${VAR}`, `${VAR:default}`, `$${…}` and `${secret:…}` substitution with hostile variables:
//! an environment chain of up to three levels whose variables reference one another (cycles,
//! deep chains, exponential fan-out), over a value with references in its strings.
//!
//! Invariants: a value without `${` comes back unchanged; given exactly the secrets
//! `secret_names` lists, no secret is missing; `substitute_variables` never asks for a secret;
//! no problem ever shows a secret's value; results stay bounded. A hang or a memory blowup is
//! a finding too (libFuzzer's `-timeout` and `-rss_limit_mb`).

#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use setpoint_core::env::{Chain, Environment, Level};
use setpoint_core::substitute::{self, MAX_EXPANDED_BYTES, Problem, ProblemKind};
use setpoint_fuzz::{json_with, strings, text};

/// Names the variables use, so references meet definitions often.
const NAMES: &[&str] = &["A", "B", "C", "D", "E", "_x", "DB_HOST", "1X", "a-b", ""];
/// Secret values carry this marker, which an input never holds (such inputs are skipped).
const MARKER: &str = "\u{1f512}SECRET-VALUE";

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((chain, value)) = input(&mut u) else {
        return;
    };
    if contains_marker(&chain, &value) {
        return;
    }

    let names = substitute::secret_names(&value, &chain);
    let secrets: BTreeMap<String, String> = names
        .iter()
        .enumerate()
        .map(|(index, name)| (name.clone(), format!("{MARKER}-{index}")))
        .collect();

    let with_secrets = substitute::substitute(&value, &chain, &secrets, "/app/x");
    check_outcome(&with_secrets);
    if let Err(problems) = &with_secrets {
        assert!(
            problems
                .iter()
                .all(|p| p.kind != ProblemKind::MissingSecret),
            "secret_names missed a secret: {names:?}, {problems:?}"
        );
    }

    let without_secrets = substitute::substitute(&value, &chain, &BTreeMap::new(), "/app/x");
    check_outcome(&without_secrets);

    let variables_only = substitute::substitute_variables(&value, &chain, "/app/x");
    check_outcome(&variables_only);
    if let Err(problems) = &variables_only {
        assert!(
            problems
                .iter()
                .all(|p| p.kind != ProblemKind::MissingSecret),
            "substitute_variables asked for a secret: {problems:?}"
        );
    }

    if !substitute::has_references(&value) {
        assert_eq!(with_secrets.as_ref(), Ok(&value), "no reference, no change");
        assert_eq!(
            variables_only.as_ref(),
            Ok(&value),
            "no reference, no change"
        );
    }
});

fn input(u: &mut Unstructured<'_>) -> Result<(Chain, Value)> {
    let depth = u.int_in_range(0..=3)?;
    let mut levels = Vec::with_capacity(depth);
    for index in 0..depth {
        let mut variables = BTreeMap::new();
        for _ in 0..u.int_in_range(0..=8)? {
            let name = u.choose(NAMES)?.to_string();
            variables.insert(name, reference_text(u)?);
        }
        levels.push(Level {
            name: format!("env{index}"),
            environment: Environment {
                parent: None,
                description: None,
                variables,
            },
            version: 1,
        });
    }
    let value = json_with(u, 3, &mut reference_text, &mut |u| text(u, 2))?;
    Ok((Chain { levels }, value))
}

/// A text of references to [`NAMES`] and secrets, escapes, and literal pieces.
fn reference_text(u: &mut Unstructured<'_>) -> Result<String> {
    let mut out = String::new();
    for _ in 0..u.int_in_range(0..=8)? {
        match u.int_in_range(0..=5)? {
            0 => out.push_str(&format!("${{{}}}", u.choose(NAMES)?)),
            1 => out.push_str(&format!("${{{}:{}}}", u.choose(NAMES)?, text(u, 2)?)),
            2 => out.push_str(&format!(
                "${{secret:{}}}",
                u.choose(&["db", "a/b#f", "x.y", "#", ""])?
            )),
            3 => out.push_str(&format!("$${{{}}}", u.choose(NAMES)?)),
            _ => out.push_str(&text(u, 3)?),
        }
    }
    Ok(out)
}

fn contains_marker(chain: &Chain, value: &Value) -> bool {
    let in_variables = chain
        .levels
        .iter()
        .flat_map(|level| level.environment.variables.iter())
        .any(|(name, text)| name.contains(MARKER) || text.contains(MARKER));
    in_variables || strings(value).iter().any(|text| text.contains(MARKER))
}

/// What any outcome must be: a bounded value, or problems that name without revealing.
fn check_outcome(outcome: &std::result::Result<Value, Vec<Problem>>) {
    match outcome {
        Ok(value) => {
            let size: usize = strings(value).iter().map(|text| text.len()).sum();
            // Keys are copied, not substituted; substituted strings stay within the limit.
            assert!(
                size <= 2 * MAX_EXPANDED_BYTES,
                "substituted value is {size} bytes"
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for problem in problems {
                assert!(
                    !problem.message.contains(MARKER) && !problem.reference.contains(MARKER),
                    "a problem shows a secret value: {problem:?}"
                );
                assert!(problem.location.starts_with("/app/x"), "{problem:?}");
            }
        }
    }
}

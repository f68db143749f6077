//! History retention: which old versions a compaction may remove.
//!
//! A policy keeps the last `keep_versions` versions and/or the versions younger than
//! `keep_seconds`. When both are set a version survives if *either* keeps it (it is removed only
//! when it is outside the last N **and** older than D). The current version is never removed,
//! whatever the policy says. Policies apply per path prefix; the longest matching prefix wins.
//! Time is passed in (unix seconds), never read here.

use std::collections::BTreeSet;

use crate::{ConfigPath, PathError, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub keep_versions: Option<u64>,
    pub keep_seconds: Option<u64>,
}

/// A policy bound to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: ConfigPath,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleParseError {
    #[error("retention rule {input:?} has no `=`: expected PREFIX=keep:N,days:D")]
    MissingEquals { input: String },
    #[error("retention rule {input:?} has an empty prefix: use `/` for every path")]
    EmptyPrefix { input: String },
    #[error("retention prefix {prefix:?} is not a valid path: {source}")]
    InvalidPrefix {
        prefix: String,
        #[source]
        source: PathError,
    },
    #[error("retention rule for {prefix} has no policy: expected keep:N and/or days:D")]
    NoKeys { prefix: String },
    #[error("retention item {item:?} is not KEY:NUMBER (expected keep:N or days:D)")]
    MissingColon { item: String },
    #[error("unknown retention key {key:?}: expected keep or days")]
    UnknownKey { key: String },
    #[error("retention key {key:?} appears more than once")]
    DuplicateKey { key: String },
    #[error("retention {key}:{value} is not a whole number")]
    NotANumber { key: String, value: String },
    #[error("retention {key}:0 would keep nothing; use a positive number or leave the key out")]
    Zero { key: String },
    #[error("retention {key}:{value} is too large")]
    TooLarge { key: String, value: String },
}

const SECONDS_PER_DAY: u64 = 86_400;

impl Rule {
    /// Parses `PREFIX=keep:N`, `PREFIX=days:D`, `PREFIX=keep:N,days:D` (e.g. `/myapp=keep:50,days:30`).
    ///
    /// `days:D` becomes `keep_seconds = D * 86400`. Numbers are positive integers; each key at
    /// most once; spaces around items are ignored.
    pub fn parse(input: &str) -> Result<Rule, RuleParseError> {
        let Some((prefix_text, policy_text)) = input.split_once('=') else {
            return Err(RuleParseError::MissingEquals {
                input: input.to_owned(),
            });
        };
        let prefix_text = prefix_text.trim();
        if prefix_text.is_empty() {
            return Err(RuleParseError::EmptyPrefix {
                input: input.to_owned(),
            });
        }
        let prefix =
            ConfigPath::parse(prefix_text).map_err(|source| RuleParseError::InvalidPrefix {
                prefix: prefix_text.to_owned(),
                source,
            })?;
        if policy_text.trim().is_empty() {
            return Err(RuleParseError::NoKeys {
                prefix: prefix.to_string(),
            });
        }
        let mut policy = Policy {
            keep_versions: None,
            keep_seconds: None,
        };
        for item in policy_text.split(',').map(str::trim) {
            let Some((key, value)) = item.split_once(':') else {
                return Err(RuleParseError::MissingColon {
                    item: item.to_owned(),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            let slot = match key {
                "keep" => &mut policy.keep_versions,
                "days" => &mut policy.keep_seconds,
                _ => {
                    return Err(RuleParseError::UnknownKey {
                        key: key.to_owned(),
                    });
                }
            };
            if slot.is_some() {
                return Err(RuleParseError::DuplicateKey {
                    key: key.to_owned(),
                });
            }
            let number = parse_positive(key, value)?;
            let number = if key == "days" {
                number
                    .checked_mul(SECONDS_PER_DAY)
                    .ok_or_else(|| RuleParseError::TooLarge {
                        key: key.to_owned(),
                        value: value.to_owned(),
                    })?
            } else {
                number
            };
            *slot = Some(number);
        }
        Ok(Rule { prefix, policy })
    }
}

fn parse_positive(key: &str, value: &str) -> Result<u64, RuleParseError> {
    let all_digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if !all_digits {
        return Err(RuleParseError::NotANumber {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    match value.parse::<u64>() {
        Ok(0) => Err(RuleParseError::Zero {
            key: key.to_owned(),
        }),
        Ok(number) => Ok(number),
        // Only digits, so the one way to fail is overflow.
        Err(_) => Err(RuleParseError::TooLarge {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

/// The rule for `path`: the one with the longest prefix containing it.
///
/// Prefixes match segment-wise (`/ab` is not under `/a`); when two rules share the longest
/// prefix, the first one listed wins.
pub fn rule_for<'a>(rules: &'a [Rule], path: &ConfigPath) -> Option<&'a Rule> {
    let mut best: Option<&Rule> = None;
    for rule in rules.iter().filter(|rule| path.starts_with(&rule.prefix)) {
        let longer = best.is_none_or(|b| rule.prefix.segment_count() > b.prefix.segment_count());
        if longer {
            best = Some(rule);
        }
    }
    best
}

/// One stored version as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: Version,
    /// When it was written, unix seconds.
    pub written_at: i64,
}

/// Versions (from `history`, any order) that `policy` lets a compaction remove at time `now`.
/// Never includes `current`. Sorted ascending.
///
/// `keep_versions = N` keeps the N highest versions in `history` (the current one among them);
/// `keep_seconds = D` keeps versions written less than D seconds before `now`. A version is
/// removable only when every rule that is set would drop it, so a policy with neither set removes
/// nothing.
pub fn removable(
    history: &[StoredVersion],
    current: Version,
    policy: &Policy,
    now: i64,
) -> Vec<Version> {
    if policy.keep_versions.is_none() && policy.keep_seconds.is_none() {
        return Vec::new();
    }
    let mut versions: Vec<Version> = history.iter().map(|stored| stored.version).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    let kept_by_count: Option<BTreeSet<Version>> = policy.keep_versions.map(|n| {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        versions.iter().take(n).copied().collect()
    });
    let outside_count = |version: Version| {
        kept_by_count
            .as_ref()
            .is_none_or(|kept| !kept.contains(&version))
    };
    let too_old = |written_at: i64| {
        policy.keep_seconds.is_none_or(|seconds| {
            let max_age = i64::try_from(seconds).unwrap_or(i64::MAX);
            now.saturating_sub(written_at) >= max_age
        })
    };
    let mut out: Vec<Version> = history
        .iter()
        .filter(|stored| stored.version != current)
        .filter(|stored| outside_count(stored.version) && too_old(stored.written_at))
        .map(|stored| stored.version)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    fn path(input: &str) -> ConfigPath {
        ConfigPath::parse(input).expect("test path is valid")
    }

    fn policy(keep_versions: Option<u64>, keep_seconds: Option<u64>) -> Policy {
        Policy {
            keep_versions,
            keep_seconds,
        }
    }

    /// `(prefix, keep_versions, keep_seconds)` or the error message.
    type Expected<'a> = Result<(&'a str, Option<u64>, Option<u64>), &'a str>;

    fn check(input: &str, expected: Expected<'_>) {
        let got = Rule::parse(input).map_err(|e| e.to_string());
        let expected = expected
            .map(|(prefix, keep, seconds)| Rule {
                prefix: path(prefix),
                policy: policy(keep, seconds),
            })
            .map_err(String::from);
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn parse() {
        let cases: Vec<(&str, Expected<'_>)> = vec![
            (
                "/myapp=keep:50,days:30",
                Ok(("/myapp", Some(50), Some(30 * DAY))),
            ),
            (
                "/myapp=days:30,keep:50",
                Ok(("/myapp", Some(50), Some(30 * DAY))),
            ),
            ("/myapp/db=keep:5", Ok(("/myapp/db", Some(5), None))),
            ("myapp/=days:1", Ok(("/myapp", None, Some(DAY)))),
            ("/=keep:10", Ok(("/", Some(10), None))),
            (
                " /a = keep: 3 , days:2 ",
                Ok(("/a", Some(3), Some(2 * DAY))),
            ),
            (
                "/myapp",
                Err("retention rule \"/myapp\" has no `=`: expected PREFIX=keep:N,days:D"),
            ),
            (
                "=keep:1",
                Err("retention rule \"=keep:1\" has an empty prefix: use `/` for every path"),
            ),
            (
                "/a b=keep:1",
                Err(
                    "retention prefix \"/a b\" is not a valid path: path segment \"a b\" contains ' '; allowed are A-Z, a-z, 0-9, `.`, `_`, `-`",
                ),
            ),
            (
                "/a=",
                Err("retention rule for /a has no policy: expected keep:N and/or days:D"),
            ),
            (
                "/a=keep",
                Err("retention item \"keep\" is not KEY:NUMBER (expected keep:N or days:D)"),
            ),
            (
                "/a=keep:1,",
                Err("retention item \"\" is not KEY:NUMBER (expected keep:N or days:D)"),
            ),
            (
                "/a=weeks:2",
                Err("unknown retention key \"weeks\": expected keep or days"),
            ),
            (
                "/a=keep:1,keep:2",
                Err("retention key \"keep\" appears more than once"),
            ),
            (
                "/a=keep:0",
                Err(
                    "retention keep:0 would keep nothing; use a positive number or leave the key out",
                ),
            ),
            (
                "/a=days:0",
                Err(
                    "retention days:0 would keep nothing; use a positive number or leave the key out",
                ),
            ),
            ("/a=keep:-1", Err("retention keep:-1 is not a whole number")),
            ("/a=keep:+1", Err("retention keep:+1 is not a whole number")),
            (
                "/a=days:1.5",
                Err("retention days:1.5 is not a whole number"),
            ),
            ("/a=keep:", Err("retention keep: is not a whole number")),
            (
                "/a=keep:99999999999999999999",
                Err("retention keep:99999999999999999999 is too large"),
            ),
            (
                "/a=days:999999999999999",
                Err("retention days:999999999999999 is too large"),
            ),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    #[test]
    fn rule_for_picks_the_longest_prefix() {
        let rules: Vec<Rule> = [
            "/=keep:1",
            "/myapp=keep:2",
            "/myapp/db=keep:3",
            "/myapp=keep:4",
            "/other=keep:5",
        ]
        .into_iter()
        .map(|input| Rule::parse(input).expect("valid rule"))
        .collect();
        let cases = [
            ("/myapp/db/url", Some(3)),
            ("/myapp/db", Some(3)),
            ("/myapp/dbx", Some(2)),
            ("/myapp", Some(2)),
            ("/myappx", Some(1)),
            ("/", Some(1)),
        ];
        for (subject, keep) in cases {
            let got = rule_for(&rules, &path(subject)).and_then(|rule| rule.policy.keep_versions);
            assert_eq!(got, keep, "{subject}");
        }
        assert_eq!(rule_for(&rules[1..], &path("/x")), None);
    }

    /// Versions 1..=5 written at t = 100, 200, …, 500.
    fn history() -> Vec<StoredVersion> {
        (1..=5)
            .map(|version| StoredVersion {
                version,
                written_at: version as i64 * 100,
            })
            .collect()
    }

    #[test]
    fn removable_versions() {
        // (current, policy, now, expected)
        let cases: Vec<(Version, Policy, i64, Vec<Version>)> = vec![
            (5, policy(None, None), 10_000, vec![]),
            (5, policy(Some(2), None), 600, vec![1, 2, 3]),
            (5, policy(Some(10), None), 600, vec![]),
            (5, policy(Some(1), None), 600, vec![1, 2, 3, 4]),
            // Rolled back to 2: it stays, even outside the last N.
            (2, policy(Some(1), None), 600, vec![1, 3, 4]),
            // Age 600 - 300 = 300 is not younger than 300, so 3 goes.
            (5, policy(None, Some(300)), 600, vec![1, 2, 3]),
            (5, policy(None, Some(1)), 600, vec![1, 2, 3, 4]),
            (1, policy(None, Some(1)), 600, vec![2, 3, 4, 5]),
            // Both: removed only when outside the last 3 and older than 450 s.
            (5, policy(Some(3), Some(450)), 600, vec![1]),
            (5, policy(Some(1), Some(450)), 600, vec![1]),
            (5, policy(Some(3), Some(50)), 600, vec![1, 2]),
            (5, policy(Some(3), Some(u64::MAX)), 600, vec![]),
            // A clock behind the writes keeps everything by age.
            (5, policy(None, Some(10)), 0, vec![]),
        ];
        for (current, policy, now, expected) in cases {
            assert_eq!(
                removable(&history(), current, &policy, now),
                expected,
                "current {current}, {policy:?}, now {now}"
            );
        }
    }

    #[test]
    fn removable_accepts_any_order() {
        let mut shuffled = history();
        shuffled.reverse();
        shuffled.swap(0, 3);
        assert_eq!(
            removable(&shuffled, 5, &policy(Some(2), None), 600),
            vec![1, 2, 3]
        );
        assert_eq!(
            removable(&[], 1, &policy(Some(1), Some(1)), 600),
            Vec::<Version>::new()
        );
    }

    fn any_policy() -> impl Strategy<Value = Policy> {
        (
            proptest::option::of(0u64..8),
            proptest::option::of(0u64..2_000),
        )
            .prop_map(|(keep_versions, keep_seconds)| Policy {
                keep_versions,
                keep_seconds,
            })
    }

    fn any_history() -> impl Strategy<Value = Vec<StoredVersion>> {
        proptest::collection::btree_map(1u64..40, 0i64..2_000, 0..20).prop_map(|versions| {
            versions
                .into_iter()
                .map(|(version, written_at)| StoredVersion {
                    version,
                    written_at,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn removable_is_safe_and_exact(
            history in any_history(),
            current_pick in any::<prop::sample::Index>(),
            policy in any_policy(),
            now in 0i64..3_000,
        ) {
            let current = if history.is_empty() { 1 } else { history[current_pick.index(history.len())].version };
            let got = removable(&history, current, &policy, now);
            prop_assert!(!got.contains(&current));
            prop_assert!(got.windows(2).all(|pair| pair[0] < pair[1]), "sorted and distinct: {:?}", got);
            for version in &got {
                prop_assert!(history.iter().any(|stored| stored.version == *version));
            }
            // Oracle: removed exactly when every set rule drops it.
            let mut descending: Vec<Version> = history.iter().map(|s| s.version).collect();
            descending.sort_unstable_by(|a, b| b.cmp(a));
            for stored in &history {
                let rank = descending.iter().position(|v| *v == stored.version).unwrap_or(usize::MAX);
                let by_count = policy.keep_versions.map(|n| rank as u64 >= n);
                let by_age = policy.keep_seconds.map(|d| now - stored.written_at >= d as i64);
                let expected = stored.version != current
                    && (by_count.is_some() || by_age.is_some())
                    && by_count.unwrap_or(true)
                    && by_age.unwrap_or(true);
                prop_assert_eq!(got.contains(&stored.version), expected, "version {}", stored.version);
            }
            if policy.keep_versions.is_none() && policy.keep_seconds.is_none() {
                prop_assert!(got.is_empty());
            }
        }
    }
}

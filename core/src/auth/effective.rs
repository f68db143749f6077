//! The rule of effective reads: what a caller may read of base paths in one environment.
//!
//! The effective value of base path `P` in environment `E` is made of `P`'s base layer and its
//! override `/env/L` + `P` in every environment `L` of `E`'s chain (`E` and its ancestors). A
//! read shows those layers merged — and `explain` names each of them — so an effective read of
//! `P` in `E` needs the right on `P` *and* on `/env/L` + `P` for every `L` of the chain: on every
//! layer it could reveal, whether or not that layer holds a value now. The rule depends only on
//! the grants and the hierarchy, never on where data happens to be, so a refusal says nothing
//! about which overrides exist. Without an environment the chain is empty and the rule is the
//! plain one ([`Grants::allows`]).
//!
//! One rule for every action an effective read needs — `read` to see a value, `secrets:read` to
//! resolve its `${secret:…}` references — and for every surface that reads effective values:
//! `GET ?env=` with `resolve`, `explain` and `format`, listings of a prefix in an environment,
//! the edge's gRPC `Get`/`Resolve`/`Export`, and watches and sessions with an environment.
//!
//! Layer paths are compared as text, never parsed: an override path near the length limits
//! cannot exist, yet its grants are still decided the same way.

use crate::ConfigPath;
use crate::auth::{Action, Grants, is_system};
use crate::env::{self, Chain};

/// A caller's grants seen through one environment's chain.
#[derive(Debug, Clone)]
pub struct EffectiveGrants<'a> {
    grants: &'a Grants,
    /// `/env/{L}` for every environment `L` of the chain, most specific first.
    roots: Vec<String>,
}

/// `path` (canonical text) is `prefix` or below it, segment-wise.
fn under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl<'a> EffectiveGrants<'a> {
    /// `grants` in the environment whose chain is `chain` (`Chain::base()`: no environment).
    pub fn new(grants: &'a Grants, chain: &Chain) -> EffectiveGrants<'a> {
        EffectiveGrants {
            grants,
            roots: chain
                .levels
                .iter()
                .map(|level| format!("/{}/{}", env::ENV_SEGMENT, level.name))
                .collect(),
        }
    }

    /// The stored paths an effective read of `base` reveals: `base`, then its override path in
    /// each environment of the chain, most specific first.
    pub fn layers(&self, base: &ConfigPath) -> Vec<String> {
        std::iter::once(base.as_str().to_owned())
            .chain(self.roots.iter().map(|root| layer(root, base)))
            .collect()
    }

    /// May the effective value of `base` be read with `action` (every layer allows it)?
    pub fn allows(&self, base: &ConfigPath, action: Action) -> bool {
        self.missing(base, action).is_none()
    }

    /// The first layer of `base` that does not allow `action`, for the refusal's message.
    pub fn missing(&self, base: &ConfigPath, action: Action) -> Option<String> {
        if !self.grants.allows(base, action) {
            return Some(base.as_str().to_owned());
        }
        self.roots
            .iter()
            .map(|root| layer(root, base))
            .find(|layer| !self.allows_text(layer, action))
    }

    /// May `action` be done on the effective values of `prefix` and of everything below it (no
    /// deeper grant takes it away on any layer)? For watches of a whole subtree.
    pub fn allows_all_below(&self, prefix: &ConfigPath, action: Action) -> bool {
        self.grants.allows_all_below(prefix, action)
            && self.roots.iter().all(|root| {
                let layer = layer(root, prefix);
                self.allows_text(&layer, action)
                    && self
                        .grants
                        .grants
                        .iter()
                        .filter(|(p, _)| under(p.as_str(), &layer) && p.as_str() != layer)
                        .all(|(_, actions)| Grants::grants_action(actions, action))
            })
    }

    /// May the caller read the effective value of `prefix` or of some base path below it? For
    /// listings and subtrees; decided from the grants and the chain alone.
    pub fn can_read_somewhere_below(&self, prefix: &ConfigPath) -> bool {
        if self.roots.is_empty() || is_system(prefix) {
            return self.grants.can_read_somewhere_below(prefix);
        }
        // Whether a base path is readable depends only on the longest grant deciding each of its
        // layers, so it is the same for a path as for the deepest of these candidates above it:
        // `prefix` itself, and every grant prefix — a base one, or an override one of the
        // chain seen at its base path — below `prefix`. Checking them all is checking every path.
        self.candidates(prefix)
            .iter()
            .any(|candidate| self.allows(candidate, Action::Read))
    }

    fn candidates(&self, prefix: &ConfigPath) -> Vec<ConfigPath> {
        let mut candidates = vec![prefix.clone()];
        for (granted, _) in &self.grants.grants {
            let base = match env::split_override(granted) {
                Some((name, base)) => {
                    let root = format!("/{}/{name}", env::ENV_SEGMENT);
                    if !self.roots.contains(&root) {
                        continue;
                    }
                    base
                }
                None if env::is_reserved(granted) => continue,
                None => granted.clone(),
            };
            if base.starts_with(prefix) && base != *prefix && !is_system(&base) {
                candidates.push(base);
            }
        }
        candidates
    }

    /// [`Grants::allows`] for a layer path under `/env` (never a system record), as text.
    fn allows_text(&self, path: &str, action: Action) -> bool {
        self.grants
            .grants
            .iter()
            .find(|(prefix, _)| under(path, prefix.as_str()))
            .is_some_and(|(_, actions)| Grants::grants_action(actions, action))
    }
}

/// `/env/{L}` + `base`.
fn layer(root: &str, base: &ConfigPath) -> String {
    if base.is_root() {
        root.to_owned()
    } else {
        format!("{root}{base}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::Grant;
    use crate::env::{Environment, Environments};

    fn grants(list: &[(&str, &[Action])]) -> Grants {
        Grants::parse(
            &list
                .iter()
                .map(|(prefix, actions)| Grant {
                    prefix: (*prefix).into(),
                    actions: actions.iter().copied().collect(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn path(p: &str) -> ConfigPath {
        ConfigPath::parse(p).unwrap()
    }

    /// dev; prod; prod-eu under prod.
    fn chain(name: &str) -> Chain {
        let parent = |p: &str| Environment {
            parent: Some(p.into()),
            ..Environment::default()
        };
        Environments::from_definitions([
            ("dev".to_owned(), Environment::default(), 1),
            ("prod".to_owned(), Environment::default(), 1),
            ("prod-eu".to_owned(), parent("prod"), 1),
        ])
        .chain(name)
        .unwrap()
    }

    /// `(prefix, actions)` pairs.
    type GrantList<'a> = &'a [(&'a str, &'a [Action])];

    const R: &[Action] = &[Action::Read];
    const RS: &[Action] = &[Action::Read, Action::SecretsRead];

    /// (grants, environment, base path, action, allowed): every case of the rule.
    #[test]
    fn an_effective_read_needs_the_right_on_every_layer_of_the_chain() {
        let cases: &[(GrantList, &str, &str, Action, bool)] = &[
            // The finding: base only no longer reads prod.
            (
                &[("/myapp", R)],
                "prod",
                "/myapp/db/host",
                Action::Read,
                false,
            ),
            (&[("/myapp", R)], "", "/myapp/db/host", Action::Read, true),
            // Base and env: reads prod.
            (
                &[("/myapp", R), ("/env/prod/myapp", R)],
                "prod",
                "/myapp/db/host",
                Action::Read,
                true,
            ),
            // Env only: nothing, not even the override alone.
            (
                &[("/env/prod/myapp", R)],
                "prod",
                "/myapp/db",
                Action::Read,
                false,
            ),
            // Another environment's grant does not help.
            (
                &[("/myapp", R), ("/env/dev/myapp", R)],
                "prod",
                "/myapp/db",
                Action::Read,
                false,
            ),
            // A child environment needs its ancestors' layers too.
            (
                &[("/myapp", R), ("/env/prod-eu/myapp", R)],
                "prod-eu",
                "/myapp/db",
                Action::Read,
                false,
            ),
            (
                &[
                    ("/myapp", R),
                    ("/env/prod-eu/myapp", R),
                    ("/env/prod/myapp", R),
                ],
                "prod-eu",
                "/myapp/db",
                Action::Read,
                true,
            ),
            // A deeper grant takes a layer away.
            (
                &[("/myapp", R), ("/env/prod", R), ("/env/prod/myapp/db", &[])],
                "prod",
                "/myapp/db/host",
                Action::Read,
                false,
            ),
            // secrets:read on the base path alone no longer resolves prod secrets...
            (
                &[("/myapp", RS)],
                "prod",
                "/myapp/db",
                Action::SecretsRead,
                false,
            ),
            (
                &[("/myapp", RS), ("/env/prod/myapp", R)],
                "prod",
                "/myapp/db",
                Action::SecretsRead,
                false,
            ),
            // ...and on the environment alone does not resolve dev's; on both, it does.
            (
                &[("/myapp", R), ("/env/dev/myapp", RS)],
                "dev",
                "/myapp/db",
                Action::SecretsRead,
                false,
            ),
            (
                &[("/myapp", RS), ("/env/dev/myapp", RS)],
                "dev",
                "/myapp/db",
                Action::SecretsRead,
                true,
            ),
            // Read on / (and admin) is unchanged.
            (&[("/", R)], "prod-eu", "/myapp/db", Action::Read, true),
            (
                &[("/", &[Action::Admin])],
                "prod-eu",
                "/x",
                Action::SecretsRead,
                true,
            ),
        ];
        for (list, env, base, action, allowed) in cases {
            let g = grants(list);
            let c = if env.is_empty() {
                Chain::base()
            } else {
                chain(env)
            };
            let effective = EffectiveGrants::new(&g, &c);
            assert_eq!(
                effective.allows(&path(base), *action),
                *allowed,
                "{list:?} {action:?} {base} in {env:?}"
            );
            assert_eq!(
                effective.missing(&path(base), *action).is_none(),
                *allowed,
                "{list:?}"
            );
        }
    }

    #[test]
    fn the_first_missing_layer_is_named() {
        let g = grants(&[("/myapp", R), ("/env/prod/myapp", R)]);
        let c = chain("prod-eu");
        let effective = EffectiveGrants::new(&g, &c);
        assert_eq!(
            effective.layers(&path("/myapp/db")),
            vec!["/myapp/db", "/env/prod-eu/myapp/db", "/env/prod/myapp/db"]
        );
        assert_eq!(
            effective.missing(&path("/myapp/db"), Action::Read),
            Some("/env/prod-eu/myapp/db".to_owned())
        );
        assert_eq!(
            EffectiveGrants::new(&g, &Chain::base()).missing(&path("/other"), Action::Read),
            Some("/other".to_owned())
        );
    }

    #[test]
    fn whole_subtrees_need_every_layer_below_them() {
        let g = grants(&[
            ("/myapp", R),
            ("/env/prod/myapp", R),
            ("/env/prod/myapp/private", &[]),
        ]);
        let c = chain("prod");
        let effective = EffectiveGrants::new(&g, &c);
        assert!(!effective.allows_all_below(&path("/myapp"), Action::Read));
        assert!(effective.allows_all_below(&path("/myapp/db"), Action::Read));
        assert!(!effective.allows_all_below(&path("/myapp/private/x"), Action::Read));
        let base_only = grants(&[("/myapp", R)]);
        assert!(
            !EffectiveGrants::new(&base_only, &c).allows_all_below(&path("/myapp"), Action::Read)
        );
        assert!(
            EffectiveGrants::new(&base_only, &Chain::base())
                .allows_all_below(&path("/myapp"), Action::Read)
        );
        let everything = grants(&[("/", R)]);
        assert!(
            EffectiveGrants::new(&everything, &c).allows_all_below(&path("/myapp"), Action::Read)
        );
    }

    #[test]
    fn somewhere_below_is_decided_by_the_grants_and_the_chain_alone() {
        let c = chain("prod");
        let check = |list: &[(&str, &[Action])], prefix: &str| {
            let g = grants(list);
            EffectiveGrants::new(&g, &c).can_read_somewhere_below(&path(prefix))
        };
        // Base on /myapp, env only on /env/prod/myapp/db: /myapp/db and below.
        let split: &[(&str, &[Action])] = &[("/myapp", R), ("/env/prod/myapp/db", R)];
        assert!(check(split, "/myapp"));
        assert!(check(split, "/"));
        assert!(check(split, "/myapp/db/host"));
        assert!(!check(split, "/myapp/url"));
        // Env on the whole environment, base deeper: the base grant's path.
        let deep_base: &[(&str, &[Action])] = &[("/myapp/db", R), ("/env/prod", R)];
        assert!(check(deep_base, "/myapp"));
        assert!(!check(deep_base, "/other"));
        // Base or env alone: nothing.
        assert!(!check(&[("/myapp", R)], "/myapp"));
        assert!(!check(&[("/env/prod/myapp", R)], "/"));
        // A deeper grant taking a layer away leaves the rest.
        let holes: &[(&str, &[Action])] = &[
            ("/myapp", R),
            ("/env/prod/myapp", R),
            ("/env/prod/myapp/a", &[]),
        ];
        assert!(check(holes, "/myapp"));
        assert!(!check(holes, "/myapp/a"));
        // Grants in environments outside the chain are no candidates.
        assert!(!check(&[("/myapp", R), ("/env/dev/myapp", R)], "/myapp"));
        // System records: as for plain reads.
        assert!(!check(&[("/", R)], "/_setpoint"));
    }

    /// The candidate argument, checked against brute force over a small tree of paths.
    #[test]
    fn somewhere_below_agrees_with_checking_every_path() {
        let c = chain("prod-eu");
        let tree = ["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f"];
        let prefixes = [
            "/",
            "/a",
            "/a/b",
            "/a/b/c",
            "/a/d",
            "/e",
            "/e/f",
            "/env/prod",
            "/env/prod/a",
            "/env/prod/a/b",
            "/env/prod-eu",
            "/env/prod-eu/a/b",
            "/env/prod-eu/e",
            "/env/dev/a",
        ];
        let actions: [&[Action]; 2] = [R, &[]];
        // Every set of up to three grants over those prefixes (with or without read).
        let mut sets: Vec<Vec<(&str, &[Action])>> = Vec::new();
        for (i, a) in prefixes.iter().enumerate() {
            for (j, b) in prefixes.iter().enumerate().skip(i + 1) {
                for c in prefixes.iter().skip(j + 1) {
                    for x in actions {
                        for y in actions {
                            sets.push(vec![(a, R), (b, x), (c, y)]);
                        }
                    }
                }
            }
        }
        for set in &sets {
            let g = grants(set);
            let effective = EffectiveGrants::new(&g, &c);
            for prefix in ["/", "/a", "/a/b", "/e"] {
                let brute = tree
                    .iter()
                    .chain(std::iter::once(&prefix))
                    .map(|p| path(p))
                    .filter(|p| p.starts_with(&path(prefix)))
                    .any(|p| effective.allows(&p, Action::Read));
                assert_eq!(
                    effective.can_read_somewhere_below(&path(prefix)),
                    brute,
                    "{set:?} below {prefix}"
                );
            }
        }
    }
}

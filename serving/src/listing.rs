//! What a listing of a prefix shows a caller, alike on the writer (children read from the store)
//! and the edges (from the snapshot): only children the caller can read something below, only
//! entries it may read, never the `_setpoint` namespace (accounts are reached through
//! `/api/accounts`), and a prefix with nothing to show is a 404 unless the listing was asked for
//! explicitly (`?list=true`, `LIST`) or is the root.

use setpoint_core::ConfigPath;
use setpoint_core::auth::{self, Action, Grants};

use crate::error::Error;

/// Whether the caller may list `path` at all: it can read something at or below it.
pub fn may_list(path: &ConfigPath, grants: &Grants) -> bool {
    grants.can_read_somewhere_below(path)
}

/// Keeps the children of `path` the caller may see.
pub fn retain_visible_children(children: &mut Vec<String>, path: &ConfigPath, grants: &Grants) {
    children.retain(|child| {
        path.join(child)
            .is_ok_and(|p| grants.can_read_somewhere_below(&p) && !auth::is_system(&p))
    });
}

/// Whether a recursive listing may show the entry at `path`.
pub fn listable(path: &ConfigPath, grants: &Grants) -> bool {
    !auth::is_system(path) && grants.allows(path, Action::Read)
}

/// The 404 of a listing with nothing visible, when it is one.
pub fn check_not_empty(
    path: &ConfigPath,
    children: &[String],
    explicit: bool,
) -> Result<(), Error> {
    if children.is_empty() && !path.is_root() && !explicit {
        return Err(Error::not_found(format!(
            "{path} holds no value and has no children"
        )));
    }
    Ok(())
}

/// `LIST /api/config/{prefix}` is `GET /api/config/{prefix}?list=true`, on the writer and every
/// edge alike. Axum routes only the standard methods, so this runs before routing.
pub fn rewrite_list_method(mut request: axum::extract::Request) -> axum::extract::Request {
    use axum::http::{Method, Uri};
    if request.method().as_str() != "LIST" {
        return request;
    }
    *request.method_mut() = Method::GET;
    let uri = request.uri();
    let query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{q}&list=true"),
        _ => "list=true".to_owned(),
    };
    if let Ok(rewritten) = format!("{}?{query}", uri.path()).parse::<Uri>() {
        *request.uri_mut() = rewritten;
    }
    request
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use setpoint_core::auth::Grant;

    fn grants(prefixes: &[&str]) -> Grants {
        Grants::parse(
            &prefixes
                .iter()
                .map(|p| Grant {
                    prefix: (*p).into(),
                    actions: [Action::Read].into(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn path(raw: &str) -> ConfigPath {
        ConfigPath::parse(raw).unwrap()
    }

    #[test]
    fn children_below_what_the_caller_reads_and_never_the_system_namespace() {
        let reader = grants(&["/app/db"]);
        let mut children = vec!["db".to_owned(), "web".to_owned()];
        retain_visible_children(&mut children, &path("/app"), &reader);
        assert_eq!(children, vec!["db"]);
        let mut top = vec!["_setpoint".to_owned(), "app".to_owned()];
        retain_visible_children(&mut top, &ConfigPath::root(), &Grants::all());
        assert_eq!(top, vec!["app"]);
        assert!(may_list(&path("/app"), &reader));
        assert!(!may_list(&path("/web"), &reader));
        assert!(listable(&path("/app/db/host"), &reader));
        assert!(!listable(&path("/app/web"), &reader));
        assert!(!listable(&path("/_setpoint/accounts/a"), &Grants::all()));
    }

    #[test]
    fn nothing_to_show_is_a_404_unless_asked_for_or_the_root() {
        assert!(check_not_empty(&path("/a"), &[], false).is_err());
        assert!(check_not_empty(&path("/a"), &[], true).is_ok());
        assert!(check_not_empty(&ConfigPath::root(), &[], false).is_ok());
        assert!(check_not_empty(&path("/a"), &["b".to_owned()], false).is_ok());
    }
}

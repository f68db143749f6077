//! The web console: the files of `writer/ui/` embedded in the binary and served at `/ui`.
//!
//! The console is plain HTML, CSS and JavaScript modules with no build step: the files in
//! `writer/ui/` are what the browser runs, so the binary carries them as they are
//! ([`ASSETS`], `include_bytes!`) and needs nothing at run time. `/ui/assets/…` are the files;
//! every other path under `/ui` is the console's own page (`index.html`), so a deep link such as
//! `/ui/config/myapp/db` opens the app, which routes in the browser. An unknown file under
//! `/ui/assets/` is a 404, so a mistyped module fails loudly instead of loading the page.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and requests only
//! from this origin; no inline script or style, no framing), `nosniff`, and an `ETag` (a hash of
//! the file, fixed at compile time) with `Cache-Control: no-cache`: file names carry no
//! version, so a browser revalidates each load and gets a cheap 304 until the binary changes.
//!
//! The console is no part of the API: it holds no data and needs no key (the writer's door
//! lets `/ui` through, see [`router`]); everything it shows comes from `/api/…` with the key
//! the user gives it, so it can do nothing curl cannot. It is not in the OpenAPI document.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file: its path below `writer/ui/` (and below `/ui/` in URLs) and its bytes.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
    etag: u64,
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$({
            const BYTES: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path));
            Asset { path: $path, bytes: BYTES, etag: fnv1a(BYTES) }
        }),*]
    };
}

/// Every file of `writer/ui/`. A test fails when a file there is missing from this list.
pub const ASSETS: &[Asset] = assets![
    "index.html",
    "assets/app.css",
    "assets/app.js",
    "assets/api.js",
    "assets/dom.js",
    "assets/favicon.svg",
    "assets/pages/alerts.js",
    "assets/pages/approvals.js",
    "assets/pages/audit.js",
    "assets/pages/config.js",
    "assets/pages/environments.js",
    "assets/pages/fleet.js",
    "assets/pages/rollouts.js",
];

/// The policy on every answer: nothing inline, nothing from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's page, answered for every path under `/ui` that is not a file.
const INDEX: &str = "index.html";

/// The content type of a file, by its extension; `None` for one the console does not serve.
pub fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

/// The routes under `/ui`. They go beside the API's, outside its authentication: a browser
/// loads pages and scripts without the key the app later sends to `/api/…`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*rest}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(find(INDEX), &headers)
}

async fn file(Path(rest): Path<String>, headers: HeaderMap) -> Response {
    if rest.starts_with("assets/") {
        serve(find(&rest), &headers)
    } else {
        serve(find(INDEX), &headers)
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

fn serve(asset: Option<&'static Asset>, headers: &HeaderMap) -> Response {
    let Some((asset, content_type)) =
        asset.and_then(|asset| Some((asset, content_type(asset.path)?)))
    else {
        return with_policy(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such file in the console\n",
            )
                .into_response(),
        );
    };
    let etag = format!("\"{:016x}\"", asset.etag);
    let mut response = if setpoint_serving::conditional::if_none_match_hits_tag(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], asset.bytes).into_response()
    };
    let response_headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, etag);
    }
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_policy(response)
}

fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// FNV-1a, 64 bits: an entity tag that changes with the file, computed at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path as FsPath;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    fn files_below(dir: &FsPath, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files_below(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    #[test]
    fn every_file_of_the_ui_folder_is_embedded_and_nothing_else() {
        let mut on_disk = BTreeSet::new();
        files_below(
            &FsPath::new(env!("CARGO_MANIFEST_DIR")).join("ui"),
            "",
            &mut on_disk,
        );
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        assert_eq!(embedded.len(), ASSETS.len(), "an asset is listed twice");
        assert_eq!(
            on_disk, embedded,
            "writer/ui/ and console::ASSETS differ: list every file in ASSETS"
        );
        for asset in ASSETS {
            assert!(
                asset.path == INDEX || asset.path.starts_with("assets/"),
                "{} is neither the page nor under assets/: it would never be served",
                asset.path
            );
        }
    }

    async fn get(uri: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(uri);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_content_type_the_policy_and_an_etag() {
        for asset in ASSETS {
            let response = get(&format!("/ui/{}", asset.path), None).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            let expected = content_type(asset.path)
                .unwrap_or_else(|| panic!("{}: no content type for its extension", asset.path));
            assert_eq!(header(&response, header::CONTENT_TYPE), expected);
            assert_eq!(
                header(&response, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
            let etag = header(&response, header::ETAG).to_owned();
            assert_eq!(body(response).await, asset.bytes, "{}", asset.path);

            let again = get(&format!("/ui/{}", asset.path), Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", asset.path);
            assert_eq!(header(&again, header::ETAG), etag);
            assert!(body(again).await.is_empty());
        }
    }

    #[tokio::test]
    async fn deep_links_answer_the_page_and_unknown_files_a_404() {
        let page = find(INDEX).unwrap().bytes;
        for uri in ["/ui", "/ui/", "/ui/config/myapp/db", "/ui/config/app/x.js"] {
            let response = get(uri, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            assert_eq!(
                header(&response, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(
                header(&response, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(body(response).await, page, "{uri}");
        }
        let missing = get("/ui/assets/missing.js", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            header(&missing, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn the_page_loads_no_inline_script_or_style() {
        let page = std::str::from_utf8(find(INDEX).unwrap().bytes).unwrap();
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "inline style attribute");
        let handler = page.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "inline event handler: on{handler:?}");
    }

    #[test]
    fn the_etag_is_fnv1a() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! The admin portal: one web page for webhook administration, served at `GET /portal`.
//!
//! Its HTML, CSS and JavaScript are compiled into the binary (`include_str!`), so the page
//! works at a camp with no uplink; it loads nothing from another origin. It has no server
//! logic of its own: the scripts call the JSON API with the bearer token from
//! `POST /api/v1/auth/login`, so whatever the portal can do, the API can do, under the
//! same admin-only checks. Every path under `/portal/` that is not an asset serves the
//! page, whose script picks the view from the path (`/portal/deliveries`, …).

use crate::error::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page: markup only; everything it runs comes from [`ASSETS`].
const INDEX: &str = include_str!("index.html");

/// The files under `/portal/assets/`, one script per view.
const ASSETS: &[(&str, &str)] = &[
    ("portal.css", include_str!("assets/portal.css")),
    ("icon.svg", include_str!("assets/icon.svg")),
    ("api.js", include_str!("assets/api.js")),
    ("ui.js", include_str!("assets/ui.js")),
    ("app.js", include_str!("assets/app.js")),
    ("subscriptions.js", include_str!("assets/subscriptions.js")),
    ("deliveries.js", include_str!("assets/deliveries.js")),
    ("inbound.js", include_str!("assets/inbound.js")),
    ("audit.js", include_str!("assets/audit.js")),
    ("access.js", include_str!("assets/access.js")),
];

/// Only this server's own files and API; no inline script or style, no framing. This is
/// what keeps an injected string from ever running as code in an admin's session.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/portal", get(page))
        .route("/portal/assets/{file}", get(asset))
        .route("/portal/{*view}", get(page))
        .layer(axum::middleware::map_response(secure))
}

async fn page() -> Response {
    html(INDEX)
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((name, body)) => ([(header::CONTENT_TYPE, content_type(name))], *body).into_response(),
        None => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such portal file").into_response()
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Headers on every portal response. `no-cache` makes the browser revalidate, so a new
/// binary's files are used at once (they are a few KiB).
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing in the portal loads from outside the server: no absolute or protocol-relative
    /// URL in a src, href, url() or fetch, no CSS import. (Text such as "https://" in a hint
    /// is fine.) (The browser test checks what a real page load requests.)
    #[test]
    fn no_file_refers_to_another_origin() {
        let files = ASSETS
            .iter()
            .copied()
            .chain([("index.html", INDEX)])
            .filter(|(name, _)| *name != "icon.svg");
        for (name, body) in files {
            for needle in [
                "src=\"http",
                "href=\"http",
                "url(http",
                "url(\"http",
                "url('http",
                "fetch('http",
                "fetch(`http",
                "from 'http",
                "\"//",
                "'//",
                "(//",
                "@import",
            ] {
                assert!(
                    !body.contains(needle),
                    "{name} contains {needle:?}: the portal must load nothing from elsewhere"
                );
            }
        }
    }

    /// Every file the page and the scripts name is served, and every served file is used.
    #[test]
    fn every_referenced_asset_exists_and_every_asset_is_referenced() {
        let everything: String = ASSETS
            .iter()
            .map(|(_, body)| *body)
            .chain([INDEX])
            .collect();
        for (name, _) in ASSETS {
            assert!(
                everything.contains(&format!("/portal/assets/{name}"))
                    || everything.contains(&format!("./{name}")),
                "{name} is served but never loaded"
            );
        }
        for reference in INDEX.split("/portal/assets/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|(asset, _)| *asset == name),
                "index.html loads {name}, which is not embedded"
            );
        }
    }

    #[test]
    fn index_has_no_inline_script_or_style() {
        assert!(!INDEX.contains("<style"), "inline style");
        assert!(!INDEX.contains("style="), "inline style attribute");
        for script in INDEX.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(tag.contains("src="), "inline script: <script{tag}>");
        }
    }
}

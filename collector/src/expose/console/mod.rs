//! The web console: one page (`/console/`) over the collector's JSON API — fleet status, alerts
//! with their evidence, recommendation and a chart of the series with its band, the actions
//! waiting for approval (approve / reject), running actions and scheduled reverts, the audit
//! log, and the DNS change history.
//!
//! The page, its script and its style are compiled into the binary: nothing is fetched from
//! elsewhere, so it works offline. The page only reads; approving or rejecting goes through the
//! token-protected `POST /api/v1/actions/{id}/{verb}` (see [`super::actions`]). A strict
//! Content-Security-Policy allows only this collector's own script, style and API.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX_HTML: &str = include_str!("index.html");
const CONSOLE_JS: &str = include_str!("console.js");
const CONSOLE_CSS: &str = include_str!("console.css");

/// What the console's responses allow the browser to do: this origin's script, style, images
/// and API; no frames, no forms posted elsewhere, no plugins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ] {
        headers.insert(name, value);
    }
    response
}

/// `GET /console/`
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /console/console.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

/// `GET /console/console.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// `GET /` and `GET /console`: to the console.
pub async fn home() -> Redirect {
    Redirect::to("/console/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for (name, text) in [("index.html", INDEX_HTML), ("console.css", CONSOLE_CSS)] {
            assert!(!text.contains("http://"), "{name} names another origin");
            assert!(!text.contains("https://"), "{name} names another origin");
        }
        assert!(INDEX_HTML.contains(r#"src="/console/console.js""#));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        // Data is put in the page as text, never parsed as markup.
        assert!(!CONSOLE_JS.contains("innerHTML"));
        assert!(!CONSOLE_JS.contains("eval("));
    }

    #[tokio::test]
    async fn assets_carry_the_security_headers() {
        let r = script().await;
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(
            h[header::CONTENT_SECURITY_POLICY].to_str().is_ok_and(|v| v
                .contains("frame-ancestors 'none'")
                && v.contains("script-src 'self'"))
        );
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    }
}

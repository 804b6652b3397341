//! The web client (`GET /`): plain HTML, CSS and ES modules from
//! `crates/tern-server/web/`, compiled into the binary so that `tern serve`
//! needs no files beside it and no build step. The client speaks only the
//! public protocol (HTTP API and `/v1/ws`); nothing here knows the core.
//! Besides its files, the client reads `/web/settings.json`: the limits of
//! this server that decide what it offers (a recall or an edit only
//! within its window, an upload only up to `media.max_bytes`), and
//! `/sw.js`, its service worker (Web Push notifications), served from the
//! root so that its scope is the whole client.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file: its path under `/`, its media type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file of the client. `index.html` names the others by these paths.
static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/web/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/web/conn.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/conn.js"),
    },
    Asset {
        path: "/web/format.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/format.js"),
    },
    Asset {
        path: "/web/bubbles.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/bubbles.js"),
    },
    Asset {
        path: "/web/panels.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/panels.js"),
    },
    Asset {
        path: "/web/media.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/media.js"),
    },
    Asset {
        path: "/web/push.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/push.js"),
    },
    Asset {
        path: "/sw.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/sw.js"),
    },
    Asset {
        path: "/web/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/style.css"),
    },
    Asset {
        path: "/web/icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/icon.svg"),
    },
];

/// Scripts, styles and images only from this origin, no inline script or
/// style, no plugins, no framing; the WebSocket and `fetch` go to this
/// server (`ws:`/`wss:` because `'self'` does not cover them everywhere).
/// Media the client fetched with its token are shown from `blob:` URLs
/// (images, voice notes); the service worker is a file of this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
connect-src 'self' ws: wss:; worker-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the client needs to know of this server's configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// `delivery.recall_window_secs`.
    pub recall_window_secs: u64,
    /// `limits.edit_window_secs`.
    pub edit_window_secs: u64,
    /// `media.max_bytes`: a larger file is refused before it is sent.
    pub media_max_bytes: u64,
}

/// The client's routes, to be merged into the API router.
pub fn router<S: Clone + Send + Sync + 'static>(settings: Settings) -> Router<S> {
    let mut r = Router::new();
    for a in ASSETS {
        r = r.route(a.path, get(move |h: HeaderMap| async move { serve(a, &h) }));
    }
    r.route(
        "/web/settings.json",
        get(move || {
            let body = axum::Json(settings.clone());
            async move { ([(header::CACHE_CONTROL, "no-cache")], body) }
        }),
    )
}

/// An entity tag from the file's bytes (FNV-1a, 64 bits): the browser
/// revalidates every time (`no-cache`) and gets 304 while the binary is
/// the same, so a new release is picked up at the next load.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

fn serve(a: &'static Asset, req: &HeaderMap) -> Response {
    let tag = etag(a.body);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `src`/`href` of the page is one of the embedded files, so the
    /// page never asks for something the server does not have.
    #[test]
    fn page_references_only_embedded_assets() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        let mut found = 0;
        for attr in ["src=\"", "href=\""] {
            for (i, _) in html.match_indices(attr) {
                let rest = &html[i + attr.len()..];
                let url = &rest[..rest.find('"').unwrap()];
                assert!(
                    ASSETS.iter().any(|a| a.path == url),
                    "index.html refers to {url}, which is not embedded"
                );
                found += 1;
            }
        }
        assert!(found >= 3, "index.html names its script, style and icon");
    }

    /// ES modules import each other by path: those must be embedded too.
    #[test]
    fn module_imports_are_embedded() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let js = std::str::from_utf8(a.body).unwrap();
            for line in js.lines().filter(|l| l.starts_with("import ")) {
                let q = line.rfind(" from '").expect("import ... from '...'");
                let spec = line[q + 7..].trim_end_matches(['\'', ';']);
                let path = format!("/web/{}", spec.trim_start_matches("./"));
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{} imports {spec}, which is not embedded",
                    a.path
                );
            }
        }
    }

    /// User content reaches the page only as text: no script of the client
    /// uses an HTML sink.
    #[test]
    fn scripts_use_no_html_sinks() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let js = std::str::from_utf8(a.body).unwrap();
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!js.contains(sink), "{} uses {sink}", a.path);
            }
        }
    }

    #[test]
    fn etag_changes_with_content() {
        assert_eq!(etag(b"a"), etag(b"a"));
        assert_ne!(etag(b"a"), etag(b"b"));
    }
}

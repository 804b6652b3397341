//! The web client's files (`GET /`, `/web/*`): media types, caching and
//! the Content-Security-Policy, on a real server.

use crate::common::Server;
use reqwest::header;

#[tokio::test]
async fn page_and_assets_are_served_with_their_headers() {
    let s = Server::start().await;
    for (path, media, needle) in [
        (
            "/",
            "text/html",
            "<script type=\"module\" src=\"/web/app.js\">",
        ),
        ("/web/app.js", "text/javascript", "from './conn.js'"),
        ("/web/conn.js", "text/javascript", "export class Session"),
        ("/web/style.css", "text/css", "@media (max-width: 720px)"),
        ("/web/icon.svg", "image/svg+xml", "<svg"),
        ("/web/media.js", "text/javascript", "export function upload"),
        (
            "/web/push.js",
            "text/javascript",
            "export async function subscribePush",
        ),
        ("/sw.js", "text/javascript", "showNotification"),
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let ct = h[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(ct.starts_with(media), "{path}: content type {ct}");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{path}");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self' ws: wss:"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        // Media fetched with the token are shown from blob: URLs.
        assert!(csp.contains("img-src 'self' data: blob:"), "{path}: {csp}");
        assert!(csp.contains("media-src 'self' blob:"), "{path}: {csp}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        let etag = h[header::ETAG].clone();
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path} holds {needle:?}");

        // Revalidation: same file, 304 without a body.
        let again = s
            .http
            .get(s.url(path))
            .header(header::IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()[header::ETAG], etag);
        assert!(again.text().await.unwrap().is_empty());
        let other = s
            .http
            .get(s.url(path))
            .header(header::IF_NONE_MATCH, "\"0000000000000000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 200, "{path} with a stale tag");
    }
}

#[tokio::test]
async fn unknown_web_paths_stay_json_errors() {
    let s = Server::start().await;
    for path in ["/web/", "/web/missing.js", "/index.html"] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "not_found", "{path}: {v}");
    }
    // The page takes GET only; another method is the usual JSON 405.
    let r = s.http.post(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "method_not_allowed");
}

/// The page learns the upload limit from `/web/settings.json`, to refuse
/// a larger file before sending it.
#[tokio::test]
async fn settings_name_the_upload_limit() {
    let s = Server::start_with(|c| c.media.max_bytes = 123_456).await;
    let r = s
        .http
        .get(s.url("/web/settings.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["media_max_bytes"], 123_456, "{v}");
    assert!(v["recall_window_secs"].is_u64(), "{v}");
}

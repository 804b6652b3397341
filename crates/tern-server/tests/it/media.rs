//! 5.5 media over real sockets: upload and download (hash, `ETag`, 304,
//! ranges), the bounds (413 before 415, streamed bodies cut at the
//! limit, image types checked against the bytes, decompression bombs),
//! thumbnails, media named in a send, and the sweep.

use crate::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bytes_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A `w`x`h` PNG.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A tiny PNG whose header declares `w`x`h` pixels (and holds none).
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // An empty IDAT and IEND.
    for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(&crc32(chunk).to_be_bytes());
    }
    out
}

async fn upload(s: &Server, token: &str, mime: &str, body: Vec<u8>) -> (u16, Value) {
    let r = s
        .http
        .post(s.url("/v1/media?filename=f.bin"))
        .bearer_auth(token)
        .header("content-type", mime)
        .body(body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// An upload whose body comes in chunks, without `Content-Length`.
async fn upload_streamed(s: &Server, token: &str, mime: &str, body: Vec<u8>) -> (u16, Value) {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let r = s
        .http
        .post(s.url("/v1/media"))
        .bearer_auth(token)
        .header("content-type", mime)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn ok_upload(s: &Server, token: &str, mime: &str, body: Vec<u8>) -> String {
    let (st, v) = upload(s, token, mime, body).await;
    assert_eq!(st, 201, "{v}");
    v["media"].as_str().unwrap().to_owned()
}

async fn download(
    s: &Server,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = s.http.get(s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn upload_download_etag_and_ranges() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let data = bytes_of(300_000, 7);
    let (st, v) = upload(&s, &ta, "application/octet-stream", data.clone()).await;
    assert_eq!(st, 201, "{v}");
    let id = v["media"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(v["url"], format!("/v1/media/{id}"));
    assert_eq!(v["size"], 300_000);
    assert_eq!(v["mime"], "application/octet-stream");
    let sha = hex(&Sha256::digest(&data));
    assert_eq!(v["sha256"], sha.as_str());

    // Any valid token downloads it, by header or by query.
    let r = download(&s, &format!("/v1/media/{id}"), Some(&tb), &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-length"], "300000");
    let got = r.bytes().await.unwrap();
    assert_eq!(hex(&Sha256::digest(&got)), sha);
    let r = download(&s, &format!("/v1/media/{id}?token={tb}"), None, &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 300_000);

    // ETag and If-None-Match.
    let etag = format!("\"{sha}\"");
    let r = download(
        &s,
        &format!("/v1/media/{id}"),
        Some(&ta),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status().as_u16(), 304);
    let r = download(
        &s,
        &format!("/v1/media/{id}"),
        Some(&ta),
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);

    // Ranges: a-b, a-, -n; past the end is 416.
    let r = download(
        &s,
        &format!("/v1/media/{id}"),
        Some(&ta),
        &[("range", "bytes=10-19")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/300000");
    assert_eq!(&r.bytes().await.unwrap()[..], &data[10..20]);
    let r = download(
        &s,
        &format!("/v1/media/{id}"),
        Some(&ta),
        &[("range", "bytes=299990-")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &data[299_990..]);
    let r = download(
        &s,
        &format!("/v1/media/{id}"),
        Some(&ta),
        &[("range", "bytes=-5")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &data[299_995..]);
    let r = download(
        &s,
        &format!("/v1/media/{id}"),
        Some(&ta),
        &[("range", "bytes=300000-300010")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */300000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "range_not_satisfiable");

    // No token: 401; unknown ids: 404.
    let (st, v) = s.get(&format!("/v1/media/{id}"), None).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthenticated")));
    let (st, v) = s
        .get(&format!("/v1/media/{}", "0".repeat(32)), Some(&ta))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")));
    let (st, v) = s.get("/v1/media/nope", Some(&ta)).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")));
    // Uploading needs a token too.
    let r = s
        .http
        .post(s.url("/v1/media"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

#[tokio::test]
async fn size_before_type_and_types_checked() {
    let s = Server::start_with(|c| c.media.max_bytes = 100_000).await;
    let ta = s.user("alice").await;
    // At the limit: stored; one byte over: 413, declared or streamed.
    ok_upload(&s, &ta, "application/octet-stream", bytes_of(100_000, 1)).await;
    for streamed in [false, true] {
        let body = bytes_of(100_001, 2);
        let (st, v) = if streamed {
            upload_streamed(&s, &ta, "application/octet-stream", body).await
        } else {
            upload(&s, &ta, "application/octet-stream", body).await
        };
        assert_eq!(
            (st, v["code"].as_str()),
            (413, Some("content_too_large")),
            "{v}"
        );
        // Size before type, either way.
        let body = bytes_of(100_001, 3);
        let (st, v) = if streamed {
            upload_streamed(&s, &ta, "application/x-evil", body).await
        } else {
            upload(&s, &ta, "application/x-evil", body).await
        };
        assert_eq!(
            (st, v["code"].as_str()),
            (413, Some("content_too_large")),
            "{v}"
        );
    }
    // Nothing of the refused uploads is kept.
    let left: Vec<_> = std::fs::read_dir(s.dir.path().join("media"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    // A type outside the list: 415.
    let (st, v) = upload(&s, &ta, "application/x-evil", b"hello".to_vec()).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (415, Some("unsupported_media")),
        "{v}"
    );
    let (st, v) = upload(&s, &ta, "text/html", b"<b>x</b>".to_vec()).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (415, Some("unsupported_media")),
        "{v}"
    );
    // Text declared as PNG, a PNG declared as JPEG: refused.
    let (st, v) = upload(&s, &ta, "image/png", b"not an image at all".to_vec()).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (415, Some("unsupported_media")),
        "{v}"
    );
    let (st, v) = upload(&s, &ta, "image/jpeg", png(8, 8)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (415, Some("unsupported_media")),
        "{v}"
    );
    // Parameters and case of Content-Type do not matter.
    let (st, v) = upload(&s, &ta, "Text/Plain; charset=utf-8", b"hi".to_vec()).await;
    assert_eq!((st, v["mime"].as_str()), (201, Some("text/plain")), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn default_limit_is_25_mib() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let (st, v) = upload(
        &s,
        &ta,
        "application/octet-stream",
        vec![7u8; 25 * 1024 * 1024 + 1],
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("content_too_large")),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn thumbnails_and_decompression_bombs() {
    let s = Server::start_with(|c| c.media.image_max_side = 65535).await;
    let ta = s.user("alice").await;
    let id = ok_upload(&s, &ta, "image/png", png(400, 200)).await;
    for _ in 0..2 {
        // Made once, then served from its blob.
        let r = download(&s, &format!("/v1/media/{id}?thumb=100"), Some(&ta), &[]).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        let b = r.bytes().await.unwrap();
        let img = image::load_from_memory_with_format(&b, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (100, 50));
    }
    // Never larger than the image.
    let r = download(&s, &format!("/v1/media/{id}?thumb=1024"), Some(&ta), &[]).await;
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (400, 200));
    for bad in ["15", "1025", "x"] {
        let (st, v) = s
            .get(&format!("/v1/media/{id}?thumb={bad}"), Some(&ta))
            .await;
        assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{bad}");
    }
    let text = ok_upload(&s, &ta, "text/plain", b"hello".to_vec()).await;
    let (st, v) = s
        .get(&format!("/v1/media/{text}?thumb=100"), Some(&ta))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")));

    // A PNG declaring 100000x100000 pixels: refused at upload.
    let (st, v) = upload(&s, &ta, "image/png", bomb_png(100_000, 100_000)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("content_too_large")),
        "{v}"
    );
    // One within the side bound but not the decoding memory: stored,
    // and its thumbnail refused by the decoder's limits.
    let bomb = ok_upload(&s, &ta, "image/png", bomb_png(60_000, 60_000)).await;
    let (st, v) = s
        .get(&format!("/v1/media/{bomb}?thumb=100"), Some(&ta))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("content_too_large")),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn send_names_own_media_only() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let mine = ok_upload(&s, &ta, "image/png", png(64, 32)).await;
    let theirs = ok_upload(&s, &tb, "image/png", png(8, 8)).await;
    let send = |cmid: &str, kind: &str, media: &str| json!({"to":"bob","client_msg_id":cmid,"kind":kind,"content":{"media":media,"caption":"hi"}});
    for (cmid, kind, media) in [
        ("c1", "image", theirs.as_str()),
        ("c2", "image", "0123456789abcdef0123456789abcdef"),
        ("c3", "image", "not-an-id"),
        ("c4", "voice", mine.as_str()),
    ] {
        let (st, v) = s
            .post("/v1/messages", Some(&ta), send(cmid, kind, media))
            .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (400, Some("invalid")),
            "{cmid}: {v}"
        );
    }
    let (st, v) = s
        .post("/v1/messages", Some(&ta), send("c5", "image", &mine))
        .await;
    assert_eq!(st, 200, "{v}");
    let conv = v["conv"].as_str().unwrap().to_owned();
    let (st, h) = s
        .get(&format!("/v1/conversations/{conv}/messages"), Some(&tb))
        .await;
    assert_eq!(st, 200, "{h}");
    let msgs = h["msgs"].as_array().unwrap();
    let c = &msgs.last().unwrap()["content"];
    assert_eq!(c["media"], mine.as_str());
    assert_eq!(c["url"], format!("/v1/media/{mine}"));
    assert_eq!(c["mime"], "image/png");
    assert_eq!((c["w"].as_u64(), c["h"].as_u64()), (Some(64), Some(32)));
    assert_eq!(c["caption"], "hi");
    assert!(c["size"].as_u64().unwrap() > 0);
    // A file message takes any type and gets no w/h.
    let doc = ok_upload(&s, &ta, "application/pdf", b"%PDF-1.4".to_vec()).await;
    let (st, v) = s
        .post("/v1/messages", Some(&ta), send("c6", "file", &doc))
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, h) = s
        .get(&format!("/v1/conversations/{conv}/messages"), Some(&tb))
        .await;
    let c = &h["msgs"].as_array().unwrap().last().unwrap()["content"];
    assert_eq!(
        (c["mime"].as_str(), c["size"].as_u64()),
        (Some("application/pdf"), Some(8))
    );
    assert!(c.get("w").is_none());
    s.stop().await;
}

#[tokio::test]
async fn unreferenced_media_are_swept() {
    let s = Server::start_with(|c| {
        c.media.grace_secs = 1;
        c.media.sweep_secs = 1;
    })
    .await;
    let ta = s.user("alice").await;
    s.user("bob").await;
    let loose = ok_upload(&s, &ta, "text/plain", b"loose".to_vec()).await;
    let sent = ok_upload(&s, &ta, "text/plain", b"sent".to_vec()).await;
    let avatar = ok_upload(&s, &ta, "image/png", png(4, 4)).await;
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&ta),
            json!({"to":"bob","client_msg_id":"k1","kind":"file","content":{"media":sent}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let r = s
        .http
        .patch(s.url("/v1/users/me"))
        .bearer_auth(&ta)
        .json(&json!({"avatar": avatar}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (st, _) = s.get(&format!("/v1/media/{loose}"), Some(&ta)).await;
        if st == 404 {
            break;
        }
        assert_eq!(st, 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loose media stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!s.dir.path().join("media").join(&loose).exists());
    for kept in [&sent, &avatar] {
        let r = download(&s, &format!("/v1/media/{kept}"), Some(&ta), &[]).await;
        assert_eq!(r.status().as_u16(), 200, "{kept}");
    }
    s.stop().await;
}

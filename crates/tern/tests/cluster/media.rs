//! 5.5 across two nodes on PostgreSQL sharing an S3-compatible store
//! (`moto_server`, started here on its own port): an upload through one
//! node is downloaded (whole, a range, a thumbnail) through the other,
//! and a send through the other names it.

use super::*;
use sha2::{Digest, Sha256};

/// An in-memory S3 server of the test's own; killed when dropped.
struct OwnMoto {
    url: String,
    child: std::process::Child,
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnMoto {
    /// `None` when `moto_server` is not installed (outside CI; CI must
    /// have it: `.ci/run` installs it).
    async fn start(bucket: &str) -> Option<OwnMoto> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "moto_server: {e}");
                eprintln!("skipping: moto_server cannot start: {e}");
                return None;
            }
        };
        let moto = OwnMoto {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        // Up once it answers; then the bucket.
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.put(format!("{}/{bucket}", moto.url)).send().await {
                assert!(
                    r.status().is_success(),
                    "creating the bucket: {}",
                    r.status()
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(moto)
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 9]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(node: &Tern, token: &str, mime: &str, body: Vec<u8>) -> Value {
    let r = node
        .http
        .post(node.url("/v1/media"))
        .bearer_auth(token)
        .header("content-type", mime)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_shared_through_s3() {
    let Some(moto) = OwnMoto::start("tern-media").await else {
        return;
    };
    let env = [
        ("TERN_MEDIA__S3_BUCKET", "tern-media"),
        ("TERN_MEDIA__S3_ENDPOINT", moto.url.as_str()),
        ("TERN_MEDIA__S3_REGION", "us-east-1"),
        ("TERN_MEDIA__S3_ACCESS_KEY", "test"),
        ("TERN_MEDIA__S3_SECRET_KEY", "test"),
    ];
    let Some(c) = Cluster::start(Sql::Postgres, 2, &env).await else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let ta = n0.user("ann").await;
    let tb = n1.user("bob").await;

    // 6 MB: more than one part of a multipart upload.
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let v = upload(n0, &ta, "application/zip", data.clone()).await;
    let id = v["media"].as_str().unwrap().to_owned();
    let sha: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["sha256"], sha.as_str());
    let r = n1
        .http
        .get(n1.url(&format!("/v1/media/{id}")))
        .bearer_auth(&tb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["etag"], format!("\"{sha}\"").as_str());
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got[..] == data[..]);
    let r = n1
        .http
        .get(n1.url(&format!("/v1/media/{id}?token={tb}")))
        .header("range", "bytes=5999990-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &data[5_999_990..]);

    // An image: a thumbnail made through the other node.
    let img = upload(n0, &ta, "image/png", png(300, 150)).await;
    let img_id = img["media"].as_str().unwrap().to_owned();
    let r = n1
        .http
        .get(n1.url(&format!("/v1/media/{img_id}?thumb=60")))
        .bearer_auth(&tb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let t = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((t.width(), t.height()), (60, 30));

    // A send through the other node names it: filled from the shared store.
    let (st, v) = n1
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&ta),
            Some(
                json!({"to":"bob","client_msg_id":"x1","kind":"image","content":{"media":img_id}}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let conv = v["conv"].as_str().unwrap().to_owned();
    let (st, h) = n0
        .call(
            reqwest::Method::GET,
            &format!("/v1/conversations/{conv}/messages"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(st, 200, "{h}");
    let content = &h["msgs"][0]["content"];
    assert_eq!(content["url"], format!("/v1/media/{img_id}"));
    assert_eq!(
        (content["w"].as_u64(), content["h"].as_u64()),
        (Some(300), Some(150))
    );
    // Bob cannot send ann's media.
    let (st, v) = n0
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&tb),
            Some(json!({"to":"ann","client_msg_id":"x2","kind":"file","content":{"media":id}})),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{v}");
    drop(c);
    drop(moto);
}

//! TLS on the listener (`[tls]`): HTTPS and a wss:// WebSocket round trip
//! against a certificate the test makes, through the SDK and by hand.

use crate::common::*;
use rustls_pki_types::ServerName;
use serde_json::Value;
use std::sync::Arc;
use tern_client::raw::Connection;
use tern_client::wire::SendAnswer;
use tern_client::OutMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

struct Tls {
    connector: TlsConnector,
    addr: std::net::SocketAddr,
}

impl Tls {
    async fn open(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        self.connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    /// One HTTP/1.1 GET over its own TLS connection: (status, body).
    async fn get(&self, path: &str) -> (u16, Value) {
        let mut io = self.open().await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        io.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, io.read_to_end(&mut out))
            .await
            .expect("answer in time");
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn https_and_wss_with_a_generated_certificate() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let s = Server::start_with(|c| {
        c.tls.cert = cert.clone();
        c.tls.key = key.clone();
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = Arc::new(client);
    let tls = Tls {
        connector: TlsConnector::from(client.clone()),
        addr: s.addr,
    };
    let mut config = sdk_config();
    config.tls = Some(client);
    let base = format!("https://localhost:{}", s.addr.port());
    let api = tern_client::Client::with_config(&base, config.clone()).unwrap();

    // HTTPS, by hand and through the SDK.
    let (st, v) = tls.get("/healthz").await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")), "{v}");
    api.register("alice", PASSWORD, None).await.unwrap();
    let alice = api.login("alice", PASSWORD).await.unwrap();
    let token = alice.token().unwrap().to_owned();

    // Plain HTTP to the TLS listener gets no answer.
    let plain = s.http.get(s.url("/healthz")).send().await;
    assert!(plain.is_err(), "plain HTTP answered on a TLS listener");

    // wss:// round trip: auth by URL, then a send to oneself.
    let url = format!("{}?token={token}&device=d", alice.ws_url());
    assert!(url.starts_with("wss://localhost:"), "{url}");
    let mut ws = Connection::open(&url, &config).await.expect("wss upgrade");
    assert_eq!(ws.next_frame(WAIT).await.unwrap().ty(), "ok");
    assert_eq!(ws.next_frame(WAIT).await.unwrap().ty(), "offline_done");
    let msg = OutMessage::text_to("alice", "over tls").with_client_msg_id("c1");
    // The reply: stored (the sending device itself gets no push).
    let ok: SendAnswer = ws
        .request(msg.send_frame())
        .await
        .unwrap()
        .answer()
        .unwrap();
    assert_eq!(ok.conv, "dm:alice:alice");
    // And it is in history, over HTTPS.
    let h = alice
        .messages("dm:alice:alice", None, None, None)
        .await
        .unwrap();
    let texts: Vec<_> = h
        .msgs
        .iter()
        .map(|m| m.content.as_ref().map(|c| c.get()))
        .collect();
    assert_eq!(texts, [Some(r#""over tls""#)]);
}

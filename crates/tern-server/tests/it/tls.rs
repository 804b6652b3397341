//! TLS on the listener (`[tls]`): HTTPS and a wss:// WebSocket round trip
//! against a certificate the test makes.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

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

    /// One HTTP/1.1 request over its own TLS connection: (status, body).
    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut io = self.open().await;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
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
    let tls = Tls {
        connector: TlsConnector::from(Arc::new(client)),
        addr: s.addr,
    };

    // HTTPS.
    let (st, v) = tls.request("GET", "/healthz", None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (st, _) = tls
        .request(
            "POST",
            "/v1/users",
            Some(json!({"user": "alice", "password": "password1"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = tls
        .request(
            "POST",
            "/v1/sessions",
            Some(json!({"user": "alice", "password": "password1"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();

    // Plain HTTP to the TLS listener gets no answer.
    let plain = s.http.get(s.url("/healthz")).send().await;
    assert!(plain.is_err(), "plain HTTP answered on a TLS listener");

    // wss:// round trip: auth by URL, then a ping and a send to oneself.
    let io = tls.open().await;
    let url = format!("wss://localhost/v1/ws?token={token}&device=d");
    let (mut ws, _) = tokio_tungstenite::client_async(url, io)
        .await
        .expect("wss upgrade");
    let mut next = async || -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("frame in time")
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    };
    assert_eq!(next().await["type"], "ok");
    assert_eq!(next().await["type"], "offline_done");
    ws.send(Message::Text(
        json!({"type":"send","id":"s1","to":"alice","client_msg_id":"c1","kind":"text","content":"over tls"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    // The reply: stored (the sending device itself gets no push).
    let ok = loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    assert_eq!(
        (ok["type"].as_str(), ok["id"].as_str(), ok["conv"].as_str()),
        (Some("ok"), Some("s1"), Some("dm:alice:alice")),
        "{ok}"
    );
    // And it is in history, over HTTPS.
    let mut io = tls.open().await;
    let req = format!(
        "GET /v1/conversations/dm:alice:alice/messages HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    io.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, io.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("over tls"),
        "{text}"
    );
}

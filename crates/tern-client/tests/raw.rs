//! `raw::Connection` against a real in-process server: typed and raw
//! frames, answers by id with pushes kept in order, close codes, and a
//! refused upgrade as the HTTP error it is.

mod common;

use common::{Server, WAIT};
use tern_client::raw::{ClientFrame, Connection, Incoming};
use tern_client::wire::{MsgPush, SendAnswer};
use tern_client::{close, ClientConfig, Error, ErrorCode, OutMessage};

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

fn ws_url(s: &Server) -> String {
    format!("ws://{}/v1/ws", s.addr)
}

#[tokio::test]
async fn frames_answers_and_close_codes() {
    let s = Server::start().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let token = |c: &tern_client::Client| c.token().unwrap().to_owned();

    let (mut a, me) = Connection::connect(&ws_url(&s), &token(&alice), "a", &config())
        .await
        .unwrap();
    assert_eq!((&*me.user, &*me.device), ("alice", "a"));
    let done = a.next_frame(WAIT).await.unwrap();
    assert_eq!(done.value()["type"], "offline_done", "{done}");

    // Bad input on purpose: an error without id, and the connection stays.
    a.send_text("not json").await.unwrap();
    let e = a.next_frame(WAIT).await.unwrap();
    assert_eq!((e.ty(), e.id()), ("error", None));
    assert_eq!(e.value()["code"], "bad_frame");
    let ping = ClientFrame {
        ty: Some("ping".into()),
        ..ClientFrame::default()
    };
    assert_eq!(a.request(ping).await.unwrap().ty(), "pong");
    // An error answer is an Error::Server with the protocol code.
    let bad = OutMessage::text_to("nobody", "hi");
    match a
        .request(bad.send_frame())
        .await
        .unwrap()
        .answer::<SendAnswer>()
    {
        Err(Error::Server { code, .. }) => assert_eq!(code, "no_such_user"),
        other => panic!("unexpected {other:?}"),
    }

    let sent: SendAnswer = a
        .request(OutMessage::text_to("bob", "hello").send_frame())
        .await
        .unwrap()
        .answer()
        .unwrap();

    // bob's offline message and `offline_done` come right after the `ok`
    // to `auth`: they wait, in order, while he waits for his pong.
    let (mut b, _) = Connection::connect(&ws_url(&s), &token(&bob), "b", &config())
        .await
        .unwrap();
    let ping = ClientFrame {
        ty: Some("ping".into()),
        ..ClientFrame::default()
    };
    assert_eq!(b.request(ping).await.unwrap().ty(), "pong");
    let push: MsgPush = b.next_frame(WAIT).await.unwrap().decode().unwrap();
    assert_eq!((push.msg.msg_id, push.msg.seq), (sent.msg_id, sent.seq));
    assert_eq!(b.next_frame(WAIT).await.unwrap().ty(), "offline_done");

    // A newer login of the same device: the older connection closes with
    // 4009, and says so again on every later read.
    let (_a2, _) = Connection::connect(&ws_url(&s), &token(&alice), "a", &config())
        .await
        .unwrap();
    let c = a.wait_closed(WAIT).await.unwrap();
    assert_eq!(
        (c.code, c.sent_code()),
        (close::REPLACED, Some(close::REPLACED))
    );
    assert_eq!(a.closed(), Some(&c));
    assert!(matches!(a.recv().await, Incoming::Closed(again) if again == c));
    assert!(matches!(a.next_frame(WAIT).await, Err(Error::Closed(_))));
    assert!(a.send_text("{}").await.is_err(), "writes fail once closed");

    // A bad token at `auth`: the server's error, then its close code.
    let mut c = Connection::open(&ws_url(&s), &config()).await.unwrap();
    match c.auth("garbage", "d").await {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::Unauthenticated)),
        Ok(a) => panic!("accepted: {a:?}"),
    }
    assert_eq!(
        c.wait_closed(WAIT).await.unwrap().code,
        close::UNAUTHENTICATED
    );
    b.close(WAIT).await;
}

#[tokio::test]
async fn a_refused_upgrade_is_a_server_error() {
    let s = Server::start_with(|c| c.rate.connections = 1).await;
    let alice = s.user("alice").await;
    let token = alice.token().unwrap();
    let (_only, _) = Connection::connect(&ws_url(&s), token, "a", &config())
        .await
        .unwrap();
    match Connection::open(&ws_url(&s), &config()).await {
        Err(
            e @ Error::Server {
                status: Some(503),
                retry_after: Some(_),
                ..
            },
        ) => {
            assert_eq!(e.code(), Some(ErrorCode::Unavailable));
            assert!(e.is_transient(), "a full server is worth another try");
        }
        other => panic!("unexpected {other:?}"),
    }
}

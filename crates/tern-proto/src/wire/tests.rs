//! Each type: serialized to the exact text (PROTOCOL.md's examples, with
//! their `...` filled in), and deserialized back to an equal value.

use super::*;
use crate::codes::ErrorCode;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt::Debug;

fn round_trip<'a, T>(value: &T, json: &'a str)
where
    T: Serialize + Deserialize<'a> + PartialEq + Debug,
{
    assert_eq!(serde_json::to_string(value).unwrap(), json);
    let back: T = serde_json::from_str(json).unwrap();
    assert_eq!(&back, value);
}

fn raw(json: &str) -> RawJson<'static> {
    RawJson::from_string(json.to_owned()).unwrap()
}

fn c(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn msg() -> MsgView<'static> {
    MsgView {
        msg_id: 7311845012345678901,
        conv: c("dm:alice:bob"),
        seq: 41,
        from: c("alice"),
        to: Some(c("bob")),
        group: None,
        kind: c("text"),
        content: Some(raw(r#""hello""#)),
        ts: 1795000000000,
        client_msg_id: Some(c("6f1c")),
        recalled: false,
        reply_to: None,
        mentions: Vec::new(),
        edited_at: None,
        reactions: Default::default(),
    }
}

#[test]
fn ok_auth() {
    round_trip(
        &OkFrame::new(
            Some("1"),
            AuthAnswer {
                user: c("alice"),
                device: c("phone"),
                ts: 1795000000000,
            },
        ),
        r#"{"type":"ok","id":"1","user":"alice","device":"phone","ts":1795000000000}"#,
    );
    // With the token on the upgrade URL: the same, without `id`.
    round_trip(
        &OkFrame::new(
            None,
            AuthAnswer {
                user: c("alice"),
                device: c("default"),
                ts: 5,
            },
        ),
        r#"{"type":"ok","user":"alice","device":"default","ts":5}"#,
    );
}

#[test]
fn ok_send() {
    let mut answer = SendAnswer {
        msg_id: 7311845012345678901,
        conv: c("dm:alice:bob"),
        seq: 41,
        ts: 1795000000000,
        duplicate: false,
    };
    round_trip(
        &OkFrame::new(Some("2"), answer.clone()),
        r#"{"type":"ok","id":"2","msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"ts":1795000000000}"#,
    );
    answer.duplicate = true;
    round_trip(
        &OkFrame::new(Some("2"), answer.clone()),
        r#"{"type":"ok","id":"2","msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"ts":1795000000000,"duplicate":true}"#,
    );
    // `POST /v1/messages`: the same fields, no `type` or `id`.
    round_trip(
        &answer,
        r#"{"msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"ts":1795000000000,"duplicate":true}"#,
    );
}

#[test]
fn ok_empty_and_read() {
    round_trip(
        &OkFrame::new(Some("8"), Empty {}),
        r#"{"type":"ok","id":"8"}"#,
    );
    round_trip(
        &OkFrame::new(Some("4"), ReadAnswer { read_seq: 41 }),
        r#"{"type":"ok","id":"4","read_seq":41}"#,
    );
}

#[test]
fn ok_sync() {
    let answer = SyncAnswer {
        convs: vec![
            ConvView {
                conv: c("dm:alice:bob"),
                peer: Some(c("bob")),
                group: None,
                max_seq: 41,
                read_seq: 40,
                unread: 1,
                last: Some(msg()),
                updated_at: 1795000000000,
                peer_delivered_seq: Some(41),
                peer_read_seq: Some(39),
                mentioned: false,
                muted_until: 1796000000000,
                pinned: true,
                retention_days: 0,
            },
            ConvView {
                conv: c("group:g8x2k"),
                peer: None,
                group: Some(c("g8x2k")),
                max_seq: 0,
                read_seq: 0,
                unread: 0,
                last: None,
                updated_at: 1794000000000,
                peer_delivered_seq: None,
                peer_read_seq: None,
                mentioned: false,
                muted_until: 0,
                pinned: false,
                retention_days: 30,
            },
        ],
        total_unread: 1,
    };
    let convs = concat!(
        r#""convs":[{"conv":"dm:alice:bob","peer":"bob","max_seq":41,"read_seq":40,"unread":1,"#,
        r#""last":{"msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"from":"alice","to":"bob","kind":"text","content":"hello","ts":1795000000000,"client_msg_id":"6f1c"},"#,
        r#""updated_at":1795000000000,"peer_delivered_seq":41,"peer_read_seq":39,"muted_until":1796000000000,"pinned":true},"#,
        r#"{"conv":"group:g8x2k","group":"g8x2k","max_seq":0,"read_seq":0,"unread":0,"last":null,"updated_at":1794000000000,"muted_until":0,"pinned":false,"retention_days":30}],"total_unread":1"#
    );
    round_trip(
        &OkFrame::new(Some("5"), answer.clone()),
        &format!(r#"{{"type":"ok","id":"5",{convs}}}"#),
    );
    round_trip(&answer, &format!("{{{convs}}}"));
}

#[test]
fn ok_history() {
    let recalled = MsgView {
        msg_id: 7311845012345678902,
        conv: c("group:g8x2k"),
        seq: 42,
        from: c("alice"),
        to: None,
        group: Some(c("g8x2k")),
        kind: c("image"),
        content: None,
        ts: 1795000000001,
        client_msg_id: Some(c("a9e0")),
        recalled: true,
        reply_to: None,
        mentions: Vec::new(),
        edited_at: None,
        reactions: Default::default(),
    };
    let image = MsgView {
        seq: 43,
        content: Some(raw(r#"{"url":"https://x/y.png","w":640,"h":480}"#)),
        recalled: false,
        ..recalled.clone()
    };
    let answer = HistoryAnswer {
        msgs: vec![recalled, image],
    };
    let msgs = concat!(
        r#""msgs":[{"msg_id":"7311845012345678902","conv":"group:g8x2k","seq":42,"from":"alice","group":"g8x2k","kind":"image","ts":1795000000001,"client_msg_id":"a9e0","recalled":true},"#,
        r#"{"msg_id":"7311845012345678902","conv":"group:g8x2k","seq":43,"from":"alice","group":"g8x2k","kind":"image","content":{"url":"https://x/y.png","w":640,"h":480},"ts":1795000000001,"client_msg_id":"a9e0"}]"#
    );
    round_trip(
        &OkFrame::new(Some("6"), answer.clone()),
        &format!(r#"{{"type":"ok","id":"6",{msgs}}}"#),
    );
    round_trip(&answer, &format!("{{{msgs}}}"));
}

#[test]
fn ok_presence_and_read_status() {
    let online = [(c("bob"), true), (c("carol"), false)]
        .into_iter()
        .collect();
    round_trip(
        &OkFrame::new(Some("9"), PresenceAnswer { online }),
        r#"{"type":"ok","id":"9","online":{"bob":true,"carol":false}}"#,
    );
    round_trip(
        &OkFrame::new(
            Some("13"),
            ReadStatusAnswer {
                conv: c("group:g8x2k"),
                seq: 41,
                read: vec![c("bob")],
                unread: vec![c("carol"), c("dave")],
            },
        ),
        r#"{"type":"ok","id":"13","conv":"group:g8x2k","seq":41,"read":["bob"],"unread":["carol","dave"]}"#,
    );
}

#[test]
fn ok_frame_checks_its_type() {
    let r = serde_json::from_str::<OkFrame<Empty>>(r#"{"type":"error","id":"1"}"#);
    assert!(r.is_err());
    let r = serde_json::from_str::<OkFrame<Empty>>(r#"{"id":"1"}"#);
    assert!(r.is_err());
    // Fields in any order; the id may be escaped.
    let f: OkFrame<ReadAnswer> =
        serde_json::from_str(r#"{"read_seq":3,"id":"a\"b","type":"ok"}"#).unwrap();
    assert_eq!((f.id.as_deref(), f.body.read_seq), (Some("a\"b"), 3));
    // Not only from borrowed text.
    let f: OkFrame<'static, HistoryAnswer<'static>> =
        serde_json::from_reader(&br#"{"type":"ok","msgs":[]}"#[..]).unwrap();
    assert!(f.id.is_none() && f.body.msgs.is_empty());
}

#[test]
fn error_and_pong() {
    round_trip(
        &ErrorFrame::new(Some("2"), ErrorCode::NoSuchUser, "no user \"zed\""),
        r#"{"type":"error","id":"2","code":"no_such_user","message":"no user \"zed\""}"#,
    );
    let e = ErrorFrame::new(None, ErrorCode::BadFrame, "frame is not JSON");
    round_trip(
        &e,
        r#"{"type":"error","code":"bad_frame","message":"frame is not JSON"}"#,
    );
    assert_eq!(e.code(), Some(ErrorCode::BadFrame));
    round_trip(&Pong::new(Some("7")), r#"{"type":"pong","id":"7"}"#);
    round_trip(&Pong::new(None), r#"{"type":"pong"}"#);
}

#[test]
fn msg_push() {
    round_trip(
        &MsgPush::new(msg()),
        r#"{"type":"msg","msg":{"msg_id":"7311845012345678901","conv":"dm:alice:bob","seq":41,"from":"alice","to":"bob","kind":"text","content":"hello","ts":1795000000000,"client_msg_id":"6f1c"}}"#,
    );
    let mut m = msg();
    m.msg_id = u64::MAX;
    m.client_msg_id = None;
    m.content = Some(raw(r#""hi \"x\" \u00e9""#));
    round_trip(
        &MsgPush::new(m),
        r#"{"type":"msg","msg":{"msg_id":"18446744073709551615","conv":"dm:alice:bob","seq":41,"from":"alice","to":"bob","kind":"text","content":"hi \"x\" \u00e9","ts":1795000000000}}"#,
    );
}

#[test]
fn msg_id_is_a_decimal_string() {
    let push = |id: &str| {
        format!(
            r#"{{"type":"msg","msg":{{"msg_id":{id},"conv":"c","seq":1,"from":"a","kind":"text","ts":1}}}}"#
        )
    };
    assert!(serde_json::from_str::<MsgPush>(&push(r#""12""#)).is_ok());
    for bad in [
        "12",
        r#""+12""#,
        r#""-1""#,
        r#""""#,
        r#""18446744073709551616""#,
    ] {
        assert!(
            serde_json::from_str::<MsgPush>(&push(bad)).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn wrong_type_is_refused() {
    let r = serde_json::from_str::<Typing>(r#"{"type":"typo","conv":"c","user":"u"}"#);
    assert!(r.is_err());
}

#[test]
fn receipts() {
    round_trip(
        &Receipt {
            ty: tag::Receipt,
            conv: c("dm:alice:bob"),
            by: c("bob"),
            delivered_seq: Some(41),
            read_seq: None,
        },
        r#"{"type":"receipt","conv":"dm:alice:bob","by":"bob","delivered_seq":41}"#,
    );
    round_trip(
        &Receipt {
            ty: tag::Receipt,
            conv: c("dm:alice:bob"),
            by: c("bob"),
            delivered_seq: None,
            read_seq: Some(41),
        },
        r#"{"type":"receipt","conv":"dm:alice:bob","by":"bob","read_seq":41}"#,
    );
}

#[test]
fn other_pushes() {
    round_trip(
        &Recalled {
            ty: tag::Recalled,
            conv: c("dm:alice:bob"),
            seq: 41,
            msg_id: 7311845012345678901,
            by: c("alice"),
        },
        r#"{"type":"recalled","conv":"dm:alice:bob","seq":41,"msg_id":"7311845012345678901","by":"alice"}"#,
    );
    round_trip(
        &Typing {
            ty: tag::Typing,
            conv: c("dm:alice:bob"),
            user: c("alice"),
        },
        r#"{"type":"typing","conv":"dm:alice:bob","user":"alice"}"#,
    );
    round_trip(
        &PresencePush {
            ty: tag::Presence,
            user: c("bob"),
            online: true,
            ts: 1795000000000,
        },
        r#"{"type":"presence","user":"bob","online":true,"ts":1795000000000}"#,
    );
    round_trip(
        &Notify {
            ty: tag::Notify,
            conv: c("group:g8x2k"),
            max_seq: 41,
        },
        r#"{"type":"notify","conv":"group:g8x2k","max_seq":41}"#,
    );
    round_trip(
        &RoomMsg {
            ty: tag::RoomMsg,
            room: c("launch"),
            from: c("alice"),
            content: raw(r#""hi""#),
            ts: 1795000000000,
        },
        r#"{"type":"room_msg","room":"launch","from":"alice","content":"hi","ts":1795000000000}"#,
    );
    round_trip(
        &OfflineDone {
            ty: tag::OfflineDone,
            count: 0,
            truncated: false,
        },
        r#"{"type":"offline_done","count":0,"truncated":false}"#,
    );
}

#[test]
fn room_content_may_be_null() {
    let json = r#"{"type":"room_msg","room":"r","from":"a","content":null,"ts":1}"#;
    let m: RoomMsg = serde_json::from_str(json).unwrap();
    assert_eq!(m.content.get(), "null");
    assert_eq!(serde_json::to_string(&m).unwrap(), json);
}

#[test]
fn batch() {
    let a = r#"{"type":"room_msg","room":"launch","from":"alice","content":"hi","ts":1}"#;
    let b = r#"{"type":"notify","conv":"group:g8x2k","max_seq":41}"#;
    let json = format!(r#"{{"type":"batch","frames":[{a},{b}]}}"#);
    round_trip(
        &Batch {
            ty: tag::Batch,
            frames: vec![raw(a), raw(b)],
        },
        &json,
    );
    let mut out = Vec::new();
    write_batch(&mut out, [a.as_bytes(), b.as_bytes()]);
    assert_eq!(String::from_utf8(out).unwrap(), json);
}

#[test]
fn http_bodies() {
    round_trip(
        &ErrorBody::new(ErrorCode::UserExists, "user exists"),
        r#"{"code":"user_exists","message":"user exists"}"#,
    );
    round_trip(&UserCreated { user: c("alice") }, r#"{"user":"alice"}"#);
    round_trip(
        &SessionToken {
            expires_at: 1795000000000,
            token: c("eyJ0.x.y"),
        },
        r#"{"expires_at":1795000000000,"token":"eyJ0.x.y"}"#,
    );
    round_trip(
        &UserInfo {
            avatar: None,
            name: c("Alice"),
            online: false,
            user: c("alice"),
            bot: false,
        },
        r#"{"avatar":null,"name":"Alice","online":false,"user":"alice"}"#,
    );
    round_trip(
        &UserInfo {
            avatar: Some(c("m1")),
            name: c("Alice"),
            online: true,
            user: c("alice"),
            bot: true,
        },
        r#"{"avatar":"m1","bot":true,"name":"Alice","online":true,"user":"alice"}"#,
    );
    round_trip(
        &ProfilePush {
            ty: tag::Profile,
            user: c("alice"),
            name: c("Al"),
            avatar: None,
        },
        r#"{"type":"profile","user":"alice","name":"Al","avatar":null}"#,
    );
    round_trip(
        &ConvSettingsPush {
            ty: tag::ConvSettings,
            conv: c("dm:alice:bob"),
            muted_until: 5,
            pinned: true,
        },
        r#"{"type":"conv_settings","conv":"dm:alice:bob","muted_until":5,"pinned":true}"#,
    );
    round_trip(
        &ConvSettingsAnswer {
            muted_until: 0,
            pinned: false,
            retention_days: 7,
        },
        r#"{"muted_until":0,"pinned":false,"retention_days":7}"#,
    );
    round_trip(
        &SessionsList {
            sessions: vec![SessionView {
                created_at: 1,
                current: true,
                devices: vec![c("phone")],
                expires_at: 3,
                last_seen: 2,
                session: c("00ff"),
            }],
        },
        r#"{"sessions":[{"created_at":1,"current":true,"devices":["phone"],"expires_at":3,"last_seen":2,"session":"00ff"}]}"#,
    );
    round_trip(
        &FriendAnswer {
            status: FriendState::Requested,
        },
        r#"{"status":"requested"}"#,
    );
    round_trip(
        &FriendAnswer {
            status: FriendState::Friends,
        },
        r#"{"status":"friends"}"#,
    );
    round_trip(
        &FriendsList {
            friends: vec![FriendEntry {
                online: true,
                user: c("bob"),
            }],
            incoming: vec![c("carol")],
            outgoing: vec![],
        },
        r#"{"friends":[{"online":true,"user":"bob"}],"incoming":["carol"],"outgoing":[]}"#,
    );
    let mut group = GroupAnswer {
        group: c("g8x2k"),
        members: vec![c("alice"), c("bob")],
        name: c("team"),
        owner: c("alice"),
        size: None,
        admins: vec![],
        announcement: c(""),
        muted_all: false,
        mutes: Default::default(),
        dissolved: false,
    };
    round_trip(
        &group,
        r#"{"group":"g8x2k","members":["alice","bob"],"name":"team","owner":"alice","admins":[],"announcement":"","muted_all":false,"mutes":{},"dissolved":false}"#,
    );
    group.size = Some(2);
    group.admins = vec![c("bob")];
    group.announcement = c("hi");
    group.muted_all = true;
    group.mutes = [(c("bob"), 1_700_000_000_000)].into_iter().collect();
    group.dissolved = true;
    round_trip(
        &group,
        r#"{"group":"g8x2k","members":["alice","bob"],"name":"team","owner":"alice","size":2,"admins":["bob"],"announcement":"hi","muted_all":true,"mutes":{"bob":1700000000000},"dissolved":true}"#,
    );
}

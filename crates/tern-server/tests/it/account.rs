//! 5.6 account data: `GET /v1/users/me/export` (a zip of JSON documents,
//! opened here), over real HTTP and WebSocket sockets.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;

/// The export of `token`: every file of the zip as JSON, by name.
async fn export(s: &Server, token: &str) -> BTreeMap<String, Value> {
    let r = s
        .http
        .get(s.url("/v1/users/me/export"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap(),
        "application/zip"
    );
    let bytes = r.bytes().await.unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        out.insert(
            f.name().to_owned(),
            serde_json::from_str(&text).expect("JSON"),
        );
    }
    out
}

fn contents(conv: &Value) -> Vec<Value> {
    conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].clone())
        .collect()
}

#[tokio::test]
async fn export_holds_profile_friends_groups_and_readable_messages() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let tc = s.user("carol").await;
    s.befriend(("alice", &ta), ("bob", &tb)).await;
    let gid = s.new_group(&ta, "team", &["bob"]).await;
    let mut alice = s.connect(&ta, "a").await;
    let mut bob = s.connect(&tb, "b").await;
    alice.send_text("bob", "x1", "hi bob").await;
    bob.send_text("alice", "y1", "hi alice").await;
    alice.send_group(&gid, "x2", "hello team").await;
    // Bob deletes alice's first message for himself: gone from his
    // export only.
    bob.ok(json!({"type":"delete","conv":"dm:alice:bob","seqs":[1]}))
        .await;
    let mut carol = s.connect(&tc, "c").await;
    carol.send_text("carol", "z1", "note to self").await;

    let a = export(&s, &ta).await;
    assert_eq!(a["profile.json"]["user"], "alice");
    assert_eq!(a["profile.json"]["name"], "alice");
    assert_eq!(a["friends.json"]["friends"], json!(["bob"]));
    let groups = a["groups.json"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["group"], json!(gid));
    assert_eq!(groups[0]["name"], "team");
    assert_eq!(groups[0]["members"], json!(["alice", "bob"]));
    let dm = &a["conversations/dm_alice_bob.json"];
    assert_eq!(contents(dm), vec![json!("hi bob"), json!("hi alice")]);
    assert_eq!(dm["messages"][0]["from"], "alice");
    assert_eq!(dm["messages"][1]["seq"], 2);
    let g = &a[&format!("conversations/group_{gid}.json")];
    assert!(contents(g).contains(&json!("hello team")), "{g}");
    assert_eq!(a["export.json"]["truncated"], false);
    assert_eq!(
        a["export.json"]["conversations"].as_array().unwrap().len(),
        2
    );
    // Nothing of carol's.
    assert!(a.keys().all(|k| !k.contains("carol")), "{:?}", a.keys());

    let b = export(&s, &tb).await;
    assert_eq!(
        contents(&b["conversations/dm_alice_bob.json"]),
        vec![json!("hi alice")]
    );
    let c = export(&s, &tc).await;
    assert_eq!(c["friends.json"]["friends"], json!([]));
    assert_eq!(c["groups.json"]["groups"], json!([]));
    assert_eq!(
        contents(&c["conversations/dm_carol_carol.json"]),
        vec![json!("note to self")]
    );
    assert!(!c.contains_key("conversations/dm_alice_bob.json"));
    // Without a token: 401.
    let r = s
        .http
        .get(s.url("/v1/users/me/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn export_is_bounded_by_export_max_messages() {
    let s = Server::start_with(|c| c.account.export_max_messages = 3).await;
    let ta = s.user("alice").await;
    let _tb = s.user("bob").await;
    let mut alice = s.connect(&ta, "a").await;
    for i in 0..5 {
        alice
            .send_text("bob", &format!("m{i}"), &format!("n{i}"))
            .await;
    }
    let a = export(&s, &ta).await;
    assert_eq!(a["export.json"]["truncated"], true);
    assert_eq!(a["export.json"]["max_messages"], 3);
    assert_eq!(
        contents(&a["conversations/dm_alice_bob.json"]),
        vec![json!("n0"), json!("n1"), json!("n2")]
    );
}

/// `DELETE /v1/users/me` with a JSON body; the status and body.
async fn erase(s: &Server, token: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .delete(s.url("/v1/users/me"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// 5.6 account erase: the password is asked again; afterwards every
/// token is dead (its socket closed with 4001), the id cannot log in or
/// register again, friends, requests and blocks are gone, groups were
/// left (the owner's passed on, with its `system` event), and the user's
/// messages stay as `deleted_user` tombstones without content in the
/// others' history, search and export.
#[tokio::test]
async fn erase_revokes_everything_and_leaves_tombstones() {
    let s = Server::start().await;
    let ta = s.user("alice").await;
    let tb = s.user("bob").await;
    let _tc = s.user("carol").await;
    let td = s.user("dave").await;
    s.befriend(("alice", &ta), ("bob", &tb)).await;
    s.as_user(&td).add_friend("alice").await.unwrap();
    s.put("/v1/blocks/carol", Some(&ta)).await;
    let gid = s.new_group(&ta, "team", &["bob", "carol"]).await;
    // A group of alice's alone: dissolved by the erase.
    let _solo = s.new_group(&ta, "alone", &[]).await;
    let mut alice = s.connect(&ta, "a").await;
    let mut bob = s.connect(&tb, "b").await;
    alice.send_text("bob", "x1", "secret plans").await;
    bob.next_msg().await;
    bob.send_text("alice", "y1", "tell me").await;
    alice.next_msg().await;
    alice.send_group(&gid, "x2", "team secret").await;
    bob.next_msg().await;
    let second = s.login("alice").await;

    // A wrong password changes nothing.
    let (st, v) = erase(&s, &ta, json!({"password": "wrong password"})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (401, Some("bad_credentials")),
        "{v}"
    );
    let (st, v) = erase(&s, &ta, json!({})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid")), "{v}");
    let (st, _) = s.get("/v1/friends", Some(&ta)).await;
    assert_eq!(st, 200);

    // The SDK's typed call.
    s.as_user(&ta).erase_account(PASSWORD).await.unwrap();
    assert_eq!(alice.closed_with().await, 4001);
    for t in [&ta, &second] {
        let (st, _) = s.get("/v1/friends", Some(t)).await;
        assert_eq!(st, 401);
    }
    let (st, v) = s
        .post(
            "/v1/sessions",
            None,
            json!({"user":"alice","password":PASSWORD}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (401, Some("bad_credentials")));
    // The name stays taken.
    let (st, v) = s
        .post(
            "/v1/users",
            None,
            json!({"user":"alice","password":PASSWORD}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (409, Some("user_exists")));
    let (st, v) = s.get("/v1/users/alice", Some(&tb)).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")));
    let (st, v) = s
        .post(
            "/v1/messages",
            Some(&tb),
            json!({"to":"alice","client_msg_id":"y2","kind":"text","content":"hello?"}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_such_user")), "{v}");

    // Friends, requests, blocks: gone on the other sides too.
    let (_, v) = s.get("/v1/friends", Some(&tb)).await;
    assert_eq!(v["friends"], json!([]));
    let (_, v) = s.get("/v1/friends", Some(&td)).await;
    assert_eq!(v["outgoing"], json!([]));
    // Groups: left; the owner's place passed to the longest-standing
    // member; the group with nobody else was dissolved.
    let (st, g) = s.get(&format!("/v1/groups/{gid}"), Some(&tb)).await;
    assert_eq!(st, 200);
    assert_eq!(g["owner"], "bob");
    assert_eq!(g["members"], json!(["bob", "carol"]));
    let left = bob.next_msg().await;
    assert_eq!(left["kind"], "system");
    assert_eq!(
        left["content"],
        json!({"event":"member_left","user":"alice"})
    );

    // Tombstones in bob's history (1:1 and group), without content.
    let conv = dm("alice", "bob");
    let (_, h) = s
        .get(&format!("/v1/conversations/{conv}/messages"), Some(&tb))
        .await;
    let msgs = h["msgs"].as_array().unwrap();
    assert_eq!(seqs(&h["msgs"]), vec![1, 2]);
    assert_eq!(msgs[0]["kind"], "deleted_user");
    assert_eq!(msgs[0]["from"], "alice");
    assert!(msgs[0].get("content").is_none(), "{}", msgs[0]);
    assert_eq!(msgs[1]["content"], "tell me");
    let (_, h) = s
        .get(
            &format!("/v1/conversations/group:{gid}/messages"),
            Some(&tb),
        )
        .await;
    let text: Vec<&Value> = h["msgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from"] == "alice" && m["kind"] != "system")
        .collect();
    assert_eq!(text.len(), 1);
    assert_eq!(text[0]["kind"], "deleted_user");
    assert!(text[0].get("content").is_none());
    // Search finds none of it.
    let (_, v) = s.get("/v1/search?q=secret", Some(&tb)).await;
    assert_eq!(v["hits"], json!([]), "{v}");
    // Bob's export shows the tombstones.
    let b = export(&s, &tb).await;
    let dm_export = &b["conversations/dm_alice_bob.json"];
    assert_eq!(dm_export["messages"][0]["kind"], "deleted_user");
    assert_eq!(contents(dm_export), vec![Value::Null, json!("tell me")]);
    // Sync's last message of the group is no longer alice's text.
    let (_, v) = s.get("/v1/conversations", Some(&tb)).await;
    assert!(!v.to_string().contains("secret"), "{v}");
    bob.close().await;
}

/// A bot has no password: it cannot erase itself (`forbidden`). Erase
/// answers 204 once; the same call again finds its token revoked.
#[tokio::test]
async fn a_bot_cannot_erase_itself_and_erase_is_not_repeated() {
    let s = Server::start().await;
    let admin = tern_server::admin::Admin::open(test_config(s.dir.path()))
        .await
        .unwrap();
    admin.add_bot("helper", None).await.unwrap();
    let (bot, _) = admin.token("helper", 3600).await.unwrap();
    let (st, v) = erase(&s, &bot, json!({"password": "anything at all"})).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (st, _) = s.get("/v1/friends", Some(&bot)).await;
    assert_eq!(st, 200);

    let ta = s.user("alice").await;
    let (st, v) = erase(&s, &ta, json!({"password": PASSWORD})).await;
    assert_eq!(st, 204, "{v}");
    let (st, v) = erase(&s, &ta, json!({"password": PASSWORD})).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthenticated")));
}

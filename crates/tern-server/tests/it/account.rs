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

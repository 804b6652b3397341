//! 5.1: replies and mentions stored with a message, mention positions,
//! edits (`tern_core::rules::may_edit`) and reactions
//! (`tern_core::rules::may_react`).

use super::*;
use tern_core::store::{Extras, MENTION_ALL};

fn mention_seq(l: &ConvList, conv: &str) -> u64 {
    l.convs
        .iter()
        .find(|c| c.conv == conv)
        .map_or(0, |c| c.mention_seq)
}

pub async fn replies_and_mentions_are_stored(s: &dyn Store) {
    send(s, create("men", "ann", 100)).await;
    for (u, ts) in [("bob", 101), ("cat", 102)] {
        send(s, join("men", "ann", u, ts)).await;
    }
    let conv = "group:men";
    let first = send(s, gmsg("men", "bob", 110, "m1")).await;
    let mut m = gmsg("men", "ann", 111, "m2");
    m.extras = Extras {
        reply_to: Some(first.seq),
        mentions: vec!["cat".into()],
        ..Default::default()
    };
    let stored = send(s, m).await;
    assert_eq!(stored.reply_to, Some(first.seq));
    assert_eq!(stored.mentions, vec!["cat".to_owned()]);
    let again = s.message(conv, stored.seq).await.unwrap().unwrap();
    assert_eq!(
        (again.reply_to, again.mentions.clone(), again.edited_at),
        (Some(first.seq), vec!["cat".to_owned()], None)
    );
    let cat = s.conversations("cat", 0, 100).await.unwrap();
    assert_eq!(mention_seq(&cat, conv), stored.seq);
    let bob = s.conversations("bob", 0, 100).await.unwrap();
    assert_eq!(mention_seq(&bob, conv), 0);
    // @all: every current member but the sender.
    let mut all = gmsg("men", "ann", 112, "m3");
    all.extras.mentions = vec![MENTION_ALL.into()];
    let all = send(s, all).await;
    for u in ["bob", "cat"] {
        let l = s.conversations(u, 0, 100).await.unwrap();
        assert_eq!(mention_seq(&l, conv), all.seq, "{u}");
    }
    let ann = s.conversations("ann", 0, 100).await.unwrap();
    assert_eq!(mention_seq(&ann, conv), 0);
    // A message without extras stores none.
    let plain = send(s, gmsg("men", "bob", 113, "m4")).await;
    let plain = s.message(conv, plain.seq).await.unwrap().unwrap();
    assert_eq!((plain.reply_to, plain.mentions.len()), (None, 0));
}

pub async fn edits_follow_the_rules(s: &dyn Store) {
    let m = send(s, dm("ann", "bob", 1_000, "e1")).await;
    let conv = m.conv.as_str();
    let e = s
        .edit(conv, m.seq, "ann", "\"new\"", 500, 1_400)
        .await
        .unwrap();
    assert_eq!(e.content.as_deref(), Some("\"new\""));
    assert_eq!(e.edited_at, Some(1_400));
    assert_eq!(e.kind, "text");
    let read = s.message(conv, m.seq).await.unwrap().unwrap();
    assert_eq!(
        (read.content, read.edited_at),
        (e.content.clone(), Some(1_400))
    );
    // The newest content shows in history and the list's last message.
    let h = s
        .history(
            "bob",
            conv,
            HistoryQuery {
                before_seq: None,
                after_seq: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(h[0].edited_at, Some(1_400));
    let l = s.conversations("bob", 0, 10).await.unwrap();
    let last = l.convs[0].last.as_ref().unwrap();
    assert_eq!(last.content.as_deref(), Some("\"new\""));
    // A second edit at the same time is still later.
    let e2 = s
        .edit(conv, m.seq, "ann", "\"newer\"", 500, 1_400)
        .await
        .unwrap();
    assert!(e2.edited_at > e.edited_at);
    for (by, now) in [("bob", 1_400), ("ann", 1_501)] {
        assert!(
            matches!(
                s.edit(conv, m.seq, by, "\"x\"", 500, now).await,
                Err(StoreError::Forbidden(_))
            ),
            "{by} at {now}"
        );
    }
    assert!(matches!(
        s.edit(conv, 99, "ann", "\"x\"", 500, 1_400).await,
        Err(StoreError::Invalid(_))
    ));
    s.recall(conv, m.seq, "ann", 10_000, 1_450).await.unwrap();
    assert!(matches!(
        s.edit(conv, m.seq, "ann", "\"x\"", 10_000, 1_460).await,
        Err(StoreError::Forbidden(_))
    ));
}

pub async fn reactions_counted_and_bounded(s: &dyn Store) {
    let m = send(s, dm("cat", "dan", 1_000, "r1")).await;
    let conv = m.conv.as_str();
    assert!(s.react(conv, 1, "dan", "👍", true, 2, 10).await.unwrap());
    assert!(!s.react(conv, 1, "dan", "👍", true, 2, 11).await.unwrap());
    assert!(s.react(conv, 1, "cat", "👍", true, 2, 12).await.unwrap());
    assert!(s.react(conv, 1, "cat", "🎉", true, 2, 13).await.unwrap());
    // A third distinct emoji is over the bound; joining one in use is not.
    assert!(matches!(
        s.react(conv, 1, "dan", "❤️", true, 2, 14).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(s.react(conv, 1, "dan", "🎉", true, 2, 15).await.unwrap());
    // "a" and "a " are different emojis (every byte counts).
    let two = send(s, dm("cat", "dan", 1_001, "r2")).await;
    assert!(s
        .react(conv, two.seq, "dan", "a", true, 5, 16)
        .await
        .unwrap());
    assert!(s
        .react(conv, two.seq, "dan", "a ", true, 5, 17)
        .await
        .unwrap());
    assert!(matches!(
        s.react(conv, 99, "dan", "👍", true, 2, 18).await,
        Err(StoreError::Invalid(_))
    ));
    let all = s.reactions(conv, 1, two.seq, 1).await.unwrap();
    let view: Vec<(u64, &str, u64, Vec<&str>)> = all
        .iter()
        .map(|r| {
            (
                r.seq,
                r.emoji.as_str(),
                r.count,
                r.users.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (1, "👍", 2, vec!["dan"]),
            (1, "🎉", 2, vec!["cat"]),
            (two.seq, "a", 1, vec!["dan"]),
            (two.seq, "a ", 1, vec!["dan"]),
        ]
    );
    // Taking back: whether there was one.
    assert!(s.react(conv, 1, "dan", "👍", false, 2, 20).await.unwrap());
    assert!(!s.react(conv, 1, "dan", "👍", false, 2, 21).await.unwrap());
    let one = s.reactions(conv, 1, 1, 50).await.unwrap();
    assert_eq!(one[0].users, vec!["cat".to_owned()]);
    assert_eq!(one[0].count, 1);
    // A recalled message takes no more.
    s.recall(conv, two.seq, "cat", 10_000, 1_100).await.unwrap();
    assert!(matches!(
        s.react(conv, two.seq, "dan", "b", true, 5, 22).await,
        Err(StoreError::Forbidden(_))
    ));
}

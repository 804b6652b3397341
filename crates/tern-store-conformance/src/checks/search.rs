//! 5.2 search: every backend indexes with `tern_core::search`'s terms and
//! answers the same hits: words (AND, case, last word as a prefix), short
//! words, CJK pairs, `before_ts`, `conv`, `limit`, a former member's end,
//! recalled and deleted messages, reindexing one message.

use tern_core::search::{query_terms, SearchQuery};
use tern_core::store::Store;

use super::*;

/// Indexes until the store reports nothing left.
pub async fn index_all(s: &dyn Store) {
    for _ in 0..1000 {
        if s.index_pending(7).await.unwrap() < 7 {
            return;
        }
    }
    panic!("the indexer never caught up");
}

async fn find(
    s: &dyn Store,
    user: &str,
    q: &str,
    conv: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Vec<String> {
    let q = SearchQuery {
        terms: query_terms(q).expect("a query with words"),
        conv: conv.map(str::to_owned),
        before_ts: before,
        limit,
    };
    s.search(user, &q)
        .await
        .unwrap()
        .into_iter()
        .map(|m| serde_json::from_str::<String>(m.content.as_deref().unwrap_or("\"\"")).unwrap())
        .collect()
}

async fn words(s: &dyn Store, user: &str, q: &str) -> Vec<String> {
    find(s, user, q, None, None, 100).await
}

pub async fn search_words_prefixes_and_cjk(s: &dyn Store) {
    for (i, t) in [
        "Let's GO home",
        "hello world",
        "我们去北京大学",
        "go",
        "한국어 텍스트",
        "a b",
    ]
    .iter()
    .enumerate()
    {
        send(s, dm("ann", "bob", 100 + i as i64, t)).await;
    }
    // Not indexed yet: nothing found; the indexer takes everything once.
    assert!(words(s, "bob", "go").await.is_empty());
    index_all(s).await;
    assert_eq!(s.index_pending(100).await.unwrap(), 0);
    assert_eq!(words(s, "bob", "go").await, ["go", "Let's GO home"]);
    assert_eq!(words(s, "ann", "GO").await.len(), 2);
    assert_eq!(words(s, "bob", "ho").await, ["Let's GO home"]);
    assert_eq!(words(s, "bob", "go ho").await, ["Let's GO home"]);
    assert!(words(s, "bob", "ho go").await.is_empty());
    assert!(words(s, "bob", "go world").await.is_empty());
    assert_eq!(words(s, "bob", "a b").await, ["a b"]);
    for q in ["北京", "京大", "去北京大学", "我们去北京大学"] {
        assert_eq!(words(s, "bob", q).await, ["我们去北京大学"], "{q}");
    }
    assert!(words(s, "bob", "大北").await.is_empty());
    assert!(words(s, "bob", "北京大楼").await.is_empty());
    assert_eq!(words(s, "bob", "한국").await, ["한국어 텍스트"]);
    // Only the user's conversations.
    assert!(words(s, "cat", "go").await.is_empty());
}

pub async fn search_bounds_and_exclusions(s: &dyn Store) {
    let d = dm_conv("ann", "bob");
    for i in 0..5 {
        send(s, dm("ann", "bob", 100 + i, &format!("apple {i}"))).await;
    }
    let g = group_conv("team");
    send(s, diffused(create("team", "ann", 200))).await;
    send(s, diffused(join("team", "ann", "cat", 210))).await;
    send(s, diffused(gmsg("team", "ann", 220, "apple one"))).await;
    send(s, diffused(leave("team", "ann", "cat", 230))).await;
    send(s, diffused(gmsg("team", "ann", 240, "apple two"))).await;
    index_all(s).await;
    assert_eq!(
        find(s, "ann", "apple", None, None, 3).await,
        ["apple two", "apple one", "apple 4"]
    );
    assert_eq!(
        find(s, "ann", "apple", None, Some(103), 10).await,
        ["apple 2", "apple 1", "apple 0"]
    );
    assert_eq!(
        find(s, "ann", "apple", Some(&g), None, 10).await,
        ["apple two", "apple one"]
    );
    // A former member: up to its removal.
    assert_eq!(words(s, "cat", "apple").await, ["apple one"]);
    // Recalled: gone for all; deleted: gone for the one who deleted.
    s.recall(&d, 5, "ann", WINDOW, 300).await.unwrap();
    s.delete_for_user("bob", &d, &[4]).await.unwrap();
    assert_eq!(
        find(s, "bob", "apple", Some(&d), None, 10).await,
        ["apple 2", "apple 1", "apple 0"]
    );
    assert_eq!(
        find(s, "ann", "apple", Some(&d), None, 10).await,
        ["apple 3", "apple 2", "apple 1", "apple 0"]
    );
    // Reindexing a message (as an edit will) keeps it findable once.
    s.reindex_message(&d, 1).await.unwrap();
    s.reindex_message(&d, 99).await.unwrap();
    assert_eq!(words(s, "ann", "apple 0").await, ["apple 0"]);
    // An edit takes the index with it: found by its new words only, once,
    // whether the indexer had taken the message before (seq 2) or not
    // (seq 6, sent and edited before the next indexing).
    s.edit(&d, 2, "ann", "\"banana split\"", WINDOW, 400)
        .await
        .unwrap();
    let late = send(s, dm("ann", "bob", 410, "cherry pie")).await;
    s.edit(&d, late.seq, "ann", "\"banana bread\"", WINDOW, 420)
        .await
        .unwrap();
    assert_eq!(words(s, "bob", "banana split").await, ["banana split"]);
    index_all(s).await;
    assert_eq!(
        words(s, "bob", "banana").await,
        ["banana bread", "banana split"]
    );
    assert!(words(s, "bob", "cherry").await.is_empty());
    assert_eq!(
        find(s, "bob", "apple", Some(&d), None, 10).await,
        ["apple 2", "apple 0"]
    );
}

/// A user in many conversations (more than a store may name in one
/// full-text query) finds the newest hits across all of them, and only
/// theirs.
pub async fn search_across_many_conversations(s: &dyn Store) {
    for k in 0..150i64 {
        send(
            s,
            dm("hub", &format!("p{k:03}"), 1000 + k, &format!("plum {k}")),
        )
        .await;
        if k % 10 == 0 {
            send(
                s,
                dm("zed", &format!("p{k:03}"), 2000 + k, &format!("plum z{k}")),
            )
            .await;
        }
    }
    index_all(s).await;
    let all: Vec<String> = (0..150).rev().map(|k| format!("plum {k}")).collect();
    assert_eq!(words(s, "hub", "plum").await, all[..100]);
    assert_eq!(find(s, "hub", "plum", None, None, 500).await, all);
    assert_eq!(
        find(s, "hub", "plum", None, Some(1003), 5).await,
        ["plum 2", "plum 1", "plum 0"]
    );
    assert_eq!(find(s, "hub", "pl", None, None, 4).await, all[..4]);
    assert_eq!(words(s, "p000", "plum").await, ["plum z0", "plum 0"]);
    assert_eq!(words(s, "zed", "plum").await.len(), 15);
}

//! Property test of 5.2 search on a real SQLite store: a message holding
//! a random word among random other words is found by that word in any
//! case, and by any prefix of it as the last word of the query; a random
//! CJK run is found by any substring of two or more of its characters;
//! another message, in a script the words are never drawn from, is not.

use proptest::prelude::*;
use tern_core::search::{query_terms, SearchQuery};
use tern_core::store::{NewMessage, Store};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

fn message(seq: u64, text: &str) -> NewMessage {
    NewMessage {
        msg_id: seq,
        conv: "dm:ann:bob".into(),
        from: "ann".into(),
        to: Some("bob".into()),
        group: None,
        kind: "text".into(),
        content: serde_json::to_string(text).unwrap(),
        ts: seq as i64,
        client_msg_id: Some(format!("c{seq}")),
        participants: vec!["ann".into(), "bob".into()],
        inbox_members_up_to: 0,
        change: None,
        extras: Default::default(),
    }
}

async fn found(store: &SqliteStore, q: &str) -> Vec<u64> {
    let q = SearchQuery {
        terms: query_terms(q).unwrap(),
        conv: None,
        before_ts: None,
        limit: 100,
    };
    store
        .search("bob", &q)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_word_is_found_by_itself_and_its_prefixes(
        word in "[a-zA-Zà-ÿ0-9]{1,12}",
        others in prop::collection::vec("[a-z]{1,8}", 0..6),
        cjk in "[\u{4e00}-\u{4e80}\u{3041}-\u{3090}\u{ac00}-\u{ac80}]{2,8}",
        cut in 1usize..12,
        span in (0usize..8, 2usize..9),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
            let mut words = others.clone();
            words.insert(others.len() / 2, word.clone());
            let text = format!("{}, {cjk}!", words.join(" "));
            store.append_messages(vec![message(1, "ничего здесь"), message(2, &text)]).await.unwrap();
            while store.index_pending(500).await.unwrap() > 0 {}

            prop_assert_eq!(found(&store, &word).await, vec![2]);
            prop_assert_eq!(found(&store, &word.to_uppercase()).await, vec![2]);
            let prefix: String = word.chars().take(cut).collect();
            prop_assert_eq!(found(&store, &format!("{cjk} {prefix}")).await, vec![2]);
            let chars: Vec<char> = cjk.chars().collect();
            let start = span.0.min(chars.len() - 2);
            let end = (start + span.1).min(chars.len());
            let sub: String = chars[start..end].iter().collect();
            prop_assert_eq!(found(&store, &sub).await, vec![2], "{}", sub);
            Ok(())
        })?;
    }
}

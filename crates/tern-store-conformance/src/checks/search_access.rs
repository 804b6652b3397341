//! 5.2 search follows the access rules of `history`, as a property every
//! backend runs with its own store: after random 1:1 sends, group
//! creations, joins, leaves and removals, group sends, recalls, deletions
//! for one user, edits and indexer runs, each user's search for each word
//! finds exactly the messages holding it that the user reads in
//! `history` (the same content, none recalled, none they deleted, a
//! former member's only up to their removal), newest first; with a
//! limit, the first of them; with a conversation, those of it.
//!
//! A backend's test target runs [`search_follows_access`] on a fresh store
//! for each case of [`search_access_ops`] (with `proptest`).

use proptest::prelude::*;
use tern_core::search::{query_terms, SearchQuery};
use tern_core::store::{NewMessage, Store, StoredMessage};

use super::*;

const USERS: [&str; 4] = ["ann", "bob", "cat", "dan"];
const GROUPS: [&str; 2] = ["pa", "pb"];
/// No word is a prefix of another (the last word of a query is also
/// searched as a prefix).
const WORDS: [&str; 4] = ["apple", "berry", "cocoa", "delta"];

/// One step of a random history.
#[derive(Debug, Clone)]
pub enum AccessOp {
    /// A 1:1 message from one user to another of these words.
    Dm(usize, usize, Vec<usize>),
    /// A user creates a group.
    Create(usize, usize),
    /// A user adds a user to a group (themself: joins).
    Join(usize, usize, usize),
    /// A user removes a user from a group (themself: leaves).
    Leave(usize, usize, usize),
    /// A group message from a user.
    Gmsg(usize, usize, Vec<usize>),
    /// Its sender recalls the k-th text message sent so far (modulo).
    Recall(usize),
    /// A user deletes the k-th text message for themself.
    Delete(usize, usize),
    /// Its sender edits the k-th text message to these words.
    Edit(usize, Vec<usize>),
    /// The indexer runs until it is done.
    Index,
}

fn words() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..WORDS.len(), 1..4)
}

/// Random histories of up to `max` steps.
pub fn search_access_ops(max: usize) -> impl Strategy<Value = Vec<AccessOp>> {
    let u = || 0..USERS.len();
    let g = || 0..GROUPS.len();
    let op = prop_oneof![
        4 => (u(), u(), words()).prop_map(|(a, b, w)| AccessOp::Dm(a, b, w)),
        1 => (g(), u()).prop_map(|(g, a)| AccessOp::Create(g, a)),
        2 => (g(), u(), u()).prop_map(|(g, a, b)| AccessOp::Join(g, a, b)),
        1 => (g(), u(), u()).prop_map(|(g, a, b)| AccessOp::Leave(g, a, b)),
        4 => (g(), u(), words()).prop_map(|(g, a, w)| AccessOp::Gmsg(g, a, w)),
        1 => any::<usize>().prop_map(AccessOp::Recall),
        1 => (u(), any::<usize>()).prop_map(|(a, k)| AccessOp::Delete(a, k)),
        1 => (any::<usize>(), words()).prop_map(|(k, w)| AccessOp::Edit(k, w)),
        1 => Just(AccessOp::Index),
    ];
    prop::collection::vec(op, 1..max)
}

fn sentence(w: &[usize]) -> String {
    w.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" ")
}

/// Whether `m` is a text message holding the word.
fn holds(m: &StoredMessage, word: &str) -> bool {
    m.kind == "text"
        && !m.recalled
        && m.content
            .as_deref()
            .and_then(|c| serde_json::from_str::<String>(c).ok())
            .is_some_and(|t| t.split(' ').any(|w| w == word))
}

/// What a hit is compared by.
fn key(m: &StoredMessage) -> (String, u64, u64, Option<String>) {
    (m.conv.clone(), m.seq, m.msg_id, m.content.clone())
}

async fn search(
    s: &dyn Store,
    user: &str,
    word: &str,
    conv: Option<&str>,
    limit: u32,
) -> Vec<(String, u64, u64, Option<String>)> {
    let q = SearchQuery {
        terms: query_terms(word).expect("a word"),
        conv: conv.map(str::to_owned),
        before_ts: None,
        limit,
    };
    s.search(user, &q)
        .await
        .expect("search")
        .iter()
        .map(key)
        .collect()
}

/// Plays `ops` on `s` (an empty store), then checks every user's search
/// for every word against what `history` gives that user.
pub async fn search_follows_access(s: &dyn Store, ops: &[AccessOp]) {
    let mut ts = 1_000i64;
    // (conv, seq, sender) of every text message stored.
    let mut sent: Vec<(String, u64, String)> = Vec::new();
    // Each group's owner and members once created: a step the server
    // would never ask of the store (creating a group twice, adding a
    // member, removing someone not in it) is skipped.
    let mut groups: Vec<Option<(usize, Vec<usize>)>> = vec![None; GROUPS.len()];
    let mut n = 0u64;
    for op in ops {
        ts += 1;
        n += 1;
        let cmid = format!("p{n}");
        let m: Option<NewMessage> = match op {
            AccessOp::Dm(a, b, w) if a != b => {
                let mut m = dm(USERS[*a], USERS[*b], ts, &cmid);
                m.content = text(&sentence(w));
                Some(m)
            }
            AccessOp::Create(g, a) if groups[*g].is_none() => {
                Some(create(GROUPS[*g], USERS[*a], ts))
            }
            AccessOp::Join(g, a, b) => match &groups[*g] {
                Some((_, members)) if members.contains(a) && !members.contains(b) => {
                    Some(join(GROUPS[*g], USERS[*a], USERS[*b], ts))
                }
                _ => None,
            },
            AccessOp::Leave(g, a, b) => match &groups[*g] {
                // A member leaves, or the owner removes one (the owner
                // stays: no transfer to follow).
                Some((owner, members))
                    if members.contains(b) && b != owner && (a == b || a == owner) =>
                {
                    Some(leave(GROUPS[*g], USERS[*a], USERS[*b], ts))
                }
                _ => None,
            },
            AccessOp::Gmsg(g, a, w) => {
                let mut m = gmsg(GROUPS[*g], USERS[*a], ts, &cmid);
                m.content = text(&sentence(w));
                Some(m)
            }
            AccessOp::Recall(k) if !sent.is_empty() => {
                let (conv, seq, from) = &sent[k % sent.len()];
                let _ = s.recall(conv, *seq, from, WINDOW, ts).await;
                None
            }
            AccessOp::Delete(a, k) if !sent.is_empty() => {
                let (conv, seq, _) = &sent[k % sent.len()];
                s.delete_for_user(USERS[*a], conv, &[*seq])
                    .await
                    .expect("delete_for_user");
                None
            }
            AccessOp::Edit(k, w) if !sent.is_empty() => {
                let (conv, seq, from) = &sent[k % sent.len()];
                // Refused once recalled.
                let _ = s
                    .edit(conv, *seq, from, &text(&sentence(w)), WINDOW, ts)
                    .await;
                None
            }
            AccessOp::Index => {
                index_all(s).await;
                None
            }
            _ => None,
        };
        let Some(m) = m else { continue };
        // Refusals (a message to a group one is not in) are part of the
        // game.
        let Appended::New(stored) = append_one(s, m.clone()).await else {
            continue;
        };
        match (op, &m.change) {
            (AccessOp::Create(g, a), _) => groups[*g] = Some((*a, vec![*a])),
            (AccessOp::Join(g, _, b), _) => {
                if let Some((_, members)) = &mut groups[*g] {
                    members.push(*b);
                }
            }
            (AccessOp::Leave(g, _, b), _) => {
                if let Some((_, members)) = &mut groups[*g] {
                    members.retain(|x| x != b);
                }
            }
            (_, None) => sent.push((stored.conv, stored.seq, m.from)),
            _ => {}
        }
    }
    index_all(s).await;

    let mut convs: Vec<String> = Vec::new();
    for (i, a) in USERS.iter().enumerate() {
        for b in &USERS[i + 1..] {
            convs.push(dm_conv(a, b));
        }
    }
    convs.extend(GROUPS.iter().map(|g| group_conv(g)));
    for user in USERS {
        // What the user reads: their 1:1 conversations, and the groups
        // `history` lets them read.
        let mut readable: Vec<StoredMessage> = Vec::new();
        for conv in &convs {
            if conv.starts_with("dm:") && !conv.split(':').any(|p| p == user) {
                continue;
            }
            if let Ok(msgs) = s.history(user, conv, all()).await {
                readable.extend(msgs);
            }
        }
        readable.sort_by_key(|m| std::cmp::Reverse((m.ts, m.msg_id)));
        for word in WORDS {
            let want: Vec<_> = readable
                .iter()
                .filter(|m| holds(m, word))
                .map(key)
                .collect();
            let got = search(s, user, word, None, 1000).await;
            assert_eq!(got, want, "{user} searching {word:?} after {ops:?}");
            let first = search(s, user, word, None, 2).await;
            assert_eq!(
                first,
                want[..want.len().min(2)],
                "{user}, {word:?}, limit 2"
            );
            for conv in &convs {
                let here: Vec<_> = want.iter().filter(|k| &k.0 == conv).cloned().collect();
                let got = search(s, user, word, Some(conv), 1000).await;
                assert_eq!(got, here, "{user}, {word:?} in {conv}");
            }
        }
    }
}

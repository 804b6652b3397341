//! Property tests of the delivery invariants through the `Store` trait, on
//! a real SQLite store: random interleavings of sends (with retries of
//! earlier `client_msg_id`s, alone or in one batch), acks, reads and
//! offline fetches by three users over three 1:1 conversations and one
//! write-diffused group, checked after every step against a plain model:
//! - seqs of every conversation are 1..=n, each message exactly once, a
//!   retry returns the original message (`Duplicate`) and stores nothing;
//! - `unread` of every conversation is exactly the number of messages above
//!   the user's read position sent by others, `total_unread` their sum;
//! - the offline queue is exactly the messages from others above the
//!   user's acknowledged position, newest `cap` in arrival order, the older
//!   ones dropped for good with `truncated` set.
//!
//! `PROPTEST_CASES=2000 cargo test -p tern-store-sqlite --test props` is
//! the long form (docs/RELIABILITY.md).

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use tern_core::store::{
    Appended, HistoryQuery, MemberChange, NewMessage, Store, StoredMessage, UserRecord,
};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const GROUP: &str = "g";
const GROUP_CONV: &str = "group:g";
/// Offline queue cap of every fetch: small, so truncation happens often.
const CAP: u32 = 4;

#[derive(Debug, Clone)]
enum Op {
    /// `from` sends to a conversation (`to` 0..=2 is a user other than
    /// `from`, otherwise the group); with `retry`, an earlier
    /// `client_msg_id` of `from` is sent again instead when there is one.
    Send {
        from: usize,
        to: usize,
        retry: Option<prop::sample::Index>,
    },
    /// Several sends in one `append_messages` batch, the last one repeating
    /// the first one's `client_msg_id`.
    Batch {
        from: usize,
        to: Vec<usize>,
    },
    /// Cumulative ack up to a fraction of the conversation's max seq.
    Ack {
        user: usize,
        conv: usize,
        frac: f64,
    },
    Read {
        user: usize,
        conv: usize,
        frac: f64,
    },
    Fetch {
        user: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..4usize, prop::option::weighted(0.2, any::<prop::sample::Index>()))
            .prop_map(|(from, to, retry)| Op::Send { from, to, retry }),
        1 => (0..3usize, prop::collection::vec(0..4usize, 1..4))
            .prop_map(|(from, to)| Op::Batch { from, to }),
        2 => (0..3usize, 0..4usize, 0.0..=1.0f64).prop_map(|(user, conv, frac)| Op::Ack { user, conv, frac }),
        2 => (0..3usize, 0..4usize, 0.0..=1.0f64).prop_map(|(user, conv, frac)| Op::Read { user, conv, frac }),
        2 => (0..3usize).prop_map(|user| Op::Fetch { user }),
    ]
}

fn dm(a: &str, b: &str) -> String {
    if a <= b {
        format!("dm:{a}:{b}")
    } else {
        format!("dm:{b}:{a}")
    }
}

/// The conversations a user is in, by index: the two 1:1s, then the group.
fn convs_of(user: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..3)
        .filter(|&o| o != user)
        .map(|o| dm(USERS[user], USERS[o]))
        .collect();
    v.push(GROUP_CONV.into());
    v
}

#[derive(Debug, Clone)]
struct ModelMsg {
    seq: u64,
    msg_id: u64,
    from: usize,
    cmid: Option<String>,
}

#[derive(Default)]
struct Model {
    msgs: BTreeMap<String, Vec<ModelMsg>>,
    /// (sender, client_msg_id) -> (conv, seq, msg_id).
    sent: HashMap<(usize, String), (String, u64, u64)>,
    cmids: Vec<Vec<String>>,
    /// (user, conv) -> position.
    read: HashMap<(usize, String), u64>,
    acked: HashMap<(usize, String), u64>,
    /// (user, msg_id) dropped from the user's queue by the cap.
    dropped: std::collections::HashSet<(usize, u64)>,
    next_id: u64,
}

impl Model {
    fn max(&self, conv: &str) -> u64 {
        self.msgs.get(conv).map_or(0, |v| v.len() as u64)
    }

    /// What `user`'s queue holds now, in arrival order: (conv, seq, msg_id).
    fn queue(&self, user: usize) -> Vec<(String, u64, u64)> {
        let mut q = Vec::new();
        for conv in convs_of(user) {
            let acked = self.acked.get(&(user, conv.clone())).copied().unwrap_or(0);
            for m in self.msgs.get(&conv).into_iter().flatten() {
                if m.seq > acked && m.from != user && !self.dropped.contains(&(user, m.msg_id)) {
                    q.push((conv.clone(), m.seq, m.msg_id));
                }
            }
        }
        q.sort_by_key(|e| e.2);
        q
    }

    fn unread(&self, user: usize, conv: &str) -> u64 {
        let read = self
            .read
            .get(&(user, conv.to_owned()))
            .copied()
            .unwrap_or(0);
        self.msgs
            .get(conv)
            .into_iter()
            .flatten()
            .filter(|m| m.seq > read && m.from != user)
            .count() as u64
    }
}

struct Harness {
    store: SqliteStore,
    model: Model,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new_message(&mut self, from: usize, to: usize, cmid: &str) -> NewMessage {
        self.model.next_id += 1;
        let id = self.model.next_id;
        let (conv, to_user, group, participants) = if to < 3 && to != from {
            (
                dm(USERS[from], USERS[to]),
                Some(USERS[to].to_owned()),
                None,
                vec![USERS[from].to_owned(), USERS[to].to_owned()],
            )
        } else {
            (GROUP_CONV.to_owned(), None, Some(GROUP.to_owned()), vec![])
        };
        NewMessage {
            msg_id: id,
            conv,
            from: USERS[from].to_owned(),
            to: to_user,
            group,
            kind: "text".into(),
            content: format!("\"m{id}\""),
            ts: id as i64,
            client_msg_id: Some(cmid.to_owned()),
            participants,
            inbox_members_up_to: 500,
            change: None,
            extras: Default::default(),
        }
    }

    /// Applies one store outcome to the model and checks it.
    fn record(&mut self, from: usize, sent: &NewMessage, out: &Appended) {
        let cmid = sent.client_msg_id.clone().unwrap();
        match (self.model.sent.get(&(from, cmid.clone())), out) {
            (None, Appended::New(m)) => {
                assert_eq!(m.conv, sent.conv);
                assert_eq!(m.msg_id, sent.msg_id);
                assert_eq!(
                    m.seq,
                    self.model.max(&m.conv) + 1,
                    "next seq, no gap: {m:?}"
                );
                self.model
                    .msgs
                    .entry(m.conv.clone())
                    .or_default()
                    .push(ModelMsg {
                        seq: m.seq,
                        msg_id: m.msg_id,
                        from,
                        cmid: Some(cmid.clone()),
                    });
                self.model
                    .sent
                    .insert((from, cmid.clone()), (m.conv.clone(), m.seq, m.msg_id));
                self.model.cmids[from].push(cmid);
                // The sender has read their own message.
                self.model.read.insert((from, m.conv.clone()), m.seq);
            }
            (Some((conv, seq, msg_id)), Appended::Duplicate(m)) => {
                assert_eq!(
                    (&m.conv, m.seq, m.msg_id),
                    (conv, *seq, *msg_id),
                    "a retry returns the original"
                );
            }
            (prev, other) => panic!("send of {cmid} (sent before: {prev:?}) answered {other:?}"),
        }
    }

    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Send { from, to, retry } => {
                let earlier = &self.model.cmids[*from];
                let cmid = match retry {
                    Some(ix) if !earlier.is_empty() => earlier[ix.index(earlier.len())].clone(),
                    _ => format!("c{}", self.model.next_id + 1),
                };
                // A retry goes to the conversation of the original.
                let to = match self.model.sent.get(&(*from, cmid.clone())) {
                    Some((conv, _, _)) if conv == GROUP_CONV => 3,
                    Some((conv, _, _)) => (0..3)
                        .find(|&o| o != *from && dm(USERS[*from], USERS[o]) == *conv)
                        .unwrap(),
                    None => *to,
                };
                let m = self.new_message(*from, to, &cmid);
                let out = self.store.append_messages(vec![m.clone()]).await.unwrap();
                assert_eq!(out.len(), 1);
                self.record(*from, &m, &out[0]);
            }
            Op::Batch { from, to } => {
                let mut batch = Vec::new();
                for &t in to {
                    let cmid = format!("c{}", self.model.next_id + 1);
                    batch.push(self.new_message(*from, t, &cmid));
                }
                let mut again = batch[0].clone();
                self.model.next_id += 1;
                again.msg_id = self.model.next_id;
                batch.push(again);
                let out = self.store.append_messages(batch.clone()).await.unwrap();
                assert_eq!(out.len(), batch.len(), "one outcome per input");
                for (m, o) in batch.iter().zip(&out) {
                    self.record(*from, m, o);
                }
            }
            Op::Ack { user, conv, frac } => {
                let conv = convs_of(*user)[*conv % 3].clone();
                let seq = (self.model.max(&conv) as f64 * frac).floor() as u64;
                self.store
                    .ack(USERS[*user], &conv, seq, None)
                    .await
                    .unwrap();
                let a = self.model.acked.entry((*user, conv)).or_default();
                *a = (*a).max(seq);
            }
            Op::Read { user, conv, frac } => {
                let conv = convs_of(*user)[*conv % 3].clone();
                let max = self.model.max(&conv);
                if max == 0 {
                    return;
                }
                let seq = ((max as f64 * frac).ceil() as u64).clamp(1, max);
                let out = self
                    .store
                    .mark_read(USERS[*user], &conv, seq, 0)
                    .await
                    .unwrap();
                let r = self.model.read.entry((*user, conv)).or_default();
                assert_eq!(out.advanced, seq > *r, "advanced only forward");
                *r = (*r).max(seq);
                assert_eq!(out.read_seq, *r);
            }
            Op::Fetch { user } => {
                let want = self.model.queue(*user);
                let batch = self.store.offline_fetch(USERS[*user], CAP).await.unwrap();
                let keep = want.len().saturating_sub(CAP as usize);
                for e in &want[..keep] {
                    self.model.dropped.insert((*user, e.2));
                }
                let got: Vec<(String, u64, u64)> = batch
                    .msgs
                    .iter()
                    .map(|m| (m.conv.clone(), m.seq, m.msg_id))
                    .collect();
                assert_eq!(
                    got,
                    want[keep..].to_vec(),
                    "offline queue of {}",
                    USERS[*user]
                );
                assert_eq!(batch.truncated, keep > 0, "truncated flag");
                assert!(batch.msgs.iter().all(|m| m.from != USERS[*user]));
            }
        }
    }

    /// Every invariant, checked against the store as a whole.
    async fn check(&self) {
        for (conv, msgs) in &self.model.msgs {
            let reader = if conv == GROUP_CONV {
                "u0"
            } else {
                &conv[3..5]
            };
            let got: Vec<StoredMessage> = self
                .store
                .history(
                    reader,
                    conv,
                    HistoryQuery {
                        before_seq: None,
                        after_seq: None,
                        limit: 100_000,
                    },
                )
                .await
                .unwrap();
            let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
            assert_eq!(
                seqs,
                (1..=msgs.len() as u64).collect::<Vec<_>>(),
                "{conv}: seqs gap-free"
            );
            for (g, m) in got.iter().zip(msgs) {
                assert_eq!(
                    (g.msg_id, g.from.as_str(), &g.client_msg_id),
                    (m.msg_id, USERS[m.from], &m.cmid),
                    "{conv} seq {}",
                    m.seq
                );
            }
            assert_eq!(self.store.max_seq(conv).await.unwrap(), msgs.len() as u64);
        }
        for (u, user) in USERS.iter().enumerate() {
            let list = self.store.conversations(user, 0, 1000).await.unwrap();
            let mut total = 0;
            for c in &list.convs {
                let want = self.model.unread(u, &c.conv);
                assert_eq!(c.unread, want, "{user} unread in {}", c.conv);
                assert_eq!(c.max_seq, self.model.max(&c.conv));
                total += want;
            }
            // Every conversation with messages is listed.
            for conv in convs_of(u) {
                if self.model.max(&conv) > 0 {
                    assert!(
                        list.convs.iter().any(|c| c.conv == conv),
                        "{user} lists {conv}"
                    );
                }
            }
            assert_eq!(list.total_unread, total, "{user} total_unread");
        }
    }
}

async fn setup() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    for u in USERS {
        store
            .create_user(UserRecord {
                user: u.into(),
                name: u.into(),
                password_hash: "x".into(),
                created_at: 0,
                bot: false,
            })
            .await
            .unwrap();
    }
    // The group: created by u0, then u1 and u2 join (system messages 1..=3).
    let mut model = Model {
        cmids: vec![Vec::new(); 3],
        ..Model::default()
    };
    let changes = [
        MemberChange::Create { name: "g".into() },
        MemberChange::Join("u1".into()),
        MemberChange::Join("u2".into()),
    ];
    for change in changes {
        model.next_id += 1;
        let out = store
            .append_messages(vec![NewMessage {
                msg_id: model.next_id,
                conv: GROUP_CONV.into(),
                from: "u0".into(),
                to: None,
                group: Some(GROUP.into()),
                kind: "system".into(),
                content: "{}".into(),
                ts: model.next_id as i64,
                client_msg_id: None,
                participants: vec![],
                inbox_members_up_to: 500,
                change: Some(change),
                extras: Default::default(),
            }])
            .await
            .unwrap();
        let m = out[0].message().expect("stored").clone();
        model
            .msgs
            .entry(GROUP_CONV.into())
            .or_default()
            .push(ModelMsg {
                seq: m.seq,
                msg_id: m.msg_id,
                from: 0,
                cmid: None,
            });
    }
    // Everyone has seen and acknowledged the set-up.
    for (u, user) in USERS.iter().enumerate() {
        store.ack(user, GROUP_CONV, 3, None).await.unwrap();
        store.mark_read(user, GROUP_CONV, 3, 0).await.unwrap();
        model.acked.insert((u, GROUP_CONV.into()), 3);
        model.read.insert((u, GROUP_CONV.into()), 3);
    }
    Harness {
        store,
        model,
        _dir: dir,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn seq_unread_and_offline_queue_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut h = setup().await;
            h.check().await;
            for op in &ops {
                h.apply(op).await;
                h.check().await;
            }
            // In the end every user fetches everything that is left, acks
            // it, and the queue is empty.
            for u in 0..3 {
                for conv in convs_of(u) {
                    let max = h.model.max(&conv);
                    h.apply(&Op::Ack { user: u, conv: convs_of(u).iter().position(|c| *c == conv).unwrap(), frac: 1.0 }).await;
                    assert_eq!(h.model.acked[&(u, conv)], max);
                }
                h.apply(&Op::Fetch { user: u }).await;
                assert!(h.model.queue(u).is_empty());
            }
        });
    }
}

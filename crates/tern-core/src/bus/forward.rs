//! Forwarding a group send to the node that owns its conversation
//! ([`owner_of`]), so that one node appends each group's messages: the
//! request, its answer, and the capability a bus may offer
//! ([`Forwarding`]).

use super::{NodeId, PlumbingResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A group send handed by the node that received it to the conversation's
/// owning node ([`owner_of`]), which appends it through its own pipeline:
/// everything the owner needs to store and push it. `content` is the raw
/// JSON the client sent (already checked by the forwarding node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub gid: String,
    pub from: String,
    /// The sending device, which gets no push of its own message.
    pub device: Option<String>,
    pub client_msg_id: String,
    pub kind: String,
    pub content: String,
    /// 5.1 (checked by the forwarding node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
}

/// The owner's answer to a [`Forward`]: the stored (or original) message,
/// or the error the sender is to get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum ForwardAnswer {
    Ok {
        msg_id: u64,
        conv: String,
        seq: u64,
        ts: i64,
        duplicate: bool,
    },
    Err {
        /// A PROTOCOL.md error code (`not_member`, `unavailable`, ...).
        code: String,
        message: String,
    },
}

/// What a node does with the forwards other nodes send it.
#[async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    /// Answers once the message is stored (or refused).
    async fn handle(&self, req: Forward) -> ForwardAnswer;
}

/// The owning node of a conversation's appends among `nodes`, by
/// rendezvous hashing: every node that sees the same set picks the same
/// owner, and a node joining or leaving moves only the conversations it
/// takes or held. `None` when `nodes` is empty. The hash is fixed (FNV-1a
/// then a 64-bit finalizer), so nodes of different builds agree.
pub fn owner_of(conv: &str, nodes: &[NodeId]) -> Option<NodeId> {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conv.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    nodes
        .iter()
        .copied()
        .max_by_key(|n| (mix(h ^ mix(u64::from(*n) + 1)), *n))
}

/// Request and reply between nodes, offered by a bus that can carry it
/// ([`super::Bus::forwarding`]).
#[async_trait]
pub trait Forwarding: Send + Sync + 'static {
    /// Starts answering the forwards addressed to `node` with `handler`
    /// (each in a task of its own, so that they batch in the pipeline).
    /// Call once, at start.
    async fn serve_forwards(
        &self,
        node: NodeId,
        handler: Arc<dyn ForwardHandler>,
    ) -> PlumbingResult<()>;
    /// Sends `req` to node `to` and waits for its answer, at most
    /// `timeout`. An error when no node `to` serves forwards or no answer
    /// came in time: the request may then have been carried out or not.
    async fn forward(
        &self,
        to: NodeId,
        req: &Forward,
        timeout: Duration,
    ) -> PlumbingResult<ForwardAnswer>;
}

/// No node of this number serves forwards.
#[derive(Debug, thiserror::Error)]
#[error("node {0} does not serve forwards")]
pub struct NoResponder(pub NodeId);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn owners_agree_spread_and_move_little() {
        let all: Vec<NodeId> = vec![1, 4, 9];
        assert_eq!(owner_of("group:g", &[]), None);
        assert_eq!(owner_of("group:g", &[7]), Some(7));
        let mut owned = HashMap::<NodeId, usize>::new();
        for i in 0..300 {
            let conv = format!("group:g{i}");
            let owner = owner_of(&conv, &all).unwrap();
            // The order of the list does not matter.
            let mut rev = all.clone();
            rev.reverse();
            assert_eq!(owner_of(&conv, &rev), Some(owner));
            // A node leaving moves only what it owned.
            for gone in &all {
                let rest: Vec<NodeId> = all.iter().copied().filter(|n| n != gone).collect();
                let after = owner_of(&conv, &rest).unwrap();
                if *gone != owner {
                    assert_eq!(after, owner, "{conv}: node {gone} left");
                }
            }
            *owned.entry(owner).or_default() += 1;
        }
        for n in &all {
            let c = owned.get(n).copied().unwrap_or(0);
            assert!((50..=150).contains(&c), "node {n} owns {c} of 300");
        }
    }

    #[test]
    fn forward_answers_round_trip_as_json() {
        let cases = [
            ForwardAnswer::Ok {
                msg_id: u64::MAX,
                conv: "group:g".into(),
                seq: 9,
                ts: -1,
                duplicate: true,
            },
            ForwardAnswer::Err {
                code: "not_member".into(),
                message: "no".into(),
            },
        ];
        for a in cases {
            let wire = serde_json::to_vec(&a).unwrap();
            assert_eq!(serde_json::from_slice::<ForwardAnswer>(&wire).unwrap(), a);
        }
    }
}

//! The envelope: everything that crosses nodes, and its wire form (one
//! line of JSON header, then the frames' bytes), packed to fit the bus's
//! message size.

use super::{PlumbingError, PlumbingResult};
use crate::push::{Outbound, Push};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything that crosses nodes. Frames travel as the exact bytes clients
/// get (encoded once by the node that made them).
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A push for the receiving node's devices of `users`.
    Push(Push),
    /// Close connection `conn` of `user` with `code` (the same device
    /// logged in on another node: 4009).
    Kick {
        user: Arc<str>,
        conn: u64,
        code: u16,
    },
    /// A live-room frame for the receiving node's members of `room`.
    Room { room: Arc<str>, frame: Bytes },
    /// A group's membership changed: drop cached member lists.
    GroupChanged { gid: Arc<str> },
    /// Several envelopes for one node, handled in order (a node routes
    /// pushes in batches: one bus message per node and batch).
    Batch(Vec<Envelope>),
    /// The token with id `session` of `user` was revoked: refuse it from
    /// now on and close its connections with 4001.
    Revoked {
        user: Arc<str>,
        session: u128,
        expires_at: i64,
    },
    /// Every token of `user` issued before `before` (ms) was revoked (5.3
    /// `DELETE /v1/sessions?all=true`): refuse them until `until` and
    /// close their connections with 4001.
    RevokedBefore {
        user: Arc<str>,
        before: i64,
        until: i64,
    },
}

/// The envelope's header on the wire; frames follow it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Header {
    Push {
        users: Vec<Arc<str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<(Arc<str>, Arc<str>)>,
        out: OutHead,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inactive: Option<OutHead>,
    },
    Kick {
        user: Arc<str>,
        conn: u64,
        code: u16,
    },
    Room {
        room: Arc<str>,
        len: usize,
    },
    GroupChanged {
        gid: Arc<str>,
    },
    /// The encoded envelopes follow, these many bytes each.
    Batch {
        lens: Vec<usize>,
    },
    Revoked {
        user: Arc<str>,
        /// The token id as 32 hex digits.
        session: String,
        expires_at: i64,
    },
    RevokedBefore {
        user: Arc<str>,
        before: i64,
        until: i64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum OutHead {
    Frame {
        len: usize,
    },
    Batched {
        len: usize,
    },
    Msg {
        conv: Arc<str>,
        seq: u64,
        len: usize,
    },
}

impl OutHead {
    fn of(o: &Outbound) -> OutHead {
        match o {
            Outbound::Frame(f) => OutHead::Frame { len: f.len() },
            Outbound::Batched(f) => OutHead::Batched { len: f.len() },
            Outbound::Msg { conv, seq, frame } => OutHead::Msg {
                conv: conv.clone(),
                seq: *seq,
                len: frame.len(),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            OutHead::Frame { len } | OutHead::Batched { len } | OutHead::Msg { len, .. } => *len,
        }
    }

    fn with(self, frame: Bytes) -> Outbound {
        match self {
            OutHead::Frame { .. } => Outbound::Frame(frame),
            OutHead::Batched { .. } => Outbound::Batched(frame),
            OutHead::Msg { conv, seq, .. } => Outbound::Msg { conv, seq, frame },
        }
    }
}

fn encode_batch(all: &[Envelope]) -> Bytes {
    let parts: Vec<Bytes> = all.iter().map(Envelope::encode).collect();
    let header = Header::Batch {
        lens: parts.iter().map(Bytes::len).collect(),
    };
    let body: usize = parts.iter().map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(body + 16 + 8 * parts.len());
    let _ = serde_json::to_writer((&mut buf).writer(), &header);
    buf.put_u8(b'\n');
    for p in parts {
        buf.extend_from_slice(&p);
    }
    buf.freeze()
}

/// Room for a header's keys, tags, numbers and line end.
const HEADER_BOUND: usize = 128;
/// The most digits a length takes.
const USIZE_DIGITS: usize = 20;

/// The length of `s` as a JSON string: quotes, and escapes where serde_json
/// writes them.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

fn out_len_bound(o: &Outbound) -> usize {
    let conv = match o {
        Outbound::Msg { conv, .. } => json_str_len(conv) + USIZE_DIGITS,
        _ => 0,
    };
    HEADER_BOUND + conv + frame_of(o).len()
}

/// Packs the envelopes for one node into bus messages of at most `limit`
/// encoded bytes each, keeping their order: consecutive envelopes share a
/// [`Envelope::Batch`] while it fits, and a push whose audience alone is
/// too large is split by users into consecutive pushes of the same frames
/// (each user is named in exactly one, so every device keeps its order).
/// An envelope that cannot be split and is still too large (a frame larger
/// than `limit`) is returned as it is, for the bus to refuse.
pub fn pack(envs: Vec<Envelope>, limit: usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut cur: Vec<Envelope> = Vec::new();
    let mut cur_len = HEADER_BOUND;
    let flush = |cur: &mut Vec<Envelope>, out: &mut Vec<Envelope>| match cur.len() {
        0 => {}
        1 => out.extend(cur.pop()),
        _ => out.push(Envelope::Batch(std::mem::take(cur))),
    };
    for env in envs.into_iter().flat_map(|e| split_push(e, limit)) {
        let len = env.wire_len_bound() + USIZE_DIGITS + 1;
        if !cur.is_empty() && cur_len + len > limit {
            flush(&mut cur, &mut out);
            cur_len = HEADER_BOUND;
        }
        cur_len += len;
        cur.push(env);
    }
    flush(&mut cur, &mut out);
    out
}

/// A push too large for `limit` as consecutive pushes naming fewer users,
/// each small enough to travel in a batch of its own.
fn split_push(env: Envelope, limit: usize) -> Vec<Envelope> {
    let budget = limit.saturating_sub(2 * HEADER_BOUND + USIZE_DIGITS + 1);
    if env.wire_len_bound() <= budget {
        return vec![env];
    }
    let Envelope::Push(p) = env else {
        return vec![env];
    };
    let fixed = Envelope::Push(Push {
        users: Vec::new(),
        except: p.except.clone(),
        out: p.out.clone(),
        inactive: p.inactive.clone(),
    })
    .wire_len_bound();
    let part = |users: Vec<Arc<str>>| {
        Envelope::Push(Push {
            users,
            except: p.except.clone(),
            out: p.out.clone(),
            inactive: p.inactive.clone(),
        })
    };
    let mut parts = Vec::new();
    let mut users: Vec<Arc<str>> = Vec::new();
    let mut len = fixed;
    for u in &p.users {
        let add = json_str_len(u) + 1;
        if !users.is_empty() && len + add > budget {
            parts.push(part(std::mem::take(&mut users)));
            len = fixed;
        }
        len += add;
        users.push(u.clone());
    }
    if !users.is_empty() || parts.is_empty() {
        parts.push(part(users));
    }
    parts
}

fn frame_of(o: &Outbound) -> &Bytes {
    match o {
        Outbound::Frame(f) | Outbound::Batched(f) | Outbound::Msg { frame: f, .. } => f,
    }
}

impl Envelope {
    /// Wire form: one line of JSON header, then the frames' bytes back to
    /// back (their lengths are in the header). Frames are copied, never
    /// escaped or re-encoded.
    pub fn encode(&self) -> Bytes {
        let (header, frames): (Header, [Option<&Bytes>; 2]) = match self {
            Envelope::Push(p) => (
                Header::Push {
                    users: p.users.clone(),
                    except: p.except.clone(),
                    out: OutHead::of(&p.out),
                    inactive: p.inactive.as_ref().map(OutHead::of),
                },
                [Some(frame_of(&p.out)), p.inactive.as_ref().map(frame_of)],
            ),
            Envelope::Kick { user, conn, code } => (
                Header::Kick {
                    user: user.clone(),
                    conn: *conn,
                    code: *code,
                },
                [None, None],
            ),
            Envelope::Room { room, frame } => (
                Header::Room {
                    room: room.clone(),
                    len: frame.len(),
                },
                [Some(frame), None],
            ),
            Envelope::GroupChanged { gid } => {
                (Header::GroupChanged { gid: gid.clone() }, [None, None])
            }
            Envelope::Batch(all) => return encode_batch(all),
            Envelope::Revoked {
                user,
                session,
                expires_at,
            } => (
                Header::Revoked {
                    user: user.clone(),
                    session: format!("{session:032x}"),
                    expires_at: *expires_at,
                },
                [None, None],
            ),
            Envelope::RevokedBefore {
                user,
                before,
                until,
            } => (
                Header::RevokedBefore {
                    user: user.clone(),
                    before: *before,
                    until: *until,
                },
                [None, None],
            ),
        };
        let body: usize = frames.iter().flatten().map(|f| f.len()).sum();
        let mut buf = BytesMut::with_capacity(body + 128);
        // Serializing a plain struct of strings and numbers cannot fail.
        let _ = serde_json::to_writer((&mut buf).writer(), &header);
        buf.put_u8(b'\n');
        for f in frames.into_iter().flatten() {
            buf.extend_from_slice(f);
        }
        buf.freeze()
    }

    /// An upper bound of [`Envelope::encode`]'s length, computed without
    /// encoding.
    pub fn wire_len_bound(&self) -> usize {
        match self {
            Envelope::Push(p) => {
                let users: usize = p.users.iter().map(|u| json_str_len(u) + 1).sum();
                let except = p
                    .except
                    .as_ref()
                    .map_or(0, |(u, d)| json_str_len(u) + json_str_len(d) + 16);
                let inactive = p.inactive.as_ref().map_or(0, out_len_bound);
                HEADER_BOUND + users + except + out_len_bound(&p.out) + inactive
            }
            Envelope::Kick { user, .. } => HEADER_BOUND + json_str_len(user),
            Envelope::Room { room, frame } => HEADER_BOUND + json_str_len(room) + frame.len(),
            Envelope::GroupChanged { gid } => HEADER_BOUND + json_str_len(gid),
            Envelope::Batch(all) => {
                HEADER_BOUND
                    + all
                        .iter()
                        .map(|e| e.wire_len_bound() + USIZE_DIGITS + 1)
                        .sum::<usize>()
            }
            Envelope::Revoked { user, .. } => HEADER_BOUND + json_str_len(user) + 34,
            // Two numbers of at most 20 characters each.
            Envelope::RevokedBefore { user, .. } => HEADER_BOUND + json_str_len(user) + 40,
        }
    }

    pub fn decode(wire: &Bytes) -> PlumbingResult<Envelope> {
        let nl = wire
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(PlumbingError::Malformed("no header"))?;
        let header: Header = serde_json::from_slice(&wire[..nl])
            .map_err(|_| PlumbingError::Malformed("bad header"))?;
        let mut at = nl + 1;
        let mut take = |len: usize| -> PlumbingResult<Bytes> {
            let end = at
                .checked_add(len)
                .filter(|e| *e <= wire.len())
                .ok_or(PlumbingError::Malformed("frame past the end"))?;
            let f = wire.slice(at..end);
            at = end;
            Ok(f)
        };
        Ok(match header {
            Header::Push {
                users,
                except,
                out,
                inactive,
            } => {
                let f = take(out.len())?;
                let out = out.with(f);
                let inactive = match inactive {
                    Some(h) => {
                        let f = take(h.len())?;
                        Some(h.with(f))
                    }
                    None => None,
                };
                Envelope::Push(Push {
                    users,
                    except,
                    out,
                    inactive,
                })
            }
            Header::Kick { user, conn, code } => Envelope::Kick { user, conn, code },
            Header::Room { room, len } => Envelope::Room {
                room,
                frame: take(len)?,
            },
            Header::GroupChanged { gid } => Envelope::GroupChanged { gid },
            Header::Revoked {
                user,
                session,
                expires_at,
            } => Envelope::Revoked {
                user,
                session: u128::from_str_radix(&session, 16)
                    .map_err(|_| PlumbingError::Malformed("bad token id"))?,
                expires_at,
            },
            Header::RevokedBefore {
                user,
                before,
                until,
            } => Envelope::RevokedBefore {
                user,
                before,
                until,
            },
            Header::Batch { lens } => {
                let mut all = Vec::with_capacity(lens.len());
                for len in lens {
                    let part = take(len)?;
                    if part.starts_with(b"{\"t\":\"batch\"") {
                        return Err(PlumbingError::Malformed("nested batch"));
                    }
                    all.push(Envelope::decode(&part)?);
                }
                Envelope::Batch(all)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(out: Outbound, inactive: Option<Outbound>) -> Envelope {
        Envelope::Push(Push {
            users: vec!["a".into(), "b".into()],
            except: Some(("a".into(), "phone".into())),
            out,
            inactive,
        })
    }

    #[test]
    fn envelopes_round_trip() {
        // A frame may hold newlines (raw client JSON in room content).
        let frame = Bytes::from_static(b"{\"type\":\"room_msg\",\"content\":{\n\"x\":1}}");
        let cases = [
            push(
                Outbound::Msg {
                    conv: "dm:a:b".into(),
                    seq: 7,
                    frame: frame.clone(),
                },
                None,
            ),
            push(
                Outbound::Batched(frame.clone()),
                Some(Outbound::Batched(Bytes::from_static(
                    b"{\"type\":\"notify\"}",
                ))),
            ),
            push(Outbound::Frame(Bytes::from_static(b"{}")), None),
            Envelope::Kick {
                user: "a".into(),
                conn: 42,
                code: 4009,
            },
            Envelope::Room {
                room: "r".into(),
                frame: frame.clone(),
            },
            Envelope::GroupChanged { gid: "g".into() },
            Envelope::Revoked {
                user: "a".into(),
                session: u128::MAX - 5,
                expires_at: 1_700_000_000_000,
            },
            Envelope::RevokedBefore {
                user: "a".into(),
                before: 1_700_000_000_000,
                until: 1_731_000_000_000,
            },
            Envelope::Batch(vec![
                Envelope::GroupChanged { gid: "g".into() },
                push(Outbound::Frame(frame.clone()), None),
            ]),
        ];
        for env in cases {
            let wire = env.encode();
            assert_eq!(Envelope::decode(&wire).unwrap(), env);
        }
    }

    /// Pushes of `n` frames, each to `members` users (some with names
    /// that JSON escapes).
    fn group_pushes(n: usize, members: usize, frame_len: usize) -> Vec<Envelope> {
        let users: Vec<Arc<str>> = (0..members)
            .map(|i| Arc::from(format!("member\"{i}\u{1}")))
            .collect();
        (0..n)
            .map(|seq| {
                let frame = Bytes::from(format!("{seq:>width$}", width = frame_len));
                Envelope::Push(Push {
                    users: users.clone(),
                    except: Some(("member\"0\u{1}".into(), "d\\".into())),
                    out: Outbound::Msg {
                        conv: "group:g".into(),
                        seq: seq as u64,
                        frame,
                    },
                    inactive: None,
                })
            })
            .collect()
    }

    /// Every push in `envs`, batches opened, as decoded from the wire.
    fn flatten(envs: &[Envelope]) -> Vec<Push> {
        let mut out = Vec::new();
        for e in envs {
            match Envelope::decode(&e.encode()).unwrap() {
                Envelope::Batch(all) => out.extend(flatten(&all)),
                Envelope::Push(p) => out.push(p),
                other => panic!("not a push: {other:?}"),
            }
        }
        out
    }

    #[test]
    fn wire_len_bound_is_an_upper_bound() {
        let mut all = group_pushes(3, 40, 100);
        all.push(Envelope::Batch(group_pushes(5, 7, 10)));
        all.push(Envelope::Room {
            room: "r\"\n".into(),
            frame: Bytes::from_static(b"{}"),
        });
        all.push(Envelope::Kick {
            user: "\u{7}".into(),
            conn: u64::MAX,
            code: 4009,
        });
        all.push(Envelope::Revoked {
            user: "a".into(),
            session: u128::MAX,
            expires_at: i64::MIN,
        });
        all.push(Envelope::RevokedBefore {
            user: "\u{7}".into(),
            before: i64::MIN,
            until: i64::MIN,
        });
        for env in &all {
            let len = env.encode().len();
            assert!(
                len <= env.wire_len_bound(),
                "{len} > {}",
                env.wire_len_bound()
            );
        }
    }

    #[test]
    fn packing_fits_the_limit_and_keeps_every_push_in_order() {
        let limit = 64 * 1024;
        // 300 pushes to a 500-member group: several batches; and one push
        // whose audience alone is over the limit: split by users.
        let mut envs = group_pushes(300, 500, 200);
        envs.extend(group_pushes(1, 20_000, 200));
        let want: Vec<Push> = envs
            .iter()
            .map(|e| match e {
                Envelope::Push(p) => p.clone(),
                _ => unreachable!(),
            })
            .collect();
        let packed = pack(envs, limit);
        assert!(packed.len() > 10, "{} messages", packed.len());
        for env in &packed {
            assert!(env.encode().len() <= limit, "{} bytes", env.encode().len());
        }
        // Consecutive parts of one push carry its frames and, together,
        // its users in order.
        let mut got: Vec<Push> = Vec::new();
        for p in flatten(&packed) {
            match got.last_mut() {
                Some(last) if last.out == p.out => last.users.extend(p.users),
                _ => got.push(p),
            }
        }
        assert_eq!(got, want);
        // Small envelopes stay one message.
        let small = group_pushes(2, 3, 10);
        assert_eq!(pack(small.clone(), limit), vec![Envelope::Batch(small)]);
        assert_eq!(pack(group_pushes(1, 3, 10), limit).len(), 1);
        assert!(pack(Vec::new(), limit).is_empty());
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        for bad in [
            &b""[..],
            b"{\"t\":\"push\"}",
            b"not json\n",
            b"{\"t\":\"room\",\"room\":\"r\",\"len\":99}\n{}",
            b"{\"t\":\"revoked\",\"user\":\"a\",\"session\":\"zz\",\"expires_at\":1}\n",
        ] {
            assert!(Envelope::decode(&Bytes::copy_from_slice(bad)).is_err());
        }
    }
}

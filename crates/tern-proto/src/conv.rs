//! Conversation ids: `dm:<a>:<b>` with `a <= b` (byte order) or `group:<gid>`.

use crate::ids::is_valid_name;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConvId {
    Dm { a: String, b: String },
    Group(String),
}

impl ConvId {
    /// The 1:1 conversation between two users, in canonical order.
    pub fn dm(x: &str, y: &str) -> ConvId {
        let (a, b) = if x.as_bytes() <= y.as_bytes() {
            (x, y)
        } else {
            (y, x)
        };
        ConvId::Dm {
            a: a.to_owned(),
            b: b.to_owned(),
        }
    }

    pub fn group(gid: &str) -> ConvId {
        ConvId::Group(gid.to_owned())
    }

    /// Parses a conversation id; `None` unless it is canonical.
    pub fn parse(s: &str) -> Option<ConvId> {
        if let Some(rest) = s.strip_prefix("dm:") {
            let (a, b) = rest.split_once(':')?;
            if !is_valid_name(a) || !is_valid_name(b) || a.as_bytes() > b.as_bytes() {
                return None;
            }
            Some(ConvId::Dm {
                a: a.to_owned(),
                b: b.to_owned(),
            })
        } else if let Some(g) = s.strip_prefix("group:") {
            is_valid_name(g).then(|| ConvId::Group(g.to_owned()))
        } else {
            None
        }
    }

    /// For a 1:1 conversation that `user` is in, the other party (the user
    /// itself for `dm:x:x`).
    pub fn peer_of(&self, user: &str) -> Option<&str> {
        match self {
            ConvId::Dm { a, b } if a == user => Some(b),
            ConvId::Dm { a, b } if b == user => Some(a),
            _ => None,
        }
    }

    pub fn group_id(&self) -> Option<&str> {
        match self {
            ConvId::Group(g) => Some(g),
            ConvId::Dm { .. } => None,
        }
    }
}

impl fmt::Display for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvId::Dm { a, b } => write!(f, "dm:{a}:{b}"),
            ConvId::Group(g) => write!(f, "group:{g}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order() {
        assert_eq!(ConvId::dm("bob", "alice").to_string(), "dm:alice:bob");
        assert_eq!(ConvId::dm("alice", "alice").to_string(), "dm:alice:alice");
        assert_eq!(ConvId::dm("B", "a").to_string(), "dm:B:a");
    }

    #[test]
    fn parse_roundtrip_and_rejects() {
        let c = ConvId::parse("dm:alice:bob").unwrap();
        assert_eq!(c.peer_of("alice"), Some("bob"));
        assert_eq!(c.peer_of("bob"), Some("alice"));
        assert_eq!(c.peer_of("carol"), None);
        assert_eq!(ConvId::parse("group:g1"), Some(ConvId::Group("g1".into())));
        assert_eq!(ConvId::parse("dm:bob:alice"), None);
        assert_eq!(ConvId::parse("dm:alice"), None);
        assert_eq!(ConvId::parse("room:x"), None);
        assert_eq!(ConvId::parse("group:"), None);
        assert_eq!(ConvId::parse("dm:a:b:c"), None);
    }
}

//! What `tern chat` knows and how it prints it: conversations with unread
//! counts, presence, receipts, the open conversation.

use std::collections::HashMap;
use std::fmt::Write;
use tern_client::wire::{MsgView, Receipt, SyncAnswer};
use tern_client::{ConvId, Target};

/// One conversation in the list.
pub struct Conv {
    pub target: Target,
    pub unread: u64,
    pub max_seq: u64,
    pub read_seq: u64,
    pub last: Option<String>,
    /// The other party's delivered and read positions (1:1 only), from
    /// receipts.
    pub delivered: u64,
    pub peer_read: u64,
}

#[derive(Clone)]
pub struct Open {
    pub conv: String,
    pub target: Target,
    pub title: String,
}

pub struct Chat {
    pub me: String,
    pub convs: HashMap<String, Conv>,
    /// Conversation ids, newest activity first (as `sync` orders them).
    pub order: Vec<String>,
    pub presence: HashMap<String, bool>,
    pub open: Option<Open>,
    /// Seq of the oldest message shown of the open conversation (`/more`).
    pub oldest_shown: Option<u64>,
}

/// Text of a message for a person: the string of a text message, the kind
/// otherwise.
fn body(m: &MsgView<'_>) -> String {
    if m.recalled {
        return "(recalled)".into();
    }
    match (&*m.kind, &m.content) {
        ("text", Some(c)) => serde_json::from_str::<String>(c.get()).unwrap_or_default(),
        ("system", Some(c)) => {
            let v: serde_json::Value = serde_json::from_str(c.get()).unwrap_or_default();
            format!("({})", super::events::system_text(&v, &m.from))
        }
        (kind, _) => format!("[{kind}]"),
    }
}

/// `HH:MM` (UTC) of a timestamp in ms.
fn clock(ts: i64) -> String {
    let secs = ts.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

impl Chat {
    pub fn new(me: String) -> Chat {
        Chat {
            me,
            convs: HashMap::new(),
            order: Vec::new(),
            presence: HashMap::new(),
            open: None,
            oldest_shown: None,
        }
    }

    fn target_of(&self, conv: &str) -> Target {
        match ConvId::parse(conv) {
            Some(ConvId::Group(g)) => Target::Group(g),
            Some(c) => Target::User(c.peer_of(&self.me).unwrap_or(&self.me).to_owned()),
            None => Target::User(conv.to_owned()),
        }
    }

    pub fn title(&self, conv: &str) -> String {
        match self.target_of(conv) {
            Target::Group(g) => format!("#{g}"),
            Target::User(u) => u,
        }
    }

    fn conv_mut(&mut self, conv: &str) -> &mut Conv {
        if !self.convs.contains_key(conv) {
            let target = self.target_of(conv);
            self.convs.insert(
                conv.to_owned(),
                Conv {
                    target,
                    unread: 0,
                    max_seq: 0,
                    read_seq: 0,
                    last: None,
                    delivered: 0,
                    peer_read: 0,
                },
            );
            self.order.insert(0, conv.to_owned());
        }
        self.convs.get_mut(conv).expect("just inserted")
    }

    pub fn synced(&mut self, sync: &SyncAnswer<'_>) {
        let mut order = Vec::new();
        for c in &sync.convs {
            let last = c.last.as_ref().map(|m| format!("{}: {}", m.from, body(m)));
            let e = self.conv_mut(&c.conv);
            e.unread = c.unread;
            e.max_seq = c.max_seq;
            e.read_seq = c.read_seq;
            e.last = last;
            order.push(c.conv.to_string());
        }
        // Conversations sync did not return (older than its limit) stay,
        // after the ones it did.
        for c in std::mem::take(&mut self.order) {
            if !order.contains(&c) {
                order.push(c);
            }
        }
        self.order = order;
    }

    /// Users of the 1:1 conversations.
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .convs
            .values()
            .filter_map(|c| match &c.target {
                Target::User(u) => Some(u.clone()),
                Target::Group(_) => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn list(&self) -> String {
        let total: u64 = self.convs.values().map(|c| c.unread).sum();
        let mut out = format!("conversations (unread {total}):\n");
        if self.order.is_empty() {
            out.push_str("  (none yet: /open USER to start one)\n");
        }
        for (i, id) in self.order.iter().enumerate() {
            let Some(c) = self.convs.get(id) else {
                continue;
            };
            let (title, presence) = match &c.target {
                Target::Group(g) => (format!("#{g}"), String::new()),
                Target::User(u) => {
                    let p = match self.presence.get(u) {
                        Some(true) => " [online]",
                        Some(false) => " [offline]",
                        None => "",
                    };
                    (u.clone(), p.to_owned())
                }
            };
            let _ = writeln!(
                out,
                "  {}. {title}{presence}  unread {}{}",
                i + 1,
                c.unread,
                c.last
                    .as_ref()
                    .map(|l| format!("  - {l}"))
                    .unwrap_or_default()
            );
        }
        out
    }

    /// `/open` argument: a number of the list, `#group` or a user.
    pub fn resolve(&self, what: &str) -> anyhow::Result<Open> {
        let conv = if let Ok(n) = what.parse::<usize>() {
            self.order
                .get(n.wrapping_sub(1))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no conversation {n} in /list"))?
        } else if let Some(g) = what.strip_prefix('#') {
            ConvId::group(g).to_string()
        } else {
            ConvId::dm(&self.me, what).to_string()
        };
        Ok(Open {
            target: self.target_of(&conv),
            title: self.title(&conv),
            conv,
        })
    }

    fn marks(&self, conv: &str, seq: u64) -> &'static str {
        match self.convs.get(conv) {
            Some(c) if c.peer_read >= seq => " ✓✓",
            Some(c) if c.delivered >= seq => " ✓",
            _ => "",
        }
    }

    /// One message of the open conversation.
    pub fn line(&self, m: &MsgView<'_>) -> String {
        let marks = if m.from == self.me {
            self.marks(&m.conv, m.seq)
        } else {
            ""
        };
        format!(
            "  [{}] #{} {}: {}{marks}",
            clock(m.ts),
            m.seq,
            m.from,
            body(m)
        )
    }

    /// One's own message, just sent.
    pub fn own_line(&self, seq: u64, text: &str) -> String {
        format!("  #{seq} {} (you): {text}", self.me)
    }

    pub fn received(&mut self, m: &MsgView<'_>) {
        let open = self.open.as_ref().is_some_and(|o| o.conv == m.conv);
        let mine = m.from == self.me;
        let last = format!("{}: {}", m.from, body(m));
        let c = self.conv_mut(&m.conv);
        if m.seq > c.max_seq {
            c.max_seq = m.seq;
            c.last = Some(last);
            if !mine && !open && m.seq > c.read_seq {
                c.unread += 1;
            }
        }
        let id = m.conv.to_string();
        self.order.retain(|c| *c != id);
        self.order.insert(0, id);
    }

    pub fn sent(&mut self, conv: &str, seq: u64) {
        let c = self.conv_mut(conv);
        c.max_seq = c.max_seq.max(seq);
        c.read_seq = c.read_seq.max(seq);
    }

    pub fn needs_read(&self, conv: &str, seq: u64) -> bool {
        self.convs.get(conv).is_none_or(|c| c.read_seq < seq)
    }

    pub fn read(&mut self, conv: &str, seq: u64) {
        let c = self.conv_mut(conv);
        c.read_seq = c.read_seq.max(seq);
        if c.read_seq >= c.max_seq {
            c.unread = 0;
        }
    }

    /// Records a receipt; the line to print when it is about the open
    /// conversation.
    pub fn receipt(&mut self, r: &Receipt<'_>) -> Option<String> {
        if r.by == self.me {
            // One's own other device read it.
            if let Some(s) = r.read_seq {
                self.read(&r.conv, s);
            }
            return None;
        }
        let c = self.conv_mut(&r.conv);
        let mut line = None;
        if let Some(s) = r.delivered_seq {
            if s > c.delivered {
                c.delivered = s;
                line = Some(format!("  ✓ delivered to {} up to #{s}", r.by));
            }
        }
        if let Some(s) = r.read_seq {
            if s > c.peer_read {
                c.peer_read = s;
                c.delivered = c.delivered.max(s);
                line = Some(format!("  ✓✓ read by {} up to #{s}", r.by));
            }
        }
        let open = self.open.as_ref().is_some_and(|o| o.conv == r.conv);
        line.filter(|_| open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_hours_and_minutes() {
        assert_eq!(clock(0), "00:00");
        assert_eq!(clock((13 * 3600 + 7 * 60 + 59) * 1000), "13:07");
    }

    #[test]
    fn resolve_names_dm_and_group_conversations() {
        let chat = Chat::new("bob".into());
        assert_eq!(chat.resolve("alice").unwrap().conv, "dm:alice:bob");
        let g = chat.resolve("#g1").unwrap();
        assert_eq!((g.conv.as_str(), g.title.as_str()), ("group:g1", "#g1"));
        assert!(chat.resolve("3").is_err());
    }
}

//! The store's operations as plain functions on a connection. Write
//! operations run inside the writer's transaction (see `lib.rs`); reads on
//! a read-only connection.
//!
//! This file holds what they share (row mapping, the user's positions in a
//! conversation); the operations are grouped by domain: `accounts.rs`
//! (users, friends, per-user counts), `messages.rs` (appends and units),
//! `groups.rs` (membership and the group gate), `reading.rs` (history,
//! acks, read positions, recall and delete, the conversation list, the
//! offline queue).

mod accounts;
mod groups;
mod messages;
mod reading;
// 5.4 and blocks
mod moderation;
// 5.1
mod edits;
// 5.3 profiles, conversation settings, sessions
mod settings;
// 5.2
mod search;
// 5.5 media
mod media;
// 5.6 scheduled messages
mod scheduled;
// 5.6 durable jobs
mod jobs;
// 5.5 offline push registrations
mod push;
// 5.6 retention and account erase
mod retention;

pub use accounts::*;
pub use edits::{edit, react, reactions};
pub use groups::{get_group, group_version, read_positions};
pub use jobs::*;
pub use media::{media_add, media_get, media_reference, media_sweep};
pub use messages::*;
pub use moderation::{block, blocks, is_blocked, unblock};
pub use push::*;
pub use reading::*;
pub use retention::*;
pub use scheduled::{claim_scheduled, next_scheduled, schedule, scheduled, unschedule};
pub use search::{index_pending, reindex_message, search};
pub use settings::*;

use rusqlite::{params, Connection, OptionalExtension, Row};
use tern_core::rules;
use tern_core::store::{self, StoreError, StoreResult, StoredMessage};

fn be(e: rusqlite::Error) -> StoreError {
    StoreError::backend(e)
}

/// A seq bound given by a caller, as SQLite's signed integer. Stored seqs
/// never exceed `i64::MAX`, so clamping keeps every comparison's meaning
/// (a plain `as` cast would turn `u64::MAX` into -1).
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Columns read by [`message_from_row`], in order.
const MSG_COLS: &str =
    "m.msg_id, m.conv, m.seq, m.from_user, m.to_user, m.group_id, m.kind, m.content, m.ts, \
                        m.client_msg_id, m.recalled, m.reply_to, m.mentions, m.edited_at";

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        msg_id: r.get::<_, i64>(0)? as u64,
        conv: r.get(1)?,
        seq: r.get::<_, i64>(2)? as u64,
        from: r.get(3)?,
        to: r.get(4)?,
        group: r.get(5)?,
        kind: r.get(6)?,
        content: r.get(7)?,
        ts: r.get(8)?,
        client_msg_id: r.get(9)?,
        recalled: r.get::<_, i64>(10)? != 0,
        reply_to: r.get::<_, Option<i64>>(11)?.map(|s| s as u64),
        mentions: store::mentions_of(r.get::<_, Option<String>>(12)?.as_deref()),
        edited_at: r.get(13)?,
        reactions: Vec::new(),
    })
}

pub fn message(c: &Connection, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
    if seq > i64::MAX as u64 {
        return Ok(None);
    }
    let sql = format!("SELECT {MSG_COLS} FROM messages m WHERE m.conv = ?1 AND m.seq = ?2");
    c.prepare_cached(&sql)
        .map_err(be)?
        .query_row(params![conv, seq as i64], message_from_row)
        .optional()
        .map_err(be)
}

fn strings(c: &Connection, sql: &str, arg: &str) -> StoreResult<Vec<String>> {
    let mut st = c.prepare_cached(sql).map_err(be)?;
    let rows = st.query_map([arg], |r| r.get(0)).map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}

/// A user's row in a conversation.
fn user_conv(c: &Connection, user: &str, conv: &str) -> StoreResult<Option<rules::Positions>> {
    c.prepare_cached(
        "SELECT read_seq, delivered_seq, until_seq, inbox_seq, read_updated_at FROM user_convs \
         WHERE user = ?1 AND conv = ?2",
    )
    .map_err(be)?
    .query_row([user, conv], |r| {
        Ok(rules::Positions {
            read: r.get::<_, i64>(0)? as u64,
            delivered: r.get::<_, i64>(1)? as u64,
            until: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
            inbox: r.get::<_, i64>(3)? as u64,
            read_at: r.get(4)?,
        })
    })
    .optional()
    .map_err(be)
}

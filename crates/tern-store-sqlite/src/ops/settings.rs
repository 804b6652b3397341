//! 5.3: profiles (the avatar beside the name), a user's settings of a
//! conversation, and sessions (one row per token id).

use super::be;
use rusqlite::{params, Connection, OptionalExtension};
use tern_core::store::{ConvSettings, Profile, SessionRecord, StoreResult};

pub fn profile(c: &Connection, user: &str) -> StoreResult<Option<Profile>> {
    c.prepare_cached("SELECT name, avatar, bot FROM users WHERE user = ?1")
        .map_err(be)?
        .query_row([user], |r| {
            let avatar: String = r.get(1)?;
            Ok(Profile {
                name: r.get(0)?,
                avatar: (!avatar.is_empty()).then_some(avatar),
                bot: r.get(2)?,
            })
        })
        .optional()
        .map_err(be)
}

pub fn set_profile(
    c: &Connection,
    user: &str,
    name: Option<&str>,
    avatar: Option<&str>,
) -> StoreResult<Option<Profile>> {
    c.prepare_cached(
        "UPDATE users SET name = coalesce(?2, name), avatar = coalesce(?3, avatar) WHERE user = ?1",
    )
    .map_err(be)?
    .execute(params![user, name, avatar])
    .map_err(be)?;
    profile(c, user)
}

fn conv_setting(c: &Connection, user: &str, conv: &str) -> StoreResult<ConvSettings> {
    let row = c
        .prepare_cached(
            "SELECT muted_until, pinned FROM conv_settings WHERE user = ?1 AND conv = ?2",
        )
        .map_err(be)?
        .query_row([user, conv], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
        })
        .optional()
        .map_err(be)?;
    let (muted_until, pinned) = row.unwrap_or_default();
    Ok(ConvSettings {
        conv: conv.to_owned(),
        muted_until,
        pinned,
        retention_days: 0,
    })
}

pub fn set_conv_settings(
    c: &Connection,
    user: &str,
    conv: &str,
    muted_until: Option<i64>,
    pinned: Option<bool>,
) -> StoreResult<ConvSettings> {
    let mut s = conv_setting(c, user, conv)?;
    if let Some(t) = muted_until {
        s.muted_until = t;
    }
    if let Some(p) = pinned {
        s.pinned = p;
    }
    if s.is_default() {
        c.prepare_cached("DELETE FROM conv_settings WHERE user = ?1 AND conv = ?2")
            .map_err(be)?
            .execute([user, conv])
            .map_err(be)?;
    } else {
        c.prepare_cached(
            "INSERT INTO conv_settings (user, conv, muted_until, pinned) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user, conv) DO UPDATE SET muted_until = excluded.muted_until, \
             pinned = excluded.pinned",
        )
        .map_err(be)?
        .execute(params![user, conv, s.muted_until, s.pinned])
        .map_err(be)?;
    }
    Ok(s)
}

pub fn conv_settings(c: &Connection, user: &str) -> StoreResult<Vec<ConvSettings>> {
    let mut st = c
        .prepare_cached(
            "SELECT conv, muted_until, pinned FROM conv_settings WHERE user = ?1 ORDER BY conv",
        )
        .map_err(be)?;
    let rows = st
        .query_map([user], |r| {
            Ok(ConvSettings {
                conv: r.get(0)?,
                muted_until: r.get(1)?,
                pinned: r.get(2)?,
                retention_days: 0,
            })
        })
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}

pub fn touch_session(c: &Connection, s: &SessionRecord) -> StoreResult<()> {
    let n = c
        .prepare_cached("UPDATE sessions SET last_seen = max(last_seen, ?2) WHERE session = ?1")
        .map_err(be)?
        .execute(params![s.session, s.last_seen])
        .map_err(be)?;
    if n > 0 {
        return Ok(());
    }
    c.prepare_cached("DELETE FROM sessions WHERE user = ?1 AND expires_at <= ?2")
        .map_err(be)?
        .execute(params![s.user, s.last_seen])
        .map_err(be)?;
    c.prepare_cached(
        "INSERT INTO sessions (session, user, created_at, expires_at, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(be)?
    .execute(params![
        s.session,
        s.user,
        s.created_at,
        s.expires_at,
        s.last_seen
    ])
    .map_err(be)?;
    Ok(())
}

pub fn sessions(c: &Connection, user: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
    let mut st = c
        .prepare_cached(
            "SELECT session, user, created_at, expires_at, last_seen FROM sessions \
             WHERE user = ?1 AND expires_at > ?2 ORDER BY created_at, session",
        )
        .map_err(be)?;
    let rows = st
        .query_map(params![user, now], |r| {
            Ok(SessionRecord {
                session: r.get(0)?,
                user: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                last_seen: r.get(4)?,
            })
        })
        .map_err(be)?;
    rows.collect::<Result<_, _>>().map_err(be)
}

pub fn delete_session(c: &Connection, session: &str) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM sessions WHERE session = ?1")
        .map_err(be)?
        .execute([session])
        .map(|_| ())
        .map_err(be)
}

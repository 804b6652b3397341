//! 5.5 offline push registrations: one row per user and device.

use super::be;
use rusqlite::{params, Connection, Row};
use tern_core::store::{PushRegistration, StoreError, StoreResult};

const COLS: &str = "user, device, provider, token, endpoint, p256dh, auth, session, updated_at";

fn row(r: &Row<'_>) -> rusqlite::Result<PushRegistration> {
    Ok(PushRegistration {
        user: r.get(0)?,
        device: r.get(1)?,
        provider: r.get(2)?,
        token: r.get(3)?,
        endpoint: r.get(4)?,
        p256dh: r.get(5)?,
        auth: r.get(6)?,
        session: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn push_register(c: &Connection, reg: &PushRegistration, max: u32) -> StoreResult<()> {
    let (others, known): (i64, i64) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(device = ?2), 0) FROM push_devices WHERE user = ?1",
        )
        .map_err(be)?
        .query_row(params![reg.user, reg.device], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(be)?;
    if known == 0 && others >= i64::from(max) {
        return Err(StoreError::Forbidden("too many push registrations"));
    }
    c.prepare_cached(&format!(
        "INSERT INTO push_devices ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (user, device) DO UPDATE SET provider = excluded.provider, \
         token = excluded.token, endpoint = excluded.endpoint, p256dh = excluded.p256dh, \
         auth = excluded.auth, session = excluded.session, updated_at = excluded.updated_at"
    ))
    .map_err(be)?
    .execute(params![
        reg.user,
        reg.device,
        reg.provider,
        reg.token,
        reg.endpoint,
        reg.p256dh,
        reg.auth,
        reg.session,
        reg.updated_at
    ])
    .map_err(be)?;
    Ok(())
}

pub fn push_unregister(c: &Connection, user: &str, device: &str) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM push_devices WHERE user = ?1 AND device = ?2")
        .map_err(be)?
        .execute(params![user, device])
        .map_err(be)?;
    Ok(n > 0)
}

pub fn push_unregister_session(
    c: &Connection,
    user: &str,
    session: Option<&str>,
) -> StoreResult<u64> {
    let n = match session {
        Some(s) => c
            .prepare_cached("DELETE FROM push_devices WHERE user = ?1 AND session = ?2")
            .map_err(be)?
            .execute(params![user, s]),
        None => c
            .prepare_cached("DELETE FROM push_devices WHERE user = ?1")
            .map_err(be)?
            .execute(params![user]),
    }
    .map_err(be)?;
    Ok(n as u64)
}

pub fn push_registrations(c: &Connection, user: &str) -> StoreResult<Vec<PushRegistration>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM push_devices WHERE user = ?1 ORDER BY device"
    ))
    .map_err(be)?
    .query_map([user], row)
    .map_err(be)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(be)
}

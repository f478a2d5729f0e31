//! `session`: server-side sessions, keyed by the digest of the cookie's key.

use super::*;

/// A live session's state and when it expires.
pub fn session_load(
    conn: &mut Conn,
    digest: &str,
) -> Result<Option<(String, NaiveDateTime)>, DbError> {
    Ok(session::table
        .filter(session::key_digest.eq(digest))
        .filter(session::expires_at.gt(now()))
        .select((session::state, session::expires_at))
        .first(conn)
        .optional()?)
}

/// A session as stored: what is inserted, and what an existing row takes.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = session, primary_key(key_digest))]
struct SessionRow<'a> {
    key_digest: &'a str,
    state: &'a str,
    /// Set to NULL when the session logs out.
    #[diesel(treat_none_as_null = true)]
    user_id: Option<i32>,
    expires_at: NaiveDateTime,
}

/// Sessions one user may have at once; logging in once more ends the one
/// used least recently: a script logging in again and again (each login a
/// new session) must not add rows without end.
pub const MAX_SESSIONS_PER_USER: i64 = 100;

/// Whether a write makes a new session or changes one that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionWrite {
    New,
    /// Only if its row is still there: a session ended (logged out, its
    /// password changed, its user deactivated) while a request of it ran
    /// stays ended, rather than be written back by that request's end.
    Existing,
}

/// Stores a session's state; answers whether it did (an `Existing` one
/// that ended meanwhile is not).
pub fn session_store(
    conn: &mut Conn,
    write: SessionWrite,
    digest: &str,
    state: &str,
    user_id: Option<i32>,
    expires_at: NaiveDateTime,
) -> Result<bool, DbError> {
    let row = SessionRow { key_digest: digest, state, user_id, expires_at };
    let stored = match write {
        SessionWrite::New => diesel::insert_into(session::table).values(&row).execute(conn)?,
        SessionWrite::Existing => {
            diesel::update(session::table.filter(session::key_digest.eq(digest)))
                .set(&row)
                .execute(conn)?
        }
    };
    if stored == 0 {
        return Ok(false);
    }
    if let Some(user_id) = user_id {
        // Sessions renew their expiry as they are used: the latest to
        // expire are the ones in use.
        let past: Vec<String> = session::table
            .filter(session::user_id.eq(user_id))
            .order(session::expires_at.desc())
            .offset(MAX_SESSIONS_PER_USER)
            .select(session::key_digest)
            .load(conn)?;
        if !past.is_empty() {
            diesel::delete(session::table.filter(session::key_digest.eq_any(past)))
                .execute(conn)?;
        }
    }
    Ok(true)
}

pub fn session_extend(
    conn: &mut Conn,
    digest: &str,
    expires_at: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(session::table.find(digest))
        .set(session::expires_at.eq(expires_at))
        .execute(conn)?;
    Ok(())
}

pub fn session_delete(conn: &mut Conn, digest: &str) -> Result<(), DbError> {
    diesel::delete(session::table.find(digest)).execute(conn)?;
    Ok(())
}

/// Ends a user's sessions, all of them or all but one.
pub fn sessions_end_for_user(
    conn: &mut Conn,
    user_id: i32,
    keep: Option<&str>,
) -> Result<usize, DbError> {
    let query = session::table.filter(session::user_id.eq(user_id));
    Ok(match keep {
        Some(keep) => diesel::delete(query.filter(session::key_digest.ne(keep))).execute(conn)?,
        None => diesel::delete(query).execute(conn)?,
    })
}

pub fn sessions_purge_expired(conn: &mut Conn) -> Result<usize, DbError> {
    Ok(diesel::delete(session::table.filter(session::expires_at.le(now()))).execute(conn)?)
}

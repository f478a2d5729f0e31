//! `idempotency_key`: the writes made with an `Idempotency-Key`, per user
//! and key, and what the upstream answered them (`proxy::idempotency`).

use super::*;
use crate::db::schema::idempotency_key as keys;

/// A write's answer, kept to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    /// The digest of the request it answered (method, endpoint, query, body).
    pub request_digest: String,
    pub status: i32,
    pub content_type: Option<String>,
    /// The body; `None` when it was not kept (too large, not text).
    pub answer: Option<String>,
}

/// What a key stands for when a write claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// New (or expired): this write is the first, and holds the key (the
    /// row of this id) until it ends (`keep_answer` or `release_key`).
    Claimed(i32),
    /// Another write with it has not ended yet.
    InFlight,
    /// A write with it ended: its answer.
    Answered(KeptAnswer),
}

/// Claims `key` for a write of `user_id`, in one transaction: an expired
/// row (a kept answer past its TTL, or a lease whose write never ended) is
/// taken over. `lease` is how long an unfinished claim holds the key.
pub fn claim_key(
    conn: &mut Conn,
    user_id: i32,
    key: &str,
    lease: NaiveDateTime,
) -> Result<KeyClaim, DbError> {
    conn.write_transaction(|conn| {
        let now = now();
        type Row =
            (i32, NaiveDateTime, Option<String>, Option<i32>, Option<String>, Option<String>);
        let found: Option<Row> = keys::table
            .filter(keys::user_id.eq(user_id))
            .filter(keys::client_key.eq(key))
            .select((
                keys::id,
                keys::expires_at,
                keys::request_digest,
                keys::status,
                keys::content_type,
                keys::answer,
            ))
            .first(conn)
            .optional()?;
        match found {
            Some((id, expires, ..)) if expires <= now => {
                diesel::delete(keys::table.find(id)).execute(conn)?;
            }
            Some((_, _, Some(request_digest), Some(status), content_type, answer)) => {
                let kept = KeptAnswer { request_digest, status, content_type, answer };
                return Ok(KeyClaim::Answered(kept));
            }
            Some(_) => return Ok(KeyClaim::InFlight),
            None => {}
        }
        let claim = (keys::user_id.eq(user_id), keys::client_key.eq(key));
        let times = (keys::created_at.eq(now), keys::expires_at.eq(lease));
        let insert = diesel::insert_into(keys::table).values((claim, times)).returning(keys::id);
        match crate::on_engine!(conn, |c| insert.get_result::<i32>(c)) {
            Ok(id) => Ok(KeyClaim::Claimed(id)),
            // Another replica claimed it between the read and the insert.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(KeyClaim::InFlight),
            Err(err) => Err(err.into()),
        }
    })
}

/// Keeps the answer of the write that made claim `id`, until `expires`;
/// a claim taken over since (its lease ran out) is not this one's to
/// answer.
pub fn keep_answer(
    conn: &mut Conn,
    id: i32,
    answer: &KeptAnswer,
    expires: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(keys::table.find(id).filter(keys::status.is_null()))
        .set((
            keys::request_digest.eq(&answer.request_digest),
            keys::status.eq(answer.status),
            keys::content_type.eq(&answer.content_type),
            keys::answer.eq(&answer.answer),
            keys::expires_at.eq(expires),
        ))
        .execute(conn)?;
    Ok(())
}

/// Gives claim `id` back unanswered (the write never reached the upstream,
/// or was undone): a retry with its key is a first write again.
pub fn release_key(conn: &mut Conn, id: i32) -> Result<(), DbError> {
    diesel::delete(keys::table.find(id).filter(keys::status.is_null())).execute(conn)?;
    Ok(())
}

/// Extends the lease of claim `id`, still unanswered, to `lease`: a write
/// that takes long (a slow upload, a long wait for its lock) keeps its key.
pub fn renew_lease(conn: &mut Conn, id: i32, lease: NaiveDateTime) -> Result<(), DbError> {
    diesel::update(keys::table.find(id).filter(keys::status.is_null()))
        .set(keys::expires_at.eq(lease))
        .execute(conn)?;
    Ok(())
}

/// Deletes up to `batch` expired keys; answers how many.
pub fn purge_expired_keys(conn: &mut Conn, batch: i64) -> Result<usize, DbError> {
    let expired = keys::table.filter(keys::expires_at.le(now())).select(keys::id).limit(batch);
    let ids: Vec<i32> = expired.load(conn)?;
    Ok(diesel::delete(keys::table.filter(keys::id.eq_any(&ids))).execute(conn)?)
}

/// Keys kept now, per user.
pub fn keys_per_user(conn: &mut Conn) -> Result<Vec<(i32, i64)>, DbError> {
    Ok(keys::table
        .group_by(keys::user_id)
        .select((keys::user_id, diesel::dsl::count_star()))
        .load(conn)?)
}

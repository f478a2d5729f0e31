//! `user_totp` and `user_recovery_code`: two-factor login.

use super::*;
use crate::db::schema::{user_recovery_code, user_totp};

/// A user's TOTP secret, and whether it is confirmed.
#[derive(Debug, Clone, Queryable)]
pub struct UserTotp {
    pub user_id: i32,
    pub secret: String,
    pub confirmed_at: Option<NaiveDateTime>,
    pub last_step: i64,
    pub created_at: NaiveDateTime,
}

pub fn totp_of(conn: &mut Conn, user_id: i32) -> Result<Option<UserTotp>, DbError> {
    Ok(user_totp::table.find(user_id).first(conn).optional()?)
}

/// Turns two-factor login on with `secret`, its first code's time step
/// accepted; a unique violation if it is on already.
pub fn enable_totp(conn: &mut Conn, user_id: i32, secret: &str, step: i64) -> Result<(), DbError> {
    diesel::insert_into(user_totp::table)
        .values((
            user_totp::user_id.eq(user_id),
            user_totp::secret.eq(secret),
            user_totp::confirmed_at.eq(Some(now())),
            user_totp::last_step.eq(step),
            user_totp::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Accepts time step `step` for the user if it is past the last one
/// accepted (and confirms the secret): false if it was not, so that a code
/// is good once, even against two requests at the same moment.
pub fn accept_step(conn: &mut Conn, user_id: i32, step: i64) -> Result<bool, DbError> {
    let changed = diesel::update(
        user_totp::table
            .filter(user_totp::user_id.eq(user_id))
            .filter(user_totp::last_step.lt(step)),
    )
    .set((
        user_totp::last_step.eq(step),
        user_totp::confirmed_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamp>,
        >("COALESCE(confirmed_at, CURRENT_TIMESTAMP)")),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Turns two-factor login off for the user: secret and recovery codes.
pub fn remove_totp(conn: &mut Conn, user_id: i32) -> Result<usize, DbError> {
    diesel::delete(user_recovery_code::table.filter(user_recovery_code::user_id.eq(user_id)))
        .execute(conn)?;
    Ok(diesel::delete(user_totp::table.find(user_id)).execute(conn)?)
}

/// The user's recovery codes become `digests` (the old ones go).
pub fn replace_recovery_codes(
    conn: &mut Conn,
    user_id: i32,
    digests: &[String],
) -> Result<(), DbError> {
    diesel::delete(user_recovery_code::table.filter(user_recovery_code::user_id.eq(user_id)))
        .execute(conn)?;
    // One insert each: a batch insert is not for both engines at once
    // (and there are ten).
    for digest in digests {
        diesel::insert_into(user_recovery_code::table)
            .values((
                user_recovery_code::user_id.eq(user_id),
                user_recovery_code::digest.eq(digest),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Uses the recovery code of `digest`, if the user has it unused.
pub fn use_recovery_code(conn: &mut Conn, user_id: i32, digest: &str) -> Result<bool, DbError> {
    let changed = diesel::update(
        user_recovery_code::table
            .filter(user_recovery_code::user_id.eq(user_id))
            .filter(user_recovery_code::digest.eq(digest))
            .filter(user_recovery_code::used_at.is_null()),
    )
    .set(user_recovery_code::used_at.eq(Some(now())))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Recovery codes the user has left.
pub fn recovery_codes_left(conn: &mut Conn, user_id: i32) -> Result<i64, DbError> {
    Ok(user_recovery_code::table
        .filter(user_recovery_code::user_id.eq(user_id))
        .filter(user_recovery_code::used_at.is_null())
        .count()
        .get_result(conn)?)
}

//! `authtoken_token`: API tokens, stored as digests.

use super::*;
use crate::db::models::TokenRecord;

pub struct NewToken<'a> {
    pub user_id: i32,
    pub name: &'a str,
    pub prefix: &'a str,
    pub digest: &'a str,
    pub expires_at: Option<NaiveDateTime>,
    pub scopes: Option<&'a str>,
    pub allowed_networks: Option<&'a str>,
}

pub fn create_token(conn: &mut Conn, new: &NewToken<'_>) -> Result<Token, DbError> {
    Ok(diesel::insert_into(authtoken_token::table)
        .values((
            authtoken_token::user_id.eq(new.user_id),
            authtoken_token::name.eq(new.name),
            authtoken_token::prefix.eq(new.prefix),
            authtoken_token::digest.eq(new.digest),
            authtoken_token::created_at.eq(now()),
            authtoken_token::expires_at.eq(new.expires_at),
            authtoken_token::scopes.eq(new.scopes),
            authtoken_token::allowed_networks.eq(new.allowed_networks),
        ))
        .returning(authtoken_token::all_columns)
        .get_result(conn)?)
}

/// The one read that authenticates a token request (when not cached).
pub fn token_with_user(conn: &mut Conn, digest: &str) -> Result<Option<(Token, User)>, DbError> {
    Ok(authtoken_token::table
        .inner_join(auth_user::table)
        .filter(authtoken_token::digest.eq(digest))
        .select((Token::as_select(), User::as_select()))
        .first(conn)
        .optional()?)
}

pub fn touch_token(conn: &mut Conn, token_id: i32, from: &str) -> Result<(), DbError> {
    diesel::update(authtoken_token::table.find(token_id))
        .set((
            authtoken_token::last_used_at.eq(Some(now())),
            authtoken_token::last_used_from.eq(Some(from)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets when a token stops working (a rotation's grace).
pub fn set_token_expiry(conn: &mut Conn, token_id: i32, at: NaiveDateTime) -> Result<(), DbError> {
    diesel::update(authtoken_token::table.find(token_id))
        .set(authtoken_token::expires_at.eq(Some(at)))
        .execute(conn)?;
    Ok(())
}

/// A user's tokens, newest first, at most `limit`.
pub fn tokens_of(conn: &mut Conn, user_id: i32, limit: i64) -> Result<Vec<Token>, DbError> {
    Ok(authtoken_token::table
        .filter(authtoken_token::user_id.eq(user_id))
        .order(authtoken_token::id.desc())
        .limit(limit)
        .select(Token::as_select())
        .load(conn)?)
}

/// Revokes the token with this prefix; answers whether there was one.
pub fn revoke_token(conn: &mut Conn, prefix: &str) -> Result<bool, DbError> {
    let changed = diesel::update(authtoken_token::table.filter(authtoken_token::prefix.eq(prefix)))
        .set(authtoken_token::revoked.eq(true))
        .execute(conn)?;
    Ok(changed > 0)
}

/// Revoked and expired tokens one user keeps (the newest, for its history
/// in the token list); older ones are deleted as new ones are made, so
/// that making and revoking tokens in a loop adds no rows without end.
pub const DEAD_TOKENS_KEPT: i64 = 100;

/// Deletes a user's revoked and expired tokens but the newest
/// `DEAD_TOKENS_KEPT`.
pub fn trim_dead_tokens(conn: &mut Conn, user_id: i32) -> Result<usize, DbError> {
    let now = now();
    let dead = || {
        authtoken_token::table.filter(authtoken_token::user_id.eq(user_id)).filter(
            authtoken_token::revoked.eq(true).or(authtoken_token::expires_at
                .is_not_null()
                .and(authtoken_token::expires_at.le(now))),
        )
    };
    let doomed: Vec<i32> = dead()
        .order(authtoken_token::id.desc())
        .offset(DEAD_TOKENS_KEPT)
        .select(authtoken_token::id)
        .load(conn)?;
    if doomed.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(authtoken_token::table.filter(authtoken_token::id.eq_any(doomed)))
        .execute(conn)?)
}

/// A user's tokens that still work: not revoked, not expired.
pub fn live_token_count(conn: &mut Conn, user_id: i32) -> Result<i64, DbError> {
    Ok(authtoken_token::table
        .filter(authtoken_token::user_id.eq(user_id))
        .filter(authtoken_token::revoked.eq(false))
        .filter(authtoken_token::expires_at.is_null().or(authtoken_token::expires_at.gt(now())))
        .count()
        .get_result(conn)?)
}

pub fn user_token_count(conn: &mut Conn, user_id: i32) -> Result<i64, DbError> {
    Ok(authtoken_token::table
        .filter(authtoken_token::user_id.eq(user_id))
        .count()
        .get_result(conn)?)
}

/// The token list's filters and page.
#[derive(Debug, Default, Clone)]
pub struct TokenQuery {
    pub user: Option<i32>,
    pub status: Option<TokenStatus>,
    pub page: i64,
    pub per_page: i64,
}

/// A page of tokens with their users' names, newest first, and how many
/// match.
pub fn list_tokens(
    conn: &mut Conn,
    q: &TokenQuery,
) -> Result<(Vec<(Token, String)>, i64), DbError> {
    let now = now();
    let build = || {
        let mut query = authtoken_token::table.inner_join(auth_user::table).into_boxed();
        if let Some(user) = q.user {
            query = query.filter(authtoken_token::user_id.eq(user));
        }
        match q.status {
            Some(TokenStatus::Revoked) => query = query.filter(authtoken_token::revoked.eq(true)),
            Some(TokenStatus::Expired) => {
                query = query
                    .filter(authtoken_token::revoked.eq(false))
                    .filter(authtoken_token::expires_at.le(now))
            }
            Some(TokenStatus::Active) => {
                query = query.filter(authtoken_token::revoked.eq(false)).filter(
                    authtoken_token::expires_at.is_null().or(authtoken_token::expires_at.gt(now)),
                )
            }
            None => {}
        }
        query
    };
    let total = build().count().get_result(conn)?;
    let rows = build()
        .order(authtoken_token::id.desc())
        .offset(q.page * q.per_page)
        .limit(q.per_page)
        .select((Token::as_select(), auth_user::username))
        .load(conn)?;
    Ok((rows, total))
}

pub fn token_by_id(conn: &mut Conn, id: i32) -> Result<Option<(Token, String)>, DbError> {
    Ok(authtoken_token::table
        .inner_join(auth_user::table)
        .filter(authtoken_token::id.eq(id))
        .select((Token::as_select(), auth_user::username))
        .first(conn)
        .optional()?)
}

pub fn revoke_token_by_id(conn: &mut Conn, id: i32) -> Result<(), DbError> {
    diesel::update(authtoken_token::table.find(id))
        .set(authtoken_token::revoked.eq(true))
        .execute(conn)?;
    Ok(())
}

/// Revokes every token of a user (deactivated users keep none working).
pub fn revoke_tokens_of_user(conn: &mut Conn, user_id: i32) -> Result<usize, DbError> {
    Ok(diesel::update(authtoken_token::table.filter(authtoken_token::user_id.eq(user_id)))
        .set(authtoken_token::revoked.eq(true))
        .execute(conn)?)
}

/// Adds a token of `user_id`'s unless its prefix or digest is known;
/// answers 1 if added.
/// Whether a token has this prefix.
pub fn token_prefix_taken(conn: &mut Conn, prefix: &str) -> Result<bool, DbError> {
    let count: i64 = authtoken_token::table
        .filter(authtoken_token::prefix.eq(prefix))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

pub fn put_token_record(
    conn: &mut Conn,
    user_id: i32,
    record: &TokenRecord,
) -> Result<usize, DbError> {
    let insert = diesel::insert_into(authtoken_token::table)
        .values((authtoken_token::user_id.eq(user_id), record))
        .on_conflict_do_nothing();
    Ok(crate::on_engine!(conn, |c| insert.execute(c))?)
}

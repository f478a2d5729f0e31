//! Query functions: plain, synchronous, over `&mut SqliteConnection`; the
//! async side calls them through `db::run`.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::DbError;
use super::models::{Group, NewUser, Permission, Token, User};
use super::schema::{
    auth_group, auth_group_permissions, auth_permission, auth_user, auth_user_groups,
    auth_user_user_permissions, authtoken_token, feed_grant, session,
};

type Conn = SqliteConnection;

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

pub fn user_count(conn: &mut Conn) -> Result<i64, DbError> {
    Ok(auth_user::table.count().get_result(conn)?)
}

pub fn user_by_username(conn: &mut Conn, username: &str) -> Result<Option<User>, DbError> {
    Ok(auth_user::table
        .filter(auth_user::username.eq(username))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn user_by_id(conn: &mut Conn, id: i32) -> Result<Option<User>, DbError> {
    Ok(auth_user::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn create_user(conn: &mut Conn, new: &NewUser<'_>) -> Result<User, DbError> {
    Ok(diesel::insert_into(auth_user::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)?)
}

pub fn set_password(conn: &mut Conn, user_id: i32, phc: &str) -> Result<(), DbError> {
    diesel::update(auth_user::table.find(user_id))
        .set(auth_user::password.eq(phc))
        .execute(conn)?;
    Ok(())
}

pub fn set_active(conn: &mut Conn, user_id: i32, active: bool) -> Result<(), DbError> {
    diesel::update(auth_user::table.find(user_id))
        .set(auth_user::is_active.eq(active))
        .execute(conn)?;
    Ok(())
}

pub fn touch_last_login(conn: &mut Conn, user_id: i32) -> Result<(), DbError> {
    diesel::update(auth_user::table.find(user_id))
        .set(auth_user::last_login.eq(Some(now())))
        .execute(conn)?;
    Ok(())
}

pub fn group_by_name(conn: &mut Conn, name: &str) -> Result<Option<Group>, DbError> {
    Ok(auth_group::table
        .filter(auth_group::name.eq(name))
        .select(Group::as_select())
        .first(conn)
        .optional()?)
}

pub fn create_group(conn: &mut Conn, name: &str) -> Result<Group, DbError> {
    Ok(diesel::insert_into(auth_group::table)
        .values(auth_group::name.eq(name))
        .returning(Group::as_returning())
        .get_result(conn)?)
}

pub fn add_user_to_group(conn: &mut Conn, user_id: i32, group_id: i32) -> Result<(), DbError> {
    diesel::insert_or_ignore_into(auth_user_groups::table)
        .values((
            auth_user_groups::user_id.eq(user_id),
            auth_user_groups::group_id.eq(group_id),
        ))
        .execute(conn)?;
    Ok(())
}

/// A permission by its full codename (`lbasedb.view_data`).
pub fn permission_by_codename(conn: &mut Conn, full: &str) -> Result<Permission, DbError> {
    let unknown = || {
        DbError::Invalid(format!(
            "unknown permission {full:?} (expected e.g. lbasedb.view_data)"
        ))
    };
    let (app_label, codename) = full.split_once('.').ok_or_else(unknown)?;
    auth_permission::table
        .filter(auth_permission::app_label.eq(app_label))
        .filter(auth_permission::codename.eq(codename))
        .select(Permission::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(unknown)
}

pub fn all_permissions(conn: &mut Conn) -> Result<Vec<Permission>, DbError> {
    Ok(auth_permission::table
        .order(auth_permission::id)
        .select(Permission::as_select())
        .load(conn)?)
}

pub fn add_user_permission(
    conn: &mut Conn,
    user_id: i32,
    permission_id: i32,
) -> Result<(), DbError> {
    diesel::insert_or_ignore_into(auth_user_user_permissions::table)
        .values((
            auth_user_user_permissions::user_id.eq(user_id),
            auth_user_user_permissions::permission_id.eq(permission_id),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn add_group_permission(
    conn: &mut Conn,
    group_id: i32,
    permission_id: i32,
) -> Result<(), DbError> {
    diesel::insert_or_ignore_into(auth_group_permissions::table)
        .values((
            auth_group_permissions::group_id.eq(group_id),
            auth_group_permissions::permission_id.eq(permission_id),
        ))
        .execute(conn)?;
    Ok(())
}

/// Who holds a feed grant: exactly one of a group and a user.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    User(i32),
    Group(i32),
}

pub fn add_feed_grant(
    conn: &mut Conn,
    holder: Holder,
    permission_id: i32,
    feed: &str,
) -> Result<(), DbError> {
    let (user_id, group_id) = match holder {
        Holder::User(id) => (Some(id), None),
        Holder::Group(id) => (None, Some(id)),
    };
    diesel::insert_or_ignore_into(feed_grant::table)
        .values((
            feed_grant::user_id.eq(user_id),
            feed_grant::group_id.eq(group_id),
            feed_grant::permission_id.eq(permission_id),
            feed_grant::feed.eq(feed),
        ))
        .execute(conn)?;
    Ok(())
}

/// Everything a user holds: group names, permission codenames (own and
/// groups'), and (feed, codename) grants (own and groups').
pub struct Holdings {
    pub groups: Vec<String>,
    pub perms: Vec<String>,
    pub grants: Vec<(String, String)>,
}

pub fn holdings(conn: &mut Conn, user_id: i32) -> Result<Holdings, DbError> {
    let group_ids: Vec<i32> = auth_user_groups::table
        .filter(auth_user_groups::user_id.eq(user_id))
        .select(auth_user_groups::group_id)
        .load(conn)?;
    let groups = auth_group::table
        .filter(auth_group::id.eq_any(&group_ids))
        .order(auth_group::name)
        .select(auth_group::name)
        .load(conn)?;
    let full = |(app, code): (String, String)| format!("{app}.{code}");
    let mut perms: Vec<String> = auth_user_user_permissions::table
        .inner_join(auth_permission::table)
        .filter(auth_user_user_permissions::user_id.eq(user_id))
        .select((auth_permission::app_label, auth_permission::codename))
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(full)
        .collect();
    perms.extend(
        auth_group_permissions::table
            .inner_join(auth_permission::table)
            .filter(auth_group_permissions::group_id.eq_any(&group_ids))
            .select((auth_permission::app_label, auth_permission::codename))
            .load::<(String, String)>(conn)?
            .into_iter()
            .map(full),
    );
    let grants = feed_grant::table
        .inner_join(auth_permission::table)
        .filter(
            feed_grant::user_id
                .eq(user_id)
                .or(feed_grant::group_id.eq_any(&group_ids)),
        )
        .select((
            feed_grant::feed,
            auth_permission::app_label,
            auth_permission::codename,
        ))
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .map(|(feed, app, code)| (feed, format!("{app}.{code}")))
        .collect();
    Ok(Holdings {
        groups,
        perms,
        grants,
    })
}

pub struct NewToken<'a> {
    pub user_id: i32,
    pub name: &'a str,
    pub prefix: &'a str,
    pub digest: &'a str,
    pub expires_at: Option<NaiveDateTime>,
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
        ))
        .returning(Token::as_returning())
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

pub fn touch_token(conn: &mut Conn, token_id: i32) -> Result<(), DbError> {
    diesel::update(authtoken_token::table.find(token_id))
        .set(authtoken_token::last_used_at.eq(Some(now())))
        .execute(conn)?;
    Ok(())
}

/// Revokes the token with this prefix; answers whether there was one.
pub fn revoke_token(conn: &mut Conn, prefix: &str) -> Result<bool, DbError> {
    let changed = diesel::update(authtoken_token::table.filter(authtoken_token::prefix.eq(prefix)))
        .set(authtoken_token::revoked.eq(true))
        .execute(conn)?;
    Ok(changed > 0)
}

pub fn session_load(conn: &mut Conn, digest: &str) -> Result<Option<String>, DbError> {
    Ok(session::table
        .filter(session::key_digest.eq(digest))
        .filter(session::expires_at.gt(now()))
        .select(session::state)
        .first(conn)
        .optional()?)
}

pub fn session_store(
    conn: &mut Conn,
    digest: &str,
    state: &str,
    user_id: Option<i32>,
    expires_at: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::replace_into(session::table)
        .values((
            session::key_digest.eq(digest),
            session::state.eq(state),
            session::user_id.eq(user_id),
            session::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
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

pub fn revoke_token_by_digest(conn: &mut Conn, digest: &str) -> Result<bool, DbError> {
    let changed = diesel::update(authtoken_token::table.filter(authtoken_token::digest.eq(digest)))
        .set(authtoken_token::revoked.eq(true))
        .execute(conn)?;
    Ok(changed > 0)
}

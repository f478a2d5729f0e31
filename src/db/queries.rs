//! Query functions: plain, synchronous, over `&mut SqliteConnection`; the
//! async side calls them through `db::run`.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::DbError;
use super::models::{Group, NewUser, Permission, Token, TokenStatus, User};
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

/// One row of the admin's history.
pub struct NewLogEntry<'a> {
    pub user_id: Option<i32>,
    pub username: &'a str,
    pub object_type: &'a str,
    pub object_id: &'a str,
    pub object_repr: &'a str,
    pub action: &'a str,
    pub changes: &'a str,
}

pub fn log_action(conn: &mut Conn, entry: &NewLogEntry<'_>) -> Result<(), DbError> {
    use super::schema::admin_log;
    diesel::insert_into(admin_log::table)
        .values((
            admin_log::action_time.eq(now()),
            admin_log::user_id.eq(entry.user_id),
            admin_log::username.eq(entry.username),
            admin_log::object_type.eq(entry.object_type),
            admin_log::object_id.eq(entry.object_id),
            admin_log::object_repr.eq(entry.object_repr),
            admin_log::action.eq(entry.action),
            admin_log::changes.eq(entry.changes),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn recent_actions(
    conn: &mut Conn,
    user_id: i32,
    limit: i64,
) -> Result<Vec<super::models::LogEntry>, DbError> {
    use super::schema::admin_log;
    Ok(admin_log::table
        .filter(admin_log::user_id.eq(user_id))
        .filter(admin_log::action.eq_any(["add", "change", "delete"]))
        .order(admin_log::id.desc())
        .limit(limit)
        .select(super::models::LogEntry::as_select())
        .load(conn)?)
}

pub fn object_history(
    conn: &mut Conn,
    object_type: &str,
    object_id: &str,
) -> Result<Vec<super::models::LogEntry>, DbError> {
    use super::schema::admin_log;
    Ok(admin_log::table
        .filter(admin_log::object_type.eq(object_type))
        .filter(admin_log::object_id.eq(object_id))
        .order(admin_log::id.asc())
        .select(super::models::LogEntry::as_select())
        .load(conn)?)
}

/// The user list's filters, search, sort and page.
#[derive(Debug, Default, Clone)]
pub struct UserQuery {
    pub search: String,
    pub is_staff: Option<bool>,
    pub is_superuser: Option<bool>,
    pub is_active: Option<bool>,
    pub group: Option<i32>,
    /// Column name and direction.
    pub order: Option<(String, bool)>,
    pub page: i64,
    pub per_page: i64,
}

pub fn list_users(conn: &mut Conn, q: &UserQuery) -> Result<(Vec<User>, i64), DbError> {
    let build = || {
        let mut query = auth_user::table.into_boxed();
        if !q.search.is_empty() {
            let like = like_pattern(&q.search);
            query = query.filter(
                auth_user::username
                    .like(like.clone())
                    .escape('\\')
                    .or(auth_user::email.like(like.clone()).escape('\\'))
                    .or(auth_user::first_name.like(like.clone()).escape('\\'))
                    .or(auth_user::last_name.like(like).escape('\\')),
            );
        }
        if let Some(v) = q.is_staff {
            query = query.filter(auth_user::is_staff.eq(v));
        }
        if let Some(v) = q.is_superuser {
            query = query.filter(auth_user::is_superuser.eq(v));
        }
        if let Some(v) = q.is_active {
            query = query.filter(auth_user::is_active.eq(v));
        }
        if let Some(group) = q.group {
            query = query.filter(
                auth_user::id.eq_any(
                    auth_user_groups::table
                        .filter(auth_user_groups::group_id.eq(group))
                        .select(auth_user_groups::user_id),
                ),
            );
        }
        query
    };
    let total: i64 = build().count().get_result(conn)?;
    let mut query = build();
    query = match q.order.as_ref().map(|(c, desc)| (c.as_str(), *desc)) {
        Some(("email", false)) => query.order(auth_user::email.asc()),
        Some(("email", true)) => query.order(auth_user::email.desc()),
        Some(("first_name", false)) => query.order(auth_user::first_name.asc()),
        Some(("first_name", true)) => query.order(auth_user::first_name.desc()),
        Some(("last_name", false)) => query.order(auth_user::last_name.asc()),
        Some(("last_name", true)) => query.order(auth_user::last_name.desc()),
        Some(("is_staff", false)) => query.order(auth_user::is_staff.asc()),
        Some(("is_staff", true)) => query.order(auth_user::is_staff.desc()),
        Some(("username", true)) => query.order(auth_user::username.desc()),
        _ => query.order(auth_user::username.asc()),
    };
    let users = query
        .then_order_by(auth_user::id.asc())
        .offset(q.page * q.per_page)
        .limit(q.per_page)
        .select(User::as_select())
        .load(conn)?;
    Ok((users, total))
}

pub fn all_groups(conn: &mut Conn) -> Result<Vec<Group>, DbError> {
    Ok(auth_group::table
        .order(auth_group::name)
        .select(Group::as_select())
        .load(conn)?)
}

/// A user's own links: group ids, permission ids, (permission id, feed) grants.
#[derive(Debug, Clone)]
pub struct UserLinks {
    pub groups: Vec<i32>,
    pub perms: Vec<i32>,
    pub grants: Vec<(i32, String)>,
}

pub fn user_links(conn: &mut Conn, user_id: i32) -> Result<UserLinks, DbError> {
    Ok(UserLinks {
        groups: auth_user_groups::table
            .filter(auth_user_groups::user_id.eq(user_id))
            .select(auth_user_groups::group_id)
            .load(conn)?,
        perms: auth_user_user_permissions::table
            .filter(auth_user_user_permissions::user_id.eq(user_id))
            .select(auth_user_user_permissions::permission_id)
            .load(conn)?,
        grants: feed_grant::table
            .filter(feed_grant::user_id.eq(user_id))
            .order((feed_grant::feed, feed_grant::permission_id))
            .select((feed_grant::permission_id, feed_grant::feed))
            .load(conn)?,
    })
}

/// Replaces a user's own fields and links, as the change form gives them.
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub links: UserLinks,
}

pub fn update_user(conn: &mut Conn, user_id: i32, update: &UserUpdate) -> Result<(), DbError> {
    diesel::update(auth_user::table.find(user_id))
        .set((
            auth_user::username.eq(&update.username),
            auth_user::email.eq(&update.email),
            auth_user::first_name.eq(&update.first_name),
            auth_user::last_name.eq(&update.last_name),
            auth_user::is_active.eq(update.is_active),
            auth_user::is_staff.eq(update.is_staff),
            auth_user::is_superuser.eq(update.is_superuser),
        ))
        .execute(conn)?;
    diesel::delete(auth_user_groups::table.filter(auth_user_groups::user_id.eq(user_id)))
        .execute(conn)?;
    diesel::delete(
        auth_user_user_permissions::table.filter(auth_user_user_permissions::user_id.eq(user_id)),
    )
    .execute(conn)?;
    diesel::delete(feed_grant::table.filter(feed_grant::user_id.eq(user_id))).execute(conn)?;
    for group in &update.links.groups {
        add_user_to_group(conn, user_id, *group)?;
    }
    for perm in &update.links.perms {
        add_user_permission(conn, user_id, *perm)?;
    }
    for (perm, feed) in &update.links.grants {
        add_feed_grant(conn, Holder::User(user_id), *perm, feed)?;
    }
    Ok(())
}

pub fn delete_user(conn: &mut Conn, user_id: i32) -> Result<(), DbError> {
    diesel::delete(auth_user::table.find(user_id)).execute(conn)?;
    Ok(())
}

pub fn user_token_count(conn: &mut Conn, user_id: i32) -> Result<i64, DbError> {
    Ok(authtoken_token::table
        .filter(authtoken_token::user_id.eq(user_id))
        .count()
        .get_result(conn)?)
}

pub fn group_by_id(conn: &mut Conn, id: i32) -> Result<Option<Group>, DbError> {
    Ok(auth_group::table
        .find(id)
        .select(Group::as_select())
        .first(conn)
        .optional()?)
}

/// A group in the list: its name and how many members it has.
#[derive(Debug, Clone, QueryableByName)]
pub struct GroupRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub id: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub members: i64,
}

/// Groups whose name contains `search`, by name, with their member counts,
/// in one query.
pub fn list_groups(conn: &mut Conn, search: &str) -> Result<Vec<GroupRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT g.id, g.name, COUNT(m.id) AS members FROM auth_group g \
         LEFT JOIN auth_user_groups m ON m.group_id = g.id \
         WHERE g.name LIKE ? ESCAPE '\\' GROUP BY g.id, g.name ORDER BY g.name",
    )
    .bind::<diesel::sql_types::Text, _>(like_pattern(search))
    .load(conn)?)
}

/// A `LIKE` pattern matching `text` anywhere, its own `%`, `_` and `\`
/// taken literally (with `ESCAPE '\'`).
pub fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A group's permission ids and (permission id, feed) grants.
pub type GroupLinks = (Vec<i32>, Vec<(i32, String)>);

/// Grant holders: (id, name, codename).
pub type Holders = Vec<(i32, String, String)>;

pub fn group_links(conn: &mut Conn, group_id: i32) -> Result<GroupLinks, DbError> {
    let perms = auth_group_permissions::table
        .filter(auth_group_permissions::group_id.eq(group_id))
        .select(auth_group_permissions::permission_id)
        .load(conn)?;
    let grants = feed_grant::table
        .filter(feed_grant::group_id.eq(group_id))
        .order((feed_grant::feed, feed_grant::permission_id))
        .select((feed_grant::permission_id, feed_grant::feed))
        .load(conn)?;
    Ok((perms, grants))
}

pub fn group_members(conn: &mut Conn, group_id: i32) -> Result<Vec<User>, DbError> {
    Ok(auth_user::table
        .filter(
            auth_user::id.eq_any(
                auth_user_groups::table
                    .filter(auth_user_groups::group_id.eq(group_id))
                    .select(auth_user_groups::user_id),
            ),
        )
        .order(auth_user::username)
        .select(User::as_select())
        .load(conn)?)
}

pub fn update_group(
    conn: &mut Conn,
    group_id: i32,
    name: &str,
    perms: &[i32],
    grants: &[(i32, String)],
) -> Result<(), DbError> {
    diesel::update(auth_group::table.find(group_id))
        .set(auth_group::name.eq(name))
        .execute(conn)?;
    diesel::delete(
        auth_group_permissions::table.filter(auth_group_permissions::group_id.eq(group_id)),
    )
    .execute(conn)?;
    diesel::delete(feed_grant::table.filter(feed_grant::group_id.eq(group_id))).execute(conn)?;
    for perm in perms {
        add_group_permission(conn, group_id, *perm)?;
    }
    for (perm, feed) in grants {
        add_feed_grant(conn, Holder::Group(group_id), *perm, feed)?;
    }
    Ok(())
}

pub fn delete_group(conn: &mut Conn, group_id: i32) -> Result<(), DbError> {
    diesel::delete(auth_group::table.find(group_id)).execute(conn)?;
    Ok(())
}

/// Tokens with their users' names, newest first; `status` is "active",
/// "revoked" or "expired".
pub fn list_tokens(
    conn: &mut Conn,
    user: Option<i32>,
    status: Option<TokenStatus>,
) -> Result<Vec<(Token, String)>, DbError> {
    let mut query = authtoken_token::table
        .inner_join(auth_user::table)
        .into_boxed();
    if let Some(user) = user {
        query = query.filter(authtoken_token::user_id.eq(user));
    }
    let now = now();
    match status {
        Some(TokenStatus::Revoked) => query = query.filter(authtoken_token::revoked.eq(true)),
        Some(TokenStatus::Expired) => {
            query = query
                .filter(authtoken_token::revoked.eq(false))
                .filter(authtoken_token::expires_at.le(now))
        }
        Some(TokenStatus::Active) => {
            query = query.filter(authtoken_token::revoked.eq(false)).filter(
                authtoken_token::expires_at
                    .is_null()
                    .or(authtoken_token::expires_at.gt(now)),
            )
        }
        None => {}
    }
    Ok(query
        .order(authtoken_token::id.desc())
        .select((Token::as_select(), auth_user::username))
        .load(conn)?)
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

pub fn all_users(conn: &mut Conn) -> Result<Vec<User>, DbError> {
    Ok(auth_user::table
        .order(auth_user::username)
        .select(User::as_select())
        .load(conn)?)
}

/// Who holds grants on a feed: (group names, usernames) with the codenames.
pub fn feed_holders(conn: &mut Conn, feed: &str) -> Result<(Holders, Holders), DbError> {
    let groups = feed_grant::table
        .inner_join(auth_permission::table)
        .inner_join(auth_group::table.on(feed_grant::group_id.eq(auth_group::id.nullable())))
        .filter(feed_grant::feed.eq(feed))
        .order((auth_group::name, auth_permission::codename))
        .select((auth_group::id, auth_group::name, auth_permission::codename))
        .load(conn)?;
    let users = feed_grant::table
        .inner_join(auth_permission::table)
        .inner_join(auth_user::table.on(feed_grant::user_id.eq(auth_user::id.nullable())))
        .filter(feed_grant::feed.eq(feed))
        .order((auth_user::username, auth_permission::codename))
        .select((
            auth_user::id,
            auth_user::username,
            auth_permission::codename,
        ))
        .load(conn)?;
    Ok((groups, users))
}

/// Revokes every token of a user (deactivated users keep none working).
pub fn revoke_tokens_of_user(conn: &mut Conn, user_id: i32) -> Result<usize, DbError> {
    Ok(
        diesel::update(authtoken_token::table.filter(authtoken_token::user_id.eq(user_id)))
            .set(authtoken_token::revoked.eq(true))
            .execute(conn)?,
    )
}

/// Active superusers other than `user_id`.
pub fn other_active_superusers(conn: &mut Conn, user_id: i32) -> Result<i64, DbError> {
    Ok(auth_user::table
        .filter(auth_user::is_superuser.eq(true))
        .filter(auth_user::is_active.eq(true))
        .filter(auth_user::id.ne(user_id))
        .count()
        .get_result(conn)?)
}

/// Removes every grant on a feed (the feed was deleted); answers how many.
pub fn delete_feed_grants(conn: &mut Conn, feed: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(feed_grant::table.filter(feed_grant::feed.eq(feed))).execute(conn)?)
}

/// Moves every grant on `old` to `new` (the feed was renamed); a grant the
/// holder already has on `new` is kept once.
pub fn rename_feed_grants(conn: &mut Conn, old: &str, new: &str) -> Result<usize, DbError> {
    let moved = diesel::update(feed_grant::table.filter(feed_grant::feed.eq(old)))
        .set(feed_grant::feed.eq(new))
        .execute(conn);
    match moved {
        Ok(moved) => Ok(moved),
        // Some holder already has the same grant on `new`: move row by row.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {
            let rows: Vec<(Option<i32>, Option<i32>, i32)> = feed_grant::table
                .filter(feed_grant::feed.eq(old))
                .select((
                    feed_grant::user_id,
                    feed_grant::group_id,
                    feed_grant::permission_id,
                ))
                .load(conn)?;
            for (user, group, perm) in &rows {
                let holder = match (user, group) {
                    (Some(user), _) => Holder::User(*user),
                    (None, Some(group)) => Holder::Group(*group),
                    (None, None) => continue,
                };
                add_feed_grant(conn, holder, *perm, new)?;
            }
            delete_feed_grants(conn, old)?;
            Ok(rows.len())
        }
        Err(err) => Err(err.into()),
    }
}

/// What groups hold together: full codenames, and (codename, feed) grants.
pub struct GroupHoldings {
    pub perms: Vec<String>,
    pub grants: Vec<(String, String)>,
}

pub fn group_powers(conn: &mut Conn, group_ids: &[i32]) -> Result<GroupHoldings, DbError> {
    let full = |(app, code): (String, String)| format!("{app}.{code}");
    let perms = auth_group_permissions::table
        .inner_join(auth_permission::table)
        .filter(auth_group_permissions::group_id.eq_any(group_ids))
        .select((auth_permission::app_label, auth_permission::codename))
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(full)
        .collect();
    let grants = feed_grant::table
        .inner_join(auth_permission::table)
        .filter(feed_grant::group_id.eq_any(group_ids))
        .select((
            auth_permission::app_label,
            auth_permission::codename,
            feed_grant::feed,
        ))
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .map(|(app, code, feed)| (format!("{app}.{code}"), feed))
        .collect();
    Ok(GroupHoldings { perms, grants })
}

/// Full codenames (`app.codename`) by permission id.
pub fn permission_codenames(
    conn: &mut Conn,
    ids: &[i32],
) -> Result<std::collections::HashMap<i32, String>, DbError> {
    Ok(auth_permission::table
        .filter(auth_permission::id.eq_any(ids))
        .select((
            auth_permission::id,
            auth_permission::app_label,
            auth_permission::codename,
        ))
        .load::<(i32, String, String)>(conn)?
        .into_iter()
        .map(|(id, app, code)| (id, format!("{app}.{code}")))
        .collect())
}

//! `auth_user`: users, their list with search, filters and sorting, their
//! links (groups, permissions, grants), and what they hold in effect.

use super::*;
use crate::db::models::UserRecord;
pub use crate::db::models::{UserLinks, UserUpdate};

pub fn user_count(conn: &mut Conn) -> Result<i64, DbError> {
    Ok(auth_user::table.count().get_result(conn)?)
}

pub fn user_by_username(conn: &mut Conn, username: &str) -> Result<Option<User>, DbError> {
    Ok(User::query().filter(auth_user::username.eq(username)).first(conn).optional()?)
}

pub fn user_by_id(conn: &mut Conn, id: i32) -> Result<Option<User>, DbError> {
    Ok(User::query().filter(auth_user::id.eq(id)).first(conn).optional()?)
}

pub fn create_user(conn: &mut Conn, new: &NewUser<'_>) -> Result<User, DbError> {
    Ok(diesel::insert_into(auth_user::table)
        .values(new)
        .returning(auth_user::all_columns)
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

/// Everything a user holds: group names, permission codenames (own and
/// groups'), and (feed, codename) grants (own and groups').
pub struct Holdings {
    pub groups: Vec<String>,
    /// The rate limits of the user's groups that have one ("600/min").
    pub group_rates: Vec<String>,
    /// The write quotas of the user's groups that have one.
    pub group_quotas: Vec<String>,
    /// Full codenames, the user's own and its groups'.
    pub perms: Vec<String>,
    /// The user's own and its groups'.
    pub grants: Vec<crate::auth::grant::Grant>,
}

pub fn holdings(conn: &mut Conn, user_id: i32) -> Result<Holdings, DbError> {
    let member_of: Vec<(i32, String, Option<String>, Option<String>)> = auth_user_groups::table
        .inner_join(auth_group::table)
        .filter(auth_user_groups::user_id.eq(user_id))
        .order(auth_group::name)
        .select((auth_group::id, auth_group::name, auth_group::rate_limit, auth_group::write_quota))
        .load(conn)?;
    let group_ids: Vec<i32> = member_of.iter().map(|(id, ..)| *id).collect();
    let mut own = held(conn, HeldBy::User(user_id))?;
    // A user in no group: two queries fewer on a cache miss.
    let from_groups = if group_ids.is_empty() {
        Held::default()
    } else {
        held(conn, HeldBy::Groups(&group_ids))?
    };
    own.perms.extend(from_groups.perms);
    own.grants.extend(from_groups.grants);
    Ok(Holdings {
        group_rates: member_of.iter().filter_map(|(_, _, rate, _)| rate.clone()).collect(),
        group_quotas: member_of.iter().filter_map(|(.., quota)| quota.clone()).collect(),
        groups: member_of.into_iter().map(|(_, name, ..)| name).collect(),
        perms: own.perms,
        grants: own.grants,
    })
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
            let like = like_pattern(&q.search.to_lowercase());
            query = query.filter(
                lower(auth_user::username)
                    .like(like.clone())
                    .escape('\\')
                    .or(lower(auth_user::email).like(like.clone()).escape('\\'))
                    .or(lower(auth_user::first_name).like(like.clone()).escape('\\'))
                    .or(lower(auth_user::last_name).like(like).escape('\\')),
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
        grants: sorted_grants(held(conn, HeldBy::User(user_id))?.grants),
    })
}

pub fn update_user(conn: &mut Conn, user_id: i32, update: &UserUpdate) -> Result<(), DbError> {
    diesel::update(auth_user::table.find(user_id)).set(update).execute(conn)?;
    set_user_links(conn, user_id, &update.links)
}

/// Makes `links` the user's own groups, permissions and feed grants, those
/// it had before removed.
pub fn set_user_links(conn: &mut Conn, user_id: i32, links: &UserLinks) -> Result<(), DbError> {
    diesel::delete(auth_user_groups::table.filter(auth_user_groups::user_id.eq(user_id)))
        .execute(conn)?;
    diesel::delete(
        auth_user_user_permissions::table.filter(auth_user_user_permissions::user_id.eq(user_id)),
    )
    .execute(conn)?;
    diesel::delete(feed_grant::table.filter(feed_grant::user_id.eq(user_id))).execute(conn)?;
    for group in &links.groups {
        add_user_to_group(conn, user_id, *group)?;
    }
    for perm in &links.perms {
        add_permission(conn, Holder::User(user_id), *perm)?;
    }
    for grant in &links.grants {
        add_grant(conn, Holder::User(user_id), grant)?;
    }
    Ok(())
}

pub fn delete_user(conn: &mut Conn, user_id: i32) -> Result<(), DbError> {
    diesel::delete(auth_user::table.find(user_id)).execute(conn)?;
    Ok(())
}

pub fn all_users(conn: &mut Conn) -> Result<Vec<User>, DbError> {
    Ok(User::query().order(auth_user::username).load(conn)?)
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

/// Replaces a user's hash only if it is still `old` (a login's upgrade
/// racing a password change leaves the change); answers whether it did.
pub fn replace_password_hash(
    conn: &mut Conn,
    user_id: i32,
    old: &str,
    new: &str,
) -> Result<bool, DbError> {
    let changed = diesel::update(
        auth_user::table.filter(auth_user::id.eq(user_id)).filter(auth_user::password.eq(old)),
    )
    .set(auth_user::password.eq(new))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Creates a user, or makes the one of that name `record` whole (its
/// password hash included); answers its id.
pub fn put_user_record(conn: &mut Conn, record: &UserRecord) -> Result<i32, DbError> {
    match user_by_username(conn, &record.username)? {
        Some(existing) => {
            diesel::update(auth_user::table.find(existing.id)).set(record).execute(conn)?;
            Ok(existing.id)
        }
        None => Ok(diesel::insert_into(auth_user::table)
            .values(record)
            .returning(auth_user::id)
            .get_result(conn)?),
    }
}

//! `auth_group` and its links: groups, members, permissions and grants.

use super::*;
use crate::auth::grant::Grant;

pub fn group_by_name(conn: &mut Conn, name: &str) -> Result<Option<Group>, DbError> {
    Ok(Group::query().filter(auth_group::name.eq(name)).first(conn).optional()?)
}

pub fn create_group(conn: &mut Conn, name: &str) -> Result<Group, DbError> {
    Ok(diesel::insert_into(auth_group::table)
        .values(auth_group::name.eq(name))
        .returning(auth_group::all_columns)
        .get_result(conn)?)
}

pub fn add_user_to_group(conn: &mut Conn, user_id: i32, group_id: i32) -> Result<(), DbError> {
    let insert = diesel::insert_into(auth_user_groups::table)
        .values((auth_user_groups::user_id.eq(user_id), auth_user_groups::group_id.eq(group_id)))
        .on_conflict_do_nothing();
    crate::on_engine!(conn, |c| insert.execute(c))?;
    Ok(())
}

pub fn all_groups(conn: &mut Conn) -> Result<Vec<Group>, DbError> {
    Ok(Group::query().order(auth_group::name).load(conn)?)
}

pub fn group_by_id(conn: &mut Conn, id: i32) -> Result<Option<Group>, DbError> {
    Ok(Group::query().filter(auth_group::id.eq(id)).first(conn).optional()?)
}

/// A group in the list: its name and how many members it has.
#[derive(Debug, Clone, Queryable)]
pub struct GroupRow {
    pub id: i32,
    pub name: String,
    pub members: i64,
}

/// Groups whose name contains `search` (in any case), by name, with their
/// member counts, in one query.
pub fn list_groups(conn: &mut Conn, search: &str) -> Result<Vec<GroupRow>, DbError> {
    Ok(auth_group::table
        .left_join(auth_user_groups::table)
        .filter(lower(auth_group::name).like(like_pattern(&search.to_lowercase())).escape('\\'))
        .group_by((auth_group::id, auth_group::name))
        .order(auth_group::name)
        .select((
            auth_group::id,
            auth_group::name,
            diesel::dsl::count(auth_user_groups::id.nullable()),
        ))
        .load(conn)?)
}

/// A group's permission ids and grants.
pub type GroupLinks = (Vec<i32>, Vec<Grant>);

pub fn group_links(conn: &mut Conn, group_id: i32) -> Result<GroupLinks, DbError> {
    let perms = auth_group_permissions::table
        .filter(auth_group_permissions::group_id.eq(group_id))
        .select(auth_group_permissions::permission_id)
        .load(conn)?;
    let grants = sorted_grants(held(conn, HeldBy::Groups(&[group_id]))?.grants);
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

/// The rate limits ("600/min") of those of these groups that have one.
pub fn group_rates(conn: &mut Conn, ids: &[i32]) -> Result<Vec<String>, DbError> {
    let rates: Vec<Option<String>> = auth_group::table
        .filter(auth_group::id.eq_any(ids))
        .select(auth_group::rate_limit)
        .load(conn)?;
    Ok(rates.into_iter().flatten().collect())
}

/// Sets a group's rate limit ("600/min") and write quota
/// ("10000000rows/day"), or clears them.
pub fn set_group_limits(
    conn: &mut Conn,
    group_id: i32,
    rate: Option<&str>,
    quota: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(auth_group::table.find(group_id))
        .set((auth_group::rate_limit.eq(rate), auth_group::write_quota.eq(quota)))
        .execute(conn)?;
    Ok(())
}

pub fn update_group(
    conn: &mut Conn,
    group_id: i32,
    name: &str,
    perms: &[i32],
    grants: &[Grant],
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
        add_permission(conn, Holder::Group(group_id), *perm)?;
    }
    for grant in grants {
        add_grant(conn, Holder::Group(group_id), grant)?;
    }
    Ok(())
}

pub fn delete_group(conn: &mut Conn, group_id: i32) -> Result<(), DbError> {
    diesel::delete(auth_group::table.find(group_id)).execute(conn)?;
    Ok(())
}

//! `auth_permission` and the links that give permissions to users and groups.

use super::*;

/// A permission by its full codename (`lbasedb.view_data`).
pub fn permission_by_codename(conn: &mut Conn, full: &str) -> Result<Permission, DbError> {
    let unknown = || {
        DbError::invalid(
            "permissions",
            format!("unknown permission {full:?} (expected e.g. lbasedb.view_data)"),
        )
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
    let insert = diesel::insert_into(auth_user_user_permissions::table)
        .values((
            auth_user_user_permissions::user_id.eq(user_id),
            auth_user_user_permissions::permission_id.eq(permission_id),
        ))
        .on_conflict_do_nothing();
    crate::on_engine!(conn, |c| insert.execute(c))?;
    Ok(())
}

pub fn add_group_permission(
    conn: &mut Conn,
    group_id: i32,
    permission_id: i32,
) -> Result<(), DbError> {
    let insert = diesel::insert_into(auth_group_permissions::table)
        .values((
            auth_group_permissions::group_id.eq(group_id),
            auth_group_permissions::permission_id.eq(permission_id),
        ))
        .on_conflict_do_nothing();
    crate::on_engine!(conn, |c| insert.execute(c))?;
    Ok(())
}

/// Full codenames (`app.codename`) by permission id.
pub fn permission_codenames(
    conn: &mut Conn,
    ids: &[i32],
) -> Result<std::collections::HashMap<i32, String>, DbError> {
    Ok(auth_permission::table
        .filter(auth_permission::id.eq_any(ids))
        .select((auth_permission::id, auth_permission::app_label, auth_permission::codename))
        .load::<(i32, String, String)>(conn)?
        .into_iter()
        .map(|(id, app, code)| (id, format!("{app}.{code}")))
        .collect())
}

//! `auth_permission` and the links that give permissions to users and groups.

use super::*;
use crate::auth::grant::Grant;

/// A permission by its full codename (`lbasedb.view_data`), if there is one.
pub fn permission_by_codename(conn: &mut Conn, full: &str) -> Result<Option<Permission>, DbError> {
    let Some((app_label, codename)) = full.split_once('.') else {
        return Ok(None);
    };
    Ok(Permission::query()
        .filter(auth_permission::app_label.eq(app_label))
        .filter(auth_permission::codename.eq(codename))
        .first(conn)
        .optional()?)
}

pub fn all_permissions(conn: &mut Conn) -> Result<Vec<Permission>, DbError> {
    Ok(Permission::query().order(auth_permission::id).load(conn)?)
}

/// Gives a permission to a user or a group; one they hold already stays one.
pub fn add_permission(conn: &mut Conn, holder: Holder, permission_id: i32) -> Result<(), DbError> {
    use auth_group_permissions as group_perm;
    use auth_user_user_permissions as user_perm;
    match holder {
        Holder::User(id) => {
            let insert = diesel::insert_into(user_perm::table)
                .values((user_perm::user_id.eq(id), user_perm::permission_id.eq(permission_id)))
                .on_conflict_do_nothing();
            crate::on_engine!(conn, |c| insert.execute(c))?
        }
        Holder::Group(id) => {
            let insert = diesel::insert_into(group_perm::table)
                .values((group_perm::group_id.eq(id), group_perm::permission_id.eq(permission_id)))
                .on_conflict_do_nothing();
            crate::on_engine!(conn, |c| insert.execute(c))?
        }
    };
    Ok(())
}

/// Whose own permissions and grants to read.
#[derive(Debug, Clone, Copy)]
pub enum HeldBy<'a> {
    /// A user's own, not its groups'.
    User(i32),
    Groups(&'a [i32]),
}

/// What a holder holds: full codenames, and grants; as a dump writes it
/// beside a user's or a group's name.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    #[serde(rename = "permissions")]
    pub perms: Vec<String>,
    #[serde(rename = "feed_grants")]
    pub grants: Vec<Grant>,
}

/// What a user holds itself, or what groups hold: one query for the
/// permissions, one for the grants. Authentication (`holdings`), the rule
/// on joining a group and `dumpdata` all read holdings through it.
pub fn held(conn: &mut Conn, by: HeldBy) -> Result<Held, DbError> {
    let perms = match by {
        HeldBy::User(id) => auth_user_user_permissions::table
            .inner_join(auth_permission::table)
            .filter(auth_user_user_permissions::user_id.eq(id))
            .select(full_codename())
            .load(conn)?,
        HeldBy::Groups(ids) => auth_group_permissions::table
            .inner_join(auth_permission::table)
            .filter(auth_group_permissions::group_id.eq_any(ids))
            .select(full_codename())
            .load(conn)?,
    };
    let grants = feed_grant::table.inner_join(auth_permission::table).select((
        full_codename(),
        feed_grant::feed,
        feed_grant::grant_columns,
        feed_grant::grant_rows,
    ));
    let grants = match by {
        HeldBy::User(id) => grants.filter(feed_grant::user_id.eq(id)).into_boxed(),
        HeldBy::Groups(ids) => grants.filter(feed_grant::group_id.eq_any(ids)).into_boxed(),
    };
    let grants: Vec<(String, String, Option<String>, Option<String>)> = grants.load(conn)?;
    let grants = grants
        .into_iter()
        .map(|(codename, feed, columns, rows)| {
            Grant::stored(codename, feed, columns.as_deref(), rows.as_deref())
        })
        .collect();
    Ok(Held { perms, grants })
}

/// Grants in the order forms and pages show them: by feed, then codename.
pub fn sorted_grants(mut grants: Vec<Grant>) -> Vec<Grant> {
    grants.sort_by(|a, b| (&a.feed, &a.codename).cmp(&(&b.feed, &b.codename)));
    grants
}

/// Full codenames (`app.codename`) by permission id.
pub fn permission_codenames(
    conn: &mut Conn,
    ids: &[i32],
) -> Result<std::collections::HashMap<i32, String>, DbError> {
    Ok(auth_permission::table
        .filter(auth_permission::id.eq_any(ids))
        .select((auth_permission::id, full_codename()))
        .load::<(i32, String)>(conn)?
        .into_iter()
        .collect())
}

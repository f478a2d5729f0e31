//! `feed_grant`: a permission held for one feed only, by a user or a group.

use super::*;
use crate::auth::grant::Grant;

/// Who holds a feed grant: exactly one of a group and a user.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    User(i32),
    Group(i32),
}

/// Stores `grant` (its feed, columns and rows) for `holder` as the
/// permission `permission_id`; one the holder has already stays as it is.
fn add_feed_grant(
    conn: &mut Conn,
    holder: Holder,
    permission_id: i32,
    grant: &Grant,
) -> Result<(), DbError> {
    let (user_id, group_id) = match holder {
        Holder::User(id) => (Some(id), None),
        Holder::Group(id) => (None, Some(id)),
    };
    let insert = diesel::insert_into(feed_grant::table)
        .values((
            feed_grant::user_id.eq(user_id),
            feed_grant::group_id.eq(group_id),
            feed_grant::permission_id.eq(permission_id),
            feed_grant::feed.eq(&grant.feed),
            feed_grant::grant_columns.eq(grant.stored_columns()),
            feed_grant::grant_rows.eq(grant.rows.map(|rows| rows.to_string())),
        ))
        .on_conflict_do_nothing();
    crate::on_engine!(conn, |c| insert.execute(c))?;
    Ok(())
}

/// Gives `grant` to a user or a group, by its permission's codename; one
/// they hold already stays one. The service has checked the codename: an
/// unknown one is diesel's `NotFound`.
pub fn add_grant(conn: &mut Conn, holder: Holder, grant: &Grant) -> Result<(), DbError> {
    let (app_label, codename) = grant.codename.split_once('.').unwrap_or(("", ""));
    let permission_id: i32 = auth_permission::table
        .filter(auth_permission::app_label.eq(app_label))
        .filter(auth_permission::codename.eq(codename))
        .select(auth_permission::id)
        .first(conn)?;
    add_feed_grant(conn, holder, permission_id, grant)
}

/// Grant holders: (id, name, codename with the grant's columns and rows,
/// `view_data[t]@0..10`).
pub type Holders = Vec<(i32, String, String)>;

/// Who holds grants on a feed: (group names, usernames) with the codenames,
/// in one query: each grant row has either a group or a user.
pub fn feed_holders(conn: &mut Conn, feed: &str) -> Result<(Holders, Holders), DbError> {
    type Named = Option<(i32, String)>;
    type Row = (Named, Named, String, Option<String>, Option<String>);
    let rows: Vec<Row> = feed_grant::table
        .inner_join(auth_permission::table)
        .left_join(auth_group::table.on(feed_grant::group_id.eq(auth_group::id.nullable())))
        .left_join(auth_user::table.on(feed_grant::user_id.eq(auth_user::id.nullable())))
        .filter(feed_grant::feed.eq(feed))
        // Each side has one name null throughout, so each is sorted by its own.
        .order((auth_group::name, auth_user::username, auth_permission::codename))
        .select((
            (auth_group::id, auth_group::name).nullable(),
            (auth_user::id, auth_user::username).nullable(),
            auth_permission::codename,
            feed_grant::grant_columns,
            feed_grant::grant_rows,
        ))
        .load(conn)?;
    let (mut groups, mut users) = (Holders::new(), Holders::new());
    for (group, user, codename, columns, window) in rows {
        let grant = Grant::stored(codename, feed.into(), columns.as_deref(), window.as_deref());
        let held = format!("{}{}", grant.codename, grant.limits());
        match (group, user) {
            (Some((id, name)), _) => groups.push((id, name, held)),
            (None, Some((id, name))) => users.push((id, name, held)),
            (None, None) => {}
        }
    }
    Ok((groups, users))
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
            type Row = (Option<i32>, Option<i32>, i32, Option<String>, Option<String>);
            let rows: Vec<Row> = feed_grant::table
                .filter(feed_grant::feed.eq(old))
                .select((
                    feed_grant::user_id,
                    feed_grant::group_id,
                    feed_grant::permission_id,
                    feed_grant::grant_columns,
                    feed_grant::grant_rows,
                ))
                .load(conn)?;
            for (user, group, perm, columns, window) in &rows {
                let holder = match (user, group) {
                    (Some(user), _) => Holder::User(*user),
                    (None, Some(group)) => Holder::Group(*group),
                    (None, None) => continue,
                };
                let grant =
                    Grant::stored(String::new(), new.into(), columns.as_deref(), window.as_deref());
                add_feed_grant(conn, holder, *perm, &grant)?;
            }
            delete_feed_grants(conn, old)?;
            Ok(rows.len())
        }
        Err(err) => Err(err.into()),
    }
}

/// Edits the columns of every grant on `feed` that names some (`edit`
/// answers whether it changed them); a grant left with none is removed.
/// Answers how many grants changed.
pub fn edit_grant_columns(
    conn: &mut Conn,
    feed: &str,
    edit: impl Fn(&mut std::collections::BTreeSet<String>) -> bool,
) -> Result<usize, DbError> {
    let rows: Vec<(i32, Option<String>)> = feed_grant::table
        .filter(feed_grant::feed.eq(feed))
        .filter(feed_grant::grant_columns.is_not_null())
        .select((feed_grant::id, feed_grant::grant_columns))
        .load(conn)?;
    let mut changed = 0;
    for (id, stored) in rows {
        let grant = Grant::stored(String::new(), feed.into(), stored.as_deref(), None);
        let mut columns = grant.columns.unwrap_or_default();
        if !edit(&mut columns) {
            continue;
        }
        let row = feed_grant::table.filter(feed_grant::id.eq(id));
        match columns.is_empty() {
            true => diesel::delete(row).execute(conn)?,
            false => {
                let list: Vec<&str> = columns.iter().map(String::as_str).collect();
                diesel::update(row)
                    .set(feed_grant::grant_columns.eq(list.join(",")))
                    .execute(conn)?
            }
        };
        changed += 1;
    }
    Ok(changed)
}

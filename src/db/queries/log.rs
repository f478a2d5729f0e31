//! `admin_log`: the admin's history (Django's LogEntry).

use super::*;
use crate::db::models::LogEntry;
use crate::db::schema::admin_log;

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

pub fn recent_actions(conn: &mut Conn, user_id: i32, limit: i64) -> Result<Vec<LogEntry>, DbError> {
    Ok(admin_log::table
        .filter(admin_log::user_id.eq(user_id))
        .filter(admin_log::action.eq_any(["add", "change", "delete"]))
        .order(admin_log::id.desc())
        .limit(limit)
        .select(LogEntry::as_select())
        .load(conn)?)
}

pub fn object_history(
    conn: &mut Conn,
    object_type: &str,
    object_id: &str,
) -> Result<Vec<LogEntry>, DbError> {
    Ok(admin_log::table
        .filter(admin_log::object_type.eq(object_type))
        .filter(admin_log::object_id.eq(object_id))
        .order(admin_log::id.asc())
        .select(LogEntry::as_select())
        .load(conn)?)
}

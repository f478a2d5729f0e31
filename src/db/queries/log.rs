//! `admin_log`: the admin's history (Django's LogEntry).

use super::*;
use crate::db::models::{Access, LogEntry};
use crate::db::schema::{access_log, admin_log};

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

/// The access log's search (user, feed or request id), filters, and page.
#[derive(Debug, Default, Clone)]
pub struct AccessQuery {
    pub search: String,
    pub username: Option<String>,
    pub feed: Option<String>,
    pub method: Option<String>,
    /// 2 for 2xx … 5 for 5xx.
    pub status_class: Option<i32>,
    pub from: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    pub page: i64,
    pub per_page: i64,
    /// Only reads of rows (those that name columns).
    pub reads_only: bool,
}

type AccessFilter<'a> =
    diesel::helper_types::IntoBoxed<'a, access_log::table, crate::db::conn::MultiBackend>;

fn access_filter(q: &AccessQuery) -> AccessFilter<'_> {
    let mut query = access_log::table.into_boxed();
    if q.reads_only {
        query = query.filter(access_log::read_columns.is_not_null());
    }
    if !q.search.is_empty() {
        let like = like_pattern(&q.search.to_lowercase());
        query = query.filter(
            lower(access_log::username)
                .like(like.clone())
                .escape('\\')
                .or(lower(access_log::feed).like(like).escape('\\'))
                // A request's id, as its answer and the log line show it.
                .or(access_log::request_id.eq(&q.search)),
        );
    }
    if let Some(username) = &q.username {
        query = query.filter(access_log::username.eq(username));
    }
    if let Some(feed) = &q.feed {
        query = query.filter(access_log::feed.eq(feed));
    }
    if let Some(method) = &q.method {
        query = query.filter(access_log::method.eq(method));
    }
    if let Some(class) = q.status_class {
        query = query
            .filter(access_log::status.ge(class * 100))
            .filter(access_log::status.lt(class * 100 + 100));
    }
    if let Some(from) = q.from {
        query = query.filter(access_log::at.ge(from));
    }
    if let Some(until) = q.until {
        query = query.filter(access_log::at.lt(until));
    }
    query
}

/// A page of the access log, newest first.
pub fn list_access(conn: &mut Conn, q: &AccessQuery) -> Result<Vec<Access>, DbError> {
    Ok(access_filter(q)
        .order(access_log::id.desc())
        .offset(q.page * q.per_page)
        .limit(q.per_page)
        .select(Access::as_select())
        .load(conn)?)
}

/// What the rows that match count in all: "alice read feed xy from 14:00
/// to 14:05: N requests, M bytes, from these addresses".
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AccessTotals {
    pub rows: i64,
    pub requests: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// The clients, in order, at most `TOTALS_CLIENTS` (one more tells
    /// that there are more).
    pub clients: Vec<String>,
}

/// Most clients `AccessTotals` names.
pub const TOTALS_CLIENTS: i64 = 20;

pub fn access_totals(conn: &mut Conn, q: &AccessQuery) -> Result<AccessTotals, DbError> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Nullable};
    // A sum of BIGINTs is NUMERIC on PostgreSQL: cast back.
    let sum = |column: &str| sql::<Nullable<BigInt>>(&format!("CAST(SUM({column}) AS BIGINT)"));
    let (rows, requests, bytes_in, bytes_out): (i64, Option<i64>, Option<i64>, Option<i64>) =
        access_filter(q)
            .select((diesel::dsl::count_star(), sum("requests"), sum("bytes_in"), sum("bytes_out")))
            .first(conn)?;
    let clients = access_filter(q)
        .select(access_log::client)
        .distinct()
        .order(access_log::client)
        .limit(TOTALS_CLIENTS + 1)
        .load(conn)?;
    Ok(AccessTotals {
        rows,
        requests: requests.unwrap_or(0),
        bytes_in: bytes_in.unwrap_or(0),
        bytes_out: bytes_out.unwrap_or(0),
        clients,
    })
}

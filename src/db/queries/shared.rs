//! `auth_change` and `throttle`: what replicas share beyond users and
//! sessions (see the `shared_state` migration).

use super::*;
use crate::db::schema::{auth_change, throttle};

/// The change counters `auth::changes::watch` polls: (who may do what,
/// sessions).
pub fn auth_change_counts(conn: &mut Conn) -> Result<(i64, i64), DbError> {
    let rows: Vec<(i32, i64)> =
        auth_change::table.select((auth_change::id, auth_change::n)).load(conn)?;
    let of = |id| rows.iter().find(|(row, _)| *row == id).map_or(0, |(_, n)| *n);
    Ok((of(1), of(2)))
}

/// Counts one event for `key` in one atomic upsert: the window's first
/// event opens it (ending `window` seconds on), later ones raise the count.
/// Answers the count so far and when the window ends (Unix seconds).
pub fn throttle_hit(conn: &mut Conn, key: &str, window: i64) -> Result<(i32, i64), DbError> {
    use diesel::dsl::case_when;
    let now = Utc::now().timestamp();
    let end = now.saturating_add(window);
    let expired = throttle::window_end.le(now);
    let upsert = diesel::insert_into(throttle::table)
        .values((throttle::key.eq(key), throttle::count.eq(1), throttle::window_end.eq(end)))
        .on_conflict(throttle::key)
        .do_update()
        .set((
            throttle::count.eq(case_when::<_, _, diesel::sql_types::Integer>(expired, 1)
                .otherwise(throttle::count + 1)),
            throttle::window_end.eq(case_when::<_, _, diesel::sql_types::BigInt>(expired, end)
                .otherwise(throttle::window_end)),
        ))
        .returning((throttle::count, throttle::window_end));
    Ok(crate::on_engine!(conn, |c| upsert.get_result::<(i32, i64)>(c))?)
}

pub fn throttle_clear(conn: &mut Conn, key: &str) -> Result<(), DbError> {
    diesel::delete(throttle::table.find(key)).execute(conn)?;
    Ok(())
}

/// Drops the counts whose window has ended.
pub fn throttle_purge(conn: &mut Conn) -> Result<usize, DbError> {
    let now = Utc::now().timestamp();
    Ok(diesel::delete(throttle::table.filter(throttle::window_end.le(now))).execute(conn)?)
}

//! `feed_repair`: feeds whose append the upstream may have left torn, and
//! the size each is set back to (`proxy::repair`).

use super::*;
use crate::db::schema::feed_repair as repair;

/// Marks `feed` to be set back to `size` rows (a torn append).
pub fn mark_repair(conn: &mut Conn, feed: &str, size: u64) -> Result<(), DbError> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    conn.write_transaction(|conn| {
        diesel::delete(repair::table.find(feed)).execute(conn)?;
        let insert = diesel::insert_into(repair::table).values((
            repair::feed.eq(feed),
            repair::size.eq(size),
            repair::since.eq(now()),
        ));
        crate::on_engine!(conn, |c| insert.execute(c))?;
        Ok(())
    })
}

/// `feed` is repaired.
pub fn repaired(conn: &mut Conn, feed: &str) -> Result<(), DbError> {
    diesel::delete(repair::table.find(feed)).execute(conn)?;
    Ok(())
}

/// The repairs not finished (a process stopped while making them).
pub fn pending_repairs(conn: &mut Conn) -> Result<Vec<(String, i64)>, DbError> {
    Ok(repair::table.select((repair::feed, repair::size)).load(conn)?)
}

/// The size `feed` is to be set back to, if a repair of it is left to make.
pub fn pending_repair(conn: &mut Conn, feed: &str) -> Result<Option<i64>, DbError> {
    Ok(repair::table.find(feed).select(repair::size).first(conn).optional()?)
}

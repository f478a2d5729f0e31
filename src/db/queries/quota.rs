//! `write_usage`: what each user wrote each day (UTC), for write quotas
//! (`auth::quota`); every replica adds into the same row.

use super::*;
use crate::db::schema::write_usage;

/// Rows and bytes `user_id` wrote on `day` (`YYYY-MM-DD`).
pub fn write_usage(conn: &mut Conn, user_id: i32, day: &str) -> Result<(u64, u64), DbError> {
    let used: Option<(i64, i64)> = write_usage::table
        .find((user_id, day))
        .select((write_usage::rows_written, write_usage::bytes_written))
        .first(conn)
        .optional()?;
    let (rows, bytes) = used.unwrap_or_default();
    Ok((rows.max(0) as u64, bytes.max(0) as u64))
}

/// Adds a write to `user_id`'s `day`, in one atomic upsert.
pub fn add_write_usage(
    conn: &mut Conn,
    user_id: i32,
    day: &str,
    rows: u64,
    bytes: u64,
) -> Result<(), DbError> {
    use diesel::upsert::excluded;
    let (rows, bytes) =
        (i64::try_from(rows).unwrap_or(i64::MAX), i64::try_from(bytes).unwrap_or(i64::MAX));
    let upsert = diesel::insert_into(write_usage::table)
        .values((
            write_usage::user_id.eq(user_id),
            write_usage::day.eq(day),
            write_usage::rows_written.eq(rows),
            write_usage::bytes_written.eq(bytes),
        ))
        .on_conflict((write_usage::user_id, write_usage::day))
        .do_update()
        .set((
            write_usage::rows_written
                .eq(write_usage::rows_written + excluded(write_usage::rows_written)),
            write_usage::bytes_written
                .eq(write_usage::bytes_written + excluded(write_usage::bytes_written)),
        ));
    crate::on_engine!(conn, |c| upsert.execute(c))?;
    Ok(())
}

/// Drops the days before `day` (they count for nothing any more).
pub fn purge_write_usage(conn: &mut Conn, day: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(write_usage::table.filter(write_usage::day.lt(day))).execute(conn)?)
}

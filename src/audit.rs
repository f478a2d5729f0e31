//! The data-access audit: who read or wrote what, when, from where. Every
//! proxied request becomes one `Access` row, sent on a bounded channel and
//! written in batches by one task, off the request path: when the channel
//! is full the row is dropped and counted (`lbasedb_proxy_audit_dropped_total`),
//! never waited for. Rows are kept for `AUDIT_RETENTION` (purged hourly)
//! and to `AUDIT_MAX_ROWS` (the oldest purged past it, checked every
//! minute), both a batch at a time.
//! With `AUDIT_LOG=json` each row is also one JSON line in the log.
//!
//! A request refused before anyone was authenticated costs its sender
//! nothing, so it must cost the disk almost nothing too: such refusals are
//! counted together, one row per client (an IPv6 client by its /64),
//! second, endpoint, method and status, with the number of requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use tokio::sync::mpsc;

use crate::db::models::Access;
use crate::db::{self, DbError, Pool, queries, schema};
use crate::metrics::Metrics;

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit")
    }
}

/// Rows waiting to be written; past this many, new ones are dropped.
/// Room for a quarter second at a quarter million requests a second.
const QUEUE: usize = 65_536;
/// How long the writer lets rows gather after a write that was not full:
/// a transaction per handful of rows would cost more than the requests.
const GATHER: Duration = Duration::from_millis(250);
/// Most rows one write takes: under load, one transaction every few
/// thousand requests rather than one per few.
const BATCH: usize = 4096;

/// Where proxied requests report to.
#[derive(Clone)]
pub struct Audit {
    sender: mpsc::Sender<Access>,
    metrics: Arc<Metrics>,
}

impl Audit {
    /// Starts the writer (and the purges that keep the audit within
    /// `keep`) on the current runtime.
    pub fn start(pool: Pool, metrics: Arc<Metrics>, keep: Keep, json_log: bool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(pool.clone(), receiver, json_log));
        tokio::spawn(purge_hourly(pool.clone(), keep.retention));
        tokio::spawn(keep_within_budget(pool, metrics.clone(), keep.max_rows));
        Self { sender, metrics }
    }

    /// Queues a row; never waits.
    pub fn record(&self, access: Access) {
        if self.sender.try_send(access).is_err() {
            self.metrics.audit_dropped();
        }
    }
}

async fn write_batches(pool: Pool, mut receiver: mpsc::Receiver<Access>, json_log: bool) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut refusals = Refusals::default();
    loop {
        // Woken at least once a second, so that counted refusals are
        // written when their second is over, whatever comes next.
        let received =
            tokio::time::timeout(Duration::from_secs(1), receiver.recv_many(&mut batch, BATCH))
                .await
                .ok();
        let closed = received == Some(0);
        let mut rows: Vec<Access> = batch.drain(..).filter_map(|a| refusals.add(a)).collect();
        // The channel closed (shutting down): what is counted goes now.
        rows.extend(refusals.due(closed));
        write(&pool, rows, json_log).await;
        if closed {
            return;
        }
        if received.is_some_and(|n| n < BATCH) {
            tokio::time::sleep(GATHER).await;
        }
    }
}

async fn write(pool: &Pool, rows: Vec<Access>, json_log: bool) {
    if json_log {
        for access in &rows {
            if let Ok(line) = serde_json::to_string(access) {
                tracing::info!(target: "lbasedb_proxy::audit", "{line}");
            }
        }
    }
    let count = rows.len();
    if count > 0
        && let Err(err) = db::run(pool, move |conn| insert(conn, &rows)).await
    {
        tracing::error!("audit: {count} row(s) not written: {err}");
    }
}

/// Requests refused before anyone was authenticated, counted together per
/// client, second and status until their second is over (an endpoint or a
/// method that varies within one row reads `*`); past `CLIENTS` clients in
/// one second, the others are counted together as client `*`.
#[derive(Default)]
struct Refusals {
    rows: HashMap<(i64, String, i32), Access>,
    /// The clients counted apart, by second.
    clients: HashMap<i64, Vec<String>>,
}

/// Clients counted apart in one second: a flood from many addresses costs
/// at most this many rows (times the statuses) a second.
const CLIENTS: usize = 16;

impl Refusals {
    /// Counts `access` if it is such a refusal; else hands it back.
    fn add(&mut self, mut access: Access) -> Option<Access> {
        if !access.username.is_empty() {
            return Some(access);
        }
        let second = access.at.and_utc().timestamp();
        if let Ok(ip) = access.client.parse::<std::net::IpAddr>() {
            access.client = crate::net::counted_as(ip).to_string();
        }
        let apart = self.clients.entry(second).or_default();
        if !apart.contains(&access.client) {
            if apart.len() < CLIENTS {
                apart.push(access.client.clone());
            } else {
                access.client = "*".into();
            }
        }
        let key = (second, access.client.clone(), access.status);
        match self.rows.get_mut(&key) {
            Some(row) => {
                row.requests += access.requests;
                row.request_id = None;
                row.bytes_in = row.bytes_in.saturating_add(access.bytes_in);
                row.bytes_out = row.bytes_out.saturating_add(access.bytes_out);
                row.duration_ms = row.duration_ms.max(access.duration_ms);
                for (kept, seen) in
                    [(&mut row.endpoint, &access.endpoint), (&mut row.method, &access.method)]
                {
                    if kept != seen {
                        *kept = "*".into();
                    }
                }
            }
            None => {
                access.at = chrono::DateTime::from_timestamp(second, 0)
                    .map_or(access.at, |at| at.naive_utc());
                self.rows.insert(key, access);
            }
        }
        None
    }

    /// The rows whose second is over (all of them when `all`).
    fn due(&mut self, all: bool) -> Vec<Access> {
        let now = chrono::Utc::now().timestamp();
        let over = |second: i64| all || second < now;
        self.clients.retain(|second, _| !over(*second));
        let due: Vec<_> = self.rows.keys().filter(|key| over(key.0)).cloned().collect();
        due.into_iter().filter_map(|key| self.rows.remove(&key)).collect()
    }
}

/// One transaction; statements of at most 256 rows (SQLite's bound
/// parameters stay far under its limit).
fn insert(conn: &mut crate::db::DbConnection, rows: &[Access]) -> Result<usize, DbError> {
    conn.write_transaction(|conn| {
        let mut written = 0;
        for chunk in rows.chunks(256) {
            let insert = diesel::insert_into(schema::access_log::table).values(chunk);
            written += crate::on_engine!(conn, |c| insert.execute(c))?;
        }
        Ok(written)
    })
}

async fn purge_hourly(pool: Pool, retention: Duration) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match db::run(&pool, move |conn| purge(conn, retention)).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!("audit: purged {purged} row(s) past the retention"),
            Err(err) => tracing::warn!("audit: purging: {err}"),
        }
        // What users wrote each day (write quotas) is kept for a week.
        let week_ago = (chrono::Utc::now() - chrono::Duration::days(7)).format("%Y-%m-%d");
        let week_ago = week_ago.to_string();
        if let Err(err) =
            db::run(&pool, move |conn| queries::purge_write_usage(conn, &week_ago)).await
        {
            tracing::warn!("write quotas: purging old days: {err}");
        }
    }
}

/// How long and how much the audit keeps.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub retention: Duration,
    /// 0: no budget.
    pub max_rows: u64,
}

/// Rows one purge statement deletes: each is a short transaction of its
/// own, so that a purge of millions of rows never holds the database (nor
/// the audit's writer) for long.
const PURGE_BATCH: i64 = 10_000;

/// Deletes the rows older than `retention`, a batch at a time; answers
/// how many.
pub fn purge(conn: &mut crate::db::DbConnection, retention: Duration) -> Result<usize, DbError> {
    use schema::access_log::dsl::{access_log, at, id};
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = queries::now().checked_sub_signed(retention).unwrap_or(chrono::NaiveDateTime::MIN);
    let mut purged = 0;
    loop {
        // The batch's last row: rows are written in time order, the oldest
        // with the lowest ids.
        let last: Option<i32> = access_log
            .filter(at.lt(cutoff))
            .select(id)
            .order(id.asc())
            .offset(PURGE_BATCH - 1)
            .first(conn)
            .optional()?;
        let deleted = match last {
            Some(last) => {
                diesel::delete(access_log.filter(id.le(last).and(at.lt(cutoff)))).execute(conn)?
            }
            None => diesel::delete(access_log.filter(at.lt(cutoff))).execute(conn)?,
        };
        purged += deleted;
        if last.is_none() || deleted == 0 {
            return Ok(purged);
        }
    }
}

/// Rows in the audit, from its first and last ids (rows go oldest first,
/// so they run without gaps but for a write rolled back): no count of
/// millions of rows every minute.
pub fn rows(conn: &mut crate::db::DbConnection) -> Result<i64, DbError> {
    use diesel::dsl::{max, min};
    use schema::access_log::dsl::{access_log, id};
    let (first, last): (Option<i32>, Option<i32>) =
        access_log.select((min(id), max(id))).first(conn)?;
    Ok(match (first, last) {
        (Some(first), Some(last)) => i64::from(last) - i64::from(first) + 1,
        _ => 0,
    })
}

/// Deletes the oldest rows past `max_rows`, at most a batch a call;
/// answers how many (0 when within the budget).
pub fn purge_over_budget(
    conn: &mut crate::db::DbConnection,
    max_rows: u64,
) -> Result<usize, DbError> {
    use diesel::dsl::min;
    use schema::access_log::dsl::{access_log, id};
    let over = rows(conn)?.saturating_sub(i64::try_from(max_rows).unwrap_or(i64::MAX));
    let first: Option<i32> = access_log.select(min(id)).first(conn)?;
    let (Some(first), true) = (first, over > 0) else {
        return Ok(0);
    };
    let bound = i64::from(first) + over.min(PURGE_BATCH);
    let bound = i32::try_from(bound).unwrap_or(i32::MAX);
    Ok(diesel::delete(access_log.filter(id.lt(bound))).execute(conn)?)
}

/// Every minute: the audit's size as a metric, a warning past 90% of
/// `max_rows`, and the oldest rows past it purged a batch at a time.
async fn keep_within_budget(pool: Pool, metrics: Arc<Metrics>, max_rows: u64) {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    let mut warned = false;
    loop {
        every_minute.tick().await;
        let Ok(count) = db::run(&pool, rows).await else {
            continue;
        };
        metrics.audit_rows(count);
        if max_rows == 0 {
            continue;
        }
        let near = count.unsigned_abs() >= max_rows / 10 * 9;
        if near && !warned {
            tracing::warn!(
                "audit: {count} rows, near its budget of {max_rows} (AUDIT_MAX_ROWS): the \
                 oldest go past it; keep them elsewhere with AUDIT_LOG=json if they matter"
            );
        }
        warned = near;
        // What is over the budget now: rows that come meanwhile wait for
        // the next minute, so that the purge ends under any load.
        let over = usize::try_from(count.unsigned_abs().saturating_sub(max_rows)).unwrap_or(0);
        let mut purged = 0;
        while purged < over {
            match db::run(&pool, move |conn| purge_over_budget(conn, max_rows)).await {
                Ok(0) => break,
                Ok(deleted) => purged += deleted,
                Err(err) => {
                    tracing::warn!("audit: purging past its budget: {err}");
                    break;
                }
            }
            // Between batches the writer and everyone else get their turn.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if purged > 0 {
            tracing::info!("audit: purged the {purged} oldest row(s) past AUDIT_MAX_ROWS");
        }
    }
}

/// A proxied request's audit row, kept by its response body
/// (`body::KeepUntilSent`): it counts what the body sends and, when the
/// body is done (sent, cut, or dropped with its client), is recorded.
pub struct Audited {
    sent: u64,
    pending: Option<(Access, Audit)>,
}

impl Audited {
    pub fn new(access: Access, audit: Audit) -> Self {
        Self { sent: 0, pending: Some((access, audit)) }
    }

    /// Changes the row before it is recorded (how a long read ended).
    pub fn update(&mut self, change: impl FnOnce(&mut Access)) {
        if let Some((access, _)) = &mut self.pending {
            change(access);
        }
    }
}

impl crate::body::Kept for Audited {
    fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if let Some((mut access, audit)) = self.pending.take() {
            access.bytes_out = i64::try_from(self.sent).unwrap_or(i64::MAX);
            audit.record(access);
        }
    }
}

//! The data-access audit: who read or wrote what, when, from where, how
//! much. Every proxied request becomes an `Access`, sent on a bounded
//! channel to one writer task, off the request path: when the channel is
//! full the row is dropped and counted (`lbasedb_proxy_audit_dropped_total`),
//! never waited for.
//!
//! By default (`AUDIT_DETAIL=minutes`) the writer counts requests per
//! minute, user, credential, client, endpoint, method, feed, status and
//! columns read, and once a second adds what it counted into those rows
//! (`minute_key` names one), so that the audit grows with distinct
//! activity, not with requests; every replica adds into the same rows.
//! `AUDIT_DETAIL=requests` keeps a row per request instead. Rows are kept
//! for `AUDIT_RETENTION` (purged hourly) and to `AUDIT_MAX_ROWS` (the
//! oldest purged past it, checked every minute), both a batch at a time.
//! With `AUDIT_LOG=json` each request is also one JSON line in the log.
//!
//! A request refused before anyone was authenticated costs its sender
//! nothing, so it must cost the disk almost nothing too, whatever the
//! detail: such refusals are counted per minute, client (an IPv6 client by
//! its /64, past `CLIENTS` in a minute all as `*`) and status, their
//! endpoint and method `*` where they vary.

use std::collections::{HashMap, HashSet};
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
/// Most rows written a request at a time in one transaction.
const BATCH: usize = 4096;
/// How often the writer writes what it has: a request is in the admin's
/// access log about this long after it ended, and each write is one
/// transaction of a few rows, whatever the rate.
const FLUSH: Duration = Duration::from_secs(1);
/// Most rows counted between two writes: keys that vary with every request
/// (a client naming a new feed each time) are written early, costing a
/// row each but never memory.
const KEYS: usize = 16_384;

/// How much of each request the audit keeps (`AUDIT_DETAIL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Detail {
    /// A row per minute and key, counting its requests.
    #[default]
    Minutes,
    /// A row per request, with its id (refusals before anyone was
    /// authenticated are counted all the same).
    Requests,
}

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
        tokio::spawn(write_batches(pool.clone(), receiver, keep.detail, json_log));
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

/// How often the writer takes what waits on the queue. It never waits on
/// the queue itself: a receiver waiting is woken by each send, which costs
/// the worker that sends a system call (waking the writer's thread) a
/// request: 7.8% of the proxy's CPU at c=32, measured with `perf`.
const TAKE: Duration = Duration::from_millis(100);

async fn write_batches(
    pool: Pool,
    mut receiver: mpsc::Receiver<Access>,
    detail: Detail,
    json_log: bool,
) {
    let mut pending = Pending::default();
    let mut due = tokio::time::Instant::now() + FLUSH;
    let mut every = tokio::time::interval(TAKE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // The channel closed (shutting down): what is counted goes now.
        let closed = loop {
            match receiver.try_recv() {
                Ok(access) => {
                    pending.add(access, detail, json_log);
                    if pending.is_full() {
                        pending.write(&pool, json_log).await;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        if closed || tokio::time::Instant::now() >= due {
            pending.write(&pool, json_log).await;
            due = tokio::time::Instant::now() + FLUSH;
        }
        if closed {
            return;
        }
    }
}

fn log_json(access: &Access) {
    if let Ok(line) = serde_json::to_string(access) {
        tracing::info!(target: "lbasedb_proxy::audit", "{line}");
    }
}

/// What the writer holds between two writes.
#[derive(Default)]
struct Pending {
    /// Rows written as they are (`Detail::Requests`).
    requests: Vec<Access>,
    minutes: Minutes,
}

impl Pending {
    fn add(&mut self, mut access: Access, detail: Detail, json_log: bool) {
        // A row of one request: its longest duration is its own.
        access.duration_max_ms = access.duration_ms;
        // PostgreSQL's text holds no NUL: one would fail the whole write.
        for text in [&mut access.username, &mut access.credential, &mut access.client]
            .into_iter()
            .chain([&mut access.endpoint, &mut access.method])
            .chain(access.feed.as_mut())
            .chain(access.request_id.as_mut())
            .chain(access.read_columns.as_mut())
        {
            if text.contains('\0') {
                *text = text.replace('\0', "\u{fffd}");
            }
        }
        let refusal = access.username.is_empty();
        if json_log && !refusal {
            log_json(&access);
        }
        if detail == Detail::Requests && !refusal {
            self.requests.push(access);
        } else {
            self.minutes.add(access);
        }
    }

    fn is_full(&self) -> bool {
        self.requests.len() >= BATCH || self.minutes.rows.len() >= KEYS
    }

    /// Writes what it holds, and holds nothing.
    async fn write(&mut self, pool: &Pool, json_log: bool) {
        let requests = std::mem::take(&mut self.requests);
        let counted = self.minutes.take();
        if json_log {
            // Counted refusals: a line per row, with how many.
            counted.iter().filter(|c| c.access.username.is_empty()).for_each(|c| {
                log_json(&c.access);
            });
        }
        write(pool, requests, counted).await;
    }
}

/// Tries a write this many times: on PostgreSQL two replicas adding into
/// the same rows at once may deadlock, and one of them is told to retry.
const TRIES: u64 = 3;

async fn write(pool: &Pool, requests: Vec<Access>, mut counted: Vec<Counted>) {
    // Every replica takes the rows it adds into in one order: two that add
    // into the same rows at once wait for each other, never deadlock.
    counted.sort_unstable_by(|a, b| a.minute_key.cmp(&b.minute_key));
    write_rows(pool, requests, insert).await;
    write_rows(pool, counted, add_up).await;
}

/// A way of writing rows, in a transaction it is given.
type Writer<T> = fn(&mut crate::db::DbConnection, &[T]) -> Result<usize, DbError>;

/// Writes `rows` in one transaction, tried again when it fails (a
/// deadlock, a lost connection); one that still fails is split in halves
/// written apart, so that a row the database refuses costs itself only,
/// never the other users' rows of its batch.
async fn write_rows<T: Send + Sync + 'static>(pool: &Pool, rows: Vec<T>, how: Writer<T>) {
    let rows = Arc::new(rows);
    // The parts still to write: the whole, then halves of what failed.
    let mut parts = Vec::with_capacity(32);
    parts.push(0..rows.len());
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let mut tried = 0;
        let failed = loop {
            tried += 1;
            let (rows, part) = (rows.clone(), part.clone());
            let written =
                db::run(pool, move |conn| conn.write_transaction(|conn| how(conn, &rows[part])));
            match written.await {
                Ok(_) => break None,
                Err(err) if tried == TRIES => break Some(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(50 * tried)).await,
            }
        };
        match failed {
            None => {}
            Some(err) if part.len() > 1 => {
                tracing::warn!(
                    "audit: {} row(s) not written, trying them apart: {err}",
                    part.len()
                );
                let middle = part.start + part.len() / 2;
                parts.push(middle..part.end);
                parts.push(part.start..middle);
            }
            Some(err) => tracing::error!("audit: a row not written: {err}"),
        }
    }
}

/// Clients whose refusals are counted apart in one minute: a flood from
/// many addresses costs at most this many rows (times the statuses) a
/// minute.
const CLIENTS: usize = 64;

/// What names a row of the minute: every field of a request's row but its
/// numbers (for a refusal, its endpoint and method are not part of it).
#[derive(PartialEq, Eq, Hash)]
struct Key {
    minute: i64,
    username: String,
    credential: String,
    client: String,
    endpoint: String,
    method: String,
    feed: Option<String>,
    status: i32,
    read_columns: Option<String>,
}

impl Key {
    /// The key, taken out of `access`.
    fn take(access: &mut Access, minute: i64) -> Self {
        let refusal = access.username.is_empty();
        let named =
            |field: &mut String| if refusal { String::new() } else { std::mem::take(field) };
        let (endpoint, method) = (named(&mut access.endpoint), named(&mut access.method));
        Self {
            minute,
            username: std::mem::take(&mut access.username),
            credential: std::mem::take(&mut access.credential),
            client: std::mem::take(&mut access.client),
            endpoint,
            method,
            feed: access.feed.take(),
            status: access.status,
            read_columns: access.read_columns.take(),
        }
    }

    /// The row's name in the table: a digest of the key, so that no one
    /// who picks a user or a feed name can make their requests count in
    /// another's row (SHA-256, cut to 128 bits; each field with its length).
    fn digest(&self) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(self.minute.to_be_bytes());
        hash.update(self.status.to_be_bytes());
        let texts = [
            Some(&self.username),
            Some(&self.credential),
            Some(&self.client),
            Some(&self.endpoint),
            Some(&self.method),
            self.feed.as_ref(),
            self.read_columns.as_ref(),
        ];
        for text in texts {
            match text {
                Some(text) => {
                    hash.update((text.len() as u64).to_be_bytes());
                    hash.update(text.as_bytes());
                }
                None => hash.update(u64::MAX.to_be_bytes()),
            }
        }
        hex::encode(&hash.finalize()[..16])
    }

    /// `access`'s row, its key put back.
    fn join(self, mut access: Access) -> Counted {
        let minute_key = self.digest();
        if !self.username.is_empty() {
            access.endpoint = self.endpoint;
            access.method = self.method;
        }
        access.at = chrono::DateTime::from_timestamp(self.minute * 60, 0)
            .map_or(access.at, |at| at.naive_utc());
        access.username = self.username;
        access.credential = self.credential;
        access.client = self.client;
        access.feed = self.feed;
        access.status = self.status;
        access.read_columns = self.read_columns;
        Counted { access, minute_key }
    }
}

/// New keys one user's requests may open in a minute. Past it, a new key's
/// feed, columns and client read `*`: a token naming a new feed (or column
/// set) each time costs a few rows a minute, not a row a request, and its
/// requests are counted all the same.
const KEYS_PER_USER: u32 = 256;

/// Requests counted per minute and key, until written.
#[derive(Default)]
struct Minutes {
    /// The keys each user opened, by minute.
    opened: HashMap<(i64, String), u32>,
    /// The numbers of each key's requests, in the first one's row, and
    /// when it came (rows are written in that order, oldest first).
    rows: HashMap<Key, (u64, Access)>,
    came: u64,
    /// The clients whose refusals are counted apart, by minute.
    clients: HashMap<i64, HashSet<String>>,
}

impl Minutes {
    fn add(&mut self, mut access: Access) {
        let minute = access.at.and_utc().timestamp().div_euclid(60);
        if access.username.is_empty() {
            if let Ok(ip) = access.client.parse::<std::net::IpAddr>() {
                access.client = crate::net::counted_as(ip).to_string();
            }
            let apart = self.clients.entry(minute).or_default();
            if !apart.contains(&access.client) {
                if apart.len() < CLIENTS {
                    apart.insert(access.client.clone());
                } else {
                    access.client = "*".into();
                }
            }
        }
        let mut key = Key::take(&mut access, minute);
        if !key.username.is_empty() && !self.rows.contains_key(&key) {
            let opened = self.opened.entry((minute, key.username.clone())).or_default();
            if *opened < KEYS_PER_USER {
                *opened += 1;
            } else {
                let star = || Some("*".to_owned());
                key.feed = key.feed.and(star());
                key.read_columns = key.read_columns.and(star());
                key.client = "*".into();
            }
        }
        match self.rows.get_mut(&key) {
            Some((_, row)) => add_into(row, &access),
            None => {
                self.came += 1;
                self.rows.insert(key, (self.came, access));
            }
        }
    }

    /// The rows counted so far, to be added into the table's.
    fn take(&mut self) -> Vec<Counted> {
        let minute = chrono::Utc::now().timestamp().div_euclid(60);
        self.clients.retain(|&m, _| m >= minute - 1);
        self.opened.retain(|&(m, _), _| m >= minute - 1);
        let mut rows: Vec<_> = self.rows.drain().collect();
        rows.sort_unstable_by_key(|(_, (came, _))| *came);
        rows.into_iter().map(|(key, (_, access))| key.join(access)).collect()
    }
}

/// Adds `more`'s numbers into `row` (the same key's): the SQL of `add_up`
/// does the same with the table's rows.
fn add_into(row: &mut Access, more: &Access) {
    row.requests = row.requests.saturating_add(more.requests);
    row.bytes_in = row.bytes_in.saturating_add(more.bytes_in);
    row.bytes_out = row.bytes_out.saturating_add(more.bytes_out);
    row.duration_ms += more.duration_ms;
    row.duration_max_ms = row.duration_max_ms.max(more.duration_max_ms);
    row.request_id = None;
    row.read_from = row.read_from.zip(more.read_from).map(|(a, b)| a.min(b));
    row.read_to = row.read_to.zip(more.read_to).map(|(a, b)| a.max(b));
    for (kept, seen) in [(&mut row.endpoint, &more.endpoint), (&mut row.method, &more.method)] {
        if kept != seen {
            *kept = "*".into();
        }
    }
}

/// One minute's row, as added into the table.
#[derive(Insertable)]
#[diesel(table_name = schema::access_log)]
struct Counted {
    #[diesel(embed)]
    access: Access,
    minute_key: String,
}

/// Statements of at most 256 rows (SQLite's bound parameters stay far
/// under its limit).
const ROWS_A_STATEMENT: usize = 256;

fn insert(conn: &mut crate::db::DbConnection, rows: &[Access]) -> Result<usize, DbError> {
    let mut written = 0;
    for chunk in rows.chunks(ROWS_A_STATEMENT) {
        let insert = diesel::insert_into(schema::access_log::table).values(chunk);
        written += crate::on_engine!(conn, |c| insert.execute(c))?;
    }
    Ok(written)
}

/// Adds `rows` into the table's rows of the same keys, making those that
/// are not there. Two statements a batch of rows, on both engines: an
/// update of the rows there (answering which), then an upsert of the
/// others. An upsert (`INSERT … ON CONFLICT DO UPDATE`) alone would draw a
/// new id for every row it updates, on both engines: ids would stop
/// counting the rows, which `rows` needs. The upsert adds into a row that
/// another replica made since the update (drawing an id in vain then
/// only); an insert of the rows not there would lose those counts.
fn add_up(conn: &mut crate::db::DbConnection, rows: &[Counted]) -> Result<usize, DbError> {
    let mut written = 0;
    for chunk in rows.chunks(ROWS_A_STATEMENT) {
        let update = AddUp { rows: chunk.iter().collect(), insert: false };
        let updated: Vec<String> = crate::on_engine!(&mut *conn, |c| update.load::<String>(c))?;
        written += updated.len();
        let updated: HashSet<&str> = updated.iter().map(String::as_str).collect();
        let fresh: Vec<&Counted> =
            chunk.iter().filter(|row| !updated.contains(row.minute_key.as_str())).collect();
        if !fresh.is_empty() {
            let insert = AddUp { rows: fresh, insert: true };
            written += crate::on_engine!(&mut *conn, |c| insert.execute(c))?;
        }
    }
    Ok(written)
}

/// One of `add_up`'s statements for a batch of rows: the update, or the
/// upsert. Written by hand: diesel has no `UPDATE … FROM (VALUES …)`.
struct AddUp<'a> {
    rows: Vec<&'a Counted>,
    insert: bool,
}

/// The update answers the keys of the rows it updated.
impl diesel::query_builder::Query for AddUp<'_> {
    type SqlType = diesel::sql_types::Text;
}

/// `Counted`'s columns in the order `AddUp` binds them: a `VALUES` list's
/// are `v.column1` … on both engines.
const COLUMNS: [&str; 18] = [
    "minute_key",
    "at",
    "username",
    "credential",
    "client",
    "endpoint",
    "method",
    "feed",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "requests",
    "request_id",
    "read_columns",
    "duration_max_ms",
    "read_from",
    "read_to",
];

/// How a row of the table takes in another's numbers (`new` names the
/// other's columns); `add_into` does the same in memory. `CASE` rather than
/// `GREATEST` (PostgreSQL) or `max` (SQLite): both engines read it.
fn merge(new: impl Fn(&str) -> String) -> String {
    let [requests, bytes_in, bytes_out, duration, longest, from, to, endpoint, method] = [
        "requests",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "duration_max_ms",
        "read_from",
        "read_to",
        "endpoint",
        "method",
    ]
    .map(new);
    format!(
        "requests = access_log.requests + {requests}, \
         bytes_in = access_log.bytes_in + {bytes_in}, \
         bytes_out = access_log.bytes_out + {bytes_out}, \
         duration_ms = access_log.duration_ms + {duration}, \
         duration_max_ms = CASE WHEN {longest} > access_log.duration_max_ms \
             THEN {longest} ELSE access_log.duration_max_ms END, \
         read_from = CASE WHEN {from} < access_log.read_from \
             THEN {from} ELSE access_log.read_from END, \
         read_to = CASE WHEN {to} IS NULL OR access_log.read_to IS NULL THEN NULL \
             WHEN {to} > access_log.read_to THEN {to} ELSE access_log.read_to END, \
         endpoint = CASE WHEN {endpoint} = access_log.endpoint \
             THEN access_log.endpoint ELSE '*' END, \
         method = CASE WHEN {method} = access_log.method \
             THEN access_log.method ELSE '*' END, \
         request_id = NULL"
    )
}

/// `v.columnN` of a `VALUES` list for the column `name`.
fn listed(name: &str) -> String {
    let n = COLUMNS.iter().position(|c| *c == name).map_or(0, |i| i + 1);
    format!("v.column{n}")
}

impl diesel::query_builder::QueryId for AddUp<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Conn> RunQueryDsl<Conn> for AddUp<'_> {}

impl<DB> diesel::query_builder::QueryFragment<DB> for AddUp<'_>
where
    DB: diesel::backend::Backend,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    chrono::NaiveDateTime: diesel::serialize::ToSql<diesel::sql_types::Timestamp, DB>,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    f64: diesel::serialize::ToSql<diesel::sql_types::Double, DB>,
    DB: diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Timestamp>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Integer>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Double>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text, Timestamp};
        out.unsafe_to_cache_prepared();
        // Either statement is `… FROM (VALUES (…), …) AS v …`.
        // `UPDATE … FROM (VALUES (…), …) AS v …` or `INSERT … VALUES (…), …
        // ON CONFLICT …`.
        let (before, after) = if self.insert {
            let before = format!("INSERT INTO access_log ({}) VALUES ", COLUMNS.join(", "));
            let after = format!(
                " ON CONFLICT (minute_key) WHERE minute_key IS NOT NULL DO UPDATE SET {}",
                merge(|name| format!("excluded.{name}"))
            );
            (before, after)
        } else {
            let before = format!("UPDATE access_log SET {} FROM (VALUES ", merge(listed));
            let after = ") AS v WHERE access_log.minute_key = v.column1 RETURNING minute_key";
            (before, after.to_owned())
        };
        out.push_sql(&before);
        // Each row's fields in `COLUMNS`' order.
        for (i, row) in self.rows.iter().enumerate() {
            let a = &row.access;
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(&row.minute_key)?;
            out.push_sql(", ");
            out.push_bind_param::<Timestamp, _>(&a.at)?;
            for text in [&a.username, &a.credential, &a.client, &a.endpoint, &a.method] {
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(text)?;
            }
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&a.feed)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&a.status)?;
            for number in [&a.bytes_in, &a.bytes_out] {
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(number)?;
            }
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&a.duration_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&a.requests)?;
            for text in [&a.request_id, &a.read_columns] {
                out.push_sql(", ");
                out.push_bind_param::<Nullable<Text>, _>(text)?;
            }
            out.push_sql(", ");
            out.push_bind_param::<Double, _>(&a.duration_max_ms)?;
            for number in [&a.read_from, &a.read_to] {
                out.push_sql(", ");
                out.push_bind_param::<Nullable<BigInt>, _>(number)?;
            }
            out.push_sql(")");
        }
        out.push_sql(&after);
        Ok(())
    }
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
    pub detail: Detail,
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
        let last: Option<i64> = access_log
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
/// and the writer draws no id it does not use): no count of millions of
/// rows every minute. An estimate from above: on PostgreSQL a transaction
/// rolled back keeps the ids it drew, so `over_budget` counts.
pub fn rows(conn: &mut crate::db::DbConnection) -> Result<i64, DbError> {
    use diesel::dsl::{max, min};
    use schema::access_log::dsl::{access_log, id};
    let (first, last): (Option<i64>, Option<i64>) =
        access_log.select((min(id), max(id))).first(conn)?;
    Ok(match (first, last) {
        (Some(first), Some(last)) => last - first + 1,
        _ => 0,
    })
}

/// How many rows are past `max_rows`: counted, never estimated, once the
/// estimate says there may be some (a row is never purged for an id that
/// was drawn in vain).
pub fn over_budget(conn: &mut crate::db::DbConnection, max_rows: u64) -> Result<i64, DbError> {
    let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
    if rows(conn)? <= max_rows {
        return Ok(0);
    }
    let counted: i64 = schema::access_log::table.count().get_result(conn)?;
    Ok((counted - max_rows).max(0))
}

/// Deletes the `n` oldest rows (at most a batch); answers how many.
pub fn purge_oldest(conn: &mut crate::db::DbConnection, n: i64) -> Result<usize, DbError> {
    use schema::access_log::dsl::{access_log, id};
    let n = n.min(PURGE_BATCH);
    if n <= 0 {
        return Ok(0);
    }
    let last: Option<i64> =
        access_log.select(id).order(id.asc()).offset(n - 1).first(conn).optional()?;
    let Some(last) = last else {
        return Ok(diesel::delete(access_log).execute(conn)?);
    };
    Ok(diesel::delete(access_log.filter(id.le(last))).execute(conn)?)
}

/// Deletes the oldest rows past `max_rows`, at most a batch a call;
/// answers how many (0 when within the budget).
pub fn purge_over_budget(
    conn: &mut crate::db::DbConnection,
    max_rows: u64,
) -> Result<usize, DbError> {
    let over = over_budget(conn, max_rows)?;
    purge_oldest(conn, over)
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
        // What is over the budget now, counted once: rows that come
        // meanwhile wait for the next minute, so that the purge ends under
        // any load.
        if count.unsigned_abs() <= max_rows {
            continue;
        }
        let Ok(over) = db::run(&pool, move |conn| over_budget(conn, max_rows)).await else {
            continue;
        };
        let mut purged = 0;
        while purged < over {
            let left = over - purged;
            match db::run(&pool, move |conn| purge_oldest(conn, left)).await {
                Ok(0) => break,
                Ok(deleted) => purged += deleted as i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(username: &str, feed: &str, second: i64) -> Access {
        Access {
            at: chrono::DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap().naive_utc(),
            username: username.into(),
            credential: if username.is_empty() { String::new() } else { "abcd1234".into() },
            client: "192.0.2.7".into(),
            endpoint: "data".into(),
            method: "GET".into(),
            feed: Some(feed.into()),
            status: 200,
            bytes_in: 0,
            bytes_out: 100 + second,
            duration_ms: 1.0 + second as f64,
            requests: 1,
            request_id: Some(format!("id-{second}")),
            read_columns: Some("x".into()),
            duration_max_ms: 1.0 + second as f64,
            read_from: Some(second),
            read_to: Some(second + 10),
        }
    }

    #[test]
    fn a_minutes_requests_of_one_key_are_one_row_that_adds_them_up() {
        let mut minutes = Minutes::default();
        // 1_800_000_000 is a minute's first second: 0..59 one minute, 60 the next.
        for second in [0, 30, 59, 60] {
            minutes.add(request("alice", "fa", second));
        }
        minutes.add(request("alice", "fb", 1));
        minutes.add(request("bob", "fa", 2));
        let rows = minutes.take();
        let counts: Vec<_> = rows
            .iter()
            .map(|c| (c.access.username.as_str(), c.access.feed.as_deref(), c.access.requests))
            .collect();
        // In the order their first request came.
        assert_eq!(
            counts,
            [
                ("alice", Some("fa"), 3),
                ("alice", Some("fa"), 1),
                ("alice", Some("fb"), 1),
                ("bob", Some("fa"), 1)
            ]
        );
        let first = &rows[0].access;
        assert_eq!(first.bytes_out, 100 + 130 + 159);
        assert_eq!((first.duration_ms, first.duration_max_ms), (1.0 + 31.0 + 60.0, 60.0));
        assert_eq!((first.read_from, first.read_to), (Some(0), Some(69)));
        assert_eq!(first.request_id, None, "several requests have no one id");
        assert_eq!(first.at.and_utc().timestamp(), 1_800_000_000);
        assert_eq!(rows[2].access.request_id.as_deref(), Some("id-1"), "one request keeps it");
        assert_eq!(rows[1].access.at.and_utc().timestamp(), 1_800_000_060);
        let keys: std::collections::HashSet<_> = rows.iter().map(|c| &c.minute_key).collect();
        assert_eq!(keys.len(), 4);
        assert!(minutes.take().is_empty());
    }

    #[test]
    fn refusals_are_counted_per_client_whatever_their_endpoint_and_clients_are_bounded() {
        let mut minutes = Minutes::default();
        let mut other = request("", "fa", 1);
        other.endpoint = "col".into();
        minutes.add(request("", "fa", 0));
        minutes.add(other);
        for i in 0..(CLIENTS + 10) {
            let mut from = request("", "fa", 2);
            from.client = format!("198.51.100.{i}");
            minutes.add(from);
        }
        let rows = minutes.take();
        let first = &rows[0].access;
        assert_eq!((first.requests, first.endpoint.as_str()), (2, "*"));
        assert_eq!(rows.len(), 1 + CLIENTS, "past the bound, clients count as one");
        let star = rows.iter().find(|c| c.access.client == "*").unwrap();
        assert_eq!(star.access.requests, 11);
    }

    #[test]
    fn one_users_new_keys_past_the_bound_are_counted_together() {
        let mut minutes = Minutes::default();
        for i in 0..(KEYS_PER_USER + 100) {
            minutes.add(request("alice", &format!("feed{i}"), 5));
        }
        minutes.add(request("bob", "fb", 5));
        let rows = minutes.take();
        assert_eq!(rows.len() as u32, KEYS_PER_USER + 2, "a row past the bound, and bob's");
        let total: i64 = rows.iter().map(|c| c.access.requests).sum();
        assert_eq!(total, i64::from(KEYS_PER_USER) + 101, "every request counted");
        let star = rows.iter().find(|c| c.access.feed.as_deref() == Some("*")).unwrap();
        assert_eq!((star.access.requests, star.access.client.as_str()), (100, "*"));
        assert!(
            rows.iter()
                .any(|c| c.access.username == "bob" && c.access.feed.as_deref() == Some("fb"))
        );
    }

    #[test]
    fn a_nul_never_reaches_the_database() {
        let mut pending = Pending::default();
        let mut access = request("al\0ice", "f\0", 0);
        access.read_columns = Some("x\0".into());
        pending.add(access, Detail::Requests, false);
        let kept = &pending.requests[0];
        assert_eq!(
            (kept.username.as_str(), kept.feed.as_deref()),
            ("al\u{fffd}ice", Some("f\u{fffd}"))
        );
        assert_eq!(kept.read_columns.as_deref(), Some("x\u{fffd}"));
    }

    /// What `refusing_37` wrote.
    static WRITTEN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

    /// A writer that the database refuses for any batch holding 37.
    fn refusing_37(_: &mut crate::db::DbConnection, rows: &[i32]) -> Result<usize, DbError> {
        if rows.contains(&37) {
            return Err(DbError::Config("37 refused".into()));
        }
        WRITTEN.lock().unwrap().extend_from_slice(rows);
        Ok(rows.len())
    }

    #[actix_web::test]
    async fn a_row_the_database_refuses_costs_itself_only() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(dir.path().join("db.sqlite3").to_str().unwrap()).unwrap();
        write_rows(&pool, (0..100).collect(), refusing_37).await;
        let mut written = WRITTEN.lock().unwrap().clone();
        written.sort_unstable();
        let expected: Vec<i32> = (0..100).filter(|n| *n != 37).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn keys_that_differ_have_digests_that_differ() {
        let key = |username: &str, feed: Option<&str>| Key {
            minute: 1,
            username: username.into(),
            credential: "c".into(),
            client: "a".into(),
            endpoint: "data".into(),
            method: "GET".into(),
            feed: feed.map(str::to_owned),
            status: 200,
            read_columns: None,
        };
        let digests = [
            key("ab", Some("c")).digest(),
            key("a", Some("bc")).digest(),
            key("abc", None).digest(),
            key("abc", Some("")).digest(),
        ];
        let distinct: std::collections::HashSet<_> = digests.iter().collect();
        assert_eq!(distinct.len(), 4, "{digests:?}");
        assert_eq!(key("ab", Some("c")).digest(), digests[0]);
        assert_eq!(digests[0].len(), 32);
    }
}

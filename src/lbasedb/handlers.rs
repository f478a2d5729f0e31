//! One handler per row of the upstream's API table. Each checks what would
//! make the `lbasedb` crate panic (a type mismatch, an unknown datatype, a
//! range that overflows) and answers 400 instead, before anything is written.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::web::{Json, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use base64::prelude::{BASE64_STANDARD, Engine as _};
use lbasedb::prelude::{Conn, Dataset, Datatype, Dataunit};
use serde::Deserialize;
use serde_json::json;

use super::datatype::{self, Form};
use super::error::LbError;
use super::files::FileBudget;
use super::query::{ColQuery, DataQuery, FeedQuery, NameQuery, RawQuery, parse_qs};
use super::scan::DatasetScan;
use crate::body::KeepUntilSent;
use crate::budget::{Budget, Share};

/// The upstream API version this server reproduces.
pub const API_VERSION: &str = "0.1.10";

/// What every handler works on: the storage, the per-feed write locks and
/// the server's limits, as the app holds them.
pub struct Store {
    db: web::Data<Conn>,
    /// Per-feed serialisation of writes: the storage crate's append reads
    /// the size, grows it and writes at the old end with no lock across the
    /// steps. None with `--unlocked` (the real server's behaviour, for tests).
    locks: web::Data<Option<crate::lock::InProcessLocks>>,
    limits: web::Data<crate::config::Limits>,
    /// The bytes all reads may hold at once.
    budget: web::Data<Budget>,
    /// The files the storage may keep open, and a lock taken by whatever
    /// adds one (a feed, a column), so that two cannot both take the last.
    files: web::Data<(FileBudget, tokio::sync::Mutex<()>)>,
    /// Where the storage's files are, for the room left on their disk.
    folder: web::Data<DataFolder>,
}

/// The storage's data folder.
pub struct DataFolder(pub std::path::PathBuf);

impl FromRequest for Store {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let data = || {
            Ok(Self {
                db: web::Data::extract(req).into_inner()?,
                locks: web::Data::extract(req).into_inner()?,
                limits: web::Data::extract(req).into_inner()?,
                budget: web::Data::extract(req).into_inner()?,
                files: web::Data::extract(req).into_inner()?,
                folder: web::Data::extract(req).into_inner()?,
            })
        };
        ready(data())
    }
}

/// The storage's own operations, called on the store.
impl std::ops::Deref for Store {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.db
    }
}

impl Store {
    /// Takes `feed`'s write lock; unbounded, so it only waits.
    async fn lock(&self, feed: &str) -> Result<Option<crate::lock::FeedGuard>, LbError> {
        match self.locks.as_ref() {
            Some(locks) => locks
                .lock(feed)
                .await
                .map(Some)
                .map_err(|err| LbError::new("resource busy", err.to_string())),
            None => Ok(None),
        }
    }

    /// Every answer is built whole in memory: a read past the limit is
    /// refused rather than allocated.
    fn check_read(&self, size: usize) -> Result<(), LbError> {
        if size as u64 > self.limits.max_rows_per_read {
            return Err(LbError::invalid_input(format!(
                "size {size} is over the limit of {} rows per read",
                self.limits.max_rows_per_read
            )));
        }
        Ok(())
    }

    /// A read of `size` rows of `cols` (repeats counted) in bytes, refused
    /// past `MAX_READ_BYTES` or for a column too wide to read, and else
    /// charged to the budget of bytes in flight, whose share the answer
    /// keeps until it is sent. Columns the feed does not have are left to
    /// the storage's own error.
    async fn charge_read(
        &self,
        feed: &str,
        size: usize,
        cols: &[String],
        form: Form,
    ) -> Result<Share, LbError> {
        let known = self.col_list(feed).await?;
        let known: Vec<(String, String)> =
            known.iter().map(|c| (c.get_name(), c.get_datatype())).collect();
        let named: Vec<(&str, &str)> = cols
            .iter()
            .filter_map(|name| known.iter().find(|(known, _)| known == name))
            .map(|(name, datatype)| (name.as_str(), datatype.as_str()))
            .collect();
        if let Some(refused) = datatype::refuse_read(size as u64, &named, form, &self.limits) {
            return Err(LbError::invalid_input(refused));
        }
        self.budget
            .take(None, datatype::read_cost(size as u64, &named, form))
            .await
            .map_err(|refused| LbError::busy(refused.to_string()))
    }

    /// Refuses a feed of `rows` rows whose columns' files (or a new one of
    /// `new_width`) would be larger than a file system takes: the storage
    /// records a size it could not give its files, and its reads of them
    /// then fail for good.
    async fn check_size(
        &self,
        feed: &str,
        rows: u64,
        new_width: Option<u64>,
    ) -> Result<(), LbError> {
        let widths: Vec<u64> = match new_width {
            Some(width) => vec![width],
            None => self
                .col_list(feed)
                .await?
                .iter()
                .filter_map(|c| datatype::width(&c.get_datatype()))
                .collect(),
        };
        match datatype::refuse_size(rows, widths) {
            Some(refused) => Err(LbError::invalid_input(refused)),
            None => Ok(()),
        }
    }

    /// Refuses an append of `rows` rows (every column's width each) that
    /// would take the disk into the `MIN_FREE_SPACE` kept free on the data
    /// folder's file system: the storage crate drops the errors of its
    /// writes to the columns, so on a full disk it would acknowledge rows
    /// it never wrote. (A larger size or a new column only make sparse
    /// files: they take no room until written.)
    async fn check_space(&self, feed: &str, rows: u64) -> Result<(), LbError> {
        let row: u64 = self
            .col_list(feed)
            .await?
            .iter()
            .filter_map(|c| datatype::width(&c.get_datatype()))
            .sum();
        let bytes = rows.saturating_mul(row);
        if bytes == 0 {
            return Ok(());
        }
        let Ok(stat) = rustix::fs::statvfs(&self.folder.0) else {
            return Ok(());
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let kept = self.limits.min_free_space;
        if free < bytes.saturating_add(kept) {
            return Err(LbError::no_space(format!(
                "the write needs {bytes} bytes; the data folder's disk has {free} free, and \
                 {kept} are kept free (MIN_FREE_SPACE)"
            )));
        }
        Ok(())
    }

    /// Refuses a request naming more columns than `MAX_READ_COLUMNS`.
    fn check_cols(&self, cols: &[String]) -> Result<(), LbError> {
        if cols.len() as u64 > self.limits.max_read_columns {
            return Err(LbError::invalid_input(format!(
                "{} columns named; a request names at most {} (MAX_READ_COLUMNS)",
                cols.len(),
                self.limits.max_read_columns
            )));
        }
        Ok(())
    }

    /// Refuses a new feed (`cols` 0) or column past the storage's file
    /// budget, or a column past `MAX_COLUMNS_PER_FEED`; the caller holds
    /// the guard while it adds it.
    async fn room_for(
        &self,
        feed: Option<&str>,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, LbError> {
        let guard = self.files.1.lock().await;
        let feeds = self.feed_list().await;
        let mut cols = 0u64;
        for item in &feeds {
            cols += self.col_list(&item.get_name()).await.map_or(0, |c| c.len() as u64);
        }
        let (new_feeds, new_cols) = match feed {
            Some(feed) => {
                let max = self.limits.max_columns_per_feed;
                if self.col_list(feed).await.map_or(0, |c| c.len() as u64) >= max {
                    return Err(LbError::invalid_input(format!(
                        "feed {feed} has {max} columns, the most a feed may have \
                         (MAX_COLUMNS_PER_FEED)"
                    )));
                }
                (0, 1)
            }
            None => (1, 0),
        };
        let budget = self.files.0;
        if let Some(why) = budget.refuse(feeds.len() as u64 + new_feeds, cols + new_cols) {
            return Err(LbError::invalid_input(format!("no room for another file: {why}")));
        }
        Ok(guard)
    }
}

/// An answer that keeps its share of the budget until it has been sent.
fn keeping(response: HttpResponse, share: Share) -> HttpResponse {
    response.map_body(|_, body| KeepUntilSent::new(body, share)).map_into_boxed_body()
}

type Answer = Result<HttpResponse, LbError>;

#[derive(Debug, Deserialize)]
pub struct NameBody {
    name: String,
}

/// The upstream reads `datatype` as optional and answers `param required`
/// without it.
#[derive(Debug, Deserialize)]
pub struct ColBody {
    name: String,
    datatype: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SizeBody {
    size: usize,
}

pub async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "version": API_VERSION }))
}

pub async fn feed_list(db: Store) -> HttpResponse {
    let mut names: Vec<String> = db.feed_list().await.iter().map(|f| f.get_name()).collect();
    names.sort();
    let items: Vec<_> = names.into_iter().map(|name| json!({ "name": name })).collect();
    HttpResponse::Ok().json(items)
}

/// A name longer than a file system takes would be listed before its file
/// fails, and the storage would then refuse to open at all.
fn check_name(name: &str) -> Result<(), LbError> {
    if super::names::is_too_long(name) {
        return Err(LbError::invalid_input(format!(
            "name longer than {} bytes",
            super::names::MAX_NAME_LEN
        )));
    }
    Ok(())
}

pub async fn feed_add(db: Store, body: Json<NameBody>) -> Answer {
    check_name(&body.name)?;
    let _room = db.room_for(None).await?;
    db.feed_add(&body.name).await?;
    Ok(HttpResponse::Created().finish())
}

pub async fn feed_rename(db: Store, query: Query<NameQuery>, body: Json<NameBody>) -> Answer {
    check_name(&body.name)?;
    let _lock = db.lock(&query.name).await?;
    db.feed_rename(&query.name, &body.name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn feed_remove(db: Store, query: Query<NameQuery>) -> Answer {
    let _lock = db.lock(&query.name).await?;
    db.feed_remove(&query.name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn col_list(db: Store, query: Query<FeedQuery>) -> Answer {
    let mut cols = db.col_list(&query.feed).await?;
    cols.sort_by_key(|c| c.get_name());
    // A struct, not `json!`: the upstream writes "name" before "datatype".
    #[derive(serde::Serialize)]
    struct Col {
        name: String,
        datatype: String,
    }
    let items: Vec<Col> =
        cols.iter().map(|c| Col { name: c.get_name(), datatype: c.get_datatype() }).collect();
    Ok(HttpResponse::Ok().json(items))
}

pub async fn col_add(db: Store, query: Query<FeedQuery>, body: Json<ColBody>) -> Answer {
    let datatype = required(body.datatype.as_deref(), "datatype")?;
    // The crate unwraps the parse (the upstream's worker panics here), a
    // zero-sized type would divide by zero on the first write, and a huge
    // one abort the process on the first read.
    if let Some(refused) = datatype::refuse_new_column(datatype, &db.limits) {
        return Err(LbError::invalid_input(refused));
    }
    check_name(&body.name)?;
    let _lock = db.lock(&query.feed).await?;
    // An unknown feed is the storage's own error, as upstream.
    let rows = db.size_get(&query.feed).await? as u64;
    db.check_size(&query.feed, rows, datatype::width(datatype)).await?;
    let _room = db.room_for(Some(&query.feed)).await?;
    db.col_add(&query.feed, &body.name, datatype).await?;
    Ok(HttpResponse::Created().finish())
}

pub async fn col_rename(db: Store, query: Query<ColQuery>, body: Json<NameBody>) -> Answer {
    let name = required(query.name.as_deref(), "name")?;
    check_name(&body.name)?;
    let _lock = db.lock(&query.feed).await?;
    db.col_rename(&query.feed, name, &body.name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn col_remove(db: Store, query: Query<ColQuery>) -> Answer {
    let name = required(query.name.as_deref(), "name")?;
    let _lock = db.lock(&query.feed).await?;
    db.col_remove(&query.feed, name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn size_get(db: Store, query: Query<FeedQuery>) -> Answer {
    let size = db.size_get(&query.feed).await?;
    Ok(HttpResponse::Ok().json(json!({ "size": size })))
}

pub async fn size_set(db: Store, query: Query<FeedQuery>, body: Json<SizeBody>) -> Answer {
    if body.size as u64 > db.limits.max_feed_rows {
        return Err(LbError::invalid_input(format!(
            "size {} is over the limit of {} rows per feed",
            body.size, db.limits.max_feed_rows
        )));
    }
    let _lock = db.lock(&query.feed).await?;
    db.check_size(&query.feed, body.size as u64, None).await?;
    db.size_set(&query.feed, body.size).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn data_query(req: &HttpRequest) -> Result<DataQuery, LbError> {
    parse_qs(req.query_string()).map_err(LbError::query)
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, LbError> {
    value.ok_or_else(|| LbError::param_required(name))
}

/// The crate compares `ix + size` unchecked: an overflow would panic.
async fn check_range(db: &Conn, feed: &str, ix: usize, size: usize) -> Result<(), LbError> {
    let len = db.size_get(feed).await?;
    match ix.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(LbError::out_of_range(end)),
        None => Err(LbError::out_of_range(format!("{ix}+{size}"))),
    }
}

/// The crate unwraps the conversion of every value to its column's type, so
/// a mismatch (an integer for a Float64, bad Base64) must be refused first.
async fn check_dataset(db: &Conn, feed: &str, ds: &Dataset) -> Result<usize, LbError> {
    let mut rows = None;
    for series in ds.values() {
        if *rows.get_or_insert(series.len()) != series.len() {
            return Err(LbError::invalid_data("columns differ in length"));
        }
    }
    for col in db.col_list(feed).await? {
        let name = col.get_name();
        let Some(series) = ds.get(&name) else {
            continue;
        };
        if let Some(bad) = series.iter().position(|unit| !fits(&col.datatype, unit)) {
            return Err(LbError::invalid_data(format!(
                "{name}[{bad}]: not a {} value",
                col.get_datatype()
            )));
        }
    }
    Ok(rows.unwrap_or(0))
}

fn fits(datatype: &Datatype, unit: &Dataunit) -> bool {
    match (datatype, unit) {
        (Datatype::Int64 | Datatype::Int32, Dataunit::I(_)) => true,
        (Datatype::Float64 | Datatype::Float32, Dataunit::F(_)) => true,
        (Datatype::Bytes(_) | Datatype::Blob, Dataunit::S(s)) => BASE64_STANDARD.decode(s).is_ok(),
        (Datatype::String(_) | Datatype::Text, Dataunit::S(_)) => true,
        _ => false,
    }
}

pub async fn data_get(db: Store, req: HttpRequest) -> Answer {
    let query = data_query(&req)?;
    let ix = required(query.ix, "ix")?;
    let size = required(query.size, "size")?;
    db.check_read(size)?;
    let cols = query.col.unwrap_or_default();
    db.check_cols(&cols)?;
    check_range(&db, &query.feed, ix, size).await?;
    let share = db.charge_read(&query.feed, size, &cols, Form::Json).await?;
    let ds = db.data_get(&query.feed, ix, size, &cols).await?;
    Ok(keeping(HttpResponse::Ok().json(InOrder { ds: &ds, cols: &cols }), share))
}

/// A dataset serialised with its columns in the order they were asked for.
/// The upstream's order is a hash map's (it varies from call to call); a
/// fixed one is still the upstream's answer, and makes answers comparable.
struct InOrder<'a> {
    ds: &'a Dataset,
    cols: &'a [String],
}

impl serde::Serialize for InOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seen = std::collections::HashSet::new();
        serializer.collect_map(
            self.cols
                .iter()
                .filter(|col| seen.insert(col.as_str()))
                .filter_map(|col| self.ds.get(col).map(|series| (col, series))),
        )
    }
}

// The upstream reads the query of `/data` writes with the plain form
// decoder (`web::Query`), not `serde_qs` as for `GET /data`.
/// The largest JSON body a `/data` write may have (what `web::JsonConfig`
/// is given), for `Written`.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimit(pub usize);

/// A `/data` write's dataset, read as `web::Json` reads it (its content
/// type rule, its limit, its errors, word for word), but counted as it
/// arrives and refused past `MAX_WRITE_BYTES` before it is parsed: a body
/// of tiny values (`""` for a `Bytes[N]` column, `0` for any) would make
/// the storage build many times its size.
pub struct Written(Dataset);

impl std::ops::Deref for Written {
    type Target = Dataset;

    fn deref(&self) -> &Dataset {
        &self.0
    }
}

impl FromRequest for Written {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            use actix_web::HttpMessage;
            use actix_web::error::JsonPayloadError;
            use futures_util::StreamExt;
            let json = match req.mime_type() {
                Ok(Some(mime)) => {
                    mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json")
                }
                _ => false,
            };
            if !json {
                return Err(JsonPayloadError::ContentType.into());
            }
            let limit = req.app_data::<web::Data<JsonLimit>>().map_or(usize::MAX, |l| l.0);
            let length = req
                .headers()
                .get(actix_web::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(length) = length.filter(|length| *length > limit) {
                return Err(JsonPayloadError::OverflowKnownLength { length, limit }.into());
            }
            let mut body = web::BytesMut::new();
            let mut scan = DatasetScan::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(JsonPayloadError::Payload)?;
                if body.len() + chunk.len() > limit {
                    return Err(JsonPayloadError::Overflow { limit }.into());
                }
                scan.feed(&chunk);
                body.extend_from_slice(&chunk);
            }
            if scan.too_many_keys() {
                let most = super::scan::MAX_KEYS;
                return Err(
                    LbError::invalid_input(format!("A dataset names at most {most} keys")).into()
                );
            }
            let cost = write_cost(&req, &scan).await;
            let limits = req.app_data::<web::Data<crate::config::Limits>>();
            if let Some(refused) = limits.and_then(|l| datatype::refuse_write(cost, l)) {
                return Err(LbError::invalid_input(refused).into());
            }
            serde_json::from_slice(&body)
                .map(Written)
                .map_err(|err| JsonPayloadError::Deserialize(err).into())
        })
    }
}

/// What a counted `/data` write costs the storage: a record per value, and
/// the rows of the columns a PUT zeroes (those it does not name).
async fn write_cost(req: &HttpRequest, scan: &DatasetScan) -> u64 {
    let feed = super::query::parse_form::<DataQuery>(req.query_string()).ok().map(|q| q.feed);
    let cols = match (req.app_data::<web::Data<Conn>>(), feed) {
        (Some(db), Some(feed)) => db.col_list(&feed).await.unwrap_or_default(),
        _ => Vec::new(),
    };
    let widths: Vec<(String, u64)> = cols
        .iter()
        .map(|c| (c.get_name(), datatype::width(&c.get_datatype()).unwrap_or(0)))
        .collect();
    let zeroes_others = req.method() == actix_web::http::Method::PUT;
    super::scan::write_cost(scan, &widths, zeroes_others)
}

pub async fn data_push(db: Store, query: Query<DataQuery>, ds: Written) -> Answer {
    let _lock = db.lock(&query.feed).await?;
    let rows = check_dataset(&db, &query.feed, &ds).await? as u64;
    let size = db.size_get(&query.feed).await? as u64;
    db.check_size(&query.feed, size.saturating_add(rows), None).await?;
    db.check_space(&query.feed, rows).await?;
    db.data_push(&query.feed, &ds).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT` overwrites from `ix` and zeroes the columns not given; `PATCH`
/// keeps them.
#[derive(Clone, Copy)]
enum Overwrite {
    Save,
    Patch,
}

pub async fn data_save(db: Store, query: Query<DataQuery>, ds: Written) -> Answer {
    data_overwrite(db, query, ds, Overwrite::Save).await
}

pub async fn data_patch(db: Store, query: Query<DataQuery>, ds: Written) -> Answer {
    data_overwrite(db, query, ds, Overwrite::Patch).await
}

async fn data_overwrite(db: Store, query: Query<DataQuery>, ds: Written, how: Overwrite) -> Answer {
    let _lock = db.lock(&query.feed).await?;
    let ix = required(query.ix, "ix")?;
    let rows = check_dataset(&db, &query.feed, &ds).await?;
    check_range(&db, &query.feed, ix, rows).await?;
    match how {
        Overwrite::Save => db.data_save(&query.feed, ix, &ds).await?,
        Overwrite::Patch => db.data_patch(&query.feed, ix, &ds).await?,
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Columns and row size of a `/bytes` write; the body holds whole rows.
async fn bytes_rows(db: &Conn, feed: &str, cols: &[String], body: &[u8]) -> Result<usize, LbError> {
    db.size_get(feed).await?;
    let rowsize = db.rowsize(feed, cols).await?;
    if rowsize == 0 {
        return Err(LbError::param_required("col[]"));
    }
    Ok(body.len() / rowsize)
}

/// Raw column bytes. The upstream sends them with no type; this server
/// says what they are, so that no browser sniffs them into a page.
fn binary(bytes: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("x-content-type-options", "nosniff"))
        .body(bytes)
}

pub async fn bytes_get(db: Store, req: HttpRequest) -> Answer {
    let query = data_query(&req)?;
    let ix = required(query.ix, "ix")?;
    let size = required(query.size, "size")?;
    db.check_read(size)?;
    let cols = required(query.col, "col[]")?;
    db.check_cols(&cols)?;
    check_range(&db, &query.feed, ix, size).await?;
    let share = db.charge_read(&query.feed, size, &cols, Form::Binary).await?;
    let buffer = db.bytes_get(&query.feed, &cols, ix, size).await?;
    Ok(keeping(binary(buffer), share))
}

pub async fn bytes_push(db: Store, req: HttpRequest, body: web::Bytes) -> Answer {
    let query = data_query(&req)?;
    let _lock = db.lock(&query.feed).await?;
    let cols = required(query.col, "col[]")?;
    db.check_cols(&cols)?;
    let rows = bytes_rows(&db, &query.feed, &cols, &body).await? as u64;
    let size = db.size_get(&query.feed).await? as u64;
    db.check_size(&query.feed, size.saturating_add(rows), None).await?;
    db.check_space(&query.feed, rows).await?;
    db.bytes_push(&query.feed, &cols, &body).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn bytes_save(db: Store, req: HttpRequest, body: web::Bytes) -> Answer {
    bytes_overwrite(db, req, body, Overwrite::Save).await
}

pub async fn bytes_patch(db: Store, req: HttpRequest, body: web::Bytes) -> Answer {
    bytes_overwrite(db, req, body, Overwrite::Patch).await
}

async fn bytes_overwrite(db: Store, req: HttpRequest, body: web::Bytes, how: Overwrite) -> Answer {
    let query = data_query(&req)?;
    let _lock = db.lock(&query.feed).await?;
    let ix = required(query.ix, "ix")?;
    let cols = required(query.col, "col[]")?;
    db.check_cols(&cols)?;
    let rows = bytes_rows(&db, &query.feed, &cols, &body).await?;
    // Unlike /data, the crate does not check the range of a bytes write and
    // would grow the column files past the feed's size.
    check_range(&db, &query.feed, ix, rows).await?;
    if let Overwrite::Save = how {
        // The columns not named are zeroed, every row: as much again as
        // they are wide, built at once.
        let all: u64 = db
            .col_list(&query.feed)
            .await?
            .iter()
            .filter_map(|c| datatype::width(&c.get_datatype()))
            .sum();
        if let Some(refused) = datatype::refuse_write((rows as u64).saturating_mul(all), &db.limits)
        {
            return Err(LbError::invalid_input(refused));
        }
    }
    match how {
        Overwrite::Save => db.bytes_save(&query.feed, &cols, ix, &body).await?,
        Overwrite::Patch => db.bytes_patch(&query.feed, &cols, ix, &body).await?,
    }
    Ok(HttpResponse::NoContent().finish())
}

pub async fn bytes_reset(db: Store, req: HttpRequest) -> Answer {
    let query = data_query(&req)?;
    let _lock = db.lock(&query.feed).await?;
    let ix = required(query.ix, "ix")?;
    let size = required(query.size, "size")?;
    db.check_read(size)?;
    let cols = required(query.col, "col[]")?;
    db.check_cols(&cols)?;
    db.rowsize(&query.feed, &cols).await?;
    check_range(&db, &query.feed, ix, size).await?;
    // Zeroing allocates the rows it zeroes, as a read does.
    let _share = db.charge_read(&query.feed, size, &cols, Form::Binary).await?;
    db.bytes_reset(&query.feed, &cols, ix, size).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn raw_get(db: Store, query: Query<RawQuery>) -> Answer {
    let size = required(query.size, "size")?;
    db.check_read(size)?;
    check_range(&db, &query.feed, query.ix, size).await?;
    let col = std::slice::from_ref(&query.col);
    let share = db.charge_read(&query.feed, size, col, Form::Binary).await?;
    let block = db.raw_get(&query.feed, &query.col, query.ix, size).await?;
    Ok(keeping(binary(block), share))
}

pub async fn raw_set(db: Store, query: Query<RawQuery>, body: web::Bytes) -> Answer {
    let _lock = db.lock(&query.feed).await?;
    let rowsize = db.rowsize(&query.feed, std::slice::from_ref(&query.col)).await?;
    check_range(&db, &query.feed, query.ix, body.len() / rowsize.max(1)).await?;
    db.raw_set(&query.feed, &query.col, query.ix, &body).await?;
    Ok(HttpResponse::NoContent().finish())
}

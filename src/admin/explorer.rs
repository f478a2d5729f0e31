//! The data explorer: a feed's rows paged, its numeric columns plotted
//! (downsampled here, chunk by chunk, so that the browser gets a few
//! thousand points of a column of millions), a range downloaded as CSV or
//! as the upstream's raw bytes. Staff see it on the feed's admin page,
//! everyone on `/account/feeds/<name>/`. Every read is one the API would
//! allow the same user (`proxy::on_behalf`), made in chunks of at most
//! `CHUNK_BYTES`, and one row of the data-access audit.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::extract::Member;
use super::{AdminError, Layout, Reply, ok};
use crate::body::Kept;
use crate::budget::Share;
use crate::error::ApiError;
use crate::lbasedb::datatype;
use crate::lbasedb::names::is_valid_name;
use crate::lbasedb::perms::{VIEW_COL, VIEW_DATA, VIEW_FEED};
use crate::proxy::on_behalf::{OnBehalf, Reading, bytes_query};
use crate::proxy::upstream::{Col, Upstream};

/// Most bytes one read of the upstream asks for: what the explorer holds
/// of a feed at a time, however many rows a chart or a download covers.
const CHUNK_BYTES: u64 = 4 << 20;
/// Page sizes of the table.
const MIN_PER_PAGE: u64 = 10;
const MAX_PER_PAGE: u64 = 1000;
const DEFAULT_PER_PAGE: u64 = 50;
/// Most bytes of rows one page of the table reads: rows that wide are
/// shown fewer at a time (a page's HTML is a few times more).
const PAGE_BYTES: u64 = 1 << 20;
/// Bytes of a `Bytes[N]` or `String[N]` value a page shows (a download
/// has them whole).
const SHOWN_BYTES: usize = 64;
/// Points a chart's series has at most (two per pixel column of a wide
/// chart), and by default.
pub const MAX_POINTS: usize = 4000;
const DEFAULT_POINTS: usize = 1000;
/// Series one chart draws at most.
const MAX_SERIES: usize = 8;

/// What a feed's explorer knows of it: what the user may see of it.
pub struct Feed {
    pub name: String,
    pub size: u64,
    /// The columns the user may see (all of them, or those their grants
    /// name).
    pub cols: Vec<Col>,
}

impl Feed {
    /// The feed `name` as `on`'s user may explore it: `view_feed`,
    /// `view_col` and `view_data` on it (403 otherwise, in the audit; 404
    /// for no such feed).
    pub async fn open(on: &OnBehalf, name: &str) -> Result<Self, ApiError> {
        let (upstream, who) = (&on.upstream, &on.who);
        if !is_valid_name(name) {
            return Err(ApiError::NotFound);
        }
        let may = [VIEW_FEED, VIEW_COL, VIEW_DATA].iter().all(|p| who.has_feed_perm(p, name));
        if !may {
            return Err(on.refused_read(name, ApiError::permission_denied()));
        }
        let Some(mut cols) = upstream.cols(name).await else {
            return Err(ApiError::NotFound);
        };
        let size = upstream.size(name).await.ok_or(ApiError::NotFound)?;
        cols.retain(|col| who.shows_column(name, &col.name));
        Ok(Self { name: name.to_owned(), size, cols })
    }

    /// The columns named, in the order named: each must be one the user
    /// may see (a refusal is in the audit).
    fn pick<'a>(&'a self, on: &OnBehalf, names: &[String]) -> Result<Vec<&'a Col>, ApiError> {
        names
            .iter()
            .map(|name| {
                self.cols.iter().find(|c| &c.name == name).ok_or_else(|| {
                    let why = format!("No column {name:?} you may read in this feed.");
                    on.refused_read(&self.name, ApiError::BadRequest(why))
                })
            })
            .collect()
    }

    /// `from..to` within the feed (`to` past its end is its end); 400 for
    /// an empty range.
    fn range(&self, from: Option<u64>, to: Option<u64>) -> Result<(u64, u64), ApiError> {
        let from = from.unwrap_or(0);
        let to = to.unwrap_or(self.size).min(self.size);
        if from >= to {
            return Err(ApiError::BadRequest(format!(
                "No rows in {from}..{to}: the feed has {} rows.",
                self.size
            )));
        }
        Ok((from, to))
    }
}

/// How a value of a column is read from the upstream's bytes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int64,
    Int32,
    Float64,
    Float32,
    Bytes(usize),
    Text(usize),
}

impl Kind {
    fn of(datatype: &str) -> Option<Self> {
        let width = usize::try_from(datatype::width(datatype)?).ok()?;
        Some(match datatype {
            "Int64" => Self::Int64,
            "Int32" => Self::Int32,
            "Float64" => Self::Float64,
            "Float32" => Self::Float32,
            _ if datatype.starts_with("String[") => Self::Text(width),
            _ => Self::Bytes(width),
        })
    }

    fn width(self) -> usize {
        match self {
            Self::Int64 | Self::Float64 => 8,
            Self::Int32 | Self::Float32 => 4,
            Self::Bytes(width) | Self::Text(width) => width,
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Self::Int64 | Self::Int32 | Self::Float64 | Self::Float32)
    }

    /// A numeric value as a chart draws it (`Int64` past 2^53 rounded).
    fn number(self, raw: &[u8]) -> f64 {
        let le = |n: usize| -> [u8; 8] {
            let mut buf = [0; 8];
            buf[..n].copy_from_slice(&raw[..n]);
            buf
        };
        match self {
            Self::Int64 => i64::from_le_bytes(le(8)) as f64,
            Self::Float64 => f64::from_le_bytes(le(8)),
            Self::Int32 => f64::from(i32::from_le_bytes(le(4)[..4].try_into().unwrap_or_default())),
            Self::Float32 => {
                f64::from(f32::from_le_bytes(le(4)[..4].try_into().unwrap_or_default()))
            }
            Self::Bytes(_) | Self::Text(_) => f64::NAN,
        }
    }

    /// A value as text: numbers as the API's JSON writes them, bytes in
    /// `encoding`, a string with its padding cut and control characters
    /// escaped (the page escapes it for HTML; CSV quotes it).
    fn text(self, raw: &[u8], encoding: Encoding) -> String {
        let le4 = || raw[..4].try_into().unwrap_or_default();
        let le8 = || raw[..8].try_into().unwrap_or_default();
        match self {
            Self::Int64 => i64::from_le_bytes(le8()).to_string(),
            Self::Int32 => i32::from_le_bytes(le4()).to_string(),
            Self::Float64 => float(f64::from_le_bytes(le8())),
            Self::Float32 => float(f64::from(f32::from_le_bytes(le4()))),
            Self::Bytes(_) => match encoding {
                Encoding::Hex => hex::encode(raw),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(raw),
            },
            Self::Text(_) => {
                let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                String::from_utf8_lossy(&raw[..end])
                    .chars()
                    .flat_map(|c| match c.is_control() || is_bidi(c) {
                        true => c.escape_default().collect::<Vec<_>>(),
                        false => vec![c],
                    })
                    .collect()
            }
        }
    }
}

/// A character that reorders the text around it (U+202A to U+202E, U+2066
/// to U+2069): shown escaped, so that a value cannot pass for another.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A float as the shortest text that reads back the same (`1e300`, not
/// three hundred digits).
fn float(value: f64) -> String {
    match value.is_finite() {
        true => format!("{value:?}"),
        false => value.to_string(),
    }
}

/// How `Bytes[N]` values are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// Columns of a read with what decodes them, and where each starts in a
/// row's bytes (the upstream writes a chunk column after column).
struct RowLayout {
    cols: Vec<(Col, Kind)>,
    /// Each column's start in a row, the widths of those before it.
    starts: Vec<usize>,
    row_width: u64,
}

impl RowLayout {
    /// The layout of `cols`; refused when they cannot be read, or when one
    /// row of them is wider than a chunk (a wide column named many times):
    /// the explorer holds no more than a chunk of a read at a time.
    fn new(cols: Vec<&Col>) -> Result<Self, ApiError> {
        let cols = cols
            .into_iter()
            .map(|col| {
                Kind::of(&col.datatype).map(|kind| (col.clone(), kind)).ok_or_else(|| {
                    ApiError::BadRequest(format!("Column {} cannot be read.", col.name))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut starts = Vec::with_capacity(cols.len());
        let mut row_width = 0usize;
        for (_, kind) in &cols {
            starts.push(row_width);
            row_width = row_width.saturating_add(kind.width());
        }
        if row_width as u64 > CHUNK_BYTES {
            return Err(ApiError::TooLarge(format!(
                "A row of these columns is {row_width} bytes; the explorer reads rows of at \
                 most {CHUNK_BYTES} bytes (read it through the API)"
            )));
        }
        Ok(Self { cols, starts, row_width: (row_width as u64).max(1) })
    }

    /// Rows one chunk reads.
    fn chunk_rows(&self) -> u64 {
        (CHUNK_BYTES / self.row_width).max(1)
    }

    fn named(&self) -> Vec<(&str, &str)> {
        self.cols.iter().map(|(c, _)| (c.name.as_str(), c.datatype.as_str())).collect()
    }

    /// Column `k`'s bytes of row `i` of a chunk of `rows` rows.
    fn value<'b>(&self, chunk: &'b [u8], rows: usize, k: usize, i: usize) -> &'b [u8] {
        let width = self.cols[k].1.width();
        let start = self.starts[k] * rows + i * width;
        &chunk[start..start + width]
    }

    /// Reads rows `ix..ix + rows`: the bytes, and their share of the bytes
    /// in flight, to be held as long as they are.
    async fn read(
        &self,
        on: &OnBehalf,
        feed: &str,
        ix: u64,
        rows: u64,
    ) -> Result<(Bytes, Share), ApiError> {
        let (chunk, share) = on.chunk(feed, &self.named(), ix, rows).await?;
        if chunk.len() as u64 != rows * self.row_width {
            tracing::warn!(
                "feed {feed}: the upstream answered {} bytes for {rows} rows",
                chunk.len()
            );
            return Err(ApiError::UpstreamBroken);
        }
        Ok((chunk, share))
    }
}

/// A whole read, chunk by chunk: `on`'s reads of `layout` over
/// `from..to`, each handed to `each` with its first row and row count.
async fn each_chunk(
    on: &OnBehalf,
    feed: &str,
    layout: &RowLayout,
    (from, to): (u64, u64),
    mut each: impl FnMut(&[u8], u64, usize) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let step = layout.chunk_rows();
    let mut ix = from;
    while ix < to {
        let rows = step.min(to - ix);
        let (chunk, _share) = layout.read(on, feed, ix, rows).await?;
        each(&chunk, ix, rows as usize)?;
        ix += rows;
    }
    Ok(())
}

/// The upstream requests of a signed-in user's admin request (the
/// explorer's reads, the feed pages' changes).
pub fn on_behalf(staff: &super::Staff, upstream: Upstream) -> OnBehalf {
    OnBehalf {
        upstream,
        auth: staff.auth.clone(),
        who: staff.principal.clone(),
        req: staff.request().clone(),
    }
}

// ---- The table ----

#[derive(Debug, Default, Deserialize)]
pub struct TableQuery {
    /// The first row shown.
    ix: Option<u64>,
    /// Rows a page shows.
    per: Option<u64>,
    /// A row to go to: the page that starts with it.
    go: Option<u64>,
    bytes: Option<Encoding>,
}

/// A page of rows, with the links that page through the feed.
pub struct Table {
    /// Each column, and whether it holds numbers (aligned right).
    pub columns: Vec<(Col, bool)>,
    /// Whether a column holds bytes (the page offers their encodings).
    pub has_bytes: bool,
    /// Each row's index and values.
    pub rows: Vec<(u64, Vec<Cell>)>,
    pub ix: u64,
    pub per: u64,
    /// Whether the rows are too wide to show as many as asked.
    pub narrowed: bool,
    pub bytes: Encoding,
    pub first: Option<String>,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
    /// Why the rows are not shown (a grant on other rows, a column too
    /// wide...).
    pub refused: Option<String>,
}

pub struct Cell {
    pub text: String,
    pub numeric: bool,
}

impl Table {
    fn link(&self, ix: u64) -> String {
        let bytes = match self.bytes {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        };
        format!("?ix={ix}&per={}&bytes={bytes}#rows", self.per)
    }
}

/// The page of `feed` that `query` asks for, read as `on`'s user.
pub async fn table(on: &OnBehalf, feed: &Feed, query: &TableQuery) -> Table {
    let asked = query.per.unwrap_or(DEFAULT_PER_PAGE).clamp(MIN_PER_PAGE, MAX_PER_PAGE);
    let row_width: u64 = feed
        .cols
        .iter()
        .filter_map(|c| Kind::of(&c.datatype))
        .map(|kind| kind.width() as u64)
        .sum();
    let per = asked.min((PAGE_BYTES / row_width.max(1)).max(1));
    let last_page = feed.size.saturating_sub(1) / per * per;
    let ix = query.go.or(query.ix).unwrap_or(0).min(last_page);
    let mut table = Table {
        columns: feed
            .cols
            .iter()
            .map(|col| (col.clone(), Kind::of(&col.datatype).is_some_and(Kind::is_numeric)))
            .collect(),
        has_bytes: feed.cols.iter().any(|c| matches!(Kind::of(&c.datatype), Some(Kind::Bytes(_)))),
        rows: Vec::new(),
        ix,
        per,
        narrowed: per < asked,
        bytes: query.bytes.unwrap_or_default(),
        first: None,
        previous: None,
        next: None,
        last: None,
        refused: None,
    };
    if ix > 0 {
        table.first = Some(table.link(0));
        table.previous = Some(table.link(ix.saturating_sub(per)));
    }
    if ix + per < feed.size {
        table.next = Some(table.link(ix + per));
        table.last = Some(table.link(last_page));
    }
    if feed.size == 0 || feed.cols.is_empty() {
        return table;
    }
    match read_page(on, feed, ix, (ix + per).min(feed.size), table.bytes).await {
        Ok(rows) => table.rows = rows,
        // The page adds its own full stop.
        Err(err) => table.refused = Some(err.to_string().trim_end_matches('.').to_owned()),
    }
    table
}

async fn read_page(
    on: &OnBehalf,
    feed: &Feed,
    from: u64,
    to: u64,
    bytes: Encoding,
) -> Result<Vec<(u64, Vec<Cell>)>, ApiError> {
    let query = bytes_query(&feed.name, feed.cols.iter().map(|c| c.name.as_str()), from, to - from);
    // The API's checks first: their refusals say which limit.
    let mut reading = on.start_read(&query).await?;
    let layout = match RowLayout::new(feed.cols.iter().collect()) {
        Ok(layout) => layout,
        Err(err) => return Err(reading.failed(err)),
    };
    let mut rows = Vec::new();
    let read = each_chunk(on, &feed.name, &layout, (from, to), |chunk, ix, n| {
        reading.sent(chunk.len());
        for i in 0..n {
            let cells = (0..layout.cols.len())
                .map(|k| {
                    let kind = layout.cols[k].1;
                    let value = layout.value(chunk, n, k, i);
                    let mut text = kind.text(&value[..value.len().min(SHOWN_BYTES)], bytes);
                    if value.len() > SHOWN_BYTES {
                        text.push_str(&format!("… ({} bytes)", value.len()));
                    }
                    Cell { text, numeric: kind.is_numeric() }
                })
                .collect();
            rows.push((ix + i as u64, cells));
        }
        Ok(())
    })
    .await;
    reading.finish(read.as_ref().map_or_else(status_of, |_| StatusCode::OK));
    read.map(|()| rows)
}

fn status_of(err: &ApiError) -> StatusCode {
    actix_web::ResponseError::status_code(err)
}

// ---- The chart ----

#[derive(Debug, Default, Deserialize)]
pub struct ChartQuery {
    /// The columns drawn.
    #[serde(default)]
    y: Vec<String>,
    /// The column on the x axis; none (or empty): the row index.
    #[serde(default)]
    x: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    /// Most points each series has.
    points: Option<usize>,
}

/// What a chart draws: the points' rows and x values, and each series'
/// values at them (`null` for a bucket where a series has no number).
#[derive(Debug, Serialize)]
pub struct Chart {
    from: u64,
    to: u64,
    /// The x axis: a column's name, or `"index"`.
    x_name: String,
    /// Whether the rows were downsampled (min and max per bucket).
    downsampled: bool,
    rows: Vec<u64>,
    x: Vec<Option<f64>>,
    series: Vec<Series>,
    /// Milliseconds spent reading and downsampling.
    elapsed_ms: f64,
}

#[derive(Debug, Serialize)]
struct Series {
    name: String,
    values: Vec<Option<f64>>,
}

/// Min/max downsampling by row buckets: `buckets` runs of consecutive
/// rows, each giving two points (its first and last row's x) with each
/// series' extremes in the order they came, so a spike in any bucket is
/// drawn, at most `2 * buckets` points whatever the rows. With no more
/// rows than buckets each row is one point.
struct Downsampler {
    from: u64,
    rows: u64,
    buckets: u64,
    current: Option<Bucket>,
    out: Chart,
}

/// A row and its value.
type Point = (u64, f64);

struct Bucket {
    index: u64,
    first: (u64, f64),
    last: (u64, f64),
    /// Per series: its min and max with their rows.
    extremes: Vec<Option<(Point, Point)>>,
}

impl Downsampler {
    fn new(from: u64, to: u64, points: usize, series: Vec<String>, x_name: String) -> Self {
        let rows = to - from;
        let buckets = match rows <= points as u64 {
            true => rows,
            false => (points as u64 / 2).max(1),
        };
        let series = series.into_iter().map(|name| Series { name, values: Vec::new() }).collect();
        let out = Chart {
            from,
            to,
            x_name,
            downsampled: rows > buckets,
            rows: Vec::new(),
            x: Vec::new(),
            series,
            elapsed_ms: 0.0,
        };
        Self { from, rows, buckets, current: None, out }
    }

    fn add(&mut self, row: u64, x: f64, ys: impl Iterator<Item = f64>) {
        let index = u64::try_from(
            u128::from(row - self.from) * u128::from(self.buckets) / u128::from(self.rows),
        )
        .unwrap_or(u64::MAX);
        if self.current.as_ref().is_some_and(|b| b.index != index) {
            self.flush();
        }
        let count = self.out.series.len();
        let bucket = self.current.get_or_insert_with(|| Bucket {
            index,
            first: (row, x),
            last: (row, x),
            extremes: vec![None; count],
        });
        bucket.last = (row, x);
        for (extreme, y) in bucket.extremes.iter_mut().zip(ys) {
            if y.is_nan() {
                continue;
            }
            match extreme {
                None => *extreme = Some(((row, y), (row, y))),
                Some((min, max)) => {
                    if y < min.1 {
                        *min = (row, y);
                    }
                    if y > max.1 {
                        *max = (row, y);
                    }
                }
            }
        }
    }

    fn flush(&mut self) {
        let Some(bucket) = self.current.take() else {
            return;
        };
        let two = bucket.first.0 != bucket.last.0;
        let finite = |v: f64| v.is_finite().then_some(v);
        self.out.rows.push(bucket.first.0);
        self.out.x.push(finite(bucket.first.1));
        if two {
            self.out.rows.push(bucket.last.0);
            self.out.x.push(finite(bucket.last.1));
        }
        for (series, extreme) in self.out.series.iter_mut().zip(bucket.extremes) {
            let (a, b) = match extreme {
                Some((min, max)) if min.0 <= max.0 => (Some(min.1), Some(max.1)),
                Some((min, max)) => (Some(max.1), Some(min.1)),
                None => (None, None),
            };
            series.values.push(a.and_then(finite));
            if two {
                series.values.push(b.and_then(finite));
            }
        }
    }

    fn finish(mut self) -> Chart {
        self.flush();
        self.out
    }
}

/// `GET .../chart/?y=a&y=b[&x=t][&from=..&to=..][&points=..]`: the series
/// as JSON, downsampled to at most `points` points each.
pub async fn chart(
    member: Member,
    path: web::Path<String>,
    upstream: Upstream,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: ChartQuery = serde_html_form::from_str(req.query_string())
        .map_err(|err| ApiError::BadRequest(format!("Bad query: {err}.")))?;
    let on = on_behalf(&member.0, upstream);
    let feed = Feed::open(&on, &path).await?;
    if query.y.is_empty() || query.y.len() > MAX_SERIES {
        return Err(ApiError::BadRequest(format!("Name 1 to {MAX_SERIES} columns to draw (y).")));
    }
    let points = query.points.unwrap_or(DEFAULT_POINTS).clamp(2, MAX_POINTS);
    let (from, to) = feed.range(query.from, query.to)?;
    let x = query.x.filter(|x| !x.is_empty() && x != "index");
    let mut names: Vec<String> = x.iter().cloned().collect();
    names.extend(query.y.iter().cloned());
    let picked = feed.pick(&on, &names)?;
    if let Some(col) = picked.iter().find(|c| !Kind::of(&c.datatype).is_some_and(Kind::is_numeric))
    {
        return Err(ApiError::BadRequest(format!(
            "Column {} is {}: only numbers are drawn.",
            col.name, col.datatype
        )));
    }
    let started = Instant::now();
    // The API's checks first: their refusals say which limit.
    let reading = on
        .start_read(&bytes_query(&feed.name, names.iter().map(String::as_str), from, to - from))
        .await?;
    let layout = match RowLayout::new(picked) {
        Ok(layout) => layout,
        Err(err) => return Err(reading.failed(err)),
    };
    let x_name = x.clone().unwrap_or_else(|| "index".to_owned());
    let mut sampler = Downsampler::new(from, to, points, query.y.clone(), x_name);
    let offset = usize::from(x.is_some());
    let read = each_chunk(&on, &feed.name, &layout, (from, to), |chunk, ix, n| {
        let ys = layout.cols.len() - offset;
        let mut values = vec![0.0; ys];
        for i in 0..n {
            let row = ix + i as u64;
            let x = match offset {
                1 => layout.cols[0].1.number(layout.value(chunk, n, 0, i)),
                _ => row as f64,
            };
            for (k, value) in values.iter_mut().enumerate() {
                let col = k + offset;
                *value = layout.cols[col].1.number(layout.value(chunk, n, col, i));
            }
            sampler.add(row, x, values.iter().copied());
        }
        Ok(())
    })
    .await;
    let mut reading = reading;
    if let Err(err) = read {
        return Err(reading.failed(err));
    }
    let mut chart = sampler.finish();
    chart.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let body = serde_json::to_vec(&chart).map_err(|err| ApiError::Internal(err.into()))?;
    reading.sent(body.len());
    reading.finish(StatusCode::OK);
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

// ---- Downloads ----

#[derive(Debug, Default, Deserialize)]
pub struct DownloadQuery {
    #[serde(default)]
    col: Vec<String>,
    from: Option<u64>,
    to: Option<u64>,
    #[serde(default)]
    format: Format,
    bytes: Option<Encoding>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Csv,
    /// The upstream's `GET /bytes` answer: each column's raw bytes, column
    /// after column.
    Raw,
}

/// `GET .../download/?col=a&col=b&from=..&to=..&format=csv|raw`: rows of
/// the columns named (all the user may see by default), streamed chunk
/// by chunk; at most as many rows as one API read may (`MAX_ROWS_PER_READ`).
pub async fn download(
    member: Member,
    path: web::Path<String>,
    upstream: Upstream,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: DownloadQuery = serde_html_form::from_str(req.query_string())
        .map_err(|err| ApiError::BadRequest(format!("Bad query: {err}.")))?;
    let on = on_behalf(&member.0, upstream);
    let feed = Arc::new(Feed::open(&on, &path).await?);
    let names = match query.col.is_empty() {
        true => feed.cols.iter().map(|c| c.name.clone()).collect(),
        false => query.col.clone(),
    };
    if names.is_empty() {
        return Err(ApiError::BadRequest("The feed has no column you may read.".into()));
    }
    let (from, to) = feed.range(query.from, query.to)?;
    // Checked before anything is read: names the user may see, datatypes
    // the storage has, rows no wider than a chunk.
    let picked = feed.pick(&on, &names)?;
    let read_query = bytes_query(&feed.name, names.iter().map(String::as_str), from, to - from);
    // The API's checks first: their refusals say which limit.
    let reading = on.start_read(&read_query).await?;
    let layouts = match query.format {
        Format::Csv => RowLayout::new(picked).map(|layout| vec![layout]),
        Format::Raw => picked.into_iter().map(|col| RowLayout::new(vec![col])).collect(),
    };
    let layouts = match layouts {
        Ok(layouts) => layouts,
        Err(err) => return Err(reading.failed(err)),
    };
    let (content_type, extension) = match query.format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Raw => ("application/octet-stream", "bin"),
    };
    let filename = format!("{}-{from}-{to}.{extension}", feed.name);
    let download = Download {
        on,
        feed,
        names,
        layouts,
        from,
        to,
        format: query.format,
        bytes: query.bytes.unwrap_or_default(),
        reading: Some(reading),
        next: (0, from),
        pending: None,
        header: true,
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(futures_util::stream::unfold(download, Download::step)))
}

/// Most bytes of the answer one step of a download makes: a client that
/// reads slowly (or not at all) holds this much of the answer and the
/// chunk it comes from (that chunk within its user's share of the bytes
/// in flight), never a whole chunk's text; and a worker turns to its
/// other requests between steps.
const PIECE_BYTES: usize = 64 << 10;

/// A download under way: what is left to read.
struct Download {
    on: OnBehalf,
    feed: Arc<Feed>,
    names: Vec<String>,
    /// The columns read together: all of them (CSV), or one after the
    /// other (raw, as `GET /bytes` answers: column after column).
    layouts: Vec<RowLayout>,
    to: u64,
    from: u64,
    format: Format,
    bytes: Encoding,
    /// Taken when the download ends (its audit row says how).
    reading: Option<Reading>,
    /// Which of `layouts` and which row are read next.
    next: (usize, u64),
    /// The chunk being sent.
    pending: Option<Pending>,
    header: bool,
}

/// A chunk read and not yet all sent: its bytes, held within their share
/// of the bytes in flight, and how far it is sent (rows for CSV, bytes
/// raw).
struct Pending {
    chunk: Bytes,
    _share: Share,
    layout: usize,
    ix: u64,
    rows: usize,
    done: usize,
}

impl Download {
    async fn step(mut self) -> Option<(Result<Bytes, ApiError>, Self)> {
        let mut reading = self.reading.take()?;
        match self.piece().await {
            Ok(Some(piece)) => {
                reading.sent(piece.len());
                self.reading = Some(reading);
                Some((Ok(piece), self))
            }
            Ok(None) => {
                reading.finish(StatusCode::OK);
                None
            }
            Err(err) => {
                // The answer has begun: the client sees it cut.
                tracing::warn!("a download of feed {} stopped: {err}", self.feed.name);
                Some((Err(reading.failed(err)), self))
            }
        }
    }

    /// The next piece of the answer; none when all is sent.
    async fn piece(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.pending.is_none() {
            let (k, ix) = self.next;
            let Some(layout) = self.layouts.get(k) else {
                return Ok(None);
            };
            let rows = layout.chunk_rows().min(self.to - ix);
            let (chunk, share) = layout.read(&self.on, &self.feed.name, ix, rows).await?;
            self.next = match ix + rows < self.to {
                true => (k, ix + rows),
                false => (k + 1, self.from),
            };
            let rows = rows as usize;
            self.pending = Some(Pending { chunk, _share: share, layout: k, ix, rows, done: 0 });
        }
        let Self { pending: Some(pending), layouts, .. } = self else {
            return Ok(None);
        };
        let piece = match self.format {
            Format::Raw => {
                let end = (pending.done + PIECE_BYTES).min(pending.chunk.len());
                let piece = pending.chunk.slice(pending.done..end);
                pending.done = end;
                piece
            }
            Format::Csv => {
                let layout = &layouts[pending.layout];
                let mut csv = String::new();
                if std::mem::take(&mut self.header) {
                    csv.push_str("index");
                    for name in &self.names {
                        csv.push(',');
                        csv.push_str(&csv_field(name, true));
                    }
                    csv.push_str("\r\n");
                }
                while pending.done < pending.rows && csv.len() < PIECE_BYTES {
                    let i = pending.done;
                    csv.push_str(&(pending.ix + i as u64).to_string());
                    for (k, (_, kind)) in layout.cols.iter().enumerate() {
                        let value =
                            kind.text(layout.value(&pending.chunk, pending.rows, k, i), self.bytes);
                        csv.push(',');
                        csv.push_str(&csv_field(&value, matches!(kind, Kind::Text(_))));
                    }
                    csv.push_str("\r\n");
                    pending.done += 1;
                }
                Bytes::from(csv)
            }
        };
        let sent_all = match self.format {
            Format::Raw => pending.done == pending.chunk.len(),
            Format::Csv => pending.done == pending.rows,
        };
        if sent_all {
            self.pending = None;
        }
        Ok(Some(piece))
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line
/// break. A string (`is_text`) that a spreadsheet would take for a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is also
/// prefixed with `'`, which spreadsheets show as text (OWASP's advice; the
/// quotes alone are CSV's syntax and gone once the file is opened).
/// Numbers, hex and base64 are left as they are: they are data, and no
/// formula.
fn csv_field(text: &str, is_text: bool) -> std::borrow::Cow<'_, str> {
    let formula = is_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let special = formula || text.contains([',', '"', '\r', '\n']);
    match (special, formula) {
        (false, _) => text.into(),
        (true, false) => format!("\"{}\"", text.replace('"', "\"\"")).into(),
        (true, true) => format!("\"'{}\"", text.replace('"', "\"\"")).into(),
    }
}

// ---- Pages ----

/// What the explorer's part of a page shows: a feed as the user may see
/// it, a page of its rows, the columns a chart can draw, and where its
/// chart and downloads are served.
pub struct Explorer {
    pub feed: Feed,
    pub table: Table,
    pub numeric: Vec<String>,
    pub base: String,
}

impl Explorer {
    /// `name` explored by `on`'s user, the table at `query`'s page.
    pub async fn open(on: &OnBehalf, name: &str, query: &TableQuery) -> Result<Self, ApiError> {
        let feed = Feed::open(on, name).await?;
        Ok(Self::of(on, feed, query).await)
    }

    /// `feed`, as its user may see it, explored at `query`'s page.
    pub async fn of(on: &OnBehalf, feed: Feed, query: &TableQuery) -> Self {
        let table = table(on, &feed, query).await;
        let numeric = feed
            .cols
            .iter()
            .filter(|c| Kind::of(&c.datatype).is_some_and(Kind::is_numeric))
            .map(|c| c.name.clone())
            .collect();
        // One place serves every user's chart and downloads.
        let base = format!("{}feeds/{}/", super::registry::ACCOUNT, feed.name);
        Self { feed, table, numeric, base }
    }
}

#[derive(Template)]
#[template(path = "admin/explore.html")]
struct ExplorePage<'a> {
    layout: &'a Layout,
    ex: Explorer,
}

/// `/account/feeds/<name>/`: the explorer of a feed, for any signed-in
/// user who may read its rows.
pub async fn page(
    member: Member,
    path: web::Path<String>,
    upstream: Upstream,
    query: web::Query<TableQuery>,
) -> Reply {
    let on = on_behalf(&member.0, upstream);
    let ex = Explorer::open(&on, &path, &query).await.map_err(page_error)?;
    ok(&ExplorePage { layout: &member.0.layout, ex })
}

fn page_error(err: ApiError) -> AdminError {
    match err {
        ApiError::NotFound => AdminError::NotFound,
        ApiError::Forbidden(_) => AdminError::Forbidden,
        other => AdminError::Internal(anyhow::anyhow!("{other}")),
    }
}

#[derive(Template)]
#[template(path = "admin/explore_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    feeds: Vec<String>,
}

/// `/account/feeds/`: the feeds the user may explore.
pub async fn list(member: Member, upstream: Upstream) -> Reply {
    let who = &member.0.principal;
    let mut feeds: Vec<String> = upstream
        .feeds()
        .await
        .into_iter()
        .filter(|name| [VIEW_FEED, VIEW_COL, VIEW_DATA].iter().all(|p| who.has_feed_perm(p, name)))
        .collect();
    feeds.sort();
    ok(&ListPage { layout: &member.0.layout, feeds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_extremes_and_bounds_points() {
        let mut d = Downsampler::new(0, 1_000_000, 100, vec!["y".into()], "index".into());
        for row in 0..1_000_000u64 {
            let y = if row == 123_456 { 1e9 } else { (row % 7) as f64 };
            d.add(row, row as f64, [y].into_iter());
        }
        let chart = d.finish();
        assert!(chart.downsampled);
        assert!(chart.rows.len() <= 100, "{} points", chart.rows.len());
        assert_eq!(chart.rows.len(), chart.series[0].values.len());
        let max = chart.series[0].values.iter().flatten().cloned().fold(f64::MIN, f64::max);
        assert_eq!(max, 1e9, "the spike is drawn");
        assert_eq!(chart.rows.first(), Some(&0));
        assert_eq!(chart.rows.last(), Some(&999_999));
    }

    #[test]
    fn few_rows_are_drawn_as_they_are() {
        let mut d = Downsampler::new(10, 15, 100, vec!["y".into()], "t".into());
        for row in 10..15u64 {
            d.add(row, row as f64 * 2.0, [f64::NAN, row as f64].into_iter().skip(1));
        }
        let chart = d.finish();
        assert!(!chart.downsampled);
        assert_eq!(chart.rows, vec![10, 11, 12, 13, 14]);
        assert_eq!(chart.x, vec![Some(20.0), Some(22.0), Some(24.0), Some(26.0), Some(28.0)]);
        assert_eq!(chart.series[0].values[4], Some(14.0));
    }

    #[test]
    fn values_are_written_as_the_api_would() {
        assert_eq!(Kind::Float64.text(&1e300f64.to_le_bytes(), Encoding::Hex), "1e300");
        assert_eq!(Kind::Float64.text(&0.1f64.to_le_bytes(), Encoding::Hex), "0.1");
        assert_eq!(Kind::Int32.text(&(-7i32).to_le_bytes(), Encoding::Hex), "-7");
        assert_eq!(Kind::Bytes(3).text(&[0, 255, 16], Encoding::Hex), "00ff10");
        assert_eq!(Kind::Bytes(3).text(&[0, 255, 16], Encoding::Base64), "AP8Q");
        assert_eq!(Kind::Text(6).text(b"a<\n\0\0\0", Encoding::Hex), "a<\\n");
        let spoof = "a\u{202E}b".as_bytes();
        assert_eq!(Kind::Text(spoof.len()).text(spoof, Encoding::Hex), "a\\u{202e}b");
        assert_eq!(csv_field("=1+1", true), "\"'=1+1\"");
        assert_eq!(csv_field("-x", true), "\"'-x\"");
        assert_eq!(csv_field("-1.5", false), "-1.5");
        assert_eq!(csv_field("+/8=", false), "+/8=", "base64 is data");
        assert_eq!(csv_field("a,\"b", true), "\"a,\"\"b\"");
    }
}

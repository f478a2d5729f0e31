//! What the proxy refuses before forwarding, whoever asks: reads too large
//! to answer, sizes too large to keep, names too long to be files, columns
//! too wide to read. A user with one feed grant must not be able to take
//! the upstream down (an 8-petabyte read aborts it; a 252-byte column name
//! keeps it from ever starting again; a `Bytes[1000000000000]` column
//! aborts it on its first read). Pure functions over the query and the
//! small JSON bodies; what a read costs in bytes also needs the widths of
//! its columns, which `proxy::columns` keeps.

use actix_web::http::Method;
use serde::Deserialize;

use super::classify::{Classified, Endpoint};
use crate::config::Limits;
use crate::lbasedb::datatype;
use crate::lbasedb::names::{MAX_NAME_LEN, is_too_long};
use crate::lbasedb::scan::DatasetScan;

/// Small bodies the proxy reads whole before forwarding, because they name
/// something or set a size. None of them is anywhere near this in honest use.
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;

/// Which small JSON body a request carries, and so what to check in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// `POST /feed`, `PATCH /feed`, `PATCH /col`: `{"name": …}`.
    Name,
    /// `POST /col`: `{"name": …, "datatype": …}`.
    Column,
    /// `PUT /size`: `{"size": …}`.
    Size,
}

pub fn body_rule(endpoint: Endpoint, method: &Method) -> Option<BodyRule> {
    match (endpoint, method.as_str()) {
        (Endpoint::Col, "POST") => Some(BodyRule::Column),
        (Endpoint::Feed | Endpoint::Col, "POST" | "PATCH") => Some(BodyRule::Name),
        (Endpoint::Size, "PUT") => Some(BodyRule::Size),
        _ => None,
    }
}

/// What a checked body says that the proxy acts on afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// The name a feed or column is created with or renamed to.
    pub name: Option<String>,
    /// A new column's width.
    pub width: Option<u64>,
    /// The size a feed is set to.
    pub size: Option<u64>,
}

/// Reads the body as the upstream's JSON extractor does (serde_json into a
/// struct: unknown fields ignored, a repeated field an error), and refuses
/// what the limits forbid. A body the proxy cannot read is refused too,
/// rather than forwarded unchecked.
pub fn check_body(rule: BodyRule, body: &[u8], limits: &Limits) -> Result<BodyFacts, String> {
    #[derive(Deserialize)]
    struct Name {
        name: Option<String>,
    }
    #[derive(Deserialize)]
    struct Column {
        name: Option<String>,
        datatype: Option<String>,
    }
    #[derive(Deserialize)]
    struct Size {
        size: Option<u64>,
    }
    let invalid = |e: serde_json::Error| format!("Invalid JSON body: {e}.");
    match rule {
        BodyRule::Name => {
            let Name { name } = serde_json::from_slice(body).map_err(invalid)?;
            if let Some(name) = &name {
                check_new_name(name)?;
            }
            Ok(BodyFacts { name, ..BodyFacts::default() })
        }
        BodyRule::Column => {
            let Column { name, datatype } = serde_json::from_slice(body).map_err(invalid)?;
            if let Some(name) = &name {
                check_new_name(name)?;
            }
            // Without one the upstream answers `param required` itself.
            if let Some(refused) =
                datatype.as_deref().and_then(|d| datatype::refuse_new_column(d, limits))
            {
                return Err(format!("{refused}."));
            }
            Ok(BodyFacts { name, width: datatype.as_deref().and_then(datatype::width), size: None })
        }
        BodyRule::Size => {
            let Size { size } = serde_json::from_slice(body).map_err(invalid)?;
            if let Some(size) = size
                && size > limits.max_feed_rows
            {
                return Err(format!(
                    "A feed holds at most {} rows (MAX_FEED_ROWS).",
                    limits.max_feed_rows
                ));
            }
            Ok(BodyFacts { size, ..BodyFacts::default() })
        }
    }
}

/// Refuses a query whose read is over `MAX_ROWS_PER_READ` or that names a
/// column longer than any file name, from what `classify` parsed of it
/// (which has already refused every query the upstream could read
/// otherwise).
pub fn check_query(
    classified: &Classified,
    method: &Method,
    limits: &Limits,
) -> Result<(), String> {
    let reads_rows = reads_rows(classified.endpoint, method);
    if let Some(named) = &classified.named {
        if named.columns.len() as u64 > limits.max_read_columns {
            return Err(format!(
                "A request names at most {} columns (MAX_READ_COLUMNS).",
                limits.max_read_columns
            ));
        }
        for col in &named.columns {
            check_name(col)?;
        }
        if reads_rows {
            check_rows(named.size, limits)?;
        }
    }
    if let Some(column) = &classified.column {
        check_name(column)?;
    }
    Ok(())
}

/// Whether a request makes the upstream build rows: a read, or the zeros
/// of `DELETE /bytes`.
fn reads_rows(endpoint: Endpoint, method: &Method) -> bool {
    *method == Method::GET || (endpoint == Endpoint::Bytes && *method == Method::DELETE)
}

/// What a read asks the upstream to build whole: rows of the columns
/// named, in the order named (repeats included). `None` for a request that
/// reads no rows, or whose query names no size (the upstream refuses it).
pub fn read_shape<'a>(classified: &'a Classified, method: &Method) -> Option<(u64, &'a [String])> {
    if !reads_rows(classified.endpoint, method) {
        return None;
    }
    let named = classified.named.as_ref()?;
    Some((named.size?, &named.columns))
}

/// The most a request's body may hold: JSON bodies of `/data` writes are
/// held to `MAX_JSON_BODY` as well, since the upstream spends far more
/// memory on a JSON value than on its text.
pub fn body_limit(endpoint: Endpoint, body_limit: u64, limits: &Limits) -> u64 {
    match endpoint {
        Endpoint::Data => body_limit.min(limits.max_json_body),
        _ => body_limit,
    }
}

/// What a write costs the upstream, counted as its body streams by: the
/// proxy cuts the body (so that the upstream never acts on it) once the
/// cost passes `MAX_WRITE_BYTES`.
#[derive(Debug, Clone)]
pub enum WriteMeter {
    /// A `/data` write: a record per value, the width of each value's
    /// column; a `PUT` zeroes the columns it does not name, for every row.
    /// The scan keeps the cost as it counts (`DatasetScan::priced`).
    Json { scan: Box<DatasetScan>, zeroes_others: bool },
    /// A `PUT /bytes`: `named` bytes a row of the body, `all` bytes a row
    /// written (the columns not named are zeroed).
    Rows { named: u64, all: u64 },
}

impl WriteMeter {
    /// The meter of a write to a feed of these columns (name, datatype),
    /// if its cost can be more than its body.
    pub fn of(classified: &Classified, method: &Method, columns: &[(&str, &str)]) -> Option<Self> {
        let widths: Vec<(String, u64)> = columns
            .iter()
            .map(|(name, datatype)| (name.to_string(), datatype::width(datatype).unwrap_or(0)))
            .collect();
        match (classified.endpoint, method.as_str()) {
            (Endpoint::Data, "POST" | "PUT" | "PATCH") => Some(Self::Json {
                scan: Box::new(DatasetScan::priced(widths)),
                zeroes_others: *method == Method::PUT,
            }),
            (Endpoint::Bytes, "PUT") => {
                let named_cols = &classified.named.as_ref()?.columns;
                let width = |name: &str| widths.iter().find(|(c, _)| c == name).map(|(_, w)| *w);
                let named: u64 = named_cols.iter().filter_map(|c| width(c)).sum();
                let others: u64 =
                    widths.iter().filter(|(c, _)| !named_cols.contains(c)).map(|(_, w)| *w).sum();
                (named > 0).then_some(Self::Rows { named, all: named.saturating_add(others) })
            }
            _ => None,
        }
    }

    /// Counts the next bytes of the body.
    /// The rows this write's body holds, `sent` bytes of it in, when that
    /// is certain: a JSON dataset whose lists are all as long, each key
    /// once (an append adds that many), or a `PUT /bytes`'s whole rows.
    pub fn rows(&self, sent: u64) -> Option<u64> {
        match self {
            Self::Json { scan, .. } => scan.uniform_rows(),
            Self::Rows { named, .. } => Some(sent / named),
        }
    }

    /// The rows this write's body holds at least, `sent` bytes of it in.
    pub fn rows_so_far(&self, sent: u64) -> u64 {
        match self {
            Self::Json { scan, .. } => scan.rows(),
            Self::Rows { named, .. } => sent / named,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if let Self::Json { scan, .. } = self {
            scan.feed(chunk);
        }
    }

    /// Why the write is to be refused, `sent` bytes of its body in: it
    /// names too many keys, or it costs more than `MAX_WRITE_BYTES`.
    pub fn refusal(&self, sent: u64, limits: &Limits) -> Option<String> {
        if let Self::Json { scan, .. } = self
            && scan.too_many_keys()
        {
            return Some(format!(
                "A dataset names at most {} keys",
                crate::lbasedb::scan::MAX_KEYS
            ));
        }
        datatype::refuse_write(self.cost(sent), limits)
    }

    /// What the write costs, `sent` bytes of its body in.
    pub fn cost(&self, sent: u64) -> u64 {
        match self {
            Self::Json { scan, zeroes_others } => scan.cost(*zeroes_others),
            Self::Rows { named, all } => (sent / named).saturating_mul(*all),
        }
    }

    /// What the write is charged to `MAX_BYTES_IN_FLIGHT` before it
    /// starts: its declared body's worst cost (a JSON value of one
    /// character and its comma costs `json_value_cost(0)`, 48 bytes a body
    /// byte), or, with no length declared, all a write may cost.
    pub fn charge(&self, declared: Option<u64>, limits: &Limits) -> u64 {
        let worst = |len: u64| match self {
            Self::Json { .. } => len.saturating_mul(datatype::json_value_cost(0) / 2),
            Self::Rows { .. } => self.cost(len),
        };
        declared.map_or(limits.max_write_bytes, worst).min(limits.max_write_bytes)
    }
}

fn check_rows(size: Option<u64>, limits: &Limits) -> Result<(), String> {
    match size {
        Some(size) if size > limits.max_rows_per_read => Err(format!(
            "A request reads at most {} rows (MAX_ROWS_PER_READ); ask in pages.",
            limits.max_rows_per_read
        )),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if is_too_long(name) {
        return Err(format!("A feed or column name is at most {MAX_NAME_LEN} bytes."));
    }
    Ok(())
}

/// A name a feed or column is made with or renamed to: one the storage
/// takes. The storage checks a rename's new name only after it has closed
/// the feed, and then leaves it closed (gone from every read until the
/// upstream restarts): such a name must never reach it.
fn check_new_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if !crate::lbasedb::names::is_valid_name(name) {
        return Err(format!(
            "{name:?} is not a valid name: letters, digits and _ in parts separated by dots, \
             none starting with a digit."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_rows_per_read: 1000,
        max_feed_rows: 5000,
        max_read_columns: 3,
        max_column_width: 64,
        ..Limits::DEFAULT
    };

    #[test]
    fn reads_over_the_limit_are_refused() {
        let long = "c".repeat(MAX_NAME_LEN + 1);
        let cases: Vec<(Endpoint, Method, String, bool)> = vec![
            (Endpoint::Data, Method::GET, "feed=a&ix=0&size=1000&col=x".into(), true),
            (Endpoint::Data, Method::GET, "feed=a&ix=0&size=1001&col=x".into(), false),
            (Endpoint::Bytes, Method::GET, "feed=a&ix=0&size=99999999999&col[]=x".into(), false),
            (Endpoint::Bytes, Method::DELETE, "feed=a&ix=0&size=1001&col[]=x".into(), false),
            (Endpoint::Raw, Method::GET, "feed=a&col=x&ix=0&size=1001".into(), false),
            (Endpoint::Raw, Method::GET, "feed=a&col=x&ix=0&size=10".into(), true),
            // A write names no read size.
            (Endpoint::Data, Method::PUT, "feed=a&ix=0&size=1001".into(), true),
            (Endpoint::Raw, Method::POST, format!("feed=a&col={long}&ix=0"), false),
            (Endpoint::Data, Method::GET, format!("feed=a&ix=0&size=1&col[]={long}"), false),
            (Endpoint::Col, Method::PATCH, format!("feed=a&name={long}"), false),
            (Endpoint::Col, Method::DELETE, "feed=a&name=x".into(), true),
            // A column named once too often, in any form.
            (
                Endpoint::Data,
                Method::GET,
                "feed=a&ix=0&size=1&col[]=x&col[]=x&col[]=x".into(),
                true,
            ),
            (
                Endpoint::Data,
                Method::GET,
                "feed=a&ix=0&size=1&col=x&col=x&col=x&col=x".into(),
                false,
            ),
            (
                Endpoint::Bytes,
                Method::POST,
                "feed=a&col%5B%5D=x&col[]=y&col[]=z&col[]=w".into(),
                false,
            ),
        ];
        for (endpoint, method, query, ok) in cases {
            let classified = super::super::classify::classify(endpoint.name(), &method, &query);
            assert_eq!(
                check_query(&classified.unwrap(), &method, &LIMITS).is_ok(),
                ok,
                "{method} {endpoint:?} {query}"
            );
        }
    }

    #[test]
    fn bodies_are_read_as_the_upstream_reads_them() {
        let long = "n".repeat(MAX_NAME_LEN + 1);
        let name = |n: &str| serde_json::json!({ "name": n }).to_string();
        let ok = |rule, body: &str| check_body(rule, body.as_bytes(), &LIMITS);
        let named = BodyFacts { name: Some("xy".into()), ..BodyFacts::default() };
        assert_eq!(ok(BodyRule::Name, &name("xy")), Ok(named));
        assert!(ok(BodyRule::Name, &name(&long)).is_err());
        assert!(ok(BodyRule::Name, &name("a b")).is_err(), "a rename the storage fails closed");
        assert!(ok(BodyRule::Name, &name("1x")).is_err());
        assert!(ok(BodyRule::Name, &name("a.b_2")).is_ok());
        assert!(ok(BodyRule::Name, r#"{"name":"a","name":"b"}"#).is_err());
        assert!(ok(BodyRule::Name, r#"{"name":1}"#).is_err());
        assert!(ok(BodyRule::Name, "not json").is_err());
        assert_eq!(ok(BodyRule::Name, r#"{"datatype":"Int64"}"#), Ok(BodyFacts::default()));
        assert!(ok(BodyRule::Size, r#"{"size":5000}"#).is_ok());
        assert!(ok(BodyRule::Size, r#"{"size":5001}"#).is_err());
        assert!(ok(BodyRule::Size, r#"{"size":1000000000000000}"#).is_err());
        assert!(ok(BodyRule::Size, r#"{"size":-1}"#).is_err());
        assert!(ok(BodyRule::Size, r#"{"size":1e3}"#).is_err());
        let column = |d: &str| serde_json::json!({ "name": "c", "datatype": d }).to_string();
        assert!(ok(BodyRule::Column, &column("Bytes[64]")).is_ok());
        assert!(ok(BodyRule::Column, &column("Bytes[65]")).is_err());
        assert!(ok(BodyRule::Column, &column("Bytes[1000000000000]")).is_err());
        assert!(ok(BodyRule::Column, &column("Nope")).is_err());
        assert!(ok(BodyRule::Column, r#"{"name":"c"}"#).is_ok());
    }

    #[test]
    fn writes_are_metered_as_the_upstream_builds_them() {
        let cols = [("x", "Float64"), ("b", "Bytes[1024]")];
        let of = |e: Endpoint, m: Method, q: &str| {
            let classified = super::super::classify::classify(e.name(), &m, q).unwrap();
            WriteMeter::of(&classified, &m, &cols)
        };
        let mut json = of(Endpoint::Data, Method::POST, "feed=a").unwrap();
        // Cut inside the second value's string.
        json.feed(b"{\"b\":[\"\",\"");
        json.feed(b"\",\"\"]}");
        assert_eq!(json.cost(0), 3 * (96 + 4096));
        let mut put = of(Endpoint::Data, Method::PUT, "feed=a&ix=0").unwrap();
        put.feed(br#"{"x":[1,2]}"#);
        assert_eq!(put.cost(0), 2 * (96 + 32) + 2 * 1024, "b zeroed for both rows");
        let rows = of(Endpoint::Bytes, Method::PUT, "feed=a&ix=0&col[]=x").unwrap();
        assert_eq!(rows.cost(80), 10 * (8 + 1024), "ten rows of both columns");
        assert!(of(Endpoint::Bytes, Method::POST, "feed=a&col[]=x").is_none());
        assert!(of(Endpoint::Bytes, Method::PUT, "feed=a&ix=0&col[]=nope").is_none());
        assert_eq!(json.charge(Some(100), &LIMITS), 4800);
        assert_eq!(json.charge(None, &LIMITS), LIMITS.max_write_bytes);
        assert_eq!(rows.charge(Some(u64::MAX), &LIMITS), LIMITS.max_write_bytes);
    }

    #[test]
    fn reads_are_shaped_as_the_upstream_builds_them() {
        let shape = |e: Endpoint, m: Method, q: &str| {
            let classified = super::super::classify::classify(e.name(), &m, q).unwrap();
            read_shape(&classified, &m).map(|(rows, cols)| (rows, cols.to_vec()))
        };
        assert_eq!(
            shape(Endpoint::Data, Method::GET, "feed=a&ix=0&size=5&col[]=x&col%5B%5D=x"),
            Some((5, vec!["x".into(), "x".into()]))
        );
        assert_eq!(
            shape(Endpoint::Raw, Method::GET, "feed=a&col=y&ix=2&size=7"),
            Some((7, vec!["y".into()]))
        );
        assert!(shape(Endpoint::Bytes, Method::DELETE, "feed=a&ix=0&size=3&col[]=x").is_some());
        assert_eq!(shape(Endpoint::Bytes, Method::POST, "feed=a&col[]=x"), None);
        assert_eq!(shape(Endpoint::Size, Method::GET, "feed=a"), None);
        assert_eq!(body_limit(Endpoint::Data, 1 << 30, &LIMITS), LIMITS.max_json_body);
        assert_eq!(body_limit(Endpoint::Bytes, 1 << 30, &LIMITS), 1 << 30);
    }
}

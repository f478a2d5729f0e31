//! Which endpoint, which feed, which permission: a pure function over the
//! request line, and the one place the permission layer decides on.
//!
//! A query is read with the upstream's own parsers (`crate::lbasedb::query`),
//! after a strict scan that refuses everything those parsers are lenient
//! about (repeated keys where the last one wins, encoded or nested keys,
//! mixed `col`/`col[]`). What passes names exactly one feed, the one the
//! upstream will act on.

use actix_web::http::Method;

pub use crate::lbasedb::names::is_valid_name;
pub use crate::lbasedb::perms::{Action, Object, Perm};
use crate::lbasedb::query::{
    ColQuery, DataQuery, FeedQuery, NameQuery, RawQuery, parse_form, parse_qs,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Version,
    Feed,
    Col,
    Size,
    Data,
    Bytes,
    Raw,
}

impl Endpoint {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "version" => Self::Version,
            "feed" => Self::Feed,
            "col" => Self::Col,
            "size" => Self::Size,
            "data" => Self::Data,
            "bytes" => Self::Bytes,
            "raw" => Self::Raw,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Feed => "feed",
            Self::Col => "col",
            Self::Size => "size",
            Self::Data => "data",
            Self::Bytes => "bytes",
            Self::Raw => "raw",
        }
    }

    /// The methods the upstream serves on this path.
    pub fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const CRUD: &[Method] = &[Method::GET, Method::POST, Method::PATCH, Method::DELETE];
        const SIZE: &[Method] = &[Method::GET, Method::PUT];
        const DATA: &[Method] = &[Method::GET, Method::POST, Method::PUT, Method::PATCH];
        const BYTES: &[Method] =
            &[Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
        const RAW: &[Method] = &[Method::GET, Method::POST];
        match self {
            Self::Version => GET,
            Self::Feed | Self::Col => CRUD,
            Self::Size => SIZE,
            Self::Data => DATA,
            Self::Bytes => BYTES,
            Self::Raw => RAW,
        }
    }

    /// `/data` and `/bytes` read their query with `serde_qs`.
    fn uses_serde_qs(self) -> bool {
        matches!(self, Self::Data | Self::Bytes)
    }
}

/// What a request needs from the one who makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated user (`GET /version`).
    Authenticated,
    /// The permission held globally: it acts on no existing feed, or renames one.
    Global(Perm),
    /// The permission held globally or granted for this feed.
    Feed(Perm, String),
    /// `GET /feed`: answered for anyone, listing only the feeds they may view.
    FeedList,
}

/// Why a request is refused before any permission is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassifyError {
    UnknownEndpoint,
    MethodNotAllowed(&'static [Method]),
    BadQuery(String),
}

/// A request as the permission layer decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Which upstream path.
    pub endpoint: Endpoint,
    /// What the one who asks must hold.
    pub requires: Requirement,
    /// The feed whose write lock the request takes (`crate::lock`): every
    /// request but a read that acts on an existing feed. Creating a feed
    /// locks none (there is nothing yet to race with); renaming one locks
    /// its old name.
    pub write_lock: Option<String>,
    /// The columns and rows the query of `/data`, `/bytes` or `/raw` names
    /// (any method), parsed once here for the decision, the limits, what a
    /// read costs and the audit.
    pub(crate) named: Option<ReadQuery>,
    /// Whether the request reads rows (`GET /data`, `/bytes`, `/raw`):
    /// what fine-grained grants are checked against.
    reads: bool,
    /// The column `PATCH` and `DELETE /col` name.
    pub(crate) column: Option<String>,
}

impl Classified {
    /// What a read of rows names; none for any other request.
    pub fn read(&self) -> Option<&ReadQuery> {
        self.named.as_ref().filter(|_| self.reads)
    }
}

pub fn classify(endpoint: &str, method: &Method, query: &str) -> Result<Classified, ClassifyError> {
    use Action::*;
    use Object::{Col, Data, Feed};

    let endpoint = Endpoint::from_name(endpoint).ok_or(ClassifyError::UnknownEndpoint)?;
    if !endpoint.methods().contains(method) {
        return Err(ClassifyError::MethodNotAllowed(endpoint.methods()));
    }
    scan(endpoint, query)?;

    let (mut named, mut column) = (None, None);
    let mut feed_scoped = |action, object| -> Result<Requirement, ClassifyError> {
        let (feed, query_names, query_column) = feed_of(endpoint, method, query)?;
        (named, column) = (query_names, query_column);
        Ok(Requirement::Feed(Perm::new(action, object), feed))
    };
    let requires = match (endpoint, method.as_str()) {
        (Endpoint::Version, _) => Requirement::Authenticated,
        (Endpoint::Feed, "GET") => Requirement::FeedList,
        (Endpoint::Feed, "POST") => Requirement::Global(Perm::new(Add, Feed)),
        (Endpoint::Feed, "PATCH") => {
            // Still read the old name, so that a query the upstream would
            // read differently is refused here too.
            let (old, _, _) = feed_of(endpoint, method, query)?;
            return Ok(Classified {
                endpoint,
                requires: Requirement::Global(Perm::new(Change, Feed)),
                write_lock: Some(old),
                named: None,
                reads: false,
                column: None,
            });
        }
        (Endpoint::Feed, _) => feed_scoped(Delete, Feed)?,
        (Endpoint::Col, "GET") => feed_scoped(View, Col)?,
        (Endpoint::Col, "POST") => feed_scoped(Add, Col)?,
        (Endpoint::Col, "PATCH") => feed_scoped(Change, Col)?,
        (Endpoint::Col, _) => feed_scoped(Delete, Col)?,
        (Endpoint::Size, "GET") => feed_scoped(View, Data)?,
        (Endpoint::Size, _) => feed_scoped(Change, Data)?,
        (Endpoint::Data | Endpoint::Bytes | Endpoint::Raw, "GET") => feed_scoped(View, Data)?,
        (Endpoint::Data | Endpoint::Bytes, "POST") => feed_scoped(Add, Data)?,
        (Endpoint::Bytes, "DELETE") => feed_scoped(Delete, Data)?,
        (Endpoint::Data | Endpoint::Bytes | Endpoint::Raw, _) => feed_scoped(Change, Data)?,
    };
    let write_lock = match &requires {
        Requirement::Feed(_, feed) if *method != Method::GET => Some(feed.clone()),
        _ => None,
    };
    let reads = *method == Method::GET;
    Ok(Classified { endpoint, requires, write_lock, named, reads, column })
}

/// Refuses what the upstream's parsers would read leniently or differently
/// from a plain reading: keys that are empty, encoded, nested or bracketed
/// (but for `col[]` on `/data` and `/bytes`), keys without a value, any key
/// but the list `col` given twice, and `col` mixed with `col[]`.
fn scan(endpoint: Endpoint, query: &str) -> Result<(), ClassifyError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut bracketed_col = false;
    let mut plain_col = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let Some((key, _)) = pair.split_once('=') else {
            return Err(bad(format!("Query parameter \"{pair}\" has no value.")));
        };
        if endpoint.uses_serde_qs() && matches!(key, "col[]" | "col%5B%5D" | "col%5b%5d") {
            bracketed_col = true;
        } else if endpoint.uses_serde_qs() && key == "col" {
            // serde_qs reads a repeated `col` as a list, as it reads `col[]`.
            plain_col = true;
        } else if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad(format!("Query parameter \"{key}\" is not accepted.")));
        } else if seen.contains(&key) {
            return Err(bad(format!("Query parameter \"{key}\" is given more than once.")));
        } else {
            seen.push(key);
        }
    }
    if bracketed_col && plain_col {
        return Err(bad("Query parameters \"col\" and \"col[]\" cannot be mixed.".into()));
    }
    Ok(())
}

/// What the upstream will read of a query: the feed it acts on, read with
/// the upstream's own parser for this endpoint and method; for `/data`,
/// `/bytes` and `/raw` the columns and rows named; for `PATCH` and `DELETE
/// /col` the column.
type QueryNames = (String, Option<ReadQuery>, Option<String>);

fn feed_of(endpoint: Endpoint, method: &Method, query: &str) -> Result<QueryNames, ClassifyError> {
    let invalid = |err: &dyn std::fmt::Display| bad(format!("Invalid query: {err}."));
    let mut column = None;
    let (feed, read) = match endpoint {
        Endpoint::Feed => (parse_form::<NameQuery>(query).map_err(|e| invalid(&e))?.name, None),
        Endpoint::Col if matches!(*method, Method::PATCH | Method::DELETE) => {
            let q = parse_form::<ColQuery>(query).map_err(|e| invalid(&e))?;
            // The upstream would answer `param required`; nothing to forward.
            if q.name.is_none() {
                return Err(bad("Query parameter \"name\" is required.".into()));
            }
            column = q.name;
            (q.feed, None)
        }
        Endpoint::Col | Endpoint::Size => {
            (parse_form::<FeedQuery>(query).map_err(|e| invalid(&e))?.feed, None)
        }
        Endpoint::Data | Endpoint::Bytes => {
            let q = parse_qs::<DataQuery>(query).map_err(|e| invalid(&e))?;
            let read = ReadQuery {
                columns: q.col.unwrap_or_default(),
                ix: q.ix.map(|ix| ix as u64),
                size: q.size.map(|size| size as u64),
            };
            (q.feed, Some(read))
        }
        Endpoint::Raw => {
            let q = parse_form::<RawQuery>(query).map_err(|e| invalid(&e))?;
            let read = ReadQuery {
                columns: vec![q.col],
                ix: Some(q.ix as u64),
                size: q.size.map(|size| size as u64),
            };
            (q.feed, Some(read))
        }
        Endpoint::Version => unreachable!("/version names no feed"),
    };
    if !is_valid_name(&feed) {
        return Err(bad(format!("\"{feed}\" is not a valid feed name.")));
    }
    // No column has a control character in its name: one named is refused
    // before anything is kept of it (a NUL would fail the audit's write on
    // PostgreSQL).
    let named = read.iter().flat_map(|r| r.columns.iter()).chain(column.iter());
    if let Some(name) = named.into_iter().find(|name| name.chars().any(char::is_control)) {
        return Err(bad(format!("{name:?} is not a valid column name.")));
    }
    Ok((feed, read, column))
}

fn bad(detail: String) -> ClassifyError {
    ClassifyError::BadQuery(detail)
}

/// The columns and rows a read names, as the upstream will read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadQuery {
    /// In the order named, repeats included.
    pub columns: Vec<String>,
    pub ix: Option<u64>,
    pub size: Option<u64>,
}

/// Most bytes of column names an audit row keeps of one read.
const AUDITED_COLUMNS: usize = 4096;

impl ReadQuery {
    pub fn as_read(&self) -> crate::auth::grant::Read<'_> {
        crate::auth::grant::Read { columns: &self.columns, rows: self.ix.zip(self.size) }
    }

    /// Its columns (comma-separated as named, cut after `AUDITED_COLUMNS`
    /// bytes with how many more) and rows (from, and to unless it reads to
    /// the end), as the audit keeps them.
    pub fn audited(&self) -> (String, i64, Option<i64>) {
        // Each column once: a name repeated a thousand times must not push
        // another out of the row.
        let mut seen = std::collections::HashSet::with_capacity(self.columns.len());
        let distinct: Vec<&str> =
            self.columns.iter().map(String::as_str).filter(|name| seen.insert(*name)).collect();
        let mut columns = String::new();
        for (i, name) in distinct.iter().enumerate() {
            if columns.len() + name.len() > AUDITED_COLUMNS {
                columns.push_str(&format!(",…(+{})", distinct.len() - i));
                break;
            }
            if i > 0 {
                columns.push(',');
            }
            columns.push_str(name);
        }
        let number = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let from = self.ix.map_or(0, number);
        let to = self.ix.zip(self.size).map(|(ix, size)| number(ix.saturating_add(size)));
        (columns, from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(action: Action, object: Object, name: &str) -> Requirement {
        Requirement::Feed(Perm::new(action, object), name.to_owned())
    }

    fn check(cases: Vec<(&str, Method, &str, Requirement)>) {
        for (endpoint, method, query, requires) in cases {
            let got = classify(endpoint, &method, query);
            assert_eq!(got.map(|c| c.requires), Ok(requires), "{method} /{endpoint}?{query}");
        }
    }

    #[test]
    fn version_feed_col_and_size_map_to_their_permissions() {
        use Action::*;
        use Object::{Col, Data, Feed};
        check(vec![
            ("version", Method::GET, "", Requirement::Authenticated),
            ("feed", Method::GET, "", Requirement::FeedList),
            ("feed", Method::POST, "", Requirement::Global(Perm::new(Add, Feed))),
            ("feed", Method::PATCH, "name=xy", Requirement::Global(Perm::new(Change, Feed))),
            ("feed", Method::DELETE, "name=xy", feed(Delete, Feed, "xy")),
            ("col", Method::GET, "feed=xy", feed(View, Col, "xy")),
            ("col", Method::POST, "feed=xy", feed(Add, Col, "xy")),
            ("col", Method::PATCH, "feed=xy&name=x", feed(Change, Col, "xy")),
            ("col", Method::DELETE, "feed=xy&name=x", feed(Delete, Col, "xy")),
            ("size", Method::GET, "feed=xy", feed(View, Data, "xy")),
            ("size", Method::PUT, "feed=xy", feed(Change, Data, "xy")),
        ]);
    }

    #[test]
    fn data_bytes_and_raw_map_to_their_permissions() {
        use Action::*;
        use Object::Data;
        check(vec![
            ("data", Method::GET, "feed=xy&ix=0&size=2&col[]=x&col[]=y", feed(View, Data, "xy")),
            ("data", Method::POST, "feed=xy", feed(Add, Data, "xy")),
            ("data", Method::PUT, "feed=xy&ix=0", feed(Change, Data, "xy")),
            ("data", Method::PATCH, "feed=xy&ix=0", feed(Change, Data, "xy")),
            ("bytes", Method::GET, "feed=xy&ix=0&size=1&col%5B%5D=x", feed(View, Data, "xy")),
            ("bytes", Method::POST, "feed=xy&col%5b%5d=x", feed(Add, Data, "xy")),
            ("bytes", Method::PUT, "feed=xy&ix=0&col=x", feed(Change, Data, "xy")),
            ("bytes", Method::PATCH, "feed=xy&ix=0&col=x&col=y", feed(Change, Data, "xy")),
            ("bytes", Method::DELETE, "feed=xy&ix=0&size=1&col[]=x", feed(Delete, Data, "xy")),
            ("raw", Method::GET, "feed=xy&col=x&ix=0&size=1", feed(View, Data, "xy")),
            ("raw", Method::POST, "feed=xy&col=x&ix=0", feed(Change, Data, "xy")),
        ]);
    }

    #[test]
    fn readings_every_parser_shares_name_the_same_feed() {
        use Action::*;
        use Object::Data;
        check(vec![
            // Readings every parser shares: percent-decoding, unknown keys,
            // empty pairs, dotted names.
            ("data", Method::GET, "feed=%78y&ix=0", feed(View, Data, "xy")),
            ("data", Method::GET, "FEED=ab&feed=xy&_=123", feed(View, Data, "xy")),
            ("size", Method::GET, "&feed=a.b_c&", feed(View, Data, "a.b_c")),
        ]);
    }

    #[test]
    fn unknown_endpoints_are_not_found() {
        for endpoint in ["", "nope", "Data", "data/", "version.json", "..", "feed%2F"] {
            assert_eq!(
                classify(endpoint, &Method::GET, "feed=xy"),
                Err(ClassifyError::UnknownEndpoint),
                "{endpoint:?}"
            );
        }
    }

    #[test]
    fn unserved_methods_are_not_allowed_with_the_served_ones() {
        let cases = [
            ("version", Method::POST, &[Method::GET][..]),
            ("feed", Method::PUT, Endpoint::Feed.methods()),
            ("size", Method::POST, &[Method::GET, Method::PUT][..]),
            ("data", Method::DELETE, Endpoint::Data.methods()),
            ("raw", Method::PUT, &[Method::GET, Method::POST][..]),
            ("bytes", Method::HEAD, Endpoint::Bytes.methods()),
            ("col", Method::OPTIONS, Endpoint::Col.methods()),
        ];
        for (endpoint, method, allowed) in cases {
            assert_eq!(
                classify(endpoint, &method, "feed=xy"),
                Err(ClassifyError::MethodNotAllowed(
                    Endpoint::from_name(endpoint).unwrap().methods()
                )),
                "{method} /{endpoint}"
            );
            assert_eq!(Endpoint::from_name(endpoint).unwrap().methods(), allowed);
        }
    }

    #[test]
    fn queries_the_upstream_could_read_otherwise_are_refused() {
        let cases = [
            // serde_qs: the last repeated key wins.
            ("data", Method::GET, "feed=allowed&feed=secret&ix=0&size=1"),
            ("bytes", Method::GET, "feed=allowed&ix=0&size=1&col[]=x&feed=secret"),
            ("data", Method::GET, "feed=a&ix=1&ix=2"),
            // Keys that decode or nest into `feed`.
            ("data", Method::GET, "fe%65d=secret&feed=allowed"),
            ("data", Method::GET, "feed[]=secret"),
            ("data", Method::GET, "feed[0]=secret"),
            ("data", Method::GET, "feed[x]=secret"),
            ("data", Method::GET, "feed%5B%5D=secret"),
            ("data", Method::GET, "feed=a&col%5B%5d=x"),
            ("data", Method::GET, "feed=a&col[0]=x"),
            // Mixed list forms.
            ("data", Method::GET, "feed=a&col=x&col[]=y"),
            ("bytes", Method::GET, "feed=a&col[]=x&col=y"),
            // Values that are no feed name.
            ("data", Method::GET, "feed=a;feed=b"),
            ("data", Method::GET, "feed=a+b"),
            ("data", Method::GET, "feed=a%20b"),
            ("data", Method::GET, "feed="),
            ("data", Method::GET, "feed=..%2Fetc"),
            ("size", Method::GET, "feed=1xy"),
            // Missing, valueless or unparsable.
            ("data", Method::GET, ""),
            ("data", Method::GET, "feed"),
            ("data", Method::GET, "feed=a&ix=abc"),
            ("feed", Method::DELETE, ""),
            ("feed", Method::DELETE, "feed=xy"),
            ("feed", Method::PATCH, "name=a&name=b"),
            ("col", Method::GET, "feed=a&feed=b"),
            ("col", Method::PATCH, "feed=a"),
            ("raw", Method::GET, "feed=a&col=x&col=y&ix=0"),
            ("raw", Method::GET, "feed=a&col=x"),
            ("raw", Method::GET, "feed=a&col[]=x&ix=0"),
        ];
        for (endpoint, method, query) in cases {
            assert!(
                matches!(classify(endpoint, &method, query), Err(ClassifyError::BadQuery(_))),
                "{method} /{endpoint}?{query} was not refused: {:?}",
                classify(endpoint, &method, query)
            );
        }
    }

    #[test]
    fn a_read_is_audited_with_each_column_once_and_no_control_character() {
        let mut query = String::from("feed=f&ix=0&size=1");
        for _ in 0..520 {
            query.push_str("&col[]=x");
        }
        query.push_str("&col[]=ssn");
        let read = classify("data", &Method::GET, &query).unwrap();
        assert_eq!(read.read().unwrap().audited().0, "x,ssn", "a repeated name hides no other");
        for bad in ["feed=f&col[]=x%00", "feed=f&col=%0A&ix=0", "feed=f&col=x%1B[2J&ix=0"] {
            let endpoint = if bad.contains("col[]") { "data" } else { "raw" };
            let refused = classify(endpoint, &Method::GET, bad);
            assert!(matches!(refused, Err(ClassifyError::BadQuery(_))), "{bad}: {refused:?}");
        }
    }

    #[test]
    fn writes_lock_their_feed_and_reads_do_not() {
        let cases = [
            ("data", Method::GET, "feed=xy&ix=0&size=1", None),
            ("size", Method::GET, "feed=xy", None),
            ("col", Method::GET, "feed=xy", None),
            ("feed", Method::GET, "", None),
            ("version", Method::GET, "", None),
            ("feed", Method::POST, "", None),
            ("feed", Method::PATCH, "name=xy", Some("xy")),
            ("feed", Method::DELETE, "name=xy", Some("xy")),
            ("col", Method::POST, "feed=xy", Some("xy")),
            ("col", Method::PATCH, "feed=xy&name=x", Some("xy")),
            ("col", Method::DELETE, "feed=xy&name=x", Some("xy")),
            ("size", Method::PUT, "feed=xy", Some("xy")),
            ("data", Method::POST, "feed=xy", Some("xy")),
            ("data", Method::PUT, "feed=xy&ix=0", Some("xy")),
            ("data", Method::PATCH, "feed=xy&ix=0", Some("xy")),
            ("bytes", Method::POST, "feed=xy&col=x", Some("xy")),
            ("bytes", Method::PUT, "feed=xy&ix=0&col=x", Some("xy")),
            ("bytes", Method::PATCH, "feed=xy&ix=0&col=x", Some("xy")),
            ("bytes", Method::DELETE, "feed=xy&ix=0&size=1&col=x", Some("xy")),
            ("raw", Method::POST, "feed=xy&col=x&ix=0", Some("xy")),
            ("raw", Method::GET, "feed=xy&col=x&ix=0&size=1", None),
        ];
        for (endpoint, method, query, lock) in cases {
            let got = classify(endpoint, &method, query).unwrap();
            assert_eq!(got.write_lock.as_deref(), lock, "{method} /{endpoint}?{query}");
        }
    }
}

//! The upstream's query strings, parsed the way the upstream parses them.
//!
//! The embedded server answers with these, and the proxy's classifier reads
//! the feed out of a request with the very same functions, so the two can
//! never disagree about which feed a query names.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `GET /data` and every `/bytes`: `serde_qs` after the upstream's own
/// rewrite of an encoded `[]` before `=`, so that `col%5B%5D=x` reads as
/// `col[]=x`. On failure the upstream answers `invalid input parameter`
/// with the rewritten query as the detail; the error carries it.
pub fn parse_qs<T: DeserializeOwned>(query: &str) -> Result<T, QsError> {
    let query = query.replace("%5B%5D=", "[]=").replace("%5b%5d=", "[]=");
    serde_qs::from_str(&query).map_err(|cause| QsError { query, cause })
}

/// A query `serde_qs` could not read: the rewritten query, and why.
#[derive(Debug)]
pub struct QsError {
    pub query: String,
    pub cause: serde_qs::Error,
}

impl std::fmt::Display for QsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

/// Every other path: the plain form decoder behind actix-web's `web::Query`.
pub fn parse_form<T: DeserializeOwned>(query: &str) -> Result<T, serde_urlencoded::de::Error> {
    serde_urlencoded::from_str(query)
}

/// `PATCH /feed` and `DELETE /feed`.
#[derive(Debug, Deserialize)]
pub struct NameQuery {
    pub name: String,
}

/// `/col` (GET, POST) and `/size`.
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    pub feed: String,
}

/// `PATCH /col` and `DELETE /col`: the upstream reads `name` as optional
/// and answers `param required` without it.
#[derive(Debug, Deserialize)]
pub struct ColQuery {
    pub feed: String,
    pub name: Option<String>,
}

/// `/data` and `/bytes`.
#[derive(Debug, Deserialize)]
pub struct DataQuery {
    pub feed: String,
    pub ix: Option<usize>,
    pub size: Option<usize>,
    pub col: Option<Vec<String>>,
}

/// `/raw`.
#[derive(Debug, Deserialize)]
pub struct RawQuery {
    pub feed: String,
    pub col: String,
    pub ix: usize,
    pub size: Option<usize>,
}

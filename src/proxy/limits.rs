//! What the proxy refuses before forwarding, whoever asks: reads too large
//! to answer, sizes too large to keep, names too long to be files. A user
//! with one feed grant must not be able to take the upstream down (an
//! 8-petabyte read aborts it; a 252-byte column name keeps it from ever
//! starting again). Pure functions over the query and the small JSON bodies.

use actix_web::http::Method;
use serde::Deserialize;

use super::classify::Endpoint;
use crate::config::Limits;
use crate::lbasedb::names::{MAX_NAME_LEN, is_too_long};
use crate::lbasedb::query::{ColQuery, DataQuery, RawQuery, parse_form, parse_qs};

/// Small bodies the proxy reads whole before forwarding, because they name
/// something or set a size. None of them is anywhere near this in honest use.
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;

/// Which small JSON body a request carries, and so what to check in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// `POST /feed`, `PATCH /feed`, `POST /col`, `PATCH /col`: `{"name": …}`.
    Name,
    /// `PUT /size`: `{"size": …}`.
    Size,
}

pub fn body_rule(endpoint: Endpoint, method: &Method) -> Option<BodyRule> {
    match (endpoint, method.as_str()) {
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
    struct Size {
        size: Option<u64>,
    }
    let invalid = |e: serde_json::Error| format!("Invalid JSON body: {e}.");
    match rule {
        BodyRule::Name => {
            let Name { name } = serde_json::from_slice(body).map_err(invalid)?;
            if let Some(name) = &name {
                check_name(name)?;
            }
            Ok(BodyFacts { name })
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
            Ok(BodyFacts::default())
        }
    }
}

/// Refuses a query whose read is over `MAX_ROWS_PER_READ` or that names a
/// column longer than any file name. Run after `classify`, which has
/// already refused every query the upstream could read otherwise.
pub fn check_query(
    endpoint: Endpoint,
    method: &Method,
    query: &str,
    limits: &Limits,
) -> Result<(), String> {
    let reads_rows =
        *method == Method::GET || (endpoint == Endpoint::Bytes && *method == Method::DELETE);
    match endpoint {
        Endpoint::Data | Endpoint::Bytes => {
            let Ok(q) = parse_qs::<DataQuery>(query) else {
                return Ok(());
            };
            for col in q.col.iter().flatten() {
                check_name(col)?;
            }
            if reads_rows {
                check_rows(q.size.map(|s| s as u64), limits)?;
            }
        }
        Endpoint::Raw => {
            let Ok(q) = parse_form::<RawQuery>(query) else {
                return Ok(());
            };
            check_name(&q.col)?;
            if reads_rows {
                check_rows(q.size.map(|s| s as u64), limits)?;
            }
        }
        Endpoint::Col if matches!(*method, Method::PATCH | Method::DELETE) => {
            if let Ok(ColQuery { name: Some(name), .. }) = parse_form::<ColQuery>(query) {
                check_name(&name)?;
            }
        }
        _ => {}
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_rows_per_read: 1000, max_feed_rows: 5000 };

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
        ];
        for (endpoint, method, query, ok) in cases {
            assert_eq!(
                check_query(endpoint, &method, &query, &LIMITS).is_ok(),
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
        assert_eq!(ok(BodyRule::Name, &name("xy")), Ok(BodyFacts { name: Some("xy".into()) }));
        assert!(ok(BodyRule::Name, &name(&long)).is_err());
        assert!(ok(BodyRule::Name, r#"{"name":"a","name":"b"}"#).is_err());
        assert!(ok(BodyRule::Name, r#"{"name":1}"#).is_err());
        assert!(ok(BodyRule::Name, "not json").is_err());
        assert_eq!(ok(BodyRule::Name, r#"{"datatype":"Int64"}"#), Ok(BodyFacts::default()));
        assert!(ok(BodyRule::Size, r#"{"size":5000}"#).is_ok());
        assert!(ok(BodyRule::Size, r#"{"size":5001}"#).is_err());
        assert!(ok(BodyRule::Size, r#"{"size":1000000000000000}"#).is_err());
        assert!(ok(BodyRule::Size, r#"{"size":-1}"#).is_err());
        assert!(ok(BodyRule::Size, r#"{"size":1e3}"#).is_err());
    }
}

//! `/admin/lbasedb/access/`: the data-access audit, newest first, with a
//! search (user or feed), filters (user, feed, method, status class, a
//! range of days or minutes), what the matching rows count in all
//! (requests, bytes, clients), pages of 100, and the same rows as CSV.
//! Needs `lbasedb.view_access` (superusers have it).

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::changelist::{ChangeList, Filter, PageLink};
use super::{Layout, Reply, Staff, ok};
use crate::auth::perms::ViewAccess;
use crate::db::models::Access;
use crate::db::{self, queries};

const PER_PAGE: i64 = 100;
/// Most rows one CSV export holds.
const CSV_ROWS: i64 = 100_000;

#[derive(Deserialize, Serialize, Default)]
pub struct AccessParams {
    q: Option<String>,
    user: Option<String>,
    feed: Option<String>,
    method: Option<String>,
    status: Option<String>,
    from: Option<String>,
    until: Option<String>,
    /// The page and the export: a link to another view is to its first page.
    #[serde(skip_serializing)]
    p: Option<i64>,
    #[serde(skip_serializing)]
    format: Option<String>,
}

/// A time as a form gives it: a day (`2026-11-28`, from its first second;
/// `until` a day takes in that day) or a minute (`2026-11-28T14:05`, from
/// its first second, as a `datetime-local` input sends it; `until` a
/// minute stops before it).
fn time(text: &Option<String>, until: bool) -> Option<NaiveDateTime> {
    let text = text.as_deref()?.trim();
    let at = match NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
        Ok(at) => at,
        Err(_) => {
            let start = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?;
            // (The last day chrono knows has no day after it: until then.)
            match until {
                true => start
                    .checked_add_signed(chrono::Duration::days(1))
                    .unwrap_or(NaiveDateTime::MAX),
                false => start,
            }
        }
    };
    // Within years 1 to 9999, which both engines store (PostgreSQL refuses
    // a year before 4713 BC): no row is from before or after.
    let first = NaiveDate::from_ymd_opt(1, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0))?;
    let last = NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_opt(23, 59, 59))?;
    Some(at.clamp(first, last))
}

/// A filter's text, NULs left out (PostgreSQL's text holds none).
fn nonempty(text: &Option<String>) -> Option<String> {
    let text = text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
    Some(text.replace('\0', ""))
}

/// Most pages one can ask for: past the last, a page is empty.
const MAX_PAGE: i64 = 1_000_000;

impl AccessParams {
    fn query(&self, per_page: i64) -> queries::AccessQuery {
        queries::AccessQuery {
            search: nonempty(&self.q).unwrap_or_default(),
            username: nonempty(&self.user),
            feed: nonempty(&self.feed),
            method: nonempty(&self.method).map(|m| m.to_ascii_uppercase()),
            status_class: self
                .status
                .as_deref()
                .and_then(|s| s.strip_suffix("xx"))
                .and_then(|s| s.parse().ok())
                .filter(|c| (1..=5).contains(c)),
            from: time(&self.from, false),
            until: time(&self.until, true),
            page: self.p.unwrap_or(0).clamp(0, MAX_PAGE),
            per_page,
            reads_only: false,
        }
    }

    fn list(&self) -> ChangeList {
        ChangeList::of(self)
    }
}

#[derive(Template)]
#[template(path = "admin/access_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    rows: Vec<Access>,
    total: i64,
    totals: queries::AccessTotals,
    /// The totals' clients, comma-separated ("and more" past the bound).
    clients: String,
    /// The time filters given that are not a time (and so not applied).
    unread: Vec<&'static str>,
    params: &'a AccessParams,
    filters: Vec<Filter>,
    page: i64,
    pages: i64,
    page_links: Vec<PageLink>,
    csv: String,
}

/// Access-log pages computed at once: each scans the audit (a page, its
/// totals, its clients) and an export holds up to `CSV_ROWS` rows in
/// memory, so that a few staff users (or one in many tabs) can neither take
/// the database's connections from the proxy nor fill memory. An export
/// takes both.
static QUERIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub async fn list(staff: Staff, params: web::Query<AccessParams>) -> Reply {
    staff.require::<ViewAccess>()?;
    let csv = params.format.as_deref() == Some("csv");
    // Never closed: the permit is always given, in turn.
    let _turn = QUERIES.acquire_many(if csv { 2 } else { 1 }).await;
    let query = params.query(if csv { CSV_ROWS } else { PER_PAGE });
    let q = queries::AccessQuery { page: if csv { 0 } else { query.page }, ..query.clone() };
    let (rows, totals) = db::run(&staff.auth.pool, move |conn| {
        let rows = queries::list_access(conn, &q)?;
        let totals = if csv { Default::default() } else { queries::access_totals(conn, &q)? };
        Ok::<_, db::DbError>((rows, totals))
    })
    .await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                actix_web::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"access.csv\"",
            ))
            .body(to_csv(&rows)));
    }
    let list = params.list();
    let choices = |values: &[&str]| values.iter().map(|v| (v.to_string(), v.to_string())).collect();
    let filters = vec![
        list.filter(
            "method",
            "By method",
            choices(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
            params.method.as_deref(),
        ),
        list.filter(
            "status",
            "By status",
            choices(&["2xx", "3xx", "4xx", "5xx"]),
            params.status.as_deref(),
        ),
    ];
    let total = totals.rows;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let mut clients = totals.clients.clone();
    if clients.len() as i64 > queries::TOTALS_CLIENTS {
        clients.truncate(queries::TOTALS_CLIENTS as usize);
        clients.push("and more".into());
    }
    let clients = clients.join(", ");
    let csv_url = {
        let base = list.with("format", Some("csv".into()));
        format!("{}{base}", super::ACCESS.list())
    };
    ok(&ListPage {
        layout: &staff.layout,
        rows,
        total,
        totals,
        clients,
        unread: [("from", &params.from), ("until", &params.until)]
            .into_iter()
            .filter(|(_, text)| nonempty(text).is_some() && time(text, false).is_none())
            .map(|(name, _)| name)
            .collect(),
        params: &params,
        filters,
        page: query.page + 1,
        pages,
        page_links: list.pages(pages),
        csv: csv_url,
    })
}

/// RFC 4180: a field with a comma, a quote or a line break is quoted, its
/// quotes doubled; one that a spreadsheet would read as a formula gets a
/// leading quote (`'=…`).
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn to_csv(rows: &[Access]) -> String {
    let mut out = String::from(
        "at,user,credential,client,endpoint,method,feed,status,requests,bytes_in,bytes_out,\
         duration_ms,duration_max_ms,request_id,read_columns,read_rows\r\n",
    );
    for r in rows {
        let line = [
            r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            field(&r.username),
            field(&r.credential),
            field(&r.client),
            field(&r.endpoint),
            field(&r.method),
            field(r.feed.as_deref().unwrap_or_default()),
            r.status.to_string(),
            r.requests.to_string(),
            r.bytes_in.to_string(),
            r.bytes_out.to_string(),
            format!("{:.3}", r.duration_ms),
            format!("{:.3}", r.duration_max_ms),
            field(r.request_id.as_deref().unwrap_or_default()),
            field(r.read_columns.as_deref().unwrap_or_default()),
            r.rows_read().unwrap_or_default(),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_a_day_or_a_minute_within_years_1_to_9999() {
        let at = |text: &str, until| time(&Some(text.into()), until).map(|t| t.to_string());
        assert_eq!(at("2026-12-02", false).unwrap(), "2026-12-02 00:00:00");
        assert_eq!(at("2026-12-02", true).unwrap(), "2026-12-03 00:00:00");
        assert_eq!(at("2026-12-02T14:05", true).unwrap(), "2026-12-02 14:05:00");
        assert_eq!(at("-99999-01-01", false).unwrap(), "0001-01-01 00:00:00");
        assert_eq!(at("+262142-12-31", true).unwrap(), "9999-12-31 23:59:59");
        assert_eq!(at("yesterday", false), None);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(field("\t=1+1"), "'\t=1+1");
        assert_eq!(field("\r=1+1"), "\"'\r=1+1\"");
    }
}

//! `/admin/lbasedb/access/`: the data-access audit, newest first, with a
//! search (user or feed), filters (user, feed, method, status class, date
//! range), pages of 100, and the same rows as CSV. Needs
//! `lbasedb.view_access` (superusers have it).

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

/// A day as a form gives it (`2026-11-28`), from its first second.
fn day(text: &Option<String>) -> Option<NaiveDateTime> {
    let date = NaiveDate::parse_from_str(text.as_deref()?.trim(), "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)
}

fn nonempty(text: &Option<String>) -> Option<String> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}

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
            from: day(&self.from),
            // "Until" a day includes that day.
            // (The last day chrono knows has no day after it: until then.)
            until: day(&self.until).map(|d| {
                d.checked_add_signed(chrono::Duration::days(1)).unwrap_or(NaiveDateTime::MAX)
            }),
            page: self.p.unwrap_or(0).max(0),
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
    params: &'a AccessParams,
    filters: Vec<Filter>,
    page: i64,
    pages: i64,
    page_links: Vec<PageLink>,
    csv: String,
}

pub async fn list(staff: Staff, params: web::Query<AccessParams>) -> Reply {
    staff.require::<ViewAccess>()?;
    let csv = params.format.as_deref() == Some("csv");
    let query = params.query(if csv { CSV_ROWS } else { PER_PAGE });
    let q = queries::AccessQuery { page: if csv { 0 } else { query.page }, ..query.clone() };
    let (rows, total) =
        db::run(&staff.auth.pool, move |conn| queries::list_access(conn, &q)).await?;
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
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let csv_url = {
        let base = list.with("format", Some("csv".into()));
        format!("{}{base}", super::ACCESS.list())
    };
    ok(&ListPage {
        layout: &staff.layout,
        rows,
        total,
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
    let text =
        if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn to_csv(rows: &[Access]) -> String {
    let mut out = String::from(
        "at,user,credential,client,endpoint,method,feed,status,bytes_in,bytes_out,duration_ms,\
         requests,request_id,read_columns,read_rows\r\n",
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
            r.bytes_in.to_string(),
            r.bytes_out.to_string(),
            format!("{:.3}", r.duration_ms),
            r.requests.to_string(),
            field(r.request_id.as_deref().unwrap_or_default()),
            field(r.read_columns.as_deref().unwrap_or_default()),
            field(r.read_rows.as_deref().unwrap_or_default()),
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
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
    }
}

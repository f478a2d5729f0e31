//! `/admin/lbasedb/feed/`: the feeds the admin user may view, by the same
//! rules as the proxy, with their columns, sizes, a preview of the first
//! rows, and who holds grants on each.

use actix_web::web;
use askama::Template;

use super::changelist::{ChangeList, PageLink};
use super::explorer::{self, Explorer, TableQuery};
use super::{
    AdminError, CsrfForm, FEEDS, HistoryOf, Layout, NoFields, Reply, Staff, history_page, ok,
    redirect,
};
use crate::auth::perms::{Model, ViewAccess};
use crate::auth::principal::Principal;
use crate::auth::users::{self, FieldChange};
use crate::db::{self, queries};
use crate::lbasedb::names::is_valid_name;
use crate::lbasedb::perms::{
    ADD_COL, ADD_FEED, CHANGE_FEED, DELETE_FEED, VIEW_COL, VIEW_DATA, VIEW_FEED,
};
use crate::proxy::upstream::{Col, Upstream};
use actix_web::http::Method;
use serde::Deserialize;

struct FeedInfo {
    name: String,
    /// None: no `view_data` on this feed (or the upstream did not say).
    size: Option<u64>,
    /// None: no `view_col` on this feed.
    cols: Option<Vec<Col>>,
}

/// What a user may see of a feed, by the proxy's own rules: columns with
/// `view_col`, the size with `view_data`.
async fn info(upstream: &Upstream, who: &Principal, feed: &str) -> FeedInfo {
    let size = match who.has_feed_perm(VIEW_DATA, feed) {
        true => upstream.size(feed).await,
        false => None,
    };
    let cols = match who.has_feed_perm(VIEW_COL, feed) {
        true => {
            let mut cols = upstream.cols(feed).await.unwrap_or_default();
            cols.retain(|col| who.shows_column(feed, &col.name));
            Some(cols)
        }
        false => None,
    };
    FeedInfo { name: feed.to_owned(), size, cols }
}

#[derive(Template)]
#[template(path = "admin/feed_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    feeds: Vec<FeedInfo>,
    total: i64,
    page: i64,
    pages: i64,
    page_links: Vec<PageLink>,
    /// Whether the user may add feeds (`lbasedb.add_feed`).
    can_add: bool,
}

/// Feeds a page shows: each costs the upstream two look-ups (its columns,
/// its size), so a page of every feed would cost thousands.
const PER_PAGE: usize = 100;

#[derive(serde::Deserialize, serde::Serialize, Default)]
pub struct ListQuery {
    #[serde(skip_serializing)]
    p: Option<i64>,
}

pub async fn list(staff: Staff, upstream: Upstream, query: web::Query<ListQuery>) -> Reply {
    let mut names: Vec<String> = upstream
        .feeds()
        .await
        .into_iter()
        .filter(|name| staff.principal.has_feed_perm(VIEW_FEED, name))
        .collect();
    names.sort();
    let pages = names.len().div_ceil(PER_PAGE).max(1) as i64;
    let page = query.p.unwrap_or(0).clamp(0, pages - 1);
    let mut feeds = Vec::new();
    for name in names.iter().skip(page as usize * PER_PAGE).take(PER_PAGE) {
        feeds.push(info(&upstream, &staff.principal, name).await);
    }
    ok(&ListPage {
        layout: &staff.layout,
        feeds,
        total: names.len() as i64,
        page: page + 1,
        pages,
        page_links: ChangeList::of(&*query).pages(pages),
        can_add: staff.principal.has_perm(ADD_FEED),
    })
}

#[derive(Template)]
#[template(path = "admin/feed_detail.html")]
struct DetailPage<'a> {
    layout: &'a Layout,
    feed: FeedInfo,
    /// Its rows, chart and downloads; None without `view_col` and
    /// `view_data` on it.
    ex: Option<Explorer>,
    /// Why the explorer is not shown to someone who may read the rows.
    ex_refused: Option<String>,
    /// None: no `auth.view_group` (or `change_group`).
    group_grants: Option<queries::Holders>,
    /// None: no `auth.view_user` (or `change_user`).
    user_grants: Option<queries::Holders>,
    /// The latest reads of its rows, with their columns and rows; None
    /// without `lbasedb.view_access`.
    reads: Option<Vec<crate::db::models::Access>>,
    /// The changes offered: a column, a new name, the deletion.
    can_add_column: bool,
    can_rename: bool,
    can_delete: bool,
    datatypes: [&'static str; 6],
}

/// Reads of a feed its page lists, the latest first.
const RECENT_READS: i64 = 20;

pub async fn detail(
    staff: Staff,
    path: web::Path<String>,
    upstream: Upstream,
    query: web::Query<TableQuery>,
) -> Reply {
    let name = path.into_inner();
    if !is_valid_name(&name) {
        return Err(AdminError::NotFound);
    }
    if !staff.principal.has_feed_perm(VIEW_FEED, &name) {
        return Err(AdminError::Forbidden);
    }
    if !upstream.feeds().await.contains(&name) {
        return Err(AdminError::NotFound);
    }
    let feed = info(&upstream, &staff.principal, &name).await;
    let (who, feed_name) = (staff.principal.clone(), name.clone());
    // Rows need the columns to be named, as through the API; the explorer
    // starts from what `info` has read of the feed.
    let may_read = [VIEW_COL, VIEW_DATA].iter().all(|p| who.has_feed_perm(p, &name));
    let (ex, ex_refused) = match (&feed.cols, feed.size) {
        (Some(cols), Some(size)) => {
            let rows = explorer::Feed { name: name.clone(), size, cols: cols.clone() };
            let on = explorer::on_behalf(&staff, upstream.again());
            (Some(Explorer::of(&on, rows, &query).await), None)
        }
        _ if may_read => (None, Some("the upstream did not tell its columns and size".into())),
        _ => (None, None),
    };
    let reads = match staff.holds::<ViewAccess>() {
        true => {
            let query = queries::AccessQuery {
                feed: Some(name.clone()),
                reads_only: true,
                per_page: RECENT_READS,
                ..Default::default()
            };
            Some(db::run(&staff.auth.pool, move |conn| queries::list_access(conn, &query)).await?)
        }
        false => None,
    };
    let (view_groups, view_users) = (staff.can_view(Model::Group), staff.can_view(Model::User));
    let (group_grants, user_grants) = if view_groups || view_users {
        db::run(&staff.auth.pool, move |conn| queries::feed_holders(conn, &name)).await?
    } else {
        Default::default()
    };
    ok(&DetailPage {
        layout: &staff.layout,
        feed,
        ex,
        ex_refused,
        group_grants: view_groups.then_some(group_grants),
        user_grants: view_users.then_some(user_grants),
        reads,
        can_add_column: who.has_feed_perm(ADD_COL, &feed_name),
        // A rename needs the permission everywhere (it makes a name).
        can_rename: who.has_perm(CHANGE_FEED),
        can_delete: who.has_feed_perm(DELETE_FEED, &feed_name),
        datatypes: DATATYPES,
    })
}

/// `/admin/lbasedb/feed/<name>/columns/`: the names of the feed's columns
/// this user may see, as JSON, for the grant chooser (`grants.js`); an
/// empty list for a feed it may not see or that does not exist.
pub async fn columns(staff: Staff, path: web::Path<String>, upstream: Upstream) -> Reply {
    let name = path.into_inner();
    let names = match is_valid_name(&name) {
        true => super::fields::visible_columns(&upstream, &staff.principal, &name).await,
        false => Vec::new(),
    };
    Ok(actix_web::HttpResponse::Ok().json(names))
}

/// Changes of feeds from the admin: each sent as the same request through
/// the API would be (`proxy::on_behalf`: its permission, its checks, the
/// feed's write lock, grants following a rename or a deletion, the
/// audit), then kept in the admin's history.
async fn change_feed(
    staff: &Staff,
    upstream: &Upstream,
    (endpoint, method, query): (&str, Method, String),
    body: Option<serde_json::Value>,
) -> Result<(), String> {
    let on = explorer::on_behalf(staff, upstream.again());
    on.change(endpoint, method, &query, body).await.map_err(|err| err.to_string())
}

/// Keeps a change in the feed's history (the change is made: a failure
/// here is logged, not answered).
async fn remember(staff: &Staff, feed: &str, action: &str, changes: Vec<FieldChange>) {
    let (user_id, feed) = (staff.principal.user_id, feed.to_owned());
    let action = action.to_owned();
    let recorded = staff
        .auth
        .write(move |conn| users::record_feed_change(conn, user_id, &feed, &action, &changes))
        .await;
    if let Err(err) = recorded {
        tracing::error!("a feed change is not in the admin's history: {err}");
    }
}

#[derive(Debug, Deserialize)]
pub struct NameForm {
    name: String,
}

/// `POST /admin/lbasedb/feed/`: a new feed.
pub async fn create(staff: Staff, upstream: Upstream, CsrfForm(form): CsrfForm<NameForm>) -> Reply {
    let name = form.name.trim().to_owned();
    let body = serde_json::json!({ "name": name });
    match change_feed(&staff, &upstream, ("feed", Method::POST, String::new()), Some(body)).await {
        Ok(()) => {
            remember(&staff, &name, "add", Vec::new()).await;
            staff.flash("success", format!("The feed “{name}” was added."));
            redirect(&FEEDS.object(&name, "detail"))
        }
        Err(why) => {
            staff.flash("error", format!("The feed was not added: {why}"));
            redirect(FEEDS.list())
        }
    }
}

/// The datatypes a column can be made with; the two of a fixed width
/// take it from the form.
const DATATYPES: [&str; 6] = ["Int64", "Int32", "Float64", "Float32", "Bytes", "String"];

#[derive(Debug, Deserialize)]
pub struct ColumnForm {
    name: String,
    datatype: String,
    #[serde(default)]
    width: String,
}

/// `POST /admin/lbasedb/feed/<name>/columns/add/`: a new column.
pub async fn add_column(
    staff: Staff,
    upstream: Upstream,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<ColumnForm>,
) -> Reply {
    let feed = feed_name(&path)?;
    let back = FEEDS.object(feed, "detail");
    let datatype = match form.datatype.as_str() {
        "Bytes" | "String" => match form.width.trim().parse::<u64>() {
            Ok(width) if width > 0 => format!("{}[{width}]", form.datatype),
            _ => {
                staff.flash("error", "The column was not added: give its width in bytes.");
                return redirect(&back);
            }
        },
        datatype if DATATYPES.contains(&datatype) => datatype.to_owned(),
        _ => return Err(AdminError::BadForm),
    };
    let name = form.name.trim().to_owned();
    let body = serde_json::json!({ "name": name, "datatype": datatype });
    let request = ("col", Method::POST, format!("feed={feed}"));
    match change_feed(&staff, &upstream, request, Some(body)).await {
        Ok(()) => {
            let change = FieldChange::new("column", "", format!("{name} ({datatype})"));
            remember(&staff, feed, "add column", vec![change]).await;
            staff.flash("success", format!("The column “{name}” ({datatype}) was added."));
        }
        Err(why) => staff.flash("error", format!("The column was not added: {why}")),
    }
    redirect(&back)
}

/// `POST /admin/lbasedb/feed/<name>/rename/`: the feed's new name (its
/// grants follow it).
pub async fn rename(
    staff: Staff,
    upstream: Upstream,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<NameForm>,
) -> Reply {
    let feed = feed_name(&path)?;
    let new = form.name.trim().to_owned();
    let body = serde_json::json!({ "name": new });
    let request = ("feed", Method::PATCH, format!("name={feed}"));
    match change_feed(&staff, &upstream, request, Some(body)).await {
        Ok(()) => {
            let change = FieldChange::new("name", feed, new.clone());
            // Its history goes on under its new name.
            remember(&staff, &new, "rename", vec![change]).await;
            staff.flash("success", format!("The feed “{feed}” is now “{new}”."));
            redirect(&FEEDS.object(&new, "detail"))
        }
        Err(why) => {
            staff.flash("error", format!("The feed was not renamed: {why}"));
            redirect(&FEEDS.object(feed, "detail"))
        }
    }
}

#[derive(Template)]
#[template(path = "admin/feed_delete.html")]
struct DeleteFeedPage<'a> {
    layout: &'a Layout,
    feed: FeedInfo,
    /// Users and groups whose grants on it go with it.
    holders: usize,
}

/// `GET /admin/lbasedb/feed/<name>/delete/`: what a deletion takes.
pub async fn delete_form(staff: Staff, upstream: Upstream, path: web::Path<String>) -> Reply {
    let feed = feed_name(&path)?;
    if !staff.principal.has_feed_perm(DELETE_FEED, feed) {
        return Err(AdminError::Forbidden);
    }
    if !upstream.feeds().await.iter().any(|name| name == feed) {
        return Err(AdminError::NotFound);
    }
    let info = info(&upstream, &staff.principal, feed).await;
    let name = feed.to_owned();
    let (groups, users) =
        db::run(&staff.auth.pool, move |conn| queries::feed_holders(conn, &name)).await?;
    ok(&DeleteFeedPage { layout: &staff.layout, feed: info, holders: groups.len() + users.len() })
}

/// `POST /admin/lbasedb/feed/<name>/delete/`: the feed, its rows and its
/// grants gone.
pub async fn delete(
    staff: Staff,
    upstream: Upstream,
    path: web::Path<String>,
    _: CsrfForm<NoFields>,
) -> Reply {
    let feed = feed_name(&path)?;
    let size = upstream.size(feed).await;
    let request = ("feed", Method::DELETE, format!("name={feed}"));
    match change_feed(&staff, &upstream, request, None).await {
        Ok(()) => {
            let rows = size.map_or_else(String::new, |size| format!("{size} rows"));
            remember(&staff, feed, "delete", vec![FieldChange::new("rows", rows, "")]).await;
            staff.flash("success", format!("The feed “{feed}” was deleted."));
            redirect(FEEDS.list())
        }
        Err(why) => {
            staff.flash("error", format!("The feed was not deleted: {why}"));
            redirect(&FEEDS.object(feed, "detail"))
        }
    }
}

/// `/admin/lbasedb/feed/<name>/history/`: the admin's changes to it.
pub async fn history(staff: Staff, path: web::Path<String>) -> Reply {
    let feed = feed_name(&path)?;
    if !staff.principal.has_feed_perm(VIEW_FEED, feed) {
        return Err(AdminError::Forbidden);
    }
    history_page(&staff, HistoryOf::feed(feed)).await
}

/// A feed's name from a path: one the upstream could have, or 404.
fn feed_name(name: &str) -> Result<&str, AdminError> {
    match is_valid_name(name) {
        true => Ok(name),
        false => Err(AdminError::NotFound),
    }
}

//! `/admin/lbasedb/feed/`: the feeds the admin user may view, by the same
//! rules as the proxy, with their columns, sizes, a preview of the first
//! rows, and who holds grants on each.

use actix_web::web;
use askama::Template;

use super::changelist::{ChangeList, PageLink};
use super::{AdminError, Layout, Reply, Staff, ok};
use crate::auth::grant::Read;
use crate::auth::perms::{Model, ViewAccess};
use crate::auth::principal::Principal;
use crate::db::{self, queries};
use crate::lbasedb::names::is_valid_name;
use crate::lbasedb::perms::{VIEW_COL, VIEW_DATA, VIEW_FEED};
use crate::proxy::upstream::{Col, Upstream};

const PREVIEW_ROWS: u64 = 10;

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

/// The first rows of `cols`, as the proxy would let `who` read them: a
/// grant on later rows only says which rows it allows instead.
async fn preview(
    upstream: &Upstream,
    who: &Principal,
    feed: &str,
    cols: &[Col],
    size: u64,
) -> Result<Vec<Vec<String>>, String> {
    let rows = size.min(PREVIEW_ROWS);
    if let Some(reach) = who.reach(VIEW_DATA, feed) {
        let names: Vec<String> = cols.iter().map(|col| col.name.clone()).collect();
        let read = Read { columns: &names, rows: Some((0, rows)) };
        // The page adds its own full stop.
        reach.check(feed, read, Some(size)).map_err(|why| why.trim_end_matches('.').to_owned())?;
    }
    upstream.preview(feed, cols, rows).await
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
    })
}

#[derive(Template)]
#[template(path = "admin/feed_detail.html")]
struct DetailPage<'a> {
    layout: &'a Layout,
    feed: FeedInfo,
    /// None: no `view_data` and `view_col` on this feed.
    preview: Option<Vec<Vec<String>>>,
    /// Why the first rows are not read (a column too wide to read).
    preview_refused: Option<String>,
    /// None: no `auth.view_group` (or `change_group`).
    group_grants: Option<queries::Holders>,
    /// None: no `auth.view_user` (or `change_user`).
    user_grants: Option<queries::Holders>,
    /// The latest reads of its rows, with their columns and rows; None
    /// without `lbasedb.view_access`.
    reads: Option<Vec<crate::db::models::Access>>,
}

/// Reads of a feed its page lists, the latest first.
const RECENT_READS: i64 = 20;

pub async fn detail(staff: Staff, path: web::Path<String>, upstream: Upstream) -> Reply {
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
    // Rows need the columns to be named, as through the API.
    let (preview, preview_refused) = match (&feed.cols, feed.size) {
        (Some(cols), Some(size)) if !cols.is_empty() => {
            match preview(&upstream, &staff.principal, &name, cols, size).await {
                Ok(rows) => (Some(rows), None),
                Err(why) => (None, Some(why)),
            }
        }
        (Some(_), Some(_)) => (Some(Vec::new()), None),
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
            Some(db::run(&staff.auth.pool, move |conn| queries::list_access(conn, &query)).await?.0)
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
        preview,
        preview_refused,
        group_grants: view_groups.then_some(group_grants),
        user_grants: view_users.then_some(user_grants),
        reads,
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

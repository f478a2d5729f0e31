//! `/admin/lbasedb/feed/`: the feeds the admin user may view, by the same
//! rules as the proxy, with their columns, sizes, a preview of the first
//! rows, and who holds grants on each.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use askama::Template;
use serde_json::Value;

use super::{AdminError, Layout, Staff, ok, upstream_feeds};
use crate::auth::AuthState;
use crate::auth::perms::Model;
use crate::auth::principal::Principal;
use crate::db::{self, queries};
use crate::lbasedb::names::is_valid_name;
use crate::proxy::ProxyState;

const PREVIEW_ROWS: u64 = 10;

struct Col {
    name: String,
    datatype: String,
}

struct FeedInfo {
    name: String,
    /// None: no `view_data` on this feed (or the upstream did not say).
    size: Option<u64>,
    /// None: no `view_col` on this feed.
    cols: Option<Vec<Col>>,
}

async fn get_json(proxy: &ProxyState, client: &awc::Client, path_and_query: &str) -> Option<Value> {
    let url = format!("{}/{path_and_query}", proxy.upstream);
    let mut response = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<Value>().limit(64 << 20).await.ok()
}

/// What a user may see of a feed, by the proxy's own rules: columns with
/// `view_col`, the size with `view_data`.
async fn info(proxy: &ProxyState, client: &awc::Client, who: &Principal, feed: &str) -> FeedInfo {
    let size = if who.has_feed_perm(VIEW_DATA, feed) {
        get_json(proxy, client, &format!("size?feed={feed}"))
            .await
            .and_then(|v| v["size"].as_u64())
    } else {
        None
    };
    let cols = if who.has_feed_perm(VIEW_COL, feed) {
        let listed = get_json(proxy, client, &format!("col?feed={feed}")).await;
        let listed = listed
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        Some(
            listed
                .iter()
                .map(|c| Col {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    datatype: c["datatype"].as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
        )
    } else {
        None
    };
    FeedInfo {
        name: feed.to_owned(),
        size,
        cols,
    }
}

const VIEW_FEED: &str = "lbasedb.view_feed";
const VIEW_COL: &str = "lbasedb.view_col";
const VIEW_DATA: &str = "lbasedb.view_data";

#[derive(Template)]
#[template(path = "admin/feed_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    feeds: Vec<FeedInfo>,
}

pub async fn list(
    staff: Staff,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let mut feeds = Vec::new();
    for name in upstream_feeds(&proxy, &client).await {
        if staff.principal.has_feed_perm(VIEW_FEED, &name) {
            feeds.push(info(&proxy, &client, &staff.principal, &name).await);
        }
    }
    ok(&ListPage {
        layout: &staff.layout,
        feeds,
    })
}

#[derive(Template)]
#[template(path = "admin/feed_detail.html")]
struct DetailPage<'a> {
    layout: &'a Layout,
    feed: FeedInfo,
    /// None: no `view_data` and `view_col` on this feed.
    preview: Option<Vec<Vec<String>>>,
    /// None: no `auth.view_group` (or `change_group`).
    group_grants: Option<Vec<(i32, String, String)>>,
    /// None: no `auth.view_user` (or `change_user`).
    user_grants: Option<Vec<(i32, String, String)>>,
}

pub async fn detail(
    staff: Staff,
    path: web::Path<String>,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let name = path.into_inner();
    if !is_valid_name(&name) {
        return Err(AdminError::NotFound);
    }
    if !staff.principal.has_feed_perm(VIEW_FEED, &name) {
        return Err(AdminError::Forbidden);
    }
    if !upstream_feeds(&proxy, &client).await.contains(&name) {
        return Err(AdminError::NotFound);
    }
    let feed = info(&proxy, &client, &staff.principal, &name).await;
    // Rows need the columns to be named, as through the API.
    let preview = match (&feed.cols, feed.size) {
        (Some(cols), Some(size)) if !cols.is_empty() => {
            Some(preview(&proxy, &client, &name, cols, size).await)
        }
        (Some(cols), Some(_)) if cols.is_empty() => Some(Vec::new()),
        _ => None,
    };
    let (view_groups, view_users) = (staff.can_view(Model::Group), staff.can_view(Model::User));
    let feed_name = name.clone();
    let (group_grants, user_grants) = if view_groups || view_users {
        db::run(&auth.pool, move |conn| {
            queries::feed_holders(conn, &feed_name)
        })
        .await?
    } else {
        Default::default()
    };
    ok(&DetailPage {
        layout: &staff.layout,
        feed,
        preview,
        group_grants: view_groups.then_some(group_grants),
        user_grants: view_users.then_some(user_grants),
    })
}

/// The first rows of a feed, as text.
async fn preview(
    proxy: &ProxyState,
    client: &awc::Client,
    feed: &str,
    cols: &[Col],
    size: u64,
) -> Vec<Vec<String>> {
    let rows = size.min(PREVIEW_ROWS);
    let names: String = cols.iter().map(|c| format!("&col[]={}", c.name)).collect();
    let data = get_json(
        proxy,
        client,
        &format!("data?feed={feed}&ix=0&size={rows}{names}"),
    )
    .await
    .unwrap_or_default();
    (0..rows as usize)
        .map(|i| {
            cols.iter()
                .map(|c| match &data[&c.name][i] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

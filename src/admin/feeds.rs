//! `/admin/lbasedb/feed/`: the feeds the admin user may view, by the same
//! rules as the proxy, with their columns, sizes, a preview of the first
//! rows, and who holds grants on each.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde_json::Value;

use super::{AdminError, Message, ok, staff, upstream_feeds};
use crate::auth::AuthState;
use crate::db::{self, queries};
use crate::proxy::ProxyState;
use crate::proxy::classify::is_valid_name;

const PREVIEW_ROWS: u64 = 10;

struct Col {
    name: String,
    datatype: String,
}

struct FeedInfo {
    name: String,
    size: Option<u64>,
    cols: Vec<Col>,
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

async fn info(proxy: &ProxyState, client: &awc::Client, feed: &str) -> FeedInfo {
    let size = get_json(proxy, client, &format!("size?feed={feed}"))
        .await
        .and_then(|v| v["size"].as_u64());
    let cols = get_json(proxy, client, &format!("col?feed={feed}"))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|c| Col {
            name: c["name"].as_str().unwrap_or_default().to_owned(),
            datatype: c["datatype"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    FeedInfo {
        name: feed.to_owned(),
        size,
        cols,
    }
}

#[derive(Template)]
#[template(path = "admin/feed_list.html")]
struct ListPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    feeds: Vec<FeedInfo>,
}

pub async fn list(
    req: HttpRequest,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    let mut feeds = Vec::new();
    for name in upstream_feeds(&proxy, &client).await {
        if ctx.principal.has_feed_perm("lbasedb.view_feed", &name) {
            feeds.push(info(&proxy, &client, &name).await);
        }
    }
    ok(&ListPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        feeds,
    })
}

#[derive(Template)]
#[template(path = "admin/feed_detail.html")]
struct DetailPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    feed: FeedInfo,
    /// None: no `view_data` on this feed.
    preview: Option<Vec<Vec<String>>>,
    group_grants: Vec<(i32, String, String)>,
    user_grants: Vec<(i32, String, String)>,
}

pub async fn detail(
    req: HttpRequest,
    path: web::Path<String>,
    auth: web::Data<AuthState>,
    proxy: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    let name = path.into_inner();
    if !is_valid_name(&name) {
        return Err(AdminError::NotFound);
    }
    if !ctx.principal.has_feed_perm("lbasedb.view_feed", &name) {
        return Err(AdminError::Forbidden);
    }
    let feed = info(&proxy, &client, &name).await;
    let Some(size) = feed.size else {
        return Err(AdminError::NotFound);
    };
    let preview =
        if ctx.principal.has_feed_perm("lbasedb.view_data", &name) && !feed.cols.is_empty() {
            let rows = size.min(PREVIEW_ROWS);
            let cols: String = feed
                .cols
                .iter()
                .map(|c| format!("&col[]={}", c.name))
                .collect();
            let data = get_json(
                &proxy,
                &client,
                &format!("data?feed={name}&ix=0&size={rows}{cols}"),
            )
            .await
            .unwrap_or_default();
            Some(
                (0..rows as usize)
                    .map(|i| {
                        feed.cols
                            .iter()
                            .map(|c| match &data[&c.name][i] {
                                Value::String(s) => s.clone(),
                                Value::Null => String::new(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .collect(),
            )
        } else {
            None
        };
    let feed_name = name.clone();
    let (group_grants, user_grants) = db::run(&auth.pool, move |conn| {
        queries::feed_holders(conn, &feed_name)
    })
    .await?;
    ok(&DetailPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        feed,
        preview,
        group_grants,
        user_grants,
    })
}

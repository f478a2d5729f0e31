//! `/api/proxy/{endpoint}`: classify the request, decide, and stream it to
//! the upstream and the answer back.

mod buffered;
pub mod classify;
mod forward;
pub mod headers;

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::auth::principal::Principal;
use crate::auth::{AuthState, check_csrf};
use crate::config::Settings;
use crate::error::ApiError;
use classify::{Access, Classified, ClassifyError, classify};

pub use forward::build_client;

/// What every worker's proxy handler shares.
#[derive(Debug, Clone)]
pub struct ProxyState {
    /// The upstream's base URL, without a trailing slash.
    pub upstream: String,
    pub body_limit: u64,
    pub response_timeout: Duration,
}

impl ProxyState {
    pub fn new(upstream: &str, settings: &Settings) -> Self {
        Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            body_limit: settings.body_limit,
            response_timeout: settings.response_timeout,
        }
    }
}

pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    endpoint: web::Path<String>,
    state: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    // Deny by default: nothing about the upstream for the unauthenticated.
    let who = auth
        .authenticate(&req)
        .await?
        .ok_or_else(ApiError::no_credentials)?;
    if who.by_session && !req.method().is_safe() {
        check_csrf(&req)?;
    }
    let classified =
        classify(&endpoint, req.method(), req.query_string()).map_err(|err| match err {
            ClassifyError::UnknownEndpoint => ApiError::NotFound,
            ClassifyError::MethodNotAllowed(allowed) => ApiError::MethodNotAllowed {
                method: req.method().clone(),
                allowed,
            },
            ClassifyError::BadQuery(detail) => ApiError::BadRequest(detail),
        })?;
    authorize(&classified, &who.principal)?;
    let response = forward::send(&req, payload, classified.endpoint, &state, &client).await?;
    if classified.access == Access::FeedList && !who.principal.has_perm(VIEW_FEED) {
        return visible_feeds(response, &who.principal).await;
    }
    Ok(forward::respond(&req, response))
}

const VIEW_FEED: &str = "lbasedb.view_feed";

/// The one place where a classified request is allowed or refused.
pub fn authorize(classified: &Classified, who: &Principal) -> Result<(), ApiError> {
    let allowed = match &classified.access {
        Access::Authenticated | Access::FeedList => who.is_active,
        Access::Global(perm) => who.has_perm(perm.codename()),
        Access::Feed(perm, feed) => who.has_feed_perm(perm.codename(), feed),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::permission_denied())
    }
}

/// `GET /feed` for a user without `view_feed` everywhere: only the feeds
/// they may view. The list is small (names only), so it is read whole.
async fn visible_feeds(
    mut response: awc::ClientResponse,
    who: &Principal,
) -> Result<HttpResponse, ApiError> {
    const LIST_LIMIT: usize = 16 << 20;
    let status = response.status();
    let body = response.body().limit(LIST_LIMIT).await.map_err(|err| {
        log::warn!("reading the upstream's feed list: {err}");
        ApiError::UpstreamBroken
    })?;
    if !status.is_success() {
        return Ok(HttpResponse::build(status)
            .content_type("application/json")
            .body(body));
    }
    let feeds: Vec<Value> = serde_json::from_slice(&body).map_err(|err| {
        log::warn!("the upstream's feed list is not a JSON list: {err}");
        ApiError::UpstreamBroken
    })?;
    let visible: Vec<Value> = feeds
        .into_iter()
        .filter(|feed| {
            feed["name"]
                .as_str()
                .is_some_and(|name| who.has_feed_perm(VIEW_FEED, name))
        })
        .collect();
    Ok(HttpResponse::Ok().json(visible))
}
